//! The WinRM session driver (relay/src/session/winrm.rs) against the WS-Management test peer (psrpcore's server role
//! behind tests/peers/winrm_host.py, NTLM through pyspnego): the emulated commands give the same objects as over the
//! out-of-process transport from the same emulated host, over NTLM with message encryption and over HTTPS; refused
//! credentials, a bad certificate and a quota fault are typed errors that say what happened; Disconnect leaves the
//! command running and a new client's Connect gets its output without loss (Block), or only its newest (Drop).

#[path = "common/winrm_peer.rs"]
mod winrm_peer;

use std::ffi::OsString;
use std::time::Duration;

use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer, python, repo};
use psgate_relay::session::outofproc::Session;
use psgate_relay::session::winrm::{self, ShellRecord, WinrmOpError, WinrmTarget};
use psgate_relay::transport::local;
use psgate_relay::transport::winrm::{AuthMethod, Endpoint, WinrmError, WinrmOptions};
use psgate_shared::api::OutputBufferingMode;
use psgate_shared::clixml::{self, Value};
use psgate_shared::psrp::host::{HostMethod, HostResult};
use psgate_shared::psrp::messages::{ErrorRecordView, PipelineSpec, PipelineState, PoolState};
use psgate_shared::psrp::outofproc::{ClientEvent, OutOfProcClient};
use psgate_shared::psrp::pool::{Event, PoolConfig, RecordKind, RunspacePool};
use uuid::Uuid;

const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Every emulated command of tests/peers/host_core.py that answers without a person (Read-Host is answered here).
const SCRIPTS: &[&str] = &[
    "Get-Process",
    "Get-Process -Name svchost",
    "Get-Objects -Count 25",
    "Get-Objects -Count 3 -Size large",
    "Get-Objects -Count 2 -Size huge",
    "Write-Output hello; Write-Output 42",
    "$PSVersionTable",
    "Get-Location",
    "Write-Warning careful",
    "Write-Verbose details -Verbose",
    "Write-Debug tracing -Debug",
    "Write-Information note",
    "Write-Host colour -ForegroundColor Green",
    "Write-Error oops",
    "Write-Progress -Activity Copy -PercentComplete 50",
    "Test-Progress",
    "throw 'it broke'",
    "Read-Host",
    "Read-Host 'Your name'",
    "Get-NoSuchCommand",
    "prompt",
];

fn target(peer: &WinrmPeer, auth: AuthMethod, password: &str) -> WinrmTarget {
    let mut options = WinrmOptions::new(Endpoint::parse(&peer.url).expect("endpoint"), USER, password.to_owned().into(), auth);
    options.ca_file = peer.cert.clone();
    WinrmTarget::new(options)
}

async fn next(s: &mut Session) -> ClientEvent {
    tokio::time::timeout(EVENT_TIMEOUT, s.events.recv()).await.expect("an event in time").expect("the session goes on")
}

async fn opened(s: &mut Session) {
    loop {
        match next(s).await {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => return,
            ClientEvent::Psrp(Event::PoolState { state: state @ (PoolState::Broken | PoolState::Closed), error }) => {
                panic!("the pool is {state:?}: {error:?}")
            }
            _ => {}
        }
    }
}

async fn open_winrm(target: WinrmTarget) -> Session {
    let mut s = winrm::connect(target, None, false).await.expect("connects");
    s.with(|c| c.open()).await.expect("alive").expect("opens");
    opened(&mut s).await;
    s
}

async fn open_local() -> Session {
    let argv: Vec<OsString> = [python(), repo().join("tests/peers/psrp_host.py").to_string_lossy().into_owned()].into_iter().map(OsString::from).collect();
    let local::LocalProcess { child, stream } = local::spawn(&argv).expect("the test host starts");
    let mut s = Session::start(stream, OutOfProcClient::new(RunspacePool::new(PoolConfig::new(Uuid::new_v4()))));
    tokio::spawn(async move {
        let mut child = child;
        let _ = child.wait().await;
    });
    s.with(|c| c.open()).await.expect("alive").expect("opens");
    opened(&mut s).await;
    s
}

