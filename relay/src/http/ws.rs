//! `GET /api/ws`: the WebSocket API (the messages are [`psgate_shared::api`]).
//!
//! Refused with 401 without a current login and 403 when the `Origin` is neither the relay's own nor an allowed
//! one (a browser always sends it; this stops other sites' pages from using a visitor's login). Every frame that
//! is not a valid message gets an `error` back and the connection stays open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use psgate_shared::api::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, PipelineId, ServerMessage, SessionId,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::auth::{Auth, CLOSE_LOGIN_ENDED};
use super::{Api, channel};
use crate::session::manager::{Buffer, Home, Manager, Scope};

/// How long a `remove_sessions` answer waits for the targets to close the sessions.
const REMOVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Messages queued for one connection before its readers wait.
pub(super) const OUTBOX: usize = 256;
/// How often a connection waiting for a killed home relay to be deemed gone looks again.
const HOME_RETRY: Duration = Duration::from_millis(250);

/// Events read from a buffer at a time.
const BATCH: usize = 128;

/// Whether `origin` may open the WebSocket: the relay's own (`Host`) or one configured.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let own = headers.get(HOST).and_then(|v| v.to_str().ok()).is_some_and(|host| origin == format!("http://{host}") || origin == format!("https://{host}"));
    own || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// The upgrade.
pub async fn upgrade(State(api): State<Api>, headers: HeaderMap, RawQuery(query): RawQuery, ws: WebSocketUpgrade) -> Response {
    let Some(login) = api.auth.login(&headers).await else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    let user = login.user.clone();
    if !origin_allowed(&headers, &api.allowed_origins) {
        tracing::warn!(%user, origin = ?headers.get(ORIGIN), "websocket from a foreign origin refused");
        return (StatusCode::FORBIDDEN, "this origin may not use the relay").into_response();
    }
    let join = match super::join::parse(query.as_deref()) {
        Some(Ok(join)) => Some(join),
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
        None => None,
    };
    let permit = match api.connections.take() {
        Ok(permit) => permit,
        Err(limit) => return api.busy(limit).into_response(),
    };
    let (manager, auth) = (api.manager.clone(), api.auth.clone());
    if let Some((owner, session)) = join {
        return join_upgrade(manager, auth, login, owner, session, ws, permit).await;
    }
    // Another relay holds the user's sessions: served there, through the relay channel. One that refuses connections
    // (killed) is waited for while it cannot yet be told from one slow to start: at most two heartbeats, when this
    // relay takes its users over (`Manager::home_refused`) and serves the page itself, rather than having the page
    // come back later.
    let waiting = Duration::from_secs(manager.heartbeat_secs().saturating_mul(2).saturating_add(2));
    let deadline = tokio::time::Instant::now() + waiting;
    let upstream = loop {
        match manager.home(&user).await {
            Ok(Home::Here) => break None,
            Ok(Home::There { relay, address }) => match channel::connect(&manager, &address, &login, None).await {
                Ok(upstream) => break Some(upstream),
                Err(e) if e.refused() && tokio::time::Instant::now() < deadline => {
                    manager.home_refused(&relay).await;
                    tokio::time::sleep(HOME_RETRY).await;
                }
                Err(e) => {
                    tracing::warn!(%user, home = %relay, error = %e, "the relay serving the user did not take the connection");
                    // 502, not 503: this relay is fine (a balancer must not count it failed, nor try the next
                    // relay, which would answer the same); the page retries.
                    let text = format!("relay {relay}, which serves your sessions, did not answer ({e}); retry in a moment");
                    return (StatusCode::BAD_GATEWAY, [(axum::http::header::RETRY_AFTER, "1")], text).into_response();
                }
            },
            Err(e) => {
                tracing::error!(%user, error = %e, "reading the user's relay");
                return (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "1")], "the store did not answer; retry in a moment").into_response();
            }
        }
    };
    if let Some(upstream) = upstream {
        return ws.on_upgrade(move |socket| async move {
            let open = manager.metrics().websocket_opened();
            channel::splice(socket, upstream).await;
            drop((open, permit));
        });
    }
    ws.on_upgrade(move |socket| async move {
        let open = manager.metrics().websocket_opened();
        connection(socket, manager, user, auth, login.key).await;
        drop((open, permit));
    })
}

