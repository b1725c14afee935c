//! The audit trail read back: searching records by who, where, when, command text and *result* (the objects a
//! pipeline returned), and exporting them as JSON lines, as an asciicast v3 recording (a marker at each pipeline),
//! or as a JEA-style transcript (`CommandInvocation(…)`, `ParameterBinding(…)`).

use psgate_shared::api::RecordKind;
use psgate_shared::clixml::{self, Value};
use serde_json::json;

use super::{Event, Kind, Record};

/// What a search matches on the records the store's filter let through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    /// The command text (or a command's name) contains this (case-insensitive; `*` and `?` wildcards when present).
    pub command: Option<String>,
    /// A returned object has this type (`ServiceController`, `System.ServiceProcess.ServiceController`,
    /// wildcards allowed; `Deserialized.` is ignored).
    pub result_type: Option<String>,
    /// A returned object has this property with a value like this (`Name=Spooler`, wildcards allowed).
    pub result_property: Option<(String, String)>,
}

fn like(text: &str, pattern: &str) -> bool {
    psgate_lang::values::like(text, pattern, false)
}

impl Matcher {
    /// Whether it asks anything of a record's pipeline.
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.result_type.is_none() && self.result_property.is_none()
    }

    /// Whether `event` matches (a record of another kind matches only an empty matcher).
    pub fn matches(&self, event: &Event) -> bool {
        if self.is_empty() {
            return true;
        }
        if event.kind != Kind::Pipeline {
            return false;
        }
        if let Some(text) = &self.command {
            let pattern = if text.contains(['*', '?']) { text.clone() } else { format!("*{text}*") };
            let command = event.data.get("command").and_then(serde_json::Value::as_str).unwrap_or_default();
            let names = event.data.get("commands").and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(|c| c.get("command").and_then(serde_json::Value::as_str));
            if !like(command, &pattern) && !names.into_iter().any(|n| like(n, &pattern)) {
                return false;
            }
        }
        if self.result_type.is_none() && self.result_property.is_none() {
            return true;
        }
        objects(event).iter().any(|o| self.object_matches(o))
    }

    fn object_matches(&self, object: &Value) -> bool {
        if let Some(pattern) = &self.result_type {
            let Some(o) = object.as_object() else { return false };
            let found = o.type_names().any(|t| {
                let t = t.strip_prefix("Deserialized.").unwrap_or(t);
                like(t, pattern) || t.rsplit('.').next().is_some_and(|short| like(short, pattern))
            });
            if !found {
                return false;
            }
        }
        if let Some((name, pattern)) = &self.result_property {
            let Some(value) = psgate_lang::values::property(object, name) else { return false };
            if !like(&psgate_lang::values::text(&value), pattern) {
                return false;
            }
        }
        true
    }
}

/// Up to `limit` records after `after_seq` that `filter` (in the store) and `matcher` (on the records) select, in
/// chain order. A matcher that asks about pipelines narrows the store's filter to pipeline records.
pub async fn select(store: &crate::store::Store, filter: &crate::store::AuditFilter, matcher: &Matcher, after_seq: i64, limit: usize) -> Result<Vec<Record>, crate::store::StoreError> {
    let mut filter = filter.clone();
    if filter.kinds.is_empty() && !matcher.is_empty() {
        filter.kinds = vec![Kind::Pipeline.name().to_owned()];
    }
    let mut out = Vec::new();
    let mut after = after_seq;
    while out.len() < limit {
        let page = store.audit_page(&filter, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page.into_iter().filter(|r| r.event().is_some_and(|e| matcher.matches(&e))));
    }
    out.truncate(limit);
    Ok(out)
}

/// The whole chain checked with `key`: the records read, the last record's number, and what is wrong.
pub async fn verify(store: &crate::store::Store, key: &crate::seal::AuditKey) -> Result<(u64, i64, Vec<super::Problem>), crate::store::StoreError> {
    let mut verifier = super::Verifier::default();
    let mut after = 0;
    loop {
        let page = store.audit_page(&crate::store::AuditFilter::default(), after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            verifier.check(key, r);
        }
    }
    let (records, problems) = verifier.finish();
    Ok((records, after, problems))
}

