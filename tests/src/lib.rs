//! Test harness: real, independent PowerShell Remoting peers (psrpcore's server role as a local process
//! and behind OpenSSH's sshd; `tests/peers/`) and a small client that drives psgate's engine against them.
//! Every wait is bounded; nothing sleeps to wait.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

pub mod relay;
pub mod site;
use psgate_relay::session::outofproc::Session;
use psgate_relay::transport::{local, ssh};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::crypto::ExchangeKey;
use psgate_shared::psrp::host::{HostCall, HostResult};
use psgate_shared::psrp::messages::{PipelineSpec, PipelineState, PoolState};
use psgate_shared::psrp::outofproc::{ClientEvent, OutOfProcClient};
use psgate_shared::psrp::pool::{Event, PoolConfig, RecordKind, RunspacePool, needs_secure_string};
use uuid::Uuid;

/// How long any one step may take before a test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with psrpcore (scripts/setup.sh --test).
pub fn python() -> String {
    std::env::var("PSGATE_PYTHON").unwrap_or_else(|_| {
        let tools = std::env::var("PSGATE_TOOLS").unwrap_or_else(|_| "/opt/psgate-tools".into());
        format!("{tools}/venv/bin/python")
    })
}

/// The command line of the test host as a local process.
pub fn local_host_argv() -> Vec<OsString> {
    vec![python().into(), repo().join("tests/peers/psrp_host.py").into()]
}

/// A real OpenSSH sshd with the test host as its `powershell` subsystem (tests/peers/sshd.py). Stops
/// when dropped.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    _stdin: ChildStdin,
    /// What sshd.py printed.
    pub info: serde_json::Value,
}

impl Sshd {
    /// Starts one (`subsystem: false` for a server without the powershell subsystem).
    pub fn start(subsystem: bool) -> anyhow::Result<Sshd> {
        Sshd::start_with(subsystem, &[])
    }

