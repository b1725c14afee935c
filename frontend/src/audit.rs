//! The audit page's logic (`/watch/`, relay admins): the records `GET /api/audit` answers, the query it is asked
//! with, and a session's replay: its recorded pipelines turned back into the messages the console's reducer reads
//! ([`crate::app::State`]), each at its time, so a replay draws through the console's own renderers (tables,
//! errors, progress): objects, not a screen recording.

use psgate_shared::api::{PipelineId, PipelineState, RecordKind, ServerMessage, SessionId};
use serde::Deserialize;

use crate::api::Event;
use crate::app::Action;

/// One record of the audit trail, as `GET /api/audit` answers it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Record {
    /// Its place in the chain.
    pub seq: i64,
    /// The relay that wrote it.
    pub relay: String,
    /// What happened.
    pub event: AuditEvent,
}

/// A record's contents (the relay's `audit::Event`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AuditEvent {
    /// When (ms since the Unix epoch): a pipeline's start.
    pub at: i64,
    /// What: `login`, `session_opened`, `pipeline`, `sharing`, ….
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// The session's owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// The owner's session id.
    #[serde(default)]
    pub session: Option<u64>,
    /// The session's computer.
    #[serde(default)]
    pub computer: Option<String>,
    /// What else the kind says (a pipeline: `pipeline`, `command`, `ended`, `state`, `error`, `objects`, `events`,
    /// `omitted`, `last`).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// `GET /api/audit`'s answer.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Page {
    /// Oldest first.
    pub records: Vec<Record>,
    /// More matched than the limit.
    #[serde(default)]
    pub more: bool,
}

/// What the audit page searches by (each empty field: any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    /// The relay user who acted.
    pub user: String,
    /// The session's computer.
    pub computer: String,
    /// Text in the command.
    pub command: String,
    /// A result's property: `Name=Spooler`.
    pub result: String,
    /// A result's type name: `System.ServiceProcess.ServiceController`.
    pub result_type: String,
    /// From this time (ms since the Unix epoch).
    pub since: Option<i64>,
    /// Until this time.
    pub until: Option<i64>,
}

impl Search {
    /// The query of `GET /api/audit` for this search.
    pub fn query(&self) -> String {
        let mut parts = vec![];
        for (name, value) in [("user", &self.user), ("computer", &self.computer), ("command", &self.command), ("result", &self.result), ("result_type", &self.result_type)] {
            let value = value.trim();
            if !value.is_empty() {
                parts.push(format!("{name}={}", encode(value)));
            }
        }
        for (name, value) in [("since", self.since), ("until", self.until)] {
            if let Some(ms) = value {
                parts.push(format!("{name}={ms}"));
            }
        }
        // A search by command or result finds pipelines; otherwise every kind.
        if !self.command.trim().is_empty() || !self.result.trim().is_empty() || !self.result_type.trim().is_empty() {
            parts.push("kinds=pipeline".into());
        }
        parts.join("&")
    }
}

/// The query of one session's timeline: every record about `owner`'s session `session`.
pub fn session_query(owner: &str, session: u64) -> String {
    format!("owner={}&session={session}", encode(owner))
}

/// A query value, percent-encoded (RFC 3986's unreserved characters kept).
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AuditEvent {
    /// A line saying what the record is about, for the results table.
    pub fn summary(&self) -> String {
        let text = |k: &str| self.data.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        match self.kind.as_str() {
            "pipeline" => {
                let state = text("state");
                let objects = self.data.get("objects").and_then(|v| v.as_u64()).unwrap_or(0);
                format!("{}  ({}, {objects} object{})", text("command"), if state.is_empty() { "running" } else { &state }, if objects == 1 { "" } else { "s" })
            }
            "sharing" | "approval" | "admin" => {
                let mut s = text("action");
                for k in ["user", "role", "command", "reason"] {
                    let v = self.data.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).filter(|v| !v.is_empty() && v != "null");
                    if let Some(v) = v {
                        s.push_str(&format!(" {k}={v}"));
                    }
                }
                s
            }
            _ => {
                let mut s = String::new();
                for k in ["transport", "port", "configuration", "user", "reason", "error"] {
                    if let Some(v) = self.data.get(k).filter(|v| !v.is_null()) {
                        s.push_str(&format!("{k}={} ", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())));
                    }
                }
                s.trim_end().to_owned()
            }
        }
    }
}

/// One step of a replay: `after_ms` from the replay's start, do `action` to the replay's console.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// When, from the replay's start (idle gaps shortened).
    pub after_ms: i64,
    /// What the console's reducer reads then.
    pub action: Action,
}

