"""`{{name}}`: a Stepback step plugin. It writes one file; make it yours.

The step does ordinary file I/O (`open`, `os`) on the guest paths of the
mounts the flow grants it: the host journals every change, and reverses
them all when the flow fails. Failing is raising `Err(StepError(...))`.
The bindings (`wit_world`) are generated from `wit/` at build time.
"""

import json
import os

import wit_world
from wit_world.imports import host, types
from wit_world.types import Err

# The JSON Schema of the step's `with` table: `stepback validate` checks a
# flow against it before anything runs.
SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "Guest path of the file to write, beneath a read-write mount."},
        "text": {"type": "string", "description": "What to write."},
        "overwrite": {"type": "boolean", "default": False, "description": "Replace the file if it exists."},
    },
    "required": ["path", "text"],
    "additionalProperties": False,
}


def fail(message: str, details: str | None = None):
    """Fails the step: the flow's rollback then reverses what it changed."""
    raise Err(types.StepError(message=message, details=details))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            description="Writes a file.",
            config_schema=json.dumps(SCHEMA),
            needs=types.Needs(
                mounts=[types.MountNeed(role="target", access=types.Access.READ_WRITE)],
                exec=False,
                network=False,
            ),
        )

    def run(self, config: str, context: types.StepContext) -> types.Outcome:
        # Already checked against SCHEMA, defaults filled in.
        cfg = json.loads(config)
        path, data = cfg["path"], cfg["text"].encode()
        mode = "wb" if cfg["overwrite"] else "xb"
        try:
            with open(path, mode) as f:
                f.write(data)
        except FileExistsError:
            fail(f"{path} already exists (set overwrite = true to replace it)")
        except OSError as e:
            fail(f"writing {path}: {e.strerror or e}")
        host.log(host.Level.INFO, f"wrote {len(data)} bytes to {path}")
        host.progress(1, 1, "files")
        return types.Outcome(summary=f"wrote {path} ({len(data)} bytes)")
