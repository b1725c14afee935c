//! The relay's API as a browser uses it: login, the WebSocket, sessions on the real local test host, pipelines
//! with resumable output, host calls; and its security: logins, origins, ownership, the allow-list, malformed
//! messages. Every wait is bounded by an event (no sleeps).

use futures_util::SinkExt as _;
use psgate_relay::config::AllowRule;
use psgate_shared::api::{
    ErrorCode, HostAnswer, InvokeHost, PipelineId, PipelineState, ServerMessage, SessionId, Target, Transport,
};
use psgate_tests::relay::*;
use psgate_tests::Sshd;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

#[tokio::test]
async fn get_process_streams_numbered_clixml_objects() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Get-Process").await;
    let events = c.until_done(p).await;
    let seqs: Vec<u64> = events.iter().filter_map(ServerMessage::seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "numbered from 1 without gaps");
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{:?}", events.last());
    let objects = outputs(&events);
    assert!(!objects.is_empty());
    for o in &objects {
        let obj = o.as_object().expect("a process object");
        assert!(obj.property("ProcessName").is_some() || obj.property("Name").is_some(), "{o:?}");
    }
}

#[tokio::test]
async fn read_host_is_answered_through_the_browser() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Read-Host").await;
    let (call_id, method) = c
        .until(|m| match m {
            ServerMessage::HostCall { call_id, method, .. } => Some((*call_id, method.clone())),
            _ => None,
        })
        .await;
    assert_eq!(method, "ReadLine");
    // A malformed answer is refused and the call still waits for a good one.
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "value", "clixml": "<S>unclosed"}})).await;
    assert_eq!(c.error().await.0, ErrorCode::BadMessage);
    let answer = HostAnswer::Value { clixml: "<S>typed in the browser</S>".into() };
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": answer})).await;
    let events = c.until_done(p).await;
    let objects = outputs(&events);
    assert_eq!(objects.first().and_then(|v| v.as_str()), Some("typed in the browser"), "{objects:?}");
}

#[tokio::test]
async fn a_reconnect_resumes_after_the_last_sequence_number() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Get-Objects -Count 50").await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let m = c.next().await;
        if let Some(seq) = m.seq() {
            seen.push(seq);
        }
    }
    drop(c); // the tab closes mid-pipeline
    let mut c = Client::connect(&relay, "alice").await;
    c.send(json!({"type": "attach", "session": s, "pipeline": p, "after_seq": 5})).await;
    let rest = c.until_done(p).await;
    let mut all = seen.clone();
    all.extend(rest.iter().filter_map(ServerMessage::seq));
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "nothing lost, nothing repeated");
    // A second tab from the start sees the same 50 objects.
    let mut tab = Client::connect(&relay, "alice").await;
    tab.send(json!({"type": "attach", "session": s, "pipeline": p, "after_seq": 0})).await;
    let everything = tab.until_done(p).await;
    assert_eq!(outputs(&everything).len(), 50);
    assert_eq!(everything.len(), all.len());
}

