//! `psgate-bench audit`: what recording the audit trail costs (issue 20: at most 5% of the relay's objects/s to a
//! WebSocket client). Two `psgate serve` processes side by side in one run, the same in all but `[audit] enabled`,
//! each driven over its WebSocket API with the peer's fast bulk output (`Get-Objects -Fast`), taking turns so that
//! the machine's load falls on both alike; the medians compared. Then `psgate audit verify` and `search --result`
//! over what the recording relay wrote, timed.

use std::time::Instant;

use anyhow::bail;

use crate::relay::{RelayProcess, WsClient, psgate_binary};

pub fn run(quick: bool) -> anyhow::Result<()> {
    let objects = if quick { 20_000 } else { 200_000 };
    let rounds = if quick { 3 } else { 9 };
    let binary = psgate_binary()?;
    let plain = RelayProcess::start_with(&binary, "audit-off", "\n[audit]\nenabled = false\n")?;
    let recording = RelayProcess::start_with(&binary, "audit-on", "")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut off = WsClient::connect(plain.addr).await?;
        let mut on = WsClient::connect(recording.addr).await?;
        let s_off = off.open_sessions(1).await?[0];
        let s_on = on.open_sessions(1).await?[0];
        let bulk = format!("Get-Objects -Count {objects} -Size small -Fast");
        // Warm both (the peer's first run, the relay's allocations).
        off.run(s_off, "Get-Objects -Count 2000 -Size small -Fast").await?;
        on.run(s_on, "Get-Objects -Count 2000 -Size small -Fast").await?;
        let (mut rates_off, mut rates_on) = (Vec::new(), Vec::new());
        // The relay process's own CPU seconds per object (its peer is another process): steadier than the rate on
        // a machine whose load moves.
        let (mut cpu_off, mut cpu_on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first.
            let order: [bool; 2] = if round % 2 == 0 { [false, true] } else { [true, false] };
            for recorded in order {
                let (ws, s, pid) = if recorded { (&mut on, s_on, recording.pid()) } else { (&mut off, s_off, plain.pid()) };
                let before = crate::relay::cpu_of(pid);
                let d = ws.run(s, &bulk).await?;
                let us = (crate::relay::cpu_of(pid) - before) * 1e6 / objects as f64;
                if recorded { cpu_on.push(us) } else { cpu_off.push(us) }
                if d.outputs != objects {
                    bail!("{} of {objects} objects delivered", d.outputs);
                }
                let rate = d.outputs as f64 / d.elapsed.as_secs_f64();
                if recorded { rates_on.push(rate) } else { rates_off.push(rate) }
                eprintln!("  round {round}: audit {} {rate:.0} obj/s", if recorded { "on " } else { "off" });
            }
        }
        let mid = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (off_rate, on_rate) = (mid(&mut rates_off), mid(&mut rates_on));
        let (off_cpu, on_cpu) = (mid(&mut cpu_off), mid(&mut cpu_on));
        println!("Audit benchmark ({} build): {objects} small objects (`Get-Objects -Fast`) to a WebSocket client, median of {rounds}, two relays taking turns", if cfg!(debug_assertions) { "DEBUG" } else { "release" });
        println!();
        println!("| relay | objects/s | vs not recording | relay CPU µs/object | vs not recording |");
        println!("|---|---|---|---|---|");
        println!("| `[audit] enabled = false` | {} | 1.00× | {off_cpu:.2} | 1.00× |", crate::measure::thousands(off_rate));
        println!(
            "| recording (default: first 1 MiB of a pipeline's objects kept, then the count and the last) | {} | {:.3}× ({:+.1}%) | {on_cpu:.2} | {:.3}× ({:+.1}%) |",
            crate::measure::thousands(on_rate),
            on_rate / off_rate,
            (on_rate / off_rate - 1.0) * 100.0,
            on_cpu / off_cpu,
            (on_cpu / off_cpu - 1.0) * 100.0
        );
        // A joiner's backlog: two kept pipelines of 5,000 objects each (a pipeline keeps its last 10,000 events), then
        // a console joined to the session as an observer, timed from its upgrade to its 10,000th object.
        for _ in 0..2 {
            on.run(s_on, "Get-Objects -Count 5000 -Size small -Fast").await?;
        }
        let add = std::process::Command::new(&binary)
            .args(["user", "add", "observer", "--config"])
            .arg(recording.dir.join("psgate.toml"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().map(|mut i| i.write_all(b"observer-password\n")).transpose()?;
                c.wait()
            })?;
        if !add.success() {
            bail!("psgate user add observer failed");
        }
        on.request_until(serde_json::json!({"type": "share_session", "session": s_on, "user": "observer", "role": "observer"}), "session_shares").await?;
        let mut joins = Vec::new();
        for _ in 0..if quick { 3 } else { 10 } {
            joins.push(join_backlog(recording.addr, s_on, 10_000).await?);
        }
        joins.sort();
        println!();
        println!(
            "A joiner's backlog of 10,000 objects (two kept pipelines), from the joined console's upgrade to its 10,000th object, {} joins: p50 {:.0} ms, max {:.0} ms",
            joins.len(),
            joins[joins.len() / 2].as_secs_f64() * 1e3,
            joins[joins.len() - 1].as_secs_f64() * 1e3
        );
        // Reading back what was written.
        let config = recording.dir.join("psgate.toml");
        let time = |args: &[&str]| -> anyhow::Result<(f64, String)> {
            let t = Instant::now();
            let out = std::process::Command::new(&binary).arg("audit").args(args).arg("--config").arg(&config).output()?;
            if !out.status.success() {
                bail!("psgate audit {args:?}: {}", String::from_utf8_lossy(&out.stdout));
            }
            Ok((t.elapsed().as_secs_f64() * 1e3, String::from_utf8_lossy(&out.stdout).into_owned()))
        };
        let (verify_ms, verdict) = time(&["verify"])?;
        let (search_ms, _) = time(&["search", "--result", "Index=42"])?;
        println!();
        println!("`psgate audit verify`: {verify_ms:.0} ms ({}); `psgate audit search --result Index=42`: {search_ms:.0} ms", verdict.trim());
        Ok(())
    })
}

/// Joins `bench`'s session `session` as `observer` and times the backlog: from the WebSocket's upgrade to the
/// `objects`th output object.
async fn join_backlog(addr: std::net::SocketAddr, session: psgate_shared::api::SessionId, objects: usize) -> anyhow::Result<std::time::Duration> {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let cookie = crate::relay::login_as(addr, "observer", "observer-password").await?;
    let mut req = format!("ws://{addr}/api/ws?join={}%2F{}", crate::relay::USER, session.0).into_client_request()?;
    req.headers_mut().insert("cookie", cookie.parse()?);
    req.headers_mut().insert("origin", format!("http://{addr}").parse()?);
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let mut seen = 0;
    while seen < objects {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(60), ws.next()).await?.ok_or_else(|| anyhow::anyhow!("the joined console closed"))??;
        if let tokio_tungstenite::tungstenite::Message::Text(t) = frame
            && serde_json::from_str::<crate::relay::Head>(t.as_str())?.kind == "output"
        {
            seen += 1;
        }
    }
    Ok(start.elapsed())
}
