//! The decoder against CLIXML written by an independent implementation, psrpcore 0.3.1.
//!
//! Every `test_data/golden/<case>.xml` must decode to exactly `<case>.json` (see the README there; the files come
//! from `tests/psrpcore/gen_golden.py`). `doc_*` cases are `<Objs>` documents, the others single PSRP messages.
//! Values are compared as parsed JSON in the expanded form (shared objects in full), object keys in order. Numbers
//! compare by value: JSON has one number type, and Python writes the double 1 as `1.0` where we write `1`; the sign
//! of a zero still counts.
#![cfg(not(target_arch = "wasm32"))] // reads files

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use psgate_shared::clixml::json::{WriteOptions, Writer};
use psgate_shared::clixml::{decode_document, decode_message};
use serde_json::Value as Json;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join("golden")
}

#[test]
fn decoder_matches_psrpcore_goldens() {
    let dir = golden_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases in {}: run `$PSGATE_PYTHON tests/psrpcore/gen_golden.py`",
        dir.display()
    );

    let failures: Vec<String> = cases.iter().filter_map(|xml| check(xml).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// One case: decode `<case>.xml`, compare each object with the matching line of `<case>.json`.
fn check(xml_path: &Path) -> Result<(), String> {
    let name = xml_path.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_owned();
    let fail = |msg: String| format!("[{name}] {msg}");
    let xml = std::fs::read(xml_path).map_err(|e| fail(format!("reading {}: {e}", xml_path.display())))?;
    let json_path = xml_path.with_extension("json");
    let expected_text =
        std::fs::read_to_string(&json_path).map_err(|e| fail(format!("reading {}: {e}", json_path.display())))?;

    let mut writer = Writer::new(WriteOptions { expand_refs: true });
    let actual_lines: Vec<String> = if name.starts_with("doc_") {
        let doc = decode_document(&xml).map_err(|e| fail(format!("decode_document failed: {e}")))?;
        doc.items.iter().map(|item| writer.item(item)).collect()
    } else {
        let value = decode_message(&xml).map_err(|e| fail(format!("decode_message failed: {e}")))?;
        vec![writer.value_json(&value)]
    };
    let expected_lines: Vec<&str> = expected_text.lines().filter(|l| !l.trim().is_empty()).collect();
    if actual_lines.len() != expected_lines.len() {
        return Err(fail(format!(
            "{} objects decoded, {} expected\n  ours:     {}\n  expected: {}",
            actual_lines.len(),
            expected_lines.len(),
            actual_lines.join("\n            "),
            expected_lines.join("\n            "),
        )));
    }
    for (i, (actual, expected)) in actual_lines.iter().zip(&expected_lines).enumerate() {
        let a: Json = serde_json::from_str(actual)
            .map_err(|e| fail(format!("line {}: our JSON does not parse: {e}: {actual}", i + 1)))?;
        let b: Json = serde_json::from_str(expected)
            .map_err(|e| fail(format!("line {}: expected JSON does not parse: {e}", i + 1)))?;
        let mut at = String::from("$");
        if !same(&a, &b, &mut at) {
            return Err(fail(format!("line {}: differs at {at}\n  ours:     {actual}\n  expected: {expected}", i + 1)));
        }
    }
    Ok(())
}

/// Equality of parsed JSON (see the module doc); on a difference `at` is left pointing at it.
fn same(a: &Json, b: &Json, at: &mut String) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y && x.is_sign_negative() == y.is_sign_negative(),
                _ => false,
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            if x.len() != y.len() {
                let _ = write!(at, " (length {} vs {})", x.len(), y.len());
                return false;
            }
            let len = at.len();
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                let _ = write!(at, "[{i}]");
                if !same(p, q, at) {
                    return false;
                }
                at.truncate(len);
            }
            true
        }
        (Json::Object(x), Json::Object(y)) => {
            let (kx, ky): (Vec<&String>, Vec<&String>) = (x.keys().collect(), y.keys().collect());
            if kx != ky {
                let _ = write!(at, " (keys {kx:?} vs {ky:?})");
                return false;
            }
            let len = at.len();
            for (k, p) in x {
                let _ = write!(at, ".{k}");
                if !same(p, &y[k], at) {
                    return false;
                }
                at.truncate(len);
            }
            true
        }
        _ => a == b,
    }
}