#[tokio::test]
async fn websockets_need_a_login_and_the_right_origin() {
    let relay = relay().await;
    let own = format!("http://{}", relay.addr);
    let status = |r: Result<Ws, WsError>| match r {
        Err(WsError::Http(resp)) => resp.status(),
        Err(e) => panic!("{e}"),
        Ok(_) => StatusCode::SWITCHING_PROTOCOLS,
    };
    assert_eq!(status(open_ws(&relay, None, Some(&own)).await), StatusCode::UNAUTHORIZED);
    assert_eq!(status(open_ws(&relay, Some("psgate_session=forged"), Some(&own)).await), StatusCode::UNAUTHORIZED);
    let cookie = login(&relay, "alice", "alice-pw").await;
    assert_eq!(status(open_ws(&relay, Some(&cookie), Some("http://evil.example")).await), StatusCode::FORBIDDEN);
    assert_eq!(status(open_ws(&relay, Some(&cookie), None).await), StatusCode::FORBIDDEN);
    assert_eq!(status(open_ws(&relay, Some(&cookie), Some(&own)).await), StatusCode::SWITCHING_PROTOCOLS);
    // Wrong passwords and unknown users get no cookie.
    for (name, pw) in [("alice", "bob-pw"), ("mallory", "x")] {
        let (code, cookie) = post(relay.addr, "/api/login", &json!({"name": name, "password": pw}).to_string()).await;
        assert_eq!((code, cookie), (401, None), "{name}");
    }
    assert_eq!(post(relay.addr, "/api/login", "{not json").await.0, 400);
    // After logout the cookie no longer opens a WebSocket.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = TcpStream::connect(relay.addr).await.expect("connect");
    s.write_all(format!("POST /api/logout HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
    s.read_to_end(&mut Vec::new()).await.expect("read");
    assert_eq!(status(open_ws(&relay, Some(&cookie), Some(&own)).await), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn nobody_lists_attaches_to_or_removes_another_users_session() {
    let relay = relay().await;
    let mut alice = Client::connect(&relay, "alice").await;
    let s = alice.new_session().await;
    let p = alice.run(s, "Get-Date").await;
    alice.until_done(p).await;
    let mut bob = Client::connect(&relay, "bob").await;
    bob.send(json!({"type": "get_sessions"})).await;
    let listed = bob.until(|m| match m { ServerMessage::Sessions { sessions } => Some(sessions.clone()), _ => None }).await;
    assert!(listed.is_empty(), "{listed:?}");
    for attempt in [
        json!({"type": "attach", "session": s, "pipeline": p, "after_seq": 0}),
        json!({"type": "run", "session": s, "script": "Get-Date"}),
        json!({"type": "stop", "session": s, "pipeline": p}),
        json!({"type": "remove_sessions", "ids": [s]}),
    ] {
        bob.send(attempt.clone()).await;
        assert_eq!(bob.error().await.0, ErrorCode::UnknownSession, "{attempt}");
    }
    bob.send(json!({"type": "remove_sessions", "all": true})).await;
    bob.until(|m| matches!(m, ServerMessage::Sessions { .. }).then_some(())).await;
    alice.send(json!({"type": "get_sessions"})).await;
    let mine = alice.until(|m| match m { ServerMessage::Sessions { sessions } => Some(sessions.clone()), _ => None }).await;
    assert_eq!(mine.iter().map(|s| s.id).collect::<Vec<_>>(), vec![s], "alice's session is still there");
    alice.send(json!({"type": "remove_sessions", "ids": [s]})).await;
    let after = alice.until(|m| match m { ServerMessage::Sessions { sessions } => Some(sessions.clone()), _ => None }).await;
    assert!(after.is_empty());
}

#[tokio::test]
async fn a_target_outside_the_allow_list_is_refused_before_any_connection() {
    let relay = relay().await;
    // A listener standing in for the forbidden target: it must see no connection.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = trap.local_addr().expect("addr").port();
    let mut c = Client::connect(&relay, "alice").await;
    let target = Target { port: Some(port), user: Some("u".into()), password: Some("p".into()), ..Target::new("127.0.0.1", Transport::Ssh) };
    c.send(json!({"type": "new_sessions", "targets": [target]})).await;
    let (code, message) = c.until(|m| match m { ServerMessage::TargetRefused { code, message, .. } => Some((*code, message.clone())), _ => None }).await;
    assert_eq!(code, ErrorCode::TargetNotAllowed);
    assert!(message.contains("allow-list") && message.contains("127.0.0.1"), "{message}");
    let sessions = c.until(|m| match m { ServerMessage::Sessions { sessions } => Some(sessions.clone()), _ => None }).await;
    assert!(sessions.is_empty());
    // The relay answers a later message, so the refusal is complete; the trap saw nothing.
    c.send(json!({"type": "get_sessions"})).await;
    c.until(|m| matches!(m, ServerMessage::Sessions { .. }).then_some(())).await;
    assert!(tokio::time::timeout(std::time::Duration::ZERO, trap.accept()).await.is_err(), "a connection was attempted");
}

#[tokio::test]
async fn every_malformed_message_gets_an_error_and_the_socket_stays_usable() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    for bad in ["", "not json", "{}", r#"{"type":"nope"}"#, r#"{"type":"run","session":"x","script":1}"#, r#"{"type":"attach"}"#, "[1,2]", r#"{"type":"hello","protocol":99}"#] {
        c.ws.send(Message::Text(bad.into())).await.expect("send");
        let (code, _) = c.error().await;
        let expect = if bad.contains("99") { ErrorCode::UnsupportedVersion } else { ErrorCode::BadMessage };
        assert_eq!(code, expect, "{bad}");
    }
    c.ws.send(Message::Binary(vec![0, 1, 2].into())).await.expect("send");
    assert_eq!(c.error().await.0, ErrorCode::BadMessage);
    for (msg, code) in [
        (json!({"type": "run", "session": 999, "script": "Get-Date"}), ErrorCode::UnknownSession),
        (json!({"type": "attach", "session": 999, "pipeline": 1}), ErrorCode::UnknownSession),
    ] {
        c.send(msg).await;
        assert_eq!(c.error().await.0, code);
    }
    // Still usable: a real command works.
    let s = c.new_session().await;
    let p = c.run(s, "Get-Date").await;
    assert_eq!(outputs(&c.until_done(p).await).len(), 1);
}

fn texts(events: &[ServerMessage]) -> Vec<String> {
    outputs(events).iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn read_host_as_secure_string_is_answered_with_plain_text_the_relay_encrypts() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Read-Host -AsSecureString").await;
    let (call_id, method) = c.host_call().await;
    assert_eq!(method, "ReadLineAsSecureString");
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "secure", "text": "s3cret"}})).await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
    assert_eq!(texts(&events), vec!["secure:s3cret".to_owned()]);
    // A second one in the same session uses the key already exchanged.
    let p = c.run(s, "Read-Host -AsSecureString").await;
    let (call_id, _) = c.host_call().await;
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "secure", "text": "again"}})).await;
    assert_eq!(texts(&c.until_done(p).await), vec!["secure:again".to_owned()]);
}

