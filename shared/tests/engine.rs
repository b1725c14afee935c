//! The client engine against recorded Windows sessions: what our pool sends has the recorded shape,
//! and everything the real servers sent back is understood, in order, into the events a user sees.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;

use common::{Recorded, files, fixtures, recorded_messages};
use psgate_shared::clixml::{Value, Version, decode_message};
use psgate_shared::psrp::fragment::{self, Defragmenter};
use psgate_shared::psrp::host::{HostMethod, HostResult};
use psgate_shared::psrp::message::{Destination, Message, MessageType};
use psgate_shared::psrp::messages::{ErrorRecordView, PipelineSpec, PipelineState, PoolState};
use psgate_shared::psrp::pool::{Event, PoolConfig, RecordKind, RunspacePool};
use uuid::Uuid;

struct Replay {
    pool: RunspacePool,
    events: Vec<Event>,
    sent: Vec<MessageType>,
}

/// Plays a recording: a pool with the recorded id, each recorded pipeline created with its recorded
/// id when the client created it, and every server message fed in order (re-fragmented, 1 KiB
/// fragments so that reassembly is exercised). The session-key reply is skipped: it was encrypted
/// for the recording client's own random key.
fn replay(name: &str) -> Replay {
    let messages = recorded_messages(&fixtures().join("winrm-recorded").join(name));
    let rpid = messages.iter().map(|m| m.rpid).find(|id| !id.is_nil()).expect("a pool id");
    let mut pool = RunspacePool::new(PoolConfig::new(rpid));
    let mut sent = Vec::new();
    let mut created = HashSet::new();
    let mut object_id = 1000;
    let mut events = Vec::new();
    for m in &messages {
        match m.destination {
            Destination::Server => match m.message_type {
                MessageType::SessionCapability if pool.state() == PoolState::BeforeOpen => {
                    if messages.iter().any(|x| x.message_type == MessageType::ConnectRunspacePool) {
                        pool.connect().expect("connects");
                    } else {
                        pool.open().expect("opens");
                    }
                }
                MessageType::CreatePipeline if created.insert(m.pid) => {
                    pool.create_pipeline(m.pid, &PipelineSpec::script("recorded")).expect("pipeline");
                }
                MessageType::GetCommandMetadata if created.insert(m.pid) => {
                    pool.get_command_metadata(m.pid, &["recorded"]).expect("metadata");
                }
                _ => {}
            },
            Destination::Client => {
                if m.message_type == MessageType::EncryptedSessionKey {
                    continue;
                }
                let mut packet = Vec::new();
                fragment::write(&mut packet, object_id, &m.raw, 1024);
                object_id += 1;
                pool.receive(&packet).unwrap_or_else(|e| panic!("{name}: {:?} not understood: {e}", m.message_type));
            }
        }
        while let Some(out) = pool.poll_send() {
            for raw in Defragmenter::default().feed(&out.data).expect("our fragments reassemble") {
                let msg = Message::parse(&raw).expect("our header parses");
                assert_eq!(msg.rpid, rpid);
                assert_eq!(out.pipeline, (msg.message_type == MessageType::CreatePipeline).then_some(msg.pid).or(out.pipeline));
                if !msg.data.is_empty() {
                    decode_message(msg.data).expect("our bodies decode");
                }
                sent.push(msg.message_type);
            }
        }
        while let Some(e) = pool.poll_event() {
            events.push(e);
        }
    }
    Replay { pool, events, sent }
}

fn recorded(name: &str) -> Vec<Recorded> {
    recorded_messages(&fixtures().join("winrm-recorded").join(name))
}

#[test]
fn opening_matches_windows_and_reads_its_answers() {
    let r = replay("test_psrp_open_runspace.yml");
    assert_eq!(r.sent, [MessageType::SessionCapability, MessageType::InitRunspacePool], "the recorded client sent these two, together");
    assert_eq!(r.pool.state(), PoolState::Opened);
    assert_eq!(r.pool.protocol(), Version::new(2, 3));
    assert!(matches!(r.events[0], Event::PoolState { state: PoolState::Opening, .. }));
    assert!(r.events.iter().any(|e| matches!(e, Event::Negotiated(c) if c.protocol == Version::new(2, 3))));
    let table = r.pool.ps_version_table().expect("the remote $PSVersionTable");
    let text = format!("{table:?}");
    assert!(text.contains("PSVersion") && text.contains("PSRemotingProtocolVersion"), "{text}");
}

#[test]
fn older_servers_are_accepted_at_their_version() {
    let r = replay("test_psrp_run_protocol_version_2.2.yml");
    assert_eq!(r.pool.state(), PoolState::Opened);
    assert_eq!(r.pool.protocol(), Version::new(2, 2));
    assert!(!r.pool.plain_secure_strings());
}

