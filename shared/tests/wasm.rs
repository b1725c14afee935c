#![cfg(target_arch = "wasm32")]
//! The codec as WebAssembly in a real browser: real PowerShell output decodes to the same values as natively,
//! errors carry their position, and hostile nesting is refused instead of crashing the page.
//!
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p psgate-shared --target wasm32-unknown-unknown --test wasm`
//! (the runner is `wasm-bindgen-test-runner`, from .cargo/config.toml; `webdriver.json` beside Cargo.toml keeps
//! Chromium off the network).

use std::sync::Arc;

use psgate_shared::clixml::{
    DEFAULT_MAX_DEPTH, DecodeErrorKind, Limits, ProgressRecordType, Value, decode_document, decode_document_with,
    decode_message,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const STDERR_WITH_ERROR: &str = include_str!("../test_data/clixml/test_sanitise_clixml_with_error.xml");
const ERROR_RECORD: &[u8] = include_bytes!("../test_data/clixml/psrp_error_record.xml");
const WARNING_RECORD: &[u8] = include_bytes!("../test_data/clixml/psrp_warning_record.xml");
const PROGRESS_RECORD: &[u8] = include_bytes!("../test_data/clixml/psrp_progress_record.xml");

/// Really in a browser page, not in Node: there is a `window` with a `document`.
#[wasm_bindgen_test]
fn runs_in_a_browser() {
    let global = js_sys::global();
    let window = js_sys::Reflect::get(&global, &"window".into()).expect("window");
    let document = js_sys::Reflect::get(&window, &"document".into()).expect("document");
    assert!(document.is_object(), "no DOM: not running in a browser");
    let agent = js_sys::Reflect::get(
        &js_sys::Reflect::get(&window, &"navigator".into()).expect("navigator"),
        &"userAgent".into(),
    )
    .expect("userAgent")
    .as_string()
    .unwrap_or_default();
    assert!(agent.contains("Chrome"), "{agent}");
}

#[wasm_bindgen_test]
fn powershell_stderr_with_progress_and_an_error() {
    let doc = decode_document(STDERR_WITH_ERROR.as_bytes()).expect("decodes");
    assert!(doc.clixml_header);
    assert_eq!(doc.items.len(), 10);

    let first = &doc.items[0];
    assert_eq!(first.stream.as_deref(), Some("progress"));
    let obj = first.value.as_object().expect("an object");
    assert!(obj.is_type("System.Management.Automation.PSCustomObject"));
    assert_eq!(obj.property("SourceId"), Some(&Value::I64(1)));
    let Some(Value::Progress(pr)) = obj.property("Record") else { panic!("Record is not a progress record") };
    assert_eq!(pr.activity, "Preparing modules for first use.");
    assert_eq!((pr.activity_id, pr.parent_activity_id, pr.percent_complete), (0, -1, -1));
    assert_eq!(pr.record_type, ProgressRecordType::Completed);
    assert_eq!(pr.current_operation, None);

    // The second object names its types with <TNRef>: the same list, shared.
    let second = doc.items[1].value.as_object().expect("an object");
    let (a, b) = (obj.type_names.as_ref().expect("TN"), second.type_names.as_ref().expect("TNRef"));
    assert!(Arc::ptr_eq(a, b));

    let error: String = doc.items[2..]
        .iter()
        .inspect(|i| assert_eq!(i.stream.as_deref(), Some("Error")))
        .map(|i| i.value.as_str().expect("a string"))
        .collect();
    assert!(error.starts_with("fake : The term 'fake' is not recognized as the name of a cmdlet"), "{error}");
    assert!(error.contains("Check \r\nthe spelling"), "_x000D__x000A_ is CR LF: {error:?}");
    assert!(error.contains("+ FullyQualifiedErrorId : CommandNotFoundException\r\n"));
}

#[wasm_bindgen_test]
fn a_psrp_error_record_message() {
    assert!(ERROR_RECORD.starts_with(b"\xEF\xBB\xBF"), "Windows writes a BOM");
    let v = decode_message(ERROR_RECORD).expect("decodes");
    let rec = v.as_object().expect("an object");
    assert!(rec.is_type("System.Management.Automation.ErrorRecord"));
    assert_eq!(rec.to_string.as_deref(), Some("error stream"));
    assert_eq!(
        rec.property("FullyQualifiedErrorId").and_then(Value::as_str),
        Some("Microsoft.PowerShell.Commands.WriteErrorException")
    );
    assert_eq!(
        rec.property("ErrorCategory_Message").and_then(Value::as_str),
        Some("NotSpecified: (:) [Write-Error], WriteErrorException")
    );
    assert_eq!(
        rec.property("ErrorDetails_ScriptStackTrace").and_then(Value::as_str),
        Some("at <ScriptBlock>, <No file>: line 5")
    );
    assert_eq!(rec.property("writeErrorStream").and_then(Value::as_bool), Some(true));
    let exception = rec.property("Exception").and_then(Value::as_object).expect("Exception");
    assert_eq!(exception.property("Message").and_then(Value::as_str), Some("error stream"));
    assert_eq!(exception.property("HResult").and_then(Value::as_i64), Some(-2146233087));
    let invocation = rec.property("InvocationInfo").and_then(Value::as_object).expect("InvocationInfo");
    let script = invocation.property("MyCommand").and_then(Value::as_str).expect("MyCommand");
    assert!(script.starts_with("$DebugPreference = 'Continue'\n"), "_x000A_ is LF: {script:?}");
}

#[wasm_bindgen_test]
fn a_psrp_warning_record_message() {
    let v = decode_message(WARNING_RECORD).expect("decodes");
    let rec = v.as_object().expect("an object");
    assert!(rec.is_type("System.Management.Automation.InformationalRecord"));
    assert_eq!(rec.property("InformationalRecord_Message").and_then(Value::as_str), Some("warning stream"));
    let iterations = rec.property("InvocationInfo_PipelineIterationInfo").and_then(Value::as_object).expect("a list");
    assert_eq!(
        iterations.content,
        psgate_shared::clixml::Content::List(psgate_shared::clixml::ListKind::List, vec![Value::I32(0), Value::I32(0)])
    );
    let origin = rec.property("InvocationInfo_CommandOrigin").and_then(Value::as_object).expect("an enum");
    assert!(origin.is_enum());
    assert_eq!((origin.to_string.as_deref(), origin.primitive()), (Some("Runspace"), Some(&Value::I32(0))));
}

#[wasm_bindgen_test]
fn a_psrp_progress_record_message() {
    let v = decode_message(PROGRESS_RECORD).expect("decodes");
    let rec = v.as_object().expect("an object");
    assert_eq!(rec.property("Activity").and_then(Value::as_str), Some("Preparing modules for first use."));
    assert_eq!(rec.property("PercentComplete").and_then(Value::as_i64), Some(-1));
    assert_eq!(rec.property("CurrentOperation"), Some(&Value::Nil));
    assert_eq!(rec.property("Type").and_then(Value::as_i64), Some(1));
}

#[wasm_bindgen_test]
fn an_invalid_value_is_refused_with_its_line_and_column() {
    let input = "#< CLIXML\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">\n  <I32>12x</I32>\n</Objs>";
    let e = decode_document(input.as_bytes()).expect_err("12x is no Int32");
    assert_eq!(e.kind, DecodeErrorKind::InvalidValue { type_name: "I32", text: "12x".into() });
    assert_eq!((e.position.line, e.position.column), (3, 8));
    assert_eq!(&input[e.position.offset..][..3], "12x");
    assert_eq!(e.to_string(), "invalid I32 value \"12x\" at line 3, column 8 (byte 98)");
}

#[wasm_bindgen_test]
fn a_mismatched_end_tag_is_refused_where_it_is() {
    let e = decode_document(b"<Objs>\n<S>a</I32></Objs>").expect_err("mismatched");
    assert_eq!(e.kind, DecodeErrorKind::MismatchedEnd { expected: "S".into(), found: "I32".into() });
    assert_eq!((e.position.line, e.position.column), (2, 5));
}

fn nested(levels: usize) -> String {
    let mut s = String::with_capacity(levels * 30);
    s.push_str("<Objs>");
    for i in 0..levels {
        s.push_str(&format!("<Obj RefId=\"{i}\"><LST>"));
    }
    for _ in 0..levels {
        s.push_str("</LST></Obj>");
    }
    s.push_str("</Objs>");
    s
}

fn depth_of(v: &Value) -> usize {
    let mut depth = 0;
    let mut v = v;
    while let Some(psgate_shared::clixml::Content::List(_, items)) = v.as_object().map(|o| &o.content) {
        depth += 1;
        match items.first() {
            Some(next) => v = next,
            None => break,
        }
    }
    depth
}

#[wasm_bindgen_test]
fn nesting_up_to_the_limit_decodes() {
    // An object and its list are two levels each.
    let levels = DEFAULT_MAX_DEPTH / 2;
    let doc = decode_document(nested(levels).as_bytes()).expect("within the limit");
    assert_eq!(depth_of(&doc.items[0].value), levels);
}

#[wasm_bindgen_test]
fn hostile_nesting_is_refused_not_a_crash() {
    let e = decode_document(nested(DEFAULT_MAX_DEPTH / 2 + 1).as_bytes()).expect_err("one level too deep");
    assert_eq!(e.kind, DecodeErrorKind::TooDeep(DEFAULT_MAX_DEPTH));

    // 100 000 levels: far more than the browser's call stack could hold if the decoder recursed per level.
    let e = decode_document(nested(100_000).as_bytes()).expect_err("far too deep");
    assert_eq!(e.kind, DecodeErrorKind::TooDeep(DEFAULT_MAX_DEPTH));
    assert_eq!(e.position.line, 1);
}

#[wasm_bindgen_test]
fn a_tighter_limit_is_honoured() {
    let limits = Limits { max_depth: 8, ..Limits::default() };
    assert!(decode_document_with(nested(4).as_bytes(), limits).is_ok());
    let e = decode_document_with(nested(5).as_bytes(), limits).expect_err("deeper than 8");
    assert_eq!(e.kind, DecodeErrorKind::TooDeep(8));
}

#[wasm_bindgen_test]
fn a_truncated_document_says_where_it_ended() {
    let input = &STDERR_WITH_ERROR[..STDERR_WITH_ERROR.find("<S S=\"Error\">").expect("an error line")];
    let e = decode_document(input.as_bytes()).expect_err("no </Objs>");
    assert!(matches!(e.kind, DecodeErrorKind::UnexpectedEof(ref tag) if tag == "Objs"), "{:?}", e.kind);
    assert_eq!(e.position.line, input.lines().count() + 1);
}