#[tokio::test]
async fn get_credential_is_answered_with_a_user_and_a_plain_password() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Get-Credential -UserName bob").await;
    let (call_id, method) = c.host_call().await;
    assert!(method.starts_with("PromptForCredential"), "{method}");
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "credential", "user": "contoso\\bob", "password": "pa55 word"}})).await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
    assert_eq!(texts(&events), vec!["contoso\\bob".to_owned(), "password:pa55 word".to_owned()]);
}

#[tokio::test]
async fn read_host_prompt_fields_can_be_secure() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Read-Host -Prompt Pin -AsSecureString").await;
    let (call_id, method) = c.host_call().await;
    assert_eq!(method, "Prompt");
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "fields", "fields": [{"name": "Pin", "text": "1234", "secure": true}]}})).await;
    assert_eq!(texts(&c.until_done(p).await), vec!["secure:1234".to_owned()]);
}

/// What an `invoke` delivered: each pipeline's events, the per-host finishes and the summary.
struct Invocation {
    started: Vec<(SessionId, String, PipelineId)>,
    events: Vec<ServerMessage>,
    finished: Vec<InvokeHost>,
    summary: Vec<InvokeHost>,
}

/// Sends `invoke` and collects everything until `invoke_finished`; `on_host_call` answers host calls.
async fn invoke(this: &mut Client, sessions: &[SessionId], script: &str, mut on_host_call: impl FnMut(SessionId, PipelineId, i64) -> Option<serde_json::Value>) -> Invocation {
    this.send(json!({"type": "invoke", "sessions": sessions, "script": script})).await;
    let (invocation, limit) = this.until(|m| match m {
        ServerMessage::InvokeStarted { invocation, throttle_limit, .. } => Some((*invocation, *throttle_limit)),
        _ => None,
    })
    .await;
    assert_eq!(limit, 32, "the default throttle limit");
    let mut run = Invocation { started: Vec::new(), events: Vec::new(), finished: Vec::new(), summary: Vec::new() };
    loop {
        match this.next().await {
            ServerMessage::InvokeHostStarted { invocation: i, session, computer_name, pipeline } if i == invocation => run.started.push((session, computer_name, pipeline)),
            ServerMessage::InvokeHostFinished { invocation: i, host } if i == invocation => run.finished.push(host),
            ServerMessage::InvokeFinished { invocation: i, hosts } if i == invocation => {
                run.summary = hosts;
                return run;
            }
            ServerMessage::HostCall { session, pipeline, call_id, .. } if call_id >= 0 => {
                if let Some(answer) = on_host_call(session, pipeline, call_id) {
                    this.send(json!({"type": "host_response", "session": session, "pipeline": pipeline, "call_id": call_id, "answer": answer})).await;
                }
            }
            m if m.seq().is_some() => run.events.push(m),
            _ => {}
        }
    }
}

