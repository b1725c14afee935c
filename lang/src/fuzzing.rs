//! The fuzz target's body (`fuzz/fuzz_targets/prompt_line.rs`), here so that `cargo test` replays its corpus
//! (`lang/test_data/fuzz/prompt_line/`, `lang/tests/fuzz_regressions.rs`).

use std::time::Duration;

use psgate_shared::api::{ErrorCode, HostAnswer, OutputBufferingMode, PipelineId, RecordKind, RemoteShell, SessionId, SessionInfo, Target};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::HostMethod;

use crate::{Host, Invocation, RemoteError, RemoteEvent, Remoting, RunId, Runspace};

/// Remoting that has no sessions and refuses everything.
#[derive(Debug, Default)]
pub struct Nowhere;

fn refused() -> RemoteError {
    RemoteError::new(ErrorCode::TargetNotAllowed, "nothing is allowed here")
}

impl Remoting for Nowhere {
    fn sessions(&mut self) -> Vec<SessionInfo> {
        Vec::new()
    }
    fn open(&mut self, targets: Vec<Target>) -> Vec<Result<SessionInfo, RemoteError>> {
        targets.iter().map(|_| Err(refused())).collect()
    }
    fn remove(&mut self, _ids: &[SessionId]) -> Result<(), RemoteError> {
        Ok(())
    }
    fn disconnect(&mut self, ids: &[SessionId], _idle: Option<u32>, _mode: Option<OutputBufferingMode>) -> Vec<Result<SessionInfo, RemoteError>> {
        ids.iter().map(|_| Err(refused())).collect()
    }
    fn connect(&mut self, ids: &[SessionId]) -> Vec<Result<SessionInfo, RemoteError>> {
        ids.iter().map(|_| Err(refused())).collect()
    }
    fn remote_shells(&mut self, _target: &Target) -> Result<Vec<RemoteShell>, RemoteError> {
        Err(refused())
    }
    fn start(&mut self, _invocation: Invocation, _tag: bool) -> Result<RunId, RemoteError> {
        Err(refused())
    }
    fn receive(&mut self, _session: SessionId) -> Result<RunId, RemoteError> {
        Err(refused())
    }
    fn command_metadata(&mut self, _session: SessionId, _names: &[String], _modules: &[String]) -> Result<RunId, RemoteError> {
        Err(refused())
    }
    fn next_event(&mut self, _run: RunId, _wait: Duration) -> Option<RemoteEvent> {
        Some(RemoteEvent::Done)
    }
    fn answer(&mut self, _s: SessionId, _p: PipelineId, _c: i64, _a: HostAnswer) -> Result<(), RemoteError> {
        Ok(())
    }
    fn stop(&mut self, _run: RunId) {}
    fn forget(&mut self, _run: RunId) {}
}

/// A console nobody reads, where nobody answers.
#[derive(Debug, Default)]
pub struct Silent {
    /// How many objects and records were written.
    pub written: usize,
}

impl Host for Silent {
    fn output(&mut self, _value: Value) {
        self.written += 1;
    }
    fn record(&mut self, _kind: RecordKind, _value: Value) {
        self.written += 1;
    }
    fn call(&mut self, _method: HostMethod, _args: Vec<Value>) -> Option<HostAnswer> {
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

/// Any bytes as a typed line: parsing, the remote pipeline it would become, completion at every position and its
/// evaluation (with a bounded amount of work) never panic.
pub fn prompt_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let parsed = crate::parse(&line);
    let _ = crate::jea::pipeline_for(&line);
    let rs = Runspace::new();
    for cursor in (0..=line.len()).step_by(7) {
        let _ = crate::complete(&rs, &[], &line, cursor);
    }
    if parsed.is_ok() {
        let mut rs = Runspace::new();
        rs.set_step_limit(Some(20_000));
        let _ = rs.run(&line, &mut Nowhere, &mut Silent::default());
    }
}
