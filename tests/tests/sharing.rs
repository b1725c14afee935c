//! Shared sessions over the API (issue 20): no join without an invitation; an observer gets the kept backlog from
//! the first event, then live events, nothing lost or repeated, and cannot run, stop or answer; a peer runs
//! commands every participant sees (recorded as the peer's); everyone sees who is present; the owner's revocation
//! closes the joiner's console at once; an admin may observe any session; and all of it whichever relay each
//! participant's browser reaches.

use std::sync::Arc;

use psgate_relay::config::Config;
use psgate_relay::store::Store;
use psgate_shared::api::{ErrorCode, ServerMessage, SessionId, Share, ShareRole};
use psgate_shared::clixml::Value;
use psgate_tests::relay::{Client, Relay, outputs, relay_on};
use serde_json::json;

/// One relay on an SQLite store with alice (the owner), bob, carol and root (an admin).
async fn relay() -> (Relay, Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a folder");
    let store = Arc::new(Store::open(&dir.path().join("psgate.db")).expect("the store"));
    for u in ["alice", "bob", "carol", "root"] {
        store.set_user(u, &format!("{u}-pw")).await.expect("user");
    }
    store.set_admin("root", true).await.expect("admin");
    let key = dir.path().join("seal.key");
    let relay = relay_on(store.clone(), move |c: &mut Config| c.seal_key_file = Some(key)).await;
    (relay, store, dir)
}

async fn shares(c: &mut Client, message: serde_json::Value) -> Vec<Share> {
    c.send(message).await;
    c.until(|m| match m {
        ServerMessage::SessionShares { shares, .. } => Some(shares.clone()),
        ServerMessage::Error { code, message } => panic!("{code:?}: {message}"),
        _ => None,
    })
    .await
}

/// The shares after `message`, and who is present as last told while waiting for them (a joiner revoked leaves at
/// once: that can come before the answer).
async fn shares_seeing(c: &mut Client, message: serde_json::Value) -> (Vec<Share>, Option<Vec<Share>>) {
    c.send(message).await;
    let mut present = None;
    let shares = c
        .until(|m| match m {
            ServerMessage::SessionShares { shares, .. } => Some(shares.clone()),
            ServerMessage::Participants { participants, .. } => {
                present = Some(participants.clone());
                None
            }
            ServerMessage::Error { code, message } => panic!("{code:?}: {message}"),
            _ => None,
        })
        .await;
    (shares, present)
}

fn share(user: &str, role: Option<ShareRole>) -> Share {
    Share { user: user.into(), role }
}