fn events_of(events: &[ServerMessage], pipeline: PipelineId) -> Vec<ServerMessage> {
    events
        .iter()
        .filter(|e| matches!(e, ServerMessage::Output { pipeline: p, .. } | ServerMessage::Record { pipeline: p, .. } | ServerMessage::HostCall { pipeline: p, .. } | ServerMessage::PipelineState { pipeline: p, .. } if *p == pipeline))
        .cloned()
        .collect()
}

#[tokio::test]
async fn invoke_runs_one_script_on_many_sessions_with_output_tagged_by_computer() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let (a, b) = (c.new_session().await, c.new_session().await);
    let run = invoke(&mut c, &[a, b], "Get-Process -Name svchost", |_, _, _| None).await;
    assert_eq!(run.started.len(), 2);
    assert_eq!(run.summary.iter().map(|h| (h.session, h.state)).collect::<Vec<_>>(), vec![(a, PipelineState::Completed), (b, PipelineState::Completed)]);
    assert_eq!(run.finished.len(), 2);
    for (session, computer, pipeline) in &run.started {
        assert_eq!(computer, "localhost");
        let events = events_of(&run.events, *pipeline);
        assert!(events.iter().all(|e| matches!(e, ServerMessage::Output { session: s, .. } | ServerMessage::PipelineState { session: s, .. } if s == session)), "{events:?}");
        assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
        let objects = outputs(&events);
        assert_eq!(objects.len(), 3, "three svchost processes on {session:?}");
        for o in &objects {
            let obj = o.as_object().expect("an object");
            assert_eq!(obj.property("PSComputerName").and_then(|v| v.as_str()), Some("localhost"), "{o:?}");
            assert_eq!(obj.property("ProcessName").or_else(|| obj.property("Name")).and_then(|v| v.as_str()), Some("svchost"));
        }
    }
}

#[tokio::test]
async fn invoke_reports_each_hosts_failure_separately() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let (a, b) = (c.new_session().await, c.new_session().await);
    // Read-Host on both: the user cancels on `a` (its script fails), answers on `b`.
    let run = invoke(&mut c, &[a, b], "Read-Host", |session, _, _| {
            Some(if session == a { json!({"kind": "error", "message": "cancelled by the user"}) } else { json!({"kind": "value", "clixml": "<S>fine</S>"}) })
        })
        .await;
    let by = |s: SessionId| run.summary.iter().find(|h| h.session == s).cloned().expect("in the summary");
    assert_eq!(by(a).state, PipelineState::Failed, "{:?}", by(a));
    assert!(by(a).error.is_some(), "the failure's error record: {:?}", by(a));
    assert_eq!(by(b).state, PipelineState::Completed);
    let b_pipeline = by(b).pipeline.expect("b ran");
    let texts: Vec<String> = outputs(&events_of(&run.events, b_pipeline)).iter().filter_map(|o| o.as_str().map(str::to_owned)).collect();
    assert_eq!(texts, vec!["fine".to_owned()]);
    // A session that cannot take the script (busy) is reported without stopping the others.
    let busy = c.run(a, "Test-Long -Seconds 60").await;
    let run = invoke(&mut c, &[a, b], "Get-Date", |_, _, _| None).await;
    let by = |s: SessionId| run.summary.iter().find(|h| h.session == s).cloned().expect("in the summary");
    assert_eq!((by(a).state, by(a).pipeline), (PipelineState::Failed, None));
    assert!(by(a).message.as_deref().is_some_and(|m| m.contains("busy")), "{:?}", by(a));
    assert_eq!(by(b).state, PipelineState::Completed);
    c.send(json!({"type": "stop", "session": a, "pipeline": busy})).await;
    c.until_done(busy).await;
}

#[tokio::test]
async fn stop_ends_a_long_pipeline_promptly() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Test-Long -Seconds 60").await;
    let asked = std::time::Instant::now();
    c.send(json!({"type": "stop", "session": s, "pipeline": p})).await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Stopped, .. })), "{:?}", events.last());
    assert!(asked.elapsed() < std::time::Duration::from_secs(10), "stopped after {:?}", asked.elapsed());
    // The session takes the next command.
    let p = c.run(s, "Get-Date").await;
    assert_eq!(outputs(&c.until_done(p).await).len(), 1);
}

