#!/usr/bin/env bash
# One-step set-up behind `npm start` and `npm test`: Debian packages, then the
# project's npm packages (which include the pinned Node 24 runtime). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash provisioning/os-packages.sh
if [ ! -x node_modules/.bin/node ] || [ ! -f node_modules/.package-lock.json ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing npm packages (npm ci)" >&2
  # .npmrc keeps npm's EBADENGINE warnings (about the machine's Node, which runs none of the
  # packages) off; test/architecture/engines.test.ts checks engines against the pinned Node.
  npm ci --no-audit --no-fund >&2
fi
# tap ships built with its default plugins; build it once with ours (package.json
# "tap.plugin": tests run on Node 24's own type stripping, like the box).
if [ ! -f node_modules/.tap-built ] || [ package.json -nt node_modules/.tap-built ]; then
  node_modules/.bin/tap build >&2
  touch node_modules/.tap-built
fi
