//! Several relays on one PostgreSQL store (issue 19): a relay that stops hands its WinRM sessions over, and a surviving
//! relay takes them over with the protocol's Connect (from the kept ShellId and the sealed credentials): a pipeline
//! that ran on goes on from where the target buffered it, with nothing lost; a session its user had disconnected stays
//! disconnected; two survivors racing for the sessions take each exactly once.
//!
//! Needs the test PostgreSQL server: `eval "$(bash scripts/postgres.sh)"` (scripts/test.sh does).

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;
mod at_prompt;

use std::sync::Arc;

use psgate_relay::config::{AllowRule, Config};
use psgate_relay::store::{PromptPart, Store};
use psgate_shared::api::{HostAnswer, PipelineState, ServerMessage, SessionId, SessionState, Transport};
use psgate_tests::relay::{Client, Relay, indexes, outputs, postgres_database, relay_on};
use serde_json::json;
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

/// A relay named `id` on `store`, allowed to reach the peer; its password sealing key is `key` (shared by the relays).
async fn relay(id: &str, store: &Arc<Store>, key: &std::path::Path, peer: &WinrmPeer) -> Relay {
    relay_configured(id, store, key, peer, |_| {}).await
}

/// [`relay`] with its configuration changed by `change`.
async fn relay_configured(id: &str, store: &Arc<Store>, key: &std::path::Path, peer: &WinrmPeer, change: impl FnOnce(&mut Config)) -> Relay {
    let (id, key, port) = (id.to_owned(), key.to_owned(), peer.port);
    relay_on(store.clone(), move |c: &mut Config| {
        c.allow.push(AllowRule { hosts: vec!["127.0.0.1".into()], ports: vec![port], transports: vec![Transport::Winrm], ..AllowRule::default() });
        c.seal_key_file = Some(key);
        c.cluster.relay_id = Some(id);
        change(c);
    })
    .await
}

fn target(peer: &WinrmPeer) -> serde_json::Value {
    json!({"computer_name": "127.0.0.1", "transport": "winrm", "port": peer.port, "user": USER, "password": PASSWORD, "authentication": "ntlm"})
}

/// The pipeline a relay's Connect re-attached in `session` (one it took over), as a page follows it: told by
/// `pipeline_started` (live, or first thing on its connection when the Connect came before it), then its events
/// from the first.
async fn follow_reattached(c: &mut Client, session: SessionId) -> Vec<ServerMessage> {
    let p = c
        .until(|m| match m {
            ServerMessage::PipelineStarted { session: s, pipeline } if *s == session => Some(*pipeline),
            _ => None,
        })
        .await;
    c.until_done(p).await
}

/// The URL of the database [`site`] made for `name`.
fn store_url(name: &str) -> String {
    let url = std::env::var("PSGATE_TEST_POSTGRES").expect("PSGATE_TEST_POSTGRES");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    format!("{base}/psgate_it{}_{name}", std::process::id())
}

/// `pg_dump` of the database at `url` (Debian's newest PostgreSQL client), as text.
async fn pg_dump(url: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's PostgreSQL")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/pg_dump")))
        .filter(|p| p.is_file())
        .max()
        .expect("pg_dump");
    let out = tokio::process::Command::new(bin).arg("--no-owner").arg(url).output().await.expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("text")
}

/// What the relays of one test share: the WinRM peer (started with `options`), the PostgreSQL store (a database of
/// the test's own, with the user alice), a folder, and the sealing key's file in it.
async fn site(name: &str, options: PeerOptions) -> (WinrmPeer, Arc<Store>, tempfile::TempDir, std::path::PathBuf) {
    let peer = WinrmPeer::start(options);
    let url = postgres_database(name).await;
    let store = Arc::new(Store::open_url(&url).await.expect("the PostgreSQL store"));
    store.set_user("alice", "alice-pw").await.expect("user");
    let dir = tempfile::tempdir().expect("a folder for the key");
    let key = dir.path().join("seal.key");
    (peer, store, dir, key)
}

/// relay-a and relay-b configured by `change`, registered in the store and heartbeating every second (as deployed):
/// neither is ever deemed gone while a test runs.
async fn beating_pair(store: &Arc<Store>, key: &std::path::Path, peer: &WinrmPeer, change: impl Fn(&mut Config) + Copy) -> (Relay, Relay) {
    let beating = move |c: &mut Config| {
        c.cluster.heartbeat_secs = 1;
        change(c);
    };
    let a = relay_configured("relay-a", store, key, peer, beating).await;
    let b = relay_configured("relay-b", store, key, peer, beating).await;
    a.manager.join_cluster().await;
    b.manager.join_cluster().await;
    (a, b)
}

