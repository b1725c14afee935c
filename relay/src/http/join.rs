//! `GET /api/ws?join=OWNER/ID`: a console joined to another user's shared session (issue 20).
//!
//! The relay holding the session (the owner's home) serves it, whichever relay the joiner's browser reached: that
//! relay checks the joiner's login and `Origin` and, when the owner's home is another relay, opens the relay channel
//! to it for the joiner (signed, with the session named). The home checks the invitation (or the joiner's admin
//! right, for an observer's seat), then sends `hello`, `joined` (the session, the role), `participants`, and the
//! session's kept pipelines (`history`, each followed from its first event), then its live events: nothing lost or
//! repeated, because it listens to the session's changes before it reads what is kept, and follows a pipeline once.
//!
//! An observer's `run`, `stop`, `host_response` and `complete` are refused (`forbidden`); a peer's run as the
//! owner's session and are recorded as the peer's. Anything about other sessions is refused. The owner's
//! `unshare_session` tells the joiner (`share_revoked`) and closes the console at once ([`CLOSE_REVOKED`]); so does
//! the session's end.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt as _;
use psgate_shared::api::{ClientMessage, ErrorCode, PROTOCOL_VERSION, PipelineId, ServerMessage, SessionId, SessionState, ShareRole};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::auth::{Auth, CLOSE_LOGIN_ENDED};
use super::ws::{OUTBOX, pump, write};
use crate::session::manager::{Manager, Scope};

/// The close code of a console whose share the owner revoked.
pub const CLOSE_REVOKED: u16 = 4403;
/// The close code of a console whose session ended.
pub const CLOSE_SESSION_ENDED: u16 = 4410;

/// `join=OWNER/ID` in a query string (percent-encoded as a browser sends it): the owner and the session (`Err`: a
/// join asked, not readable).
pub fn parse(query: Option<&str>) -> Option<Result<(String, SessionId), String>> {
    let value = form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "join").map(|(_, v)| v.into_owned())?;
    Some(match value.rsplit_once('/') {
        Some((owner, id)) if !owner.is_empty() => id.parse::<u64>().map(|id| (owner.to_owned(), SessionId(id))).map_err(|_| format!("join={value}: the session is OWNER/ID, as alice/3")),
        _ => Err(format!("join={value}: the session is OWNER/ID, as alice/3")),
    })
}

/// `OWNER/ID` as a query value (what [`parse`] reads back).
pub fn encode(owner: &str, session: SessionId) -> String {
    form_urlencoded::byte_serialize(format!("{owner}/{}", session.0).as_bytes()).collect()
}

/// Serves a joined console of `owner`'s session held here to `login`'s user, once their invitation (or admin or
/// moderator seat) is checked: 403 without one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn upgrade(ws: axum::extract::WebSocketUpgrade, manager: Arc<Manager>, auth: Arc<Auth>, user: String, key: String, owner: String, session: SessionId, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match manager.join_access(&user, &owner, session).await {
        Ok((role, invited)) => ws.on_upgrade(move |socket| async move {
            let open = manager.metrics().websocket_opened();
            joined(socket, manager, user, owner, session, role, invited, auth, key).await;
            drop((open, permit));
        }),
        Err(e) => {
            tracing::warn!(joiner = %user, %owner, session = session.0, error = %e.message, "a join refused");
            (axum::http::StatusCode::FORBIDDEN, e.message).into_response()
        }
    }
}

/// What concerns `session` among the owner's changes, for this joiner.
fn concerns(message: &ServerMessage, session: SessionId) -> bool {
    match message {
        ServerMessage::SessionChanged { session: info } => info.id == session,
        ServerMessage::PipelineStarted { session: s, .. }
        | ServerMessage::Participants { session: s, .. }
        | ServerMessage::ShareRevoked { session: s, .. }
        | ServerMessage::ApprovalRequested { session: s, .. }
        | ServerMessage::ApprovalDecided { session: s, .. } => *s == session,
        _ => false,
    }
}

