//! The documented deployment (docs/deploy.md): `deploy/nginx.conf`, as shipped, in front of relays on one PostgreSQL
//! store. Through Debian's nginx: the balancer's health checks, a login, the console's WebSocket (an HTTP Upgrade) with
//! a session and a command, a login made through the balancer valid at every relay behind it, and the same session
//! served whichever relay the balancer picks (no stickiness).
//!
//! Needs nginx (`scripts/setup.sh --test` installs nginx-light) and the test PostgreSQL (`scripts/postgres.sh`).

use std::path::Path;
use std::sync::Arc;

use psgate_relay::config::Config;
use psgate_relay::store::Store;
use psgate_shared::api::{PipelineState, ServerMessage};
use psgate_tests::relay::{Client, Relay, get, login_at, outputs, postgres_database, relay_on};
use psgate_tests::site::Nginx;

/// A relay of the deployment: registered in the store, heartbeating every second.
async fn relay(id: &str, store: &Arc<Store>, key: &Path) -> Relay {
    let (id, key) = (id.to_owned(), key.to_owned());
    let r = relay_on(store.clone(), move |c: &mut Config| {
        c.seal_key_file = Some(key);
        c.cluster.relay_id = Some(id);
        c.cluster.heartbeat_secs = 1;
    })
    .await;
    r.manager.join_cluster().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_nginx_configuration_serves_logins_websockets_and_health_checks_for_the_relays() {
    let store = Arc::new(Store::open_url(&postgres_database("deploy").await).await.expect("the PostgreSQL store"));
    store.set_user("alice", "alice-pw").await.expect("user");
    let dir = tempfile::tempdir().expect("a folder for the key");
    let key = dir.path().join("seal.key");
    let relays = [relay("relay-1", &store, &key).await, relay("relay-2", &store, &key).await, relay("relay-3", &store, &key).await];
    let nginx = Nginx::start(&relays.iter().map(|r| r.addr).collect::<Vec<_>>()).await;

    // What a balancer's health checks see.
    assert_eq!(get(nginx.addr, "/healthz").await.0, 200);
    let (status, _, body) = get(nginx.addr, "/readyz").await;
    assert_eq!((status, body.trim()), (200, "ready"), "{body}");

    // A login through the balancer is valid at every relay behind it.
    let cookie = login_at(nginx.addr, "alice", "alice-pw").await;
    for r in &relays {
        let origin = format!("http://{}", r.addr);
        let mut ws = psgate_tests::relay::open_ws(r, Some(&cookie), Some(&origin)).await.expect("each relay takes the login");
        let _ = futures_util::SinkExt::close(&mut ws).await;
    }

    // The console through the balancer: the WebSocket upgrade, a session, a command and its output.
    let mut c = Client::connect_at(nginx.addr, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Write-Output 'through nginx'").await;
    let events = c.until_done(p).await;
    assert!(matches!(events.last(), Some(ServerMessage::PipelineState { state: PipelineState::Completed, .. })), "{events:?}");
    assert_eq!(outputs(&events), vec![psgate_shared::clixml::Value::string("through nginx")]);
    // One relay holds it, and without stickiness the next connections land on the others (round robin), each served
    // the same session through its holder.
    let holders = relays.iter().filter(|r| !r.manager.list("alice", None, None).is_empty()).count();
    assert_eq!(holders, 1);
    for n in 0..3 {
        let mut again = Client::connect_at(nginx.addr, "alice").await;
        assert_eq!(again.sessions().await.iter().map(|i| i.id).collect::<Vec<_>>(), [s], "connection {n}");
        let p = again.run(s, &format!("Write-Output 'n{n}'")).await;
        assert_eq!(outputs(&again.until_done(p).await), vec![psgate_shared::clixml::Value::string(format!("n{n}"))]);
    }
    assert_eq!(relays.iter().filter(|r| !r.manager.list("alice", None, None).is_empty()).count(), 1, "still one holder");
    // The relays' channel is not for browsers: the balancer does not pass it on.
    assert_eq!(get(nginx.addr, "/internal/ws").await.0, 404);
}

/// The container deployment (`deploy/compose.yaml`): each relay's configuration loads as `psgate serve` reads it, and
/// the files agree with each other: one database and sealing key, distinct relay ids, each relay's channel address
/// its service name and listen port, which is where compose's nginx points the shipped upstream.
#[test]
fn the_compose_deployment_configures_three_relays_that_agree() {
    let deploy = psgate_tests::repo().join("deploy");
    let compose = std::fs::read_to_string(deploy.join("compose.yaml")).expect("deploy/compose.yaml");
    let shipped = std::fs::read_to_string(deploy.join("nginx.conf")).expect("deploy/nginx.conf");
    let mut seen = Vec::new();
    for n in 1..=3 {
        let file = deploy.join(format!("compose/relay-{n}.toml"));
        let config = Config::parse(&std::fs::read_to_string(&file).expect("the relay's file")).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(config.relay_id(), format!("relay-{n}"));
        assert_eq!(config.relay_address(), format!("http://relay-{n}:{}", config.listen.port()));
        assert!(config.database.is_postgres() && config.seal_key_file.is_some(), "relay-{n}: PostgreSQL and a sealing key");
        assert!(compose.contains(&format!("./compose/relay-{n}.toml:/etc/psgate/psgate.toml")), "compose mounts relay-{n}'s file");
        assert!(shipped.contains(&format!("server 127.0.0.1:808{n} ")), "the shipped upstream has the server compose replaces");
        assert!(compose.contains(&format!("s/127.0.0.1:808{n}/relay-{n}:{}/", config.listen.port())), "compose's nginx reaches relay-{n} where it listens");
        seen.push((config.database.to_string(), config.seal_key_file.clone()));
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "one database and one sealing key for all: {seen:?}");
}