/// The objects a pipeline record kept (those beyond its size cap: only the last), read back.
pub fn objects(event: &Event) -> Vec<Value> {
    let kept = event.data.get("events").and_then(serde_json::Value::as_array).into_iter().flatten();
    kept.chain(event.data.get("last"))
        .filter_map(|e| e.get("output").and_then(serde_json::Value::as_str))
        .filter_map(|x| clixml::decode_message(x.as_bytes()).ok())
        .collect()
}

/// A record as one JSON line: its place in the chain and its event.
pub fn json_line(record: &Record) -> String {
    let event: serde_json::Value = serde_json::from_str(&record.body).unwrap_or(serde_json::Value::Null);
    json!({"seq": record.seq, "relay": record.relay, "prev": record.prev, "mac": record.mac, "event": event}).to_string()
}

/// A UTC time for people (`2026-12-08 10:42:07`).
pub fn utc(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().and_then(|t| t.format(&format).ok()).unwrap_or_else(|| ms.to_string())
}

/// One line of what a record says, for a listing.
pub fn summary(event: &Event) -> String {
    let data = &event.data;
    let text = |k: &str| data.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    match event.kind {
        Kind::Pipeline => {
            let objects = data.get("objects").and_then(serde_json::Value::as_u64).unwrap_or(0);
            format!("{} ({}, {objects} objects)", text("command"), text("state"))
        }
        Kind::SessionOpened | Kind::SessionFailed => format!("{} {} {}", text("transport"), text("name"), text("error")).trim().to_owned(),
        Kind::QuotaRefused => text("message"),
        Kind::Admin => text("action"),
        Kind::Retention => format!("records to {} removed", data.get("through_seq").and_then(serde_json::Value::as_i64).unwrap_or(0)),
        _ => String::new(),
    }
}

/// The text a pipeline's events show, in order, with their times (ms from its start): outputs next to each other
/// formatted together (one table), records as PowerShell prints them.
fn shown(event: &Event) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    let mut pending: Vec<Value> = Vec::new();
    let mut pending_at = 0;
    let flush = |out: &mut Vec<(i64, String)>, pending: &mut Vec<Value>, at: i64| {
        if !pending.is_empty() {
            out.push((at, psgate_lang::format::to_text(pending)));
            pending.clear();
        }
    };
    let kept = event.data.get("events").and_then(serde_json::Value::as_array).into_iter().flatten();
    let omitted = event.data.get("omitted").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let last = event.data.get("last");
    for (i, e) in kept.chain(last).enumerate() {
        let t = e.get("t").and_then(serde_json::Value::as_i64).unwrap_or(0);
        if omitted > 0 && last.is_some_and(|l| std::ptr::eq(l, e)) {
            flush(&mut out, &mut pending, pending_at);
            out.push((t, format!("... {omitted} more events were recorded by count only (over [audit] max_pipeline_kb) ...\n")));
        }
        if let Some(x) = e.get("output").and_then(serde_json::Value::as_str) {
            if pending.is_empty() {
                pending_at = t;
            }
            if let Ok(v) = clixml::decode_message(x.as_bytes()) {
                pending.push(v);
            }
            continue;
        }
        flush(&mut out, &mut pending, pending_at);
        let _ = i;
        if let (Some(kind), Some(x)) = (e.get("record"), e.get("clixml").and_then(serde_json::Value::as_str)) {
            let kind: Option<RecordKind> = serde_json::from_value(kind.clone()).ok();
            let Ok(v) = clixml::decode_message(x.as_bytes()) else { continue };
            let line = match kind {
                Some(RecordKind::Error) => psgate_shared::psrp::messages::ErrorRecordView::from_value(&v).message,
                Some(RecordKind::Progress) => continue,
                Some(k) => {
                    let message = psgate_lang::values::property(&v, "Message")
                        .or_else(|| psgate_lang::values::property(&v, "InformationalRecord_Message"))
                        .or_else(|| psgate_lang::values::property(&v, "MessageData"))
                        .map(|m| psgate_lang::values::text(&m))
                        .unwrap_or_else(|| psgate_lang::values::text(&v));
                    match k {
                        RecordKind::Warning => format!("WARNING: {message}"),
                        RecordKind::Verbose => format!("VERBOSE: {message}"),
                        RecordKind::Debug => format!("DEBUG: {message}"),
                        _ => message,
                    }
                }
                None => continue,
            };
            out.push((t, format!("{line}\n")));
        } else if e.get("type").and_then(serde_json::Value::as_str) == Some("host_call") {
            let method = e.get("method").and_then(serde_json::Value::as_str).unwrap_or_default();
            let args: Vec<String> = e
                .get("args")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .filter_map(|a| clixml::decode_message(a.as_bytes()).ok())
                .map(|v| psgate_lang::values::text(&v))
                .filter(|t| !t.is_empty())
                .collect();
            if method.starts_with("Write") {
                out.push((t, args.last().cloned().unwrap_or_default() + if method.ends_with("Line") || method.ends_with("Line1") || method.ends_with("Line2") { "\n" } else { "" }));
            } else if !args.is_empty() {
                out.push((t, format!("{}: ", args.join(" "))));
            }
        } else if e.get("type").and_then(serde_json::Value::as_str) == Some("host_answer") {
            let answer = e.get("answer").map(|a| a.to_string()).unwrap_or_default();
            out.push((t, format!("{answer}\n")));
        }
    }
    flush(&mut out, &mut pending, pending_at);
    out
}