#[test]
fn every_stream_of_a_pipeline_arrives_in_order() {
    let r = replay("test_psrp_stream_output_invocation.yml");
    let kinds: Vec<String> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Output { .. } => Some("output".to_owned()),
            Event::Record { kind, .. } => Some(format!("{kind:?}")),
            Event::PipelineState { state, .. } => Some(format!("{state:?}")),
            _ => None,
        })
        .collect();
    for expected in ["Verbose", "Debug", "Warning", "Error", "Information", "Progress", "output", "Completed"] {
        assert!(kinds.iter().any(|k| k == expected), "no {expected} in {kinds:?}");
    }
    assert_eq!(kinds.last().map(String::as_str), Some("Completed"));
    let error = r.events.iter().find_map(|e| match e {
        Event::Record { kind: RecordKind::Error, value, .. } => Some(ErrorRecordView::from_value(value)),
        _ => None,
    });
    let error = error.expect("an error record");
    assert!(!error.message.is_empty() && !error.category.is_empty(), "{error:?}");
}

#[test]
fn a_failed_pipeline_carries_its_error_record() {
    let r = replay("test_psrp_error_failed.yml");
    let failed = r.events.iter().find_map(|e| match e {
        Event::PipelineState { state: PipelineState::Failed, error, .. } => Some(error.clone()),
        _ => None,
    });
    let error = failed.expect("a Failed pipeline").expect("with an error record");
    let view = ErrorRecordView::from_value(&error);
    assert!(!view.message.is_empty(), "{view:?}");
    assert!(!view.fully_qualified_error_id.is_empty(), "{view:?}");
}

#[test]
fn host_calls_are_decoded_and_answered_on_the_prompt_stream() {
    let mut r = replay("test_psrp_pshost_ui_mocked_methods.yml");
    let calls: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::HostCall { pipeline, call } => Some((*pipeline, call.clone())),
            _ => None,
        })
        .collect();
    let methods: Vec<HostMethod> = calls.iter().map(|(_, c)| c.method).collect();
    for m in [HostMethod::ReadLine, HostMethod::ReadLineAsSecureString, HostMethod::Write2, HostMethod::WriteLine3, HostMethod::WriteProgress, HostMethod::Prompt, HostMethod::PromptForCredential2, HostMethod::PromptForChoice] {
        assert!(methods.contains(&m), "{m:?} not in {methods:?}");
    }
    let (pipeline, choice) = calls.iter().find(|(_, c)| c.method == HostMethod::PromptForChoice).expect("a choice").clone();
    let (choices, defaults) = choice.choices();
    assert_eq!(choices.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["Prompt1 label", "Prompt2 label"]);
    assert_eq!(defaults, [0]);
    let (_, prompt) = calls.iter().find(|(_, c)| c.method == HostMethod::Prompt).expect("a prompt");
    assert_eq!(prompt.fields()[0].label, "PromptLabel");

    // The pipeline finished in the recording; answering is refused for void calls only by sending nothing.
    let write = calls.iter().find(|(_, c)| c.method == HostMethod::Write1).map(|(_, c)| c.clone()).expect("Write1");
    r.pool.host_response(pipeline, &write, HostResult::Value(Value::Nil)).expect("a void call");
    assert!(!r.pool.has_outgoing(), "no answer to a void call");
    r.pool.host_response(pipeline, &choice, HostResult::Value(Value::I32(1))).expect("answers");
    let out = r.pool.poll_send().expect("the answer");
    assert_eq!(out.stream, psgate_shared::psrp::pool::Stream::PromptResponse);
    assert_eq!(out.pipeline, pipeline);
    let raw = Defragmenter::default().feed(&out.data).expect("fragments").remove(0);
    let msg = Message::parse(&raw).expect("header");
    assert_eq!(msg.message_type, MessageType::PipelineHostResponse);
    // Our answer has the shape of the recorded client's answer to the same call.
    let theirs = recorded("test_psrp_pshost_ui_mocked_methods.yml")
        .into_iter()
        .filter(|m| m.message_type == MessageType::PipelineHostResponse)
        .map(|m| decode_message(&m.body).expect("decodes"))
        .find(|v| format!("{v:?}").contains("PromptForChoice"))
        .expect("the recorded answer");
    let ours = decode_message(msg.data).expect("decodes");
    let shape = |v: &Value| v.as_object().map(|o| o.extended.iter().map(|p| p.name.to_string()).collect::<Vec<_>>());
    assert_eq!(shape(&ours), shape(&theirs));
}

#[test]
fn every_recording_replays_without_a_protocol_error() {
    let dir = fixtures().join("winrm-recorded");
    let mut replayed = 0;
    for path in files(&dir, "yml") {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
        let messages = recorded_messages(&path);
        if messages.is_empty() {
            continue;
        }
        // A recording of several pools (reconnects from a second client) is replayed per pool.
        if messages.iter().map(|m| m.rpid).filter(|id| !id.is_nil()).collect::<HashSet<Uuid>>().len() > 1 {
            continue;
        }
        let r = replay(&name);
        assert!(!matches!(r.pool.state(), PoolState::Broken), "{name}: {:?}", r.events.last());
        replayed += 1;
    }
    assert!(replayed >= 30, "only {replayed} recordings replayed");
}

