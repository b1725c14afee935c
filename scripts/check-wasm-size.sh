#!/usr/bin/env bash
# The browser console's budget: the .wasm in dist/ at most 300 KiB once gzipped (gzip -9, what a server sends).
# Run after scripts/build-frontend.sh; scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=$((300 * 1024))
wasm=$(ls dist/*.wasm 2>/dev/null | head -n 1 || true)
if [ -z "$wasm" ]; then
  echo "check-wasm-size: no .wasm in dist/ (run scripts/build-frontend.sh)" >&2
  exit 1
fi
raw=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf 'check-wasm-size: %s: %d bytes, %d gzipped (budget %d, %d left)\n' "$wasm" "$raw" "$gz" "$budget" "$((budget - gz))"
if [ "$gz" -gt "$budget" ]; then
  echo "check-wasm-size: over the budget of 300 KiB gzipped: find what grew (twiggy top, twiggy dominators)" >&2
  exit 1
fi
