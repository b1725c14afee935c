//! Replays every input the `wsman_envelope` fuzzer found interesting, and its seeds
//! (relay/test_data/fuzz/wsman_envelope/), with the checks the fuzz target runs (`psgate_relay::wsman::fuzz_parse`).

use std::path::Path;

#[test]
fn wsman_envelope_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzz/wsman_envelope");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("readable");
        if let Err(panic) = std::panic::catch_unwind(|| psgate_relay::wsman::fuzz_parse(&data)) {
            panic!("{} fails again: {panic:?}", path.display());
        }
        count += 1;
    }
    assert!(count > 0, "no regression inputs in {}", dir.display());
}
