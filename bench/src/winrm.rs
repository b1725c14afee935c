//! WinRM: psgate's engine against pypsrp 0.9.1, the same WS-Management test peer (tests/peers/winrm_host.py in its
//! fast mode), the same run, HTTP with NTLM and MS-WSMV message encryption.
//!
//! - Objects/s: `Get-Objects -Count N` (small objects), timed from creating the pipeline to its final state. psgate:
//!   the library in this process (`session::winrm::connect`, the session task, `Event::Output` with every object
//!   decoded into a `Value`, as the relay gets them); pypsrp: `bench/pypsrp_client.py`, timed inside the script
//!   around `PowerShell.invoke()`, which deserializes every object. Both count (and spot-check) what they got.
//! - The peer's ceiling: a raw client in this process (the same HTTP + NTLM + unsealing as psgate, then it only
//!   counts `<rsp:Stream` elements: no XML parsing, base64 or PSRP) shows how fast the Python peer answers at all.
//!   The peer's CPU per run (its /proc stat) says the same from the other side.
//! - Opening a session: connect, authenticate, create the shell, until the pool is Opened (psgate also reads the
//!   server's MaxEnvelopeSize first, as it always does). Median of several, both clients warm.
//!
//! `--psgate-only` runs psgate's receive alone (`--runs` times), for a profiler: `perf record --call-graph dwarf
//! target/release/psgate-bench winrm --psgate-only`.

use crate::measure::{cpu_seconds, thousands};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use psgate_relay::session::outofproc::Session;
use psgate_relay::session::winrm::{self, WinrmTarget};
use psgate_relay::transport::winrm::{AuthMethod, Endpoint, WinrmClient, WinrmOptions};
use psgate_relay::wsman::envelope::{ClientConfig, GetResponse, Request, Response, ShellRef, SignalCode};
use psgate_relay::wsman::{configuration_uri, parse_response};
use psgate_shared::psrp::messages::{PipelineSpec, PoolState};
use psgate_shared::psrp::outofproc::ClientEvent;
use psgate_shared::psrp::pool::{Event, PoolConfig, RunspacePool};
use uuid::Uuid;

use crate::{python, repo};

