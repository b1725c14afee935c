//! A real OpenSSH sshd on 127.0.0.1 for tests: its own config, host key, authorized keys and port.
//!
//! Needs root (sshd must start as root to switch to the test user) and `/usr/sbin/sshd` (Debian `openssh-server`,
//! installed by `scripts/setup.sh --test`). The traps it avoids are listed in `shared/docs/test-peers.md`.

#![allow(dead_code)] // Each test binary that includes this uses a part.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
/// The account the tests log in as; created (with a `/bin/sh` shell and [`TEST_PASSWORD`]) if missing.
pub const TEST_USER: &str = "psgate-ssh-test";
pub const TEST_PASSWORD: &str = "psgate-test-Pw-7f3a91";
/// The `powershell` subsystem of these tests: echoes each line back with `echo:` in front.
pub const ECHO_SUBSYSTEM: &str = "/bin/sed -u s/^/echo:/";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// The command of `Subsystem powershell`, or None for an sshd without that subsystem.
    pub powershell_subsystem: Option<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self { powershell_subsystem: Some(ECHO_SUBSYSTEM.to_owned()) }
    }
}

/// A client key pair made with ssh-keygen and authorized for [`TEST_USER`].
#[derive(Clone, Debug)]
pub struct ClientKey {
    pub path: PathBuf,
    pub passphrase: Option<String>,
}

/// A running sshd; killed on drop (its log is printed then if the test is failing).
#[derive(Debug)]
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The host key's public half: `ssh-ed25519 AAAA…` (no comment).
    pub host_key: String,
    pub ed25519: ClientKey,
    pub rsa: ClientKey,
    /// Ed25519, encrypted with a passphrase.
    pub ed25519_encrypted: ClientKey,
    child: Child,
    log: Arc<Log>,
}

/// sshd's stderr so far, with a condition variable to wait on.
#[derive(Debug, Default)]
struct Log {
    text: Mutex<String>,
    grew: Condvar,
}

impl Sshd {
    pub fn start(options: SshdOptions) -> Self {
        check_prerequisites();
        ensure_test_user();
        // sshd reads authorized_keys as the test user, so every folder above it must be open to that user: not the
        // checkout (a clone may sit in a 0700 folder of root's), but the tools folder tests/peers/sshd.py uses too.
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir_in(files_base()).expect("temp dir for sshd");
        chmod(dir.path(), 0o755);

        let host_key_path = dir.path().join("ssh_host_ed25519_key");
        keygen(&host_key_path, "ed25519", None);
        let host_key = public_key_of(&host_key_path);
        let ed25519 = ClientKey { path: dir.path().join("id_ed25519"), passphrase: None };
        keygen(&ed25519.path, "ed25519", None);
        let rsa = ClientKey { path: dir.path().join("id_rsa"), passphrase: None };
        keygen(&rsa.path, "rsa", None);
        let ed25519_encrypted =
            ClientKey { path: dir.path().join("id_ed25519_enc"), passphrase: Some("psgate-passphrase-2c81e".into()) };
        keygen(&ed25519_encrypted.path, "ed25519", ed25519_encrypted.passphrase.as_deref());
        let authorized: String =
            [&ed25519, &rsa, &ed25519_encrypted].iter().map(|k| public_key_of(&k.path) + "\n").collect();
        let authorized_path = dir.path().join("authorized_keys");
        std::fs::write(&authorized_path, authorized).expect("write authorized_keys");
        chmod(&authorized_path, 0o644);

        // A port taken by someone else between our probe and sshd's bind: sshd exits, try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = config(dir.path(), port, &host_key_path, &authorized_path, &options);
            let config_path = dir.path().join("sshd_config");
            std::fs::write(&config_path, config).expect("write sshd_config");
            match spawn(&config_path) {
                Ok((child, log)) => {
                    return Self { port, dir, host_key, ed25519, rsa, ed25519_encrypted, child, log };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        self.log.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (at most `timeout`, woken by each new line) until `needle` occurs `count` times in sshd's log; returns
    /// whether it did.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.log.text.lock().unwrap_or_else(|e| e.into_inner());
        while text.matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            text = self.log.grew.wait_timeout(text, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Kills (SIGKILL) this sshd's per-connection processes, not the listener: the connections end without an SSH
    /// disconnect message, like a crashed or unplugged server. Returns how many it killed.
    pub fn kill_connections(&self) -> usize {
        let mut parents = vec![self.child.id()];
        let mut victims = Vec::new();
        while let Some(parent) = parents.pop() {
            for (pid, comm) in children_of(parent) {
                parents.push(pid);
                if comm == "sshd" {
                    victims.push(pid);
                }
            }
        }
        for pid in &victims {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        victims.len()
    }

    /// The known_hosts line OpenSSH would write for this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- sshd log (port {}) ----\n{}", self.port, self.log());
        }
    }
}

fn check_prerequisites() {
    assert!(Path::new(SSHD).exists(), "{SSHD} is missing: install openssh-server (scripts/setup.sh --test does)");
    let uid = run_output(Command::new("id").arg("-u"));
    assert_eq!(uid.trim(), "0", "the SSH transport tests start sshd, which needs root");
    std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
}

/// Once per test process: the account exists, has a real shell (sshd runs the subsystem with it) and the password.
fn ensure_test_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = Command::new("id").arg(TEST_USER).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !exists.is_ok_and(|s| s.success()) {
            run(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", TEST_USER]));
        }
        run(Command::new("usermod").args(["--shell", "/bin/sh", TEST_USER]));
        // A real password: with `UsePAM no` a locked (`!`) account is refused even for key login.
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("run chpasswd");
        {
            use std::io::Write as _;
            let mut stdin = chpasswd.stdin.take().expect("chpasswd stdin");
            writeln!(stdin, "{TEST_USER}:{TEST_PASSWORD}").expect("write to chpasswd");
        }
        assert!(chpasswd.wait().expect("wait for chpasswd").success(), "chpasswd failed");
    });
}

fn config(dir: &Path, port: u16, host_key: &Path, authorized: &Path, options: &SshdOptions) -> String {
    let mut config = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized}\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         # OpenSSH 9 already refuses SHA-1 ssh-rsa; say so, so that the RSA test proves rsa-sha2.\n\
         PubkeyAcceptedAlgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256\n\
         PasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PermitRootLogin no\n\
         AllowUsers {TEST_USER}\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        authorized = authorized.display(),
    );
    if let Some(command) = &options.powershell_subsystem {
        config.push_str(&format!("Subsystem powershell {command}\n"));
    }
    config
}

