//! The SSH transport against a real OpenSSH sshd whose `powershell` subsystem echoes lines (`echo:` + line).
//!
//! Runs as root (as CI does): each test starts its own sshd on a free loopback port (see `common/sshd.rs`).

#[path = "common/secrets.rs"]
mod secrets;
#[path = "common/sshd.rs"]
mod sshd;

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use psgate_relay::transport::ssh::{HostKeyPolicy, SshAuth, SshError, SshOptions, SshStream, open_subsystem};
use sshd::{Sshd, SshdOptions, TEST_PASSWORD, TEST_USER};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

const PASSPHRASE: &str = "psgate-passphrase-2c81e";
/// Long enough for an unoptimised build on a busy 2-core machine, short enough to fail a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

// ---- helpers ---------------------------------------------------------------------------------------------------

fn init_tracing() {
    secrets::watch(&[TEST_PASSWORD, PASSPHRASE]);
}

fn start(options: SshdOptions) -> Sshd {
    init_tracing();
    Sshd::start(options)
}

/// A known_hosts that already trusts `sshd`.
fn trusted_known_hosts(sshd: &Sshd) -> PathBuf {
    let path = sshd.dir.path().join("known_hosts_trusted");
    std::fs::write(&path, format!("{}\n", sshd.known_hosts_line())).expect("write known_hosts");
    path
}

fn options(sshd: &Sshd, auth: SshAuth, known_hosts: PathBuf) -> SshOptions {
    let mut opts = SshOptions::new("127.0.0.1", TEST_USER, auth);
    opts.port = sshd.port;
    opts.known_hosts = known_hosts;
    opts.connect_timeout = IO_TIMEOUT;
    opts
}

fn key_auth(key: &sshd::ClientKey) -> SshAuth {
    SshAuth::Key { path: key.path.clone(), passphrase: key.passphrase.as_deref().map(Into::into) }
}

fn password(password: &str) -> SshAuth {
    SshAuth::Password(password.into())
}

async fn open(opts: &SshOptions) -> SshStream {
    match open_subsystem(opts).await {
        Ok(stream) => stream,
        Err(e) => panic!("open_subsystem failed: {e}"),
    }
}

async fn open_err(opts: &SshOptions) -> SshError {
    match open_subsystem(opts).await {
        Ok(stream) => panic!("open_subsystem succeeded: {stream:?}"),
        Err(e) => e,
    }
}

/// Writes protocol-like lines one at a time and reads each echo before the next, then closes cleanly.
async fn echo_round_trip(stream: SshStream) {
    let mut stream = BufReader::new(stream);
    let lines = [
        "<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>AAAAAAAAAAE=</Data>".to_owned(),
        "<Command PSGuid='6a1b4b4e-8f2c-4f7e-9d3a-2b1c0d9e8f7a' />".to_owned(),
        "x".repeat(100_000),
    ];
    for line in &lines {
        stream.write_all(format!("{line}\n").as_bytes()).await.expect("write a line");
        stream.flush().await.expect("flush");
        let mut echo = String::new();
        tokio::time::timeout(IO_TIMEOUT, stream.read_line(&mut echo)).await.expect("echo in time").expect("read");
        assert_eq!(echo, format!("echo:{line}\n"));
    }
    let exit = tokio::time::timeout(IO_TIMEOUT, stream.into_inner().close()).await.expect("close in time");
    // sed ends at EOF with status 0 within the grace period.
    assert_eq!(exit.expect("close").exit_status, Some(0));
}

// ---- authentication --------------------------------------------------------------------------------------------

#[tokio::test]
async fn ed25519_key_login_echoes_lines() {
    let sshd = start(SshdOptions::default());
    let stream = open(&options(&sshd, key_auth(&sshd.ed25519), trusted_known_hosts(&sshd))).await;
    echo_round_trip(stream).await;
    assert!(sshd.log().contains("Accepted publickey for psgate-ssh-test"), "{}", sshd.log());
}