/// What a user sees of one pipeline: its objects (as CLIXML), its records (kind and text) and how it ended.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    outputs: Vec<String>,
    records: Vec<(RecordKind, String)>,
    state: Option<PipelineState>,
    error: Option<String>,
}

fn text_of(kind: RecordKind, v: &Value) -> String {
    if kind == RecordKind::Error {
        return ErrorRecordView::from_value(v).message;
    }
    let o = v.as_object();
    ["InformationalRecord_Message", "MessageData", "Activity", "Message"]
        .iter()
        .find_map(|p| o.and_then(|o| o.property(p)))
        .map(|p| clixml::encode_message(p).unwrap_or_default())
        .unwrap_or_else(|| clixml::encode_message(v).unwrap_or_default())
}

/// Starts `script` and returns its id.
async fn start(s: &mut Session, script: &str) -> Uuid {
    let id = Uuid::new_v4();
    let spec = PipelineSpec::script(script);
    s.with(move |c| c.create_pipeline(id, &spec)).await.expect("alive").expect("created");
    id
}

/// Follows pipeline `id` to its end (answering Read-Host), and releases it.
async fn finish(s: &mut Session, id: Uuid) -> Outcome {
    let mut out = Outcome::default();
    loop {
        match next(s).await {
            ClientEvent::Psrp(Event::Output { pipeline, value }) if pipeline == id => out.outputs.push(clixml::encode_message(&value).expect("encodes")),
            ClientEvent::Psrp(Event::Record { pipeline, kind, value }) if pipeline == id => out.records.push((kind, text_of(kind, &value))),
            ClientEvent::Psrp(Event::HostCall { pipeline: Some(pipeline), call }) if pipeline == id => {
                let result = match call.method {
                    HostMethod::ReadLine => HostResult::Value(Value::string("typed")),
                    m if m.is_void() => continue,
                    m => HostResult::Error(format!("{m:?} is not answered in this test")),
                };
                s.with(move |c| c.pool_mut().host_response(Some(id), &call, result)).await.expect("alive").expect("answered");
            }
            ClientEvent::Psrp(Event::PipelineState { pipeline, state, error }) if pipeline == id && state.is_terminal() => {
                out.state = Some(state);
                out.error = error.map(|e| ErrorRecordView::from_value(&e).message);
                s.with(move |c| c.close_pipeline(id)).await.expect("alive");
                return out;
            }
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => panic!("the session broke: {error:?}"),
            _ => {}
        }
    }
}

async fn run(s: &mut Session, script: &str) -> Outcome {
    let id = start(s, script).await;
    finish(s, id).await
}

async fn close(mut s: Session) {
    s.with(|c| c.close()).await.expect("alive");
    loop {
        if matches!(next(&mut s).await, ClientEvent::SessionClosed) {
            return;
        }
    }
}