/// A session's replay: its pipeline records (any order; other kinds are skipped) as the console's actions, each
/// at its recorded time; a gap of more than `max_gap_ms` with nothing happening (between two commands, say) is
/// shortened to it, as asciinema's idle limit does. `session` is the console the actions draw in.
pub fn replay(records: &[Record], session: SessionId, max_gap_ms: i64) -> Vec<Step> {
    let mut timed: Vec<(i64, usize, Action)> = vec![];
    let message = |m: ServerMessage| Action::Socket(Event::Message(m));
    for r in records.iter().filter(|r| r.event.kind == "pipeline") {
        let data = &r.event.data;
        let start = r.event.at;
        // Each pipeline's own id: a replay holds pipelines of several relays and restarts.
        let pipeline = PipelineId(r.seq as u64);
        let command = data.get("command").and_then(|c| c.as_str()).unwrap_or_default().to_owned();
        let mut n = timed.len();
        let mut at = |t: i64, action: Action, timed: &mut Vec<(i64, usize, Action)>| {
            timed.push((start + t.max(0), n, action));
            n += 1;
        };
        at(0, Action::Ran(session, command), &mut timed);
        at(0, message(ServerMessage::PipelineStarted { session, pipeline }), &mut timed);
        let mut seq = 0;
        let events = data.get("events").and_then(|e| e.as_array()).map(Vec::as_slice).unwrap_or_default();
        let last = data.get("last").filter(|l| !l.is_null());
        for e in events.iter().chain(last) {
            let t = e.get("t").and_then(|t| t.as_i64()).unwrap_or(0);
            seq += 1;
            if let Some(clixml) = e.get("output").and_then(|o| o.as_str()) {
                at(t, message(ServerMessage::Output { session, pipeline, seq, clixml: clixml.to_owned() }), &mut timed);
            } else if let (Some(kind), Some(clixml)) = (e.get("record").and_then(|k| RecordKind::deserialize(k).ok()), e.get("clixml").and_then(|c| c.as_str())) {
                at(t, message(ServerMessage::Record { session, pipeline, seq, kind, clixml: clixml.to_owned() }), &mut timed);
            } else if e.get("type").and_then(|k| k.as_str()) == Some("host_call") {
                // Write-Host's lines as the console writes them; a prompt shown until its answer.
                let call_id = e.get("call_id").and_then(|c| c.as_i64()).unwrap_or(-1);
                let method = e.get("method").and_then(|m| m.as_str()).unwrap_or_default().to_owned();
                let args = e.get("args").and_then(|a| a.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default();
                at(t, message(ServerMessage::HostCall { session, pipeline, seq, call_id, method, args }), &mut timed);
            } else if e.get("type").and_then(|k| k.as_str()) == Some("host_answer") {
                at(t, Action::Answered(session), &mut timed);
            }
        }
        let state = data.get("state").and_then(|s| PipelineState::deserialize(s).ok());
        let ended = data.get("ended").and_then(|e| e.as_i64()).map(|e| e - start);
        if let (Some(state), Some(ended)) = (state, ended) {
            let error = data.get("error").and_then(|e| e.as_str()).map(str::to_owned);
            at(ended, message(ServerMessage::PipelineState { session, pipeline, seq: seq + 1, state, error }), &mut timed);
        }
    }
    timed.sort_by_key(|(t, n, _)| (*t, *n));
    let mut steps = Vec::with_capacity(timed.len());
    let (mut clock, mut previous) = (0, None::<i64>);
    for (t, _, action) in timed {
        if let Some(p) = previous {
            clock += (t - p).clamp(0, max_gap_ms);
        }
        previous = Some(t);
        steps.push(Step { after_ms: clock, action });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::State;
    use yew::Reducible;

    const SESSION: SessionId = SessionId(1);

    fn pipeline(seq: i64, at: i64, data: serde_json::Value) -> Record {
        Record { seq, relay: "relay-1".into(), event: AuditEvent { at, kind: "pipeline".into(), actor: "alice".into(), owner: Some("alice".into()), session: Some(1), computer: Some("srv02".into()), data } }
    }

    fn service(name: &str) -> String {
        format!(r#"<Obj RefId="0"><TN RefId="0"><T>System.ServiceProcess.ServiceController</T><T>System.Object</T></TN><ToString>{name}</ToString><Props><S N="Name">{name}</S><S N="Status">Running</S></Props></Obj>"#)
    }

    #[test]
    fn a_recorded_session_replays_its_commands_and_objects_in_the_console_at_their_times_with_idle_gaps_shortened() {
        let records = vec![
            pipeline(7, 1_000_000, serde_json::json!({
                "pipeline": 1, "command": "Get-Service Spooler", "ended": 1_000_400, "state": "completed", "objects": 1,
                "events": [{"t": 120, "output": service("Spooler")}, {"t": 300, "record": "warning", "clixml": "<S>careful</S>"}],
            })),
            // An hour later: the replay waits 2 s, not an hour.
            pipeline(9, 4_600_000, serde_json::json!({
                "pipeline": 2, "command": "Get-Item nope", "ended": 4_600_050, "state": "failed", "error": "<S>not found</S>", "objects": 0, "events": [],
            })),
            Record { seq: 8, relay: "relay-1".into(), event: AuditEvent { at: 2_000_000, kind: "login".into(), actor: "alice".into(), owner: None, session: None, computer: None, data: serde_json::Value::Null } },
        ];
        let steps = replay(&records, SESSION, 2_000);
        let times: Vec<i64> = steps.iter().map(|s| s.after_ms).collect();
        assert_eq!(times, [0, 0, 120, 300, 400, 2_400, 2_400, 2_450]);
        let mut state = std::rc::Rc::new(State::default());
        for s in steps {
            state = state.reduce(s.action);
        }
        let console = &state.consoles[&SESSION];
        assert_eq!(console.entries.iter().map(|e| e.script.as_str()).collect::<Vec<_>>(), ["Get-Service Spooler", "Get-Item nope"]);
        assert_eq!(console.entries[0].state, Some(PipelineState::Completed));
        assert_eq!(console.entries[1].state, Some(PipelineState::Failed));
        assert!(console.running.is_none(), "nothing left running");
        assert_eq!(console.entries[0].items.len(), 2, "the object and the warning, drawn by the console's own log");
    }

    #[test]
    fn host_calls_replay_as_the_console_shows_them_a_prompt_until_its_answer() {
        let records = vec![pipeline(4, 0, serde_json::json!({
            "pipeline": 1, "command": "Read-Host 'Name'", "ended": 900, "state": "completed", "objects": 1,
            "events": [
                {"t": 10, "type": "host_call", "call_id": -1, "method": "WriteLine2", "args": ["<S>hello from Write-Host</S>"]},
                {"t": 20, "type": "host_call", "call_id": 3, "method": "ReadLine", "args": []},
                {"t": 700, "type": "host_answer", "call_id": 3, "answer": {"value": "<S>bob</S>"}},
                {"t": 800, "output": "<S>bob</S>"},
            ],
        }))];
        let steps = replay(&records, SESSION, 2_000);
        let mut state = std::rc::Rc::new(State::default());
        let mut prompted = vec![];
        for s in steps {
            state = state.reduce(s.action);
            prompted.push(state.consoles[&SESSION].prompt.is_some());
        }
        // ran, started, the line, the prompt (shown), the answer (gone), the output, the end.
        assert_eq!(prompted, [false, false, false, true, false, false, false]);
        let entry = &state.consoles[&SESSION].entries[0];
        assert_eq!(entry.items.len(), 2, "Write-Host's line and the output");
    }

    #[test]
    fn a_pipeline_over_the_cap_replays_its_last_object_after_those_kept() {
        let records = vec![pipeline(3, 0, serde_json::json!({
            "pipeline": 1, "command": "1..5", "ended": 90, "state": "completed", "objects": 5, "omitted": 3,
            "events": [{"t": 1, "output": "<I32>1</I32>"}, {"t": 2, "output": "<I32>2</I32>"}],
            "last": {"t": 80, "output": "<I32>5</I32>"},
        }))];
        let outputs: Vec<(i64, String)> = replay(&records, SESSION, 2_000)
            .into_iter()
            .filter_map(|s| match s.action {
                Action::Socket(Event::Message(ServerMessage::Output { clixml, .. })) => Some((s.after_ms, clixml)),
                _ => None,
            })
            .collect();
        assert_eq!(outputs, [(1, "<I32>1</I32>".to_owned()), (2, "<I32>2</I32>".into()), (80, "<I32>5</I32>".into())]);
    }

    #[test]
    fn a_search_asks_for_what_was_typed_encoded_and_pipelines_when_it_names_a_command_or_a_result() {
        assert_eq!(Search::default().query(), "");
        let s = Search { user: "alice".into(), result: "Name=Spooler".into(), computer: " srv02 ".into(), since: Some(1_765_000_000_000), ..Search::default() };
        assert_eq!(s.query(), "user=alice&computer=srv02&result=Name%3DSpooler&since=1765000000000&kinds=pipeline");
        assert_eq!(session_query("a b&c", 3), "owner=a%20b%26c&session=3");
    }

    #[test]
    fn records_read_as_the_relay_writes_them_and_say_what_they_are_about() {
        let page: Page = serde_json::from_str(r#"{"records":[{"seq":1,"relay":"r1","event":{"at":5,"kind":"session_opened","actor":"alice","owner":"alice","session":2,"computer":"srv","data":{"transport":"ssh","port":22}}},
            {"seq":2,"relay":"r1","event":{"at":6,"kind":"pipeline","actor":"bob","data":{"command":"Get-Date","state":"completed","objects":1}}}],"more":false}"#).expect("the relay's answer");
        assert_eq!(page.records[0].event.summary(), "transport=ssh port=22");
        assert_eq!(page.records[1].event.summary(), "Get-Date  (completed, 1 object)");
    }
}
