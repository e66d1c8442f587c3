"""Runs the built component in the real engine, alone against a temporary
directory, as a flow would run it: `stepback plugin test` builds it and sets
$STEPBACK (the engine) and $STEPBACK_PLUGIN (the component)."""

import json
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
STEPBACK = os.environ.get("STEPBACK", "stepback")
PLUGIN = os.environ.get("STEPBACK_PLUGIN", os.path.join(HERE, "{{name}}.wasm"))


def plugin_run(directory, config, *extra):
    """Runs the step on `directory` (granted as mount `target` at /target)
    with `config`; returns the exit code, the run's `plugin-run` result and
    everything it printed."""
    with tempfile.TemporaryDirectory() as state:
        done = subprocess.run(
            [STEPBACK, "--output", "json", "plugin", "run", PLUGIN,
             "--with", json.dumps(config), "--mount", f"target={directory}:/target", *extra],
            capture_output=True, text=True, env={**os.environ, "STEPBACK_STATE_DIR": state},
        )
    for line in done.stdout.splitlines():
        value = json.loads(line)
        if value.get("kind") == "plugin-run":
            return done.returncode, value, done.stdout
    raise AssertionError(f"no result in:\n{done.stdout}{done.stderr}")


class Step(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.file = os.path.join(self.dir, "hello.txt")
        self.config = {"path": "/target/hello.txt", "text": "hello"}

    def test_writes_the_file_and_journals_it(self):
        code, result, _ = plugin_run(self.dir, self.config)
        self.assertEqual((code, result["outcome"]), (0, "succeeded"), result)
        with open(self.file) as f:
            self.assertEqual(f.read(), "hello")
        self.assertEqual(result["changes"][0]["path"], "hello.txt", result)
        self.assertTrue(result["changes"][0]["change"].startswith("created"), result)

    def test_a_rollback_leaves_the_directory_as_it_was(self):
        code, result, _ = plugin_run(self.dir, self.config, "--rollback")
        self.assertEqual(code, 0, result)
        self.assertGreaterEqual(result["rollback"]["undone"], 1, result)
        self.assertFalse(os.path.exists(self.file))

    def test_an_existing_file_fails_the_step_and_stays_as_it_was(self):
        with open(self.file, "w") as f:
            f.write("before")
        code, result, printed = plugin_run(self.dir, self.config)
        self.assertEqual((code, result["outcome"]), (1, "failed-rolled-back"), result)
        self.assertIn("already exists", printed)
        with open(self.file) as f:
            self.assertEqual(f.read(), "before")


if __name__ == "__main__":
    unittest.main()
