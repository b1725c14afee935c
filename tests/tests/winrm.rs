//! WinRM sessions through the relay's API, against the WS-Management test peer (tests/peers/winrm_host.py):
//! New-PSSession over WinRM with NTLM and message encryption, Get-PSSession -ComputerName, Disconnect and Connect,
//! the target's quota fault shown with the quota's name, and a relay restart: the user's disconnected session comes
//! back Disconnected from the relay's database (its password sealed, never in clear), and Connect re-attaches the
//! command that ran meanwhile with all of its output.

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;

use std::sync::Arc;

use psgate_relay::config::{AllowRule, Config};
use psgate_relay::store::Store;
use psgate_shared::api::{ErrorCode, PipelineId, PipelineState, ServerMessage, SessionId, SessionInfo, SessionState, Transport};
use psgate_tests::relay::{Client, indexes, outputs, relay_on, relay_with};
use serde_json::json;
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

fn allow_peer(peer: &WinrmPeer) -> impl FnOnce(&mut Config) {
    let port = peer.port;
    move |c: &mut Config| c.allow.push(AllowRule { hosts: vec!["127.0.0.1".into()], ports: vec![port], transports: vec![Transport::Winrm], ..AllowRule::default() })
}

fn target(peer: &WinrmPeer) -> serde_json::Value {
    json!({"computer_name": "127.0.0.1", "transport": "winrm", "port": peer.port, "user": USER, "password": PASSWORD, "authentication": "ntlm"})
}

/// The next change of `session` into a state other than `from`.
async fn state_change(c: &mut Client, session: SessionId, from: SessionState) -> SessionInfo {
    c.until(|m| match m {
        ServerMessage::SessionChanged { session: s } if s.id == session && s.state != from => Some(s.clone()),
        _ => None,
    })
    .await
}

