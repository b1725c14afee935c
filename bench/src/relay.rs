//! `psgate-bench relay`: the relay as its own process (`psgate serve` with a temporary configuration, SQLite
//! database and user), driven through its WebSocket API as a browser drives it, side by side in one run with
//! psgate's engine used directly in this process (the session actor over the same local transport to the same
//! peer, `tests/peers/psrp_host.py`, as `psgate invoke --local` uses it):
//!
//! 1. the latency of a trivial command (p50, p99), through the relay and on the engine;
//! 2. Invoke-Command (`invoke`) over many sessions against one, with the default throttle limit and with one
//!    above the number of sessions, beside the same fan-out done on the engine directly, with the CPU the relay
//!    and the peers used (where the time goes);
//! 3. objects per second delivered to a WebSocket client, against the engine receiving them;
//! 4. the relay process's resident memory per idle session.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use psgate_relay::session::outofproc::Session;
use psgate_relay::transport::local;
use psgate_shared::api::{Availability, ServerMessage, SessionId, SessionState};
use psgate_shared::psrp::messages::PipelineSpec;
use psgate_shared::psrp::outofproc::ClientEvent;
use psgate_shared::psrp::pool::Event;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::psrp::{open_session, wait_opened};
use crate::{python, repo};

/// The trivial command: the peer answers it with one output object and `Completed`.
const TRIVIAL: &str = "Write-Output 1";
/// A command that takes its time on the target and little CPU (as a real command on a remote host does): the
/// fan-out measured without the peers' CPU on this machine as the bottleneck.
const SLEEPY: &str = "Start-Sleep -Milliseconds 500; Write-Output 1";
/// The pause after each command when latency is measured as a person types.
const PAUSE: Duration = Duration::from_millis(10);
/// How long any one step may take.
const STEP: Duration = Duration::from_secs(120);
pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-password-not-secret";
/// Sessions opened at once (each starts a Python process; the relay gives a session 30 s to open).
const OPEN_BATCH: usize = 10;

struct Params {
    runs: usize,
    sessions: usize,
    objects: usize,
    quick: bool,
}

impl Params {
    /// How many times an Invoke-Command case runs (its median is reported).
    fn reps(&self, script: &str, sessions: usize, throttle: u32) -> usize {
        match (script == SLEEPY, sessions == 1, (throttle as usize) < sessions) {
            (false, true, _) => 20,
            (false, false, _) => 5,
            (true, true, _) => 5,
            (true, false, true) => 3,
            (true, false, false) => 5,
        }
        .min(if self.quick { 3 } else { usize::MAX })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// /proc

const TICKS: f64 = 100.0;

/// A process's parent and CPU seconds (user + system, all threads).
fn proc_stat(pid: u32) -> Option<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    Some((ppid, (ticks(11) + ticks(12)) / TICKS))
}

pub(crate) fn cpu_of(pid: u32) -> f64 {
    proc_stat(pid).map_or(0.0, |(_, cpu)| cpu)
}

/// VmRSS of one process (not its children), KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// The direct children of `parent` (the peers of the relay, or of this process).
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(ppid, _)| ppid == parent))
        .collect()
}

/// CPU seconds of `pid` and of its living children.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    own: f64,
    children: f64,
}

/// `pid`'s CPU and its children's, but for `except` (this process's child the relay, when measuring this process).
fn cpu_now(pid: u32, except: u32) -> Cpu {
    Cpu { own: cpu_of(pid), children: children(pid).into_iter().filter(|c| *c != except).map(cpu_of).sum() }
}