/// A server message as Windows would send it: header, then the body.
fn server_packet(rpid: Uuid, pid: Uuid, t: MessageType, body: &str, object_id: u64) -> Vec<u8> {
    let mut raw = Vec::new();
    Message { destination: Destination::Client, message_type: t, rpid, pid, data: body.as_bytes() }.write(&mut raw);
    let mut packet = Vec::new();
    fragment::write(&mut packet, object_id, &raw, fragment::DEFAULT_MAX_FRAGMENT);
    packet
}

#[test]
fn protocol_2_4_sends_secure_strings_plain_and_needs_no_key_exchange() {
    let rpid = Uuid::from_u128(0x2d4f_0a3c_9b1e_4e5f_8a7b_6c5d_4e3f_2a1b);
    let mut config = PoolConfig::new(rpid);
    config.protocol = Version::new(2, 4);
    let mut pool = RunspacePool::new(config);
    pool.open().expect("opens");
    while pool.poll_send().is_some() {}
    let cap = |v: &str| format!(r#"<Obj RefId="0"><MS><Version N="protocolversion">{v}</Version><Version N="PSVersion">2.0</Version><Version N="SerializationVersion">1.1.0.1</Version></MS></Obj>"#);
    pool.receive(&server_packet(Uuid::nil(), Uuid::nil(), MessageType::SessionCapability, &cap("2.4"), 1)).expect("capability");
    pool.receive(&server_packet(rpid, Uuid::nil(), MessageType::RunspacePoolState, r#"<Obj RefId="0"><MS><I32 N="RunspaceState">2</I32></MS></Obj>"#, 2)).expect("state");
    assert_eq!(pool.state(), PoolState::Opened);
    assert!(pool.plain_secure_strings() && pool.can_send_secure_strings());
    let ss = pool.secure_string("pässword").expect("plain");
    assert_eq!(ss, "pässword".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>());
    assert_eq!(pool.reveal(&ss).as_deref(), Ok("pässword"));

    // The same client against a 2.3 server: encrypted, and only after the key exchange.
    let mut config = PoolConfig::new(rpid);
    config.protocol = Version::new(2, 4);
    let mut pool = RunspacePool::new(config);
    pool.open().expect("opens");
    pool.receive(&server_packet(Uuid::nil(), Uuid::nil(), MessageType::SessionCapability, &cap("2.3"), 1)).expect("capability");
    assert_eq!(pool.protocol(), Version::new(2, 3));
    assert!(!pool.can_send_secure_strings());
    assert!(pool.secure_string("x").is_err(), "no SecureString before the key exchange");

    // A server with another major version is refused with a clear error.
    let mut pool = RunspacePool::new(PoolConfig::new(rpid));
    pool.open().expect("opens");
    let err = pool.receive(&server_packet(Uuid::nil(), Uuid::nil(), MessageType::SessionCapability, &cap("3.0"), 1)).expect_err("refused");
    assert!(err.to_string().contains("protocol 3.0"), "{err}");
    assert_eq!(pool.state(), PoolState::Broken);
}

#[test]
fn windows_command_metadata_reads_into_commands_and_their_parameters() {
    use psgate_shared::psrp::messages::{CommandMetadata, metadata_count};
    let r = replay("test_psrp_get_command_metadata.yml");
    let outputs: Vec<&Value> = r.events.iter().filter_map(|e| if let Event::Output { value, .. } = e { Some(value) } else { None }).collect();
    // Each request's answer: the count (Windows sends it as a Selected GenericMeasureInfo), then that many commands.
    let mut expected = 0;
    let mut commands: Vec<CommandMetadata> = Vec::new();
    for v in outputs {
        match metadata_count(v) {
            Some(n) => expected += n as usize,
            None => commands.push(CommandMetadata::from_value(v).unwrap_or_else(|| panic!("not metadata: {v:#?}"))),
        }
    }
    assert_eq!(commands.len(), expected);
    assert!(!commands.is_empty());
    for c in &commands {
        assert!(!c.name.is_empty() && !c.command_type.is_empty(), "{c:?}");
        // Every cmdlet carries the common parameters, with their aliases.
        if c.command_type == "Cmdlet" {
            let verbose = c.parameters.iter().find(|p| p.name == "Verbose").unwrap_or_else(|| panic!("{} has no -Verbose", c.name));
            assert!(verbose.switch && verbose.aliases == ["vb"], "{verbose:?}");
        }
    }
    assert!(r.sent.contains(&MessageType::GetCommandMetadata));
}
