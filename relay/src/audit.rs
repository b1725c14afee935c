//! The audit trail (issue 20): one record per event that matters (logins, sessions opened and closed, each pipeline
//! with its command, who ran it, its outcome and its objects, host prompts and their answers, quota refusals, admin
//! actions), written to the store by every relay into **one chain**.
//!
//! # The chain
//! Each record has a sequence number (1, 2, …, no gaps) and a MAC: HMAC-SHA256, under a key derived from the
//! relays' sealing key, of its number, the relay that wrote it, the MAC of the record before and its contents (the
//! JSON of its [`Event`], exactly as stored). A relay appends under a lock on the chain's end (PostgreSQL: an
//! advisory transaction lock; SQLite: an immediate transaction), so the relays of a deployment write one total
//! order, checked as one. `psgate audit verify` walks it and names each record removed (a gap in the numbers, or a
//! record whose predecessor's MAC is not the one it carries), altered (its MAC does not match), or whose searchable
//! columns disagree with its contents. Whoever edits the database without the key cannot make a consistent chain;
//! records removed from the end are not detected by the chain alone (compare the count with an export).
//!
//! Retention removes the oldest records and appends a `retention` record naming the last removed (its number and
//! MAC): the first record left must follow exactly that one.
//!
//! # What is never written
//! The answers to host prompts are recorded with every SecureString and credential password replaced by
//! `<redacted>`, and the CLIXML of objects and records has its `<SS>` (SecureString) contents removed.

use std::collections::BTreeMap;

use psgate_shared::api::{HostAnswer, PipelineState, ServerMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::seal::AuditKey;
use crate::store::Store;

pub mod export;

/// The MAC the first record follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A user logged in (`data.remote`: where from, when known).
    Login,
    /// A login was refused (the name tried).
    LoginRefused,
    /// A user logged out.
    Logout,
    /// A session opened (`data`: transport, port, configuration name, user name on the target; never a password).
    SessionOpened,
    /// A session failed to open (`data.error`).
    SessionFailed,
    /// A session was removed (by its owner, or an admin: the actor).
    SessionClosed,
    /// A pipeline, once it ended: its command, times, state, error and objects (see [`Tap`]).
    Pipeline,
    /// A quota refused something (`data.quota`, `data.message`).
    QuotaRefused,
    /// An admin's action (`data.action`, `data.detail`).
    Admin,
    /// A moderated session's pipeline: approval requested, approved or denied (`data.action`, `data.pipeline`,
    /// `data.command`, `data.reason`).
    Approval,
    /// Sharing: a session shared, a share revoked, a joiner come or gone (`data.action`: share, revoke, join,
    /// leave; `data.user`, `data.role`).
    Sharing,
    /// Records before this one were removed by retention (`data.through_seq`, `data.through_mac`).
    Retention,
}

impl Kind {
    /// Its name in the store and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::LoginRefused => "login_refused",
            Kind::Logout => "logout",
            Kind::SessionOpened => "session_opened",
            Kind::SessionFailed => "session_failed",
            Kind::SessionClosed => "session_closed",
            Kind::Pipeline => "pipeline",
            Kind::QuotaRefused => "quota_refused",
            Kind::Admin => "admin",
            Kind::Sharing => "sharing",
            Kind::Approval => "approval",
            Kind::Retention => "retention",
        }
    }
}

