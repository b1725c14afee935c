#!/usr/bin/env bash
# Sets up everything the tests need (idempotent; fast the second time) and runs every test:
# invariants, lint, native unit/integration/property tests (the store on SQLite and on a throwaway PostgreSQL, the PSRP
# engine against psrpcore's server as a local process and behind a real OpenSSH sshd), the decoder in headless Chromium, psrpcore interop
# (both directions), the test peers' fidelity (psrpcore's and pypsrp's clients over SSH and WinRM) and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
. scripts/env.sh
step() { printf '\n==> %s\n' "$*"; }
# A step that fails says how full the disk and memory were, the usual cause of a link or build failing on a CI machine.
trap 'echo "test.sh failed at line $LINENO; disk and memory:" >&2; df -h . /tmp >&2 || true; free -m >&2 || true' ERR

step "invariants"
bash scripts/check-invariants.sh

step "lint"
cargo clippy --quiet --workspace --all-targets -- -D warnings

step "native tests"
# The store's tests run on SQLite and on PostgreSQL: a throwaway server (PSGATE_TEST_POSTGRES names it).
eval "$(bash scripts/postgres.sh)"
cargo test --workspace

step "the decoder as WebAssembly in headless Chromium"
CHROMEDRIVER=/usr/bin/chromedriver cargo test -p psgate-shared --target wasm32-unknown-unknown --test wasm

step "build the browser console"
bash scripts/build-frontend.sh
bash scripts/check-wasm-size.sh
cargo build --quiet -p psgate-relay
export PSGATE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/psgate"

step "psrpcore interop (CLIXML both ways) and the fidelity of the PSRP test peers"
"$PSGATE_PYTHON" -m pytest tests/psrpcore tests/peers -q

step "browser end-to-end"
(cd tests/e2e && npm ci --silent --no-audit --no-fund && node --test)
