#!/usr/bin/env bash
# The test suite on every supported Node major besides the machine's own (which `npm test` covers).
# Each Node comes from the npm registry (the `node` package), cached by npx after the first run.
#   npm run test:matrix            # Node 22 and 24
#   npm run test:matrix -- 20 22   # chosen majors
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(22 24)
for version in "${versions[@]}"; do
  echo "== Node ${version}: $(npx -y -p "node@${version}" -- node --version)"
  npx -y -p "node@${version}" -- node node_modules/vitest/vitest.mjs run
done