/// A joined console of `owner`'s session (`?join=OWNER/ID`): served here when this relay holds it, else through the
/// channel to the relay that does (the owner's home), which checks the invitation either way.
async fn join_upgrade(manager: Arc<Manager>, auth: Arc<Auth>, login: super::auth::Login, owner: String, session: SessionId, ws: WebSocketUpgrade, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Response {
    match manager.home(&owner).await {
        Ok(Home::Here) => super::join::upgrade(ws, manager, auth, login.user, login.key, owner, session, permit).await,
        Ok(Home::There { relay, address }) => match channel::connect(&manager, &address, &login, Some((&owner, session))).await {
            Ok(upstream) => ws.on_upgrade(move |socket| async move {
                let open = manager.metrics().websocket_opened();
                channel::splice(socket, upstream).await;
                drop((open, permit));
            }),
            Err(channel::ChannelError::Status { status: 403, .. }) => (StatusCode::FORBIDDEN, format!("{owner} has not shared session {} with you", session.0)).into_response(),
            Err(e) => {
                let text = format!("relay {relay}, which holds {owner}'s sessions, did not answer ({e}); retry in a moment");
                (StatusCode::BAD_GATEWAY, [(axum::http::header::RETRY_AFTER, "1")], text).into_response()
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "reading a user's relay");
            (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "1")], "the store did not answer; retry in a moment").into_response()
        }
    }
}

/// One connection. `auth` and `key` name its login: a message from the browser is activity on it, and when it
/// ends (idle, expired, logged out) the connection is closed with [`CLOSE_LOGIN_ENDED`] and the reason.
pub(super) async fn connection(socket: WebSocket, manager: Arc<Manager>, user: String, auth: Arc<Auth>, key: String) {
    let (sink, mut stream) = socket.split();
    let (out, outbox) = mpsc::channel::<ServerMessage>(OUTBOX);
    let (close, closing) = tokio::sync::oneshot::channel::<(u16, String)>();
    let writer = tokio::spawn(write(sink, outbox, closing, manager.metrics().clone()));
    // A user this relay took over (or served before it restarted): their prompt's variables and history back.
    crate::session::prompt::take_back(&manager, &user).await;
    let hello = ServerMessage::Hello { protocol: PROTOCOL_VERSION, server: env!("CARGO_PKG_VERSION").into(), user: user.clone(), admin: manager.is_admin(&user).await };
    let _ = out.send(hello).await;

    // A page that comes back to a prompt inside a session learns which (none: the prompt is at `PS psgate>`).
    if let Some(entered) = manager.entered(&user) {
        let _ = out.send(ServerMessage::PromptState { entered: Some(entered) }).await;
    }
    // And the modules Import-PSSession made there (the sessions panel shows them).
    let modules = manager.prompt_modules(&user);
    if !modules.is_empty() {
        let _ = out.send(ServerMessage::PromptModules { modules }).await;
    }
    // Listening before the user counts as connected here: a notice is then either kept for this connection (and
    // sent now) or heard live.
    let listener = manager.changes();
    let mut conn = Connection { manager: manager.clone(), user: user.clone(), out: out.clone(), followers: HashMap::new() };
    // What happened while the user had no connection here, first: a takeover's loss, and the pipelines a Connect
    // re-attached meanwhile (followed from their first event).
    let (connected, notices) = manager.user_connected(&user);
    for notice in notices {
        let follow = match &notice {
            ServerMessage::PipelineStarted { session, pipeline } => manager.buffer(&user, *session, *pipeline).ok().map(|b| (*session, *pipeline, b)),
            _ => None,
        };
        conn.send(notice).await;
        if let Some((session, pipeline, buffer)) = follow {
            conn.follow(session, pipeline, buffer, 0);
        }
    }
    let changes = tokio::spawn(changes(manager.clone(), listener, user.clone(), out.clone()));
    let invitations = tokio::spawn(invitations(manager.clone(), user.clone(), out.clone()));
    let login_ended = auth.ended(&key);
    tokio::pin!(login_ended);
    let ended = loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            why = &mut login_ended => break Some(why),
        };
        let Some(Ok(frame)) = frame else { break None };
        if matches!(frame, Message::Text(_) | Message::Binary(_))
            && let Err(why) = auth.touch(&key).await
        {
            break Some(why);
        }
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => break None,
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
    };
    if let Some(why) = ended {
        tracing::info!(user = %conn.user, reason = ?why, "login ended: closing its websocket");
        let _ = close.send((CLOSE_LOGIN_ENDED, auth.reason(why)));
    }
    for (_, f) in conn.followers.drain() {
        f.abort();
    }
    changes.abort();
    invitations.abort();
    drop((conn, connected, out));
    let _ = writer.await;
}