/// The texts of a joined console's outputs until `pipeline_state` of the pipeline that printed `last`.
async fn texts_until(c: &mut Client, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = c.next().await;
        if let ServerMessage::Output { .. } = &m {
            let text = outputs(std::slice::from_ref(&m)).first().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let done = text == last;
            seen.push(text);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_sees_everything_types_nothing_and_is_gone_when_revoked() {
    let (relay, store, _dir) = relay().await;
    let mut alice = Client::connect(&relay, "alice").await;
    let s = alice.new_session().await;
    let p = alice.run(s, "Write-Output 'before 1'; Write-Output 'before 2'").await;
    alice.until_done(p).await;
    // No join without an invitation (nor of a session that does not exist).
    assert_eq!(Client::join_at(relay.addr, "bob", "alice", s).await.err(), Some(403));
    assert_eq!(Client::join_at(relay.addr, "bob", "alice", SessionId(99)).await.err(), Some(403));
    // Only the owner shares, only with a relay user.
    alice.send(json!({"type": "share_session", "session": s, "user": "nobody", "role": "observer"})).await;
    assert_eq!(alice.error().await.0, ErrorCode::BadMessage);
    // Bob's page open on this relay is told of the invitation at once.
    let mut bob_lobby = Client::connect(&relay, "bob").await;
    assert_eq!(shares(&mut alice, json!({"type": "share_session", "session": s, "user": "bob", "role": "observer"})).await, [share("bob", Some(ShareRole::Observer))]);
    let mut carol = Client::connect(&relay, "carol").await;
    carol.send(json!({"type": "share_session", "session": s, "user": "carol", "role": "peer"})).await;
    assert_eq!(carol.error().await.0, ErrorCode::UnknownSession, "carol has no session 1 of her own");
    let shared = bob_lobby.until(|m| if let ServerMessage::SharedSessions { sessions } = m { Some(sessions.clone()) } else { None }).await;
    assert_eq!(shared.iter().map(|x| (x.owner.as_str(), x.session, x.role)).collect::<Vec<_>>(), [("alice", s, ShareRole::Observer)]);
    // And a page that opens later asks for them.
    let mut bob_later = Client::connect(&relay, "bob").await;
    bob_later.send(json!({"type": "get_shared_sessions"})).await;
    let asked = bob_later.until(|m| if let ServerMessage::SharedSessions { sessions } = m { Some(sessions.clone()) } else { None }).await;
    assert_eq!(asked, shared);

    // Bob joins: the session, his role, who is there, the backlog from its first event.
    let mut bob = Client::join_at(relay.addr, "bob", "alice", s).await.expect("joined");
    let joined = bob.until(|m| if let ServerMessage::Joined { owner, session, role } = m { Some((owner.clone(), session.id, *role)) } else { None }).await;
    assert_eq!(joined, ("alice".into(), s, ShareRole::Observer));
    let present = bob.until(|m| if let ServerMessage::Participants { participants, .. } = m { Some(participants.clone()) } else { None }).await;
    assert_eq!(present, [share("alice", None), share("bob", Some(ShareRole::Observer))]);
    let seen_by_alice = alice.until(|m| if let ServerMessage::Participants { participants, .. } = m { (participants.len() == 2).then(|| participants.clone()) } else { None }).await;
    assert_eq!(seen_by_alice, present, "the owner sees who joined");
    assert_eq!(texts_until(&mut bob, "before 2").await, ["before 1", "before 2"]);
    // Live: what alice runs, bob sees, once.
    let p = alice.run(s, "Write-Output 'live 1'; Write-Output 'live 2'").await;
    alice.until_done(p).await;
    assert_eq!(texts_until(&mut bob, "live 2").await, ["live 1", "live 2"], "nothing lost, nothing repeated");
    // An observer types nothing.
    for message in [
        json!({"type": "run", "session": s, "script": "Remove-Item C:\\x"}),
        json!({"type": "stop", "session": s, "pipeline": p}),
        json!({"type": "host_response", "session": s, "pipeline": p, "call_id": 1, "answer": {"kind": "value", "clixml": "<S>x</S>"}}),
        json!({"type": "get_sessions"}),
    ] {
        bob.send(message.clone()).await;
        assert_eq!(bob.error().await.0, ErrorCode::Forbidden, "{message}");
    }

    // A peer runs commands; everyone sees them.
    assert_eq!(shares(&mut alice, json!({"type": "share_session", "session": s, "user": "bob", "role": "peer"})).await, [share("bob", Some(ShareRole::Peer))]);
    bob.send(json!({"type": "run", "session": s, "script": "Write-Output 'from bob'"})).await;
    assert_eq!(texts_until(&mut bob, "from bob").await, ["from bob"]);
    let p = alice.until(|m| if let ServerMessage::PipelineStarted { session, pipeline } = m { (*session == s).then_some(*pipeline) } else { None }).await;
    assert_eq!(outputs(&alice.until_done(p).await), [Value::string("from bob")], "the owner's console shows the peer's command");

    // An admin observes any session without an invitation.
    let mut root = Client::join_at(relay.addr, "root", "alice", s).await.expect("an admin's seat");
    let role = root.until(|m| if let ServerMessage::Joined { role, .. } = m { Some(*role) } else { None }).await;
    assert_eq!(role, ShareRole::Observer);
    // Carol, not invited, still cannot.
    assert_eq!(Client::join_at(relay.addr, "carol", "alice", s).await.err(), Some(403));

    // Revoked: told, closed at once; joining again refused.
    let (after, present) = shares_seeing(&mut alice, json!({"type": "unshare_session", "session": s, "user": "bob"})).await;
    assert_eq!(after, []);
    bob.until(|m| matches!(m, ServerMessage::ShareRevoked { .. }).then_some(())).await;
    assert_eq!(bob.closed_with().await, Some(4403));
    assert_eq!(Client::join_at(relay.addr, "bob", "alice", s).await.err(), Some(403));
    let left = match present.filter(|p| p.len() == 2) {
        Some(p) => p,
        None => alice.until(|m| if let ServerMessage::Participants { participants, .. } = m { (participants.len() == 2).then(|| participants.clone()) } else { None }).await,
    };
    assert_eq!(left, [share("alice", None), share("root", Some(ShareRole::Observer))]);
    // The session's end ends the admin's seat too.
    alice.send(json!({"type": "remove_sessions", "ids": [s]})).await;
    assert_eq!(root.closed_with().await, Some(4410));

    // The audit has the sharing, and the peer's command as his.
    relay.manager.flush_audit().await;
    let records = store.audit_page(&psgate_relay::store::AuditFilter { kinds: vec!["sharing".into(), "pipeline".into()], ..Default::default() }, 0, 100).await.expect("audit");
    let events: Vec<psgate_relay::audit::Event> = records.iter().filter_map(|r| r.event()).collect();
    let sharing: Vec<(String, String)> = events.iter().filter(|e| e.kind == psgate_relay::audit::Kind::Sharing).map(|e| (e.actor.clone(), e.data["action"].as_str().unwrap_or_default().to_owned())).collect();
    for expected in [("alice", "share"), ("bob", "join"), ("root", "join"), ("alice", "revoke"), ("bob", "leave")] {
        assert!(sharing.iter().any(|(a, x)| a == expected.0 && x == expected.1), "{expected:?} in {sharing:?}");
    }
    let by_bob = events.iter().find(|e| e.data["command"] == "Write-Output 'from bob'").expect("recorded");
    assert_eq!((by_bob.actor.as_str(), by_bob.owner.as_deref()), ("bob", Some("alice")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderated_sessions_pipelines_wait_for_a_moderator_each_one_and_the_decision_is_recorded() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = Arc::new(Store::open(&dir.path().join("psgate.db")).expect("the store"));
    for u in ["alice", "bob", "root"] {
        store.set_user(u, &format!("{u}-pw")).await.expect("user");
    }
    let key = dir.path().join("seal.key");
    let relay = relay_on(store.clone(), move |c: &mut Config| {
        c.seal_key_file = Some(key);
        c.allow[0].moderation = Some(psgate_relay::config::Moderation { moderators: vec!["root".into()], pass: vec!["Get-*".into(), "Write-Output".into()] });
    })
    .await;
    let mut alice = Client::connect(&relay, "alice").await;
    let s = alice.new_session().await;
    // Commands that pass run at once.
    let p = alice.run(s, "Write-Output 'passes'").await;
    assert_eq!(outputs(&alice.until_done(p).await), [Value::string("passes")]);
    // Others wait, said in the console, to everyone present, and to the moderator's own page.
    let mut root_page = Client::connect(&relay, "root").await;
    let waiting = alice.run(s, "Start-Sleep -Milliseconds 10; Write-Output 'approved'").await;
    let asked = root_page.until(|m| if let ServerMessage::ApprovalRequested { owner, session, pipeline, .. } = m { Some((owner.clone(), *session, *pipeline)) } else { None }).await;
    assert_eq!(asked, ("alice".to_owned(), s, waiting), "the moderator's page names the owner's session");
    let (requested_by, moderators) = alice.until(|m| if let ServerMessage::ApprovalRequested { pipeline, requested_by, moderators, .. } = m { (*pipeline == waiting).then(|| (requested_by.clone(), moderators.clone())) } else { None }).await;
    assert_eq!((requested_by.as_str(), moderators), ("alice", vec!["root".to_owned()]));
    // Not by its owner, nor by anyone who is not a moderator.
    alice.send(json!({"type": "approve", "session": s, "pipeline": waiting, "approve": true})).await;
    assert_eq!(alice.error().await.0, ErrorCode::Forbidden);
    alice.send(json!({"type": "share_session", "session": s, "user": "bob", "role": "peer"})).await;
    alice.until(|m| matches!(m, ServerMessage::SessionShares { .. }).then_some(())).await;
    let mut bob = Client::join_at(relay.addr, "bob", "alice", s).await.expect("joined");
    bob.send(json!({"type": "approve", "session": s, "pipeline": waiting, "approve": true})).await;
    assert_eq!(bob.error().await.0, ErrorCode::Forbidden, "a peer is not a moderator");
    // The moderator joins without an invitation, sees what waits, approves it: it runs.
    let mut root = Client::join_at(relay.addr, "root", "alice", s).await.expect("a moderator's seat");
    let pending = root.until(|m| if let ServerMessage::ApprovalRequested { pipeline, command, .. } = m { Some((*pipeline, command.clone())) } else { None }).await;
    assert_eq!(pending, (waiting, "Start-Sleep -Milliseconds 10; Write-Output 'approved'".to_owned()));
    root.send(json!({"type": "approve", "session": s, "pipeline": waiting, "approve": true})).await;
    let decided = root_page.until(|m| if let ServerMessage::ApprovalDecided { owner, pipeline, approved, .. } = m { Some((owner.clone(), *pipeline, *approved)) } else { None }).await;
    assert_eq!(decided, ("alice".to_owned(), waiting, true), "and of the decision");
    let events = alice.until_done(waiting).await;
    assert_eq!(outputs(&events), [Value::string("approved")]);
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: psgate_shared::api::PipelineState::Completed, .. })));
    // Each pipeline, not the session: the next one waits again; denied, it fails with the reason.
    let denied = alice.run(s, "Stop-Service Spooler").await;
    root.until(|m| matches!(m, ServerMessage::ApprovalRequested { pipeline, .. } if *pipeline == denied).then_some(())).await;
    root.send(json!({"type": "approve", "session": s, "pipeline": denied, "approve": false, "reason": "not during business hours"})).await;
    let events = alice.until_done(denied).await;
    let Some(ServerMessage::PipelineState { state, error: Some(error), .. }) = events.last() else { panic!("{events:?}") };
    let error = psgate_shared::psrp::messages::ErrorRecordView::from_value(&psgate_shared::clixml::decode_message(error.as_bytes()).expect("CLIXML"));
    assert_eq!((*state, error.message.as_str()), (psgate_shared::api::PipelineState::Failed, "The command was denied by the moderator root: not during business hours."));
    // Ctrl+C on a waiting pipeline stops it; the session is free again.
    let stopped = alice.run(s, "Restart-Computer").await;
    alice.until(|m| matches!(m, ServerMessage::ApprovalRequested { pipeline, .. } if *pipeline == stopped).then_some(())).await;
    alice.send(json!({"type": "stop", "session": s, "pipeline": stopped})).await;
    let events = alice.until_done(stopped).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: psgate_shared::api::PipelineState::Stopped, .. })));
    let p = alice.run(s, "Write-Output 'free'").await;
    assert_eq!(outputs(&alice.until_done(p).await), [Value::string("free")]);
    // Recorded: each request and decision, by whom.
    relay.manager.flush_audit().await;
    let records = store.audit_page(&psgate_relay::store::AuditFilter { kinds: vec!["approval".into()], ..Default::default() }, 0, 100).await.expect("audit");
    let decisions: Vec<(String, String)> = records.iter().filter_map(|r| r.event()).map(|e| (e.actor, e.data["action"].as_str().unwrap_or_default().to_owned())).collect();
    assert_eq!(decisions, [("alice".into(), "requested".into()), ("root".into(), "approved".into()), ("alice".into(), "requested".into()), ("root".into(), "denied".into()), ("alice".into(), "requested".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_invited_through_its_members_and_revoking_it_ends_only_theirs() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = Arc::new(Store::open(&dir.path().join("psgate.db")).expect("the store"));
    for u in ["alice", "bob", "carol", "dave"] {
        store.set_user(u, &format!("{u}-pw")).await.expect("user");
    }
    let key = dir.path().join("seal.key");
    let relay = relay_on(store.clone(), move |c: &mut Config| {
        c.seal_key_file = Some(key);
        c.groups.insert("ops".into(), vec!["bob".into(), "carol".into()]);
    })
    .await;
    let mut alice = Client::connect(&relay, "alice").await;
    let s = alice.new_session().await;
    alice.send(json!({"type": "share_session", "session": s, "user": "group:nobody", "role": "observer"})).await;
    assert_eq!(alice.error().await.0, ErrorCode::BadMessage, "a group the configuration does not name");
    // Shared with the group: each member's page is told, and each may join; nobody else may.
    let mut carol_page = Client::connect(&relay, "carol").await;
    assert_eq!(shares(&mut alice, json!({"type": "share_session", "session": s, "user": "group:ops", "role": "observer"})).await, [share("group:ops", Some(ShareRole::Observer))]);
    let told = carol_page.until(|m| if let ServerMessage::SharedSessions { sessions } = m { Some(sessions.clone()) } else { None }).await;
    assert_eq!(told.iter().map(|x| (x.owner.as_str(), x.session, x.role)).collect::<Vec<_>>(), [("alice", s, ShareRole::Observer)]);
    assert_eq!(Client::join_at(relay.addr, "dave", "alice", s).await.err(), Some(403), "not a member");
    let mut carol = Client::join_at(relay.addr, "carol", "alice", s).await.expect("a member joins");
    assert_eq!(carol.until(|m| if let ServerMessage::Joined { role, .. } = m { Some(*role) } else { None }).await, ShareRole::Observer);
    // Bob, a member invited on his own too as a peer, has the stronger role.
    shares(&mut alice, json!({"type": "share_session", "session": s, "user": "bob", "role": "peer"})).await;
    let mut bob = Client::join_at(relay.addr, "bob", "alice", s).await.expect("bob joins");
    assert_eq!(bob.until(|m| if let ServerMessage::Joined { role, .. } = m { Some(*role) } else { None }).await, ShareRole::Peer);
    // The group revoked: carol's console is told and closed; bob's own invitation keeps his.
    let (left, _) = shares_seeing(&mut alice, json!({"type": "unshare_session", "session": s, "user": "group:ops"})).await;
    assert_eq!(left, [share("bob", Some(ShareRole::Peer))]);
    carol.until(|m| matches!(m, ServerMessage::ShareRevoked { .. }).then_some(())).await;
    assert_eq!(carol.closed_with().await, Some(4403));
    assert_eq!(Client::join_at(relay.addr, "carol", "alice", s).await.err(), Some(403));
    bob.send(json!({"type": "run", "session": s, "script": "Write-Output 'still a peer'"})).await;
    assert_eq!(texts_until(&mut bob, "still a peer").await, ["still a peer"]);
}