/// One record's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (milliseconds since the Unix epoch): a pipeline's start.
    pub at: i64,
    /// What.
    pub kind: Kind,
    /// Who did it (a relay user; `psgate` for the relay's own actions).
    pub actor: String,
    /// The owner of the session concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The session (the owner's id; 0: psgate's own prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The session's computer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer: Option<String>,
    /// What else the kind says.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Event {
    /// An event of `kind` by `actor`, now.
    pub fn new(kind: Kind, actor: &str) -> Event {
        Event { at: crate::unix_ms(), kind, actor: actor.to_owned(), owner: None, session: None, computer: None, data: serde_json::Value::Null }
    }

    /// About `owner`'s session `session` on `computer`.
    pub fn on(mut self, owner: &str, session: u64, computer: &str) -> Event {
        self.owner = Some(owner.to_owned());
        self.session = Some(session);
        self.computer = Some(computer.to_owned());
        self
    }

    /// A pipeline of `owner`'s session on `computer`, run by `actor`: its id and command text (its record is
    /// completed by a [`Tap`] when it ends).
    pub fn pipeline(actor: &str, owner: &str, session: u64, computer: &str, pipeline: u64, command: &str) -> Event {
        Event::new(Kind::Pipeline, actor).on(owner, session, computer).with(serde_json::json!({"pipeline": pipeline, "command": command}))
    }

    /// With `data`.
    pub fn with(mut self, data: serde_json::Value) -> Event {
        self.data = data;
        self
    }
}

/// A record as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its place in the chain, from 1.
    pub seq: i64,
    /// The relay that wrote it.
    pub relay: String,
    /// The searchable columns (copies of the body's fields; `verify` checks they agree).
    pub at: i64,
    /// `kind`'s name.
    pub kind: String,
    /// `actor`.
    pub actor: String,
    /// `owner`.
    pub owner: Option<String>,
    /// `session`.
    pub session: Option<i64>,
    /// `computer`.
    pub computer: Option<String>,
    /// The [`Event`]'s JSON, as hashed.
    pub body: String,
    /// The MAC of the record before ([`GENESIS`] for the first).
    pub prev: String,
    /// This record's MAC.
    pub mac: String,
}

impl Record {
    /// The record's [`Event`] (none: the body does not read).
    pub fn event(&self) -> Option<Event> {
        serde_json::from_str(&self.body).ok()
    }
}

/// What a record's MAC covers.
pub fn chain_input(seq: i64, relay: &str, prev: &str, body: &str) -> String {
    format!("psgate audit v1\n{seq}\n{relay}\n{prev}\n{body}")
}

/// What [`verify`] found wrong, in chain order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Records `first..=last` are missing (not removed by retention).
    Missing { first: i64, last: i64 },
    /// Record `seq` does not follow the record before it (removed and replaced, or moved).
    Broken { seq: i64 },
    /// Record `seq` was altered (its MAC does not match its contents).
    Altered { seq: i64 },
    /// Record `seq`'s searchable columns disagree with its contents.
    Columns { seq: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing { first, last } if first == last => write!(f, "record {first} is missing"),
            Problem::Missing { first, last } => write!(f, "records {first} to {last} are missing"),
            Problem::Broken { seq } => write!(f, "record {seq} does not follow the record before it: a record was removed and the rest renumbered, or replaced"),
            Problem::Altered { seq } => write!(f, "record {seq} was altered: its MAC does not match its contents"),
            Problem::Columns { seq } => write!(f, "record {seq}'s searchable columns were edited: they disagree with its contents"),
        }
    }
}

/// Walks records in chain order (as [`Store::audit_page`] gives them, page after page) and keeps what is wrong.
#[derive(Debug, Default)]
pub struct Verifier {
    /// The last record seen: its number and MAC.
    last: Option<(i64, String)>,
    /// Records checked.
    pub records: u64,
    /// What was found.
    pub problems: Vec<Problem>,
    /// Retention records seen: the last record each removed (number, MAC).
    retained: BTreeMap<i64, String>,
    /// The first record, checked once every retention record is known.
    first: Option<(i64, String)>,
}