/// Writes a connection's messages: everything already queued in one flush (with TCP_NODELAY, a flush per message
/// would be a TCP segment per message); a close (code, reason) first when one comes, what is still queued then no
/// longer mattering. When every sender is gone, the socket's sink is given back (none: it failed, or was closed).
pub(super) async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outbox: mpsc::Receiver<ServerMessage>,
    mut closing: tokio::sync::oneshot::Receiver<(u16, String)>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Option<futures_util::stream::SplitSink<WebSocket, Message>> {
    let mut may_close = true;
    loop {
        tokio::select! {
            biased;
            reason = &mut closing, if may_close => match reason {
                Ok((code, reason)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    return None;
                }
                Err(_) => may_close = false,
            },
            message = outbox.recv() => {
                let Some(message) = message else { return Some(sink) };
                let mut next = Some(message);
                let mut fed = 0;
                while let Some(message) = next.take() {
                    if let Ok(text) = serde_json::to_string(&message) {
                        let (bytes, output) = (text.len(), matches!(message, ServerMessage::Output { .. }));
                        if sink.feed(Message::Text(text.into())).await.is_err() {
                            return None;
                        }
                        metrics.sent(bytes, output);
                        fed += 1;
                    }
                    if fed < OUTBOX {
                        next = outbox.try_recv().ok();
                    }
                }
                if sink.flush().await.is_err() {
                    return None;
                }
            }
        }
    }
}

struct Connection {
    manager: Arc<Manager>,
    user: String,
    out: mpsc::Sender<ServerMessage>,
    /// The pipelines this connection follows.
    followers: HashMap<(SessionId, PipelineId), JoinHandle<()>>,
}

/// A task that ends with its owner.
struct Pump(JoinHandle<()>);

impl Drop for Pump {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends a pipeline's events after `after_seq` to `out` until its last one; `Err`: the connection is gone.
pub(super) async fn pump(out: &mpsc::Sender<ServerMessage>, pipeline: PipelineId, buffer: &Buffer, after_seq: u64) -> Result<(), ()> {
    let mut changed = buffer.subscribe();
    let mut cursor = after_seq;
    // While this follows the pipeline, the pipeline's output waits for it rather than being dropped.
    let reader = buffer.reader(after_seq);
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
        reader.advance(cursor);
        if batch.finished {
            return Ok(());
        }
        if empty {
            changed.changed().await.map_err(drop)?;
        }
    }
}

/// Tells the user's page when the sessions shared with them change on another relay (the owner's; an invitation made
/// or revoked on this relay is told at once): the store is looked at every five heartbeats, and `shared_sessions`
/// sent when its answer differs from the last.
async fn invitations(manager: Arc<Manager>, user: String, out: mpsc::Sender<ServerMessage>) {
    let mut known = manager.shared_with(&user).await.ok();
    let every = std::time::Duration::from_secs(manager.heartbeat_secs().saturating_mul(5));
    loop {
        tokio::time::sleep(every).await;
        let Ok(now) = manager.shared_with(&user).await else { continue };
        if known.as_ref() != Some(&now) {
            known = Some(now.clone());
            if out.send(ServerMessage::SharedSessions { sessions: now }).await.is_err() {
                break;
            }
        }
    }
}

