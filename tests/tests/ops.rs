//! The relay's operational endpoints as a balancer, an orchestrator and Prometheus see them: `/healthz` alive,
//! `/readyz` ready (503 while draining or when the store is gone), `/metrics` counting what users did; all three
//! without a login and still answered when `max_connections` is exhausted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use psgate_relay::config::Config;
use psgate_relay::quotas::Quotas;
use psgate_relay::store::Store;
use psgate_shared::api::{ErrorCode, ServerMessage};
use psgate_tests::relay::{Client, get, login, open_ws, outputs, relay, relay_on, relay_with};
use tokio::task::AbortHandle;

/// The value of `series` (its name and labels as the exposition writes them).
fn value(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

#[tokio::test]
async fn healthz_is_alive_and_readyz_turns_503_while_draining() {
    let relay = relay().await;
    assert_eq!(get(relay.addr, "/healthz").await, (200, "text/plain; charset=utf-8".to_owned(), "ok".to_owned()));
    assert_eq!(get(relay.addr, "/readyz").await.0, 200, "an in-memory store answers");
    relay.manager.set_draining(true);
    let (status, _, body) = get(relay.addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "draining"));
    assert_eq!(get(relay.addr, "/healthz").await.0, 200, "draining is not dead: no restart");
    relay.manager.set_draining(false);
    assert_eq!(get(relay.addr, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_output_websockets_and_quota_refusals() {
    let relay = relay_with(|c: &mut Config| c.quotas = Quotas { max_shells_per_user: Some(1), ..Quotas::default() }).await;
    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    let p = c.run(s, "Get-Process").await;
    let sent = outputs(&c.until_done(p).await).len();
    assert!(sent > 0);
    // A second session is beyond max_shells_per_user.
    c.send(serde_json::json!({"type": "new_sessions", "targets": [{"computer_name": "localhost", "transport": "local"}]})).await;
    let code = c.until(|m| if let ServerMessage::TargetRefused { code, .. } = m { Some(*code) } else { None }).await;
    assert_eq!(code, ErrorCode::QuotaExceeded);

    let (status, content_type, text) = get(relay.addr, "/metrics").await;
    assert_eq!(status, 200, "no login needed");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert_eq!(value(&text, r#"psgate_sessions{state="Opened",transport="local"}"#), 1.0);
    assert_eq!(value(&text, r#"psgate_sessions{state="Opened",transport="winrm"}"#), 0.0, "every transport and state is shown");
    assert_eq!(value(&text, "psgate_pipelines_running"), 0.0, "the command has ended");
    assert_eq!(value(&text, "psgate_websocket_connections"), 1.0);
    assert_eq!(value(&text, "psgate_objects_out_total"), sent as f64, "each output object sent once");
    assert!(value(&text, "psgate_bytes_out_total") > 0.0);
    assert_eq!(value(&text, r#"psgate_quota_refusals_total{quota="max_shells_per_user"}"#), 1.0);
    assert!(value(&text, r#"psgate_store_seconds_count{op="login"}"#) >= 1.0, "the WebSocket's login check is timed");
    assert!(value(&text, r#"psgate_store_seconds_count{op="is_admin"}"#) >= 1.0, "the hello's admin flag is timed");
    assert!(!text.contains("psgate_failovers_total"));

    // A closed WebSocket is no longer counted (however its connection ended).
    drop(c);
    let mut open = 1.0;
    for _ in 0..100 {
        open = value(&get(relay.addr, "/metrics").await.2, "psgate_websocket_connections");
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_endpoints_answer_when_max_connections_is_exhausted() {
    let relay = relay_with(|c: &mut Config| c.quotas.max_connections = Some(1)).await;
    let cookie = login(&relay, "alice", "alice-pw").await;
    let ws = open_ws(&relay, Some(&cookie), Some(&format!("http://{}", relay.addr))).await.expect("the one WebSocket");
    let (status, _, _) = get(relay.addr, "/api/config").await;
    assert_eq!(status, 503, "the API is full");
    for path in ["/healthz", "/readyz", "/metrics", "/healthz"] {
        assert_eq!(get(relay.addr, path).await.0, 200, "{path} is not counted");
    }
    let text = get(relay.addr, "/metrics").await.2;
    assert_eq!(value(&text, r#"psgate_quota_refusals_total{quota="max_connections"}"#), 1.0, "the 503 is counted");
    drop(ws);
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let relay = relay_with(|c: &mut Config| c.metrics = false).await;
    let (status, _, body) = get(relay.addr, "/metrics").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("metrics = false"), "{body}");
    assert_eq!(get(relay.addr, "/healthz").await.0, 200);
}

/// A TCP relay to the test PostgreSQL server that can be cut: the store's connections go through it, so cutting
/// it is the database server going away (its port refuses, its connections end).
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn to(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let kept = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                kept.lock().expect("tasks").push(task.abort_handle());
            }
        });
        tasks.lock().expect("tasks").push(accept.abort_handle());
        Proxy { port, tasks }
    }

    /// The server goes away: the listener closes, and every connection through it ends.
    fn cut(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_the_postgresql_store_is_gone() {
    let admin_url = std::env::var("PSGATE_TEST_POSTGRES")
        .expect("PSGATE_TEST_POSTGRES is not set: run `eval \"$(bash scripts/postgres.sh)\"` (it starts a throwaway PostgreSQL and prints the variable), then the tests again");
    let config: tokio_postgres::Config = admin_url.parse().expect("a PostgreSQL URL");
    let upstream = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(host)), port) => format!("{host}:{}", port.copied().unwrap_or(5432)),
        other => panic!("the test server is not on TCP: {other:?}"),
    };
    let user = config.get_user().unwrap_or("postgres").to_owned();
    // A database of the test's own, dropped at its end.
    let name = format!("psgate_ops_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await.expect("connecting to the test server");
    tokio::spawn(connection);
    // Left by an earlier process of the same id that died in the middle.
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.expect("dropping a leftover database");
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("a database");

    let proxy = Proxy::to(upstream).await;
    let store = Arc::new(Store::open_url(&format!("postgres://{user}@127.0.0.1:{}/{name}", proxy.port)).await.expect("the store opens through the proxy"));
    store.set_user("alice", "alice-pw").await.expect("user");
    let keys = tempfile::tempdir().expect("temp dir");
    let seal_key_file = keys.path().join("seal.key");
    let relay = relay_on(store, move |c: &mut Config| c.seal_key_file = Some(seal_key_file)).await;
    assert_eq!(get(relay.addr, "/readyz").await.0, 200, "the database answers");

    proxy.cut();
    let started = std::time::Instant::now();
    let (status, content_type, body) = get(relay.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(body.starts_with("store unreachable: ") && !body.contains('\n'), "one line with the reason: {body}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded, not the pool's own timeouts: {:?}", started.elapsed());
    assert_eq!(get(relay.addr, "/healthz").await.0, 200, "alive all the same: a restart would not bring the database back");

    drop(relay);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.expect("dropping the test's database");
}