#[tokio::test]
async fn rsa_key_login_uses_rsa_sha2() {
    // The sshd accepts only ssh-ed25519, rsa-sha2-512 and rsa-sha2-256: a SHA-1 ssh-rsa signature would fail.
    let sshd = start(SshdOptions::default());
    let stream = open(&options(&sshd, key_auth(&sshd.rsa), trusted_known_hosts(&sshd))).await;
    echo_round_trip(stream).await;
    assert!(sshd.log().contains("Accepted publickey for psgate-ssh-test from 127.0.0.1"), "{}", sshd.log());
    assert!(sshd.log().contains(": RSA SHA256:"), "{}", sshd.log());
}

#[tokio::test]
async fn encrypted_key_needs_its_passphrase() {
    let sshd = start(SshdOptions::default());
    let known_hosts = trusted_known_hosts(&sshd);
    let key = &sshd.ed25519_encrypted;
    assert_eq!(key.passphrase.as_deref(), Some(PASSPHRASE));
    let stream = open(&options(&sshd, key_auth(key), known_hosts.clone())).await;
    echo_round_trip(stream).await;

    let missing = SshAuth::Key { path: key.path.clone(), passphrase: None };
    let err = open_err(&options(&sshd, missing, known_hosts.clone())).await;
    assert!(matches!(err, SshError::KeyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("passphrase"), "{err}");

    let wrong = SshAuth::Key { path: key.path.clone(), passphrase: Some("not-it".into()) };
    let err = open_err(&options(&sshd, wrong, known_hosts.clone())).await;
    assert!(matches!(err, SshError::KeyFile { .. }), "{err:?}");

    let absent = SshAuth::Key { path: sshd.dir.path().join("no_such_key"), passphrase: None };
    let err = open_err(&options(&sshd, absent, known_hosts)).await;
    assert!(matches!(err, SshError::KeyFile { .. }), "{err:?}");
    assert!(!secrets::logged(), "a passphrase reached the logs");
}

#[tokio::test]
async fn password_login_echoes_lines_and_logs_no_secret() {
    let sshd = start(SshdOptions::default());
    let opts = options(&sshd, password(TEST_PASSWORD), trusted_known_hosts(&sshd));
    assert!(!format!("{opts:?}").contains(TEST_PASSWORD));
    let stream = open(&opts).await;
    echo_round_trip(stream).await;
    assert!(sshd.log().contains("Accepted password for psgate-ssh-test"), "{}", sshd.log());
    assert!(!secrets::logged(), "a password reached the logs");
}

#[tokio::test]
async fn wrong_password_fails_promptly_with_auth_failed() {
    let sshd = start(SshdOptions::default());
    let opts = options(&sshd, password("wrong-password"), trusted_known_hosts(&sshd));
    let started = Instant::now();
    let err = open_err(&opts).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    match &err {
        SshError::AuthFailed { user, methods_tried, server_methods, .. } => {
            assert_eq!(user, TEST_USER);
            assert_eq!(methods_tried, &["password".to_owned()]);
            assert!(server_methods.iter().any(|m| m == "publickey"), "{server_methods:?}");
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.starts_with("authentication failed for user psgate-ssh-test on 127.0.0.1:"), "{message}");
}

// ---- the stream ------------------------------------------------------------------------------------------------

/// 3 MiB each way, written and read at once: more than the SSH windows (2 MiB) and the pipes hold, so it only
/// finishes if flow control works in both directions. Then EOF: shutdown() → the subsystem ends → read sees EOF.
#[tokio::test]
async fn large_burst_both_ways_then_eof() {
    let sshd = start(SshdOptions::default());
    let stream = open(&options(&sshd, key_auth(&sshd.ed25519), trusted_known_hosts(&sshd))).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    const LINES: usize = 3 * 1024;
    let line = |i: usize| format!("{i:06}:{}\n", "y".repeat(1016));
    let sent: usize = (0..LINES).map(|i| line(i).len()).sum();
    assert!(sent >= 3 << 20);

    let write = async {
        for i in 0..LINES {
            writer.write_all(line(i).as_bytes()).await.expect("write");
        }
        writer.shutdown().await.expect("shutdown (EOF)");
        writer
    };
    let read = async {
        let mut received = Vec::with_capacity(sent + LINES * 5);
        reader.read_to_end(&mut received).await.expect("read to EOF");
        (reader, received)
    };
    let (writer, (reader, received)) =
        tokio::time::timeout(IO_TIMEOUT, async { tokio::join!(write, read) }).await.expect("burst in time");
    let expected: String = (0..LINES).map(|i| format!("echo:{}", line(i))).collect();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected.as_bytes(), "the echoed data differs");

    let stream = reader.unsplit(writer);
    let exit = stream.close().await.expect("close");
    assert_eq!(exit.exit_status, Some(0));
    assert_eq!(exit.stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_drop_disconnect_cleanly() {
    let sshd = start(SshdOptions::default());
    let opts = options(&sshd, key_auth(&sshd.ed25519), trusted_known_hosts(&sshd));

    let stream = open(&opts).await;
    stream.close().await.expect("close");
    let logged = tokio::task::block_in_place(|| sshd.wait_for_log("Received disconnect from 127.0.0.1", 1, IO_TIMEOUT));
    assert!(logged, "no clean disconnect after close(): {}", sshd.log());

    let mut stream = open(&opts).await;
    stream.write_all(b"bye\n").await.expect("write");
    drop(stream);
    let logged = tokio::task::block_in_place(|| sshd.wait_for_log("Received disconnect from 127.0.0.1", 2, IO_TIMEOUT));
    assert!(logged, "no clean disconnect after drop: {}", sshd.log());
}

#[tokio::test]
async fn a_lost_connection_is_a_read_error_not_eof() {
    let sshd = start(SshdOptions::default());
    let mut stream = BufReader::new(open(&options(&sshd, key_auth(&sshd.ed25519), trusted_known_hosts(&sshd))).await);
    stream.write_all(b"ping\n").await.expect("write");
    let mut echo = String::new();
    stream.read_line(&mut echo).await.expect("read");
    assert_eq!(echo, "echo:ping\n");

    assert!(sshd.kill_connections() > 0, "no sshd connection process found");
    let mut rest = Vec::new();
    let err = tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("the loss is noticed in time")
        .expect_err("a lost connection is not a clean EOF");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted, "{err}");
    assert!(err.to_string().contains("was lost"), "{err}");
    // Writing fails too, and closing what is left is quick and quiet.
    assert!(stream.write_all(b"more\n").await.is_err());
    let exit = tokio::time::timeout(IO_TIMEOUT, stream.into_inner().close()).await.expect("close in time");
    assert_eq!(exit.expect("close").exit_status, None);
}

#[test]
fn the_stream_and_the_open_future_can_move_between_threads() {
    fn is_stream<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>() {}
    fn is_send<T: Send>(_: &T) {}
    is_stream::<SshStream>();
    let opts = SshOptions::new("127.0.0.1", TEST_USER, password("unused"));
    is_send(&open_subsystem(&opts));
}

// ---- host keys -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_host_key_is_refused_under_strict_and_nothing_is_written() {
    let sshd = start(SshdOptions::default());
    let known_hosts = sshd.dir.path().join("known_hosts_other");
    let other_host = format!("[127.0.0.1]:1 {}\n", sshd::public_key_of(&sshd.ed25519.path));
    std::fs::write(&known_hosts, &other_host).expect("write known_hosts");
    let mut opts = options(&sshd, key_auth(&sshd.ed25519), known_hosts.clone());
    opts.host_key_policy = HostKeyPolicy::Strict;

    let err = open_err(&opts).await;
    match &err {
        SshError::UnknownHostKey { host, fingerprint, .. } => {
            assert_eq!(host, &format!("127.0.0.1:{}", sshd.port));
            assert!(fingerprint.contains("SHA256:"), "{fingerprint}");
        }
        other => panic!("expected UnknownHostKey, got {other:?}"),
    }
    assert!(err.to_string().contains("is not known"), "{err}");
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("read"), other_host);

    // A known_hosts that does not exist stays so.
    opts.known_hosts = sshd.dir.path().join("absent").join("known_hosts");
    assert!(matches!(open_err(&opts).await, SshError::UnknownHostKey { .. }));
    assert!(!opts.known_hosts.exists());
}

