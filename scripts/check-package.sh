#!/usr/bin/env bash
# `npm run check:package` (after the build): each published package as npm would pack it, checked by publint
# (package.json against the files) and arethetypeswrong (every entry point's types under node10, node16 CJS and ESM,
# and bundler resolution).
set -euo pipefail
cd "$(dirname "$0")/.."
for package in packages/mqtt-bootstrap packages/mqtt-bootstrap-server; do
  echo "== ${package}"
  npx publint --strict "${package}"
  npx attw --pack "${package}" --format table-flipped
done