/// Text for a terminal: `\n` as `\r\n`.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The pipelines of `records` as an asciicast v3 recording (<https://docs.asciinema.org/manual/asciicast/v3/>): a
/// header line, then `[interval, code, data]` events: a marker (`m`) at each pipeline with its command, the prompt
/// and command as typed, then what it showed, at the times it came.
pub fn asciicast(records: &[Record], title: &str) -> String {
    let events: Vec<Event> = records.iter().filter_map(Record::event).filter(|e| e.kind == Kind::Pipeline).collect();
    let start = events.first().map_or(0, |e| e.at);
    let mut lines = vec![json!({"version": 3, "term": {"cols": 120, "rows": 40}, "timestamp": start / 1000, "title": title}).to_string()];
    let mut last = start;
    let mut push = |at: i64, code: &str, data: String| {
        let interval = (at - last).max(0) as f64 / 1000.0;
        last = last.max(at);
        lines.push(json!([interval, code, data]).to_string());
    };
    for e in &events {
        let command = e.data.get("command").and_then(serde_json::Value::as_str).unwrap_or_default();
        let computer = e.computer.as_deref().unwrap_or_default();
        push(e.at, "m", command.to_owned());
        let prompt = if computer == crate::session::prompt::PROMPT_COMPUTER { "PS psgate> ".to_owned() } else { format!("[{computer}]: PS> ") };
        push(e.at, "o", crlf(&format!("{prompt}{command}\n")));
        for (t, text) in shown(e) {
            push(e.at + t, "o", crlf(&text));
        }
    }
    lines.join("\n") + "\n"
}

/// A PowerShell string as a transcript quotes it.
fn quoted(text: &str) -> String {
    text.replace('"', "`\"")
}

/// A command and its parameters as a transcript shows them (a parameter's name, none for an argument, and its value).
type Invocation = (String, Vec<(Option<String>, String)>);

/// Parameters as a transcript binds them: `-Name:` with its value and `-Name` followed by an argument become `Name`
/// with that value, a `-Name` alone a switch (`True`); arguments left stay positional (`None`).
fn bound(parameters: Vec<(Option<String>, String, bool)>) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut items = parameters.into_iter().peekable();
    while let Some((name, value, nil)) = items.next() {
        match name {
            Some(n) if n.starts_with('-') && n.ends_with(':') => out.push((Some(n.trim_start_matches('-').trim_end_matches(':').to_owned()), value)),
            Some(n) if n.starts_with('-') && nil => {
                let name = n.trim_start_matches('-').to_owned();
                match items.next_if(|(next, _, _)| next.is_none()) {
                    Some((_, value, _)) => out.push((Some(name), value)),
                    None => out.push((Some(name), "True".to_owned())),
                }
            }
            other => out.push((other, value)),
        }
    }
    out
}

