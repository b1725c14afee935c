//! Receiving throughput over `ssh -s` (psgate vs psrpcore's client, same sshd, same peer, same run) and
//! the memory of idle sessions.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use psgate_relay::session::outofproc::Session;
use psgate_relay::transport::{local, ssh};
use psgate_shared::psrp::messages::{PipelineSpec, PoolState};
use psgate_shared::psrp::outofproc::{ClientEvent, OutOfProcClient};
use psgate_shared::psrp::pool::{Event, PoolConfig, RunspacePool};

use crate::{python, repo};

struct Sshd {
    child: Child,
    info: serde_json::Value,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd() -> anyhow::Result<Sshd> {
    let mut child = Command::new("python3")
        .arg(repo().join("tests/peers/sshd.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting tests/peers/sshd.py (scripts/setup.sh --test)")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        text.push_str(&line?);
        if let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) {
            return Ok(Sshd { child, info });
        }
    }
    bail!("sshd.py printed no details")
}

impl Sshd {
    fn s(&self, k: &str) -> String {
        self.info[k].as_str().map(str::to_owned).unwrap_or_else(|| self.info[k].to_string())
    }

    /// OpenSSH's client, as both psgate and psrpcore use it here.
    fn ssh_argv(&self) -> Vec<String> {
        let kh = format!("UserKnownHostsFile={}", self.s("known_hosts"));
        let mut v: Vec<String> = ["ssh", "-F", "/dev/null", "-s", "-p"].iter().map(|s| s.to_string()).collect();
        v.push(self.s("port"));
        for o in ["StrictHostKeyChecking=yes", &kh, "GlobalKnownHostsFile=/dev/null", "LogLevel=ERROR", "BatchMode=yes", "IdentitiesOnly=yes"] {
            v.push("-o".into());
            v.push(o.to_owned());
        }
        v.push("-i".into());
        v.push(self.s("key_ed25519"));
        v.push(format!("{}@{}", self.s("user"), self.s("host")));
        v.push("powershell".into());
        v
    }

    fn russh_options(&self) -> ssh::SshOptions {
        let mut o = ssh::SshOptions::new(self.s("host"), self.s("user"), ssh::SshAuth::Key { path: self.s("key_ed25519").into(), passphrase: None });
        o.port = self.info["port"].as_u64().unwrap_or(22) as u16;
        o.known_hosts = self.s("known_hosts").into();
        o
    }
}

pub(crate) async fn open_session<S>(stream: S) -> anyhow::Result<Session>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let session = Session::start(stream, OutOfProcClient::new(RunspacePool::new(PoolConfig::new(uuid::Uuid::new_v4()))));
    session.with(|c| c.open()).await??;
    Ok(session)
}

pub(crate) async fn wait_opened(session: &mut Session) -> anyhow::Result<()> {
    while let Some(e) = session.events.recv().await {
        match e {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => return Ok(()),
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => bail!("broken: {error:?}"),
            _ => {}
        }
    }
    bail!("the session ended while opening")
}

/// A receive measurement: wall-clock and CPU seconds of the receiving process.
struct Measured {
    wall: f64,
    cpu: f64,
}