impl Verifier {
    /// Checks the next record.
    pub fn check(&mut self, key: &AuditKey, r: &Record) {
        self.records += 1;
        // In chain order: what is missing before this record, then what is wrong with it.
        match &self.last {
            None => self.first = Some((r.seq, r.prev.clone())),
            Some((seq, mac)) => {
                if r.seq != seq + 1 {
                    self.problems.push(Problem::Missing { first: seq + 1, last: r.seq - 1 });
                } else if r.prev != *mac {
                    self.problems.push(Problem::Broken { seq: r.seq });
                }
            }
        }
        if key.mac(chain_input(r.seq, &r.relay, &r.prev, &r.body).as_bytes()) != r.mac {
            self.problems.push(Problem::Altered { seq: r.seq });
        }
        match r.event() {
            Some(e) if e.at == r.at && e.kind.name() == r.kind && e.actor == r.actor && e.owner == r.owner && e.session.map(|s| s as i64) == r.session && e.computer == r.computer => {
                if e.kind == Kind::Retention
                    && let (Some(seq), Some(mac)) = (e.data.get("through_seq").and_then(serde_json::Value::as_i64), e.data.get("through_mac").and_then(serde_json::Value::as_str))
                {
                    self.retained.insert(seq, mac.to_owned());
                }
            }
            _ => self.problems.push(Problem::Columns { seq: r.seq }),
        }
        self.last = Some((r.seq, r.mac.clone()));
    }

    /// The problems, once every record was checked: the first record follows the genesis or a retention's last.
    pub fn finish(mut self) -> (u64, Vec<Problem>) {
        if let Some((seq, prev)) = self.first.take() {
            let anchored = if seq == 1 { prev == GENESIS } else { self.retained.get(&(seq - 1)) == Some(&prev) };
            if !anchored {
                let problem = if seq == 1 { Problem::Broken { seq } } else { Problem::Missing { first: 1, last: seq - 1 } };
                self.problems.insert(0, problem);
            }
        }
        (self.records, self.problems)
    }
}

/// The `<SS>` (SecureString) contents of CLIXML removed.
pub fn redact_clixml(clixml: &str) -> String {
    if !clixml.contains("<SS") {
        return clixml.to_owned();
    }
    let mut out = String::with_capacity(clixml.len());
    let mut rest = clixml;
    while let Some(start) = rest.find("<SS") {
        let Some(open_end) = rest[start..].find('>').map(|i| start + i + 1) else { break };
        out.push_str(&rest[..open_end]);
        if rest[..open_end].ends_with("/>") {
            rest = &rest[open_end..];
            continue;
        }
        match rest[open_end..].find("</SS>") {
            Some(close) => rest = &rest[open_end + close..],
            None => {
                rest = "";
                out.push_str("</SS>");
            }
        }
    }
    out.push_str(rest);
    out
}

/// A host answer as recorded: secrets replaced by [`REDACTED`].
pub fn redact_answer(answer: &HostAnswer) -> serde_json::Value {
    use serde_json::json;
    match answer {
        HostAnswer::Value { clixml } => json!({"value": redact_clixml(clixml)}),
        HostAnswer::Error { message } => json!({"error": message}),
        HostAnswer::Secure { .. } => json!({"secure": REDACTED}),
        HostAnswer::Credential { user, .. } => json!({"credential": {"user": user, "password": REDACTED}}),
        HostAnswer::Fields { fields } => {
            json!({"fields": fields.iter().map(|f| json!({"name": f.name, "text": if f.secure { REDACTED } else { f.text.as_str() }})).collect::<Vec<_>>()})
        }
    }
}

/// A pipeline's Command objects as recorded: each command (or script) with its parameters, values as CLIXML.
pub fn commands_json(spec: &psgate_shared::psrp::messages::PipelineSpec) -> serde_json::Value {
    use serde_json::json;
    spec.commands
        .iter()
        .map(|c| {
            let parameters: Vec<serde_json::Value> = c
                .parameters
                .iter()
                .map(|(name, value)| json!({"name": name, "value": psgate_shared::clixml::encode_message(value).map(|x| redact_clixml(&x)).unwrap_or_default()}))
                .collect();
            json!({"command": c.text, "script": c.is_script, "parameters": parameters})
        })
        .collect()
}