/// [`relay`], registered in the store and heartbeating.
async fn joined(id: &str, store: &Arc<Store>, key: &std::path::Path, peer: &WinrmPeer) -> Relay {
    let r = relay(id, store, key, peer).await;
    r.manager.join_cluster().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_hands_its_winrm_sessions_over_and_a_running_pipeline_loses_nothing() {
    let (peer, store, _dir, key) = site("handover", PeerOptions { extra: vec!["--buffer-bytes".into(), "20000".into()], ..PeerOptions::default() }).await;
    let a = joined("relay-a", &store, &key, &peer).await;
    let b = joined("relay-b", &store, &key, &peer).await;
    assert_eq!(b.manager.cluster_tick().await, 0, "nothing to take over while relay-a runs");

    // On relay A: a session running a pipeline, and one its user disconnected.
    let mut c = Client::connect(&a, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    let shell = c.sessions().await.into_iter().find(|i| i.id == s).and_then(|i| i.instance_id).expect("shell id");
    let p = c.run(s, "Write-Output first; Start-Sleep -Milliseconds 1500; Get-Objects -Count 500").await;
    c.until(|m| matches!(m, ServerMessage::Output { pipeline, .. } if *pipeline == p).then_some(())).await;
    let parked = c.new_session_on(target(&peer)).await;
    let parked_shell = c.sessions().await.into_iter().find(|i| i.id == parked).and_then(|i| i.instance_id).expect("shell id");
    c.send(json!({"type": "disconnect_sessions", "ids": [parked]})).await;
    c.until(|m| matches!(m, ServerMessage::SessionChanged { session } if session.id == parked && session.state == SessionState::Disconnected).then_some(())).await;

    // Relay A stops cleanly (as on SIGTERM): its sessions disconnected, the store told.
    a.manager.shutdown(psgate_tests::STEP).await;
    a.manager.leave_cluster().await;
    drop(c);
    // What a dump of the shared database holds: the shells, never the target password in clear.
    let dump = pg_dump(&store_url("handover")).await;
    assert!(dump.contains(&shell) && dump.contains(&parked_shell), "the kept shells are in the dump");
    assert!(!dump.contains(PASSWORD), "the target password is not in a pg_dump of the store");
    assert!(!dump.contains("alice-pw"), "nor the relay user's password");
    let held: Vec<_> = store.winrm_sessions().await.expect("rows").into_iter().map(|r| (r.key, r.relay, r.resume)).collect();
    assert!(held.contains(&(shell.clone(), Some("relay-a".into()), true)), "open when its relay stopped: {held:?}");
    assert!(held.contains(&(parked_shell.clone(), Some("relay-a".into()), false)), "disconnected by its user: {held:?}");

    // Relay B's next heartbeat takes both over; the one that was open is connected again at once.
    assert_eq!(b.manager.cluster_tick().await, 2);
    let (_, _, metrics) = psgate_tests::relay::get(b.addr, "/metrics").await;
    assert!(metrics.lines().any(|l| l == "psgate_failovers_total{how=\"stopped\"} 2"), "{metrics}");
    assert!(store.winrm_sessions().await.expect("rows").iter().all(|r| r.relay.as_deref() == Some("relay-b")), "relay-b holds them now");
    let mut c = Client::connect(&b, "alice").await;
    let moved = b.manager.list("alice", None, None).into_iter().find(|i| i.instance_id.as_deref() == Some(shell.as_str())).expect("the running session").id;
    // The pipeline that ran on while no relay held it: re-attached by relay B's Connect (before alice's page came back,
    // or after), the page is told and gets its events from the start without asking.
    assert_eq!(moved, s, "the session keeps its id on relay-b (alice's page and prompt go on naming it so)");
    let events = follow_reattached(&mut c, moved).await;
    assert_eq!(indexes(&events), (0..500).collect::<Vec<_>>(), "every object produced while no relay held the session, in order");
    let listed = c.sessions().await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let kept = listed.iter().find(|i| i.instance_id.as_deref() == Some(parked_shell.as_str())).expect("the parked session");
    assert_eq!(kept.state, SessionState::Disconnected, "its user disconnected it: it waits for their Connect");
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })));
    let p = c.run(moved, "Write-Output after").await;
    assert_eq!(outputs(&c.until_done(p).await), vec![psgate_shared::clixml::Value::string("after")]);
    // The user's own Connect still works for the parked one.
    c.send(json!({"type": "connect_sessions", "ids": [kept.id]})).await;
    c.until(|m| matches!(m, ServerMessage::SessionChanged { session } if session.id == kept.id && session.state == SessionState::Opened).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_survivors_racing_take_each_session_exactly_once() {
    let (peer, store, _dir, key) = site("race", PeerOptions::default()).await;
    let a = joined("relay-a", &store, &key, &peer).await;
    let mut c = Client::connect(&a, "alice").await;
    let mut ids: Vec<SessionId> = Vec::new();
    for _ in 0..4 {
        ids.push(c.new_session_on(target(&peer)).await);
    }
    a.manager.shutdown(psgate_tests::STEP).await;
    a.manager.leave_cluster().await;
    drop(c);
    let b = relay("relay-b", &store, &key, &peer).await;
    let d = relay("relay-d", &store, &key, &peer).await;
    let (from_b, from_d) = tokio::join!(b.manager.cluster_tick(), d.manager.cluster_tick());
    assert_eq!(from_b + from_d, 4, "each of the four once: {from_b} + {from_d}");
    let on = |r: &Relay| r.manager.list("alice", None, None).into_iter().filter_map(|i| i.instance_id).collect::<Vec<_>>();
    let (mut on_b, on_d) = (on(&b), on(&d));
    assert_eq!((on_b.len(), on_d.len()), (from_b, from_d));
    on_b.extend(on_d);
    on_b.sort();
    on_b.dedup();
    assert_eq!(on_b.len(), 4, "no session on both relays");
    let rows = store.winrm_sessions().await.expect("rows");
    assert_eq!(rows.iter().filter(|r| r.relay.as_deref() == Some("relay-b")).count(), from_b);
    assert_eq!(rows.iter().filter(|r| r.relay.as_deref() == Some("relay-d")).count(), from_d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_dies_holding_a_running_session_is_taken_over_and_the_loss_is_said() {
    let (peer, store, _dir, key) = site("died", PeerOptions { extra: vec!["--buffer-bytes".into(), "20000".into()], ..PeerOptions::default() }).await;
    let a = joined("relay-a", &store, &key, &peer).await;
    let b = joined("relay-b", &store, &key, &peer).await;
    let mut c = Client::connect(&a, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    let shell = c.sessions().await.into_iter().find(|i| i.id == s).and_then(|i| i.instance_id).expect("shell id");
    let p = c.run(s, "Write-Output first; Start-Sleep -Milliseconds 1500; Get-Objects -Count 500").await;
    c.until(|m| matches!(m, ServerMessage::Output { pipeline, .. } if *pipeline == p).then_some(())).await;

    // Relay A dies as a killed process would: not a word more to the target (whose shell stays connected to it),
    // nothing written to the store, no heartbeat since a minute ago.
    a.manager.abandon_winrm_sessions("relay-a was killed");
    store.register_relay("relay-a", "http://relay-a", psgate_tests::unix_ms() - 60_000).await.expect("a stale heartbeat");
    // Alice's browser reconnects and reaches relay-b: her relay is gone, so relay-b takes her session over at once
    // (its heartbeat would have, a moment later).
    let mut c = Client::connect(&b, "alice").await;
    assert_eq!(b.manager.cluster_tick().await, 0, "taken over already, when alice's connection reached relay-b");
    let (_, _, metrics) = psgate_tests::relay::get(b.addr, "/metrics").await;
    assert!(metrics.lines().any(|l| l == "psgate_failovers_total{how=\"died\"} 1"), "{metrics}");
    // Said plainly, never silent: what relay A had received and not delivered is gone.
    let notice = c
        .until(|m| match m {
            ServerMessage::TargetRefused { message, .. } if message.starts_with("Relay relay-a stopped without handing session") => Some(message.clone()),
            _ => None,
        })
        .await;
    // (Its last heartbeat a minute before the takeover, give or take the second the test took.)
    assert!((notice.contains("(silent for 60 s)") || notice.contains("(silent for 61 s)")) && notice.contains("Output relay-a had received and not yet delivered is lost"), "{notice}");
    let moved = b.manager.list("alice", None, None).into_iter().find(|i| i.instance_id.as_deref() == Some(shell.as_str())).expect("taken over").id;
    assert_eq!(moved, s, "its id kept");
    // Connected though the target held it for relay-a; its pipeline re-attached.
    let events = follow_reattached(&mut c, moved).await;
    // The page's own re-attach of the pipeline relay-a ran (its id, the seq it had reached) reaches nothing on relay-b:
    // never another pipeline of the session under the same id, whose first events it would skip as seen.
    assert!(!events.iter().any(|e| matches!(e, ServerMessage::PipelineState { pipeline, .. } | ServerMessage::Output { pipeline, .. } if *pipeline == p)));
    c.send(json!({"type": "attach", "session": s, "pipeline": p, "after_seq": 3})).await;
    assert_eq!(c.error().await.0, psgate_shared::api::ErrorCode::UnknownPipeline);
    // The gap is said where it is, first in the re-attached pipeline's output, as a warning.
    let Some(ServerMessage::Record { kind: psgate_shared::api::RecordKind::Warning, clixml, .. }) = events.first() else { panic!("a warning first: {:?}", events.first()) };
    let warning = psgate_shared::clixml::decode_message(clixml.as_bytes()).expect("CLIXML");
    let text = warning.as_object().and_then(|o| o.property("InformationalRecord_Message")).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    assert!(text.starts_with("Relay relay-a stopped (silent for 6") && text.contains("output it had received and not yet delivered is lost"), "{text}");
    let got = indexes(&events);
    let first = *got.first().expect("output after the takeover");
    assert_eq!(got, (first..500).collect::<Vec<_>>(), "from where relay-a stopped receiving, contiguous to the end");
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })));
    // Relay A, were it to come back, cannot take the session back by writing to the store.
    let mut row = store.winrm_sessions().await.expect("rows").into_iter().find(|r| r.key == shell).expect("kept");
    assert_eq!(row.relay.as_deref(), Some("relay-b"));
    row.relay = Some("relay-a".into());
    store.put_winrm_session(&row).await.expect("put");
    assert_eq!(store.winrm_sessions().await.expect("rows").into_iter().find(|r| r.key == shell).and_then(|r| r.relay).as_deref(), Some("relay-b"));
}

