#!/bin/sh
# Builds the component (`stepback plugin build` runs this): installs the
# pinned componentize-js into node_modules on first use, then compiles
# plugin.js with StarlingMonkey into one component of the world in wit/,
# without the HTTP features the host does not offer.
set -eu
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
mkdir -p build
exec npm run --silent build
