#!/usr/bin/env bash
# Sets up everything psgate needs on this machine, builds it, and runs it in demo mode on loopback.
#   scripts/run.sh [PORT]      (default 8080; PSGATE_PORT works too)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
bash scripts/build-frontend.sh
cargo build --release -p psgate-relay
exec target/release/psgate demo --port "${1:-${PSGATE_PORT:-8080}}" --assets dist
