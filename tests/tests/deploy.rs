//! The documented deployment (docs/deploy.md): `deploy/nginx.conf`, as shipped, in front of relays on one PostgreSQL
//! store. Through Debian's nginx: the balancer's health checks, a login, the console's WebSocket (an HTTP Upgrade) with
//! a session and a command, a login made through the balancer valid at every relay behind it, and the same session
//! served whichever relay the balancer picks (no stickiness).
//!
//! Needs nginx (`scripts/setup.sh --test` installs nginx-light) and the test PostgreSQL (`scripts/postgres.sh`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use psgate_relay::config::Config;
use psgate_relay::store::Store;
use psgate_shared::api::{PipelineState, ServerMessage};
use psgate_tests::relay::{Client, Relay, get, login_at, outputs, postgres_database, relay_on};

/// nginx running `deploy/nginx.conf` with its `upstream` pointed at `relays` and listening on a free loopback port,
/// in a folder of its own (its pid, logs and temporary files); stopped when dropped.
struct Nginx {
    addr: SocketAddr,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(relays: &[SocketAddr]) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).is_file()).expect("nginx: scripts/setup.sh --test installs nginx-light");
        let dir = tempfile::tempdir().expect("a folder");
        let shipped = std::fs::read_to_string(psgate_tests::repo().join("deploy/nginx.conf")).expect("deploy/nginx.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        // The shipped file with this test's relays and port: its `server 127.0.0.1:808N …;` lines and `listen 80;`.
        let mut conf = String::new();
        let mut servers_written = false;
        for line in shipped.lines() {
            let t = line.trim_start();
            if t.starts_with("server 127.0.0.1:") {
                if !servers_written {
                    for r in relays {
                        conf.push_str(&format!("    server {r} max_fails=1 fail_timeout=10s;\n"));
                    }
                    servers_written = true;
                }
            } else if t == "listen 80;" {
                conf.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            } else {
                conf.push_str(line);
                conf.push('\n');
            }
        }
        assert!(servers_written && conf.contains(&format!("listen 127.0.0.1:{port};")), "deploy/nginx.conf has its upstream servers and `listen 80;`");
        let d = dir.path();
        std::fs::write(d.join("psgate.conf"), conf).expect("write");
        for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(d.join(temp)).expect("temp dir");
        }
        let main = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/psgate.conf;\n}}\n",
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), main).expect("write");
        // As root, nginx's workers run as `nobody`: they need to reach the temporary folders.
        use std::os::unix::fs::PermissionsExt as _;
        for p in [d.to_path_buf(), d.join("body"), d.join("proxy")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let child = tokio::process::Command::new(bin)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            // Its workers would hold the test's output open after it: nginx logs to its error.log only.
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = std::time::Instant::now() + psgate_tests::STEP;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx listens: {}", std::fs::read_to_string(d.join("error.log")).unwrap_or_default());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Nginx { addr, child, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILL would leave them running, orphaned).
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

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