#[tokio::test]
async fn accept_new_records_the_key_as_openssh_does() {
    let sshd = start(SshdOptions::default());
    let known_hosts = sshd.dir.path().join("new").join("known_hosts");
    let mut opts = options(&sshd, key_auth(&sshd.ed25519), known_hosts.clone());
    opts.host_key_policy = HostKeyPolicy::AcceptNew;
    open(&opts).await.close().await.expect("close");
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("read"), format!("{}\n", sshd.known_hosts_line()));

    // OpenSSH finds the entry,
    let host = format!("[127.0.0.1]:{}", sshd.port);
    sshd::run(Command::new("ssh-keygen").args(["-F", &host, "-f"]).arg(&known_hosts));
    // and once OpenSSH has hashed the file (|1|salt|hash), a strict connection still knows the host.
    sshd::run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&known_hosts));
    let hashed = std::fs::read_to_string(&known_hosts).expect("read");
    assert!(hashed.starts_with("|1|"), "{hashed}");
    opts.host_key_policy = HostKeyPolicy::Strict;
    echo_round_trip(open(&opts).await).await;
}

#[tokio::test]
async fn changed_host_key_is_refused_even_with_accept_new() {
    let sshd = start(SshdOptions::default());
    let other_key = sshd.dir.path().join("other_host_key");
    sshd::keygen(&other_key, "ed25519", None);
    let known_hosts = sshd.dir.path().join("known_hosts_changed");
    let content = format!("# the host's old key\n[127.0.0.1]:{} {}\n", sshd.port, sshd::public_key_of(&other_key));
    std::fs::write(&known_hosts, &content).expect("write known_hosts");

    for policy in [HostKeyPolicy::AcceptNew, HostKeyPolicy::Strict] {
        let mut opts = options(&sshd, key_auth(&sshd.ed25519), known_hosts.clone());
        opts.host_key_policy = policy;
        let err = open_err(&opts).await;
        match &err {
            SshError::ChangedHostKey { known_hosts_line, known_hosts: path, .. } => {
                assert_eq!(*known_hosts_line, 2);
                assert_eq!(path, &known_hosts);
            }
            other => panic!("expected ChangedHostKey, got {other:?}"),
        }
        let message = err.to_string();
        let expected_start = format!("the host key for 127.0.0.1:{} has CHANGED (ssh-ed25519 SHA256:", sshd.port);
        assert!(message.starts_with(&expected_start), "{message}");
        assert!(message.ends_with(&format!("{} line 2 if the change is expected", known_hosts.display())), "{message}");
    }
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("read"), content);
}