#[tokio::test]
async fn a_session_over_ssh_runs_commands() {
    let sshd = Sshd::start(true).expect("sshd");
    let host = sshd.get("host");
    let known_hosts = sshd.get("known_hosts");
    let port = sshd.port();
    let relay = relay_with(|c| {
        c.known_hosts = Some(known_hosts.into());
        c.allow.push(AllowRule { hosts: vec![host.clone()], ports: vec![port], transports: vec![Transport::Ssh], ..AllowRule::default() });
    })
    .await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c
        .new_session_on(json!({"computer_name": host, "transport": "ssh", "port": port, "user": sshd.get("user"), "key_file": sshd.get("key_ed25519")}))
        .await;
    let p = c.run(s, "Get-Date").await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
    assert_eq!(outputs(&events).len(), 1);
    // Password login too.
    let s = c.new_session_on(json!({"computer_name": host, "transport": "ssh", "port": port, "user": sshd.get("user"), "password": sshd.password()})).await;
    let p = c.run(s, "Get-Date").await;
    assert_eq!(outputs(&c.until_done(p).await).len(), 1);
}

/// The session's prompt as its `session_changed` messages carry it, waiting for `want`.
async fn prompt_becomes(c: &mut Client, session: SessionId, want: &str) {
    c.until(|m| match m {
        ServerMessage::SessionChanged { session: info } if info.id == session && info.prompt.as_deref() == Some(want) => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn the_prompt_follows_the_remote_location_like_enter_pssession() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    prompt_becomes(&mut c, s, "PS C:\\Users\\psgate> ").await;
    let p = c.run(s, "Set-Location C:\\Windows").await;
    assert!(matches!(c.until_done(p).await.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })));
    prompt_becomes(&mut c, s, "PS C:\\Windows> ").await;
    // The prompt's own pipeline is not the user's: a command typed right away runs, and shows nothing of it.
    let p = c.run(s, "Get-Location").await;
    let events = c.until_done(p).await;
    let paths: Vec<Option<String>> = outputs(&events).iter().map(|v| v.as_object().and_then(|o| o.to_string.as_deref().map(str::to_owned))).collect();
    assert_eq!(paths, vec![Some("C:\\Windows".to_owned())]);
    // A failed cd leaves the location (and the prompt) as they were; the error is the command's.
    let p = c.run(s, "cd C:\\Nowhere").await;
    let events = c.until_done(p).await;
    assert!(events.iter().any(|e| matches!(e, ServerMessage::Record { kind: psgate_shared::api::RecordKind::Error, clixml, .. } if clixml.contains("Cannot find path"))), "{events:?}");
    c.send(json!({"type": "get_sessions"})).await;
    let prompt = c.until(|m| match m {
        ServerMessage::Sessions { sessions } => Some(sessions[0].prompt.clone()),
        _ => None,
    })
    .await;
    assert_eq!(prompt.as_deref(), Some("PS C:\\Windows> "));
}

/// Asks for completions and waits for them.
async fn complete(c: &mut Client, session: SessionId, input: &str, cursor: u32) -> (u32, u32, Vec<String>) {
    c.send(json!({"type": "complete", "session": session, "input": input, "cursor": cursor})).await;
    c.until(|m| match m {
        ServerMessage::Completions { input: i, replacement_index, replacement_length, matches, .. } if i == input => {
            Some((*replacement_index, *replacement_length, matches.iter().map(|m| format!("{}:{}", m.result_type, m.text)).collect()))
        }
        _ => None,
    })
    .await
}

