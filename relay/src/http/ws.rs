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
use psgate_shared::api::{ClientMessage, ErrorCode, PROTOCOL_VERSION, PipelineId, ServerMessage, SessionId};
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
    let mut conn = Connection { manager, user, out, followers: HashMap::new() };
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
}

impl Connection {
    async fn send(&self, message: ServerMessage) {
        let _ = self.out.send(message).await;
    }

    fn follow(&mut self, session: SessionId, pipeline: PipelineId, buffer: Arc<Buffer>, after_seq: u64) {
        let out = self.out.clone();
        let task = tokio::spawn(async move {
            let mut changed = buffer.subscribe();
            let mut cursor = after_seq;
            loop {
                let batch = buffer.read(cursor, BATCH);
                if batch.dropped > 0 {
                    let message = format!("{} events of pipeline {} are no longer kept; resuming after them", batch.dropped, pipeline.0);
                    if out.send(ServerMessage::error(ErrorCode::OutputDropped, message)).await.is_err() {
                        return;
                    }
                }
                let empty = batch.events.is_empty();
                for event in batch.events {
                    cursor = event.seq().unwrap_or(cursor);
                    if out.send(event).await.is_err() {
                        return;
                    }
                }
                if batch.finished {
                    return;
                }
                if empty && changed.changed().await.is_err() {
                    return;
                }
            }
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
