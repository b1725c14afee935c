//! Replays every input the `prompt_line` fuzzer found interesting, and its seeds (lang/test_data/fuzz/prompt_line/),
//! through the fuzz target's own body: parsing, conversion, completion and evaluation of any line never panic.

use std::path::Path;

#[test]
fn prompt_line_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzz/prompt_line");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("readable");
        if let Err(panic) = std::panic::catch_unwind(|| psgate_lang::fuzzing::prompt_line(&data)) {
            panic!("{} fails again: {panic:?}", path.display());
        }
        count += 1;
    }
    assert!(count >= 10, "no regression inputs in {}", dir.display());
}

mod random {
    use proptest::prelude::*;

    /// Lines made of the language's own pieces, so that most of them parse and run far.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "Get-PSSession", "New-PSSession", "-ComputerName", "-Id", "-Session", "$s", "$_", "|", ";", "(", ")", "{", "}", "$(", "@(", "@{", "=", ",",
            "'x'", "\"a $b\"", "1", "..", "-eq", "-like", "-not", "-and", "+", "*", "where", "%", "?", "select", "sort", "ft", "fl", "gm", "Name", ".",
            "[", "]", "0", "icm", "-AsJob", "exit", "Enter-PSSession", "Get-Job", "Receive-Job", "-f", "'{0}'", "\n", "`", "#", "<#", "#>", "--",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn no_line_made_of_the_languages_pieces_panics(pieces in prop::collection::vec(piece(), 0..24)) {
            psgate_lang::fuzzing::prompt_line(pieces.join(" ").as_bytes());
        }

        #[test]
        fn no_string_panics(line in "\\PC{0,80}") {
            psgate_lang::fuzzing::prompt_line(line.as_bytes());
        }
    }
}
