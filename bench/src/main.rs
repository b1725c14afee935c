//! `cargo run --release -p psgate-bench -- clixml [--quick]`
//! `cargo run --release -p psgate-bench -- psrp [--quick]`
//! `cargo run --release -p psgate-bench -- relay [--quick] [--runs N] [--sessions N] [--objects N]`
//! `cargo run --release -p psgate-bench -- winrm [--quick] [--objects N] [--runs N] [--open-rounds N]`
//! `cargo run --release -p psgate-bench -- prompt [--quick]`
//! `cargo run --release -p psgate-bench -- implicit [--quick]`
//! `eval "$(bash scripts/postgres.sh)"; cargo run --release -p psgate-bench -- store [--quick]`
//!
//! store: the store's hot paths (the login check, the admin flag, kept WinRM sessions, the heartbeat) on SQLite and on
//! PostgreSQL side by side in one run (bench/src/store.rs).
//!
//! implicit: Import-PSSession's discovery of a 150-command module over WinRM, psgate's engine beside pypsrp 0.9.1's
//! get_command_metadata in the same run (time, CPU, the peer's bytes), and a proxy call's overhead over the same
//! command run by Invoke-Command (bench/src/implicit.rs).
//!
//! prompt: a line at psgate's prompt excluding the target: the language core on 200 sessions in memory, the
//! relay's path for a line on session 0, and parsing beside the poshtree crate in the same run (bench/src/prompt.rs).
//!
//! winrm: objects/s and the time to open a session over WS-Management (HTTP, NTLM, message encryption) from the
//! test peer's fast mode (tests/peers/winrm_host.py), psgate's engine and pypsrp 0.9.1 in the same run, and a raw
//! client that shows the peer's own ceiling (bench/src/winrm.rs).
//!
//! relay: `psgate serve` as its own process driven over its WebSocket API, beside the engine used directly
//! (bench/src/relay.rs): a trivial command's latency, Invoke-Command over many sessions vs one, objects/s
//! delivered to a WebSocket client, and the relay's memory per idle session.
//!
//! psrp: objects received from the test host's fast mode (tests/peers) over one `ssh -s` transport, by
//! psgate and by psrpcore's client, in the same run; and the resident memory of idle open sessions.
//!
//! CLIXML decode and encode throughput on three generated documents, side by side in one run with
//! (a) a bare quick-xml tokenisation of the same text (every event read, nothing built: the floor for
//! any XML decoder), (b) psrpcore's deserializer (Python, pinned 0.3.1), and (c) our decoder compiled
//! to WebAssembly and run in Node's V8. Prints a table and the ratios, and the gzip size of the built
//! frontend's `.wasm` when `dist/` exists.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use psgate_shared::clixml::{
    Content, DateTime, DateTimeKind, Document, Item, Limits, ListKind, Object, Property, Str, TimeSpan, Value,
    decode_document_with, encode_document,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("clixml") => clixml(args.iter().any(|a| a == "--quick")),
        Some("psrp") => psrp::run(args.iter().any(|a| a == "--quick")),
        Some("relay") => relay::run(&args[1..]),
        Some("winrm") => winrm::run(&args[1..]),
        Some("prompt") => prompt::run(args.iter().any(|a| a == "--quick")),
        Some("implicit") => implicit::run(args.iter().any(|a| a == "--quick")),
        Some("quotas") => quotas::run(args.iter().any(|a| a == "--quick")),
        Some("store") => store::run(args.iter().any(|a| a == "--quick")),
        Some("cluster") => cluster::run(args.iter().any(|a| a == "--quick")),
        Some("audit") => audit::run(args.iter().any(|a| a == "--quick")),
        _ => bail!(
            "usage: psgate-bench clixml|psrp|relay|winrm|prompt|implicit|quotas|store|cluster|audit [--quick]  (relay also: --runs N --sessions N --objects N; \
             winrm also: --objects N --runs N --open-rounds N)"
        ),
    }
}

struct Dataset {
    name: &'static str,
    path: PathBuf,
    objects: usize,
    bytes: usize,
}

mod audit;
mod cluster;
mod implicit;
mod measure;
mod prompt;
mod psrp;
mod quotas;
mod relay;
mod store;
mod winrm;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn clixml(quick: bool) -> anyhow::Result<()> {
    let dir = repo().join("bench/data");
    std::fs::create_dir_all(&dir)?;
    let scale = if quick { 10 } else { 1 };
    let sets = [
        ("process objects", "processes.xml", processes(100_000 / scale)),
        ("references + nesting", "references.xml", references(20_000 / scale)),
        ("escape-heavy text", "escapes.xml", escapes(50_000 / scale)),
    ];
    let mut datasets = Vec::new();
    for (name, file, doc) in sets {
        let xml = encode_document(&doc)?;
        let path = dir.join(file);
        std::fs::write(&path, &xml)?;
        datasets.push(Dataset { name, path, objects: doc.items.len(), bytes: xml.len() });
    }