/// A pipeline being recorded: its events as the browser gets them (objects and records as CLIXML, progress, host
/// prompts and answers), with their time since the start, up to a size; beyond it only the count and the last.
#[derive(Debug)]
pub struct Tap {
    event: Event,
    started: i64,
    cap: usize,
    bytes: usize,
    events: Vec<serde_json::Value>,
    objects: u64,
    omitted: u64,
    last: Option<Last>,
    audit: Audit,
}

/// The last event over the cap: an output kept as it came (most are; made into JSON only at the end), or another.
#[derive(Debug)]
enum Last {
    Output(i64, String),
    Other(serde_json::Value),
}

impl Tap {
    /// Recording a pipeline of `event` (kind pipeline, with `data.command` and what else it says), into `audit`.
    pub fn new(audit: &Audit, event: Event) -> Tap {
        Tap { started: event.at, event, cap: audit.cap, bytes: 0, events: Vec::new(), objects: 0, omitted: 0, last: None, audit: audit.clone() }
    }

    fn keep(&mut self, size: usize, entry: serde_json::Value) {
        if self.bytes + size <= self.cap {
            self.bytes += size;
            self.events.push(entry);
        } else {
            self.omitted += 1;
            self.last = Some(Last::Other(entry));
        }
    }

    fn now(&self) -> i64 {
        (crate::unix_ms() - self.started).max(0)
    }

    /// An event of the pipeline (`recent`: the events before it that its buffer still holds); true when it was its
    /// last (the record is then written).
    pub fn observe(&mut self, message: &ServerMessage, recent: &std::collections::VecDeque<ServerMessage>) -> bool {
        use serde_json::json;
        if let ServerMessage::Output { clixml, .. } = message {
            self.objects += 1;
            let size = clixml.len() + 16;
            if self.bytes + size <= self.cap {
                self.bytes += size;
                let t = self.now();
                self.events.push(json!({"t": t, "output": redact_clixml(clixml)}));
            } else {
                // Over the cap (the bulk of a large output): only counted; the last one is taken from the buffer at
                // the end (nothing copied per object).
                self.omitted += 1;
                self.last = None;
            }
            return false;
        }
        let t = self.now();
        match message {
            ServerMessage::Record { kind, clixml, .. } => {
                let clixml = redact_clixml(clixml);
                self.keep(clixml.len() + 16, json!({"t": t, "record": kind, "clixml": clixml}));
            }
            ServerMessage::HostCall { .. } => {
                let mut value = serde_json::to_value(message).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    for field in ["session", "pipeline", "seq"] {
                        map.remove(field);
                    }
                    map.insert("t".into(), json!(t));
                }
                let size = value.to_string().len();
                self.keep(size, value);
            }
            ServerMessage::PipelineState { state, error, .. } if state.is_terminal() => {
                // The last object over the cap, when nothing came after it: the buffer holds it still.
                if self.omitted > 0 && self.last.is_none()
                    && let Some(ServerMessage::Output { clixml, .. }) = recent.iter().rev().find(|e| matches!(e, ServerMessage::Output { .. }))
                {
                    self.last = Some(Last::Output(t, clixml.clone()));
                }
                self.finish(*state, error.as_deref());
                return true;
            }
            _ => {}
        }
        false
    }

    /// The browser's answer to host call `call_id`.
    pub fn answer(&mut self, call_id: i64, answer: &HostAnswer) {
        let t = self.now();
        let value = serde_json::json!({"t": t, "type": "host_answer", "call_id": call_id, "answer": redact_answer(answer)});
        let size = value.to_string().len();
        self.keep(size, value);
    }

    fn finish(&mut self, state: PipelineState, error: Option<&str>) {
        let mut event = self.event.clone();
        let ended = self.started + self.now();
        if let Some(data) = event.data.as_object_mut() {
            data.insert("ended".into(), ended.into());
            data.insert("state".into(), serde_json::to_value(state).unwrap_or_default());
            if let Some(error) = error {
                data.insert("error".into(), redact_clixml(error).into());
            }
            data.insert("objects".into(), self.objects.into());
            data.insert("events".into(), std::mem::take(&mut self.events).into());
            if self.omitted > 0 {
                data.insert("omitted".into(), self.omitted.into());
                let last = match self.last.take() {
                    Some(Last::Output(t, clixml)) => serde_json::json!({"t": t, "output": redact_clixml(&clixml)}),
                    Some(Last::Other(v)) => v,
                    None => serde_json::Value::Null,
                };
                data.insert("last".into(), last);
            }
        }
        self.audit.record(event);
    }
}

