#!/usr/bin/env bash
# ARCHITECTURE.md's invariants, checked: `shared` builds for wasm32 and does no IO of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --quiet -p psgate-shared --target wasm32-unknown-unknown
if grep -rnE 'std::(fs|net|process|thread|env)\b|Instant::now|SystemTime|tokio|getrandom|rand::' shared/src; then
  echo "invariant broken: shared/src must not do IO, read clocks or draw randomness (see ARCHITECTURE.md)" >&2
  exit 1
fi
# Randomness is passed in: nothing in shared may reach the operating system's (getrandom).
if cargo tree -p psgate-shared -e normal --prefix none --target wasm32-unknown-unknown | grep -E '^(tokio|mio|getrandom|socket2) '; then
  echo "invariant broken: shared depends on an IO or OS-randomness crate" >&2
  exit 1
fi
# The WS-Management message layer is pure too: the WinRM transport (relay/src/transport/winrm) does its IO.
if grep -rnE 'std::(fs|net|process|thread|env)\b|Instant::now|SystemTime|tokio|rand::' relay/src/wsman; then
  echo "invariant broken: relay/src/wsman must not do IO, read clocks or draw randomness (see ARCHITECTURE.md)" >&2
  exit 1
fi
# psgate's prompt (lang/) is pure: text and the Remoting/Host traits in, values and events out.
if grep -rnE 'std::(fs|net|process|thread|env)\b|Instant::now|SystemTime|tokio|rand::' lang/src; then
  echo "invariant broken: lang/src must not do IO, read clocks or draw randomness (see ARCHITECTURE.md)" >&2
  exit 1
fi
if cargo tree -p psgate-lang -e normal --prefix none | grep -E '^(tokio|mio|getrandom|socket2) '; then
  echo "invariant broken: lang depends on an IO or OS-randomness crate" >&2
  exit 1
fi
echo "invariants hold: shared builds for wasm32 and does no IO; relay/src/wsman and lang do no IO"
