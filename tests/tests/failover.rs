//! Killing a relay of a deployment (issue 19): `psgate serve` processes on one PostgreSQL database behind nginx running
//! `deploy/nginx.conf`, a WinRM session streaming output through the balancer, and the relay holding it killed with
//! SIGKILL. The page's connection drops; reconnecting through the balancer, it is served by a surviving relay, which has
//! taken the session over with the protocol's Connect: the output goes on, contiguous, after a warning that says what
//! the dead relay may have lost. Nothing is lost silently.
//!
//! Needs nginx and the test PostgreSQL (`scripts/test.sh` starts it), and the `psgate` binary (built by cargo for the
//! tests).

#[path = "../../relay/tests/common/winrm_peer.rs"]
mod winrm_peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use psgate_relay::store::Store;
use psgate_shared::api::{PipelineState, RecordKind, ServerMessage, SessionState};
use psgate_tests::relay::{Client, login_at, outputs, postgres_database};
use psgate_tests::site::{Nginx, RelayProcess, reconnect};
use serde_json::json;
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

/// The `tick N` numbers of `Test-Long`'s output among `events`.
fn ticks(events: &[ServerMessage]) -> Vec<u64> {
    outputs(events).iter().filter_map(|v| v.as_str()?.strip_prefix("tick ")?.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_under_a_running_winrm_command_loses_no_output_silently() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let database = postgres_database("failover").await;
    let store = Arc::new(Store::open_url(&database).await.expect("the PostgreSQL store"));
    store.set_user("alice", "alice-pw").await.expect("user");
    let dir = tempfile::tempdir().expect("a folder");
    let key = dir.path().join("seal.key");
    let sshd = psgate_tests::Sshd::start(true).expect("sshd");
    let allow = format!(
        "known_hosts = \"{}\"\n[[allow]]\nhosts = [\"127.0.0.1\"]\nports = [{}]\ntransports = [\"winrm\"]\n[[allow]]\nhosts = [\"{}\"]\nports = [{}]\ntransports = [\"ssh\"]\n",
        sshd.get("known_hosts"),
        peer.port,
        sshd.get("host"),
        sshd.port()
    );
    let mut relays = Vec::new();
    for id in ["relay-1", "relay-2", "relay-3"] {
        relays.push(RelayProcess::start(dir.path(), id, &database, &key, &allow).await);
    }
    let nginx = Nginx::start(&relays.iter().map(|r| r.addr).collect::<Vec<_>>()).await;

    let cookie = login_at(nginx.addr, "alice", "alice-pw").await;
    let mut c = reconnect(nginx.addr, &cookie, psgate_tests::STEP).await;
    let target = json!({"computer_name": "127.0.0.1", "transport": "winrm", "port": peer.port, "user": USER, "password": PASSWORD, "authentication": "ntlm"});
    let s = c.new_session_on(target).await;
    let shell = c.sessions().await.into_iter().find(|i| i.id == s).and_then(|i| i.instance_id).expect("shell id");
    // And an SSH session, which cannot move: its connection is the relay process's.
    let ssh_target = json!({"computer_name": sshd.get("host"), "transport": "ssh", "port": sshd.port(), "user": sshd.get("user"), "password": sshd.password(), "name": "jump"});
    c.new_session_on(ssh_target).await;
    // A tick every 100 ms for 6 s.
    let p = c.run(s, "Test-Long -Seconds 6").await;
    let mut before = Vec::new();
    while ticks(&before).len() < 10 {
        let m = c.next().await;
        if m.seq().is_some() {
            before.push(m);
        }
    }
    let holder = store.winrm_sessions().await.expect("rows").into_iter().find(|r| r.key == shell).and_then(|r| r.relay).expect("held");
    let victim = relays.iter_mut().find(|r| r.id == holder).expect("the holder runs");
    victim.kill().await;
    let killed = Instant::now();

    // The page's connection drops (it went through the dead relay, or was served by it): the rest it had is read.
    loop {
        match tokio::time::timeout(psgate_tests::STEP, futures_util::StreamExt::next(&mut c.ws)).await.expect("the drop is seen") {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let m: ServerMessage = serde_json::from_str(t.as_str()).expect("a message");
                if m.seq().is_some() {
                    before.push(m);
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    let seen = ticks(&before);
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>(), "contiguous before the kill");

    // The page reconnects through the balancer: a survivor serves it, holding the session taken over, and tells it
    // of the pipeline its Connect re-attached, which the page follows (as it does any `pipeline_started`).
    let mut c: Client = reconnect(nginx.addr, &cookie, Duration::from_secs(30)).await;
    let (moved, p2) = c
        .until(|m| match m {
            ServerMessage::PipelineStarted { session, pipeline } => Some((*session, *pipeline)),
            _ => None,
        })
        .await;
    let mut after = Vec::new();
    let mut back_at = None;
    loop {
        let m = c.next().await;
        let done = matches!(&m, ServerMessage::PipelineState { pipeline, state, .. } if *pipeline == p2 && state.is_terminal());
        if matches!(&m, ServerMessage::Output { pipeline, .. } if *pipeline == p2) && back_at.is_none() {
            back_at = Some(killed.elapsed());
        }
        if m.seq().is_some() && !after.iter().any(|e: &ServerMessage| e.seq() == m.seq()) {
            after.push(m);
        }
        if done {
            break;
        }
    }
    let listed = c.sessions().await;
    assert!(listed.iter().any(|i| i.id == moved && i.instance_id.as_deref() == Some(shell.as_str())), "the WinRM session, taken over: {listed:?}");
    assert_eq!(moved, s, "under the id the page knew it by");
    eprintln!("output again {:?} after the SIGKILL (relay {holder})", back_at.expect("output after the takeover"));
    // The SSH session is Broken, saying why, and one action opens it again. (The relay that took the WinRM session
    // over showed it Broken first, in the same claim: within the time the output took to come back, under 10 s.)
    assert!(back_at.is_some_and(|t| t < Duration::from_secs(10)), "{back_at:?}");
    let broken = listed.iter().find(|i| i.name == "jump").expect("the SSH session is listed");
    assert_eq!(broken.state, SessionState::Broken, "{broken:?}");
    let reason = broken.reason.clone().unwrap_or_default();
    assert!(reason.starts_with(&format!("Held by relay {holder}, which stopped at ")) && reason.contains("a session over SSH cannot move to another relay"), "{reason}");
    c.send(json!({"type": "recreate_sessions", "ids": [broken.id]})).await;
    let again = c
        .until(|m| match m {
            ServerMessage::SessionChanged { session } if session.name == "jump" && session.state != SessionState::Opening && session.id != broken.id => Some(session.clone()),
            _ => None,
        })
        .await;
    assert_eq!(again.state, SessionState::Opened, "{again:?}");
    let p3 = c.run(again.id, "Write-Output 'back on ssh'").await;
    assert_eq!(outputs(&c.until_done(p3).await), vec![psgate_shared::clixml::Value::string("back on ssh")]);
    assert!(matches!(after.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{:?}", after.last());
    // Said, not silent: a warning first, naming the relay.
    let Some(ServerMessage::Record { kind: RecordKind::Warning, clixml, .. }) = after.first() else { panic!("a warning first: {:?}", after.first()) };
    assert!(clixml.contains(&format!("Relay {holder} stopped")) && clixml.contains("is lost"), "{clixml}");
    // Then the ticks from where the target's buffer began, contiguous to the end; anything between is what the
    // warning said may be lost, and nothing is repeated.
    let resumed = ticks(&after);
    let first = *resumed.first().expect("ticks after the takeover");
    assert_eq!(resumed, (first..first + resumed.len() as u64).collect::<Vec<_>>(), "contiguous after the takeover");
    assert!(first > *seen.last().expect("ticks before"), "nothing repeated: {first} after {:?}", seen.last());
    assert!(*resumed.last().expect("ticks") >= 55, "to the end of the 6 s: {:?}", resumed.last());
    let _ = p;
    // No credential in clear in any relay's log (each at `info`), nor in a dump of the shared database.
    for r in &relays {
        let log = std::fs::read_to_string(&r.log).unwrap_or_default();
        assert!(!log.is_empty(), "{} logged", r.id);
        for secret in [PASSWORD, "alice-pw", sshd.password().as_str()] {
            assert!(!log.contains(secret), "{} logged a password", r.id);
        }
    }
    let dump = tokio::process::Command::new("pg_dump").arg("--no-owner").arg(&database).output().await.expect("pg_dump runs");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("pinned_sessions") && !dump.contains(PASSWORD) && !dump.contains(sshd.password().as_str()), "no password in the dump");
}
