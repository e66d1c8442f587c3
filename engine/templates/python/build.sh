#!/bin/sh
# Builds the component (`stepback plugin build` runs this): installs the
# pinned componentize-py into .venv on first use and whenever
# requirements.txt changes, then compiles app.py with CPython into one
# component of the world `step` in wit/.
set -eu
cd "$(dirname "$0")"
if ! cmp -s requirements.txt .venv/installed-requirements.txt; then
    [ -d .venv ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt .venv/installed-requirements.txt
fi
mkdir -p build
exec .venv/bin/componentize-py --wit-path wit --world step componentize app --output build/{{name}}.wasm
