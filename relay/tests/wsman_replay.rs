//! Real Windows servers, replayed against the WS-Management layer (`psgate_relay::wsman`): every request and every
//! response recorded by pypsrp's tests (`../shared/fixtures/winrm-recorded`, Server 2008 R2 to 2025) parses; for the
//! PowerShell traffic our builders, given the same ids and PSRP payloads, write the same requests (compared by
//! meaning, not byte for byte); every PSRP payload the parsers extract is the one in the recording and decodes with
//! the engine in `shared`; every recorded fault becomes the right typed error.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use common::{Exchange, exchanges, files, fixtures, payloads, recorded_messages};
use psgate_relay::wsman::envelope::{CONFIG_URI, POWERSHELL_URI_PREFIX, SHELL_URI};
use psgate_relay::wsman::xml::{Document, Element};
use psgate_relay::wsman::{
    Action, Body, ClientConfig, CommandStateKind, EnumItem, FaultKind, GetResponse, InputStream, ParsedRequest, Quota,
    Request, Response, ShellRef, ShellState, WsmanError, configuration_uri, parse_response,
};
use psgate_shared::clixml::decode_message;
use psgate_shared::psrp::fragment::Defragmenter;
use psgate_shared::psrp::message::{Message, MessageType};
use uuid::Uuid;

/// Every fault in the recordings: (file, exchange, kind, WSManFault code).
const RECORDED_FAULTS: [(&str, usize, FaultKind, u32); 10] = [
    // A WS-Transfer Get of a shell that has been closed: the nested provider fault's text.
    ("test_psrp_is_alive_invalid_selectors.yml", 4, FaultKind::ShellNotFound, 2150858843),
    // pypsrp sent OperationTimeout PT-1S on purpose: a WS-Management fault that is none of ours.
    ("test_psrp_is_alive_other_wsman_error.yml", 3, FaultKind::Other, 2150858767),
    // A long-running command: two Receives time out, the third gets the output.
    ("test_psrp_long_running_cmdlet.yml", 4, FaultKind::OperationTimeout, 2150858793),
    ("test_psrp_long_running_cmdlet.yml", 5, FaultKind::OperationTimeout, 2150858793),
    // A Receive for a command id the shell does not know.
    ("test_psrp_receive_failure.yml", 3, FaultKind::ShellNotFound, 2150858843),
    ("test_winrs_bad_cmd_id.yml", 2, FaultKind::ShellNotFound, 2150858843),
    // ERROR_INVALID_PARAMETER from the cmd plugin, inside a ProviderFault.
    ("test_winrs_fail_poll_process.yml", 1, FaultKind::Other, 87),
    // 0x80070002 (file not found) from the cmd plugin.
    ("test_winrs_no_cmd_shell.yml", 1, FaultKind::Other, 2147942402),
    ("test_winrs_operation_timeout.yml", 3, FaultKind::OperationTimeout, 2150858793),
    ("test_winrs_operation_timeout.yml", 4, FaultKind::OperationTimeout, 2150858793),
];

/// The one recorded response whose `wsa:RelatesTo` names another request (the recording was edited): the check
/// that a response answers its request must refuse it.
const EDITED_RELATES_TO: (&str, usize) = ("test_winrs_unicode.yml", 4);

#[derive(Debug, Default)]
struct Totals {
    files: BTreeMap<&'static str, usize>,
    exchanges: usize,
    requests_rebuilt: usize,
    responses: BTreeMap<String, usize>,
    faults: Vec<(String, usize, FaultKind, Option<u32>)>,
    psrp_messages: usize,
}