enum Message {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// Where a relay's records go: a task that appends them to the store's chain, in order, in batches.
#[derive(Clone, Debug)]
pub struct Audit {
    tx: mpsc::UnboundedSender<Message>,
    /// `[audit] max_pipeline_kb`, in bytes.
    cap: usize,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Event(e) => write!(f, "Event({:?})", e.kind),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// At most this many records are appended in one transaction.
const BATCH: usize = 256;

impl Audit {
    /// Starts the writer of `relay` on `store` (inside the runtime).
    pub fn start(store: std::sync::Arc<Store>, key: AuditKey, relay: String, max_pipeline_bytes: usize) -> Audit {
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            let mut batch: Vec<Event> = Vec::new();
            let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        Message::Event(e) => batch.push(*e),
                        Message::Flush(done) => flushes.push(done),
                    }
                    if batch.len() < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    let mac = |input: &str| key.mac(input.as_bytes());
                    let mut tries = 0;
                    loop {
                        match store.append_audit(&relay, &batch, &mac).await {
                            Ok(()) => break,
                            Err(e) if tries < 5 => {
                                tries += 1;
                                tracing::warn!(error = %e, records = batch.len(), "appending to the audit; retrying");
                                tokio::time::sleep(std::time::Duration::from_millis(200 * tries)).await;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, records = batch.len(), "appending to the audit failed: these records are lost");
                                break;
                            }
                        }
                    }
                    batch.clear();
                }
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Audit { tx, cap: max_pipeline_bytes }
    }

    /// Appends `event` (in the background, in the order recorded).
    pub fn record(&self, event: Event) {
        let _ = self.tx.send(Message::Event(Box::new(event)));
    }

    /// Waits until everything recorded so far is in the store.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_strings_are_removed_from_clixml() {
        let clixml = r#"<Obj><MS><SS N="Password">AAECAw==</SS><S N="User">ada</S><SS N="X"/></MS></Obj>"#;
        assert_eq!(redact_clixml(clixml), r#"<Obj><MS><SS N="Password"></SS><S N="User">ada</S><SS N="X"/></MS></Obj>"#);
        assert_eq!(redact_clixml("<S>plain</S>"), "<S>plain</S>");
        // Cut short: nothing after the opening tag is kept.
        assert_eq!(redact_clixml("<SS>secret"), "<SS></SS>");
    }

    #[test]
    fn answers_keep_no_secret() {
        let fields = HostAnswer::Fields { fields: vec![psgate_shared::api::FieldAnswer { name: "Pin".into(), text: "1234".into(), secure: true }, psgate_shared::api::FieldAnswer { name: "Name".into(), text: "ada".into(), secure: false }] };
        let text = redact_answer(&fields).to_string();
        assert!(!text.contains("1234") && text.contains("ada"), "{text}");
        let credential = redact_answer(&HostAnswer::Credential { user: "contoso\\ada".into(), password: "P@ss".into() }).to_string();
        assert!(!credential.contains("P@ss") && credential.contains("ada"), "{credential}");
        assert!(!redact_answer(&HostAnswer::Secure { text: "P@ss".into() }).to_string().contains("P@ss"));
    }
}
