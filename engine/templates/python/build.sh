#!/bin/sh
# Builds the component (`stepback plugin build` runs this): installs the
# pinned componentize-py into .venv on first use, then compiles app.py
# with CPython into one component of the world `step` in wit/.
set -eu
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi
mkdir -p build
exec .venv/bin/componentize-py --wit-path wit --world step componentize app --output build/{{name}}.wasm
