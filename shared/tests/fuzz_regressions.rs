//! Replays every input the fuzzers ever found interesting (shared/test_data/fuzz/<target>/) with the
//! same checks the fuzz targets run.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzz").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("readable");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            panic!("{} fails again: {panic:?}", path.display());
        }
        count += 1;
    }
    assert!(count > 0, "no regression inputs in {}", dir.display());
}

#[test]
fn clixml_decode_corpus() {
    replay("clixml_decode", psgate_shared::fuzzing::clixml_decode);
}

#[test]
fn psrp_fragment_corpus() {
    replay("psrp_fragment", psgate_shared::fuzzing::psrp_fragment);
}

#[test]
fn outofproc_lines_corpus() {
    replay("outofproc_lines", psgate_shared::fuzzing::outofproc_lines);
}
