#!/usr/bin/env bash
# The browser console's budget: the .wasm in dist/ at most 300 KiB once gzipped (gzip -9, what a server sends); the
# other pages' (dist/pages/: the CLIXML viewer, the watch page) likewise, on its own.
# Run after scripts/build-frontend.sh; scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=$((300 * 1024))
status=0
for dir in dist dist/pages; do
  wasm=$(ls "$dir"/*.wasm 2>/dev/null | head -n 1 || true)
  if [ -z "$wasm" ]; then
    echo "check-wasm-size: no .wasm in $dir/ (run scripts/build-frontend.sh)" >&2
    exit 1
  fi
  raw=$(wc -c < "$wasm")
  gz=$(gzip -9 -c "$wasm" | wc -c)
  printf 'check-wasm-size: %s: %d bytes, %d gzipped (budget %d, %d left)\n' "$wasm" "$raw" "$gz" "$budget" "$((budget - gz))"
  if [ "$gz" -gt "$budget" ]; then
    echo "check-wasm-size: $wasm is over the budget of 300 KiB gzipped: find what grew (twiggy top, twiggy dominators)" >&2
    status=1
  fi
done
exit $status
