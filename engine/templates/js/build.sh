#!/bin/sh
# Builds the component (`stepback plugin build` runs this): installs the
# pinned componentize-js into node_modules on first use and whenever
# package.json changes, then compiles
# plugin.js with StarlingMonkey into one component of the world in wit/,
# without the HTTP features the host does not offer.
set -eu
cd "$(dirname "$0")"
if ! cmp -s package.json node_modules/.installed-package.json; then
    npm install --no-audit --no-fund --loglevel=error
    cp package.json node_modules/.installed-package.json
fi
mkdir -p build
exec npm run --silent build