/// Get-PSSession -ComputerName through the API.
async fn remote_shells(c: &mut Client, peer: &WinrmPeer) -> Vec<psgate_shared::api::RemoteShell> {
    c.send(json!({"type": "get_remote_shells", "target": target(peer)})).await;
    c.until(|m| match m {
        ServerMessage::RemoteShells { shells, .. } => Some(shells.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winrm_sessions_open_list_disconnect_and_connect_through_the_api() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    let info = c.sessions().await.into_iter().find(|i| i.id == s).expect("listed");
    assert_eq!((info.transport, info.can_disconnect, info.configuration_name.as_deref()), (Transport::Winrm, true, Some("Microsoft.PowerShell")));
    let shell = info.instance_id.clone().expect("the shell's id");
    let p = c.run(s, "Get-Process -Name svchost").await;
    let events = c.until_done(p).await;
    assert!(!outputs(&events).is_empty(), "{events:?}");

    // Get-PSSession -ComputerName: the target's shells for these credentials, this one attached.
    let shells = remote_shells(&mut c, &peer).await;
    let listed = shells.iter().find(|r| r.shell_id.eq_ignore_ascii_case(&shell)).expect("our shell is listed");
    assert_eq!((listed.session, listed.state.as_str(), listed.configuration_name.as_str()), (Some(s), "Connected", "Microsoft.PowerShell"));

    c.send(json!({"type": "disconnect_sessions", "ids": [s], "idle_timeout_secs": 600, "output_buffering_mode": "block"})).await;
    let info = state_change(&mut c, s, SessionState::Opened).await;
    assert_eq!(info.state, SessionState::Disconnected, "{info:?}");
    // Nothing runs on a disconnected session.
    c.send(json!({"type": "run", "session": s, "script": "Get-Date"})).await;
    assert_eq!(c.error().await.0, ErrorCode::SessionNotReady);
    // Bob neither sees nor connects it.
    let mut bob = Client::connect(&relay, "bob").await;
    assert!(bob.sessions().await.is_empty());
    bob.send(json!({"type": "connect_sessions", "ids": [s]})).await;
    assert_eq!(bob.error().await.0, ErrorCode::UnknownSession);

    c.send(json!({"type": "connect_sessions", "ids": [s]})).await;
    let info = state_change(&mut c, s, SessionState::Disconnected).await;
    assert_eq!(info.state, SessionState::Opened, "{info:?}");
    let p = c.run(s, "Write-Output back").await;
    assert_eq!(outputs(&c.until_done(p).await), vec![psgate_shared::clixml::Value::string("back")]);

    // Remove-PSSession deletes the shell at the target before the relay answers with the list.
    c.send(json!({"type": "remove_sessions", "ids": [s]})).await;
    let left = c
        .until(|m| match m {
            ServerMessage::Sessions { sessions } => Some(sessions.clone()),
            _ => None,
        })
        .await;
    assert!(left.iter().all(|i| i.id != s));
    let shells = remote_shells(&mut c, &peer).await;
    assert!(shells.iter().all(|r| !r.shell_id.eq_ignore_ascii_case(&shell)), "Remove-PSSession deleted the shell: {shells:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_and_secure_strings_cross_winrm_both_ways() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    // Read-Host -AsSecureString: the key exchange (PUBLIC_KEY_REQUEST and ENCRYPTED_SESSION_KEY on the shell's
    // Receive, our key on its stdin) happens on demand, the answer goes encrypted on the pipeline's `pr` stream.
    let p = c.run(s, "Read-Host -AsSecureString").await;
    let (call_id, method) = c.host_call().await;
    assert_eq!(method, "ReadLineAsSecureString");
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "secure", "text": "s3cret"}})).await;
    assert_eq!(outputs(&c.until_done(p).await), vec![psgate_shared::clixml::Value::string("secure:s3cret")]);
    // Get-Credential: a user and a password, the password a SecureString with the key already there.
    let p = c.run(s, "Get-Credential -UserName ada").await;
    let (call_id, method) = c.host_call().await;
    assert!(method.starts_with("PromptForCredential"), "{method}");
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call_id, "answer": {"kind": "credential", "user": "ada", "password": "pw-2"}})).await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
    let text = |s: &str| psgate_shared::clixml::Value::string(s);
    assert_eq!(outputs(&events), vec![text("ada"), text("password:pw-2")], "the target decrypted the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_quota_fault_reaches_the_user_with_the_quotas_name() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--max-shells-per-user".into(), "1".into()], ..PeerOptions::default() });
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    c.new_session_on(target(&peer)).await;
    c.send(json!({"type": "new_sessions", "targets": [target(&peer)]})).await;
    let (code, message) = c
        .until(|m| match m {
            ServerMessage::TargetRefused { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::QuotaExceeded, "{message}");
    assert!(message.contains("MaxShellsPerUser"), "{message}");

    // Wrong credentials are their own error, and the password is in no message.
    let mut wrong = target(&peer);
    wrong["password"] = json!("Not-The-Password-41");
    c.send(json!({"type": "new_sessions", "targets": [wrong]})).await;
    let (code, message) = c
        .until(|m| match m {
            ServerMessage::TargetRefused { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::AuthenticationFailed, "{message}");
    assert!(!message.contains("Not-The-Password-41"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_keeps_disconnected_winrm_sessions_and_connect_gets_what_ran_meanwhile() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--buffer-bytes".into(), "20000".into()], ..PeerOptions::default() });
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("psgate.db");
    let store = Arc::new(Store::open(&db).expect("db"));
    store.set_user("alice", "alice-pw").await.expect("user");
    store.set_user("bob", "bob-pw").await.expect("user");

    let first = relay_on(store, allow_peer(&peer)).await;
    let mut c = Client::connect(&first, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    let shell = c.sessions().await.into_iter().find(|i| i.id == s).and_then(|i| i.instance_id).expect("shell id");
    let p = c.run(s, "Write-Output first; Start-Sleep -Milliseconds 1500; Get-Objects -Count 500").await;
    c.until(|m| match m {
        ServerMessage::Output { pipeline, .. } if *pipeline == p => Some(()),
        _ => None,
    })
    .await;
    c.send(json!({"type": "disconnect_sessions", "ids": [s]})).await;
    assert_eq!(state_change(&mut c, s, SessionState::Opened).await.state, SessionState::Disconnected);
    // A second session is still open when the relay stops: stopping disconnects it, it is not lost either.
    let open = c.new_session_on(target(&peer)).await;
    first.manager.shutdown(psgate_tests::STEP).await;
    assert_eq!(c.sessions().await.into_iter().find(|i| i.id == open).map(|i| i.state), Some(SessionState::Disconnected));
    drop(c);
    drop(first);

    // What the database holds: the shell, never the password in clear; the key beside it is the relay's alone.
    let bytes = std::fs::read(&db).expect("db file");
    assert!(!bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()), "the target password is not in the database in clear");
    assert!(bytes.windows(shell.len()).any(|w| w == shell.as_bytes()), "the shell is kept");
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.path().join("psgate.db.key");
    assert_eq!(std::fs::metadata(&key).expect("key file").permissions().mode() & 0o777, 0o600);

    // The first session was disconnected 50 minutes ago, say: its IdleTimeout counts from then, not from the restart.
    let store = Arc::new(Store::open(&db).expect("db"));
    let mut row = store.winrm_sessions().await.expect("rows").into_iter().find(|r| r.key == shell).expect("kept");
    assert!(row.idle_since.is_some_and(|t| (t - psgate_tests::unix_ms()).abs() < 60_000), "idle since its disconnection: {row:?}");
    row.idle_since = Some(psgate_tests::unix_ms() - 50 * 60_000);
    store.put_winrm_session(&row).await.expect("put");

    // A new relay on the same database.
    let allow = allow_peer(&peer);
    let second = relay_on(store, move |c: &mut Config| {
        allow(c);
        c.quotas.idle_timeout_secs = Some(3600);
    })
    .await;
    let mut bob = Client::connect(&second, "bob").await;
    assert!(bob.sessions().await.is_empty(), "bob does not see alice's kept session");
    let mut c = Client::connect(&second, "alice").await;
    let kept = c.sessions().await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    // The one its user disconnected waits for their Connect; the one open when the relay stopped is connected again.
    let reopened = kept.iter().find(|i| i.instance_id.as_deref() != Some(shell.as_str())).expect("the second session").id;
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    while second.manager.list("alice", None, None).iter().find(|i| i.id == reopened).map(|i| i.state) != Some(SessionState::Opened) {
        assert!(std::time::Instant::now() < deadline, "the session open when the relay stopped is connected again by the next");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let info = kept.iter().find(|i| i.instance_id.as_deref() == Some(shell.as_str())).expect("the first session");
    assert_eq!((info.state, info.instance_id.as_deref(), info.transport), (SessionState::Disconnected, Some(shell.as_str()), Transport::Winrm));
    let s = info.id;
    let (idle_left, _) = second.manager.time_left("alice", s);
    assert!(idle_left.is_some_and(|t| (590..=600).contains(&t)), "10 minutes left of the hour: {idle_left:?}");
    c.send(json!({"type": "connect_sessions", "ids": [s]})).await;
    let mut reattached: Option<PipelineId> = None;
    let info = c
        .until(|m| match m {
            ServerMessage::PipelineStarted { session, pipeline } if *session == s => {
                reattached = Some(*pipeline);
                None
            }
            ServerMessage::SessionChanged { session } if session.id == s && !matches!(session.state, SessionState::Disconnected | SessionState::Opening) => Some(session.clone()),
            _ => None,
        })
        .await;
    assert_eq!(info.state, SessionState::Opened, "{info:?}");
    let p = match reattached {
        Some(p) => p,
        None => c
            .until(|m| match m {
                ServerMessage::PipelineStarted { session, pipeline } if *session == s => Some(*pipeline),
                _ => None,
            })
            .await,
    };
    let events = c.until_done(p).await;
    assert_eq!(indexes(&events), (0..500).collect::<Vec<_>>(), "every object produced while nobody was connected, in order");
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })));
    let p = c.run(s, "Write-Output after").await;
    assert_eq!(outputs(&c.until_done(p).await), vec![psgate_shared::clixml::Value::string("after")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_session_is_idle_from_its_disconnection_and_its_shell_is_deleted_at_the_idle_timeout() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let allow = allow_peer(&peer);
    let relay = relay_with(move |c: &mut Config| {
        allow(c);
        c.quotas.idle_timeout_secs = Some(1800);
        c.quotas.warning_secs = Some(60);
    })
    .await;
    let time = relay.manager.quota_time();
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    // A command runs on; connected, that is not idle time. Disconnected, the session is idle whatever runs (as on
    // Windows): the relay's IdleTimeout closes it, and the target's shell goes with it. The quotas' time is moved
    // forward rather than waited for.
    let p = c.run(s, "'started'; Start-Sleep -Seconds 30").await;
    c.until(|m| matches!(m, ServerMessage::Output { pipeline, .. } if *pipeline == p).then_some(())).await;
    time.advance(std::time::Duration::from_secs(3600));
    c.send(json!({"type": "disconnect_sessions", "ids": [s]})).await;
    let info = state_change(&mut c, s, SessionState::Opened).await;
    assert_eq!(info.state, SessionState::Disconnected, "{info:?}");
    let (idle_left, _) = relay.manager.time_left("alice", s);
    assert!(idle_left.is_some_and(|t| (1790..=1800).contains(&t)), "idle from the disconnection: {idle_left:?}");
    time.advance(std::time::Duration::from_secs(1800));
    let info = c
        .until(|m| match m {
            ServerMessage::SessionChanged { session } if session.id == s && session.state == SessionState::Closed => Some(session.clone()),
            _ => None,
        })
        .await;
    assert_eq!(info.reason.as_deref(), Some("Closed by the relay: idle for 30 min, its IdleTimeout (idle_timeout_secs)."));
    assert!(remote_shells(&mut c, &peer).await.is_empty(), "the target deleted the shell");
}
