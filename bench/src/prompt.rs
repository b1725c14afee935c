//! `cargo run --release -p psgate-bench -- prompt [--quick]`: how long a line takes at psgate's prompt, excluding
//! the target.
//!
//! 1. The language core (`psgate_lang`: parse, bind, evaluate, format the objects into CLIXML as the relay sends
//!    them) on the remoting lines admins type, against 200 sessions held in memory (no target is reached:
//!    New-PSSession and Invoke-Command answer at once).
//! 2. The relay's own path for a line (`Manager::run` on session 0: the line's thread, its pipeline buffer, the
//!    CLIXML of each object, the final state), on a manager with no sessions.
//! 3. Beside them, in the same run on the same lines, parsing alone by psgate's parser and by the `poshtree` crate
//!    (the well-kept PowerShell parser psgate compared before writing its own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use psgate_lang::{Host, Invocation, RemoteError, RemoteEvent, Remoting, RunId, Runspace};
use psgate_shared::api::{
    Availability, ErrorCode, HostAnswer, LOCAL_SESSION, OutputBufferingMode, PipelineId, PipelineState, RecordKind, RemoteShell, ServerMessage, SessionId, SessionInfo,
    SessionState, Target, Transport,
};
use psgate_shared::clixml::{self, Value};
use psgate_shared::psrp::host::HostMethod;

/// Sessions held in memory: open at once, runs answer at once (one object per session), GET_COMMAND_METADATA with
/// `commands`.
#[derive(Default)]
pub(crate) struct Memory {
    pub(crate) sessions: Vec<SessionInfo>,
    runs: std::collections::HashMap<u64, std::collections::VecDeque<RemoteEvent>>,
    next: u64,
    /// What GET_COMMAND_METADATA answers.
    pub(crate) commands: Vec<Value>,
}

pub(crate) fn info(id: u64, computer: &str) -> SessionInfo {
    SessionInfo {
        id: SessionId(id),
        name: format!("Runspace{id}"),
        computer_name: computer.to_owned(),
        transport: Transport::Winrm,
        state: SessionState::Opened,
        availability: Availability::Available,
        reason: None,
        prompt: None,
        configuration_name: Some("Microsoft.PowerShell".into()),
        instance_id: Some(format!("00000000-0000-0000-0000-{id:012}")),
        can_disconnect: true,
        idle_left_secs: None,
        run_left_secs: None,
    }
}

impl Remoting for Memory {
    fn sessions(&mut self) -> Vec<SessionInfo> {
        self.sessions.clone()
    }
    fn open(&mut self, targets: Vec<Target>) -> Vec<Result<SessionInfo, RemoteError>> {
        targets
            .iter()
            .map(|t| {
                self.next += 1;
                Ok(info(10_000 + self.next, &t.computer_name))
            })
            .collect()
    }
    fn remove(&mut self, _ids: &[SessionId]) -> Result<(), RemoteError> {
        Ok(())
    }
    fn disconnect(&mut self, ids: &[SessionId], _i: Option<u32>, _m: Option<OutputBufferingMode>) -> Vec<Result<SessionInfo, RemoteError>> {
        ids.iter().map(|_| Err(RemoteError::new(ErrorCode::NotSupported, "no"))).collect()
    }
    fn connect(&mut self, ids: &[SessionId]) -> Vec<Result<SessionInfo, RemoteError>> {
        ids.iter().map(|_| Err(RemoteError::new(ErrorCode::NotSupported, "no"))).collect()
    }
    fn remote_shells(&mut self, _t: &Target) -> Result<Vec<RemoteShell>, RemoteError> {
        Ok(Vec::new())
    }
    fn start(&mut self, invocation: Invocation, _tag: bool) -> Result<RunId, RemoteError> {
        self.next += 1;
        let mut events = std::collections::VecDeque::new();
        for s in &invocation.sessions {
            events.push_back(RemoteEvent::Output { session: *s, value: Value::string("Running") });
            events.push_back(RemoteEvent::Finished { session: *s, computer_name: String::new(), state: PipelineState::Completed, error: None });
        }
        events.push_back(RemoteEvent::Done);
        self.runs.insert(self.next, events);
        Ok(RunId(self.next))
    }
    fn receive(&mut self, _s: SessionId) -> Result<RunId, RemoteError> {
        Err(RemoteError::new(ErrorCode::NotSupported, "no"))
    }
    fn command_metadata(&mut self, session: SessionId, _names: &[String], _modules: &[String]) -> Result<RunId, RemoteError> {
        self.next += 1;
        let mut events: std::collections::VecDeque<RemoteEvent> = self.commands.iter().map(|v| RemoteEvent::Output { session, value: v.clone() }).collect();
        events.push_back(RemoteEvent::Finished { session, computer_name: String::new(), state: PipelineState::Completed, error: None });
        events.push_back(RemoteEvent::Done);
        self.runs.insert(self.next, events);
        Ok(RunId(self.next))
    }
    fn next_event(&mut self, run: RunId, _wait: Duration) -> Option<RemoteEvent> {
        Some(self.runs.get_mut(&run.0).and_then(|q| q.pop_front()).unwrap_or(RemoteEvent::Done))
    }
    fn answer(&mut self, _s: SessionId, _p: PipelineId, _c: i64, _a: HostAnswer) -> Result<(), RemoteError> {
        Ok(())
    }
    fn stop(&mut self, _run: RunId) {}
    fn forget(&mut self, run: RunId) {
        self.runs.remove(&run.0);
    }
}

