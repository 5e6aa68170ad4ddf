#!/usr/bin/env bash
# The test suite on every supported Node major besides the machine's own (which `npm test` covers).
# Each Node comes from the npm registry (the `node` package), cached by npx after the first run.
#   npm run test:matrix            # 20, 22, 24 and 26, minus the machine's own major
#   npm run test:matrix -- 22      # chosen majors
set -euo pipefail
cd "$(dirname "$0")/.."
own=$(node -p 'process.versions.node.split(".")[0]')
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  for major in 20 22 24 26; do [ "$major" != "$own" ] && versions+=("$major"); done
fi
for version in "${versions[@]}"; do
  actual=$(npx -y -p "node@${version}" -- node -p 'process.versions.node')
  echo "== Node ${actual}"
  if [ "${actual%%.*}" != "$version" ]; then
    echo "expected Node ${version}, npx gave ${actual}" >&2
    exit 1
  fi
  # The same npx node runs vitest, and vitest's forks use its process.execPath. The long real-time suites (crash
  # and lock cases, `*.slow.test.ts`) run on the machine's Node only (`npm test`): what they test is the same there.
  npx -y -p "node@${version}" -- node node_modules/vitest/vitest.mjs run --exclude 'test/**/*.slow.test.ts'
done
