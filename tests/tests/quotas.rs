//! The relay's own quotas (`[quotas]`, an allow rule's `quotas`), with PowerShell's meanings and words: New-PSSession
//! beyond MaxShellsPerUser or MaxConcurrentUsers refused with nothing connected, the last slot won by one of two
//! racing requests, MaxConnections answered with 503 and `Retry-After`.

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;
mod at_prompt;

use at_prompt::{lines, prompt, prompt_with};
use psgate_relay::config::{AllowRule, Config};
use psgate_relay::quotas::Quotas;
use psgate_shared::api::{ErrorCode, PipelineState, ServerMessage, SessionState, Target, Transport};
use psgate_tests::relay::{Client, Relay, login, open_ws, relay_with};
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

fn with_quotas(global: Quotas, rule: Quotas) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.quotas = global;
        c.allow = vec![AllowRule { hosts: vec!["localhost".into()], transports: vec![Transport::Local], quotas: rule, ..AllowRule::default() }];
    }
}

fn local() -> Target {
    serde_json::from_value(serde_json::json!({"computer_name": "localhost", "transport": "local"})).expect("a target")
}

/// The user's sessions that the relay holds, not closed.
fn held(relay: &Relay, user: &str) -> usize {
    relay.manager.list(user, None, None).iter().filter(|s| !matches!(s.state, SessionState::Closed | SessionState::Broken)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pssession_beyond_max_shells_per_user_is_refused_in_powershells_words() {
    let relay = relay_with(with_quotas(Quotas { max_shells_per_user: Some(2), ..Quotas::default() }, Quotas::default())).await;
    let mut c = Client::connect(&relay, "alice").await;
    let shown = prompt(&mut c, "$a, $b = New-PSSession -ComputerName localhost, localhost").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let shown = prompt(&mut c, "$c = New-PSSession -ComputerName localhost").await;
    assert_eq!(
        shown.errors,
        ["[localhost] Connecting to remote server localhost failed with the following error message : This user is allowed a maximum number of 2 concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user. (psgate relay: max_shells_per_user in [quotas]) For more information, see the about_Remote_Troubleshooting Help topic."],
        "{shown:?}"
    );
    // Nothing was connected for it; the other user has a quota of their own.
    assert_eq!(held(&relay, "alice"), 2);
    let mut bob = Client::connect(&relay, "bob").await;
    bob.new_session().await;
    // A slot freed is a slot to take; the panel's request is refused the same way, with the quota's code.
    prompt(&mut c, "Remove-PSSession $a").await;
    assert_eq!(lines(&prompt(&mut c, "(New-PSSession -ComputerName localhost).State").await.text), ["Opened"]);
    c.send(serde_json::json!({"type": "new_sessions", "targets": [{"computer_name": "localhost", "transport": "local"}]})).await;
    let (code, message) = c
        .until(|m| match m {
            ServerMessage::TargetRefused { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::QuotaExceeded);
    assert!(message.starts_with("This user is allowed a maximum number of 2 concurrent shells"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_quota_tightens_and_never_loosens() {
    // [quotas] allows 3, the rule for localhost 1: the rule wins.
    let relay = relay_with(with_quotas(Quotas { max_shells_per_user: Some(3), ..Quotas::default() }, Quotas { max_shells_per_user: Some(1), ..Quotas::default() })).await;
    let mut c = Client::connect(&relay, "alice").await;
    c.new_session().await;
    let shown = prompt(&mut c, "New-PSSession -ComputerName localhost").await;
    assert!(shown.errors[0].contains("maximum number of 1 concurrent shells") && shown.errors[0].contains("the quotas of [[allow]] rule 1"), "{shown:?}");
    // A rule of 10 under [quotas] of 1: 1.
    let relay = relay_with(with_quotas(Quotas { max_shells_per_user: Some(1), ..Quotas::default() }, Quotas { max_shells_per_user: Some(10), ..Quotas::default() })).await;
    let mut c = Client::connect(&relay, "alice").await;
    c.new_session().await;
    let shown = prompt(&mut c, "New-PSSession -ComputerName localhost").await;
    assert!(shown.errors[0].contains("maximum number of 1 concurrent shells") && shown.errors[0].contains("in [quotas]"), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_users_keeps_the_next_user_out_until_a_user_leaves() {
    let relay = relay_with(with_quotas(Quotas { max_concurrent_users: Some(1), ..Quotas::default() }, Quotas::default())).await;
    let mut alice = Client::connect(&relay, "alice").await;
    alice.new_session().await;
    // Alice holds a session: she may open more; Bob may not open his first.
    alice.new_session().await;
    let mut bob = Client::connect(&relay, "bob").await;
    let shown = prompt(&mut bob, "New-PSSession -ComputerName localhost").await;
    assert!(shown.errors[0].contains("The maximum number of users (1) executing shell operations has been exceeded."), "{shown:?}");
    assert_eq!(held(&relay, "bob"), 0);
    prompt(&mut alice, "Get-PSSession | Remove-PSSession").await;
    bob.new_session().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_new_pssessions_racing_for_the_last_slot_one_wins() {
    let relay = relay_with(with_quotas(Quotas { max_shells_per_user: Some(3), ..Quotas::default() }, Quotas::default())).await;
    let mut c = Client::connect(&relay, "alice").await;
    c.new_session().await;
    c.new_session().await;
    for _ in 0..20 {
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (manager, start) = (relay.manager.clone(), start.clone());
                tokio::task::spawn_blocking(move || {
                    start.wait();
                    manager.create("alice", local()).map(|s| s.id)
                })
            })
            .collect();
        let mut won = Vec::new();
        for r in racers {
            match r.await.expect("a racer") {
                Ok(id) => won.push(id),
                Err(e) => assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one of two racers takes the last slot");
        assert_eq!(held(&relay, "alice"), 3);
        relay.manager.remove("alice", Some(&won)).expect("removed");
    }
}

/// A GET with the login cookie: the status and the `Retry-After` header.
async fn get(relay: &Relay, path: &str, cookie: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n", relay.addr);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let retry = resp.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_owned));
    (status, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_the_relay_answers_503_with_retry_after_never_a_hang() {
    let relay = relay_with(|c: &mut Config| c.quotas.max_connections = Some(2)).await;
    let cookie = login(&relay, "alice", "alice-pw").await;
    let origin = format!("http://{}", relay.addr);
    let first = open_ws(&relay, Some(&cookie), Some(&origin)).await.expect("the first WebSocket");
    assert_eq!(get(&relay, "/api/me", &cookie).await.0, 200, "one WebSocket and one request fit");
    let second = open_ws(&relay, Some(&cookie), Some(&origin)).await.expect("the second WebSocket");
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), open_ws(&relay, Some(&cookie), Some(&origin))).await.expect("no hang");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
        }
        other => panic!("a third WebSocket: {other:?}"),
    }
    assert_eq!(get(&relay, "/api/me", &cookie).await, (503, Some("5".to_owned())));
    // The assets are not counted; a closed WebSocket gives its slot back.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if get(&relay, "/api/me", &cookie).await.0 == 200 {
            again = Some(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the slot of a closed WebSocket comes back");
    drop(second);
}

/// The session's changes until it is no longer opened: the warnings the pages got on the way, and its last state.
async fn until_closed(c: &mut Client, id: psgate_shared::api::SessionId) -> (Vec<String>, psgate_shared::api::SessionInfo) {
    let mut warnings = Vec::new();
    loop {
        match c.next().await {
            ServerMessage::TargetRefused { code: ErrorCode::QuotaExceeded, message, .. } => warnings.push(message),
            ServerMessage::SessionChanged { session } if session.id == id && session.state == SessionState::Closed => return (warnings, session),
            _ => {}
        }
    }
}

/// The next quota warning the pages get.
async fn warning(c: &mut Client) -> String {
    c.until(|m| match m {
        ServerMessage::TargetRefused { code: ErrorCode::QuotaExceeded, message, .. } => Some(message.clone()),
        _ => None,
    })
    .await
}

/// Waits until `pipeline` runs on the target (its first output): the relay counts the session as in use from then on.
async fn running(c: &mut Client, pipeline: psgate_shared::api::PipelineId) {
    c.until(|m| matches!(m, ServerMessage::Output { pipeline: p, .. } if *p == pipeline).then_some(())).await;
}

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_warned_then_closed_and_use_keeps_it_open() {
    // An hour's IdleTimeout with its warning a minute before, on the quotas' injected time: the test moves it forward
    // instead of waiting, while the session runs on a real target.
    let relay = relay_with(with_quotas(Quotas { idle_timeout_secs: Some(3600), warning_secs: Some(60), ..Quotas::default() }, Quotas::default())).await;
    let time = relay.manager.quota_time();
    let mut c = Client::connect(&relay, "alice").await;
    let id = c.new_session().await;
    // Two hours with a pipeline running are not idle time, and its end starts the clock again.
    let p = c.run(id, "'started'; Start-Sleep -Seconds 2; 'done'").await;
    running(&mut c, p).await;
    time.advance(120 * MINUTE);
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
    assert_eq!(relay.manager.list("alice", None, None)[0].state, SessionState::Opened, "not closed while busy");
    let (idle_left, _) = relay.manager.time_left("alice", id);
    assert!(idle_left.is_some_and(|s| (3590..=3600).contains(&s)), "{idle_left:?}");
    // 59 minutes idle: a minute left, the warning comes; a request in the session takes it back.
    time.advance(59 * MINUTE);
    let warned = warning(&mut c).await;
    // (`1 min` less the real time the test took since the session's last use, rounded up to the second.)
    let (head, tail) = warned.split_once(": ").expect("a reason");
    assert!(head == format!("The session demo (Id {}) will be closed in 1 min", id.0) || head.ends_with(" 59 s"), "{warned}");
    assert_eq!(tail, "the relay closes a session idle for 1 h (its IdleTimeout, idle_timeout_secs). Use it to keep it open.");
    let p = c.run(id, "'still here'").await;
    c.until_done(p).await;
    assert_eq!(relay.manager.list("alice", None, None)[0].reason, None, "the warning is cleared by use");
    // Then an hour of nothing: warned again, and closed a minute later.
    time.advance(59 * MINUTE);
    assert!(warning(&mut c).await.contains("the relay closes a session idle for 1 h"));
    time.advance(MINUTE);
    let (warnings, info) = until_closed(&mut c, id).await;
    assert!(warnings.is_empty(), "one warning per close: {warnings:?}");
    assert_eq!(info.reason.as_deref(), Some("Closed by the relay: idle for 1 h, its IdleTimeout (idle_timeout_secs)."));
    // It stays listed, Closed with its reason, until removed.
    let listed = relay.manager.list("alice", None, None);
    assert_eq!(listed.iter().find(|s| s.id == id).map(|s| s.state), Some(SessionState::Closed));
    assert_eq!(held(&relay, "alice"), 0, "a closed session holds no quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_shell_run_time_closes_a_busy_session_and_stops_its_pipeline() {
    let relay = relay_with(with_quotas(Quotas { max_shell_run_time_secs: Some(7200), warning_secs: Some(300), ..Quotas::default() }, Quotas::default())).await;
    let time = relay.manager.quota_time();
    let mut c = Client::connect(&relay, "alice").await;
    let id = c.new_session().await;
    let p = c.run(id, "'started'; Start-Sleep -Seconds 60").await;
    running(&mut c, p).await;
    // However busy, the session is closed two hours after it opened, after a warning five minutes before.
    time.advance(115 * MINUTE);
    let warned = warning(&mut c).await;
    assert!(warned.contains(" will be closed in ") && warned.ends_with("the relay closes a session open for 2 h (its MaxShellRunTime, max_shell_run_time_secs)."), "{warned}");
    time.advance(5 * MINUTE);
    let error = c
        .until(|m| match m {
            ServerMessage::PipelineState { pipeline, state, error, .. } if *pipeline == p && state.is_terminal() => Some((*state, error.clone())),
            _ => None,
        })
        .await;
    assert_eq!(error.0, PipelineState::Stopped);
    let error = psgate_shared::clixml::decode_message(error.1.expect("why").as_bytes()).expect("text");
    assert_eq!(psgate_lang::values::text(&error), "Closed by the relay: open for 2 h, its MaxShellRunTime (max_shell_run_time_secs).");
    let (_, info) = until_closed(&mut c, id).await;
    assert!(info.reason.is_some_and(|r| r.contains("MaxShellRunTime")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_their_quotas_and_the_time_left_to_their_sessions() {
    let global = Quotas { max_shells_per_user: Some(5), max_concurrent_users: Some(10), idle_timeout_secs: Some(3600), max_shell_run_time_secs: Some(7200), max_connections: Some(50), ..Quotas::default() };
    let relay = relay_with(with_quotas(global, Quotas { max_shells_per_user: Some(2), ..Quotas::default() })).await;
    let mut c = Client::connect(&relay, "alice").await;
    c.new_session().await;
    let mut bob = Client::connect(&relay, "bob").await;
    bob.new_session().await;
    // Get-PSGateQuota: each limit, where it is set, and this user's use.
    let shown = prompt(&mut c, "Get-PSGateQuota | % { '{0} {1} {2} {3}' -f $_.Quota, $_.Limit, $_.Used, $_.Scope }").await;
    let rows = lines(&shown.text);
    assert!(rows.contains(&"MaxShellsPerUser 5 1 [quotas]".to_owned()), "{rows:?}");
    assert!(rows.contains(&"MaxShellsPerUser 2 1 [[allow]] rule 1 (localhost)".to_owned()), "{rows:?}");
    assert!(rows.contains(&"MaxConcurrentUsers 10 2 [quotas]".to_owned()), "{rows:?}");
    assert!(rows.iter().any(|r| r.starts_with("IdleTimeout 01:00:00 00:00:0")), "{rows:?}");
    assert!(rows.iter().any(|r| r.starts_with("MaxShellRunTime 02:00:00 00:00:")), "{rows:?}");
    // One WebSocket per user (the prompt's line is its own, not an API request).
    assert!(rows.contains(&"MaxConnections 50 2 [quotas]".to_owned()), "{rows:?}");
    // Get-PSSession shows the time the quotas leave each session.
    let shown = prompt(&mut c, "Get-PSSession").await;
    let table = lines(&shown.text);
    assert!(table[0].ends_with("IdleTimeLeft RunTimeLeft"), "{table:?}");
    // (Whole seconds left: 01:00:00 within the first second, 00:59:5x after.)
    assert!((table[2].contains(" 01:00:00") || table[2].contains(" 00:59:5")) && (table[2].contains(" 02:00:00") || table[2].contains(" 01:59:5")), "{table:?}");
    // -AllUsers is for relay admins.
    let shown = prompt(&mut c, "Get-PSGateQuota -AllUsers").await;
    assert!(shown.errors[0].starts_with("Access is denied: only a relay admin"), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_admin_sees_every_users_sessions_and_closes_one_audited() {
    let store = std::sync::Arc::new(psgate_relay::store::Store::in_memory().expect("db"));
    for user in ["root", "alice"] {
        store.set_user(user, &format!("{user}-pw")).await.expect("user");
    }
    assert!(store.set_admin("root", true).await.expect("admin"));
    let relay = psgate_tests::relay::relay_on(store.clone(), |c: &mut Config| c.quotas.idle_timeout_secs = Some(600)).await;
    let mut alice = Client::connect(&relay, "alice").await;
    let id = alice.new_session().await;
    let mut root = Client::connect(&relay, "root").await;
    root.new_session().await;
    let shown = prompt(&mut root, "Get-PSGateSession -User al* | % { '{0} {1} {2} {3}' -f $_.User, $_.Id, $_.State, $_.IdleTimeLeft }").await;
    assert_eq!(lines(&shown.text).len(), 1, "{shown:?}");
    let row = &lines(&shown.text)[0];
    assert!(row == &format!("alice {} Opened 00:10:00", id.0) || row.starts_with(&format!("alice {} Opened 00:09:", id.0)), "{shown:?}");
    assert_eq!(lines(&prompt(&mut root, "(Get-PSGateQuota -AllUsers -Name IdleTimeout).User").await.text), ["alice", "root"]);
    // Alice may not do the same.
    let shown = prompt(&mut alice, "Get-PSGateSession").await;
    assert!(shown.errors[0].starts_with("Access is denied"), "{shown:?}");
    let shown = prompt(&mut alice, "Remove-PSGateSession -User root -Id 2").await;
    assert!(shown.errors[0].starts_with("Access is denied"), "{shown:?}");
    // The admin closes Alice's session; she is told, and the audit has it.
    let shown = prompt(&mut root, &format!("Remove-PSGateSession -User alice -Id {}", id.0)).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let told = alice
        .until(|m| match m {
            ServerMessage::TargetRefused { message, .. } if message.contains("closed your session") => Some(message.clone()),
            _ => None,
        })
        .await;
    assert_eq!(told, format!("The relay admin root closed your session {} on localhost.", id.0));
    assert_eq!(held(&relay, "alice"), 0);
    relay.manager.flush_audit().await;
    let filter = psgate_relay::store::AuditFilter { kinds: vec!["admin".into()], ..Default::default() };
    let audit = store.audit_page(&filter, 0, 100).await.expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    let event = audit[0].event().expect("an event");
    assert_eq!((event.actor.as_str(), event.owner.as_deref(), event.session, event.data["action"].as_str()), ("root", Some("alice"), Some(id.0), Some("Remove-PSGateSession")));
}

/// A relay that allows the WS-Management peer, a user with its credentials in `$cred` and a WinRM session in `$s`.
async fn winrm_prompt(peer: &WinrmPeer) -> (Relay, Client) {
    let port = peer.port;
    let relay = relay_with(move |c: &mut Config| {
        c.allow.push(AllowRule { hosts: vec!["127.0.0.1".into()], ports: vec![port], transports: vec![Transport::Winrm], ..AllowRule::default() })
    })
    .await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt_with(&mut c, "$cred = Get-Credential", vec![psgate_shared::api::HostAnswer::Credential { user: USER.into(), password: PASSWORD.into() }]).await;
    let shown = prompt(&mut c, &format!("$s = New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred")).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    (relay, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_winrm_targets_quotas_read_and_changed_on_the_wsman_drive() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--gpo-setting".into(), "Winrs/MaxConcurrentUsers=5".into()], ..PeerOptions::default() });
    let port = peer.port;
    let (_relay, mut c) = winrm_prompt(&peer).await;
    // WSMan:\127.0.0.1\Shell is the target's winrm/config/winrs, as PowerShell's provider lays it out.
    let shown = prompt(&mut c, "Get-ChildItem WSMan:\\127.0.0.1\\Shell").await;
    let table = lines(&shown.text);
    assert_eq!(table[0].split_whitespace().collect::<Vec<_>>(), ["Type", "Name", "SourceOfValue", "Value"], "{shown:?}");
    assert!(table.iter().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["System.String", "MaxShellsPerUser", "2147483647"]), "{table:?}");
    assert!(table.iter().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["System.String", "MaxConcurrentUsers", "GPO", "5"]), "{table:?}");
    let root = lines(&prompt(&mut c, "Get-ChildItem WSMan:\\127.0.0.1 | % Name").await.text);
    assert!(["MaxEnvelopeSizekb", "Client", "Service", "Shell", "Plugin"].iter().all(|n| root.contains(&(*n).to_owned())), "{root:?}");
    // Changed the provider's way (Get, edit, Put): the target enforces it; New-PSSession then shows its fault.
    let shown = prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser 1").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    assert!(shown.records.iter().any(|(k, _)| *k == psgate_shared::api::RecordKind::Warning), "the provider's warning: {shown:?}");
    assert_eq!(lines(&prompt(&mut c, "(Get-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser).Value").await.text), ["1"]);
    let shown = prompt(&mut c, &format!("New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred")).await;
    assert!(
        shown.errors[0].starts_with("[127.0.0.1] Connecting to remote server 127.0.0.1 failed with the following error message : ")
            && shown.errors[0].contains("This user is allowed a maximum number of 1 concurrent shells, which has been exceeded."),
        "{shown:?}"
    );
    // The target's quotas against this user's shells on it (Enumerate), as Get-PSGateQuota -ComputerName shows them.
    let shown = prompt(&mut c, "Get-PSGateQuota -ComputerName 127.0.0.1 -Name MaxShellsPerUser | % { '{0} {1} {2}' -f $_.Scope, $_.Limit, $_.Used }").await;
    assert_eq!(lines(&shown.text), ["WSMan:\\127.0.0.1\\Shell 1 1", "WSMan:\\127.0.0.1\\Plugin\\Microsoft.PowerShell\\Quotas 2147483647 1"], "{shown:?}");
    // A plugin's quotas, with the restart warning; refusals in the target's words.
    let shown = prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Plugin\\Microsoft.PowerShell\\Quotas\\MaxShellsPerUser 3").await;
    assert_eq!(shown.errors.len(), 0, "{shown:?}");
    assert_eq!(lines(&prompt(&mut c, "(Get-Item WSMan:\\127.0.0.1\\Plugin\\Microsoft.PowerShell\\Quotas\\MaxShellsPerUser).Value").await.text), ["3"]);
    // The configuration's own quota, hit: its fault's code and words (the shell quota lifted first: 0 is unlimited).
    prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser 0").await;
    prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Plugin\\Microsoft.PowerShell\\Quotas\\MaxShellsPerUser 1").await;
    let shown = prompt(&mut c, &format!("New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred")).await;
    assert!(
        shown.errors[0].starts_with("[127.0.0.1] Connecting to remote server 127.0.0.1 failed with the following error message : ")
            && shown.errors[0].contains("This user is allowed a maximum number of 1 concurrent shells for this plugin, which has been exceeded.")
            && shown.errors[0].contains("(WS-Management fault 2150859236, w:QuotaLimit, on 127.0.0.1)"),
        "{shown:?}"
    );
    let shown = prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Shell\\MaxConcurrentUsers 9").await;
    assert!(shown.errors[0].contains("cannot be changed because is controlled by policies"), "{shown:?}");
    let shown = prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Shell\\MaxShellRunTime 60000").await;
    assert!(shown.errors[0].contains("deprecated setting"), "{shown:?}");
    // Without a session to the computer there are no credentials to read it with.
    let shown = prompt(&mut c, "Get-Item WSMan:\\srv99\\Shell").await;
    assert!(shown.errors[0].contains("New-PSSession -ComputerName srv99"), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_administrator_cannot_change_a_targets_configuration() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--admin-users".into(), "someone-else".into()], ..PeerOptions::default() });
    let (_relay, mut c) = winrm_prompt(&peer).await;
    assert_eq!(lines(&prompt(&mut c, "(Get-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser).Value").await.text), ["2147483647"]);
    let shown = prompt(&mut c, "Set-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser 2").await;
    assert!(shown.errors[0].contains("Access is denied"), "{shown:?}");
    assert_eq!(lines(&prompt(&mut c, "(Get-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser).Value").await.text), ["2147483647"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_memory_per_shell_mb_bounds_the_output_the_relay_keeps() {
    let relay = relay_with(with_quotas(Quotas { max_memory_per_shell_mb: Some(1), ..Quotas::default() }, Quotas::default())).await;
    let mut c = Client::connect(&relay, "alice").await;
    let id = c.new_session().await;
    // Nobody follows this command: beyond 1 MiB its oldest output is dropped (a page that attaches later is told
    // how much), the newest kept.
    let (_, buffer) = relay.manager.run("alice", id, "Get-Objects -Count 300 -Size large".into()).expect("started");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while buffer.outcome().is_none() {
        assert!(std::time::Instant::now() < end, "the command ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let batch = buffer.read(0, 100_000);
    let kept: usize = batch
        .events
        .iter()
        .map(|e| match e {
            ServerMessage::Output { clixml, .. } => clixml.len(),
            _ => 0,
        })
        .sum();
    assert!(batch.dropped > 0, "output beyond 1 MiB was dropped");
    assert!(kept <= 1024 * 1024 && kept > 512 * 1024, "{kept} bytes kept");
    assert_eq!(batch.dropped as usize + batch.events.len(), 301, "300 objects and their end: nothing lost uncounted");
}