    println!("CLIXML benchmark ({} build, best of 5 runs natively)\n", if cfg!(debug_assertions) { "DEBUG" } else { "release" });
    let mut rows = Vec::new();
    for d in &datasets {
        let text = std::fs::read(&d.path)?;
        let limits = Limits { max_bytes: usize::MAX, ..Limits::default() };
        let decode = best_of(5, || {
            let doc = decode_document_with(&text, limits).expect("decodes");
            assert_eq!(doc.items.len(), d.objects);
            doc
        });
        let doc = decode_document_with(&text, limits)?;
        let encode = best_of(5, || {
            let xml = encode_document(&doc).expect("encodes");
            assert_eq!(xml.len(), d.bytes);
            xml
        });
        let tokenise = best_of(5, || {
            // The same work the decoder's reader does: validate UTF-8, skip the `#< CLIXML` line,
            // read every event with end-name checks off (the decoder checks them itself).
            let s = std::str::from_utf8(&text).expect("utf-8");
            let s = s.strip_prefix("#< CLIXML\r\n").unwrap_or(s);
            let mut r = quick_xml::Reader::from_str(s);
            r.config_mut().check_end_names = false;
            let mut events = 0usize;
            loop {
                match r.read_event().expect("well-formed") {
                    quick_xml::events::Event::Eof => break,
                    _ => events += 1,
                }
            }
            assert!(events > d.objects);
        });
        rows.push((decode, encode, tokenise));
    }

    let psrpcore = run_psrpcore(&datasets);
    let wasm = run_wasm(&datasets);

    let mut out = String::new();
    let _ = writeln!(out, "| data | objects | MB | decode obj/s | decode MB/s | encode obj/s | encode MB/s | bare quick-xml MB/s | tokenise ÷ decode | psrpcore obj/s | decode ÷ psrpcore | wasm decode obj/s | wasm ÷ psrpcore |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, d) in datasets.iter().enumerate() {
        let (decode, encode, tokenise) = rows[i];
        let mb = d.bytes as f64 / 1e6;
        let ps = psrpcore.as_ref().ok().and_then(|v| v.get(i).copied());
        let wa = wasm.as_ref().ok().and_then(|v| v.get(i).copied());
        let rate = |secs: f64| d.objects as f64 / secs;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× | {} | {} | {} | {} |",
            d.name,
            d.objects,
            mb,
            rate(decode),
            mb / decode,
            rate(encode),
            mb / encode,
            mb / tokenise,
            decode / tokenise,
            ps.map_or("n/a".into(), |s| format!("{:.0}", rate(s))),
            ps.map_or("n/a".into(), |s| format!("{:.0}×", s / decode)),
            wa.map_or("n/a".into(), |s| format!("{:.0}", rate(s))),
            match (wa, ps) {
                (Some(w), Some(p)) => format!("{:.0}×", p / w),
                _ => "n/a".into(),
            },
        );
    }
    print!("{out}");
    if let Err(e) = &psrpcore {
        println!("\npsrpcore: not measured: {e:#}");
    }
    if let Err(e) = &wasm {
        println!("\nwasm: not measured: {e:#}");
    }
    match frontend_wasm_size() {
        Ok((path, raw, gz)) => println!("\nfrontend wasm {}: {} KiB raw, {} KiB gzip", path.display(), raw / 1024, gz / 1024),
        Err(e) => println!("\nfrontend wasm: not measured: {e:#}"),
    }
    Ok(())
}

/// The best time of `n` runs of `f`; what `f` returns is dropped after its clock stops (freeing a
/// decoded document is not decoding).
fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let out = f();
            let elapsed = t.elapsed().as_secs_f64();
            drop(out);
            elapsed
        })
        .fold(f64::INFINITY, f64::min)
}

/// The Python with psrpcore: `PSGATE_PYTHON` (scripts/env.sh), else the venv scripts/setup.sh makes.
pub(crate) fn python() -> String {
    std::env::var("PSGATE_PYTHON").unwrap_or_else(|_| {
        let tools = std::env::var("PSGATE_TOOLS").unwrap_or_else(|_| "/opt/psgate-tools".into());
        format!("{tools}/venv/bin/python")
    })
}