pub(crate) const USER: &str = "PSGATE\\ada";
pub(crate) const PASSWORD: &str = "Bench-Secret-1";
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The peer as a child process, killed on drop.
pub(crate) struct Peer {
    child: Child,
    url: String,
    pub(crate) port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub(crate) fn start() -> anyhow::Result<Peer> {
        let mut child = Command::new(python())
            .arg(repo().join("tests/peers/winrm_host.py"))
            .args(["--port", "0", "--auth", "ntlm", "--fast", "--user"])
            .arg(format!("{USER}:{PASSWORD}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting tests/peers/winrm_host.py (set PSGATE_PYTHON: source scripts/env.sh)")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = lines.next().context("winrm_host.py printed nothing")??;
        // Keep reading so that the peer never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = line.split_whitespace().last().unwrap_or_default().to_owned();
        if !line.starts_with("winrm_host listening on ") {
            bail!("unexpected ready line {line:?}");
        }
        let port = url.rsplit(':').next().and_then(|p| p.trim_end_matches("/wsman").parse().ok()).context("port")?;
        Ok(Peer { child, url, port })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn target(peer: &Peer) -> anyhow::Result<WinrmTarget> {
    let options = WinrmOptions::new(Endpoint::parse(&peer.url)?, USER, PASSWORD.to_owned().into(), AuthMethod::Ntlm);
    Ok(WinrmTarget::new(options))
}

pub(crate) async fn next(s: &mut Session) -> anyhow::Result<ClientEvent> {
    tokio::time::timeout(EVENT_TIMEOUT, s.events.recv()).await.context("no event in time")?.context("the session ended")
}

/// connect + authenticate + create the shell + pool Opened: the session, its seconds, and the seconds of
/// `winrm::connect` alone (TCP, NTLM, the Get of the server's configuration).
async fn psgate_open_timed(peer: &Peer) -> anyhow::Result<(Session, f64, f64)> {
    let target = target(peer)?;
    let start = Instant::now();
    let mut s = winrm::connect(target, None, false).await?;
    let connected = start.elapsed().as_secs_f64();
    s.with(|c| c.open()).await??;
    loop {
        match next(&mut s).await? {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => break,
            ClientEvent::Psrp(Event::PoolState { state: state @ (PoolState::Broken | PoolState::Closed), error }) => {
                bail!("the pool is {state:?}: {error:?}")
            }
            _ => {}
        }
    }
    Ok((s, start.elapsed().as_secs_f64(), connected))
}

pub(crate) async fn psgate_open(peer: &Peer) -> anyhow::Result<(Session, f64)> {
    psgate_open_timed(peer).await.map(|(s, secs, _)| (s, secs))
}

pub(crate) async fn psgate_close(mut s: Session) -> anyhow::Result<()> {
    s.with(|c| c.close()).await?;
    while !matches!(next(&mut s).await?, ClientEvent::SessionClosed) {}
    Ok(())
}

/// A receive measurement: wall and CPU seconds of the client, CPU seconds of the peer, objects counted.
#[derive(Clone, Copy, Debug)]
struct Measured {
    wall: f64,
    cpu: f64,
    peer_cpu: f64,
    objects: usize,
}

/// psgate: a new session, `Get-Objects -Count n`, every output received as a decoded `Value`.
async fn psgate_receive(peer: &Peer, n: usize) -> anyhow::Result<Measured> {
    let (mut s, _) = psgate_open(peer).await?;
    let me = std::process::id().to_string();
    let peer_pid = peer.pid().to_string();
    let id = Uuid::new_v4();
    let spec = PipelineSpec::script(format!("Get-Objects -Count {n}"));
    let (start, cpu, peer_cpu) = (Instant::now(), cpu_seconds(&me, false), cpu_seconds(&peer_pid, false));
    s.with(move |c| c.create_pipeline(id, &spec)).await??;
    let (mut got, mut checked) = (0usize, 0usize);
    loop {
        match next(&mut s).await? {
            ClientEvent::Psrp(Event::Output { pipeline, value }) if pipeline == id => {
                got += 1;
                // Decoded, not just counted: the fast mode repeats object 0.
                if value.as_object().and_then(|o| o.property("Name")).and_then(|v| v.as_str()) == Some("object 0") {
                    checked += 1;
                }
            }
            ClientEvent::Psrp(Event::PipelineState { pipeline, state, error }) if pipeline == id && state.is_terminal() => {
                if error.is_some() {
                    bail!("the pipeline ended {state:?}: {error:?}");
                }
                break;
            }
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => bail!("broken: {error:?}"),
            _ => {}
        }
    }
    let m = Measured {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds(&me, false) - cpu,
        peer_cpu: cpu_seconds(&peer_pid, false) - peer_cpu,
        objects: got,
    };
    if got != n || checked != n {
        bail!("psgate received {got} objects ({checked} of them object 0), expected {n}");
    }
    s.with(move |c| c.close_pipeline(id)).await?;
    psgate_close(s).await?;
    Ok(m)
}

pub(crate) fn pypsrp(peer: &Peer, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(python())
        .arg(repo().join("bench/pypsrp_client.py"))
        .args(args)
        .env("PSGATE_BENCH_USER", USER)
        .env("PSGATE_BENCH_PASSWORD", PASSWORD)
        .output()
        .context("running bench/pypsrp_client.py")?;
    if !out.status.success() {
        bail!("pypsrp_client.py failed (port {}): {}", peer.port, String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("pypsrp_client.py printed {:?}", String::from_utf8_lossy(&out.stdout)))
}

fn pypsrp_receive(peer: &Peer, n: usize) -> anyhow::Result<Measured> {
    let peer_pid = peer.pid().to_string();
    let before = cpu_seconds(&peer_pid, false);
    let v = pypsrp(peer, &["receive".into(), peer.port.to_string(), n.to_string()])?;
    // The peer's CPU over the whole script (open and close included; a few ms of it).
    let peer_cpu = cpu_seconds(&peer_pid, false) - before;
    let objects = v["objects"].as_u64().unwrap_or(0) as usize;
    if objects != n || v["checked"].as_u64() != Some(n as u64) || v["had_errors"].as_bool() != Some(false) {
        bail!("pypsrp received {objects} objects ({} of them object 0, errors {}), expected {n}", v["checked"], v["had_errors"]);
    }
    Ok(Measured { wall: v["seconds"].as_f64().context("seconds")?, cpu: v["cpu_seconds"].as_f64().context("cpu_seconds")?, peer_cpu, objects })
}

/// `k` opens in one pypsrp process after one open that is not counted.
fn pypsrp_opens(peer: &Peer, k: usize) -> anyhow::Result<Vec<f64>> {
    let v = pypsrp(peer, &["open".into(), peer.port.to_string(), k.to_string()])?;
    let times: Vec<f64> = v["open_seconds"].as_array().context("open_seconds")?.iter().filter_map(serde_json::Value::as_f64).collect();
    if times.len() != k {
        bail!("pypsrp opened {} sessions, expected {k}", times.len());
    }
    Ok(times)
}

/// One request on `client`, its answer parsed (for the raw client's setup and teardown).
async fn call(client: &mut WinrmClient, config: &ClientConfig, request: Request) -> anyhow::Result<Response> {
    let message_id = Uuid::new_v4();
    let answer = client.send(request.to_xml(config, message_id).as_bytes()).await?;
    let envelope = parse_response(&answer.body)?;
    envelope.answers(request.action, message_id)?;
    Ok(envelope.body)
}

/// How many times `needle` (starting with `<`) occurs in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while let Some(i) = haystack[at..].iter().position(|&b| b == b'<') {
        at += i;
        if haystack[at..].starts_with(needle) {
            n += 1;
        }
        at += 1;
    }
    n
}

/// The peer's ceiling: the same HTTP, NTLM and unsealing as psgate (its `WinrmClient`), then each Receive's answer
/// is only searched for `<rsp:Stream` (one per fragment; a small object is one fragment) and the Done state.
/// The pool is opened and the pipeline created by psgate's pool (no IO in it) outside the clock.
async fn raw_receive(peer: &Peer, n: usize) -> anyhow::Result<Measured> {
    let mut options = WinrmOptions::new(Endpoint::parse(&peer.url)?, USER, PASSWORD.to_owned().into(), AuthMethod::Ntlm);
    options.max_response_bytes = 64 << 20;
    let mut client = WinrmClient::new(options)?;
    let mut config = ClientConfig::new(peer.url.clone(), Uuid::new_v4());
    if let Response::Get(GetResponse::Config(c)) = call(&mut client, &config, Request::get_config()).await? {
        config.max_envelope_size = c.max_envelope_size().unwrap_or(winrm::FALLBACK_MAX_ENVELOPE);
    }
    let resource_uri = configuration_uri("Microsoft.PowerShell");
    let rpid = Uuid::new_v4();
    let mut pool_config = PoolConfig::new(rpid);
    let shell_probe = ShellRef::new(resource_uri.clone(), rpid.hyphenated().to_string().to_uppercase());
    pool_config.max_fragment = config.max_fragment_size(&shell_probe)?;
    pool_config.max_packet = pool_config.max_fragment;
    let mut pool = RunspacePool::new(pool_config);
    pool.open()?;
    let mut creation = Vec::new();
    while let Some(out) = pool.poll_send() {
        creation.extend_from_slice(&out.data);
    }
    let Response::Create(created) = call(&mut client, &config, Request::create_pool(&resource_uri, rpid, &creation, None)).await? else {
        bail!("Create was not answered with a shell")
    };
    let shell = ShellRef::from_created(&resource_uri, &created);
    'opening: loop {
        let Response::Receive(r) = call(&mut client, &config, Request::receive(&shell, None)).await? else { bail!("not a ReceiveResponse") };
        for s in &r.streams {
            pool.receive(&s.data)?;
        }
        while let Some(e) = pool.poll_event() {
            if let Event::PoolState { state: PoolState::Opened, .. } = e {
                break 'opening;
            }
        }
    }
    let pid = Uuid::new_v4();
    pool.create_pipeline(pid, &PipelineSpec::script(format!("Get-Objects -Count {n}")))?;
    let command = pool.poll_send().context("CREATE_PIPELINE")?;
    let me = std::process::id().to_string();
    let peer_pid = peer.pid().to_string();
    let (start, cpu, peer_cpu) = (Instant::now(), cpu_seconds(&me, false), cpu_seconds(&peer_pid, false));
    call(&mut client, &config, Request::command(&shell, pid, &command.data)).await?;
    let receive = Request::receive(&shell, Some(pid));
    let mut streams = 0usize;
    loop {
        let answer = client.send(receive.to_xml(&config, Uuid::new_v4()).as_bytes()).await?;
        if answer.status != 200 {
            bail!("Receive answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
        }
        streams += count(&answer.body, b"<rsp:Stream ");
        // CommandState comes last in the answer.
        let tail = &answer.body[answer.body.len().saturating_sub(1024)..];
        if tail.windows(18).any(|w| w == b"CommandState/Done\"") {
            break;
        }
    }
    let m = Measured {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds(&me, false) - cpu,
        peer_cpu: cpu_seconds(&peer_pid, false) - peer_cpu,
        // Every output is one fragment; PIPELINE_STATE is the last.
        objects: streams.saturating_sub(1),
    };
    if m.objects != n {
        bail!("the raw client counted {} fragments, expected {}", streams, n + 1);
    }
    let _ = call(&mut client, &config, Request::signal(&shell, pid, SignalCode::Terminate)).await;
    let _ = call(&mut client, &config, Request::delete(&shell)).await;
    Ok(m)
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

fn flag(args: &[String], name: &str) -> anyhow::Result<Option<usize>> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(Some(args.get(i + 1).with_context(|| format!("{name} N"))?.replace('_', "").parse().with_context(|| format!("{name} N"))?)),
        None => Ok(None),
    }
}

/// CPU seconds the whole machine has been busy (/proc/stat: everything but idle and iowait).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: f64 = fields.iter().take(8).sum();
    (total - fields.get(3).unwrap_or(&0.0) - fields.get(4).unwrap_or(&0.0)) / 100.0
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let n = flag(args, "--objects")?.unwrap_or(if quick { 20_000 } else { 100_000 });
    let runs = flag(args, "--runs")?.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let open_rounds = flag(args, "--open-rounds")?.unwrap_or(if quick { 2 } else { 4 }).max(1);
    const OPENS_PER_ROUND: usize = 5;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let peer = Peer::start()?;
    if args.iter().any(|a| a == "--psgate-only") {
        // For a profiler: psgate's receive alone, `runs` times.
        for _ in 0..runs {
            let m = rt.block_on(psgate_receive(&peer, n))?;
            println!("psgate: {n} objects in {:.3} s, {:.0} objects/s, {:.2} µs CPU per object", m.wall, n as f64 / m.wall, m.cpu * 1e6 / n as f64);
        }
        return Ok(());
    }
    // What the rest of the machine did meanwhile: busy CPU minus this process, its scripts and the peer.
    let started = Instant::now();
    let (busy_before, own_before, peer_before) = (machine_busy(), cpu_seconds("self", true), cpu_seconds(&peer.pid().to_string(), false));
    println!(
        "WinRM benchmark: psgate vs pypsrp 0.9.1, the WS-Management test peer (tests/peers/winrm_host.py --fast) on \
         http://127.0.0.1, NTLM + message encryption ({} build)\n",
        if cfg!(debug_assertions) { "DEBUG" } else { "release" }
    );

