//! `psgate-bench cluster`: the documented deployment (docs/deploy.md) measured as a browser uses it, in one run: three
//! `psgate serve` processes on one PostgreSQL database (`scripts/postgres.sh`) behind nginx running
//! `deploy/nginx.conf`, beside one relay reached directly.
//!
//! 1. Objects per second to a WebSocket client and commands per second (a trivial command, back to back), for the
//!    same session: on the relay holding it (the user's home), reached directly (one relay, no balancer); through
//!    nginx (round robin: whichever relay the connection lands on); and on another relay, which serves it through
//!    the relay channel to the home (the cost of a request served through another relay vs its holder).
//! 2. Failover: a WinRM session (tests/peers/winrm_host.py) streaming output through nginx, the relay holding it killed
//!    with SIGKILL; the time from the kill until the client, reconnecting on the browser's schedule (250 ms doubling),
//!    sees the output again; p50 and p95 over 20 kills (the killed relay is started again after each).
//!
//! `eval "$(bash scripts/postgres.sh)"; cargo run --release -p psgate-bench -- cluster [--quick]`
//! (store latency on SQLite vs PostgreSQL is `psgate-bench store`).

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use psgate_relay::store::Store;
use psgate_shared::api::SessionId;
use psgate_tests::site::{Nginx, RelayProcess};
use serde_json::json;

use crate::relay::{Head, PASSWORD, USER, WsClient, ms, percentile, toml_str};

/// The trivial command.
const TRIVIAL: &str = "Write-Output 1";

/// The browser's reconnect delays (frontend/src/api: 250 ms doubling up to 8 s).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5)).min(8_000))
}

/// Objects/s and commands/s for one way of reaching the session.
struct Path {
    how: &'static str,
    objects_per_s: f64,
    commands_per_s: f64,
    p50: Duration,
}

