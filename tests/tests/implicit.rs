//! Implicit remoting at psgate's prompt through the relay's API, against the real peers: Import-PSSession's
//! discovery by GET_COMMAND_METADATA, proxies that run the ActiveDirectory commands as Command objects with named,
//! positional and pipeline input, remote help, the module's lifetime and repair — on the test host as a local
//! process, behind OpenSSH's sshd, behind the WS-Management peer with NTLM, and on its JEA (NoLanguage) endpoint.

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;
mod at_prompt;

use at_prompt::{completions, lines, prompt, prompt_with};
use psgate_relay::config::{AllowRule, Config};
use psgate_shared::api::{FieldAnswer, HostAnswer, PipelineState, RecordKind, ServerMessage, Transport};
use psgate_tests::Sshd;
use psgate_tests::relay::{Client, relay_with};
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

/// The issue's lines in a session `$session` that exists: Import-Module there (`import`: a JEA endpoint has the
/// module of its role already, and no Import-Module), Import-PSSession, the proxies.
async fn the_issue_lines(c: &mut Client, import: bool) {
    if import {
        let shown = prompt(c, "Invoke-Command -Command { Import-Module ActiveDirectory } -Session $session").await;
        assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    }
    let shown = prompt(c, "Import-PSSession -Session $session -Module ActiveDirectory -Prefix rem").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let table = lines(&shown.text);
    assert!(table[0].starts_with("ModuleType Version"), "{table:?}");
    assert!(table[2].starts_with("Script     1.0") && table[2].contains("tmp_") && table[2].contains("New-remADUser"), "{table:?}");
    // A proxy with named parameters; -PassThru's object comes back deserialized.
    let shown = prompt(c, "New-remADUser -Name ada -SamAccountName ada -PassThru | % SamAccountName").await;
    assert_eq!((lines(&shown.text), shown.errors.len()), (vec!["ada".to_owned()], 0), "{shown:?}");
    // The module's format data (Get-FormatData for the commands' output type, ADUser): the server's table view of
    // four columns, not the list ten properties would make.
    let shown = prompt(c, "Get-remADUser -Identity ada").await;
    let table = lines(&shown.text);
    assert_eq!(table[0].split_whitespace().collect::<Vec<_>>(), ["Name", "SamAccountName", "Enabled", "DistinguishedName"], "{shown:?}");
    assert!(table[2].starts_with("ada") && table[2].contains("CN=ada,"), "{table:?}");
    // Positional, and the name prefix completed from the metadata.
    let shown = prompt(c, "New-remADUser bob -Sam bob").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    // Pipeline input: the deserialized users go to the remote Set-ADUser as its input.
    let shown = prompt(c, "Get-remADUser -Filter * | Set-remADUser -Department Ops").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let shown = prompt(c, "Get-remADUser -Identity ada -Properties Department | % Department").await;
    assert_eq!(lines(&shown.text), ["Ops"], "{shown:?}");
    // The remote error of a proxy shows as the command's own.
    let shown = prompt(c, "Get-remADUser -Identity nobody").await;
    assert!(shown.errors.first().is_some_and(|e| e.contains("nobody")), "{shown:?}");
}

fn allow_peer(peer: &WinrmPeer) -> impl FnOnce(&mut Config) {
    let port = peer.port;
    move |c: &mut Config| c.allow.push(AllowRule { hosts: vec!["127.0.0.1".into()], ports: vec![port], transports: vec![Transport::Winrm], ..AllowRule::default() })
}

fn fields(name: &str, text: &str) -> HostAnswer {
    HostAnswer::Fields { fields: vec![FieldAnswer { name: name.into(), text: text.into(), secure: false }] }
}

fn credential() -> HostAnswer {
    HostAnswer::Credential { user: USER.into(), password: PASSWORD.into() }
}