// ---- the subsystem and the connection --------------------------------------------------------------------------

#[tokio::test]
async fn missing_subsystem_is_refused() {
    let sshd = start(SshdOptions { powershell_subsystem: None });
    let opts = options(&sshd, key_auth(&sshd.ed25519), trusted_known_hosts(&sshd));
    let err = open_err(&opts).await;
    assert!(matches!(&err, SshError::SubsystemRefused { name, .. } if name == "powershell"), "{err:?}");
    assert!(err.to_string().contains("Subsystem powershell"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_fast_connect_error() {
    init_tracing();
    let port = sshd::free_port();
    let mut opts = SshOptions::new("127.0.0.1", TEST_USER, password("unused"));
    opts.port = port;
    opts.known_hosts = PathBuf::from("/nonexistent/known_hosts");
    let started = Instant::now();
    let err = open_err(&opts).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    match &err {
        SshError::Connect { addr, source } => {
            assert_eq!(addr, &format!("127.0.0.1:{port}"));
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    init_tracing();
    // The kernel completes the TCP handshake for the backlog; nothing ever speaks SSH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut opts = SshOptions::new("127.0.0.1", TEST_USER, password("unused"));
    opts.port = listener.local_addr().expect("addr").port();
    opts.known_hosts = PathBuf::from("/nonexistent/known_hosts");
    opts.connect_timeout = Duration::from_millis(300);
    let err = open_err(&opts).await;
    assert!(matches!(&err, SshError::Timeout { stage: "key exchange", .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after 0.3 s"), "{err}");
    drop(listener);
}
