//! Implicit remoting (`psgate-bench implicit`): Import-PSSession's discovery of a 150-command module, psgate's
//! engine beside pypsrp 0.9.1 in the same run, against the same WS-Management test peer (tests/peers/winrm_host.py,
//! its BenchModule), HTTP with NTLM and message encryption; and a proxy call's overhead over the same command typed
//! as Invoke-Command, in the language core.
//!
//! - Discovery: GET_COMMAND_METADATA for `*` in namespace `BenchModule`, from sending it until every answer is
//!   received and read into command metadata (psgate: the session task's events, then `CommandMetadata::from_value`
//!   as Import-PSSession reads them; pypsrp: `RunspacePool.get_command_metadata`, which returns its deserialized
//!   `CommandMetadata` objects). Both must find 150 commands. Median of several runs on one open session each.
//! - Bytes on the wire: both clients reach the peer through a counting TCP relay in this process (bytes each way,
//!   HTTP, NTLM and encryption included: the same measure for both), read around each discovery.
//! - Proxy overhead: `Get-remBench001 -Name x` against `Invoke-Command -Session $s { Get-Bench001 -Name x
//!   -Count 3 }`, each through the language core on an in-memory remoting side that answers at once: what psgate adds
//!   before the command leaves (resolving the proxy and its parameters from the metadata, building the Command
//!   object), per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use psgate_lang::{Host, Runspace};
use psgate_shared::api::{HostAnswer, RecordKind};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::HostMethod;
use psgate_shared::psrp::messages::{CommandMetadata, PoolState, metadata_count};
use psgate_shared::psrp::outofproc::ClientEvent;
use psgate_shared::psrp::pool::Event;
use uuid::Uuid;

use crate::measure::{cpu_seconds, thousands};
use crate::prompt::Memory;
use crate::winrm::{Peer, median, next, psgate_close, pypsrp};

const MODULE: &str = "BenchModule";
const COMMANDS: usize = 150;

/// Bytes through the counting relay so far: to the peer, from the peer.
#[derive(Clone, Default)]
struct Wire(Arc<(AtomicU64, AtomicU64)>);

impl Wire {
    fn now(&self) -> (u64, u64) {
        (self.0.0.load(Ordering::Relaxed), self.0.1.load(Ordering::Relaxed))
    }
}

/// A TCP relay to `port` on 127.0.0.1 that counts what passes: its port.
async fn counting_relay(port: u16, wire: Wire) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { continue };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (up, down) = (wire.clone(), wire.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    up.0.0.fetch_add(n as u64, Ordering::Relaxed);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = sr.read(&mut buf).await {
                    down.0.1.fetch_add(n as u64, Ordering::Relaxed);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
            });
        }
    });
    Ok(local)
}

/// A psgate session to the peer through the relay on `port`.
async fn open_through(port: u16) -> anyhow::Result<psgate_relay::session::outofproc::Session> {
    use psgate_relay::transport::winrm::{AuthMethod, Endpoint, WinrmOptions};
    let url = format!("http://127.0.0.1:{port}/wsman");
    let options = WinrmOptions::new(Endpoint::parse(&url)?, crate::winrm::USER, crate::winrm::PASSWORD.to_owned().into(), AuthMethod::Ntlm);
    let mut s = psgate_relay::session::winrm::connect(psgate_relay::session::winrm::WinrmTarget::new(options), None, false).await?;
    s.with(|c| c.open()).await??;
    loop {
        match next(&mut s).await? {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => return Ok(s),
            ClientEvent::Psrp(Event::PoolState { state: state @ (PoolState::Broken | PoolState::Closed), error }) => bail!("the pool is {state:?}: {error:?}"),
            _ => {}
        }
    }
}

/// One discovery by psgate on an open session: seconds, CPU seconds, commands, parameters, the peer's bytes.
struct Discovery {
    seconds: f64,
    cpu: f64,
    commands: usize,
    parameters: usize,
    bytes: (u64, u64),
}

