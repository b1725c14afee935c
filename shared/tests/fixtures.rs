//! Recorded traffic from real Windows PowerShell servers (`../shared/fixtures`, beside the repository):
//! every PSRP message in every WinRM recording, and every CLIXML document, decodes, and survives our
//! encoder unchanged in meaning.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{files, fixtures, recorded_messages};
use psgate_shared::clixml::{self, decode_document, decode_message, encode_document, encode_message};
use psgate_shared::psrp::message::{Destination, MessageType};

#[test]
fn every_recorded_psrp_message_decodes_and_round_trips() {
    let dir = fixtures().join("winrm-recorded");
    let mut total = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for path in files(&dir, "yml") {
        for m in recorded_messages(&path) {
            let (dest, kind, body) = (m.destination, m.message_type, m.body);
            if body.is_empty() {
                // END_OF_PIPELINE_INPUT is the one message without a body (MS-PSRP 2.2.2.18).
                assert_eq!(kind, MessageType::EndOfPipelineInput, "{}: empty {kind:?}", path.display());
                continue;
            }
            assert!(body.starts_with(b"\xEF\xBB\xBF") || dest == Destination::Server, "Windows writes a BOM: {}", path.display());
            let value = decode_message(&body).unwrap_or_else(|e| {
                panic!("{} {kind:?}: {e}\n{}", path.display(), String::from_utf8_lossy(&body))
            });
            let again = encode_message(&value).expect("encodes");
            let back = decode_message(again.as_bytes()).expect("our encoding decodes");
            assert_eq!(back, value, "{} {kind:?} changed in a round trip", path.display());
            kinds.insert(format!("{kind:?}"));
            total += 1;
        }
    }
    // The recordings hold 560 messages with a body; every type below must have been seen.
    assert!(total >= 560, "only {total} messages found");
    eprintln!("{total} recorded messages of {} types decoded and round-tripped", kinds.len());
    for expected in ["SessionCapability", "InitRunspacePool", "ApplicationPrivateData", "CreatePipeline", "PipelineOutput",
        "PipelineState", "ErrorRecord", "PipelineHostCall", "PipelineHostResponse", "PublicKey", "EncryptedSessionKey",
        "ConnectRunspacePool", "RunspacePoolInitData", "ProgressRecord", "InformationRecord"] {
        assert!(kinds.contains(expected), "no {expected} message in the recordings: {kinds:?}");
    }
}

#[test]
fn recorded_clixml_documents_decode_and_round_trip() {
    let docs = files(&fixtures().join("clixml"), "xml");
    assert!(!docs.is_empty());
    for path in docs {
        let bytes = std::fs::read(&path).expect("readable");
        let doc = decode_document(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(doc.clixml_header && !doc.items.is_empty(), "{}", path.display());
        let again = encode_document(&doc).expect("encodes");
        assert_eq!(decode_document(again.as_bytes()).expect("re-decodes"), doc, "{}", path.display());
    }
}

#[test]
fn a_recorded_error_record_reads_like_powershell_shows_it() {
    let path = fixtures().join("clixml/test_sanitise_clixml_with_error.xml");
    let doc = decode_document(&std::fs::read(path).expect("readable")).expect("decodes");
    let errors: String = doc
        .items
        .iter()
        .filter(|i| i.stream.as_deref() == Some("Error"))
        .filter_map(|i| i.value.as_str())
        .collect();
    assert!(errors.starts_with("fake : The term 'fake' is not recognized"), "{errors}");
    assert!(errors.contains("\r\n+ fake cmdlet\r\n"), "{errors:?}");
    let progress = doc.items[0].value.as_object().and_then(|o| o.property("Record")).expect("a progress record");
    let clixml::Value::Progress(pr) = progress else { panic!("{progress:?}") };
    assert_eq!(pr.activity, "Preparing modules for first use.");
    assert_eq!(pr.record_type, clixml::ProgressRecordType::Completed);
}