/// psrpcore's seconds per file (one run each: it takes about a minute for the process objects).
fn run_psrpcore(datasets: &[Dataset]) -> anyhow::Result<Vec<f64>> {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("bench/psrpcore_decode.py"));
    for d in datasets {
        cmd.arg(&d.path);
    }
    eprintln!("running psrpcore's deserializer on the same files (about a minute)…");
    seconds_per_file(cmd, datasets).context("psrpcore (set PSGATE_PYTHON to a Python with psrpcore 0.3.1; scripts/setup.sh --test)")
}

/// The decoder as WebAssembly in Node: built with the wasm32 target and wasm-bindgen (scripts/setup.sh).
fn run_wasm(datasets: &[Dataset]) -> anyhow::Result<Vec<f64>> {
    let root = repo();
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "-p", "psgate-bench-wasm"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building the wasm benchmark failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let wasm = target.join("wasm32-unknown-unknown/release/psgate_bench_wasm.wasm");
    let pkg = target.join("bench-wasm-pkg");
    let status = Command::new("wasm-bindgen").args(["--target", "nodejs", "--out-dir"]).arg(&pkg).arg(&wasm).status()?;
    if !status.success() {
        bail!("wasm-bindgen failed");
    }
    let mut cmd = Command::new("node");
    cmd.arg(root.join("bench/wasm/run.mjs")).arg(&pkg);
    for d in datasets {
        cmd.arg(&d.path);
    }
    seconds_per_file(cmd, datasets)
}

fn seconds_per_file(mut cmd: Command, datasets: &[Dataset]) -> anyhow::Result<Vec<f64>> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut secs = Vec::new();
    for (line, d) in String::from_utf8_lossy(&out.stdout).lines().zip(datasets) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let objects = v["objects"].as_u64().unwrap_or(0) as usize;
        if objects != d.objects {
            bail!("{} decoded {objects} objects, expected {}", d.path.display(), d.objects);
        }
        secs.push(v["seconds"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(secs)
}

fn frontend_wasm_size() -> anyhow::Result<(PathBuf, usize, usize)> {
    use std::io::Write as _;
    let dist = repo().join("dist");
    let wasm = std::fs::read_dir(&dist)
        .with_context(|| format!("{} (run scripts/build-frontend.sh)", dist.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))
        .context("no .wasm in dist")?;
    let bytes = std::fs::read(&wasm)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes)?;
    Ok((wasm, bytes.len(), gz.finish()?.len()))
}

/// A small deterministic generator (xorshift), so every run measures the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn tn(names: &[&str]) -> Option<Arc<[Str]>> {
    Some(names.iter().map(|n| Str::from(*n)).collect::<Vec<_>>().into())
}

fn prop(name: &str, value: Value) -> Property {
    Property::new(name, value)
}