    /// Starts one with more of sshd.py's options (`--jea-subsystem`: a second subsystem, `powershell-jea`, whose
    /// host runs NoLanguage like a JEA endpoint).
    pub fn start_with(subsystem: bool, extra: &[&str]) -> anyhow::Result<Sshd> {
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/peers/sshd.py"));
        if !subsystem {
            cmd.arg("--no-subsystem");
        }
        cmd.args(extra);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("starting tests/peers/sshd.py")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut text = String::new();
        let mut lines = BufReader::new(stdout).lines();
        let info = loop {
            let Some(line) = lines.next() else { bail!("sshd.py ended before printing its details:\n{text}") };
            text.push_str(&line?);
            text.push('\n');
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                break v;
            }
        };
        Ok(Sshd { child, _stdin: stdin, info })
    }

    fn field(&self, name: &str) -> String {
        self.info[name].as_str().map(str::to_owned).unwrap_or_else(|| self.info[name].to_string())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.info["port"].as_u64().unwrap_or(0) as u16
    }

    /// SSH options for key login, with this server's known_hosts.
    pub fn key_options(&self) -> ssh::SshOptions {
        let mut o = ssh::SshOptions::new(self.field("host"), self.field("user"), ssh::SshAuth::Key { path: self.field("key_ed25519").into(), passphrase: None });
        o.port = self.port();
        o.known_hosts = self.field("known_hosts").into();
        o.connect_timeout = STEP;
        o
    }

    /// SSH options for password login.
    pub fn password_options(&self, password: &str) -> ssh::SshOptions {
        let mut o = self.key_options();
        o.auth = ssh::SshAuth::Password(password.to_owned().into());
        o
    }

    /// The test user's password.
    pub fn password(&self) -> String {
        self.field("password")
    }

    /// A field of sshd.py's details.
    pub fn get(&self, name: &str) -> String {
        self.field(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Answers host calls in tests.
pub type Host = Box<dyn FnMut(&HostCall, &RunspacePool) -> Option<HostResult> + Send>;

/// A host that answers nothing (every non-void call gets an error).
pub fn no_host() -> Host {
    Box::new(|call, _| (!call.method.is_void()).then(|| HostResult::Error("no host in this test".into())))
}

/// What a pipeline produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Output objects.
    pub output: Vec<Value>,
    /// Other streams, in order.
    pub records: Vec<(RecordKind, Value)>,
    /// Host calls seen.
    pub host_calls: Vec<HostCall>,
    /// The final state.
    pub state: Option<PipelineState>,
    /// The terminating error, if any.
    pub error: Option<Value>,
}

impl Outcome {
    /// The records of one kind.
    pub fn records(&self, kind: RecordKind) -> Vec<&Value> {
        self.records.iter().filter(|(k, _)| *k == kind).map(|(_, v)| v).collect()
    }
}

/// A client session on a peer.
pub struct Client {
    /// The session.
    pub session: Session,
    /// Host-call answers.
    pub host: Host,
    /// Events that arrived while waiting for something else.
    pub backlog: VecDeque<ClientEvent>,
    waiting_for_key: Vec<(Option<Uuid>, HostCall)>,
    /// The local process, when the peer is one (kill it to simulate a crash).
    pub process: Option<tokio::process::Child>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("session", &self.session).finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a session on the test host as a local process.
    pub async fn local() -> anyhow::Result<Client> {
        let local::LocalProcess { child, stream } = local::spawn(&local_host_argv())?;
        let mut c = Client::over(Session::start(stream, OutOfProcClient::new(RunspacePool::new(PoolConfig::new(Uuid::new_v4())))));
        c.process = Some(child);
        c.open().await?;
        Ok(c)
    }

    /// Opens a session over SSH.
    pub async fn ssh(opts: &ssh::SshOptions) -> anyhow::Result<Client> {
        let stream = ssh::open_subsystem(opts).await?;
        let mut c = Client::over(Session::start(stream, OutOfProcClient::new(RunspacePool::new(PoolConfig::new(Uuid::new_v4())))));
        c.open().await?;
        Ok(c)
    }

    fn over(session: Session) -> Client {
        Client { session, host: no_host(), backlog: VecDeque::new(), waiting_for_key: Vec::new(), process: None }
    }

    /// The next event, within [`STEP`].
    pub async fn next(&mut self) -> anyhow::Result<ClientEvent> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        match tokio::time::timeout(STEP, self.session.events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => bail!("the session ended"),
            Err(_) => bail!("no event within {STEP:?}"),
        }
    }

    async fn open(&mut self) -> anyhow::Result<()> {
        self.session.with(|c| c.open()).await??;
        loop {
            match self.next().await? {
                ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => return Ok(()),
                ClientEvent::Psrp(Event::PoolState { state: s @ (PoolState::Broken | PoolState::Closed), error }) => bail!("pool {s:?}: {error:?}"),
                _ => {}
            }
        }
    }

    /// Runs a pipeline to its end, answering host calls with `self.host`; `input` objects are sent
    /// (and the input ended) when the spec takes input.
    pub async fn run(&mut self, spec: PipelineSpec, input: Vec<Value>) -> anyhow::Result<Outcome> {
        let id = Uuid::new_v4();
        let takes_input = !spec.no_input;
        self.session.with(move |c| c.create_pipeline(id, &spec)).await??;
        if takes_input {
            self.session
                .with(move |c| -> Result<(), psgate_shared::psrp::pool::ProtocolError> {
                    for v in &input {
                        c.pool_mut().send_input(id, v)?;
                    }
                    c.pool_mut().end_input(id)
                })
                .await??;
        }
        let mut out = Outcome::default();
        loop {
            match self.next().await? {
                ClientEvent::Psrp(Event::Output { pipeline, value }) if pipeline == id => out.output.push(value),
                ClientEvent::Psrp(Event::Record { pipeline, kind, value }) if pipeline == id => out.records.push((kind, value)),
                ClientEvent::Psrp(Event::PipelineState { pipeline, state, error }) if pipeline == id && state.is_terminal() => {
                    out.state = Some(state);
                    out.error = error;
                    self.session.with(move |c| c.close_pipeline(id)).await?;
                    return Ok(out);
                }
                ClientEvent::Psrp(Event::HostCall { pipeline, call }) => {
                    out.host_calls.push(call.clone());
                    self.host_call(pipeline, call).await?;
                }
                ClientEvent::Psrp(Event::KeyExchanged) => {
                    for (p, call) in std::mem::take(&mut self.waiting_for_key) {
                        self.answer(p, call).await?;
                    }
                }
                ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => bail!("the pool broke: {error:?}"),
                _ => {}
            }
        }
    }

    /// Runs a script without input.
    pub async fn script(&mut self, text: &str) -> anyhow::Result<Outcome> {
        self.run(PipelineSpec::script(text), Vec::new()).await
    }

    async fn host_call(&mut self, pipeline: Option<Uuid>, call: HostCall) -> anyhow::Result<()> {
        let ready = self.session.with(|c| c.pool().can_send_secure_strings()).await?;
        if needs_secure_string(call.method) && !ready {
            let first = self.waiting_for_key.is_empty();
            self.waiting_for_key.push((pipeline, call));
            if first {
                let key = tokio::task::spawn_blocking(|| ExchangeKey::generate(&mut rand::rngs::OsRng)).await??;
                self.session.with(move |c| c.pool_mut().start_key_exchange(key)).await??;
            }
            return Ok(());
        }
        self.answer(pipeline, call).await
    }

    async fn answer(&mut self, pipeline: Option<Uuid>, call: HostCall) -> anyhow::Result<()> {
        // The host callback needs the pool (to encrypt SecureStrings): run it inside the session.
        let mut host = std::mem::replace(&mut self.host, no_host());
        let (host, result) = self
            .session
            .with(move |c| {
                let result = host(&call, c.pool()).map(|r| c.pool_mut().host_response(pipeline, &call, r));
                (host, result)
            })
            .await?;
        self.host = host;
        if let Some(r) = result {
            r?;
        }
        Ok(())
    }

    /// Closes the session and waits for the server to confirm.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.session.with(|c| c.close()).await?;
        loop {
            match self.next().await? {
                ClientEvent::SessionClosed => return Ok(()),
                ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => bail!("broken while closing: {error:?}"),
                _ => {}
            }
        }
    }
}

/// Now, in milliseconds since the Unix epoch (the store's times).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
