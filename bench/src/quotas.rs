//! What the relay's quotas cost: New-PSSession and a command through the relay's session manager, with every quota
//! of `[quotas]` set and with none, side by side in one run (alternating, so drift hits both alike), on the same
//! peer (tests/peers/psrp_host.py over the local transport); then the admission check alone against many held
//! sessions, and the session clock's work per event.
//!
//! `cargo run --release -p psgate-bench -- quotas [--quick]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use psgate_relay::config::{AllowRule, Config};
use psgate_relay::quotas::{Clock, Held, Quotas, admit};
use psgate_relay::session::manager::Manager;
use psgate_shared::api::{ServerMessage, SessionId, SessionState, Target, Transport};

const USER: &str = "bench";

fn config(quotas: Quotas) -> Arc<Config> {
    Arc::new(Config {
        local_command: Some(vec![crate::python(), crate::repo().join("tests/peers/psrp_host.py").to_string_lossy().into_owned()]),
        allow: vec![AllowRule { hosts: vec!["localhost".into()], transports: vec![Transport::Local], ..AllowRule::default() }],
        quotas,
        ..Config::default()
    })
}

fn every_quota() -> Quotas {
    Quotas {
        idle_timeout_secs: Some(3600),
        max_shell_run_time_secs: Some(86_400),
        max_shells_per_user: Some(1000),
        max_concurrent_users: Some(100),
        max_connections: Some(1000),
        max_memory_per_shell_mb: Some(150),
        warning_secs: Some(300),
    }
}

fn target() -> anyhow::Result<Target> {
    Ok(serde_json::from_value(serde_json::json!({"computer_name": "localhost", "transport": "local"}))?)
}

/// New-PSSession until Opened: the time, and the session.
async fn open(manager: &Arc<Manager>) -> anyhow::Result<(Duration, SessionId)> {
    let mut changes = manager.changes();
    let t = Instant::now();
    let id = manager.create(USER, target()?).map_err(|e| anyhow::anyhow!("{}", e.message))?.id;
    loop {
        let change = tokio::time::timeout(Duration::from_secs(30), changes.recv()).await.context("the session did not open")??;
        if let ServerMessage::SessionChanged { session } = change.message
            && session.id == id
            && session.state != SessionState::Opening
        {
            if session.state != SessionState::Opened {
                bail!("the session is {:?}: {:?}", session.state, session.reason);
            }
            return Ok((t.elapsed(), id));
        }
    }
}

/// One command to its end: its round trip.
async fn command(manager: &Arc<Manager>, id: SessionId) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let (_, buffer) = manager.run(USER, id, "Write-Output 1".into()).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    loop {
        if buffer.outcome().is_some() {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

/// The session back to Available after a command (the relay asks the remote prompt after each one).
async fn settle(manager: &Arc<Manager>, id: SessionId) {
    for _ in 0..2000 {
        if manager.list(USER, None, None).iter().any(|s| s.id == id && s.availability == psgate_shared::api::Availability::Available) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let (opens, commands) = if quick { (4, 50) } else { (15, 400) };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let plain = Manager::new(config(Quotas::default()));
        let quota = Manager::new(config(every_quota()));
        println!(
            "Relay quotas ({} build): the session manager in this process, [quotas] with every quota set (MaxMemoryPerShellMB 150 included) beside none, alternating; the peer tests/peers/psrp_host.py (local transport); load average {}\n",
            if cfg!(debug_assertions) { "DEBUG" } else { "release" },
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        let (mut open_plain, mut open_quota) = (Vec::new(), Vec::new());
        let mut kept = Vec::new();
        for round in 0..opens {
            // Alternate which goes first.
            let order: [(&Arc<Manager>, bool); 2] = if round % 2 == 0 { [(&plain, false), (&quota, true)] } else { [(&quota, true), (&plain, false)] };
            for (m, q) in order {
                let (t, id) = open(m).await?;
                if q { open_quota.push(t) } else { open_plain.push(t) }
                kept.push((m.clone(), id));
            }
        }
        let (_, a) = open(&plain).await?;
        let (_, b) = open(&quota).await?;
        let (mut run_plain, mut run_quota) = (Vec::new(), Vec::new());
        for i in 0..commands {
            let order: [(&Arc<Manager>, SessionId, bool); 2] = if i % 2 == 0 { [(&plain, a, false), (&quota, b, true)] } else { [(&quota, b, true), (&plain, a, false)] };
            for (m, id, q) in order {
                settle(m, id).await;
                let t = command(m, id).await?;
                if q { run_quota.push(t) } else { run_plain.push(t) }
            }
        }
        let (op, oq, rp, rq) = (median(&mut open_plain), median(&mut open_quota), median(&mut run_plain), median(&mut run_quota));
        println!("| median | no quotas | every quota | ratio |");
        println!("|---|---|---|---|");
        println!("| New-PSSession to Opened ({opens} each, {} sessions held by then) | {} ms | {} ms | {:.2}× |", opens, ms(op), ms(oq), oq.as_secs_f64() / op.as_secs_f64());
        println!("| `Write-Output 1` round trip ({commands} each) | {} ms | {} ms | {:.2}× |", ms(rp), ms(rq), rq.as_secs_f64() / rp.as_secs_f64());
        for (m, id) in kept.iter().chain([(plain.clone(), a), (quota.clone(), b)].iter()) {
            let _ = m.remove(USER, Some(&[*id]));
        }
        anyhow::Ok(())
    })?;

    // The admission check alone: New-PSSession's added work under the manager's lock, against many sessions held.
    println!("\n| admission check (`quotas::admit`), sessions held by 100 users | µs per New-PSSession |");
    println!("|---|---|");
    let users: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    for held in [10usize, 1000, 10_000] {
        let sessions: Vec<Held<'_>> = (0..held).map(|i| Held { owner: &users[i % users.len()], rule: Some(0), state: SessionState::Opened }).collect();
        let rule = Quotas { max_shells_per_user: Some(100_000), max_concurrent_users: Some(1000), ..Quotas::default() };
        let reps = if quick { 200 } else { 2000 } * 1000 / held.max(100);
        let global = every_quota();
        for _ in 0..reps / 10 {
            std::hint::black_box(admit(&global, Some((0, &rule)), "user7", sessions.iter().copied())).ok();
        }
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(admit(&global, Some((0, &rule)), "user7", sessions.iter().copied())).ok();
        }
        println!("| {held} | {:.2} |", t.elapsed().as_secs_f64() * 1e6 / reps as f64);
    }
    // The session clock: what each event of a session adds (its due work and next wake).
    let start = tokio::time::Instant::now();
    let mut clock = Clock::new(&every_quota(), start);
    let reps = if quick { 100_000 } else { 1_000_000 };
    let t = Instant::now();
    for i in 0..reps {
        let now = start + Duration::from_millis(i % 1000);
        std::hint::black_box(clock.due(start, false, now));
        std::hint::black_box(clock.next_wake(start, false));
    }
    println!("\nThe session clock per event (due + next wake): {:.1} ns", t.elapsed().as_secs_f64() * 1e9 / reps as f64);
    Ok(())
}
