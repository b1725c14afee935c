//! `psgate invoke`, as an administrator runs it: output, streams, exit status and clear errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use psgate_tests::{Sshd, local_host_argv};

/// The `psgate` binary next to this test (cargo builds the workspace's binaries before its tests).
fn psgate() -> PathBuf {
    if let Ok(p) = std::env::var("PSGATE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("psgate");
    assert!(bin.is_file(), "{} is missing: cargo build -p psgate-relay", bin.display());
    bin
}

fn local_command() -> String {
    local_host_argv().iter().map(|a| format!("\"{}\"", a.to_string_lossy())).collect::<Vec<_>>().join(" ")
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(psgate()).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("psgate runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    child.wait_with_output().expect("psgate ends")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn local_output_streams_and_exit_status() {
    let cmd = local_command();
    let ok = run(&["invoke", "--local", "--command", &cmd, "--json", "-c", "Write-Warning careful; Write-Output 42"], "");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let lines: Vec<serde_json::Value> = text(&ok.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines, [serde_json::json!({"I32": 42})], "output objects on stdout (an Int32, as PowerShell parses 42), nothing else");
    assert!(text(&ok.stderr).contains("WARNING: careful"), "{}", text(&ok.stderr));

    let failed = run(&["invoke", "--local", "--command", &cmd, "-c", "Get-Nothing"], "");
    assert_eq!(failed.status.code(), Some(1));
    let err = text(&failed.stderr);
    assert!(err.contains("Get-Nothing") && err.contains("CommandNotFoundException"), "{err}");

    let answered = run(&["invoke", "--local", "--command", &cmd, "-c", "Read-Host -AsSecureString"], "hunter2\n");
    assert!(answered.status.success(), "{}", text(&answered.stderr));
    assert_eq!(text(&answered.stdout).trim(), "secure:hunter2", "the answer went encrypted and came back decrypted");
}

#[test]
fn ssh_login_host_keys_and_subsystem_errors_are_clear() {
    let sshd = Sshd::start(true).expect("sshd");
    let target = format!("{}@{}:{}", sshd.get("user"), sshd.get("host"), sshd.port());
    let known = sshd.get("known_hosts");
    let ok = run(&["invoke", "--ssh", &target, "--key", &sshd.get("key_ed25519"), "--known-hosts", &known, "-c", "Get-Process -Name svchost"], "");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("svchost"), "{}", text(&ok.stdout));

    let pw = run(&["invoke", "--ssh", &target, "--password-stdin", "--known-hosts", &known, "-c", "Get-Date"], &format!("{}\n", sshd.password()));
    assert!(pw.status.success(), "{}", text(&pw.stderr));

    let wrong = run(&["invoke", "--ssh", &target, "--password-stdin", "--known-hosts", &known, "-c", "Get-Date"], "not-the-password\n");
    assert!(!wrong.status.success());
    assert!(text(&wrong.stderr).to_lowercase().contains("authentication"), "{}", text(&wrong.stderr));

    // An unknown host is refused unless the new key is accepted; then it is remembered.
    let dir = std::env::temp_dir().join(format!("psgate-kh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let fresh = dir.join("known_hosts");
    let refused = run(&["invoke", "--ssh", &target, "--key", &sshd.get("key_ed25519"), "--known-hosts", fresh.to_str().expect("utf-8"), "-c", "Get-Date"], "");
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("known"), "{}", text(&refused.stderr));
    let accepted = run(&["invoke", "--ssh", &target, "--key", &sshd.get("key_ed25519"), "--known-hosts", fresh.to_str().expect("utf-8"), "--accept-new-host-key", "-c", "Get-Date"], "");
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    assert!(std::fs::read_to_string(&fresh).expect("written").contains("ssh-ed25519"));

    // A changed key is refused even with --accept-new-host-key.
    let other = Sshd::start(true).expect("a second sshd with another host key");
    let line = format!("[{}]:{} {}\n", other.get("host"), other.port(), sshd.get("host_key_line"));
    let lying = dir.join("known_hosts_changed");
    std::fs::write(&lying, line).expect("write");
    let other_target = format!("{}@{}:{}", other.get("user"), other.get("host"), other.port());
    let changed = run(&["invoke", "--ssh", &other_target, "--key", &other.get("key_ed25519"), "--known-hosts", lying.to_str().expect("utf-8"), "--accept-new-host-key", "-c", "Get-Date"], "");
    assert!(!changed.status.success());
    assert!(text(&changed.stderr).contains("CHANGED"), "{}", text(&changed.stderr));

    let bare = Sshd::start(false).expect("an sshd without the subsystem");
    let bare_target = format!("{}@{}:{}", bare.get("user"), bare.get("host"), bare.port());
    let missing = run(&["invoke", "--ssh", &bare_target, "--key", &bare.get("key_ed25519"), "--known-hosts", &bare.get("known_hosts"), "-c", "Get-Date"], "");
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("subsystem"), "{}", text(&missing.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;

#[test]
fn winrm_output_streams_exit_status_and_errors_are_those_of_ssh() {
    use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};
    let http = WinrmPeer::start(PeerOptions::default());
    let password = format!("{PASSWORD}\n");
    let ok = run(&["invoke", "--winrm", &http.url, "--user", USER, "--password-stdin", "--auth", "ntlm", "--json", "-c", "Write-Warning careful; Write-Output 42"], &password);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let lines: Vec<serde_json::Value> = text(&ok.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines, [serde_json::json!({"I32": 42})], "output objects on stdout, nothing else");
    assert!(text(&ok.stderr).contains("WARNING: careful"), "{}", text(&ok.stderr));

    let failed = run(&["invoke", "--winrm", &http.url, "--user", USER, "--password-stdin", "-c", "Get-Nothing"], &password);
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed.stderr).contains("CommandNotFoundException"), "{}", text(&failed.stderr));

    let refused = run(&["invoke", "--winrm", &http.url, "--user", USER, "--password-stdin", "--auth", "ntlm", "-c", "Get-Date"], "Wrong-Password-9\n");
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("refused the credentials") && !err.contains("Wrong-Password-9"), "{err}");

    // HTTPS: the peer's self-signed certificate is refused, then trusted through --ca-file.
    let https = WinrmPeer::start(PeerOptions { tls: true, ..PeerOptions::default() });
    let untrusted = run(&["invoke", "--winrm", &https.url, "--user", USER, "--password-stdin", "-c", "Get-Date"], &password);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(text(&untrusted.stderr).contains("certificate"), "{}", text(&untrusted.stderr));
    let cert = https.cert.as_ref().expect("cert").to_string_lossy().into_owned();
    let trusted = run(&["invoke", "--winrm", &https.url, "--user", USER, "--password-stdin", "--ca-file", &cert, "--auth", "basic", "-c", "Write-Output tls"], &password);
    assert!(trusted.status.success(), "{}", text(&trusted.stderr));
    assert_eq!(text(&trusted.stdout).trim(), "tls");

    // Basic over plain HTTP is refused before anything is sent.
    let basic = run(&["invoke", "--winrm", &http.url, "--user", USER, "--password-stdin", "--auth", "basic", "-c", "Get-Date"], &password);
    assert_eq!(basic.status.code(), Some(1));
    assert!(text(&basic.stderr).contains("Basic authentication over plain HTTP"), "{}", text(&basic.stderr));
}