/// Starts sshd and waits (bounded) for "Server listening"; on failure returns its log.
fn spawn(config: &Path) -> Result<(Child, Arc<Log>), String> {
    let mut child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sshd");
    let stderr = child.stderr.take().expect("sshd stderr");
    let log = Arc::new(Log::default());
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn({
        let log = Arc::clone(&log);
        move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server listening on") {
                    let _ = ready_tx.send(());
                }
                let mut text = log.text.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&line);
                text.push('\n');
                log.grew.notify_all();
            }
            // ready_tx drops here: sshd exited (or closed stderr) before listening.
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    let outcome = ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    match outcome {
        Ok(()) => Ok((child, log)),
        Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(log.text.lock().unwrap_or_else(|e| e.into_inner()).clone())
        }
    }
}

/// `(pid, command name)` of the processes whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return children };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push((pid, stat[open + 1..close].to_owned()));
        }
    }
    children
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Makes a key pair with ssh-keygen (an independent implementation of the key formats).
pub fn keygen(path: &Path, kind: &str, passphrase: Option<&str>) {
    let mut command = Command::new("ssh-keygen");
    command.args(["-q", "-t", kind, "-C", "psgate-test", "-N", passphrase.unwrap_or("")]).arg("-f").arg(path);
    if kind == "rsa" {
        command.args(["-b", "3072"]);
    }
    if passphrase.is_some() {
        // Few bcrypt-pbkdf rounds: the tests run unoptimised.
        command.args(["-a", "2"]);
    }
    run(&mut command);
}

/// `type base64` of a key pair's public half (the comment dropped).
pub fn public_key_of(private: &Path) -> String {
    let text = std::fs::read_to_string(format!("{}.pub", private.display())).expect("read the public key");
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// `$PSGATE_TOOLS/sshd-rs` (default `/opt/psgate-tools`, as scripts/env.sh sets it), made with mode 0755 down
/// from the first folder that exists.
fn files_base() -> PathBuf {
    let tools = std::env::var_os("PSGATE_TOOLS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/opt/psgate-tools"));
    let base = tools.join("sshd-rs");
    std::fs::create_dir_all(&base).expect("create the sshd files folder");
    for p in [tools.as_path(), base.as_path()] {
        chmod(p, 0o755);
    }
    base
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_output(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
