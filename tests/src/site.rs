//! A deployment as an operator runs it (docs/deploy.md), for the tests and benchmarks of several relays: `psgate serve`
//! processes on one PostgreSQL database, and nginx running `deploy/nginx.conf` in front of them.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt as _;

/// nginx running `deploy/nginx.conf` with its `upstream` pointed at `relays` and listening on a free loopback port,
/// in a folder of its own (its pid, logs and temporary files); stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Started in front of `relays`.
    pub async fn start(relays: &[SocketAddr]) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).is_file()).expect("nginx: scripts/setup.sh --test installs nginx-light");
        let dir = tempfile::tempdir().expect("a folder");
        let shipped = std::fs::read_to_string(crate::repo().join("deploy/nginx.conf")).expect("deploy/nginx.conf");
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
        let deadline = std::time::Instant::now() + crate::STEP;
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


/// The `psgate` binary cargo built beside the running test or benchmark (`PSGATE_BIN` overrides).
pub fn psgate_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PSGATE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the running executable");
    // target/debug/deps/test-… or target/release/psgate-bench
    let found = exe.ancestors().skip(1).take(2).map(|d| d.join("psgate")).find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("no psgate binary beside {}: cargo build -p psgate-relay", exe.display()))
}

/// One `psgate serve` process of a deployment.
#[derive(Debug)]
pub struct RelayProcess {
    /// `[cluster] relay_id`.
    pub id: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log (stderr).
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl RelayProcess {
    /// `psgate serve` as relay `id` on `database` with the sealing key `key`, listening on a free loopback port,
    /// heartbeating every second and deemed gone after 5 s of silence, with `more` in its configuration (top-level
    /// settings, then `[[allow]]` rules); its files in `dir`. Returns once it answers `/readyz`.
    pub async fn start(dir: &Path, id: &str, database: &str, key: &Path, more: &str) -> RelayProcess {
        RelayProcess::start_on(0, dir, id, database, key, more).await
    }

    /// [`RelayProcess::start`] listening on `port` (a relay started again where the balancer knows it).
    pub async fn start_on(port: u16, dir: &Path, id: &str, database: &str, key: &Path, more: &str) -> RelayProcess {
        let config = dir.join(format!("{id}.toml"));
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase = \"{database}\"\nseal_key_file = \"{}\"\nassets = \"{}\"\n{more}\n\n[cluster]\nrelay_id = \"{id}\"\nheartbeat_secs = 1\ndead_after_secs = 5\n",
            key.display(),
            crate::repo().join("dist").display()
        );
        std::fs::write(&config, text).expect("the relay's configuration");
        let log = dir.join(format!("{id}.log"));
        let mut child = tokio::process::Command::new(psgate_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("PSGATE_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("psgate serve starts");
        // `psgate listening on http://127.0.0.1:PORT/`
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = tokio::time::timeout(crate::STEP, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = line.strip_prefix("psgate listening on http://") {
                    return a.trim_end_matches('/').parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("psgate serve {id} did not start: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let deadline = Instant::now() + crate::STEP;
        while crate::relay::get(addr, "/readyz").await.0 != 200 {
            assert!(Instant::now() < deadline, "relay {id} ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RelayProcess { id: id.to_owned(), addr, log, child }
    }

    /// SIGKILL: the process ends at once, with no word to anyone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Opens the API's WebSocket through `addr` as a page does after a drop: again and again, 250 ms apart, until a relay
/// takes it (within `limit`). The client, past its `hello`.
pub async fn reconnect(addr: SocketAddr, cookie: &str, limit: Duration) -> crate::relay::Client {
    let deadline = Instant::now() + limit;
    let origin = format!("http://{addr}");
    loop {
        if let Ok(ws) = crate::relay::open_ws_at(addr, Some(cookie), Some(&origin)).await {
            let mut c = crate::relay::Client { ws };
            if matches!(c.next().await, psgate_shared::api::ServerMessage::Hello { .. }) {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "no relay took the connection within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
