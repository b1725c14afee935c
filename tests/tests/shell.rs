//! `psgate shell`: the lines admins type, piped into it as a script, against the real peers (the test host as a
//! local process, behind OpenSSH's sshd, behind the WS-Management peer with NTLM). Output objects on standard
//! output as PowerShell's console lays them out, errors on standard error, exit status 1 when a line failed.

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use psgate_tests::{Sshd, local_host_argv};
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

fn psgate() -> PathBuf {
    if let Ok(p) = std::env::var("PSGATE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test path");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("psgate")
}

fn shell(args: &[&str], script: &str) -> Output {
    let local = local_host_argv().iter().map(|a| format!("\"{}\"", a.to_string_lossy())).collect::<Vec<_>>().join(" ");
    let mut child = Command::new(psgate())
        .arg("shell")
        .args(["--local-command", &local])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psgate runs");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write");
    child.wait_with_output().expect("psgate ends")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(b: &[u8]) -> Vec<String> {
    text(b).lines().map(|l| l.trim_end().to_owned()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn the_lines_piped_into_the_shell_against_the_local_test_host() {
    let out = shell(
        &[],
        "$session1 = New-PSSession -Name web
Get-PSSession
Invoke-Command -Session $session1 -ScriptBlock { Get-Process -Name svchost } | select -First 1 | ft ProcessName, PSComputerName
Get-PSSession -ComputerName localhost | Enter-PSSession
Write-Output 'inside'
exit
$session1 | gm -MemberType Property | % Name | select -First 3
Remove-PSSession $session1
$session1.State; (Get-PSSession).Count
",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out.stdout),
        [
            "Id Name Transport ComputerName ComputerType  State  ConfigurationName Availability",
            "-- ---- --------- ------------ ------------  -----  ----------------- ------------",
            " 1 web  Process   localhost    RemoteMachine Opened                   Available",
            "ProcessName PSComputerName",
            "----------- --------------",
            "svchost     localhost",
            "inside",
            "ApplicationPrivateData",
            "Availability",
            "ComputerName",
            "Closed",
            "0",
        ]
    );
}

#[test]
fn a_failing_line_is_an_error_on_stderr_and_the_exit_status() {
    let out = shell(&[], "new-pssesion\n'still runs'\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out.stdout), ["still runs"]);
    let err = text(&out.stderr);
    assert!(err.contains("The term 'new-pssesion' is not recognized") && err.contains("New-PSSession"), "{err}");
    // An unfinished line reads on, as PowerShell's console does (`>>`).
    let out = shell(&[], "Get-PSSession |\n  Measure-Nothing\n1..3 | ForEach-Object {\n  $_ * 2\n}\n");
    assert_eq!(lines(&out.stdout), ["2", "4", "6"], "{}", text(&out.stderr));
    // With a relay configuration, its allow-list applies.
    let dir = std::env::temp_dir().join(format!("psgate-shell-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("psgate.toml");
    std::fs::write(&config, "[[allow]]\nhosts = [\"srv*.contoso.com\"]\n").expect("config");
    let out = shell(&["--config", &config.to_string_lossy()], "New-PSSession -HostName pc1 -UserName u -KeyFilePath k\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("pc1:22 over ssh is not in this relay's allow-list"), "{}", text(&out.stderr));
}

#[test]
fn ssh_sessions_behind_a_real_sshd() {
    let sshd = Sshd::start(true).expect("sshd");
    let (host, port, user, key) = (sshd.get("host"), sshd.port(), sshd.get("user"), sshd.get("key_ed25519"));
    let script = format!(
        "$s = New-PSSession -HostName {host} -Port {port} -UserName {user} -KeyFilePath {key}
$s.Transport
Invoke-Command $s {{ Get-Process -Name svchost }} | % PSComputerName | select -Unique
Enter-PSSession -Id 1
Write-Output inside-ssh
exit
"
    );
    let out = shell(&["--known-hosts", &sshd.get("known_hosts")], &script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout), ["SSH", host.as_str(), "inside-ssh"]);
}

#[test]
fn winrm_with_a_credential_answered_on_standard_input() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let script = format!(
        "$cred = Get-Credential
{USER}
{PASSWORD}
$session1, $session2 = New-PSSession -ComputerName 127.0.0.1, localhost -Port {port} -Credential $cred
Get-PSSession | % ComputerName
Disconnect-PSSession -Id 2 | % State
Get-PSSession -ComputerName localhost | Connect-PSSession | % State
Invoke-Command -Session $session1, $session2 -ScriptBlock {{ Get-Process -Name svchost }} | % PSComputerName | sort -Unique
",
        port = peer.port
    );
    let out = shell(&[], &script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout), ["127.0.0.1", "localhost", "Disconnected", "Opened", "127.0.0.1", "localhost"]);
    assert!(!text(&out.stderr).contains(PASSWORD), "the password is never echoed");
}

/// On a terminal (a pseudo-terminal `script` makes): the prompt, line editing with Tab completion, history.
#[test]
fn on_a_terminal_it_prompts_completes_and_recalls() {
    let local = local_host_argv().iter().map(|a| format!("\"{}\"", a.to_string_lossy())).collect::<Vec<_>>().join(" ");
    let command = format!("{} shell --local-command '{local}'", psgate().display());
    let mut child = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().expect("stdin");
    // Typed ahead: each line waits in the terminal until the prompt reads it. Tab completes the command's name;
    // Up recalls the line before.
    for keys in ["$s = New-PSSession -Name typed\r", "Get-PSSess\t | % Name\r", "\x1b[A\r", "exit\r"] {
        stdin.write_all(keys.as_bytes()).expect("type");
        stdin.flush().expect("flush");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = child.wait_with_output().expect("ends");
    // The screen without the terminal's control sequences (the line editor redraws the line as it is edited).
    let raw = text(&out.stdout);
    let mut screen = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for x in chars.by_ref() {
                    if x.is_ascii_alphabetic() || x == '~' {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            screen.push(c);
        }
    }
    assert!(out.status.success(), "{screen}\n{}", text(&out.stderr));
    assert!(screen.contains("PS psgate> "), "the prompt: {screen}");
    assert!(screen.contains("Get-PSSession | % Name"), "Tab completed the name: {screen}");
    assert!(screen.matches("typed").count() >= 3, "the session's name, printed twice (the line and its recall): {screen}");
}

#[test]
fn implicit_remoting_in_the_shell_and_export_pssession_writes_the_module_here() {
    let dir = std::env::temp_dir().join(format!("psgate-export-{}", uuid::Uuid::new_v4()));
    let module = dir.join("ADRemote");
    let out = shell(
        &[],
        &format!(
            "$s = New-PSSession -Name ad
Invoke-Command -Session $s -ScriptBlock {{ Import-Module ActiveDirectory }}
Import-PSSession -Session $s -Module ActiveDirectory -Prefix rem | % ExportedCommands
New-remADUser -Name ada -PassThru | % SamAccountName
Export-PSSession -Session $s -Module ActiveDirectory -OutputModule {} | % Name
",
            module.display()
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout), ["Get-remADUser", "New-remADUser", "Set-remADUser", "ada", "ADRemote.psm1", "ADRemote.psd1", "ADRemote.format.ps1xml"], "{}", text(&out.stderr));
    // The module, for an ordinary pwsh with ordinary remoting: a manifest naming the script module, the proxies
    // under the commands' own names, exported.
    let psd1 = std::fs::read_to_string(module.join("ADRemote.psd1")).expect("the manifest");
    assert!(psd1.contains("RootModule = 'ADRemote.psm1'") && psd1.contains("ImplicitRemoting = $true"), "{psd1}");
    let psm1 = std::fs::read_to_string(module.join("ADRemote.psm1")).expect("the module");
    for name in ["Get-ADUser", "New-ADUser", "Set-ADUser"] {
        assert!(psm1.contains(&format!("'{name}'")), "{name} is not in the module");
    }
    assert!(psm1.contains("Export-ModuleMember"), "{psm1}");
    // Again without -Force: the files are there, PowerShell's error.
    let again = shell(&[], &format!("$s = New-PSSession\nExport-PSSession -Session $s -Module ActiveDirectory -OutputModule {}\n", module.display()));
    assert!(!again.status.success() && text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
