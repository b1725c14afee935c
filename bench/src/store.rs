//! The store's hot paths on both engines, side by side in one run (alternating, so drift hits both alike): SQLite (a
//! file, as `psgate serve` keeps it) and PostgreSQL (the server `scripts/postgres.sh` starts on loopback, a database of
//! the bench's own). Each operation is what the relay does on a path users wait on:
//! - the login check (`login`: every API request and WebSocket message looks the cookie's login up),
//! - its activity note (`touch_login`),
//! - the admin flag (`is_admin`: each WebSocket opened),
//! - a kept WinRM session written (`put_winrm_session`: at each open, disconnect and reconnect),
//! - the relay's own kept sessions read (`winrm_sessions_of`: at start and at each takeover),
//! - a heartbeat (`heartbeat`: every `[cluster] heartbeat_secs`),
//! - the user's relay (`home`: each WebSocket opened, to know which relay serves the user).
//!
//! `eval "$(bash scripts/postgres.sh)"; cargo run --release -p psgate-bench -- store [--quick]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use psgate_relay::store::{Store, WinrmSessionRow};

const LOGINS: usize = 1000;
const SESSIONS: usize = 200;

/// A fresh database on the test PostgreSQL server: its URL.
async fn postgres_database() -> anyhow::Result<String> {
    let url = std::env::var("PSGATE_TEST_POSTGRES").context("PSGATE_TEST_POSTGRES is not set: eval \"$(bash scripts/postgres.sh)\" first")?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.context("the PostgreSQL server")?;
    tokio::spawn(connection);
    let db = format!("psgate_bench_{}", std::process::id());
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await?;
    client.batch_execute(&format!("CREATE DATABASE {db}")).await?;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Ok(format!("{base}/{db}"))
}

/// The rows every operation finds: logins, users, kept sessions, this relay.
async fn fill(store: &Store) -> anyhow::Result<()> {
    store.set_user("alice", "alice-pw").await?;
    store.set_admin("alice", true).await?;
    for i in 0..LOGINS {
        store.add_login(&format!("{i:064x}"), "alice", 1_000, i64::MAX / 2).await?;
    }
    for i in 0..SESSIONS {
        store.put_winrm_session(&row(i, if i % 2 == 0 { "relay-a" } else { "relay-b" })).await?;
    }
    store.register_relay("relay-a", "http://127.0.0.1:8080", 1_000).await?;
    Ok(())
}

fn row(i: usize, relay: &str) -> WinrmSessionRow {
    WinrmSessionRow {
        key: format!("{i:08X}-0000-0000-0000-000000000000"),
        owner: "alice".into(),
        target: r#"{"computer_name":"srv02","transport":"winrm","port":5985,"authentication":"ntlm"}"#.into(),
        shell: r#"{"endpoint":"http://srv02:5985/wsman","resource_uri":"http://schemas.microsoft.com/powershell/Microsoft.PowerShell","commands":[]}"#.into(),
        sealed_password: Some(vec![7; 60]),
        idle_since: Some(1_700_000_000_000),
        relay: Some(relay.into()),
        resume: true,
        session_id: Some(i as i64 + 1),
    }
}

#[derive(Clone, Copy)]
enum Op {
    Login,
    Touch,
    IsAdmin,
    PutSession,
    OwnSessions,
    Heartbeat,
    Home,
}

impl Op {
    const ALL: [Op; 7] = [Op::Login, Op::Touch, Op::IsAdmin, Op::PutSession, Op::OwnSessions, Op::Heartbeat, Op::Home];

    fn name(self) -> &'static str {
        match self {
            Op::Login => "login check (login)",
            Op::Touch => "activity note (touch_login)",
            Op::IsAdmin => "admin flag (is_admin)",
            Op::PutSession => "keep a WinRM session (put)",
            Op::OwnSessions => "own kept sessions (100 rows)",
            Op::Heartbeat => "heartbeat",
            Op::Home => "user's relay (home)",
        }
    }

    async fn run(self, store: &Store, i: usize) -> anyhow::Result<()> {
        match self {
            Op::Login => {
                store.login(&format!("{:064x}", i % LOGINS)).await?.context("a login")?;
            }
            Op::Touch => store.touch_login(&format!("{:064x}", i % LOGINS), 2_000 + i as i64).await?,
            Op::IsAdmin => anyhow::ensure!(store.is_admin("alice").await?),
            Op::PutSession => store.put_winrm_session(&row(i % (SESSIONS / 2) * 2, "relay-a")).await?,
            Op::OwnSessions => anyhow::ensure!(store.winrm_sessions_of("relay-a").await?.len() == SESSIONS / 2),
            Op::Heartbeat => anyhow::ensure!(store.heartbeat("relay-a", 2_000 + i as i64).await?),
            Op::Home => anyhow::ensure!(store.home("alice", "relay-a", 2_000).await?.0 == "relay-a"),
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let rounds = if quick { 200 } else { 2000 };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("psgate-bench-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let sqlite = Arc::new(Store::open(&dir.join("psgate.db"))?);
        let postgres = Arc::new(Store::open_url(&postgres_database().await?).await?);
        fill(&sqlite).await?;
        fill(&postgres).await?;
        println!(
            "The store's hot paths ({} build), {rounds} of each, alternating engines: SQLite (a file in {}) beside PostgreSQL (scripts/postgres.sh: loopback TCP, a pool of 16, fsync and synchronous_commit off, so its writes skip the disk flush SQLite makes); {LOGINS} logins and {SESSIONS} kept sessions stored; load average {}\n",
            if cfg!(debug_assertions) { "DEBUG" } else { "release" },
            dir.display(),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        println!("{:<32} {:>12} {:>12} {:>14} {:>14} {:>10}", "operation", "SQLite p50", "SQLite p95", "PostgreSQL p50", "PostgreSQL p95", "PG / SQLite (p50)");
        for op in Op::ALL {
            let (mut a, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
            for i in 0..rounds {
                for (store, times) in if i % 2 == 0 { [(&sqlite, &mut a), (&postgres, &mut b)] } else { [(&postgres, &mut b), (&sqlite, &mut a)] } {
                    let t = Instant::now();
                    op.run(store, i).await?;
                    times.push(t.elapsed());
                }
            }
            a.sort();
            b.sort();
            let ratio = percentile(&b, 0.5).as_secs_f64() / percentile(&a, 0.5).as_secs_f64().max(1e-9);
            println!(
                "{:<32} {:>12} {:>12} {:>14} {:>14} {:>9.1}×",
                op.name(),
                micros(percentile(&a, 0.5)),
                micros(percentile(&a, 0.95)),
                micros(percentile(&b, 0.5)),
                micros(percentile(&b, 0.95)),
                ratio
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        anyhow::Ok(())
    })
}