#[tokio::test]
async fn tab_completion_runs_the_remote_tabexpansion2() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    assert_eq!(complete(&mut c, s, "Get-Pro", 7).await, (0, 7, vec!["Command:Get-Process".to_owned()]));
    assert_eq!(complete(&mut c, s, "Get-Process -N | Sort", 14).await, (12, 2, vec!["ParameterName:-Name".to_owned()]));
    assert_eq!(complete(&mut c, s, "cd C:\\Pro", 9).await, (3, 6, vec!["ProviderContainer:'C:\\Program Files'".to_owned()]));
    // Nothing matches: an empty answer, not an error.
    assert_eq!(complete(&mut c, s, "Zzz-", 4).await.2, Vec::<String>::new());
    // While a command runs there is no completion (as in PowerShell's console), and the command is not disturbed.
    let p = c.run(s, "Test-Long -Seconds 1").await;
    assert_eq!(complete(&mut c, s, "Get-Pro", 7).await.2, Vec::<String>::new());
    assert!(matches!(c.until_done(p).await.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })));
    // Someone else's session: unknown.
    let mut bob = Client::connect(&relay, "bob").await;
    bob.send(json!({"type": "complete", "session": s, "input": "Get-Pro", "cursor": 7})).await;
    assert_eq!(bob.error().await.0, ErrorCode::UnknownSession);
}

#[tokio::test]
async fn a_new_page_gets_the_kept_pipelines_and_invoke_runs_back() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let (a, b) = (c.new_session().await, c.new_session().await);
    let typed = c.run(a, "Write-Output 'kept for later'").await;
    c.until_done(typed).await;
    // An Invoke-Command whose page goes away while it runs: the run goes on, and a new page learns how it ended.
    c.send(json!({"type": "invoke", "sessions": [a, b], "script": "Test-Long -Seconds 1", "throttle_limit": 1})).await;
    let invocation = c
        .until(|m| match m {
            ServerMessage::InvokeStarted { invocation, script, .. } if script == "Test-Long -Seconds 1" => Some(*invocation),
            _ => None,
        })
        .await;
    drop(c);
    let mut again = Client::connect(&relay, "alice").await;
    // Every connection of the user hears of the run, so this one sees it finish although another one started it.
    let hosts = again
        .until(|m| match m {
            ServerMessage::InvokeFinished { invocation: i, hosts } if *i == invocation => Some(hosts.clone()),
            _ => None,
        })
        .await;
    assert_eq!(hosts.iter().map(|h| (h.session, h.state)).collect::<Vec<_>>(), vec![(a, PipelineState::Completed), (b, PipelineState::Completed)], "throttle 1: one after the other, both ran");
    again.send(json!({"type": "get_history", "replay": true})).await;
    let (pipelines, invocations) = again
        .until(|m| match m {
            ServerMessage::History { pipelines, invocations } => Some((pipelines.clone(), invocations.clone())),
            _ => None,
        })
        .await;
    let console: Vec<_> = pipelines.iter().filter(|p| p.invocation.is_none()).map(|p| (p.session, p.pipeline, p.script.as_str(), p.finished)).collect();
    assert_eq!(console, vec![(a, typed, "Write-Output 'kept for later'", true)]);
    assert_eq!(pipelines.iter().filter(|p| p.invocation == Some(invocation)).count(), 2);
    assert_eq!(invocations.len(), 1);
    assert!(invocations[0].finished && invocations[0].hosts.len() == 2, "{:?}", invocations[0]);
    // The replay: the typed command's output, from its first event.
    let events = again.until_done(typed).await;
    assert_eq!(outputs(&events).iter().map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>(), vec![Some("kept for later".to_owned())]);
    assert_eq!(events.first().and_then(ServerMessage::seq), Some(1));
    // Nobody else's history.
    let mut bob = Client::connect(&relay, "bob").await;
    bob.send(json!({"type": "get_history"})).await;
    let (p, i) = bob
        .until(|m| match m {
            ServerMessage::History { pipelines, invocations } => Some((pipelines.len(), invocations.len())),
            _ => None,
        })
        .await;
    assert_eq!((p, i), (0, 0));
}

#[tokio::test]
async fn a_browser_that_reads_slowly_loses_no_output() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let n = 3 * psgate_relay::session::manager::BUFFER_EVENTS as i64;
    let p = c.run(s, &format!("Get-Objects -Count {n}")).await;
    // The page reads nothing for a while (a busy tab, a slow link): the relay's buffer fills up behind it.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let events = c.until_done(p).await;
    let indexes: Vec<i64> = outputs(&events).iter().filter_map(|v| v.as_object()?.property("Index")?.as_i64()).collect();
    assert_eq!(indexes.len() as i64, n, "every object arrives");
    assert!(indexes.iter().copied().eq(0..n), "in order, none twice, none dropped");
}