async fn psgate_discover(wire: &Wire, s: &mut psgate_relay::session::outofproc::Session) -> anyhow::Result<Discovery> {
    let me = std::process::id().to_string();
    let id = Uuid::new_v4();
    let io = wire.now();
    let (start, cpu) = (Instant::now(), cpu_seconds(&me, false));
    s.with(move |c| c.command_metadata(id, &["*"], &[MODULE])).await??;
    let mut found: Vec<CommandMetadata> = Vec::new();
    let mut expected = None;
    loop {
        match next(s).await? {
            ClientEvent::Psrp(Event::Output { pipeline, value }) if pipeline == id => match metadata_count(&value) {
                Some(n) => expected = Some(n as usize),
                None => found.push(CommandMetadata::from_value(&value).context("a command's metadata")?),
            },
            ClientEvent::Psrp(Event::PipelineState { pipeline, state, error }) if pipeline == id && state.is_terminal() => {
                if error.is_some() {
                    bail!("the discovery ended {state:?}: {error:?}");
                }
                break;
            }
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => bail!("broken: {error:?}"),
            _ => {}
        }
    }
    let (seconds, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds(&me, false) - cpu);
    let after = wire.now();
    if expected != Some(found.len()) {
        bail!("psgate read {} commands, the count said {expected:?}", found.len());
    }
    s.with(move |c| c.close_pipeline(id)).await?;
    Ok(Discovery { seconds, cpu, commands: found.len(), parameters: found.iter().map(|c| c.parameters.len()).sum(), bytes: (after.0 - io.0, after.1 - io.1) })
}

/// A console that only counts.
#[derive(Default)]
struct Count {
    objects: usize,
    errors: usize,
}

impl Host for Count {
    fn output(&mut self, _v: Value) {
        self.objects += 1;
    }
    fn record(&mut self, kind: RecordKind, _v: Value) {
        self.errors += usize::from(kind == RecordKind::Error);
    }
    fn call(&mut self, _m: HostMethod, _a: Vec<Value>) -> Option<HostAnswer> {
        None
    }
    fn interactive(&self) -> bool {
        false
    }
    fn stopping(&self) -> bool {
        false
    }
    fn clear(&mut self) {}
}