/// Serves a joined console of `owner`'s session `session` to `joiner`, as `role`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn joined(socket: WebSocket, manager: Arc<Manager>, joiner: String, owner: String, session: SessionId, role: ShareRole, invited: bool, auth: Arc<Auth>, key: String) {
    let (sink, mut stream) = socket.split();
    let (out, outbox) = mpsc::channel::<ServerMessage>(OUTBOX);
    let (close, closing) = tokio::sync::oneshot::channel::<(u16, String)>();
    let writer = tokio::spawn(write(sink, outbox, closing, manager.metrics().clone()));
    // Listening first: a pipeline that starts while the kept ones are read is heard, and followed once.
    let mut changes = manager.changes();
    let seat = manager.join(&joiner, &owner, session, role, invited);
    let Some(info) = manager.list(&owner, None, None).into_iter().find(|i| i.id == session) else { return };
    let _ = out.send(ServerMessage::Hello { protocol: PROTOCOL_VERSION, server: env!("CARGO_PKG_VERSION").into(), user: joiner.clone(), admin: manager.is_admin(&joiner).await }).await;
    let _ = out.send(ServerMessage::Joined { owner: owner.clone(), session: info, role }).await;
    let _ = out.send(ServerMessage::Participants { session, participants: manager.participants(&owner, session) }).await;
    let mut followers: HashMap<PipelineId, JoinHandle<()>> = HashMap::new();
    let follow = |followers: &mut HashMap<PipelineId, JoinHandle<()>>, pipeline: PipelineId, after_seq: u64| {
        if followers.get(&pipeline).is_some_and(|t| !t.is_finished()) && after_seq == 0 {
            return;
        }
        if let Ok(buffer) = manager.buffer(&owner, session, pipeline) {
            let out = out.clone();
            let task = tokio::spawn(async move {
                let _ = pump(&out, pipeline, &buffer, after_seq).await;
            });
            if let Some(old) = followers.insert(pipeline, task) {
                old.abort();
            }
        }
    };
    // The backlog: the session's kept pipelines, each from its first event.
    let backlog = |manager: &Manager| {
        let (pipelines, _) = manager.history(&owner);
        pipelines.into_iter().filter(|(r, _)| r.session == session).map(|(r, _)| r).collect::<Vec<_>>()
    };
    let kept = backlog(&manager);
    let _ = out.send(ServerMessage::History { pipelines: kept.clone(), invocations: Vec::new() }).await;
    for r in &kept {
        follow(&mut followers, r.pipeline, 0);
    }
    // What waits for a moderator now (a moderator who joins decides on it).
    for request in manager.pending_approvals(&owner, session) {
        let _ = out.send(request).await;
    }
    let login_ended = auth.ended(&key);
    tokio::pin!(login_ended);
    let forbidden = |what: &str| ServerMessage::error(ErrorCode::Forbidden, format!("{what}: you observe {owner}'s session {}; only its owner and peers may", session.0));
    let ended: Option<(u16, String)> = loop {
        tokio::select! {
            why = &mut login_ended => break Some((CLOSE_LOGIN_ENDED, auth.reason(why))),
            change = changes.recv() => {
                let change = match change {
                    Ok(c) => c,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = out.send(ServerMessage::error(ErrorCode::OutputDropped, format!("{n} session changes were missed; join again to see the current state"))).await;
                        continue;
                    }
                    Err(_) => break None,
                };
                let for_me = match &change.scope {
                    Scope::All | Scope::Joiners => true,
                    Scope::Joiner(user) => *user == joiner,
                };
                if change.owner != owner || !for_me || !concerns(&change.message, session) {
                    continue;
                }
                match change.message {
                    ServerMessage::ShareRevoked { .. } => {
                        let _ = out.send(change.message).await;
                        break Some((CLOSE_REVOKED, format!("{owner} stopped sharing session {} with you", session.0)));
                    }
                    ServerMessage::PipelineStarted { pipeline, .. } => {
                        let _ = out.send(change.message).await;
                        follow(&mut followers, pipeline, 0);
                    }
                    ServerMessage::SessionChanged { session: ref info } if info.state == SessionState::Closed => {
                        let _ = out.send(change.message.clone()).await;
                        break Some((CLOSE_SESSION_ENDED, format!("{owner} closed session {}", session.0)));
                    }
                    message => {
                        let _ = out.send(message).await;
                    }
                }
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break None };
                if matches!(frame, Message::Text(_) | Message::Binary(_)) && let Err(why) = auth.touch(&key).await {
                    break Some((CLOSE_LOGIN_ENDED, auth.reason(why)));
                }
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Close(_) => break None,
                    _ => continue,
                };
                let message = match serde_json::from_str::<ClientMessage>(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = out.send(ServerMessage::error(ErrorCode::BadMessage, format!("not a message: {e}"))).await;
                        continue;
                    }
                };
                // The role now: the owner may have changed it, or revoked it.
                let Some(role) = manager.join_role(&owner, session, seat.seat) else {
                    break Some((CLOSE_REVOKED, format!("{owner} stopped sharing session {} with you", session.0)));
                };
                let peer = role == ShareRole::Peer;
                let result: Result<(), ServerMessage> = match message {
                    ClientMessage::Hello { .. } => Ok(()),
                    ClientMessage::Run { session: s, script } if s == session => {
                        if peer { manager.run_as_peer(&joiner, &owner, s, script).map(drop).map_err(|e| e.to_message()) } else { Err(forbidden("run")) }
                    }
                    ClientMessage::Stop { session: s, pipeline } if s == session => {
                        if peer { manager.stop(&owner, s, pipeline).map_err(|e| e.to_message()) } else { Err(forbidden("stop")) }
                    }
                    ClientMessage::HostResponse { session: s, pipeline, call_id, answer } if s == session => {
                        if peer { manager.answer(&owner, s, pipeline, call_id, answer).map_err(|e| e.to_message()) } else { Err(forbidden("host_response")) }
                    }
                    ClientMessage::Complete { session: s, input, cursor } if s == session => {
                        if peer {
                            match manager.complete(&owner, s, input, cursor) {
                                Ok(answer) => {
                                    let out = out.clone();
                                    tokio::spawn(async move {
                                        if let Ok(message) = answer.await {
                                            let _ = out.send(message).await;
                                        }
                                    });
                                    Ok(())
                                }
                                Err(e) => Err(e.to_message()),
                            }
                        } else {
                            Err(forbidden("complete"))
                        }
                    }
                    ClientMessage::Approve { session: s, pipeline, approve, reason } if s == session => manager.decide(&joiner, &owner, s, pipeline, approve, reason).map_err(|e| e.to_message()),
                    ClientMessage::Attach { session: s, pipeline, after_seq } if s == session => {
                        follow(&mut followers, pipeline, after_seq);
                        Ok(())
                    }
                    ClientMessage::GetHistory { replay } => {
                        let kept = backlog(&manager);
                        let _ = out.send(ServerMessage::History { pipelines: kept.clone(), invocations: Vec::new() }).await;
                        if replay {
                            for r in &kept {
                                follow(&mut followers, r.pipeline, 0);
                            }
                        }
                        Ok(())
                    }
                    _ => Err(ServerMessage::error(ErrorCode::Forbidden, format!("a joined console follows {owner}'s session {} only", session.0))),
                };
                if let Err(message) = result {
                    let _ = out.send(message).await;
                }
            }
        }
    };
    for (_, f) in followers.drain() {
        f.abort();
    }
    drop(seat);
    match ended {
        // The login's end: closed at once.
        Some((CLOSE_LOGIN_ENDED, reason)) => {
            let _ = close.send((CLOSE_LOGIN_ENDED, reason));
            drop(out);
            let _ = writer.await;
        }
        // Revoked, or the session ended: what was queued (the notice) goes first, then the close.
        Some((code, reason)) => {
            drop(out);
            if let Ok(Some(mut sink)) = writer.await {
                use futures_util::SinkExt as _;
                let _ = sink.send(Message::Close(Some(axum::extract::ws::CloseFrame { code, reason: reason.into() }))).await;
            }
        }
        None => {
            drop(out);
            let _ = writer.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_queries() {
        assert_eq!(parse(Some("join=alice%2F3")), Some(Ok(("alice".into(), SessionId(3)))));
        assert_eq!(parse(Some("x=1&join=contoso%5Cada/12")), Some(Ok(("contoso\\ada".into(), SessionId(12)))));
        assert_eq!(parse(Some(&format!("join={}", encode("contoso\\ada lee", SessionId(7))))), Some(Ok(("contoso\\ada lee".into(), SessionId(7)))));
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some("x=1")), None);
        assert!(matches!(parse(Some("join=alice")), Some(Err(_))));
        assert!(matches!(parse(Some("join=/3")), Some(Err(_))));
        assert!(matches!(parse(Some("join=alice/x")), Some(Err(_))));
    }
}