async fn measure_path(how: &'static str, addr: SocketAddr, session: SessionId, objects: usize, commands: usize) -> anyhow::Result<Path> {
    let mut c = WsClient::connect(addr).await?;
    c.until_available().await?;
    let bulk = format!("Get-Objects -Count {objects} -Size small -Fast");
    let mut rates = Vec::new();
    for _ in 0..3 {
        let d = c.run(session, &bulk).await?;
        if d.outputs != objects {
            bail!("{how}: {} of {objects} objects delivered ({} dropped)", d.outputs, d.dropped);
        }
        rates.push(d.outputs as f64 / d.elapsed.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let mut times = Vec::with_capacity(commands);
    let start = Instant::now();
    for _ in 0..commands {
        times.push(c.run(session, TRIVIAL).await?.elapsed);
    }
    let wall = start.elapsed();
    times.sort();
    Ok(Path { how, objects_per_s: rates[1], commands_per_s: commands as f64 / wall.as_secs_f64(), p50: percentile(&times, 50.0) })
}

/// Reads until the first `pipeline_started` (a new run's, or the one a Connect re-attached) and then that pipeline's
/// first output: the pipeline.
async fn until_output(c: &mut WsClient) -> anyhow::Result<u64> {
    let mut pipeline = None;
    loop {
        let text = c.text().await?;
        let head: Head = serde_json::from_str(&text)?;
        match head.kind {
            "pipeline_started" if pipeline.is_none() => pipeline = head.pipeline,
            "output" if pipeline.is_some() && head.pipeline == pipeline => return Ok(pipeline.unwrap_or_default()),
            _ => {}
        }
    }
}

/// Opens the WebSocket through `addr` on the browser's reconnect schedule until a relay takes it.
async fn reconnect(addr: SocketAddr) -> anyhow::Result<WsClient> {
    for attempt in 0..40 {
        match WsClient::connect(addr).await {
            Ok(c) => return Ok(c),
            Err(_) => tokio::time::sleep(backoff(attempt)).await,
        }
    }
    bail!("no relay took the connection")
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    // Built beside this benchmark, where the harness finds it (or `PSGATE_BIN`).
    crate::relay::psgate_binary()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(measure(quick))
}

async fn measure(quick: bool) -> anyhow::Result<()> {
    let (objects, commands, kills) = if quick { (5_000, 50, 5) } else { (50_000, 300, 20) };
    std::env::var("PSGATE_TEST_POSTGRES").context("PSGATE_TEST_POSTGRES is not set: eval \"$(bash scripts/postgres.sh)\" first")?;
    let database = psgate_tests::relay::postgres_database("bench_cluster").await;
    let store = Arc::new(Store::open_url(&database).await?);
    store.set_user(USER, PASSWORD).await?;
    let peer = winrm_peer::WinrmPeer::start(winrm_peer::PeerOptions::default());
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("seal.key");
    let host = crate::repo().join("tests/peers/psrp_host.py");
    let more = format!(
        "local_command = [{}, {}]\n[[allow]]\nhosts = [\"localhost\"]\ntransports = [\"local\"]\n[[allow]]\nhosts = [\"127.0.0.1\"]\nports = [{}]\ntransports = [\"winrm\"]\n",
        toml_str(&crate::python()),
        toml_str(&host.to_string_lossy()),
        peer.port
    );
    let ids = ["relay-1", "relay-2", "relay-3"];
    let mut relays = Vec::new();
    for id in ids {
        relays.push(RelayProcess::start(dir.path(), id, &database, &key, &more).await);
    }
    let nginx = Nginx::start(&relays.iter().map(|r| r.addr).collect::<Vec<_>>()).await;
    println!(
        "Three relays (`psgate serve`, {} build) on PostgreSQL (scripts/postgres.sh, loopback) behind nginx (deploy/nginx.conf), beside one of them reached directly; load average at start: {}\n",
        if cfg!(debug_assertions) { "DEBUG" } else { "release" },
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );

    // 1. The user's home is relay-1 (their first connection reached it), which holds the session.
    let mut home = WsClient::connect(relays[0].addr).await?;
    let session = *home.open_sessions(1).await?.first().context("a session")?;
    drop(home);
    eprintln!("objects/s ({objects} small objects, median of 3) and commands/s ({commands} × `{TRIVIAL}` back to back), each way…");
    let mut rows = Vec::new();
    for (how, addr) in [("one relay, direct (the session's holder)", relays[0].addr), ("through nginx, three relays", nginx.addr), ("another relay, through the relay channel to the holder", relays[1].addr)] {
        let row = measure_path(how, addr, session, objects, commands).await?;
        eprintln!("  {how}: {:.0} objects/s, {:.0} commands/s", row.objects_per_s, row.commands_per_s);
        rows.push(row);
    }
    let base = (rows[0].objects_per_s, rows[0].commands_per_s);
    println!("| path | objects/s | ÷ direct | commands/s | ÷ direct | command p50 |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2}× | {} | {:.2}× | {} |",
            r.how,
            crate::measure::thousands(r.objects_per_s),
            r.objects_per_s / base.0,
            crate::measure::thousands(r.commands_per_s),
            r.commands_per_s / base.1,
            ms(r.p50)
        );
    }

    // 2. Failover: kill the relay holding a WinRM session that streams output; time until output again.
    eprintln!("failover: {kills} kills…");
    let mut c = reconnect(nginx.addr).await?;
    // (The local session would turn Broken with its relay: removed first.)
    c.request(json!({"type": "remove_sessions", "all": true})).await?;
    let target = json!({"computer_name": "127.0.0.1", "transport": "winrm", "port": peer.port, "user": winrm_peer::USER, "password": winrm_peer::PASSWORD, "authentication": "ntlm"});
    let sessions = c.request(json!({"type": "new_sessions", "targets": [target]})).await?;
    let winrm = sessions.iter().find(|s| s.transport == psgate_shared::api::Transport::Winrm).context("the WinRM session")?.id;
    c.until_available().await?;
    let mut times = Vec::new();
    for k in 0..kills {
        c.send(json!({"type": "run", "session": winrm, "script": "Test-Long -Seconds 20"})).await?;
        until_output(&mut c).await?;
        let shell = store.winrm_sessions().await?.into_iter().find(|r| r.session_id == Some(winrm.0 as i64) && r.owner == USER).context("the kept session")?;
        let holder = shell.relay.context("held")?;
        let victim = relays.iter().position(|r| r.id == holder).context("the holder runs")?;
        relays[victim].kill().await;
        let killed = Instant::now();
        drop(c);
        c = reconnect(nginx.addr).await?;
        let pipeline = until_output(&mut c).await?;
        let took = killed.elapsed();
        times.push(took);
        eprintln!("  kill {}: {holder} killed, output again after {}", k + 1, ms(took));
        // Stopped, and the killed relay started again.
        c.send(json!({"type": "stop", "session": winrm, "pipeline": pipeline})).await?;
        relays[victim] = RelayProcess::start_on(relays[victim].addr.port(), dir.path(), &holder, &database, &key, &more).await;
        c.until_available().await?;
    }
    times.sort();
    println!();
    println!("| failover, SIGKILL → output again at the client (reconnecting as the browser does), {kills} kills | p50 | p95 | max |");
    println!("|---|---|---|---|");
    println!("| WinRM session under `Test-Long`, through nginx | {} | {} | {} |", ms(percentile(&times, 50.0)), ms(percentile(&times, 95.0)), ms(*times.last().unwrap_or(&Duration::ZERO)));
    drop(nginx);
    Ok(())
}