/// The commands of a pipeline record: its Command objects, else those its text makes as a JEA endpoint reads it
/// (none: script text beyond that).
fn invocations(event: &Event) -> Option<Vec<Invocation>> {
    if let Some(commands) = event.data.get("commands").and_then(serde_json::Value::as_array) {
        let mut out = Vec::new();
        for c in commands {
            if c.get("script").and_then(serde_json::Value::as_bool) == Some(true) {
                return None;
            }
            let name = c.get("command").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
            let parameters = c
                .get("parameters")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let value = p.get("value").and_then(serde_json::Value::as_str).and_then(|x| clixml::decode_message(x.as_bytes()).ok()).unwrap_or(Value::Nil);
                    (p.get("name").and_then(serde_json::Value::as_str).map(str::to_owned), psgate_lang::values::text(&value), value.is_nil())
                })
                .collect();
            out.push((name, bound(parameters)));
        }
        return Some(out);
    }
    let command = event.data.get("command").and_then(serde_json::Value::as_str)?;
    let spec = psgate_lang::jea::pipeline_for(command);
    if spec.commands.iter().any(|c| c.is_script) {
        return None;
    }
    Some(spec.commands.iter().map(|c| (c.text.clone(), bound(c.parameters.iter().map(|(n, v)| (n.clone(), psgate_lang::values::text(v), v.is_nil())).collect()))).collect())
}

/// The pipelines of `records` as a JEA-style transcript (PowerShell's `Start-Transcript` as a JEA endpoint writes
/// it): a header per session, `PS>CommandInvocation(Name): "Name"` and `>> ParameterBinding(Name): name="…";
/// value="…"` for each command (script text as `PS>text`), then what it showed.
pub fn transcript(records: &[Record]) -> String {
    let stars = "**********************";
    let stamp = |ms: i64| {
        let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().and_then(|t| t.format(&format).ok()).unwrap_or_default()
    };
    let mut out = String::new();
    let mut current: Option<(Option<String>, Option<u64>)> = None;
    let mut last_end = 0;
    let end = |out: &mut String, at: i64| {
        out.push_str(&format!("{stars}\nPowerShell transcript end\nEnd time: {}\n{stars}\n", stamp(at)));
    };
    for e in records.iter().filter_map(Record::event).filter(|e| e.kind == Kind::Pipeline) {
        let key = (e.owner.clone(), e.session);
        if current.as_ref() != Some(&key) {
            if current.is_some() {
                end(&mut out, last_end);
            }
            let configuration = e.data.get("configuration_name").and_then(serde_json::Value::as_str).unwrap_or("Microsoft.PowerShell");
            out.push_str(&format!(
                "{stars}\nPowerShell transcript start\nStart time: {}\nUsername: {}\nRunAs User: {}\nConfiguration Name: {configuration}\nMachine: {} (session {} of {})\nHost Application: psgate\n{stars}\n",
                stamp(e.at),
                e.actor,
                e.owner.as_deref().unwrap_or_default(),
                e.computer.as_deref().unwrap_or_default(),
                e.session.unwrap_or(0),
                e.owner.as_deref().unwrap_or_default(),
            ));
            current = Some(key);
        }
        match invocations(&e) {
            Some(commands) if !commands.is_empty() => {
                for (name, parameters) in commands {
                    out.push_str(&format!("PS>CommandInvocation({name}): \"{}\"\n", quoted(&name)));
                    for (i, (parameter, value)) in parameters.iter().enumerate() {
                        let parameter = parameter.clone().unwrap_or_else(|| format!("(positional {i})"));
                        out.push_str(&format!(">> ParameterBinding({name}): name=\"{}\"; value=\"{}\"\n", quoted(&parameter), quoted(value)));
                    }
                }
            }
            _ => out.push_str(&format!("PS>{}\n", e.data.get("command").and_then(serde_json::Value::as_str).unwrap_or_default())),
        }
        for (_, text) in shown(&e) {
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        last_end = e.data.get("ended").and_then(serde_json::Value::as_i64).unwrap_or(e.at);
    }
    if current.is_some() {
        end(&mut out, last_end);
    }
    out
}
