//! Lines at psgate's prompt through the relay's API, as the browser sends them, and what they showed.

#![allow(dead_code)]

use psgate_shared::api::{HostAnswer, LOCAL_SESSION, PipelineState, RecordKind, ServerMessage, SessionId};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::messages::ErrorRecordView;
use psgate_tests::relay::{Client, outputs};
use serde_json::json;

/// The `prompt_state` a line caused: seen while it ran, else the next one (it may come just after the line's end:
/// it travels with the session changes, not in the line's pipeline).
pub async fn entered_after(c: &mut Client, shown: &Shown) -> Option<SessionId> {
    match shown.entered {
        Some(e) => e,
        None => {
            c.until(|m| match m {
                ServerMessage::PromptState { entered } => Some(*entered),
                _ => None,
            })
            .await
        }
    }
}

/// What a line at the prompt showed: its output as console text, its error messages, its final state.
#[derive(Debug)]
pub struct Shown {
    pub text: String,
    pub errors: Vec<String>,
    pub records: Vec<(RecordKind, Value)>,
    pub state: PipelineState,
    /// The `prompt_state` the line caused, if it changed it.
    pub entered: Option<Option<SessionId>>,
}

/// Runs a line at the prompt, answering its host calls from `answers` in order.
pub async fn prompt_with(c: &mut Client, line: &str, answers: Vec<HostAnswer>) -> Shown {
    // Not `Client::run`: it skips what comes before `pipeline_started`, and the line's `prompt_state` may come first
    // (it travels with the session changes, which can overtake the answer to `run`).
    c.send(json!({"type": "run", "session": LOCAL_SESSION, "script": line})).await;
    let mut p = None;
    let mut answers = answers.into_iter();
    let mut events = Vec::new();
    let mut entered = None;
    loop {
        let m = c.next().await;
        if std::env::var_os("PROMPT_TRACE").is_some() {
            eprintln!("{line}: {m:?}");
        }
        match &m {
            ServerMessage::PipelineStarted { session, pipeline } if *session == LOCAL_SESSION && p.is_none() => p = Some(*pipeline),
            ServerMessage::PromptState { entered: e } => entered = Some(*e),
            ServerMessage::HostCall { session, pipeline, call_id, method, .. } if *session == LOCAL_SESSION && Some(*pipeline) == p && *call_id > 0 => {
                let answer = answers.next().unwrap_or_else(|| panic!("{line}: an unexpected host call {method}"));
                c.send(json!({"type": "host_response", "session": LOCAL_SESSION, "pipeline": pipeline, "call_id": call_id, "answer": answer})).await;
            }
            ServerMessage::PipelineState { pipeline, state, .. } if Some(*pipeline) == p && state.is_terminal() => {
                let state = *state;
                events.push(m);
                let objects = outputs(&events);
                let records: Vec<(RecordKind, Value)> = events
                    .iter()
                    .filter_map(|e| match e {
                        ServerMessage::Record { kind, clixml, .. } => Some((*kind, psgate_shared::clixml::decode_message(clixml.as_bytes()).expect("a record"))),
                        _ => None,
                    })
                    .collect();
                let errors = records.iter().filter(|(k, _)| *k == RecordKind::Error).map(|(_, v)| ErrorRecordView::from_value(v).message).collect();
                return Shown { text: psgate_lang::format::to_text(&objects), errors, records, state, entered };
            }
            _ => {}
        }
        if m.seq().is_some() && matches!(&m, ServerMessage::Output { pipeline, .. } | ServerMessage::Record { pipeline, .. } if Some(*pipeline) == p) {
            events.push(m);
        }
    }
}

pub async fn prompt(c: &mut Client, line: &str) -> Shown {
    prompt_with(c, line, Vec::new()).await
}

pub fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_owned()).filter(|l| !l.is_empty()).collect()
}

/// Tab completion at the prompt for `input` with the cursor at its end: the candidates' texts.
pub async fn completions(c: &mut Client, input: &str) -> Vec<String> {
    c.send(json!({"type": "complete", "session": LOCAL_SESSION, "input": input, "cursor": input.len()})).await;
    c.until(|m| match m {
        ServerMessage::Completions { session, matches, .. } if *session == LOCAL_SESSION => Some(matches.iter().map(|m| m.text.clone()).collect()),
        _ => None,
    })
    .await
}
