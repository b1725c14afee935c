//! A real MIT Kerberos KDC (`tests/peers/kdc.py`: krb5kdc on a free loopback port, realm PSGATE.TEST, its own
//! folder) and the WS-Management peer accepting Kerberos with the KDC's keytab (`tests/peers/winrm_host.py --auth
//! kerberos`), as child processes. Needs Debian's krb5-kdc, krb5-admin-server and krb5-user, and python-gssapi in the
//! peer's venv: `scripts/setup.sh --test` installs them; without them a test fails and says so.
//!
//! Include `common/winrm_peer.rs` as `winrm_peer` next to this module (for the Python and the repository paths).

#![allow(dead_code)] // Each test binary that includes this uses a part.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::winrm_peer::{python, repo};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The first line a child prints on standard output, within the timeout (None: it exited or timed out).
fn ready_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Some(Ok(line))) => Some(line),
        _ => None,
    }
}

/// An MIT KDC for one test; stopped (and its folder removed) on drop. `kdc.py` also stops when this process dies.
#[derive(Debug)]
pub struct Kdc {
    pub realm: String,
    /// `127.0.0.1:PORT`, TCP and UDP.
    pub kdc: String,
    /// The krb5.conf of the realm (for KRB5_CONFIG).
    pub krb5_config: PathBuf,
    /// HTTP/, WSMAN/ and host/ for localhost and 127.0.0.1.
    pub keytab: PathBuf,
    /// `ada@PSGATE.TEST`.
    pub user: String,
    pub password: String,
    pub dir: PathBuf,
    child: Child,
}

impl Kdc {
    pub fn start(password: &str) -> Self {
        let mut child = Command::new(python())
            .arg(repo().join("tests/peers/kdc.py"))
            .args(["--password", password])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} tests/peers/kdc.py: {e}", python()));
        let line = ready_line(&mut child);
        let Some(line) = line else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            let _ = child.wait();
            panic!("the test KDC (tests/peers/kdc.py) did not start: {}", err.trim());
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("kdc.py's ready line {line:?}: {e}"));
        let text = |key: &str| ready[key].as_str().unwrap_or_else(|| panic!("no {key} in {line}")).to_owned();
        Self {
            realm: text("realm"),
            kdc: text("kdc"),
            krb5_config: text("krb5_config").into(),
            keytab: text("keytab").into(),
            user: text("user"),
            password: text("password"),
            dir: text("dir").into(),
            child,
        }
    }

    /// The user as `REALM\user` (sspi then names it as a plain principal; `user@REALM` would be an enterprise
    /// name, which Active Directory resolves and MIT's KDC does not).
    pub fn down_level_user(&self) -> String {
        let name = self.user.split('@').next().unwrap_or_default();
        format!("{}\\{name}", self.realm)
    }

    /// What [`WinrmOptions::kdc`](psgate_relay::transport::winrm::WinrmOptions::kdc) takes.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.kdc)
    }

    /// KRB5_CONFIG for a child process (libkrb5 reads it from the environment).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![("KRB5_CONFIG", self.krb5_config.clone().into_os_string())]
    }

    /// `kinit` as the user into the ticket cache file `ccache`.
    pub fn kinit(&self, ccache: &Path) {
        let mut child = Command::new("kinit")
            .arg(&self.user)
            .envs(self.env())
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kinit (krb5-user; scripts/setup.sh --test installs it): {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            stdin.write_all(format!("{}\n", self.password).as_bytes()).expect("kinit's password");
        }
        let out = child.wait_with_output().expect("kinit");
        assert!(out.status.success(), "kinit {} failed: {}", self.user, String::from_utf8_lossy(&out.stderr));
    }

    /// `kinit -k` as the service `principal` (`host/localhost@PSGATE.TEST`) from the keytab into the ticket cache file
    /// `ccache`: a cache of another principal than the user's.
    pub fn kinit_service(&self, principal: &str, ccache: &Path) {
        let out = Command::new("kinit")
            .args(["-k", "-t"])
            .arg(&self.keytab)
            .arg(principal)
            .envs(self.env())
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run kinit (krb5-user; scripts/setup.sh --test installs it): {e}"));
        assert!(out.status.success(), "kinit -k {principal} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// What the KDC logged (AS and TGS requests, with the principals and enctypes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kdc.log")).unwrap_or_default()
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- kdc.log ----\n{}", self.log());
        }
        // SIGKILL would leave krb5kdc to its death signal and the folder behind: ask kdc.py to stop instead.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The WS-Management peer with the KDC's keytab; killed on drop (its log printed if the test is failing).
#[derive(Debug)]
pub struct KerberosPeer {
    /// `http[s]://127.0.0.1:PORT/wsman`.
    pub url: String,
    pub port: u16,
    /// With TLS: the certificate it serves (PEM).
    pub cert: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    log: PathBuf,
    child: Child,
}

impl KerberosPeer {
    /// `auth`: `kerberos`, `kerberos,ntlm`, …; NTLM's user is `ntlm_user` (`DOMAIN\user:password`).
    pub fn start(kdc: &Kdc, auth: &str, tls: bool, ntlm_user: &str) -> Self {
        Self::start_with(kdc, auth, tls, ntlm_user, &[])
    }

    /// Over HTTPS with `--cbt-hardening Strict`: Kerberos, like NTLM, must carry the channel binding (the peer checks
    /// MIT's GSS_C_CHANNEL_BOUND_FLAG; MIT alone lets an authenticator without one through).
    pub fn start_strict(kdc: &Kdc, auth: &str, ntlm_user: &str) -> Self {
        Self::start_with(kdc, auth, true, ntlm_user, &["--cbt-hardening", "Strict"])
    }

    /// [`KerberosPeer::start`] with more of winrm_host.py's options.
    pub fn start_with(kdc: &Kdc, auth: &str, tls: bool, ntlm_user: &str, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("winrm-krb-peer-").tempdir().expect("temp dir for the peer");
        let log = dir.path().join("winrm_host.log");
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/peers/winrm_host.py"))
            .args(["--port", "0", "--auth", auth, "--debug", "--user", ntlm_user])
            .arg("--keytab")
            .arg(&kdc.keytab)
            .arg("--krb5-config")
            .arg(&kdc.krb5_config)
            .arg("--log")
            .arg(&log)
            .args(extra);
        let cert = tls.then(|| dir.path().join("server.pem"));
        if let Some(cert) = &cert {
            cmd.arg("--tls").arg("--cert-out").arg(cert);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} tests/peers/winrm_host.py: {e}", python()));
        let Some(line) = ready_line(&mut child) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("winrm_host.py --auth {auth} did not start; its log:\n{log}");
        };
        let url = line.split_whitespace().last().unwrap_or_default().to_owned();
        assert!(line.starts_with("winrm_host listening on ") && url.ends_with("/wsman"), "unexpected ready line {line:?}");
        let port = url.rsplit(':').next().and_then(|p| p.trim_end_matches("/wsman").parse().ok()).expect("port");
        Self { url, port, cert, dir, log, child }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KerberosPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- winrm_host.py log ({}) ----\n{}", self.url, self.log());
        }
    }
}
