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

# The database registry's migrations are files read at run time: they must be in the server's tarball.
files=$(npm pack --dry-run --json --ignore-scripts -w packages/mqtt-bootstrap-server | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].files.map(f=>f.path).join("\n")))')
grep -qx 'migrations/0001_registry.sql' <<<"$files" || { echo "the server tarball lacks migrations/0001_registry.sql" >&2; exit 1; }
echo "server tarball: migrations/ included"