#[test]
fn every_recorded_exchange_parses_and_the_powershell_traffic_replays() {
    let mut totals = Totals::default();
    let mut unreproducible = Vec::new();
    for path in files(&fixtures().join("winrm-recorded"), "yml") {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let recorded = exchanges(&path);
        let parsed: Vec<ParsedRequest> = recorded
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Request::parse(e.request.as_bytes())
                    .unwrap_or_else(|err| panic!("{name} #{i}: the request does not parse: {err}"))
            })
            .collect();
        let psrp = parsed.iter().any(|p| p.request.resource_uri.starts_with(POWERSHELL_URI_PREFIX));
        let winrs = parsed.iter().any(|p| p.request.resource_uri.ends_with("/windows/shell/cmd"));
        *totals
            .files
            .entry(if psrp {
                "PSRP"
            } else if winrs {
                "WinRS"
            } else {
                "configuration only"
            })
            .or_default() += 1;

        let mut to_server = Defragmenter::default();
        let mut to_client = Defragmenter::default();
        let mut messages = Vec::new();
        for (i, (exchange, request)) in recorded.iter().zip(&parsed).enumerate() {
            totals.exchanges += 1;
            let at = format!("{name} #{i}");
            let is_psrp = request.request.resource_uri.starts_with(POWERSHELL_URI_PREFIX);
            if psrp && !winrs {
                match rebuild(request) {
                    Some(built) => {
                        assert_same_xml(&built, &exchange.request, &at);
                        totals.requests_rebuilt += 1;
                    }
                    None => unreproducible.push(at.clone()),
                }
            }
            if is_psrp {
                let sent = request_payloads(&request.request);
                assert_eq!(sent, payloads(&exchange.request), "{at}: the request's PSRP payloads");
                feed(&mut to_server, &sent, &mut messages, &at);
            }
            let received = check_response(exchange, request, &name, i, &mut totals);
            if is_psrp {
                assert_eq!(received, payloads(&exchange.response), "{at}: the response's PSRP payloads");
                feed(&mut to_client, &received, &mut messages, &at);
            }
        }
        // The same messages, in the same order, as shared's reader of the recordings finds.
        let expected: Vec<Vec<u8>> = recorded_messages(&path).into_iter().map(|m| m.raw).collect();
        assert!(
            messages == expected,
            "{name}: {} PSRP messages, shared's reader finds {}",
            messages.len(),
            expected.len()
        );
        totals.psrp_messages += messages.len();
    }

    eprintln!("{totals:#?}");
    assert_eq!(totals.files.get("PSRP"), Some(&43), "{:?}", totals.files);
    assert!(totals.exchanges >= 450, "{totals:?}");
    assert!(totals.psrp_messages >= 560, "{totals:?}");
    // pypsrp's one deliberately invalid request (OperationTimeout PT-1S) cannot be written by a builder that takes a
    // Duration; every other PowerShell request is reproduced.
    assert_eq!(unreproducible, ["test_psrp_is_alive_other_wsman_error.yml #3"]);
    let mut seen: Vec<(String, usize, FaultKind, Option<u32>)> = totals.faults.clone();
    seen.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let expected: Vec<_> = RECORDED_FAULTS.iter().map(|&(f, i, k, c)| (f.to_owned(), i, k, Some(c))).collect();
    assert_eq!(seen, expected, "every recorded fault, classified");
    for action in [
        "Create",
        "Command",
        "Send",
        "Receive",
        "Signal",
        "Delete",
        "Disconnect",
        "Reconnect",
        "Connect",
        "Enumerate",
        "Get",
    ] {
        assert!(totals.responses.contains_key(action), "no {action} response replayed: {:?}", totals.responses);
    }
}

/// Parses a response, checks it answers its request, and returns its PSRP payloads.
fn check_response(
    exchange: &Exchange,
    request: &ParsedRequest,
    file: &str,
    i: usize,
    totals: &mut Totals,
) -> Vec<Vec<u8>> {
    let at = format!("{file} #{i}");
    if exchange.response.is_empty() {
        assert!(exchange.http_error, "{at}: no response recorded");
        return Vec::new();
    }
    match parse_response(exchange.response.as_bytes()) {
        Ok(envelope) => {
            let message_id = request.header.message_id.unwrap_or_else(|| panic!("{at}: no MessageID"));
            let answers = envelope.answers(request.request.action, message_id);
            if (file, i) == EDITED_RELATES_TO {
                assert!(matches!(answers, Err(WsmanError::Mismatch(_))), "{at}: {answers:?}");
            } else {
                answers.unwrap_or_else(|e| panic!("{at}: {e}"));
            }
            *totals.responses.entry(format!("{:?}", envelope.body.action())).or_default() += 1;
            response_payloads(&envelope.body)
        }
        Err(WsmanError::Fault(fault)) => {
            assert!(!fault.text().is_empty() && fault.machine.is_some(), "{at}: {fault:?}");
            assert!(exchange.http_status.is_none_or(|s| s == 500), "{at}");
            totals.faults.push((file.to_owned(), i, fault.kind(), fault.wsman_code));
            Vec::new()
        }
        Err(e) => panic!("{at}: the response does not parse: {e}"),
    }
}