/// Forwards the user's changes: sessions' changes, and Invoke-Command runs (whichever connection started them):
/// each session's pipeline is followed from `invoke_host_started`, and its `invoke_host_finished` comes after
/// its last event.
async fn changes(manager: Arc<Manager>, mut changes: tokio::sync::broadcast::Receiver<crate::session::manager::Change>, user: String, out: mpsc::Sender<ServerMessage>) {
    let mut pumps: HashMap<PipelineId, Pump> = HashMap::new();
    loop {
        let message = match changes.recv().await {
            Ok(change) if change.owner == user && change.scope == Scope::All => change.message,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(%user, missed = n, "a connection fell behind the session changes");
                let message = format!("{n} session changes were missed; refresh to see the current state");
                if out.send(ServerMessage::error(ErrorCode::OutputDropped, message)).await.is_err() {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        match &message {
            // An Invoke-Command host's pipeline, or one re-attached by a Connect: followed from its first event.
            ServerMessage::InvokeHostStarted { session, pipeline, .. } | ServerMessage::PipelineStarted { session, pipeline } => {
                let (session, pipeline) = (*session, *pipeline);
                if out.send(message).await.is_err() {
                    break;
                }
                pumps.retain(|_, p| !p.0.is_finished());
                if let Ok(buffer) = manager.buffer(&user, session, pipeline) {
                    let out = out.clone();
                    let task = tokio::spawn(async move {
                        let _ = pump(&out, pipeline, &buffer, 0).await;
                    });
                    pumps.insert(pipeline, Pump(task));
                }
                continue;
            }
            ServerMessage::InvokeHostFinished { host, .. } => {
                if let Some(mut p) = host.pipeline.and_then(|p| pumps.remove(&p)) {
                    let _ = (&mut p.0).await;
                }
            }
            _ => {}
        }
        if out.send(message).await.is_err() {
            break;
        }
    }
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
                    let admitted = m.admit_user(&user).await;
                    if let Err(e) = admitted.and_then(|()| m.create(&user, target).map(drop)) {
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
                    // As Remove-PSSession, the list comes once the targets have closed the sessions (a WinRM shell
                    // is deleted, a process ends); the connection goes on meanwhile.
                    Ok(removed) => {
                        let out = self.out.clone();
                        tokio::spawn(async move {
                            removed.closed(REMOVE_LIMIT).await;
                            let _ = out.send(ServerMessage::Sessions { sessions: m.list(&user, None, None) }).await;
                        });
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
            // Its progress reaches every connection of the user (`changes`), this one included.
            ClientMessage::Invoke { sessions, script, throttle_limit } => m.invoke(&user, &sessions, script, throttle_limit).map(drop).map_err(|e| e.to_message()),
            ClientMessage::GetHistory { replay } => {
                let (pipelines, invocations) = m.history(&user);
                let records = pipelines.iter().map(|(r, _)| r.clone()).collect();
                self.send(ServerMessage::History { pipelines: records, invocations }).await;
                if replay {
                    for (r, buffer) in pipelines {
                        self.follow(r.session, r.pipeline, buffer, 0);
                    }
                }
                Ok(())
            }
            ClientMessage::Complete { session, input, cursor } => match m.complete(&user, session, input, cursor) {
                Ok(answer) => {
                    // The answer comes when the target has given it; the connection goes on meanwhile.
                    let out = self.out.clone();
                    tokio::spawn(async move {
                        if let Ok(message) = answer.await {
                            let _ = out.send(message).await;
                        }
                    });
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::DisconnectSessions { ids, idle_timeout_secs, output_buffering_mode } => {
                m.disconnect(&user, &ids, idle_timeout_secs.map(|s| std::time::Duration::from_secs(u64::from(s))), output_buffering_mode).map_err(|e| e.to_message())
            }
            ClientMessage::ConnectSessions { ids } => m.connect(&user, &ids).map_err(|e| e.to_message()),
            ClientMessage::RecreateSessions { ids } => match m.admit_user(&user).await.and_then(|()| m.recreate(&user, &ids)) {
                Ok(_) => {
                    self.send(ServerMessage::Sessions { sessions: m.list(&user, None, None) }).await;
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::GetRemoteShells { target } => {
                // Enumerating takes round trips to the target: the connection goes on meanwhile.
                let out = self.out.clone();
                tokio::spawn(async move {
                    let computer_name = target.computer_name.trim().to_owned();
                    let message = match m.remote_shells(&user, &target).await {
                        Ok(shells) => ServerMessage::RemoteShells { computer_name, shells },
                        Err(e) => ServerMessage::TargetRefused { computer_name, code: e.code, message: e.message },
                    };
                    let _ = out.send(message).await;
                });
                Ok(())
            }
            ClientMessage::ShareSession { session, user: grantee, role } => match m.share(&user, session, &grantee, role).await {
                Ok(shares) => {
                    self.send(ServerMessage::SessionShares { session, shares }).await;
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::UnshareSession { session, user: grantee } => match m.unshare(&user, session, &grantee).await {
                Ok(shares) => {
                    self.send(ServerMessage::SessionShares { session, shares }).await;
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::GetSessionShares { session } => match m.shares(&user, session).await {
                Ok(shares) => {
                    self.send(ServerMessage::SessionShares { session, shares }).await;
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::GetSharedSessions {} => match m.shared_with(&user).await {
                Ok(sessions) => {
                    self.send(ServerMessage::SharedSessions { sessions }).await;
                    Ok(())
                }
                Err(e) => Err(e.to_message()),
            },
            ClientMessage::Approve { session, .. } => {
                Err(ServerMessage::error(ErrorCode::Forbidden, format!("approve from a console joined to the session (your session {} cannot be approved by you)", session.0)))
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