/// The local test host started with a marker in its command line, to find (and kill) it.
fn marked(marker: &str) -> impl FnOnce(&mut Config) {
    let marker = marker.to_owned();
    move |c: &mut Config| {
        if let Some(argv) = c.local_command.as_mut() {
            argv.push(marker);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_lines_on_the_local_test_host_with_help_lifetime_and_repair() {
    let marker = format!("--psgate-test-{}", uuid::Uuid::new_v4());
    let relay = relay_with(marked(&marker)).await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt(&mut c, "$session = New-PSSession -Name ad").await;
    the_issue_lines(&mut c, true).await;
    // The pages hear of the module (the sessions panel shows it), a page that comes back too.
    let mut tab = Client::connect(&relay, "alice").await;
    let modules = tab
        .until(|m| match m {
            ServerMessage::PromptModules { modules } => Some(modules.clone()),
            _ => None,
        })
        .await;
    assert_eq!(modules.len(), 1, "{modules:?}");
    assert!(modules[0].name.starts_with("tmp_") && modules[0].commands.contains(&"New-remADUser".to_owned()), "{modules:?}");
    drop(tab);
    // Help from the session, under the proxy's name.
    let shown = prompt(&mut c, "Get-Help New-remADUser -Full").await;
    assert!(shown.text.contains("NAME\n    New-remADUser") && shown.text.contains("PARAMETERS") && shown.text.contains("-SamAccountName"), "{}", shown.text);
    assert!(!shown.text.contains("New-ADUser -"), "the remote name shows in the syntax: {}", shown.text);
    let shown = prompt(&mut c, "Get-Help New-remADUser -Examples").await;
    assert!(shown.text.contains("New-remADUser"), "{}", shown.text);
    // Beyond PowerShell's proxies, from Get-Command -ShowCommandInfo: a missing mandatory parameter is asked for
    // here, and an enum's values complete.
    let shown = prompt_with(&mut c, "New-remADUser -SamAccountName zed -PassThru | % Name", vec![fields("Name", "zed")]).await;
    assert_eq!(lines(&shown.text), ["zed"], "{shown:?}");
    assert_eq!(completions(&mut c, "Get-remADUser -SearchScope Sub").await, ["Subtree"]);
    // -CommandName and the clobber check.
    let shown = prompt(&mut c, "Import-PSSession $session -CommandName Get-ADUser -Prefix rem").await;
    assert!(shown.errors[0].starts_with("No command proxies have been created"), "{shown:?}");
    let shown = prompt(&mut c, "Import-PSSession $session -CommandName *-ADUser -Prefix two | % ExportedCommands").await;
    assert_eq!(lines(&shown.text), ["Get-twoADUser", "New-twoADUser", "Set-twoADUser"], "{shown:?}");
    assert_eq!(lines(&prompt(&mut c, "(Get-Module).Count").await.text), ["2"]);
    prompt(&mut c, "Get-Module | ? { $_.ExportedCommands -contains 'Get-twoADUser' } | Remove-Module").await;
    assert!(prompt(&mut c, "Get-twoADUser").await.errors[0].starts_with("The term 'Get-twoADUser' is not recognized"));
    // The session's process dies: the next call opens a new session like it, imports the module there, says so
    // and runs.
    let killed = std::process::Command::new("pkill").args(["-f", "--", &marker]).status().expect("pkill");
    assert!(killed.success());
    for _ in 0..100 {
        if lines(&prompt(&mut c, "(Get-PSSession -Name ad).State").await.text) == ["Broken"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let shown = prompt(&mut c, "Get-remADUser -Identity Administrator | % SamAccountName").await;
    assert_eq!(lines(&shown.text), ["Administrator"], "{shown:?}");
    let said: Vec<String> = shown.records.iter().filter(|(k, _)| *k == RecordKind::Information).map(|(_, v)| psgate_lang::values::text(v)).collect();
    assert!(said.iter().any(|s| s.contains("Creating a new session for implicit remoting of \"Get-remADUser\" command...")), "{said:?}");
    // Removing the session removes the module and its proxies, and says so.
    let shown = prompt(&mut c, "Get-PSSession | Remove-PSSession").await;
    let warned: Vec<String> = shown.records.iter().filter(|(k, _)| *k == RecordKind::Warning).map(|(_, v)| psgate_lang::values::text(v)).collect();
    assert!(warned.iter().any(|w| w.contains("was removed with its commands")), "{shown:?}");
    assert_eq!(prompt(&mut c, "Get-Module").await.text, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_lines_over_ssh_behind_a_real_sshd() {
    let sshd = Sshd::start(true).expect("sshd");
    let (host, port) = (sshd.get("host"), sshd.port());
    let known_hosts = sshd.get("known_hosts");
    let relay = relay_with(|c: &mut Config| {
        c.known_hosts = Some(known_hosts.into());
        c.allow.push(AllowRule { hosts: vec![host.clone()], ports: vec![port], transports: vec![Transport::Ssh], ..AllowRule::default() });
    })
    .await;
    let mut c = Client::connect(&relay, "alice").await;
    let line = format!("$session = New-PSSession -HostName {host} -Port {port} -UserName {} -KeyFilePath {}", sshd.get("user"), sshd.get("key_ed25519"));
    let shown = prompt(&mut c, &line).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    the_issue_lines(&mut c, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_lines_over_winrm_with_ntlm() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let port = peer.port;
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt_with(&mut c, "$cred = Get-Credential", vec![credential()]).await;
    let shown = prompt(&mut c, &format!("$session = New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred")).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    the_issue_lines(&mut c, true).await;
    let shown = prompt(&mut c, "Get-Help Set-remADUser -Parameter Identity").await;
    assert!(shown.text.contains("-Identity"), "{}", shown.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jea_endpoint_imports_without_script_text() {
    let options = PeerOptions { extra: vec!["--restricted-configuration".into(), "JEA.AD".into(), "--visible-commands".into(), "+ActiveDirectory".into()], ..PeerOptions::default() };
    let peer = WinrmPeer::start(options);
    let port = peer.port;
    let relay = relay_with(allow_peer(&peer)).await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt_with(&mut c, "$cred = Get-Credential", vec![credential()]).await;
    let shown = prompt(&mut c, &format!("$session = New-PSSession -ComputerName 127.0.0.1 -Port {port} -Credential $cred -ConfigurationName JEA.AD")).await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    // The endpoint refuses script text and has no Import-Module (its role brings the module): discovery, proxies
    // and help send none.
    the_issue_lines(&mut c, false).await;
    let shown = prompt(&mut c, "Invoke-Command -Session $session -ScriptBlock { $x = 1 }").await;
    assert!(shown.errors[0].starts_with("The syntax is not supported by this runspace"), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skip_list_an_endpoint_declares_is_followed() {
    // The test host declares `ImplicitRemoting.CommandsToSkip` in its application private data, as a session
    // configuration may: New-ADUser is not imported unless asked for by its name.
    let relay = relay_with(|c: &mut Config| {
        if let Some(argv) = c.local_command.as_mut() {
            argv.splice(0..0, ["env".to_owned(), "PSRP_HOST_COMMANDS_TO_SKIP=New-ADUser".to_owned()]);
        }
    })
    .await;
    let mut c = Client::connect(&relay, "alice").await;
    prompt(&mut c, "$session = New-PSSession -Name ad").await;
    prompt(&mut c, "Invoke-Command -Command { Import-Module ActiveDirectory } -Session $session").await;
    let shown = prompt(&mut c, "Import-PSSession -Session $session -Module ActiveDirectory -Prefix rem").await;
    assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{shown:?}");
    let names = lines(&prompt(&mut c, "Get-Command -Name *-rem* | % Name").await.text);
    assert_eq!(names, ["Get-remADUser", "Set-remADUser"]);
    prompt(&mut c, "Import-PSSession -Session $session -CommandName New-ADUser -Prefix new").await;
    let shown = prompt(&mut c, "New-newADUser -Name ada -SamAccountName ada -PassThru | % SamAccountName").await;
    assert_eq!(lines(&shown.text), ["ada"], "{shown:?}");
}