/// Each script over `winrm` gives what it gives over the out-of-process transport.
async fn same_as_local(winrm: &mut Session, local: &mut Session, what: &str) {
    for script in SCRIPTS {
        let expected = run(local, script).await;
        let got = run(winrm, script).await;
        assert!(expected.state.is_some(), "{script}: no end over the local transport");
        assert_eq!(got, expected, "{script} over {what}");
    }
    // Not trivially equal: the scripts produce objects, records, host calls and failures.
    let huge = run(winrm, "Get-Objects -Count 2 -Size huge").await;
    assert_eq!(huge.outputs.len(), 2);
    assert!(huge.outputs[0].len() > 100_000, "a message of several fragments");
    let failed = run(winrm, "throw 'it broke'").await;
    assert_eq!((failed.state, failed.error.as_deref()), (Some(PipelineState::Failed), Some("it broke")));
    let typed = run(winrm, "Read-Host").await;
    assert_eq!(typed.outputs, vec![clixml::encode_message(&Value::string("typed")).expect("encodes")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emulated_command_over_ntlm_with_message_encryption_and_over_https() {
    let mut local = open_local().await;
    let http = WinrmPeer::start(PeerOptions::default());
    let mut s = open_winrm(target(&http, AuthMethod::Negotiate, PASSWORD)).await;
    same_as_local(&mut s, &mut local, "HTTP with NTLM and encryption").await;
    // The peer refuses unencrypted envelopes over HTTP (AllowUnencrypted=false, as Windows): all were sealed.
    close(s).await;

    let https = WinrmPeer::start(PeerOptions { tls: true, cbt_hardening: "Strict", ..PeerOptions::default() });
    let mut s = open_winrm(target(&https, AuthMethod::Ntlm, PASSWORD)).await;
    same_as_local(&mut s, &mut local, "HTTPS with NTLM and channel binding").await;
    close(s).await;
    close(local).await;
}

#[tokio::test]
async fn a_wrong_password_and_a_bad_certificate_are_typed_errors() {
    let http = WinrmPeer::start(PeerOptions::default());
    let err = winrm::connect(target(&http, AuthMethod::Ntlm, "not-the-password"), None, false).await.expect_err("refused");
    assert!(matches!(err, WinrmOpError::Http(WinrmError::Auth(_))), "{err:?}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "no password in the message: {err}");

    let https = WinrmPeer::start(PeerOptions { tls: true, ..PeerOptions::default() });
    let mut untrusted = target(&https, AuthMethod::Ntlm, PASSWORD);
    untrusted.options.ca_file = None;
    let err = winrm::connect(untrusted, None, false).await.expect_err("an unknown CA");
    assert!(matches!(err, WinrmOpError::Http(WinrmError::Certificate { .. })), "{err:?}");
}

#[tokio::test]
async fn the_targets_quota_fault_names_the_quota() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--max-shells-per-user".into(), "1".into()], ..PeerOptions::default() });
    let first = open_winrm(target(&peer, AuthMethod::Ntlm, PASSWORD)).await;
    let mut second = winrm::connect(target(&peer, AuthMethod::Ntlm, PASSWORD), None, false).await.expect("connects");
    second.with(|c| c.open()).await.expect("alive").expect("queued");
    let error = loop {
        match next(&mut second).await {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => break error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_default(),
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => panic!("a second shell opened past MaxShellsPerUser=1"),
            _ => {}
        }
    };
    assert!(error.contains("MaxShellsPerUser"), "the message names the quota: {error}");
    close(first).await;
}

/// Disconnects `s` (with `mode`), and returns what a Connect needs.
async fn disconnect(s: &mut Session, mode: OutputBufferingMode) -> ShellRecord {
    s.with(move |c| c.disconnect(Some(Duration::from_secs(120)), Some(mode))).await.expect("alive").expect("WinRM disconnects");
    loop {
        match next(s).await {
            ClientEvent::Disconnected => break,
            ClientEvent::OperationFailed(why) => panic!("disconnect failed: {why}"),
            _ => {}
        }
    }
    s.with(|c| c.shell()).await.expect("alive").expect("a WinRM shell")
}

fn index_of(clixml: &str) -> i64 {
    let v = clixml::decode_message(clixml.as_bytes()).expect("decodes");
    v.as_object().and_then(|o| o.property("Index")).and_then(Value::as_i64).expect("an Index")
}

/// A peer whose commands buffer little, and a session on it running a command of 3,000 objects that waits half a
/// second after its first output, which is in: the peer, the target, the session and the command.
async fn running_a_command() -> (WinrmPeer, WinrmTarget, Session, Uuid) {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--buffer-bytes".into(), "20000".into()], ..PeerOptions::default() });
    let t = target(&peer, AuthMethod::Ntlm, PASSWORD);
    let mut a = open_winrm(t.clone()).await;
    let id = start(&mut a, "Write-Output first; Start-Sleep -Milliseconds 500; Get-Objects -Count 3000").await;
    match next(&mut a).await {
        ClientEvent::Psrp(Event::Output { pipeline, .. }) if pipeline == id => {}
        other => panic!("expected the first output, got {other:?}"),
    }
    (peer, t, a, id)
}

/// A peer whose commands buffer little, a session on it running a command of 3,000 objects that waits half a second
/// after its first output, disconnected with `mode` once that first output is in; the client is gone. Returns the
/// peer, the target, the command and what a Connect needs.
async fn disconnected_during_a_command(mode: OutputBufferingMode) -> (WinrmPeer, WinrmTarget, Uuid, ShellRecord) {
    let (peer, t, mut a, id) = running_a_command().await;
    let record = disconnect(&mut a, mode).await;
    assert_eq!(record.commands, vec![id], "the running command is remembered");
    // The first client goes away without a word (a relay that stopped).
    drop(a);
    (peer, t, id, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_command_runs_on_and_a_new_client_connects_and_receives_all_of_it() {
    let (_peer, t, id, record) = disconnected_during_a_command(OutputBufferingMode::Block).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut b = winrm::connect(t.clone(), Some(record), false).await.expect("connects");
    opened(&mut b).await;
    let got = finish(&mut b, id).await;
    assert_eq!(got.state, Some(PipelineState::Completed));
    let indexes: Vec<i64> = got.outputs.iter().map(|o| index_of(o)).collect();
    assert_eq!(indexes, (0..3000).collect::<Vec<_>>(), "Block mode: every object, in order, none twice");
    // The shell is usable for new commands after the connect.
    let more = run(&mut b, "Write-Output again").await;
    assert_eq!(more.outputs, vec![clixml::encode_message(&Value::string("again")).expect("encodes")]);
    close(b).await;
}

/// A client that dies without disconnecting (a relay killed): the target still counts the shell connected to it and
/// refuses another client's Connect; taken over — disconnected as that client first — the shell is connected, and its
/// command goes on from where the target held it: contiguous to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_whose_client_died_is_taken_over_as_that_client() {
    let (_peer, t, a, id) = running_a_command().await;
    let record = a.with(|c| c.shell()).await.expect("alive").expect("a WinRM shell");
    a.abandon();
    // A plain Connect is refused: the shell is the dead client's.
    let mut refused = winrm::connect(t.clone(), Some(record.clone()), false).await.expect("starts");
    loop {
        match next(&mut refused).await {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => panic!("connected to a shell another client holds"),
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken | PoolState::Closed, error }) => {
                let why = format!("{error:?}");
                assert!(why.contains("connected to a different client") || why.contains("another client"), "{why}");
                break;
            }
            ClientEvent::SessionClosed => break,
            _ => {}
        }
    }
    drop(refused);
    let mut b = winrm::connect(t, Some(record), true).await.expect("connects");
    opened(&mut b).await;
    let got = finish(&mut b, id).await;
    assert_eq!(got.state, Some(PipelineState::Completed));
    let indexes: Vec<i64> = got.outputs.iter().map(|o| index_of(o)).collect();
    let first = *indexes.first().expect("output after the takeover");
    assert_eq!(indexes, (first..3000).collect::<Vec<_>>(), "from where the dead client stopped receiving, contiguous, none twice");
    close(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mode_loses_only_the_oldest_output() {
    let (_peer, t, id, record) = disconnected_during_a_command(OutputBufferingMode::Drop).await;
    // The command does not wait for anybody in Drop mode: give it time to finish.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut b = winrm::connect(t, Some(record), false).await.expect("connects");
    opened(&mut b).await;
    let got = finish(&mut b, id).await;
    assert_eq!(got.state, Some(PipelineState::Completed), "the end is never dropped");
    let indexes: Vec<i64> = got.outputs.iter().map(|o| index_of(o)).collect();
    assert!(!indexes.is_empty() && indexes.len() < 3000, "some output was dropped, some kept: {} kept", indexes.len());
    let first = indexes[0];
    assert_eq!(indexes, (first..3000).collect::<Vec<_>>(), "only the oldest are lost: the newest remain, contiguous");
    close(b).await;
}

#[tokio::test]
async fn the_shells_of_a_target_are_listed_with_their_commands() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let t = target(&peer, AuthMethod::Ntlm, PASSWORD);
    let mut a = open_winrm(t.clone()).await;
    let id = start(&mut a, "Test-Long -Seconds 30").await;
    let record = disconnect(&mut a, OutputBufferingMode::Block).await;
    let shells = winrm::enumerate(&t).await.expect("enumerates");
    let (info, commands) = shells.iter().find(|(s, _)| s.shell_id.eq_ignore_ascii_case(&record.shell_id.to_string())).expect("the shell is listed");
    assert_eq!(commands, &vec![id]);
    assert_eq!(info.state, Some(psgate_relay::wsman::ShellState::Disconnected));
    // Reconnect from the same client goes on receiving.
    a.with(|c| c.reconnect()).await.expect("alive").expect("WinRM reconnects");
    loop {
        match next(&mut a).await {
            ClientEvent::Reconnected => break,
            ClientEvent::OperationFailed(why) => panic!("reconnect failed: {why}"),
            _ => {}
        }
    }
    loop {
        if let ClientEvent::Psrp(Event::Output { pipeline, .. }) = next(&mut a).await
            && pipeline == id
        {
            break;
        }
    }
    a.with(move |c| c.stop(id)).await.expect("alive");
    let stopped = finish(&mut a, id).await;
    assert_eq!(stopped.state, Some(PipelineState::Stopped));
    close(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_outlive_the_operation_timeout_and_envelopes_fit_the_servers_size() {
    // The smallest MaxEnvelopeSize Windows has (150 KiB), refused above it; a JEA-style configuration name.
    let peer = WinrmPeer::start(PeerOptions {
        extra: ["--max-envelope-kb", "150", "--configuration", "JEA.Helpdesk"].map(String::from).to_vec(),
        ..PeerOptions::default()
    });
    let mut t = target(&peer, AuthMethod::Ntlm, PASSWORD);
    t.configuration_name = Some("JEA.Helpdesk".into());
    t.operation_timeout = Duration::from_secs(1);
    let mut s = open_winrm(t.clone()).await;
    // A Receive times out twice or more while the command sleeps; each is sent again and the output arrives.
    let slept = run(&mut s, "Start-Sleep -Seconds 3; Write-Output awake").await;
    assert_eq!(slept.outputs, vec![clixml::encode_message(&Value::string("awake")).expect("encodes")]);
    assert!(peer.log().matches("fault 2150858793").count() >= 2, "the Receive timed out and was sent again");
    // A script far larger than one envelope goes as a Command and Sends that each fit.
    let text = "x".repeat(400_000);
    let big = run(&mut s, &format!("Write-Output '{text}'")).await;
    assert_eq!(big.outputs, vec![clixml::encode_message(&Value::string(&text)).expect("encodes")]);
    assert!(!peer.log().contains("EncodingLimit") && !peer.log().contains("exceeds MaxEnvelopeSizekb"), "no request was too large");
    close(s).await;
    // Not a configuration of the target: the server's fault, as a failed open.
    t.configuration_name = Some("No.Such.Endpoint".into());
    let mut s = winrm::connect(t, None, false).await.expect("connects");
    s.with(|c| c.open()).await.expect("alive").expect("queued");
    let error = loop {
        match next(&mut s).await {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => break error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_default(),
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => panic!("an unknown configuration opened"),
            _ => {}
        }
    };
    assert!(error.contains("No.Such.Endpoint"), "{error}");
}
