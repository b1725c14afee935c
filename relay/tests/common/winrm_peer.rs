//! The WS-Management test peer (`tests/peers/winrm_host.py`: psrpcore's server role behind WinRM's HTTP transport,
//! NTLM by pyspnego) as a child process on a free loopback port. Needs `$PSGATE_PYTHON` (or the venv under
//! `$PSGATE_TOOLS`), which `scripts/setup.sh --test` makes.

#![allow(dead_code)] // Each test binary that includes this uses a part.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const USER: &str = "PSGATE\\ada";
pub const PASSWORD: &str = "Ada-Secret-7c1e";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Python with psrpcore and pyspnego (the same lookup as `tests/src/lib.rs`).
pub fn python() -> String {
    std::env::var("PSGATE_PYTHON").unwrap_or_else(|_| {
        let tools = std::env::var("PSGATE_TOOLS").unwrap_or_else(|_| "/opt/psgate-tools".into());
        format!("{tools}/venv/bin/python")
    })
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How to start the peer.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// `--auth`: `ntlm`, `basic` or `ntlm,basic`.
    pub auth: &'static str,
    pub tls: bool,
    /// `--cbt-hardening`: None, Relaxed (the default, as Windows) or Strict.
    pub cbt_hardening: &'static str,
    pub allow_unencrypted: bool,
    /// More arguments (quotas, buffer sizes, timeouts).
    pub extra: Vec<String>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self { auth: "ntlm,basic", tls: false, cbt_hardening: "Relaxed", allow_unencrypted: false, extra: Vec::new() }
    }
}

/// A running peer; killed on drop (its log is printed then if the test is failing).
#[derive(Debug)]
pub struct WinrmPeer {
    /// `http[s]://127.0.0.1:PORT/wsman`, from its ready line.
    pub url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// With `tls`: the certificate it serves (PEM).
    pub cert: Option<PathBuf>,
    log: PathBuf,
    child: Child,
}

impl WinrmPeer {
    pub fn start(options: PeerOptions) -> Self {
        let dir = tempfile::Builder::new().prefix("winrm-peer-").tempdir().expect("temp dir for the peer");
        let log = dir.path().join("winrm_host.log");
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/peers/winrm_host.py"))
            .args(["--port", "0", "--auth", options.auth, "--cbt-hardening", options.cbt_hardening, "--debug"])
            .arg("--user")
            .arg(format!("{USER}:{PASSWORD}"))
            .arg("--log")
            .arg(&log);
        let cert = options.tls.then(|| dir.path().join("server.pem"));
        if let Some(cert) = &cert {
            cmd.arg("--tls").arg("--cert-out").arg(cert);
        }
        if options.allow_unencrypted {
            cmd.arg("--allow-unencrypted");
        }
        cmd.args(&options.extra);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} tests/peers/winrm_host.py: {e}", python()));
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep reading so that the peer never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!("winrm_host.py did not start ({other:?}); its log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        let url = line.split_whitespace().last().unwrap_or_default().to_owned();
        assert!(line.starts_with("winrm_host listening on ") && url.ends_with("/wsman"), "unexpected ready line {line:?}");
        let port = url.rsplit(':').next().and_then(|p| p.trim_end_matches("/wsman").parse().ok()).expect("port");
        Self { url, port, dir, cert, log, child }
    }

    /// What the peer has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WinrmPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- winrm_host.py log ({}) ----\n{}", self.url, self.log());
        }
    }
}
