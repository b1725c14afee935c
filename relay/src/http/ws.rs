//! `GET /api/ws`: the WebSocket API (the messages are [`psgate_shared::api`]).
//!
//! Refused with 401 without a current login and 403 when the `Origin` is neither the relay's own nor an allowed
//! one (a browser always sends it; this stops other sites' pages from using a visitor's login). Every frame that
//! is not a valid message gets an `error` back and the connection stays open.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use psgate_shared::api::{
    ClientMessage, DEFAULT_THROTTLE_LIMIT, ErrorCode, InvocationId, InvokeHost, PROTOCOL_VERSION, PipelineId, PipelineState, ServerMessage, SessionId,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Api;
use crate::session::manager::{Buffer, Manager};

/// Messages queued for one connection before its readers wait.
const OUTBOX: usize = 256;
/// Events read from a buffer at a time.
const BATCH: usize = 128;

/// Whether `origin` may open the WebSocket: the relay's own (`Host`) or one configured.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let own = headers.get(HOST).and_then(|v| v.to_str().ok()).is_some_and(|host| origin == format!("http://{host}") || origin == format!("https://{host}"));
    own || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// The upgrade.
pub async fn upgrade(State(api): State<Api>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let Some(user) = api.auth.user(&headers) else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    if !origin_allowed(&headers, &api.allowed_origins) {
        tracing::warn!(%user, origin = ?headers.get(ORIGIN), "websocket from a foreign origin refused");
        return (StatusCode::FORBIDDEN, "this origin may not use the relay").into_response();
    }
    let manager = api.manager.clone();
    ws.on_upgrade(move |socket| connection(socket, manager, user))
}

async fn connection(socket: WebSocket, manager: Arc<Manager>, user: String) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<ServerMessage>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            let Ok(text) = serde_json::to_string(&message) else { continue };
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
    });
    let hello = ServerMessage::Hello { protocol: PROTOCOL_VERSION, server: env!("CARGO_PKG_VERSION").into(), user: user.clone() };
    let _ = out.send(hello).await;
    let changes = {
        let (out, user, mut changes) = (out.clone(), user.clone(), manager.changes());
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) if change.owner == user => {
                        if out.send(ServerMessage::SessionChanged { session: change.session }).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        })
    };
    let mut conn = Connection { manager, user, out, followers: HashMap::new(), invocations: Vec::new() };
    while let Some(Ok(frame)) = stream.next().await {
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                conn.send(ServerMessage::error(ErrorCode::BadMessage, "binary frames are not messages; send JSON text")).await;
                continue;
            }
        };
        match serde_json::from_str::<ClientMessage>(text.as_str()) {
            Ok(message) => conn.handle(message).await,
            Err(e) => conn.send(ServerMessage::error(ErrorCode::BadMessage, format!("not a message: {e}"))).await,
        }
    }
    for (_, f) in conn.followers.drain() {
        f.abort();
    }
    for i in conn.invocations.drain(..) {
        i.abort();
    }
    changes.abort();
    drop(conn);
    let _ = writer.await;
}

struct Connection {
    manager: Arc<Manager>,
    user: String,
    out: mpsc::Sender<ServerMessage>,
    /// The pipelines this connection follows.
    followers: HashMap<(SessionId, PipelineId), JoinHandle<()>>,
    /// The Invoke-Command runs this connection reports (their pipelines go on without it; `attach` follows them).
    invocations: Vec<JoinHandle<()>>,
}

/// Sends a pipeline's events after `after_seq` to `out` until its last one; `Err`: the connection is gone.
async fn pump(out: &mpsc::Sender<ServerMessage>, pipeline: PipelineId, buffer: &Buffer, after_seq: u64) -> Result<(), ()> {
    let mut changed = buffer.subscribe();
    let mut cursor = after_seq;
    loop {
        let batch = buffer.read(cursor, BATCH);
        if batch.dropped > 0 {
            let message = format!("{} events of pipeline {} are no longer kept; resuming after them", batch.dropped, pipeline.0);
            out.send(ServerMessage::error(ErrorCode::OutputDropped, message)).await.map_err(drop)?;
        }
        let empty = batch.events.is_empty();
        for event in batch.events {
            cursor = event.seq().unwrap_or(cursor);
            out.send(event).await.map_err(drop)?;
        }
        if batch.finished {
            return Ok(());
        }
        if empty {
            changed.changed().await.map_err(drop)?;
        }
    }
}

/// Invoke-Command: the script on each session, at most `throttle` at once, each pipeline's events followed in
/// turn by its `invoke_host_finished`; `invoke_finished` last.
async fn invoke(manager: Arc<Manager>, user: String, out: mpsc::Sender<ServerMessage>, invocation: InvocationId, sessions: Vec<(SessionId, String)>, script: String, throttle: usize) {
    use futures_util::stream::{self, StreamExt as _};
    let one = |(session, computer_name): (SessionId, String)| {
        let (manager, user, out, script) = (manager.clone(), user.clone(), out.clone(), script.clone());
        async move {
            let mut host = InvokeHost { session, computer_name: computer_name.clone(), pipeline: None, state: PipelineState::Failed, error: None, message: None };
            match manager.run_tagged(&user, session, script) {
                Ok((pipeline, buffer)) => {
                    host.pipeline = Some(pipeline);
                    let _ = out.send(ServerMessage::InvokeHostStarted { invocation, session, computer_name, pipeline }).await;
                    if pump(&out, pipeline, &buffer, 0).await.is_err() {
                        return host; // the connection is gone; the pipeline goes on (attach follows it)
                    }
                    if let Some((state, error)) = buffer.outcome() {
                        (host.state, host.error) = (state, error);
                    }
                }
                Err(e) => host.message = Some(e.message),
            }
            let _ = out.send(ServerMessage::InvokeHostFinished { invocation, host: host.clone() }).await;
            host
        }
    };
    let order: HashMap<SessionId, usize> = sessions.iter().enumerate().map(|(i, (s, _))| (*s, i)).collect();
    let mut hosts: Vec<InvokeHost> = stream::iter(sessions).map(one).buffer_unordered(throttle).collect().await;
    hosts.sort_by_key(|h| order.get(&h.session).copied().unwrap_or(usize::MAX));
    let _ = out.send(ServerMessage::InvokeFinished { invocation, hosts }).await;
}