impl std::ops::Div<f64> for Cpu {
    type Output = Cpu;
    fn div(self, n: f64) -> Cpu {
        Cpu { own: self.own / n, children: self.children / n }
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu { own: self.own - o.own, children: self.children - o.children }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The relay process

/// `psgate serve` on 127.0.0.1 with a temporary configuration and database, the local transport to the peer
/// allowed for `localhost`. Killed (its peers then see their standard input end and exit) when dropped.
pub(crate) struct RelayProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: PathBuf,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds `psgate` (release) and returns its path; `PSGATE_BIN` names another.
pub(crate) fn psgate_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PSGATE_BIN") {
        return Ok(bin.into());
    }
    let root = repo();
    let status = Command::new("cargo").args(["build", "--release", "--quiet", "-p", "psgate-bench", "-p", "psgate-relay", "--bin", "psgate"]).current_dir(&root).status()?;
    if !status.success() {
        bail!("building psgate failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    Ok(target.join("release/psgate"))
}

/// A TOML string.
pub(crate) fn toml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The relay's environment overrides, removed so that the temporary configuration is what runs.
const RELAY_ENV: [&str; 5] = ["PSGATE_CONFIG", "PSGATE_LISTEN", "PSGATE_DATABASE", "PSGATE_ASSETS", "PSGATE_ALLOWED_ORIGINS"];

impl RelayProcess {
    fn start(binary: &Path) -> anyhow::Result<RelayProcess> {
        RelayProcess::start_with(binary, "relay", "")
    }

    /// [`RelayProcess::start`] in a folder named after `name`, with `extra` (TOML) added to its configuration.
    pub(crate) fn start_with(binary: &Path, name: &str, extra: &str) -> anyhow::Result<RelayProcess> {
        let dir = std::env::temp_dir().join(format!("psgate-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("psgate.toml");
        let host = repo().join("tests/peers/psrp_host.py");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = {}\nassets = {}\nlocal_command = [{}, {}]\n\n[[allow]]\nhosts = [\"localhost\"]\ntransports = [\"local\"]\n{extra}\n",
                toml_str(&dir.join("psgate.db").to_string_lossy()),
                toml_str(&dir.join("no-assets").to_string_lossy()),
                toml_str(&python()),
                toml_str(&host.to_string_lossy()),
            ),
        )?;
        let command = |args: &[&str]| {
            let mut c = Command::new(binary);
            c.args(args).arg("--config").arg(&config);
            for v in RELAY_ENV {
                c.env_remove(v);
            }
            c
        };
        let mut add = command(&["user", "add", USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        add.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
        let out = add.wait_with_output()?;
        if !out.status.success() {
            bail!("psgate user add: {}", String::from_utf8_lossy(&out.stderr));
        }
        let log = std::fs::File::create(dir.join("relay.log"))?;
        let mut child = command(&["serve"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("psgate listening on http://")
            .and_then(|s| s.trim_end_matches('/').parse().ok())
            .with_context(|| format!("psgate serve printed {line:?}; its log: {}", dir.join("relay.log").display()))?;
        Ok(RelayProcess { child, _stdout: stdout, addr, dir })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A WebSocket client, as the browser is one

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The part of a server message every message is read for; the rest (the CLIXML of an output) is skipped, not
/// decoded, and other messages are read in full only when needed.
#[derive(Deserialize)]
pub(crate) struct Head<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    #[serde(default)]
    pub(crate) pipeline: Option<u64>,
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    #[serde(default)]
    pub(crate) state: Option<&'a str>,
}

pub(crate) struct WsClient {
    pub(crate) ws: Ws,
}

/// `POST /api/login`: the session cookie (`name=value`).
async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    login_as(addr, USER, PASSWORD).await
}

/// `POST /api/login` as `user`: the session cookie (`name=value`).
pub(crate) async fn login_as(addr: SocketAddr, user: &str, password: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = json!({"name": user, "password": password}).to_string();
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    if resp.split(' ').nth(1) != Some("200") {
        bail!("login refused: {}", resp.lines().next().unwrap_or_default());
    }
    let cookie = resp
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.trim()))
        .context("no cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

fn terminal(state: Option<&str>) -> bool {
    matches!(state, Some("completed" | "failed" | "stopped"))
}

/// What one `run` delivered.
pub(crate) struct Delivered {
    pub(crate) elapsed: Duration,
    pub(crate) outputs: usize,
    pub(crate) dropped: u64,
}

/// What one `invoke` took.
struct Invoked {
    wall: Duration,
    outputs: usize,
    /// Each host's `invoke_host_started` → `invoke_host_finished`.
    per_host: Vec<Duration>,
}

impl WsClient {
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<WsClient> {
        let cookie = login(addr).await?;
        let mut req = format!("ws://{addr}/api/ws").into_client_request()?;
        req.headers_mut().insert("cookie", HeaderValue::from_str(&cookie)?);
        req.headers_mut().insert("origin", HeaderValue::from_str(&format!("http://{addr}"))?);
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        let mut c = WsClient { ws };
        let text = c.text().await?;
        if !matches!(serde_json::from_str::<Head>(&text)?.kind, "hello") {
            bail!("expected hello, got {text}");
        }
        Ok(c)
    }

    pub(crate) async fn send(&mut self, v: serde_json::Value) -> anyhow::Result<()> {
        self.ws.send(Message::Text(v.to_string().into())).await?;
        Ok(())
    }

    pub(crate) async fn text(&mut self) -> anyhow::Result<tokio_tungstenite::tungstenite::Utf8Bytes> {
        loop {
            match tokio::time::timeout(STEP, self.ws.next()).await {
                Err(_) => bail!("no message from the relay within {STEP:?}"),
                Ok(None) => bail!("the relay closed the WebSocket"),
                Ok(Some(frame)) => {
                    if let Message::Text(t) = frame? {
                        return Ok(t);
                    }
                }
            }
        }
    }

    /// The user's sessions (`get_sessions`).
    async fn sessions(&mut self) -> anyhow::Result<Vec<psgate_shared::api::SessionInfo>> {
        self.request(json!({"type": "get_sessions"})).await
    }

    /// Sends a message the relay answers with `sessions` (`get_sessions`, `new_sessions`, `remove_sessions`) and
    /// reads up to that answer, so that every answer is read by its request.
    pub(crate) async fn request(&mut self, message: serde_json::Value) -> anyhow::Result<Vec<psgate_shared::api::SessionInfo>> {
        self.send(message).await?;
        loop {
            let text = self.text().await?;
            if serde_json::from_str::<Head>(&text)?.kind == "sessions"
                && let Ok(ServerMessage::Sessions { sessions }) = serde_json::from_str(&text)
            {
                return Ok(sessions);
            }
        }
    }

    /// Sends `message` and reads up to the relay's `kind` answer (an `error` first is an error).
    pub(crate) async fn request_until(&mut self, message: serde_json::Value, kind: &str) -> anyhow::Result<()> {
        self.send(message).await?;
        loop {
            let text = self.text().await?;
            match serde_json::from_str::<Head>(&text)?.kind {
                k if k == kind => return Ok(()),
                "error" => bail!("the relay answered {text}"),
                _ => {}
            }
        }
    }

    /// Waits until every session is opened and available (not opening, not busy); a broken one is an error.
    pub(crate) async fn until_available(&mut self) -> anyhow::Result<Vec<SessionId>> {
        let deadline = Instant::now() + STEP;
        loop {
            let sessions = self.sessions().await?;
            if let Some(s) = sessions.iter().find(|s| s.state == SessionState::Broken) {
                bail!("session {} broke: {}", s.id.0, s.reason.as_deref().unwrap_or("?"));
            }
            if sessions.iter().all(|s| s.state == SessionState::Opened && s.availability == Availability::Available) {
                return Ok(sessions.iter().map(|s| s.id).collect());
            }
            if Instant::now() > deadline {
                bail!("sessions not available within {STEP:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `n` more sessions on `localhost` (local transport), `OPEN_BATCH` at a time; returns all the user's.
    pub(crate) async fn open_sessions(&mut self, n: usize) -> anyhow::Result<Vec<SessionId>> {
        let mut left = n;
        let mut all = Vec::new();
        while left > 0 {
            let k = left.min(OPEN_BATCH);
            let targets: Vec<_> = (0..k).map(|_| json!({"computer_name": "localhost", "transport": "local"})).collect();
            self.request(json!({"type": "new_sessions", "targets": targets})).await?;
            all = self.until_available().await?;
            left -= k;
        }
        Ok(all)
    }

    /// `run`: from sending it to the pipeline's final state. Then waits, untimed, until the session is available
    /// again (the relay marks it so just after the final state).
    pub(crate) async fn run(&mut self, session: SessionId, script: &str) -> anyhow::Result<Delivered> {
        let start = Instant::now();
        self.send(json!({"type": "run", "session": session, "script": script})).await?;
        let mut pipeline = None;
        let (mut outputs, mut dropped, mut last_seq) = (0usize, 0u64, 0u64);
        // The session's Busy (from this run), then Available: a late Available of an earlier run is not this one's.
        let (mut busy, mut available) = (false, false);
        let track = |text: &str, busy: &mut bool, available: &mut bool| match availability(text, session) {
            Some(Availability::Busy) => *busy = true,
            Some(Availability::Available) => *available |= *busy,
            _ => {}
        };
        let elapsed = loop {
            let text = self.text().await?;
            let head: Head = serde_json::from_str(&text)?;
            match head.kind {
                "output" if head.pipeline == pipeline => {
                    outputs += 1;
                    let seq = head.seq.unwrap_or(0);
                    if seq != last_seq + 1 && dropped == 0 {
                        bail!("output seq {seq} after {last_seq}");
                    }
                    last_seq = seq;
                }
                "pipeline_started" => pipeline = head.pipeline,
                "pipeline_state" if head.pipeline == pipeline && terminal(head.state) => {
                    let elapsed = start.elapsed();
                    if head.state != Some("completed") {
                        bail!("the pipeline ended {:?}: {text}", head.state);
                    }
                    break elapsed;
                }
                "pipeline_state" | "record" | "host_call" => last_seq = head.seq.unwrap_or(last_seq),
                "session_changed" => track(&text, &mut busy, &mut available),
                "error" => match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(ServerMessage::Error { code: psgate_shared::api::ErrorCode::OutputDropped, message }) => {
                        dropped += message.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                    }
                    _ => bail!("the relay answered {text}"),
                },
                _ => {}
            }
        };
        while !available {
            let text = self.text().await?;
            if serde_json::from_str::<Head>(&text)?.kind == "session_changed" {
                track(&text, &mut busy, &mut available);
            }
        }
        Ok(Delivered { elapsed, outputs, dropped })
    }

    /// `invoke`: from sending it to `invoke_finished`. Then waits, untimed, until every session is available.
    async fn invoke(&mut self, sessions: &[SessionId], script: &str, throttle: Option<u32>) -> anyhow::Result<Invoked> {
        let mut message = json!({"type": "invoke", "sessions": sessions, "script": script});
        if let Some(t) = throttle {
            message["throttle_limit"] = t.into();
        }
        let start = Instant::now();
        self.send(message).await?;
        let mut outputs = 0usize;
        let mut started = std::collections::HashMap::new();
        let mut per_host = Vec::new();
        let wall = loop {
            let text = self.text().await?;
            let head: Head = serde_json::from_str(&text)?;
            match head.kind {
                "output" => outputs += 1,
                "invoke_host_started" => {
                    started.insert(head.pipeline, Instant::now());
                }
                "invoke_host_finished" => {
                    let Ok(ServerMessage::InvokeHostFinished { host, .. }) = serde_json::from_str(&text) else { bail!("{text}") };
                    if host.state != psgate_shared::api::PipelineState::Completed {
                        bail!("session {} ended {:?}: {}", host.session.0, host.state, host.message.as_deref().unwrap_or_default());
                    }
                    if let Some(t) = started.get(&host.pipeline.map(|p| p.0)) {
                        per_host.push(t.elapsed());
                    }
                }
                "invoke_finished" => break start.elapsed(),
                "error" => bail!("the relay answered {text}"),
                _ => {}
            }
        };
        if per_host.len() != sessions.len() {
            bail!("{} of {} hosts finished", per_host.len(), sessions.len());
        }
        self.until_available().await?;
        Ok(Invoked { wall, outputs, per_host })
    }
}

/// A `session_changed` of `session`: its availability now.
fn availability(text: &str, session: SessionId) -> Option<Availability> {
    match serde_json::from_str(text) {
        Ok(ServerMessage::SessionChanged { session: s }) if s.id == session => Some(s.availability),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The engine directly

/// A session on the peer driven by the engine in this process.
struct Direct {
    _child: tokio::process::Child,
    session: Session,
}

async fn direct_open() -> anyhow::Result<Direct> {
    let argv = vec![python().into(), repo().join("tests/peers/psrp_host.py").into_os_string()];
    let local::LocalProcess { child, stream } = local::spawn(&argv)?;
    let mut session = open_session(stream).await?;
    tokio::time::timeout(STEP, wait_opened(&mut session)).await.context("opening")??;
    Ok(Direct { _child: child, session })
}

/// Opens `n` sessions, `OPEN_BATCH` at a time.
async fn direct_open_many(n: usize) -> anyhow::Result<Vec<Direct>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let k = (n - all.len()).min(OPEN_BATCH);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..k {
            set.spawn(direct_open());
        }
        while let Some(d) = set.join_next().await {
            all.push(d??);
        }
    }
    Ok(all)
}

/// Runs `script` to its final state: the time from creating the pipeline to its final state and the outputs.
/// The pipeline is then closed, untimed (as the relay closes it after forwarding the final state).
async fn direct_run(d: &mut Direct, script: &str) -> anyhow::Result<(Duration, usize)> {
    let id = uuid::Uuid::new_v4();
    let spec = PipelineSpec::script(script);
    let start = Instant::now();
    d.session.with(move |c| c.create_pipeline(id, &spec)).await??;
    let mut outputs = 0usize;
    let elapsed = loop {
        match tokio::time::timeout(STEP, d.session.events.recv()).await.context("no event in time")? {
            Some(ClientEvent::Psrp(Event::Output { pipeline, .. })) if pipeline == id => outputs += 1,
            Some(ClientEvent::Psrp(Event::PipelineState { pipeline, state, error })) if pipeline == id && state.is_terminal() => {
                let elapsed = start.elapsed();
                if error.is_some() {
                    bail!("the pipeline ended {state:?}: {error:?}");
                }
                break elapsed;
            }
            Some(_) => {}
            None => bail!("the session ended"),
        }
    };
    d.session.with(move |c| c.close_pipeline(id)).await?;
    Ok((elapsed, outputs))
}

/// The same script on every session, at most `throttle` at once: the wall time.
async fn direct_fanout(sessions: Vec<Direct>, script: &'static str, throttle: usize) -> anyhow::Result<(Vec<Direct>, Duration)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(throttle));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for mut d in sessions {
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r = direct_run(&mut d, script).await;
            (d, r)
        });
    }
    let mut back = Vec::new();
    while let Some(j) = set.join_next().await {
        let (d, r) = j?;
        r?;
        back.push(d);
    }
    Ok((back, start.elapsed()))
}

async fn direct_close(all: Vec<Direct>) {
    for d in &all {
        let _ = d.session.with(|c| c.close()).await;
    }
    for d in all {
        d.session.finished().await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics and printing

/// Nearest-rank percentile of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    percentile(&s, 50.0)
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------------------------
// The run

#[derive(Default)]
struct FanoutRow {
    script: &'static str,
    sessions: usize,
    throttle: u32,
    reps: usize,
    relay: Duration,
    relay_cpu: Cpu,
    relay_per_host: Duration,
    direct: Duration,
    direct_cpu: Cpu,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<usize>().ok());
    let p = Params {
        runs: value("--runs").unwrap_or(if quick { 100 } else { 500 }),
        sessions: value("--sessions").unwrap_or(if quick { 20 } else { 200 }),
        objects: value("--objects").unwrap_or(if quick { 20_000 } else { 200_000 }),
        quick,
    };
    let binary = psgate_binary()?;
    let relay = RelayProcess::start(&binary)?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(measure(&relay, &p));
    if result.is_err() {
        eprintln!("the relay's log: {}", relay.dir.join("relay.log").display());
        // Keep the log for a look.
        let kept = std::env::temp_dir().join("psgate-bench-relay.log");
        let _ = std::fs::copy(relay.dir.join("relay.log"), &kept);
        eprintln!("(copied to {})", kept.display());
    }
    result
}

async fn measure(relay: &RelayProcess, p: &Params) -> anyhow::Result<()> {
    let me = std::process::id();
    let rpid = relay.pid();
    let n = p.sessions;
    println!(
        "Relay benchmark ({} build): `psgate serve` as its own process (pid {rpid}) driven over its WebSocket API, beside the engine used directly in this process; the same peer (tests/peers/psrp_host.py, local transport); load average at start: {}\n",
        if cfg!(debug_assertions) { "DEBUG" } else { "release" },
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    let t0 = Instant::now();
    let at = || format!("[{:5.1} s]", t0.elapsed().as_secs_f64());
    let mut ws = WsClient::connect(relay.addr).await?;

    // 4. Memory: the relay's RSS with 0, 1 and n idle sessions.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_kib(rpid);
    eprintln!("{} opening 1 session, then {} more ({OPEN_BATCH} at a time)…", at(), n - 1);
    let t = Instant::now();
    ws.open_sessions(1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = rss_kib(rpid);
    let sessions = ws.open_sessions(n - 1).await?;
    let open_secs = t.elapsed().as_secs_f64();
    if sessions.len() != n {
        bail!("{} sessions open, expected {n}", sessions.len());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_n = rss_kib(rpid);
    let peers = children(rpid);
    let peer_rss: u64 = peers.iter().map(|p| rss_kib(*p)).sum();
    eprintln!("{} {n} sessions open in {open_secs:.1} s; relay RSS {rss0} → {rss1} → {rss_n} KiB; {} peers, {} MiB", at(), peers.len(), peer_rss / 1024);

    // 2. Invoke-Command on n sessions against 1, through the relay; then the same on the engine directly.
    eprintln!("{} invoke through the relay…", at());
    let first = sessions[0];
    let mut rows = Vec::new();
    for script in [TRIVIAL, SLEEPY] {
        for (count, throttle) in [(1usize, psgate_shared::api::DEFAULT_THROTTLE_LIMIT), (n, psgate_shared::api::DEFAULT_THROTTLE_LIMIT), (n, n.max(200) as u32)] {
            rows.push(FanoutRow { script, sessions: count, throttle, reps: p.reps(script, count, throttle), ..FanoutRow::default() });
        }
    }
    for row in &mut rows {
        let targets = &sessions[..row.sessions];
        let throttle = (row.throttle != psgate_shared::api::DEFAULT_THROTTLE_LIMIT).then_some(row.throttle);
        ws.invoke(targets, row.script, throttle).await?; // warm-up
        let (mut walls, mut per_host) = (Vec::new(), Vec::new());
        let before = cpu_now(rpid, 0);
        for _ in 0..row.reps {
            let r = ws.invoke(targets, row.script, throttle).await?;
            if r.outputs != row.sessions {
                bail!("invoke delivered {} outputs from {} sessions", r.outputs, row.sessions);
            }
            walls.push(r.wall);
            per_host.push(median(&r.per_host));
        }
        row.relay_cpu = (cpu_now(rpid, 0) - before) / row.reps as f64;
        row.relay = median(&walls);
        row.relay_per_host = median(&per_host);
    }
    // Back to one session in the relay; the same fan-out on the engine directly, over n fresh peers.
    let others: Vec<SessionId> = sessions[1..].to_vec();
    ws.request(json!({"type": "remove_sessions", "ids": others})).await?;
    ws.until_available().await?;
    eprintln!("{} the same fan-out on the engine directly ({n} sessions in this process)…", at());
    let mut direct = direct_open_many(n).await?;
    for row in &mut rows {
        let mut rest = direct.split_off(row.sessions);
        let (mut used, _) = direct_fanout(direct, row.script, row.throttle as usize).await?; // warm-up
        let mut walls = Vec::new();
        let before = cpu_now(me, rpid);
        for _ in 0..row.reps {
            let (back, wall) = direct_fanout(used, row.script, row.throttle as usize).await?;
            used = back;
            walls.push(wall);
        }
        row.direct_cpu = (cpu_now(me, rpid) - before) / row.reps as f64;
        row.direct = median(&walls);
        used.append(&mut rest);
        direct = used;
    }
    direct_close(direct).await;

    // 1. Latency of the trivial command, in alternating blocks so both see the same machine: paced as a person
    // types (a pause after each command, in which the relay refreshes the session's prompt with a pipeline of its
    // own), and back to back as a script would send them.
    eprintln!("{} latency: {} runs of `{TRIVIAL}` each way, paced and back to back…", at(), p.runs);
    let mut engine = direct_open().await?;
    for _ in 0..20 {
        ws.run(first, TRIVIAL).await?;
        direct_run(&mut engine, TRIVIAL).await?;
    }
    let mut latencies = Vec::new();
    for pause in [Some(PAUSE), None] {
        let (mut via_relay, mut via_engine) = (Vec::new(), Vec::new());
        let block = 50;
        while via_relay.len() < p.runs {
            for _ in 0..block.min(p.runs - via_relay.len()) {
                let d = ws.run(first, TRIVIAL).await?;
                if d.outputs != 1 {
                    bail!("{} outputs", d.outputs);
                }
                via_relay.push(d.elapsed);
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            for _ in 0..block.min(p.runs - via_engine.len()) {
                via_engine.push(direct_run(&mut engine, TRIVIAL).await?.0);
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        via_relay.sort();
        via_engine.sort();
        latencies.push((pause, via_relay, via_engine));
    }

    // 3. Objects per second: the peer's fast mode, counted at the WebSocket client / by the engine.
    eprintln!("{} throughput: {} objects each way, 3 times…", at(), p.objects);
    let bulk: &'static str = Box::leak(format!("Get-Objects -Count {} -Size small -Fast", p.objects).into_boxed_str());
    let (mut relay_rates, mut engine_rates) = (Vec::new(), Vec::new());
    let (mut relay_cpu, mut engine_cpu, mut dropped) = (Vec::new(), Vec::new(), 0u64);
    for _ in 0..3 {
        let before = cpu_now(rpid, 0);
        let me_before = cpu_of(me);
        let d = ws.run(first, bulk).await?;
        let cpu = cpu_now(rpid, 0) - before;
        let client_cpu = cpu_of(me) - me_before;
        dropped += d.dropped;
        relay_rates.push(d.outputs as f64 / d.elapsed.as_secs_f64());
        relay_cpu.push((cpu.own, client_cpu, cpu.children, d.outputs));
        let before = cpu_now(me, rpid);
        let (elapsed, outputs) = direct_run(&mut engine, bulk).await?;
        let cpu = cpu_now(me, rpid) - before;
        if outputs != p.objects {
            bail!("the engine received {outputs} of {}", p.objects);
        }
        engine_rates.push(outputs as f64 / elapsed.as_secs_f64());
        engine_cpu.push((cpu.own, cpu.children));
        eprintln!("  relay {:.0} obj/s ({} delivered, {} dropped), engine {:.0} obj/s", relay_rates.last().copied().unwrap_or(0.0), d.outputs, d.dropped, engine_rates.last().copied().unwrap_or(0.0));
    }
    direct_close(vec![engine]).await;
    let _ = ws.request(json!({"type": "remove_sessions", "all": true})).await;

    // The tables.
    let mid = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let diff = |a: Duration, b: Duration| format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3);
    let ratio = |a: f64, b: f64| format!("{:.2}×", a / b);
    println!("| measurement | through the relay (WebSocket client) | engine directly | relay − engine | relay ÷ engine |");
    println!("|---|---|---|---|---|");
    for (pause, via_relay, via_engine) in &latencies {
        let how = match pause {
            Some(pause) => format!("{} ms apart", pause.as_millis()),
            None => "back to back".to_owned(),
        };
        for pct in [50.0, 99.0] {
            let (r, e) = (percentile(via_relay, pct), percentile(via_engine, pct));
            println!("| `{TRIVIAL}` {how}, p{pct} of {} (sent → final state) | {} | {} | {} | {} |", p.runs, ms(r), ms(e), diff(r, e), ratio(r.as_secs_f64(), e.as_secs_f64()));
        }
    }
    let (rr, er) = (mid(&relay_rates), mid(&engine_rates));
    println!("| objects/s, {} small objects (`Get-Objects -Fast`), median of 3 | {} | {} | | {} |", crate::measure::thousands(p.objects as f64), crate::measure::thousands(rr), crate::measure::thousands(er), ratio(rr, er));
    let per_obj = |cpu: f64, n: usize| cpu * 1e6 / n.max(1) as f64;
    let relay_us = mid(&relay_cpu.iter().map(|(c, _, _, n)| per_obj(*c, *n)).collect::<Vec<_>>());
    let client_us = mid(&relay_cpu.iter().map(|(_, c, _, n)| per_obj(*c, *n)).collect::<Vec<_>>());
    let relay_peer_us = mid(&relay_cpu.iter().map(|(_, _, c, n)| per_obj(*c, *n)).collect::<Vec<_>>());
    let engine_us = mid(&engine_cpu.iter().map(|(c, _)| per_obj(*c, p.objects)).collect::<Vec<_>>());
    let engine_peer_us = mid(&engine_cpu.iter().map(|(_, c)| per_obj(*c, p.objects)).collect::<Vec<_>>());
    println!(
        "| CPU µs per object: psgate / peer (relay: the psgate process; engine: this process) | {relay_us:.2} / {relay_peer_us:.2} (client {client_us:.2}) | {engine_us:.2} / {engine_peer_us:.2} | | {} |",
        ratio(relay_us, engine_us)
    );
    println!("| output events lost before the client (`output_dropped`), of 3 × {} | {} | 0 | | |", crate::measure::thousands(p.objects as f64), crate::measure::thousands(dropped as f64));

    println!(
        "\nInvoke-Command (`invoke`) on {n} sessions vs 1: wall time from sending `invoke` to `invoke_finished` (median of 3–20 runs), beside the same fan-out on the engine directly (one task per session, at most `throttle` at once); CPU per run\n"
    );
    println!("| script | sessions | throttle | relay wall | ÷ 1 session | per host (started → finished) | engine wall | ÷ 1 session | relay ÷ engine | CPU relay process | CPU peers (relay) | CPU this process (engine) | CPU peers (engine) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let one = rows.iter().find(|o| o.script == r.script && o.sessions == 1).unwrap_or(r);
        println!(
            "| `{}` | {} | {} | {} | {:.1}× | {} | {} | {:.1}× | {:.2}× | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            r.script,
            r.sessions,
            r.throttle,
            ms(r.relay),
            r.relay.as_secs_f64() / one.relay.as_secs_f64(),
            ms(r.relay_per_host),
            ms(r.direct),
            r.direct.as_secs_f64() / one.direct.as_secs_f64(),
            r.relay.as_secs_f64() / r.direct.as_secs_f64(),
            r.relay_cpu.own * 1e3,
            r.relay_cpu.children * 1e3,
            r.direct_cpu.own * 1e3,
            r.direct_cpu.children * 1e3,
        );
    }
    println!("\n(CPU from /proc, 10 ms ticks; the machine has {} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));

    println!("\nResident memory of the relay process (VmRSS of `psgate serve` only, not its peers):\n");
    println!("| idle sessions | VmRSS | per session |");
    println!("|---|---|---|");
    println!("| 0 (logged in, WebSocket open) | {rss0} KiB | |");
    println!("| 1 | {rss1} KiB | {} KiB (the first, with warm-up) |", rss1.saturating_sub(rss0));
    println!("| {n} | {rss_n} KiB | **{:.0} KiB** (({n} − 0) ÷ {n}); {:.0} KiB after the first ((n − 1) ÷ {}) |", rss_n.saturating_sub(rss0) as f64 / n as f64, rss_n.saturating_sub(rss1) as f64 / (n - 1).max(1) as f64, n - 1);
    println!("\n(each peer, a Python process with psrpcore, holds about {} MiB; {n} sessions opened in {open_secs:.1} s)", peer_rss / 1024 / peers.len().max(1) as u64);
    Ok(())
}
