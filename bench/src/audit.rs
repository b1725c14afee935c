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
    let rounds = if quick { 3 } else { 7 };
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
        for round in 0..rounds {
            // Alternate which goes first.
            let order: [bool; 2] = if round % 2 == 0 { [false, true] } else { [true, false] };
            for recorded in order {
                let (ws, s) = if recorded { (&mut on, s_on) } else { (&mut off, s_off) };
                let d = ws.run(s, &bulk).await?;
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
        println!("Audit benchmark ({} build): {objects} small objects (`Get-Objects -Fast`) to a WebSocket client, median of {rounds}, two relays taking turns", if cfg!(debug_assertions) { "DEBUG" } else { "release" });
        println!();
        println!("| relay | objects/s | vs not recording |");
        println!("|---|---|---|");
        println!("| `[audit] enabled = false` | {} | 1.00× |", crate::measure::thousands(off_rate));
        println!("| recording (default: first 1 MiB of a pipeline's objects kept, then the count and the last) | {} | {:.3}× ({:+.1}%) |", crate::measure::thousands(on_rate), on_rate / off_rate, (on_rate / off_rate - 1.0) * 100.0);
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