    // Warm-ups, not counted: the first session of each kind pulls in code and caches.
    let (s, _) = rt.block_on(psgate_open(&peer))?;
    rt.block_on(psgate_close(s))?;
    rt.block_on(raw_receive(&peer, 1000))?;

    let (mut ours, mut theirs, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let m = rt.block_on(psgate_receive(&peer, n))?;
        eprintln!("run {}/{runs}: psgate {n} objects in {:.2} s; pypsrp…", run + 1, m.wall);
        ours.push(m);
        let m = pypsrp_receive(&peer, n)?;
        eprintln!("run {}/{runs}: pypsrp {n} objects in {:.2} s; raw client…", run + 1, m.wall);
        theirs.push(m);
        let m = rt.block_on(raw_receive(&peer, n))?;
        eprintln!("run {}/{runs}: raw client {n} objects in {:.2} s", run + 1, m.wall);
        raw.push(m);
    }

    let (mut open_ours, mut open_theirs, mut connect_ours) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..open_rounds {
        for _ in 0..OPENS_PER_ROUND {
            let (s, secs, connected) = rt.block_on(psgate_open_timed(&peer))?;
            open_ours.push(secs);
            connect_ours.push(connected);
            rt.block_on(psgate_close(s))?;
        }
        open_theirs.extend(pypsrp_opens(&peer, OPENS_PER_ROUND)?);
    }