/// psgate: `Get-Objects -Count n -Size size -Fast`, timed from creating the pipeline to its end.
async fn psgate_receive(argv: &[String], n: usize, size: &str) -> anyhow::Result<Measured> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let local::LocalProcess { child, stream } = local::spawn(&argv)?;
    let mut session = open_session(stream).await?;
    wait_opened(&mut session).await?;
    let id = uuid::Uuid::new_v4();
    let spec = PipelineSpec::script(format!("Get-Objects -Count {n} -Size {size} -Fast"));
    let start = Instant::now();
    let cpu_start = crate::measure::cpu_seconds("self", false);
    session.with(move |c| c.create_pipeline(id, &spec)).await??;
    let mut got = 0usize;
    while let Some(e) = session.events.recv().await {
        match e {
            ClientEvent::Psrp(Event::Output { .. }) => got += 1,
            ClientEvent::Psrp(Event::PipelineState { state, .. }) if state.is_terminal() => break,
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => bail!("broken: {error:?}"),
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = crate::measure::cpu_seconds("self", false) - cpu_start;
    if got != n {
        bail!("psgate received {got} objects, expected {n}");
    }
    session.with(|c| c.close()).await?;
    session.finished().await;
    drop(child);
    Ok(Measured { wall: secs, cpu })
}

fn psrpcore_receive(argv: &[String], n: usize, size: &str) -> anyhow::Result<Measured> {
    let out = Command::new(python())
        .arg(repo().join("bench/psrpcore_client.py"))
        .arg(n.to_string())
        .arg(size)
        .arg("--")
        .args(argv)
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if v["objects"].as_u64() != Some(n as u64) {
        bail!("psrpcore received {}, expected {n}", v["objects"]);
    }
    Ok(Measured { wall: v["seconds"].as_f64().context("seconds")?, cpu: v["cpu_seconds"].as_f64().context("cpu_seconds")? })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// The relay's resident memory per idle open session over SSH (russh), averaged over `n` sessions.
async fn idle_memory(sshd: &Sshd, n: usize) -> anyhow::Result<f64> {
    let opts = sshd.russh_options();
    // Warm up: the first session pulls in code, the runtime's threads and caches.
    let mut warm = open_session(ssh::open_subsystem(&opts).await?).await?;
    wait_opened(&mut warm).await?;
    let before = rss_kib();
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = open_session(ssh::open_subsystem(&opts).await?).await?;
        wait_opened(&mut s).await?;
        sessions.push(s);
    }
    let after = rss_kib();
    for s in &sessions {
        s.with(|c| c.close()).await?;
    }
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// The same, over the local-process transport: psgate's own share (engine, actor, buffers) without SSH.
async fn idle_memory_local(n: usize) -> anyhow::Result<f64> {
    let argv: Vec<OsString> = vec![python().into(), repo().join("tests/peers/psrp_host.py").into()];
    let spawn = || -> anyhow::Result<(tokio::process::Child, Session)> {
        let local::LocalProcess { child, stream } = local::spawn(&argv)?;
        let session = Session::start(stream, OutOfProcClient::new(RunspacePool::new(PoolConfig::new(uuid::Uuid::new_v4()))));
        Ok((child, session))
    };
    let (_warm_child, mut warm) = spawn()?;
    warm.with(|c| c.open()).await??;
    wait_opened(&mut warm).await?;
    let before = rss_kib();
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let (child, mut s) = spawn()?;
        s.with(|c| c.open()).await??;
        wait_opened(&mut s).await?;
        all.push((child, s));
    }
    let after = rss_kib();
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let sshd = start_sshd()?;
    let argv = sshd.ssh_argv();
    let (small, large) = if quick { (100_000, 1_000) } else { (1_000_000, 10_000) };
    println!("PSRP receive benchmark over `ssh -s` to the psrpcore test host's fast mode ({} build)\n", if cfg!(debug_assertions) { "DEBUG" } else { "release" });
    println!("| objects | size | psgate obj/s | psrpcore obj/s | wall ratio | psgate CPU µs/obj | psrpcore CPU µs/obj | CPU ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, size) in [(small, "small"), (large, "large")] {
        let ours = rt.block_on(psgate_receive(&argv, n, size))?;
        eprintln!("psgate: {n} {size} objects in {:.2} s; now psrpcore's client…", ours.wall);
        let theirs = psrpcore_receive(&argv, n, size)?;
        let per = |s: f64| s * 1e6 / n as f64;
        println!(
            "| {n} | {size} | {:.0} | {:.0} | {:.1}× | {:.2} | {:.1} | {:.0}× |",
            n as f64 / ours.wall,
            n as f64 / theirs.wall,
            theirs.wall / ours.wall,
            per(ours.cpu),
            per(theirs.cpu),
            theirs.cpu / ours.cpu.max(0.01),
        );
    }
    println!("\n(wall: from creating the pipeline to its end; CPU: the receiving process only, not ssh or the peer)");
    let per_session = rt.block_on(idle_memory(&sshd, 50))?;
    println!("\nresident memory of an idle open session in this process, averaged over 50:");
    println!("  over SSH (russh):           {per_session:.0} KiB");
    let local = rt.block_on(idle_memory_local(50))?;
    println!("  over a local process:       {local:.0} KiB (psgate's engine, session task and buffers alone)");
    Ok(())
}
