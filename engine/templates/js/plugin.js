// `{{name}}`: a Stepback step plugin. It writes one file; make it yours.
//
// The step reaches the mounts the flow grants it through the standard
// `wasi:filesystem` imports (there is no Node.js `fs` here): the host
// journals every change, and reverses them all when the flow fails.
// Failing is throwing `{ payload: { message, details } }` (see `fail`).
// The imports and exports are those of the world in wit/world.wit.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { log, progress } from 'stepback:plugin/host@0.1.1';

// The JSON Schema of the step's `with` table: `stepback validate` checks a
// flow against it before anything runs.
const schema = {
  type: 'object',
  properties: {
    path: { type: 'string', description: 'Guest path of the file to write, beneath a read-write mount.' },
    text: { type: 'string', description: 'What to write.' },
    overwrite: { type: 'boolean', default: false, description: 'Replace the file if it exists.' },
  },
  required: ['path', 'text'],
  additionalProperties: false,
};

export function describe() {
  return {
    name: '{{name}}',
    version: '0.1.0',
    description: 'Writes a file.',
    configSchema: JSON.stringify(schema),
    needs: { mounts: [{ role: 'target', access: 'read-write' }], exec: false, network: false },
  };
}

/** Fails the step: the flow's rollback then reverses what it changed. */
function fail(message, details) {
  throw { payload: { message, details } };
}

/** The mount's directory holding guest path `path`, and the path inside it. */
function locate(path) {
  for (const [dir, root] of getDirectories()) {
    const prefix = root.endsWith('/') ? root : `${root}/`;
    if (path.startsWith(prefix)) return [dir, path.slice(prefix.length)];
  }
  fail(`${path} is not beneath any mount of the step`);
}

// `config` has been checked against `schema`, its defaults filled in.
export function run(config, context) {
  const { path, text, overwrite } = JSON.parse(config);
  const [dir, inside] = locate(path);
  const bytes = new TextEncoder().encode(text);
  let file;
  try {
    const open = { create: true, exclusive: !overwrite, truncate: overwrite };
    file = dir.openAt({}, inside, open, { write: true });
  } catch (e) {
    if (e.payload === 'exist') fail(`${path} already exists (set overwrite = true to replace it)`);
    fail(`opening ${path}: ${e.payload ?? e}`);
  }
  for (let done = 0; done < bytes.length; ) {
    let wrote;
    try {
      wrote = Number(file.write(bytes.subarray(done), BigInt(done)));
    } catch (e) {
      fail(`writing ${path}: ${e.payload ?? e}`);
    }
    if (wrote === 0) fail(`writing ${path}: the host took no bytes`);
    done += wrote;
  }
  log('info', `wrote ${bytes.length} bytes to ${path}`);
  progress(1n, 1n, 'files');
  return { summary: `wrote ${path} (${bytes.length} bytes)` };
}