    // The median run by wall time, for each client.
    let pick = |v: &[Measured]| -> Measured {
        let mut sorted = v.to_vec();
        sorted.sort_by(|a, b| a.wall.total_cmp(&b.wall));
        sorted[sorted.len() / 2]
    };
    let (o, t, r) = (pick(&ours), pick(&theirs), pick(&raw));
    let rate = |m: &Measured| m.objects as f64 / m.wall;
    let us = |m: &Measured| m.cpu * 1e6 / m.objects as f64;
    println!("| measurement | psgate | pypsrp 0.9.1 | psgate ÷ pypsrp |");
    println!("|---|---|---|---|");
    println!("| {} objects, wall (median of {runs}) | {:.3} s | {:.2} s | {:.1}× faster |", thousands(n as f64), o.wall, t.wall, t.wall / o.wall);
    println!("| objects/s | {} | {} | **{:.1}×** |", thousands(rate(&o)), thousands(rate(&t)), rate(&o) / rate(&t));
    println!("| client CPU µs per object | {:.2} | {:.1} | {:.0}× less |", us(&o), us(&t), us(&t) / us(&o).max(1e-9));
    let peer_us = |m: &Measured| m.peer_cpu * 1e6 / m.objects as f64;
    println!("| the peer's CPU µs per object (producing, answering Receives) | {:.2} | {:.2} | |", peer_us(&o), peer_us(&t));
    println!(
        "| share of the wall time: client CPU / peer CPU | {:.0}% / {:.0}% | {:.0}% / {:.0}% | |",
        100.0 * o.cpu / o.wall,
        100.0 * o.peer_cpu / o.wall,
        100.0 * t.cpu / t.wall,
        100.0 * t.peer_cpu / t.wall
    );
    let (po, pt) = (median(&mut open_ours), median(&mut open_theirs));
    println!(
        "| open a session, p50 of {} (connect, NTLM, Create, pool Opened) | {:.2} ms | {:.2} ms | {:.1}× faster |",
        open_ours.len(),
        po * 1e3,
        pt * 1e3,
        pt / po
    );
    println!(
        "| psgate's open: winrm::connect alone (TCP, NTLM, Get of the configuration), p50 | {:.2} ms | | |",
        median(&mut connect_ours) * 1e3
    );
    println!(
        "\nThe peer's ceiling: it spends {:.2} µs of CPU per object (one Python process, its GIL) on psgate's run, so no \
         client gets more than about {} objects/s from it. A raw client (psgate's HTTP, NTLM and unsealing; answers only searched for \
         <rsp:Stream, nothing parsed or decoded; one Receive at a time, as psgate and pypsrp) gets {} objects/s \
         (median of {runs}; its CPU {:.2} µs/object, the peer's {:.2}). psgate gets {:.0}% of the raw client's rate.",
        peer_us(&o),
        thousands(1e6 / peer_us(&o)),
        thousands(rate(&r)),
        us(&r),
        peer_us(&r),
        100.0 * rate(&o) / rate(&r)
    );
    println!("all runs (objects/s): psgate {:?}; pypsrp {:?}; raw {:?}", ours.iter().map(|m| rate(m).round()).collect::<Vec<_>>(), theirs.iter().map(|m| rate(m).round()).collect::<Vec<_>>(), raw.iter().map(|m| rate(m).round()).collect::<Vec<_>>());
    println!("open times (ms): psgate {:.1?}; pypsrp {:.1?}", open_ours.iter().map(|s| s * 1e3).collect::<Vec<_>>(), open_theirs.iter().map(|s| s * 1e3).collect::<Vec<_>>());
    let others = (machine_busy() - busy_before) - (cpu_seconds("self", true) - own_before) - (cpu_seconds(&peer.pid().to_string(), false) - peer_before);
    println!(
        "other processes on this machine used {:.1} CPU seconds during the {:.0} s of measurements ({:.0}% of one core)",
        others.max(0.0),
        started.elapsed().as_secs_f64(),
        100.0 * others.max(0.0) / started.elapsed().as_secs_f64()
    );
    println!("\n(wall: creating the pipeline to its end; CPU: the receiving process only; pypsrp's clocks are inside its script, around invoke())");
    Ok(())
}