impl Connection {
    async fn send(&self, message: ServerMessage) {
        let _ = self.out.send(message).await;
    }

    fn follow(&mut self, session: SessionId, pipeline: PipelineId, buffer: Arc<Buffer>, after_seq: u64) {
        let out = self.out.clone();
        let task = tokio::spawn(async move {
            let _ = pump(&out, pipeline, &buffer, after_seq).await;
        });
        if let Some(old) = self.followers.insert((session, pipeline), task) {
            old.abort();
        }
        self.followers.retain(|_, t| !t.is_finished());
    }

    async fn handle(&mut self, message: ClientMessage) {
        let m = self.manager.clone();
        let user = self.user.clone();
        let result = match message {
            ClientMessage::Hello { protocol } if protocol == PROTOCOL_VERSION => Ok(()),
            ClientMessage::Hello { protocol } => {
                Err(ServerMessage::error(ErrorCode::UnsupportedVersion, format!("this relay speaks protocol {PROTOCOL_VERSION}, not {protocol}")))
            }
            ClientMessage::NewSessions { targets } => {
                for target in targets {
                    let computer_name = target.computer_name.clone();
                    if let Err(e) = m.create(&user, target) {
                        self.send(ServerMessage::TargetRefused { computer_name, code: e.code, message: e.message }).await;
                    }
                }
                self.send(ServerMessage::Sessions { sessions: m.list(&user, None, None) }).await;
                Ok(())
            }
            ClientMessage::GetSessions { computer_name, name } => {
                self.send(ServerMessage::Sessions { sessions: m.list(&user, computer_name.as_deref(), name.as_deref()) }).await;
                Ok(())
            }
            ClientMessage::RemoveSessions { ids, all } => {
                let removed = if all { m.remove(&user, None) } else { m.remove(&user, Some(&ids)) };
                match removed {
                    Ok(_) => {
                        self.send(ServerMessage::Sessions { sessions: m.list(&user, None, None) }).await;
                        Ok(())
                    }
                    Err(e) => Err(e.to_message()),
                }
            }
            ClientMessage::Run { session, script } => match m.run(&user, session, script) {
                Ok((pipeline, buffer)) => {
                    self.send(ServerMessage::PipelineStarted { session, pipeline }).await;
                    self.follow(session, pipeline, buffer, 0);
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::Stop { session, pipeline } => m.stop(&user, session, pipeline).map_err(|e| e.to_message()),
            ClientMessage::HostResponse { session, pipeline, call_id, answer } => {
                m.answer(&user, session, pipeline, call_id, answer).map_err(|e| e.to_message())
            }
            ClientMessage::Invoke { sessions, script, throttle_limit } => {
                let mut hosts: Vec<(SessionId, String)> = Vec::new();
                let mut refused = None;
                for session in sessions {
                    if hosts.iter().any(|(s, _)| *s == session) {
                        continue;
                    }
                    match m.computer_name(&user, session) {
                        Ok(computer_name) => hosts.push((session, computer_name)),
                        Err(e) => {
                            refused = Some(e.to_message());
                            break;
                        }
                    }
                }
                match refused {
                    Some(message) => Err(message),
                    None => {
                        let throttle = throttle_limit.filter(|t| *t > 0).unwrap_or(DEFAULT_THROTTLE_LIMIT);
                        let invocation = m.next_invocation();
                        tracing::info!(invocation = invocation.0, %user, sessions = hosts.len(), throttle, "invoke");
                        self.send(ServerMessage::InvokeStarted { invocation, sessions: hosts.iter().map(|(s, _)| *s).collect(), throttle_limit: throttle }).await;
                        self.invocations.retain(|t| !t.is_finished());
                        self.invocations.push(tokio::spawn(invoke(m, user, self.out.clone(), invocation, hosts, script, throttle as usize)));
                        Ok(())
                    }
                }
            }
            ClientMessage::Attach { session, pipeline, after_seq } => match m.buffer(&user, session, pipeline) {
                Ok(buffer) => {
                    self.follow(session, pipeline, buffer, after_seq);
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
        };
        if let Err(message) = result {
            self.send(message).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn origins() {
        let headers = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
            if let Some(o) = origin {
                h.insert(ORIGIN, HeaderValue::from_static(o));
            }
            h
        };
        let allowed = vec!["https://intranet.contoso.com".to_owned()];
        for (origin, expect) in [
            (Some("http://127.0.0.1:8080"), true),
            (Some("https://intranet.contoso.com"), true),
            (Some("http://evil.example"), false),
            (Some("http://127.0.0.1:8081"), false),
            (Some("null"), false),
            (None, false),
        ] {
            assert_eq!(origin_allowed(&headers(origin), &allowed), expect, "{origin:?}");
        }
    }
}