/// Our request for what a recorded one did: the constructor PowerShell's transport will call, given the ids,
/// payloads and timeouts taken from the recording. `None` when the recorded headers cannot be written (PT-1S).
fn rebuild(parsed: &ParsedRequest) -> Option<String> {
    let config: ClientConfig = parsed.header.client_config()?;
    let message_id = parsed.header.message_id?;
    let r = &parsed.request;
    let shell = ShellRef { resource_uri: r.resource_uri.clone(), selectors: r.selectors.clone() };
    let guid = |id: &Option<String>| id.as_deref().map(|s| Uuid::parse_str(s).expect("a GUID"));
    let built = match (&r.action, &r.body) {
        (Action::Create, Body::Shell(s)) => {
            let rpid = guid(&s.shell_id).expect("PowerShell names the shell");
            let mut built = Request::create_pool(
                &r.resource_uri,
                rpid,
                s.creation_xml.as_deref().unwrap_or_default(),
                s.idle_timeout,
            );
            // Options the caller adds (pypsrp's no_profile): protocolversion comes from the constructor.
            for o in r.options.iter().filter(|o| o.name != "protocolversion") {
                built = built.with_option(o.clone());
            }
            built
        }
        (Action::Command, Body::CommandLine { command_id, command, arguments }) => {
            assert!(command.is_empty() && arguments.len() == 1, "{r:?}");
            let fragments = base64::engine::general_purpose::STANDARD.decode(&arguments[0]).expect("base64");
            Request::command(&shell, guid(command_id).expect("a pipeline id"), &fragments)
        }
        (Action::Send, Body::Send { streams }) => {
            let [s] = streams.as_slice() else { panic!("one stream per Send: {r:?}") };
            let stream = if s.name == "pr" { InputStream::Pr } else { InputStream::Stdin };
            assert_eq!(s.name, stream.as_str());
            Request::send(&shell, stream, guid(&s.command_id), &s.data)
        }
        (Action::Receive, Body::Receive { streams, command_id }) => {
            assert_eq!(streams, "stdout");
            Request::receive(&shell, guid(command_id))
        }
        (Action::Signal, Body::Signal { command_id, code }) => {
            Request::signal(&shell, guid(command_id).expect("a pipeline id"), code.clone())
        }
        (Action::Delete, Body::Empty) => Request::delete(&shell),
        (Action::Disconnect, Body::Disconnect { idle_timeout, buffer_mode }) => {
            Request::disconnect(&shell, *idle_timeout, *buffer_mode)
        }
        (Action::Reconnect, Body::Empty) => Request::reconnect(&shell, None),
        (Action::Connect, Body::Connect { command_id: None, connect_xml: Some(xml) }) => {
            Request::connect_pool(&shell, xml)
        }
        (Action::Enumerate, Body::Enumerate { selector_filter: None, .. }) => Request::enumerate_shells(),
        (Action::Enumerate, Body::Enumerate { selector_filter: Some(filter), .. }) => {
            Request::enumerate_commands(&filter[0].value)
        }
        (Action::Get, Body::Empty) if r.resource_uri == CONFIG_URI => Request::get_config(),
        (Action::Get, Body::Empty) if r.resource_uri == SHELL_URI => {
            Request::get_shell(shell.shell_id().expect("a ShellId"))
        }
        other => panic!("no constructor for {other:?}"),
    };
    Some(built.to_xml(&config, message_id))
}

fn request_payloads(r: &Request) -> Vec<Vec<u8>> {
    let b64 = |s: &String| base64::engine::general_purpose::STANDARD.decode(s).expect("base64 arguments");
    let all: Vec<Vec<u8>> = match &r.body {
        Body::Shell(s) => s.creation_xml.iter().cloned().collect(),
        Body::CommandLine { arguments, .. } => arguments.iter().map(b64).collect(),
        Body::Send { streams } => streams.iter().map(|s| s.data.clone()).collect(),
        Body::Connect { connect_xml, .. } => connect_xml.iter().cloned().collect(),
        _ => Vec::new(),
    };
    all.into_iter().filter(|p| !p.is_empty()).collect()
}

