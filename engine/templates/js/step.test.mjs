// Runs the built component in the real engine, alone against a temporary
// directory, as a flow would run it: `stepback plugin test` builds it and
// sets $STEPBACK (the engine) and $STEPBACK_PLUGIN (the component).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const stepback = process.env.STEPBACK ?? 'stepback';
const plugin = process.env.STEPBACK_PLUGIN ?? fileURLToPath(new URL('{{name}}.wasm', import.meta.url));
const config = { path: '/target/hello.txt', text: 'hello' };

/** Runs the step on `dir` (granted as mount `target` at /target) with
 * `config`; returns the exit code, the run's `plugin-run` result and what
 * it printed. */
function pluginRun(dir, config, ...extra) {
  const state = mkdtempSync(join(tmpdir(), 'stepback-state-'));
  const done = spawnSync(
    stepback,
    ['--output', 'json', 'plugin', 'run', plugin, '--with', JSON.stringify(config),
      '--mount', `target=${dir}:/target`, ...extra],
    { encoding: 'utf8', env: { ...process.env, STEPBACK_STATE_DIR: state } },
  );
  const result = done.stdout.split('\n').filter(Boolean).map(JSON.parse).find((v) => v.kind === 'plugin-run');
  assert.ok(result, `no result in:\n${done.stdout}${done.stderr}${done.error ?? ''}`);
  return [done.status, result, done.stdout];
}

const scratch = () => mkdtempSync(join(tmpdir(), '{{name}}-'));

test('writes the file and journals it', () => {
  const dir = scratch();
  const [code, result] = pluginRun(dir, config);
  assert.deepEqual([code, result.outcome], [0, 'succeeded'], JSON.stringify(result));
  assert.equal(readFileSync(join(dir, 'hello.txt'), 'utf8'), 'hello');
  assert.equal(result.changes[0].path, 'hello.txt');
  assert.match(result.changes[0].change, /^created/);
});

test('a rollback leaves the directory as it was', () => {
  const dir = scratch();
  const [code, result] = pluginRun(dir, config, '--rollback');
  assert.equal(code, 0, JSON.stringify(result));
  assert.ok(result.rollback.undone >= 1, JSON.stringify(result));
  assert.ok(!existsSync(join(dir, 'hello.txt')));
});

test('an existing file fails the step and stays as it was', () => {
  const dir = scratch();
  writeFileSync(join(dir, 'hello.txt'), 'before');
  const [code, result, printed] = pluginRun(dir, config);
  assert.deepEqual([code, result.outcome], [1, 'failed-rolled-back'], JSON.stringify(result));
  assert.match(printed, /already exists/);
  assert.equal(readFileSync(join(dir, 'hello.txt'), 'utf8'), 'before');
});
