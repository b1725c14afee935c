//! psgate's prompt (`PS psgate>`) through the relay's API, as the browser uses it, against the real peers: the
//! test host as a local process, behind OpenSSH's sshd, and behind the WS-Management peer with NTLM. The lines are
//! the ones admins type; the prompt's state lives in the relay per user, so another connection of the same user
//! sees `$session1` and nobody else does.

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;
mod at_prompt;

use psgate_relay::config::{AllowRule, Config};
use psgate_shared::api::{HostAnswer, LOCAL_SESSION, PipelineState, RecordKind, ServerMessage, SessionId, SessionState, Transport};
use psgate_shared::psrp::messages::ErrorRecordView;
use psgate_tests::Sshd;
use psgate_tests::relay::{Client, Relay, outputs, relay, relay_with};
use serde_json::json;
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};
use at_prompt::{completions, entered_after, lines, prompt, prompt_with};


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_test_host_from_the_prompt_and_a_reload_sees_the_same_variables() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let shown = prompt(&mut c, "$session1 = New-PSSession -Name web").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    // `-ComputerName localhost` is the relay's own machine here (its local transport; WinRM to it is not allowed).
    let shown = prompt(&mut c, "New-PSSession -ComputerName localhost | Remove-PSSession").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let shown = prompt(&mut c, "Get-PSSession").await;
    assert_eq!(
        lines(&shown.text)[..3],
        [
            "Id Name Transport ComputerName ComputerType  State  ConfigurationName Availability",
            "-- ---- --------- ------------ ------------  -----  ----------------- ------------",
            " 1 web  Process   localhost    RemoteMachine Opened                   Available",
        ]
    );
    // Script blocks run remotely: each result tagged with the computer, as Invoke-Command tags it.
    let shown = prompt(&mut c, "Invoke-Command -Session $session1 -ScriptBlock { Get-Process -Name svchost } | select -First 1 | % PSComputerName").await;
    assert_eq!(lines(&shown.text), ["localhost"], "{shown:?}");
    // A remote pipeline's host call reaches the page through the prompt's line, and the answer goes back to it.
    let shown = prompt_with(&mut c, "Invoke-Command -Session $session1 -ScriptBlock { Read-Host }", vec![HostAnswer::Value { clixml: "<S>typed at the prompt</S>".into() }]).await;
    assert_eq!(lines(&shown.text), ["typed at the prompt"], "{shown:?}");
    // Enter-PSSession switches the prompt into the session; the page sends its lines to the session; exit returns.
    let shown = prompt(&mut c, "Get-PSSession -ComputerName localhost | Enter-PSSession").await;
    assert_eq!(entered_after(&mut c, &shown).await, Some(SessionId(1)), "{shown:?}");
    assert_eq!(relay.manager.entered("alice"), Some(SessionId(1)));
    let p = c.run(SessionId(1), "Get-Date").await;
    assert_eq!(outputs(&c.until_done(p).await).len(), 1);
    let shown = prompt(&mut c, "exit").await;
    assert_eq!(entered_after(&mut c, &shown).await, None);
    // Another connection of the same user (a reload, a second tab) has the same variables.
    let mut tab = Client::connect(&relay, "alice").await;
    assert_eq!(lines(&prompt(&mut tab, "$session1.Name; $session1.State").await.text), ["web", "Opened"]);
    // Nobody else does.
    let mut bob = Client::connect(&relay, "bob").await;
    assert_eq!(prompt(&mut bob, "$session1; Get-PSSession").await.text, "");
    // The prompt's lines are in the user's history (a page that comes back rebuilds its console from it).
    tab.send(json!({"type": "get_history"})).await;
    let scripts: Vec<String> = tab
        .until(|m| match m {
            ServerMessage::History { pipelines, .. } => Some(pipelines.iter().filter(|p| p.session == LOCAL_SESSION).map(|p| p.script.clone()).collect()),
            _ => None,
        })
        .await;
    assert!(scripts.contains(&"$session1 = New-PSSession -Name web".to_owned()), "{scripts:?}");
    // Remove-PSSession, and the removed session's object says Closed.
    prompt(&mut c, "Get-PSSession | Remove-PSSession").await;
    assert_eq!(lines(&prompt(&mut c, "$session1.State; (Get-PSSession).Count").await.text), ["Closed", "0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_read_as_powershell_words_them() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    let shown = prompt(&mut c, "new-pssesion").await;
    assert_eq!(shown.state, PipelineState::Failed);
    assert!(shown.errors[0].starts_with("The term 'new-pssesion' is not recognized as a name of a cmdlet"), "{shown:?}");
    let hint = shown.records.iter().find(|(k, _)| *k == RecordKind::Information).map(|(_, v)| psgate_lang::values::text(v)).unwrap_or_default();
    assert!(hint.contains("New-PSSession"), "{hint}");
    // A user name as -Credential asks for the password, as PowerShell does; then the allow-list refuses.
    let shown = prompt_with(&mut c, "New-PSSession -ComputerName forbidden.example -Credential u", vec![HostAnswer::Credential { user: "u".into(), password: "p".into() }]).await;
    assert_eq!(shown.errors, ["[forbidden.example] forbidden.example:5985 over WinRM is not in this relay's allow-list"], "{shown:?}");
    let shown = prompt(&mut c, "Get-PSSession -Id (").await;
    assert_eq!(shown.errors, ["Missing closing ')' in expression."]);
    // Ctrl+C stops a line waiting at a prompt.
    let p = c.run(LOCAL_SESSION, "Get-Credential").await;
    c.host_call().await;
    c.send(json!({"type": "stop", "session": LOCAL_SESSION, "pipeline": p})).await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Stopped, .. })), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_at_the_prompt() {
    let relay = relay().await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt(&mut c, "$session1 = New-PSSession").await;
    for (input, expect) in [("Enter-PSS", "Enter-PSSession"), ("Get-PSSession -Comp", "-ComputerName"), ("Enter-PSSession -Session $se", "$session1")] {
        assert_eq!(completions(&mut c, input).await, [expect], "{input}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_sessions_from_the_prompt_behind_a_real_sshd() {
    let sshd = Sshd::start(true).expect("sshd");
    let (host, port) = (sshd.get("host"), sshd.port());
    let known_hosts = sshd.get("known_hosts");
    let relay = relay_with(|c: &mut Config| {
        c.known_hosts = Some(known_hosts.into());
        c.allow.push(AllowRule { hosts: vec![host.clone()], ports: vec![port], transports: vec![Transport::Ssh], ..AllowRule::default() });
    })
    .await;
    let mut c = Client::connect(&relay, "alice").await;
    let (user, key) = (sshd.get("user"), sshd.get("key_ed25519"));
    let line = format!("$iis_server = New-PSSession -HostName {host}, {host} -Port {port} -UserName {user} -KeyFilePath {key}");
    let shown = prompt(&mut c, &line).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    assert_eq!(lines(&prompt(&mut c, "$iis_server.Transport").await.text), ["SSH", "SSH"]);
    // The password is asked for (masked) when there is no key, as ssh asks.
    let line = format!("New-PSSession -HostName {user}@{host}:{port} -Name pw | % Name");
    let shown = prompt_with(&mut c, &line, vec![HostAnswer::Secure { text: sshd.password() }]).await;
    assert_eq!(lines(&shown.text), ["pw"], "{shown:?}");
    let shown = prompt(&mut c, "Invoke-Command -Session $iis_server -ScriptBlock { Get-Process -Name svchost } | % PSComputerName | select -Unique").await;
    assert_eq!(lines(&shown.text), [host.as_str()], "{shown:?}");
    prompt(&mut c, "Remove-PSSession -Name pw").await;
    assert_eq!(lines(&prompt(&mut c, "Get-PSSession | % Name").await.text), ["Runspace1", "Runspace2"]);
}

fn allow_peer(peer: &WinrmPeer) -> impl FnOnce(&mut Config) {
    let port = peer.port;
    move |c: &mut Config| c.allow.push(AllowRule { hosts: vec!["127.0.0.1".into(), "localhost".into()], ports: vec![port], transports: vec![Transport::Winrm], ..AllowRule::default() })
}

fn credential() -> HostAnswer {
    HostAnswer::Credential { user: USER.into(), password: PASSWORD.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_lines_over_winrm_with_ntlm() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let port = peer.port;
    let relay: Relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt_with(&mut c, "$cred = Get-Credential", vec![credential()]).await;
    let line = format!("$session1, $session2 = New-PSSession -ComputerName 127.0.0.1, localhost -Port {port} -Credential $cred");
    let shown = prompt(&mut c, &line).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let shown = prompt(&mut c, "Get-PSSession | ft Id, Transport, ComputerName, State, ConfigurationName").await;
    assert_eq!(
        lines(&shown.text),
        [
            "Id Transport ComputerName State  ConfigurationName",
            "-- --------- ------------ -----  -----------------",
            " 1 WSMan     127.0.0.1    Opened Microsoft.PowerShell",
            " 2 WSMan     localhost    Opened Microsoft.PowerShell",
        ]
    );
    let gm = prompt(&mut c, "$session1 | gm -MemberType Property | % Name").await;
    assert!(lines(&gm.text).contains(&"InstanceId".to_owned()), "{gm:?}");
    let shown = prompt(&mut c, "Invoke-Command -Command {Get-Process -Name svchost} -Session (Get-PSSession -ComputerName 127.0.0.1, localhost) | % PSComputerName | sort -Unique").await;
    assert_eq!(lines(&shown.text), ["127.0.0.1", "localhost"], "{shown:?}");
    // Disconnect-PSSession -Id 2, then Get-PSSession -ComputerName … | Connect-PSSession.
    let shown = prompt(&mut c, "Disconnect-PSSession -Id 2 | % State").await;
    assert_eq!(lines(&shown.text), ["Disconnected"], "{shown:?}");
    let shown = prompt(&mut c, "Get-PSSession -ComputerName localhost | Connect-PSSession | % State").await;
    assert_eq!(lines(&shown.text), ["Opened"], "{shown:?}");
    // Entered, then disconnected from the sessions panel: the prompt leaves the session, as PowerShell's console does.
    let shown = prompt(&mut c, "Enter-PSSession -Id 2").await;
    assert_eq!(entered_after(&mut c, &shown).await, Some(SessionId(2)));
    c.send(json!({"type": "disconnect_sessions", "ids": [2]})).await;
    let left = c.until(|m| match m {
        ServerMessage::PromptState { entered } => Some(*entered),
        _ => None,
    })
    .await;
    assert_eq!(left, None);
    assert_eq!(relay.manager.entered("alice"), None);
    let shown = prompt(&mut c, "Connect-PSSession -Id 2 | % State").await;
    assert_eq!(lines(&shown.text), ["Opened"], "{shown:?}");
    // A job over both sessions, received when done.
    prompt(&mut c, "$job = Invoke-Command -Session $session1, $session2 -ScriptBlock { Get-Process -Name svchost } -AsJob").await;
    let shown = prompt(&mut c, "Wait-Job $job | % State; Receive-Job $job | % PSComputerName | sort -Unique").await;
    assert_eq!(lines(&shown.text), ["Completed", "127.0.0.1", "localhost"], "{shown:?}");
    prompt(&mut c, "Remove-PSSession $session1").await;
    prompt(&mut c, "Get-PSSession | Remove-PSSession").await;
    assert_eq!(prompt(&mut c, "Get-PSSession").await.text, "");
    let states: Vec<SessionState> = relay.manager.list("alice", None, None).iter().map(|s| s.state).collect();
    assert!(states.is_empty(), "{states:?}");
}

/// The target's error for a pipeline that failed (its terminating error record's message).
async fn failure_of(c: &mut Client, session: SessionId, line: &str) -> String {
    let p = c.run(session, line).await;
    let events = c.until_done(p).await;
    match events.last() {
        Some(ServerMessage::PipelineState { state: PipelineState::Failed, error: Some(e), .. }) => {
            ErrorRecordView::from_value(&psgate_shared::clixml::decode_message(e.as_bytes()).expect("an error record")).message
        }
        other => panic!("{line}: expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jea_endpoint_takes_typed_lines_as_command_objects_and_refuses_script_text_plainly() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--restricted-configuration".into(), "JEA.Helpdesk".into()], ..PeerOptions::default() });
    let port = peer.port;
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt_with(&mut c, "$cred = Get-Credential", vec![credential()]).await;
    let shown = prompt(&mut c, &format!("$jea = New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred -ConfigurationName JEA.Helpdesk; $jea.ConfigurationName")).await;
    assert_eq!(lines(&shown.text), ["JEA.Helpdesk"], "{shown:?}");
    // Enter-PSSession: the endpoint's `prompt` is not visible, so the console shows `[HOST]: PS>`.
    let shown = prompt(&mut c, "Enter-PSSession $jea").await;
    let s = entered_after(&mut c, &shown).await.expect("entered");
    let info = relay.manager.list("alice", None, None).into_iter().find(|i| i.id == s).expect("the session");
    assert_eq!(psgate_relay::session::manager::shown_prompt(&info), "PS>");
    // A typed simple line goes as Command objects: it runs there.
    let p = c.run(s, "Get-Service -Name bits").await;
    let events = c.until_done(p).await;
    let names: Vec<String> = outputs(&events).iter().filter_map(|o| o.as_object()?.property("Name")?.as_str().map(str::to_owned)).collect();
    assert_eq!(names, ["bits"], "{events:?}");
    // Script text is refused by the endpoint, and the user reads why.
    let why = failure_of(&mut c, s, "Get-Service | Where-Object { $_.Status -eq 'Running' }").await;
    assert_eq!(why, "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode.");
    let shown = prompt(&mut c, "exit").await;
    assert_eq!(entered_after(&mut c, &shown).await, None);
    // Invoke-Command from the prompt: the same rule for its script block.
    let shown = prompt(&mut c, "Invoke-Command -Session $jea -ScriptBlock { Get-Service -Name bits } | % Name").await;
    assert_eq!(lines(&shown.text), ["bits"], "{shown:?}");
    let shown = prompt(&mut c, "Invoke-Command -Session $jea -ScriptBlock { $x = 'bits'; Get-Service -Name $x }").await;
    assert_eq!(shown.errors, ["The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."], "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jea_ssh_subsystem_from_the_prompt() {
    let sshd = Sshd::start_with(true, &["--jea-subsystem"]).expect("sshd");
    let (host, port) = (sshd.get("host"), sshd.port());
    let known_hosts = sshd.get("known_hosts");
    let relay = relay_with(|c: &mut Config| {
        c.known_hosts = Some(known_hosts.into());
        c.allow.push(AllowRule { hosts: vec![host.clone()], ports: vec![port], transports: vec![Transport::Ssh], ..AllowRule::default() });
    })
    .await;
    let mut c = Client::connect(&relay, "alice").await;
    let line = format!("$s = New-PSSession -HostName {host} -Port {port} -UserName {} -KeyFilePath {} -Subsystem powershell-jea", sshd.get("user"), sshd.get("key_ed25519"));
    let shown = prompt(&mut c, &line).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let shown = prompt(&mut c, "Invoke-Command -Session $s -ScriptBlock { Get-Service -Name bits } | % Name").await;
    assert_eq!(lines(&shown.text), ["bits"], "{shown:?}");
    let shown = prompt(&mut c, "Invoke-Command -Session $s -ScriptBlock { Get-Service | Where-Object { $_.Status -eq 'Running' } }").await;
    assert!(shown.errors[0].starts_with("The syntax is not supported by this runspace"), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_quota_and_a_reopened_session_at_the_prompt() {
    let peer = WinrmPeer::start(PeerOptions { extra: vec!["--max-shells-per-user".into(), "2".into()], ..PeerOptions::default() });
    let port = peer.port;
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt_with(&mut c, "$cred = Get-Credential", vec![credential()]).await;
    let shown = prompt(&mut c, &format!("$s = New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred")).await;
    assert_eq!(shown.errors.len(), 0, "{shown:?}");
    // New-PSSession -Session: a new session like $s, with its computer, port and credentials.
    let shown = prompt(&mut c, "New-PSSession -Session $s -Name again | ft Name, ComputerName, State").await;
    assert_eq!(lines(&shown.text)[2], "again 127.0.0.1    Opened", "{shown:?}");
    // The third is over the target's quota: refused, with the quota named, and not kept.
    let shown = prompt(&mut c, "New-PSSession -Session $s").await;
    assert_eq!(shown.errors.len(), 1, "{shown:?}");
    assert!(shown.errors[0].starts_with("[127.0.0.1] Connecting to remote server 127.0.0.1 failed with the following error message : "), "{shown:?}");
    assert!(shown.errors[0].contains("MaxShellsPerUser"), "{shown:?}");
    let id = shown.records.iter().find_map(|(_, v)| v.as_object()?.property("FullyQualifiedErrorId")?.as_str().map(str::to_owned));
    assert_eq!(id.as_deref(), Some("QuotaExceeded,PSSessionOpenFailed"));
    assert_eq!(lines(&prompt(&mut c, "(Get-PSSession).Count").await.text), ["2"]);
    prompt(&mut c, "Get-PSSession | Remove-PSSession").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompts_variables_and_history_outlive_the_relay_sealed_in_its_store() {
    // One relay on an SQLite file, restarted: as a relay taking a user over, it takes their prompt back from the store.
    let dir = tempfile::tempdir().expect("a folder");
    let db = dir.path().join("psgate.db");
    let store = std::sync::Arc::new(psgate_relay::store::Store::open(&db).expect("the store"));
    store.set_user("alice", "alice-pw").await.expect("user");
    let first = psgate_tests::relay::relay_on(store.clone(), |_| {}).await;
    let mut c = Client::connect(&first, "alice").await;
    prompt(&mut c, "$greeting = 'hello from before the restart'").await;
    let kept = |store: std::sync::Arc<psgate_relay::store::Store>| async move { store.prompt(psgate_relay::store::PromptPart::State, "alice").await.expect("read") };
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    let mut before = kept(store.clone()).await;
    while before.is_none() {
        assert!(std::time::Instant::now() < deadline, "the prompt's state kept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        before = kept(store.clone()).await;
    }
    prompt_with(&mut c, "$cred = Get-Credential", vec![credential()]).await;
    while kept(store.clone()).await == before {
        assert!(std::time::Instant::now() < deadline, "the prompt's state kept again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(c);
    first.manager.shutdown(psgate_tests::STEP).await;
    drop(first);

    let second = psgate_tests::relay::relay_on(store.clone(), |_| {}).await;
    let mut c = Client::connect(&second, "alice").await;
    let shown = prompt(&mut c, "$greeting; $cred.UserName -like '*ada'").await;
    assert_eq!(lines(&shown.text), ["hello from before the restart", "True"], "{shown:?}");
    let history = prompt(&mut c, "Get-History | % CommandLine").await;
    assert_eq!(lines(&history.text)[..2], ["$greeting = 'hello from before the restart'", "$cred = Get-Credential"]);
    // Sealed: the kept state holds neither the variable's text nor the credential's password in clear, and the
    // password is nowhere in the database (the audit has the lines as typed, the credential's answer redacted).
    let state = store.prompt(psgate_relay::store::PromptPart::State, "alice").await.expect("read").expect("kept");
    let sealed_has = |needle: &str| state.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!sealed_has("hello from before the restart") && !sealed_has("ada"));
    let mut bytes = std::fs::read(&db).expect("the database");
    bytes.extend(std::fs::read(dir.path().join("psgate.db-wal")).unwrap_or_default());
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!has(PASSWORD));
}