/// The console: every object and record made into its CLIXML, as the relay sends it.
#[derive(Default)]
struct Clixml {
    bytes: usize,
    objects: usize,
}

impl Host for Clixml {
    fn output(&mut self, value: Value) {
        self.objects += 1;
        self.bytes += clixml::encode_message(&value).map_or(0, |t| t.len());
    }
    fn record(&mut self, _kind: RecordKind, value: Value) {
        self.bytes += clixml::encode_message(&value).map_or(0, |t| t.len());
    }
    fn call(&mut self, _m: HostMethod, _a: Vec<Value>) -> Option<HostAnswer> {
        Some(HostAnswer::Credential { user: "CONTOSO\\ada".into(), password: "pw".into() })
    }
    fn interactive(&self) -> bool {
        true
    }
    fn stopping(&self) -> bool {
        false
    }
    fn clear(&mut self) {}
}

const LINES: &[&str] = &[
    "Get-PSSession",
    "$s = Get-PSSession -ComputerName srv0*",
    "Get-PSSession | where ComputerName -like 'srv1*' | Select-Object Id, Name, State",
    "$session1, $session2 = New-PSSession -ComputerName srv02, dc01 -Credential $cred",
    "Invoke-Command -Session $s -ScriptBlock { Get-Service -Name bits } -ThrottleLimit 64",
    "$session1 | gm",
    "Get-PSSession | ? { $_.State -eq 'Opened' -and $_.Id -gt 100 } | % { $_.Name }",
    "Get-Help New-PSSession -Full",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A line in a Markdown table's cell (its pipes escaped).
fn cell(line: &str) -> String {
    line.replace('|', "\\|")
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Runs `f` `runs` times after a warm-up; the sorted durations.
fn time(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..runs.min(50) {
        f();
    }
    let mut out: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let runs = if quick { 200 } else { 2000 };
    println!("psgate's prompt: a line, excluding the target ({runs} runs each, release build)\n");
    // 1. The language core, on 10 and on 200 sessions in memory.
    println!("| line | objects (10 / 200 sessions) | p50 µs, 10 sessions | p99 µs | p50 µs, 200 sessions | p99 µs |");
    println!("|---|---|---|---|---|---|");
    let mut worlds: Vec<(Memory, Runspace)> = [10u64, 200]
        .iter()
        .map(|&n| {
            let mut memory = Memory { sessions: (1..=n).map(|i| info(i, &format!("srv{i:03}"))).collect(), ..Memory::default() };
            let mut rs = Runspace::new();
            rs.run("$cred = Get-Credential; $session1 = (Get-PSSession)[0]", &mut memory, &mut Clixml::default());
            (memory, rs)
        })
        .collect();
    for line in LINES {
        let mut cells = Vec::new();
        let mut counts = Vec::new();
        for (memory, rs) in &mut worlds {
            let times = time(runs, || {
                let mut h = Clixml::default();
                rs.run(line, memory, &mut h);
                std::hint::black_box(h.bytes);
            });
            let mut count = Clixml::default();
            rs.run(line, memory, &mut count);
            counts.push(count.objects.to_string());
            cells.push(format!("{} | {}", micros(percentile(&times, 0.5)), micros(percentile(&times, 0.99))));
        }
        println!("| `{}` | {} | {} |", cell(line), counts.join(" / "), cells.join(" | "));
    }
    // 2. The relay's path on session 0.
    let rt = tokio::runtime::Runtime::new()?;
    let manager = {
        let _guard = rt.enter();
        psgate_relay::session::manager::Manager::new(Arc::new(psgate_relay::config::Config::default()))
    };
    println!("\n| line, through the relay's prompt (Manager::run on session 0, until its final state) | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for line in ["Get-PSSession", "$x = 1..100 | % { $_ * 2 }; $x.Count", "Get-Command -Noun PSSession", "Get-Help New-PSSession -Full"] {
        let times = time(runs / 2, || {
            let _guard = rt.enter();
            let (_, buffer) = manager.run("bench", LOCAL_SESSION, line.to_owned()).expect("run");
            rt.block_on(async {
                let mut changed = buffer.subscribe();
                while buffer.outcome().is_none() {
                    let _ = changed.changed().await;
                }
            });
        });
        println!("| `{}` | {} | {} |", cell(line), micros(percentile(&times, 0.5)), micros(percentile(&times, 0.99)));
    }
    // 3. Parsing alone, psgate's parser beside poshtree's, on the same lines.
    println!("\n| parse alone | psgate p50 µs | poshtree 0.4.2 p50 µs | psgate ÷ poshtree (time) |");
    println!("|---|---|---|---|");
    let mut total = (0.0, 0.0);
    for line in LINES {
        let ours = percentile(&time(runs, || drop(std::hint::black_box(psgate_lang::parse(line)))), 0.5);
        let theirs = percentile(&time(runs, || drop(std::hint::black_box(poshtree::v2::parse(line)))), 0.5);
        total.0 += ours.as_secs_f64();
        total.1 += theirs.as_secs_f64();
        println!("| `{}` | {} | {} | {:.2} |", cell(line), micros(ours), micros(theirs), ours.as_secs_f64() / theirs.as_secs_f64());
    }
    println!("| all lines | {:.1} | {:.1} | {:.2} |", total.0 * 1e6, total.1 * 1e6, total.0 / total.1);
    let _ = ServerMessage::PromptState { entered: None };
    Ok(())
}