/// What `Invoke-Command { Get-Process }` returns: deserialized processes with a nested module object.
fn processes(n: usize) -> Document {
    let mut rng = Rng(0x5eed);
    let process_tn = tn(&[
        "Deserialized.System.Diagnostics.Process",
        "Deserialized.System.ComponentModel.Component",
        "Deserialized.System.MarshalByRefObject",
        "Deserialized.System.Object",
    ]);
    let module_tn = tn(&["Deserialized.System.Diagnostics.ProcessModule", "Deserialized.System.ComponentModel.Component", "Deserialized.System.Object"]);
    let names = ["svchost", "explorer", "lsass", "winlogon", "powershell", "wsmprovhost", "RuntimeBroker", "sqlservr", "w3wp", "dwm"];
    let companies = ["Microsoft Corporation", "Contoso Ltd.", "Fabrikam, Inc."];
    let runspace = uuid::Uuid::from_u128(0x792e_5b37_4505_47ef_b7d2_8711_bb7a_ffa8);
    let items = (0..n)
        .map(|i| {
            let name = rng.pick(&names);
            let id = 4 + rng.below(60_000) as i32;
            let ws = rng.below(1 << 31) as i64;
            let module = Object {
                type_names: module_tn.clone(),
                to_string: Some(format!("System.Diagnostics.ProcessModule ({name}.exe)").into()),
                adapted: vec![
                    prop("ModuleName", Value::string(format!("{name}.exe"))),
                    prop("FileName", Value::string(format!("C:\\Windows\\System32\\{name}.exe"))),
                    prop("BaseAddress", Value::I64(0x7ff6_0000_0000 + rng.below(1 << 30) as i64)),
                    prop("ModuleMemorySize", Value::I32(rng.below(1 << 24) as i32)),
                ],
                ..Object::default()
            };
            let obj = Object {
                type_names: process_tn.clone(),
                to_string: Some(format!("System.Diagnostics.Process ({name})").into()),
                content: Content::None,
                adapted: vec![
                    prop("Name", Value::string(name)),
                    prop("Id", Value::I32(id)),
                    prop("Handles", Value::I32(rng.below(5000) as i32)),
                    prop("HandleCount", Value::I32(rng.below(5000) as i32)),
                    prop("WorkingSet64", Value::I64(ws)),
                    prop("PagedMemorySize64", Value::I64(rng.below(1 << 30) as i64)),
                    prop("PrivateMemorySize64", Value::I64(rng.below(1 << 30) as i64)),
                    prop("VirtualMemorySize64", Value::I64(rng.below(1 << 40) as i64)),
                    prop("CPU", Value::Double(rng.below(100_000) as f64 / 64.0)),
                    prop("TotalProcessorTime", Value::TimeSpan(TimeSpan(rng.below(1 << 40) as i64))),
                    prop("StartTime", Value::DateTime(DateTime {
                        year: 2026, month: 11, day: 1 + rng.below(24) as u8, hour: rng.below(24) as u8,
                        minute: rng.below(60) as u8, second: rng.below(60) as u8, ticks: rng.below(10_000_000) as u32,
                        kind: DateTimeKind::Local(60),
                    })),
                    prop("HasExited", Value::Bool(false)),
                    prop("ExitCode", Value::Nil),
                    prop("SessionId", Value::I32(rng.below(3) as i32)),
                    prop("BasePriority", Value::I32(8)),
                    prop("Path", Value::string(format!("C:\\Windows\\System32\\{name}.exe"))),
                    prop("Company", Value::string(rng.pick(&companies))),
                    prop("ProductVersion", Value::string("10.0.26100.1")),
                    prop("Description", Value::string(format!("{name} host process #{i}"))),
                    prop("MainWindowTitle", Value::string("")),
                    prop("MainModule", Value::object(module)),
                    prop("Threads", Value::string("System.Diagnostics.ProcessThreadCollection")),
                ],
                extended: vec![
                    prop("PSComputerName", Value::string(format!("srv{:02}", i % 20))),
                    prop("RunspaceId", Value::Guid(runspace)),
                    prop("PSShowComputerName", Value::Bool(true)),
                ],
                ..Object::default()
            };
            Item { stream: None, value: Value::object(obj) }
        })
        .collect();
    Document { clixml_header: false, items }
}

/// Objects that share children through `<Ref>` and type names through `<TNRef>`, and chains of
/// nested objects 40 levels deep.
fn references(n: usize) -> Document {
    let mut rng = Rng(0xfeed);
    let shared: Vec<Value> = (0..16)
        .map(|i| Value::object(Object { type_names: tn(&["Contoso.Shared", "System.Object"]), extended: vec![prop("Index", Value::I32(i))], ..Object::default() }))
        .collect();
    let items = (0..n)
        .map(|i| {
            let value = if i % 10 == 0 {
                let mut v = Value::I32(i as i32);
                for depth in 0..40 {
                    v = Value::object(Object {
                        type_names: tn(&["Contoso.Node", "System.Object"]),
                        extended: vec![prop("Depth", Value::I32(depth)), prop("Child", v)],
                        ..Object::default()
                    });
                }
                v
            } else {
                let refs = (0..8).map(|_| shared[rng.below(16) as usize].clone()).collect();
                Value::object(Object {
                    type_names: tn(&["Contoso.Holder", "System.Object"]),
                    content: Content::List(ListKind::List, refs),
                    ..Object::default()
                })
            };
            Item { stream: None, value }
        })
        .collect();
    Document { clixml_header: false, items }
}

/// Strings full of what CLIXML escapes: control characters, `_x` look-alikes, non-BMP characters and
/// XML specials.
fn escapes(n: usize) -> Document {
    let mut rng = Rng(0xbeef);
    let pieces = ["line\r\n", "tab\t", "_x0041_", "_X", "😀", "𝄞", "<tag>", "&amp;", "\"q\"", "\u{1}\u{1f}", "\u{85}", "plain ", "é", "漢字"];
    let items = (0..n)
        .map(|_| {
            let mut s = String::new();
            for _ in 0..12 {
                s.push_str(rng.pick(&pieces));
            }
            Item { stream: Some("Output".into()), value: Value::string(s) }
        })
        .collect();
    Document { clixml_header: true, items }
}
