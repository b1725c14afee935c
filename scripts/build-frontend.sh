#!/usr/bin/env bash
# Builds the browser console into dist/ and the other pages (the CLIXML viewer, the watch page: a bundle of their own,
# which the relay serves at /viewer and /watch/) into dist/pages/, with Trunk (release: the wasm-release size profile, then wasm-opt -Oz).
# Idempotent: when no input is newer than dist/index.html (which Trunk writes last), it does nothing at all;
# otherwise cargo and Trunk redo only what is out of date. Extra arguments go to `trunk build` and force a build.
# The tools come from scripts/setup.sh; Trunk.toml pins their versions and never downloads.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/env.sh"
cd "$root"
inputs=(index.html pages.html Trunk.toml Cargo.toml Cargo.lock scripts/env.sh frontend shared/Cargo.toml shared/src)
if [ $# -eq 0 ] && [ -f dist/index.html ] && [ -f dist/pages/index.html ] && [ -z "$(find "${inputs[@]}" -newer dist/index.html -print -quit)" ]; then
  echo "build-frontend: dist/ is up to date" >&2
  exit 0
fi
# The console first: its build empties dist/, the pages' then fills dist/pages/.
trunk build --release "$@"
exec trunk build pages.html --release --dist dist/pages --public-url /pages/ "$@"
