//! Reading the recorded Windows traffic in `../shared/fixtures` (beside the repository).
//!
//! Shared by the test binaries of two crates: shared's (`mod common;`) and the relay's WS-Management replay
//! (`relay/tests/wsman_replay.rs`, through `#[path]`), so that both read the recordings the same way.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use psgate_shared::psrp::fragment::Defragmenter;
use psgate_shared::psrp::message::{Destination, Message, MessageType};
use quick_xml::events::Event;
use uuid::Uuid;

/// `$PSGATE_SHARED/fixtures` (scripts/env.sh sets it), else `../shared/fixtures` beside the repository.
pub fn fixtures() -> PathBuf {
    let shared = std::env::var_os("PSGATE_SHARED").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let root = shared.join("fixtures");
    assert!(root.is_dir(), "the shared fixtures must sit beside the repository (or PSGATE_SHARED name their folder): {}", root.display());
    root
}

pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// The base64 PSRP payloads of one SOAP envelope, in document order.
pub fn payloads(soap: &str) -> Vec<Vec<u8>> {
    const PSRP_ELEMENTS: [&str; 5] = ["creationXml", "Arguments", "Stream", "connectXml", "connectResponseXml"];
    let mut reader = quick_xml::Reader::from_str(soap);
    let mut out = Vec::new();
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("SOAP does not parse: {e}")) {
            Event::Start(e) if PSRP_ELEMENTS.contains(&e.local_name().as_ref()) => {
                inside = true;
                text.clear();
            }
            Event::Text(t) if inside => text.push_str(&t),
            Event::End(e) if inside && PSRP_ELEMENTS.contains(&e.local_name().as_ref()) => {
                inside = false;
                let b64: String = text.split_whitespace().collect();
                if !b64.is_empty() {
                    out.push(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"));
                }
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

/// One recorded PSRP message.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub destination: Destination,
    pub message_type: MessageType,
    pub rpid: Uuid,
    pub pid: Uuid,
    pub body: Vec<u8>,
    /// The whole message, header included.
    pub raw: Vec<u8>,
}

/// One request and its response, as a recording holds them.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub request: String,
    /// Empty when the recording has none (`http_error`).
    pub response: String,
    /// `transport_error: {protocol: http, code: N}`: the response came with this HTTP status.
    pub http_status: Option<i64>,
    /// `http_error: yes`: the request failed at the HTTP level, without a response.
    pub http_error: bool,
}

/// The exchanges of one recording (its `messages:`), in the order they happened.
pub fn exchanges(path: &Path) -> Vec<Exchange> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let messages = docs[0]["messages"].as_vec().cloned().unwrap_or_default();
    messages
        .iter()
        .map(|m| Exchange {
            request: m["request"].as_str().unwrap_or_default().to_owned(),
            response: m["response"].as_str().unwrap_or_default().to_owned(),
            http_status: m["transport_error"]["code"].as_i64(),
            http_error: m["http_error"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// Every PSRP message of one recording, in the order they travelled.
pub fn recorded_messages(path: &Path) -> Vec<Recorded> {
    let mut to_server = Defragmenter::default();
    let mut to_client = Defragmenter::default();
    let mut out = Vec::new();
    for exchange in exchanges(path) {
        let request = exchange.request.as_str();
        // WinRS (cmd.exe) shells carry plain console output, not PSRP.
        if !request.contains("http://schemas.microsoft.com/powershell/") {
            continue;
        }
        let response = exchange.response.as_str();
        for (soap, defrag) in [(request, &mut to_server), (response, &mut to_client)] {
            for packet in payloads(soap) {
                let messages = defrag.feed(&packet).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                for raw in messages {
                    let m = Message::parse(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    out.push(Recorded {
                        destination: m.destination,
                        message_type: m.message_type,
                        rpid: m.rpid,
                        pid: m.pid,
                        body: m.data.to_vec(),
                        raw: raw.clone(),
                    });
                }
            }
        }
    }
    out
}