/// Microseconds per line, over `n` runs of `line` (after the import).
fn per_line(rs: &mut Runspace, memory: &mut Memory, line: &str, n: usize) -> anyhow::Result<f64> {
    let mut console = Count::default();
    let start = Instant::now();
    for _ in 0..n {
        rs.run(line, memory, &mut console);
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    if console.errors > 0 || console.objects != n {
        bail!("{line}: {} objects and {} errors over {n} runs", console.objects, console.errors);
    }
    Ok(micros)
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let runs = if quick { 3 } else { 9 };
    let peer = Peer::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!("Implicit remoting: Import-PSSession's discovery of the {COMMANDS}-command {MODULE} (GET_COMMAND_METADATA), WinRM (HTTP, NTLM, encrypted), median of {runs}");
    // psgate: one session, one discovery not counted, then `runs`.
    let wire = Wire::default();
    let through = rt.block_on(counting_relay(peer.port, wire.clone()))?;
    let (mut psgate, metadata) = rt.block_on(async {
        let mut s = open_through(through).await?;
        let _ = psgate_discover(&wire, &mut s).await?;
        let mut all = Vec::new();
        for _ in 0..runs {
            all.push(psgate_discover(&wire, &mut s).await?);
        }
        // The answers once more, as values, for the proxy-overhead part.
        let id = Uuid::new_v4();
        s.with(move |c| c.command_metadata(id, &["Get-Bench001"], &[MODULE])).await??;
        let mut values = Vec::new();
        loop {
            match next(&mut s).await? {
                ClientEvent::Psrp(Event::Output { pipeline, value }) if pipeline == id => values.push(value),
                ClientEvent::Psrp(Event::PipelineState { pipeline, state, .. }) if pipeline == id && state.is_terminal() => break,
                _ => {}
            }
        }
        psgate_close(s).await?;
        anyhow::Ok((all, values))
    })?;
    // pypsrp through the same relay. Its bytes per discovery: the script with `runs` discoveries less the same
    // script with none (its open, the uncounted first discovery and its close), divided by `runs`.
    let before = wire.now();
    let v = pypsrp(&peer, &["metadata".into(), through.to_string(), runs.to_string(), MODULE.into()])?;
    let mid = wire.now();
    pypsrp(&peer, &["metadata".into(), through.to_string(), "0".into(), MODULE.into()])?;
    let after = wire.now();
    let per = |a: u64, b: u64, c: u64| (b - a).saturating_sub(c - b) as f64 / runs as f64;
    let (sent, received) = (per(before.0, mid.0, after.0), per(before.1, mid.1, after.1));
    let list = |k: &str| -> Vec<f64> { v[k].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect()).unwrap_or_default() };
    let (mut py_seconds, mut py_cpu, py_commands, py_params) = (list("seconds"), list("cpu_seconds"), list("commands"), list("parameters"));
    if py_commands.iter().any(|c| *c as usize != COMMANDS) || psgate.iter().any(|d| d.commands != COMMANDS) {
        bail!("commands found: pypsrp {py_commands:?}, psgate {:?}", psgate.iter().map(|d| d.commands).collect::<Vec<_>>());
    }
    let params = psgate[0].parameters;
    if py_params.iter().any(|p| *p as usize != params) {
        bail!("parameters found: pypsrp {py_params:?}, psgate {params}");
    }
    let mut seconds: Vec<f64> = psgate.iter().map(|d| d.seconds).collect();
    let mut cpu: Vec<f64> = psgate.iter().map(|d| d.cpu).collect();
    let (ours, theirs) = (median(&mut seconds), median(&mut py_seconds));
    let (our_cpu, their_cpu) = (median(&mut cpu), median(&mut py_cpu));
    psgate.sort_by_key(|d| d.bytes.0 + d.bytes.1);
    let bytes = psgate[psgate.len() / 2].bytes;
    println!("  {:<34} {:>10} {:>10} {:>12} {:>12}", "", "wall ms", "CPU ms", "bytes sent", "bytes recv");
    println!("  {:<34} {:>10.1} {:>10.1} {:>12} {:>12}", "psgate (engine, 150 commands read)", ours * 1e3, our_cpu * 1e3, thousands(bytes.0 as f64), thousands(bytes.1 as f64));
    println!("  {:<34} {:>10.1} {:>10.1} {:>12} {:>12}", "pypsrp 0.9.1 get_command_metadata", theirs * 1e3, their_cpu * 1e3, thousands(sent), thousands(received));
    println!("  pypsrp / psgate: {:.1}× the wall time, {:.1}× the CPU ({params} parameters in all, both)", theirs / ours, their_cpu / our_cpu.max(1e-6));

    // A proxy call's overhead, in the language core.
    let info = crate::prompt::info(1, "srv02");
    let mut memory = Memory::default();
    memory.sessions = vec![info.clone()];
    memory.commands = metadata;
    let mut rs = Runspace::new();
    rs.set_variable("s", psgate_lang::session::object(&info));
    let mut console = Count::default();
    rs.run("Import-PSSession -Session $s -Module BenchModule -CommandName Get-Bench001 -Prefix rem", &mut memory, &mut console);
    if console.errors > 0 || rs.modules().is_empty() {
        bail!("the import failed in memory");
    }
    let n = if quick { 2_000 } else { 20_000 };
    let proxy = per_line(&mut rs, &mut memory, "Get-remBench001 -Name x", n)?;
    let plain = per_line(&mut rs, &mut memory, "Invoke-Command -Session $s -ScriptBlock { Get-Bench001 -Name x }", n)?;
    println!("\nA proxy call in the language core (in-memory remoting side, {n} calls each):");
    println!("  Get-remBench001 -Name x                                  {proxy:>7.1} µs per line");
    println!("  Invoke-Command -Session $s -ScriptBlock {{ Get-Bench001 -Name x }} {plain:>7.1} µs per line");
    println!("  the proxy: {:+.1} µs ({:.2}×) beside the plain run", proxy - plain, proxy / plain);
    Ok(())
}
