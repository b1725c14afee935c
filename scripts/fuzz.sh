#!/usr/bin/env bash
# Runs a fuzz target for a while (its working corpus stays in fuzz/corpus, not committed); any crash it
# finds is copied into the crate's test_data/fuzz/<target>/ (shared's, or the relay's for wsman_envelope),
# which `cargo test` replays. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`).
#   scripts/fuzz.sh [TARGET] [SECONDS]
#   TARGET: clixml_decode (default), psrp_fragment, outofproc_lines, wsman_envelope or prompt_line
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-clixml_decode}
seconds=${2:-300}
corpus=fuzz/corpus/$target
case $target in
  wsman_envelope) keep=relay/test_data/fuzz/$target ;;
  prompt_line) keep=lang/test_data/fuzz/$target ;;
  *) keep=shared/test_data/fuzz/$target ;;
esac
mkdir -p "$corpus" "$keep"
cp -n "$keep"/* "$corpus"/ 2>/dev/null || true
# libFuzzer needs nightly-only sanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
status=0
cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- -max_total_time="$seconds" -max_len=4096 || status=$?
for crash in fuzz/artifacts/"$target"/crash-*; do
  [ -e "$crash" ] && cp -n "$crash" "$keep"/
done
echo "corpus: $(ls "$corpus" | wc -l) inputs; crashes kept in $keep"
exit $status