/// A GET with a cookie: the status.
async fn get_with(relay: &Relay, path: &str, cookie: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n", relay.addr);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_made_on_one_relay_is_valid_on_all_and_a_logout_ends_it_everywhere() {
    let (peer, store, _dir, key) = site("logins", PeerOptions::default()).await;
    let a = relay("relay-a", &store, &key, &peer).await;
    let b = relay("relay-b", &store, &key, &peer).await;
    let cookie = psgate_tests::relay::login(&a, "alice", "alice-pw").await;
    assert_eq!(get_with(&b, "/api/me", &cookie).await, 200, "relay-b knows the login made on relay-a");
    let origin = format!("http://{}", b.addr);
    let mut ws = psgate_tests::relay::open_ws(&b, Some(&cookie), Some(&origin)).await.expect("relay-b opens the WebSocket for it");
    // Logged out on relay-a: relay-b refuses the cookie, and closes its WebSocket within seconds.
    let (status, _) = psgate_tests::relay::post_with_cookie(a.addr, "/api/logout", &cookie).await;
    assert_eq!(status, 204);
    assert_eq!(get_with(&b, "/api/me", &cookie).await, 401);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        use futures_util::StreamExt as _;
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => return frame.map(|f| f.reason.to_string()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("relay-b closed the WebSocket of a login ended on relay-a");
    assert_eq!(closed.as_deref(), Some("logged out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_deemed_gone_lets_go_of_its_sessions_and_one_never_registered_keeps_them() {
    let (peer, store, _dir, key) = site("deemed", PeerOptions::default()).await;
    // relay-a has not registered yet (its store was down when it started, say): its heartbeat registers it, and its
    // session goes on.
    let a = relay("relay-a", &store, &key, &peer).await;
    let mut c = Client::connect(&a, "alice").await;
    let s = c.new_session_on(target(&peer)).await;
    assert_eq!(a.manager.cluster_tick().await, 0);
    assert!(store.relays().await.expect("relays").iter().any(|r| r.id == "relay-a" && r.stopped.is_none()), "registered by its heartbeat");
    assert_eq!(a.manager.list("alice", None, None)[0].state, SessionState::Opened);
    // Deemed gone by another relay, which took its session: relay-a lets go of it, saying where it went.
    store.register_relay("relay-b", "http://relay-b", psgate_tests::unix_ms()).await.expect("relay-b is up");
    store.relay_stopped("relay-a", psgate_tests::unix_ms()).await.expect("stopped");
    assert_eq!(store.claim_relay("relay-a", "relay-b", psgate_tests::unix_ms()).await.expect("claim").winrm.len(), 1);
    a.manager.cluster_tick().await;

    let info = c
        .until(|m| match m {
            ServerMessage::SessionChanged { session } if session.id == s && session.state == SessionState::Broken => Some(session.clone()),
            _ => None,
        })
        .await;
    assert_eq!(info.reason.as_deref(), Some("Relay relay-a lost touch with the store and another relay took this session over: reach it there."));
    assert_eq!(store.winrm_sessions().await.expect("rows")[0].relay.as_deref(), Some("relay-b"), "the store still has it at relay-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psgate_drain_asks_a_relay_through_the_store_to_hand_over_and_stop() {
    let (peer, store, dir, key) = site("drain", PeerOptions::default()).await;
    let a = joined("relay-a", &store, &key, &peer).await;
    let b = joined("relay-b", &store, &key, &peer).await;
    let mut c = Client::connect(&a, "alice").await;
    let shell = {
        let s = c.new_session_on(target(&peer)).await;
        c.sessions().await.into_iter().find(|i| i.id == s).and_then(|i| i.instance_id).expect("shell id")
    };
    // `psgate drain --relay relay-a`, from anywhere with the configuration: it waits until relay-a has stopped.
    let file = dir.path().join("psgate.toml");
    std::fs::write(&file, format!("database = \"{}\"\nseal_key_file = \"{}\"\n", store_url("drain"), key.display())).expect("config");
    let drain = tokio::task::spawn_blocking(move || psgate_relay::cli::serve::drain(Some(&file), Some("relay-a"), std::time::Duration::from_secs(30)));
    // relay-a sees it at its heartbeat: not ready any more, and `psgate serve` stops as on SIGTERM (done here by hand).
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    while !store.relays().await.expect("relays").iter().any(|r| r.id == "relay-a" && r.drain) {
        assert!(std::time::Instant::now() < deadline, "psgate drain asked");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    a.manager.cluster_tick().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), a.manager.drain_asked()).await.expect("relay-a was asked to drain");
    assert_eq!(psgate_tests::relay::get(a.addr, "/readyz").await.2.trim(), "draining");
    a.manager.shutdown(psgate_tests::STEP).await;
    a.manager.leave_cluster().await;
    drain.await.expect("joined").expect("psgate drain saw relay-a stop");
    assert_eq!(b.manager.cluster_tick().await, 1);
    assert!(b.manager.list("alice", None, None).iter().any(|i| i.instance_id.as_deref() == Some(shell.as_str())), "relay-b holds the session now");
    // Asking a relay that does not run is an error, not a wait.
    let file = dir.path().join("psgate.toml");
    let again = tokio::task::spawn_blocking(move || psgate_relay::cli::serve::drain(Some(&file), Some("relay-a"), std::time::Duration::from_secs(1))).await.expect("joined");
    assert!(again.is_err_and(|e| e.to_string().contains("no relay relay-a is running")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_relay_serves_a_user_through_the_relay_holding_their_sessions() {
    let (peer, store, _dir, key) = site("channel", PeerOptions::default()).await;
    store.set_user("bob", "bob-pw").await.expect("user");
    let (a, b) = beating_pair(&store, &key, &peer, |_| {}).await;
    let mut on_a = Client::connect(&a, "alice").await;
    let s = on_a.new_session_on(target(&peer)).await;

    // Alice's second tab reaches relay-b (a balancer without stickiness): relay-a, which holds her session, serves it
    // through the relay channel, with the API unchanged.
    let mut on_b = Client::connect(&b, "alice").await;
    assert_eq!(on_b.sessions().await.iter().map(|i| i.id).collect::<Vec<_>>(), [s]);
    let p = on_b.run(s, "Get-Objects -Count 300").await;
    let events = on_b.until_done(p).await;
    assert_eq!(indexes(&events), (0..300).collect::<Vec<_>>());
    // A resume after seq 100, through relay-b: contiguous from 101.
    on_b.send(json!({"type": "attach", "session": s, "pipeline": p, "after_seq": 100})).await;
    let again = on_b.until_done(p).await;
    let seqs: Vec<u64> = again.iter().filter_map(ServerMessage::seq).collect();
    assert_eq!(seqs, (101..=events.len() as u64).collect::<Vec<_>>());
    assert!(b.manager.list("alice", None, None).is_empty() && a.manager.list("alice", None, None).len() == 1, "one relay holds alice's session");
    // Bob, who has no home yet, is served where he lands.
    let mut bob = Client::connect(&b, "bob").await;
    bob.new_session_on(target(&peer)).await;
    assert_eq!((a.manager.list("bob", None, None).len(), b.manager.list("bob", None, None).len()), (0, 1));

    // The channel takes only a relay's signed request, for a login that is current and the user's.
    let cookie = psgate_tests::relay::login(&b, "alice", "alice-pw").await;
    let login_key = psgate_relay::http::auth::token_key(cookie.split_once('=').expect("name=value").1);
    let address = format!("http://{}", a.addr);
    let login = |user: &str, key: &str| psgate_relay::http::auth::Login { user: user.into(), key: key.into() };
    assert!(psgate_relay::http::channel::connect(&b.manager, &address, &login("alice", &login_key), None).await.is_ok());
    let refused = |r: Result<_, psgate_relay::http::channel::ChannelError>| match r {
        Err(psgate_relay::http::channel::ChannelError::Status { status, .. }) => status,
        Err(e) => panic!("{e}"),
        Ok(_) => 200,
    };
    assert_eq!(refused(psgate_relay::http::channel::connect(&b.manager, &address, &login("bob", &login_key), None).await), 401, "alice's login is not bob's");
    assert_eq!(refused(psgate_relay::http::channel::connect(&b.manager, &address, &login("alice", &"0".repeat(64)), None).await), 401, "no such login");
    // A relay with another sealing key is no relay of this deployment.
    let other_dir = tempfile::tempdir().expect("a folder");
    let stranger = relay("relay-x", &store, &other_dir.path().join("other.key"), &peer).await;
    assert_eq!(refused(psgate_relay::http::channel::connect(&stranger.manager, &address, &login("alice", &login_key), None).await), 401, "signed with another key");
    // Nor may a browser (its cookie is no signature).
    let origin = format!("http://{}", a.addr);
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{}/internal/ws", a.addr)).expect("request");
    request.headers_mut().insert("cookie", cookie.parse().expect("header"));
    request.headers_mut().insert("origin", origin.parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("{other:?}"),
    }

    // A logout on relay-b ends the connection served through it, with the login's close code.
    let mut ws = psgate_tests::relay::open_ws(&b, Some(&cookie), Some(&format!("http://{}", b.addr))).await.expect("websocket");
    assert_eq!(psgate_tests::relay::post_with_cookie(b.addr, "/api/logout", &cookie).await.0, 204);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        use futures_util::StreamExt as _;
        while let Some(frame) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = frame {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("closed within the recheck");
    assert_eq!(closed, Some((4001, "logged out".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_cannot_move_are_shown_broken_by_the_relay_taking_over_and_opened_again_with_one_action() {
    let (peer, store, _dir, key) = site("pinned", PeerOptions::default()).await;
    let a = joined("relay-a", &store, &key, &peer).await;
    let b = joined("relay-b", &store, &key, &peer).await;
    let mut c = Client::connect(&a, "alice").await;
    c.new_session().await;
    // relay-a stops: its local session ends with it (its process is the connection).
    a.manager.shutdown(psgate_tests::STEP).await;
    a.manager.leave_cluster().await;
    drop(c);
    assert_eq!(b.manager.cluster_tick().await, 0, "no WinRM session to take over");
    let mut c = Client::connect(&b, "alice").await;
    let listed = c.sessions().await;
    let broken = listed.iter().find(|i| i.name == "demo").expect("listed by relay-b").clone();
    assert_eq!(broken.state, SessionState::Broken, "{broken:?}");
    let reason = broken.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("Held by relay relay-a, which stopped at ") && reason.ends_with(" UTC: a session over the local host cannot move to another relay. Re-create it to open it again."), "{reason}");
    let claimed: Vec<String> = store.pinned_of("relay-b").await.expect("rows").into_iter().map(|r| r.key).collect();
    assert_eq!(claimed.len(), 1, "relay-b holds the broken session's row now");
    // One action: the same target, name and credentials, opened on relay-b.
    c.send(json!({"type": "recreate_sessions", "ids": [broken.id]})).await;
    let again = c
        .until(|m| match m {
            ServerMessage::SessionChanged { session } if session.name == "demo" && session.id != broken.id && session.state != SessionState::Opening => Some(session.clone()),
            _ => None,
        })
        .await;
    assert_eq!(again.state, SessionState::Opened, "{again:?}");
    let p = c.run(again.id, "Write-Output 'again'").await;
    assert_eq!(outputs(&c.until_done(p).await), vec![psgate_shared::clixml::Value::string("again")]);
    assert_eq!(c.sessions().await.iter().map(|i| i.id).collect::<Vec<_>>(), [again.id], "the broken one is gone");
    // The store keeps the new one, at relay-b (the broken one forgotten).
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    // (Written in the background: waited for.)
    loop {
        let keys: Vec<String> = store.pinned_of("relay-b").await.expect("rows").into_iter().map(|r| r.key).collect();
        if keys.len() == 1 && keys != claimed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "relay-b keeps the new session only: {keys:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(store.pinned_of("relay-a").await.expect("rows").is_empty());
    // Only a broken session is re-created.
    c.send(json!({"type": "recreate_sessions", "ids": [again.id]})).await;
    let (code, message) = c.error().await;
    assert_eq!(code, psgate_shared::api::ErrorCode::SessionNotReady, "{message}");
    assert_eq!(c.sessions().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_shows_its_own_sessions_that_ended_with_it_as_broken() {
    // One relay on SQLite, as the README runs it, restarted.
    let store = Arc::new(Store::in_memory().expect("the store"));
    store.set_user("alice", "alice-pw").await.expect("user");
    let first = relay_on(store.clone(), |_| {}).await;
    let mut c = Client::connect(&first, "alice").await;
    c.new_session().await;
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    while store.pinned_of("test-relay").await.expect("rows").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the local session kept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(c);
    first.manager.shutdown(psgate_tests::STEP).await;
    drop(first);
    let second = relay_on(store.clone(), |_| {}).await;
    let mut c = Client::connect(&second, "alice").await;
    let listed = c.sessions().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].name.as_str(), listed[0].state), ("demo", SessionState::Broken));
    let reason = listed[0].reason.clone().unwrap_or_default();
    assert!(reason.starts_with("Held by this relay (test-relay) before it restarted at ") && reason.contains("a session over the local host ends with its relay"), "{reason}");
}

/// New-PSSession through `c`: whether the relay took it (false: refused by a quota, in PowerShell's words).
async fn new_session_taken(c: &mut Client) -> bool {
    c.send(json!({"type": "new_sessions", "targets": [{"computer_name": "localhost", "transport": "local"}]})).await;
    let mut refused = false;
    loop {
        match c.next().await {
            ServerMessage::TargetRefused { code: psgate_shared::api::ErrorCode::QuotaExceeded, .. } => refused = true,
            ServerMessage::Sessions { .. } => return !refused,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_racing_for_a_users_last_shell_one_wins() {
    let (peer, store, _dir, key) = site("quota_race", PeerOptions::default()).await;
    let (a, b) = beating_pair(&store, &key, &peer, |c| c.quotas.max_shells_per_user = Some(2)).await;
    let mut on_a = Client::connect(&a, "alice").await;
    on_a.new_session().await;
    // Alice's two tabs, one on each relay, ask for her last shell at once: the relay holding her sessions decides both,
    // under one lock, so exactly one is taken.
    let mut on_b = Client::connect(&b, "alice").await;
    for round in 0..5 {
        let (x, y) = tokio::join!(new_session_taken(&mut on_a), new_session_taken(&mut on_b));
        assert!(x ^ y, "round {round}: exactly one of the two relays' requests is taken ({x}, {y})");
        let held = a.manager.list("alice", None, None);
        assert_eq!(held.iter().filter(|i| i.state != SessionState::Broken).count(), 2, "{held:?}");
        assert!(b.manager.list("alice", None, None).is_empty(), "relay-b holds none of alice's");
        let last = held.iter().map(|i| i.id).max().expect("a session");
        a.manager.remove("alice", Some(&[last])).expect("removed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_users_counts_every_relays_users_and_two_racing_for_the_last_slot_one_wins() {
    let (peer, store, _dir, key) = site("users_race", PeerOptions::default()).await;
    for u in ["bob", "carol"] {
        store.set_user(u, &format!("{u}-pw")).await.expect("user");
    }
    let (a, b) = beating_pair(&store, &key, &peer, |c| c.quotas.max_concurrent_users = Some(2)).await;
    // Alice holds a session on relay-a; bob (served by relay-b) and carol (by relay-a) ask for the last slot at once.
    let mut alice = Client::connect(&a, "alice").await;
    alice.new_session().await;
    let mut bob = Client::connect(&b, "bob").await;
    let mut carol = Client::connect(&a, "carol").await;
    let (x, y) = tokio::join!(new_session_taken(&mut bob), new_session_taken(&mut carol));
    assert!(x ^ y, "exactly one of the two relays admits its user ({x}, {y}): each counts the other's");
    let (mut loser, winner_relay) = if x { (carol, &b) } else { (bob, &a) };
    // The winner's last session removed, the slot is free for the other, whichever relay serves them.
    let name = if x { "bob" } else { "carol" };
    let ids: Vec<SessionId> = winner_relay.manager.list(name, None, None).iter().map(|i| i.id).collect();
    winner_relay.manager.remove(name, Some(&ids)).expect("removed");
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    while !new_session_taken(&mut loser).await {
        assert!(std::time::Instant::now() < deadline, "the slot freed on one relay is taken on the other");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompts_modules_and_entered_session_follow_a_user_taken_over() {
    let (peer, store, _dir, key) = site("prompt_moves", PeerOptions::default()).await;
    let a = joined("relay-a", &store, &key, &peer).await;
    let b = joined("relay-b", &store, &key, &peer).await;
    let mut c = Client::connect(&a, "alice").await;
    at_prompt::prompt_with(&mut c, "$cred = Get-Credential", vec![HostAnswer::Credential { user: USER.into(), password: PASSWORD.into() }]).await;
    for line in [
        format!("$session = New-PSSession -ComputerName 127.0.0.1 -Port {} -Credential $cred", peer.port),
        "Invoke-Command -Command { Import-Module ActiveDirectory } -Session $session".into(),
        "Import-PSSession -Session $session -Module ActiveDirectory -Prefix rem".into(),
        "Enter-PSSession $session".into(),
    ] {
        let shown = at_prompt::prompt(&mut c, &line).await;
        assert_eq!((shown.state, shown.errors.len()), (PipelineState::Completed, 0), "{line}: {shown:?}");
    }
    let s = c.sessions().await[0].id;
    // The modules are kept when they change, the entered session with the line's state.
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    while store.prompt(PromptPart::Modules, "alice").await.expect("read").is_none() {
        assert!(std::time::Instant::now() < deadline, "the modules kept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Relay A dies; alice's next connection reaches relay-b, which takes her over: her prompt is still inside the
    // session (taken over with its id), with the module's commands.
    a.manager.abandon_winrm_sessions("relay-a was killed");
    store.register_relay("relay-a", "http://relay-a", psgate_tests::unix_ms() - 60_000).await.expect("a stale heartbeat");
    let mut c = Client::connect(&b, "alice").await;
    let entered = c
        .until(|m| match m {
            ServerMessage::PromptState { entered } => Some(*entered),
            _ => None,
        })
        .await;
    assert_eq!(entered, Some(s), "still inside the session");
    let commands = c
        .until(|m| match m {
            ServerMessage::PromptModules { modules } => modules.first().map(|m| m.commands.clone()),
            _ => None,
        })
        .await;
    assert!(commands.iter().any(|n| n == "New-remADUser"), "{commands:?}");
    let shown = at_prompt::prompt(&mut c, "exit").await;
    assert_eq!(at_prompt::entered_after(&mut c, &shown).await, None, "{shown:?}");
    // The proxies run in the session relay-b took over, and return its objects.
    let shown = at_prompt::prompt(&mut c, "New-remADUser -Name ada -SamAccountName ada -PassThru | % SamAccountName").await;
    assert_eq!((at_prompt::lines(&shown.text), shown.errors.len()), (vec!["ada".to_owned()], 0), "{shown:?}");
    let shown = at_prompt::prompt(&mut c, "(Get-Command Get-remADUser).Source -like 'tmp_*'; (Get-PSSession).Id").await;
    assert_eq!(at_prompt::lines(&shown.text), ["True", &s.0.to_string()], "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_removed_as_soon_as_it_opens_leaves_no_row_behind() {
    // Else the relay, restarted, would show a session its user removed as Broken.
    let (peer, store, _dir, key) = site("pinned_race", PeerOptions::default()).await;
    let a = relay("relay-a", &store, &key, &peer).await;
    let local: psgate_shared::api::Target = serde_json::from_value(json!({"computer_name": "localhost", "transport": "local"})).expect("a target");
    for _ in 0..20 {
        let info = a.manager.create("alice", local.clone()).expect("opened");
        a.manager.remove("alice", Some(&[info.id])).expect("removed");
    }
    // The writes go on in the background; each removal after its row's write.
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    loop {
        let left = store.pinned_of("relay-a").await.expect("rows").len();
        if left == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} sessions removed are still kept");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_shared_whichever_relay_each_participants_browser_reaches() {
    let (peer, store, _dir, key) = site("sharing", PeerOptions::default()).await;
    store.set_user("bob", "bob-pw").await.expect("bob");
    let (a, b) = beating_pair(&store, &key, &peer, |_| {}).await;
    // Alice's sessions are on relay-a; bob's browser reaches relay-b.
    let mut alice = Client::connect(&a, "alice").await;
    let s = alice.new_session().await;
    let p = alice.run(s, "Write-Output 'kept'").await;
    alice.until_done(p).await;
    assert_eq!(Client::join_at(b.addr, "bob", "alice", s).await.err(), Some(403), "no invitation, through relay-b too");
    // Bob's page, on relay-b, hears of the invitation made on relay-a (within five heartbeats: 5 s here).
    let mut bob_page = Client::connect(&b, "bob").await;
    alice.send(json!({"type": "share_session", "session": s, "user": "bob", "role": "observer"})).await;
    alice.until(|m| matches!(m, ServerMessage::SessionShares { .. }).then_some(())).await;
    let invited = bob_page.until(|m| if let ServerMessage::SharedSessions { sessions } = m { Some(sessions.clone()) } else { None }).await;
    assert_eq!(invited.iter().map(|x| (x.owner.as_str(), x.session)).collect::<Vec<_>>(), [("alice", s)]);
    let mut bob = Client::join_at(b.addr, "bob", "alice", s).await.expect("joined through relay-b");
    let role = bob.until(|m| if let ServerMessage::Joined { role, .. } = m { Some(*role) } else { None }).await;
    assert_eq!(role, psgate_shared::api::ShareRole::Observer);
    let kept = bob.until(|m| matches!(m, ServerMessage::Output { .. }).then(|| outputs(std::slice::from_ref(m)))).await;
    assert_eq!(kept, [psgate_shared::clixml::Value::string("kept")]);
    let p = alice.run(s, "Write-Output 'live'").await;
    alice.until_done(p).await;
    let live = bob.until(|m| matches!(m, ServerMessage::Output { pipeline, .. } if *pipeline == p).then(|| outputs(std::slice::from_ref(m)))).await;
    assert_eq!(live, [psgate_shared::clixml::Value::string("live")]);
    bob.send(json!({"type": "run", "session": s, "script": "Stop-Computer"})).await;
    assert_eq!(bob.error().await.0, psgate_shared::api::ErrorCode::Forbidden);
    // Revoked on relay-a: bob's console through relay-b closes with the same code.
    alice.send(json!({"type": "unshare_session", "session": s, "user": "bob"})).await;
    assert_eq!(bob.closed_with().await, Some(4403));
    // And his page's list loses it.
    let left = bob_page.until(|m| if let ServerMessage::SharedSessions { sessions } = m { Some(sessions.clone()) } else { None }).await;
    assert!(left.is_empty(), "{left:?}");
}