fn response_payloads(r: &Response) -> Vec<Vec<u8>> {
    let all: Vec<Vec<u8>> = match r {
        Response::Receive(r) => r.streams.iter().map(|s| s.data.clone()).collect(),
        Response::Connect(c) => c.connect_response_xml.iter().cloned().collect(),
        _ => Vec::new(),
    };
    all.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Reassembles PSRP messages and decodes each one's CLIXML with the engine in `shared`.
fn feed(defrag: &mut Defragmenter, packets: &[Vec<u8>], out: &mut Vec<Vec<u8>>, at: &str) {
    for packet in packets {
        for raw in defrag.feed(packet).unwrap_or_else(|e| panic!("{at}: {e}")) {
            let m = Message::parse(&raw).unwrap_or_else(|e| panic!("{at}: {e}"));
            if m.data.is_empty() {
                assert_eq!(m.message_type, MessageType::EndOfPipelineInput, "{at}");
            } else {
                decode_message(m.data).unwrap_or_else(|e| panic!("{at} {:?}: {e}", m.message_type));
            }
            out.push(raw);
        }
    }
}

/// Asserts that two envelopes mean the same: the same elements (by namespace and local name), attributes (not the
/// namespace declarations, in any order) and trimmed text, in the same order.
fn assert_same_xml(ours: &str, recorded: &str, at: &str) {
    let (a, b) = (canonical(ours), canonical(recorded));
    if a != b {
        let line = a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(0);
        panic!("{at}: our request differs from the recording at line {line}:\nours:\n{a}\nrecorded:\n{b}");
    }
}

fn canonical(xml: &str) -> String {
    let doc = Document::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let mut out = String::new();
    write_canonical(doc.root(), 0, &mut out);
    out
}

fn write_canonical(e: Element<'_>, depth: usize, out: &mut String) {
    let mut attrs: Vec<String> = e
        .attributes()
        .iter()
        .map(|a| format!("{{{}}}{}={:?}", a.namespace.as_deref().unwrap_or_default(), a.name, a.value))
        .collect();
    attrs.sort();
    let _ = writeln!(
        out,
        "{:depth$}{{{}}}{} [{}] {:?}",
        "",
        e.namespace().unwrap_or_default(),
        e.name(),
        attrs.join(" "),
        e.text()
    );
    for c in e.children() {
        write_canonical(c, depth + 1, out);
    }
}

#[test]
fn disconnected_shells_are_enumerated_and_connected_from_a_new_client() {
    let path = fixtures().join("winrm-recorded/test_psrp_disconnect_runspaces.yml");
    let mut states = Vec::new();
    let mut connect_messages = Vec::new();
    for (i, e) in exchanges(&path).iter().enumerate() {
        let Ok(envelope) = parse_response(e.response.as_bytes()) else { panic!("#{i}") };
        match envelope.body {
            Response::Enumerate(list) => {
                assert!(list.end_of_sequence && list.context.is_none(), "an optimised enumeration is complete");
                for item in list.items {
                    let EnumItem::Shell(shell) = item else { panic!("{item:?}") };
                    assert_eq!(shell.resource_uri.as_deref(), Some(configuration_uri("Microsoft.PowerShell").as_str()));
                    states.push(shell.state);
                }
            }
            Response::Connect(c) => {
                assert_eq!(c.input_streams.as_deref(), Some("stdin pr"));
                let mut defrag = Defragmenter::default();
                for raw in defrag.feed(&c.connect_response_xml.expect("connectResponseXml")).expect("fragments") {
                    connect_messages.push(Message::parse(&raw).expect("a message").message_type);
                }
            }
            _ => {}
        }
    }
    assert_eq!(states, [Some(ShellState::Disconnected), Some(ShellState::Disconnected)]);
    // Two pools connected, each answered with the server's capability and its pool's init data.
    assert_eq!(
        connect_messages,
        [
            MessageType::SessionCapability,
            MessageType::RunspacePoolInitData,
            MessageType::SessionCapability,
            MessageType::RunspacePoolInitData
        ]
    );
}

#[test]
fn the_servers_envelope_size_sizes_the_fragments() {
    let shell = ShellRef::new(configuration_uri("Microsoft.PowerShell"), "76056A84-51DC-4F24-9262-CA2A55464B2B");
    for kb in [150u32, 500, 4096] {
        let path = fixtures().join(format!("winrm-recorded/test_wsman_update_envelope_size_{kb}.yml"));
        let [exchange] = exchanges(&path).try_into().expect("one exchange");
        let request = Request::parse(exchange.request.as_bytes()).expect("request");
        assert_eq!(rebuild(&request).map(|x| canonical(&x)), Some(canonical(&exchange.request)));
        let envelope = parse_response(exchange.response.as_bytes()).expect("response");
        let Response::Get(GetResponse::Config(config)) = envelope.body else { panic!("{envelope:?}") };
        assert_eq!(config.max_envelope_size(), Some(kb * 1024));
        assert_eq!((config.max_timeout_ms, config.max_concurrent_operations_per_user), (Some(60000), Some(1500)));
        let mut client = request.header.client_config().expect("config");
        client.max_envelope_size = config.max_envelope_size().expect("size");
        let fragment = client.max_fragment_size(&shell).expect("room for fragments");
        // About three quarters of the envelope, less the envelope itself and the margin.
        assert!(fragment < kb as usize * 768 && fragment > kb as usize * 768 - 2000, "{kb} KiB: {fragment}");
    }
}

#[test]
fn receive_responses_carry_command_state_and_exit_code() {
    let path = fixtures().join("winrm-recorded/test_psrp_stream_output_invocation.yml");
    let mut done = 0;
    for e in exchanges(&path) {
        if let Ok(envelope) = parse_response(e.response.as_bytes())
            && let Response::Receive(r) = envelope.body
            && let Some(state) = r.command_state
        {
            assert!(state.command_id.is_some());
            if state.state == CommandStateKind::Done {
                assert_eq!(state.exit_code, Some(0));
                done += 1;
            }
        }
    }
    assert_eq!(done, 1, "the pipeline finished once");
}

/// WinRb's response templates (`wsman-templates`): more servers' layouts, OMI's among them, and a quota fault.
#[test]
fn template_responses_parse_and_their_faults_are_classified() {
    let dir = fixtures().join("wsman-templates/responses");
    let mut seen = 0;
    for path in std::fs::read_dir(&dir).expect("templates").map(|e| e.expect("entry").path()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let text = std::fs::read_to_string(&path).expect("readable");
        let text = fill_template(&text);
        seen += 1;
        let result = parse_response(text.as_bytes());
        match name.as_str() {
            "wmi_error_v2.xml" => {
                let fault = result.expect_err("a fault");
                assert_eq!(fault.fault_kind(), Some(FaultKind::Quota(Quota::MaxShellsPerUser)), "{fault}");
                let f = fault.fault().expect("fault");
                assert_eq!(f.wsman_code, Some(2150859173));
                assert!(f.text().contains("maximum number of 30 concurrent shells"), "{f}");
                assert!(fault.to_string().contains("MaxShellsPerUser"), "{fault}");
            }
            "soap_fault_v1.xml" | "soap_fault_v2.xml" => {
                let f = result.expect_err("a fault");
                let f = f.fault().expect("fault");
                assert_eq!(
                    (f.kind(), f.wsman_code, f.subcode.as_deref()),
                    (FaultKind::Other, Some(2150858778), Some("n:CannotProcessFilter"))
                );
                assert_eq!(f.text(), "The specified class does not exist in the given namespace.");
            }
            "soap_fault_omi.xml" | "get_omi_config_response.xml" => {
                let f = result.expect_err("a fault");
                let f = f.fault().expect("fault");
                assert_eq!((f.kind(), f.wsman_code), (FaultKind::Other, None));
                assert_eq!(f.text(), "get-instance: instance name parameter is missing");
            }
            _ if name.starts_with("open_shell") => {
                let envelope = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let Response::Create(created) = envelope.body else { panic!("{name}: {envelope:?}") };
                assert!(created.shell_id().is_some_and(|id| id.len() >= 36), "{name}: {created:?}");
                let shell =
                    ShellRef::from_created("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd", &created);
                assert_eq!(shell.shell_id(), created.shell_id());
            }
            _ => {
                let envelope = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let Response::Receive(r) = envelope.body else { panic!("{name}: {envelope:?}") };
                assert!(r.streams.iter().all(|s| s.data.is_empty() || s.data == b"hello"), "{name}: {r:?}");
            }
        }
    }
    assert_eq!(seen, 16);
}

/// The ERB placeholders of the templates, filled: ids with a GUID, output with base64 of "hello".
fn fill_template(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<%=") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("%>").map_or(rest.len(), |e| start + e + 2);
        out.push_str(if rest[start..end].contains("command_id") {
            "1B4E1AE1-1A3C-4F3E-B1C5-4C6E2A1D9F00"
        } else {
            "aGVsbG8="
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The comparison is strict enough to matter: leaving out pypsrp's keep-alive option, or sending PowerShell's stop
/// code where pypsrp sent its own, is a difference.
#[test]
fn a_request_that_differs_from_the_recording_is_caught() {
    let path = fixtures().join("winrm-recorded/test_psrp_open_runspace.yml");
    let recorded =
        exchanges(&path).into_iter().map(|e| e.request).find(|r| r.contains("shell/Receive<")).expect("a Receive");
    let parsed = Request::parse(recorded.as_bytes()).expect("parses");
    let config = parsed.header.client_config().expect("config");
    let message_id = parsed.header.message_id.expect("id");
    let shell =
        ShellRef { resource_uri: parsed.request.resource_uri.clone(), selectors: parsed.request.selectors.clone() };
    assert_eq!(canonical(&Request::receive(&shell, None).to_xml(&config, message_id)), canonical(&recorded));
    let mut without_option = Request::receive(&shell, None);
    without_option.options.clear();
    assert_ne!(canonical(&without_option.to_xml(&config, message_id)), canonical(&recorded));
    assert_ne!(canonical(&Request::receive(&shell, None).to_xml(&config, Uuid::nil())), canonical(&recorded));
}
