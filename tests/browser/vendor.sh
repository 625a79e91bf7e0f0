#!/usr/bin/env bash
# Copies the browser libraries the coordinator embeds from the npm packages pinned in
# package.json (hls.js, hash-wasm) into streamr-coord/assets/vendor/, unmodified, with their
# licenses. Run after changing a version in package.json; commit the result.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund >/dev/null
vendor=../../streamr-coord/assets/vendor
cp node_modules/hls.js/dist/hls.light.min.js "$vendor/hls.light.min.js"
cp node_modules/hls.js/LICENSE "$vendor/hls.js.LICENSE"
cp node_modules/hash-wasm/dist/blake3.umd.min.js "$vendor/hash-wasm-blake3.umd.min.js"
cp node_modules/hash-wasm/LICENSE "$vendor/hash-wasm.LICENSE"
echo "vendored hls.js $(node -p "require('./node_modules/hls.js/package.json').version")," \
  "hash-wasm $(node -p "require('./node_modules/hash-wasm/package.json').version")"
