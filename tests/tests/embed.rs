//! Embedding, kiosk mode and logins, over real HTTP and WebSockets against the relay with the local test host:
//! the framing headers of `/embed` and of every other page, `/api/config`, kiosk mode refusing targets the
//! allow-list would let through, the idle logout (a short timeout) closing the login's WebSockets with the reason,
//! logout closing them at once, and logins surviving a restart of the relay on the same database.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use psgate_relay::config::{AllowRule, Config, KioskConfig, TargetPreset};
use psgate_relay::http::auth::CLOSE_LOGIN_ENDED;
use psgate_relay::http::{AppConfig, serve};
use psgate_relay::store::Store;
use psgate_shared::api::{ErrorCode, PageConfig, ServerMessage, SessionId, SessionState, Transport};
use psgate_tests::{STEP, local_host_argv};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

struct Relay {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Relay {
    /// Stops it (graceful shutdown: open connections end first) and waits until it has.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(STEP, &mut self.task).await.expect("stopped in time").expect("task").expect("served");
    }
}

/// A configuration allowing `localhost` over the local transport (the test host) and any host over SSH.
fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        local_command: Some(local_host_argv().iter().map(|s| s.to_string_lossy().into_owned()).collect()),
        allow: vec![
            AllowRule { hosts: vec!["localhost".into()], ports: vec![], transports: vec![Transport::Local], ..AllowRule::default() },
            AllowRule { hosts: vec!["*".into()], ports: vec![], transports: vec![Transport::Ssh], ..AllowRule::default() },
        ],
        ..Config::default()
    }
}

/// The relay on `store` with `config` (validated) and the assets in `assets`.
async fn start(config: Config, store: Arc<Store>, assets: &Path) -> Relay {
    config.validate().expect("a valid configuration");
    let config = Arc::new(config);
    let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let api = psgate_relay::cli::serve::api(config, store).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, AppConfig { assets: assets.to_owned(), api: Some(api) }, async move {
        let _ = stopped.await;
    }));
    Relay { addr, stop: Some(stop), task }
}

/// A store with alice.
async fn store_at(path: Option<&Path>) -> Arc<Store> {
    let store = match path {
        Some(p) => Store::open(p).expect("db"),
        None => Store::in_memory().expect("db"),
    };
    store.set_user("alice", "alice-pw").await.expect("user");
    Arc::new(store)
}

/// A folder unique to the test, emptied.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("psgate-embed-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `dist` like Trunk's.
fn dist(test: &str) -> PathBuf {
    let dir = scratch(test);
    std::fs::write(dir.join("index.html"), "<!doctype html><title>psgate</title>").expect("write");
    std::fs::write(dir.join("psgate-frontend-1a339fc504889b2a_bg.wasm"), b"\0asm\x01\0\0\0").expect("write");
    // The other bundle's page (the CLIXML viewer, the watch page).
    std::fs::create_dir_all(dir.join("pages")).expect("pages");
    std::fs::write(dir.join("pages").join("index.html"), "<!doctype html><title>psgate pages</title>").expect("write");
    dir
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 request (`Connection: close`).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, cookie: Option<&str>, body: Option<&str>) -> Response {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut raw)).await.expect("an answer in time").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("a status");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Response { status, headers, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// Logs alice in: the cookie pair to send back.
async fn login(addr: std::net::SocketAddr) -> String {
    let r = http(addr, "POST", "/api/login", None, Some(&json!({"name": "alice", "password": "alice-pw"}).to_string())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").expect("a cookie").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().expect("pair").to_owned()
}

async fn me(addr: std::net::SocketAddr, cookie: &str) -> u16 {
    http(addr, "GET", "/api/me", Some(cookie), None).await.status
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open_ws(addr: std::net::SocketAddr, cookie: &str) -> Ws {
    let mut req = format!("ws://{addr}/api/ws").into_client_request().expect("request");
    req.headers_mut().insert("cookie", HeaderValue::from_str(cookie).expect("header"));
    req.headers_mut().insert("origin", HeaderValue::from_str(&format!("http://{addr}")).expect("header"));
    let mut ws = tokio_tungstenite::connect_async(req).await.expect("websocket").0;
    assert!(matches!(next(&mut ws).await, Some(ServerMessage::Hello { .. })));
    ws
}

/// The next message, or `None` once the relay has closed the connection (after its close frame, if any).
async fn next(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("{t}: {e}"))),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the relay closes; its close frame's code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return (0, String::new()),
            Some(Ok(_)) => {}
        }
    }
}

async fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("send");
}

/// `new_sessions` with one target: the session's id, or the refusal's code and message.
async fn new_session(ws: &mut Ws, target: serde_json::Value) -> Result<SessionId, (ErrorCode, String)> {
    send(ws, json!({"type": "new_sessions", "targets": [target]})).await;
    let mut refused = None;
    loop {
        match next(ws).await.expect("open") {
            ServerMessage::TargetRefused { code, message, .. } => refused = Some((code, message)),
            ServerMessage::Sessions { sessions } => {
                return match refused {
                    Some(r) => Err(r),
                    None => Ok(sessions.last().expect("the new session").id),
                };
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn embed_may_be_framed_by_the_configured_ancestors_and_nothing_else_may() {
    let assets = dist("frames");
    let mut c = config();
    c.embed.frame_ancestors = vec!["https://portal.example".into(), "'self'".into()];
    let relay = start(c, store_at(None).await, &assets).await;
    for path in ["/embed", "/embed?computer=localhost&transport=local", "/psgate-frontend-1a339fc504889b2a_bg.wasm"] {
        let r = http(relay.addr, "GET", path, None, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-security-policy"), Some("frame-ancestors https://portal.example 'self'"), "{path}");
        assert_eq!(r.header("x-frame-options"), None, "{path}: X-Frame-Options would forbid what the CSP allows");
    }
    assert!(http(relay.addr, "GET", "/embed", None, None).await.body.contains("<title>psgate</title>"), "the app's page");
    for (path, status) in [("/", 200), ("/viewer", 200), ("/watch/?join=alice%2F1", 200), ("/index.html", 200), ("/api/me", 401), ("/api/config", 200)] {
        let r = http(relay.addr, "GET", path, None, None).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("content-security-policy"), Some("frame-ancestors 'none'"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    }
    relay.stop().await;

    // Not configured: nobody frames /embed either.
    let relay = start(config(), store_at(None).await, &assets).await;
    let r = http(relay.addr, "GET", "/embed", None, None).await;
    assert_eq!((r.header("content-security-policy"), r.header("x-frame-options")), (Some("frame-ancestors 'none'"), Some("DENY")));
    relay.stop().await;
}

#[tokio::test]
async fn page_config_tells_the_mode_and_the_targets_only_after_login() {
    let assets = dist("page-config");
    let mut c = config();
    c.embed.frame_ancestors = vec!["https://portal.example".into()];
    c.embed.target = Some(TargetPreset { name: Some("embedded".into()), ..TargetPreset::new("localhost", Transport::Local) });
    c.kiosk = KioskConfig { enabled: true, targets: vec![TargetPreset { name: Some("Shell".into()), ..TargetPreset::new("localhost", Transport::Local) }] };
    let relay = start(c, store_at(None).await, &assets).await;
    let anonymous: PageConfig = serde_json::from_str(&http(relay.addr, "GET", "/api/config", None, None).await.body).expect("json");
    assert!(anonymous.kiosk);
    assert!(anonymous.kiosk_targets.is_empty() && anonymous.embed_target.is_none(), "no targets before the login: {anonymous:?}");
    assert_eq!(anonymous.frame_ancestors, ["https://portal.example"]);
    assert_eq!(anonymous.idle_timeout_secs, 900, "kiosk mode's shorter default");
    let cookie = login(relay.addr).await;
    let known: PageConfig = serde_json::from_str(&http(relay.addr, "GET", "/api/config", Some(&cookie), None).await.body).expect("json");
    assert_eq!(known.kiosk_targets.len(), 1);
    assert_eq!((known.kiosk_targets[0].computer_name.as_str(), known.kiosk_targets[0].name.as_deref()), ("localhost", Some("Shell")));
    assert_eq!(known.embed_target.as_ref().and_then(|t| t.name.as_deref()), Some("embedded"));
    relay.stop().await;
}

#[tokio::test]
async fn kiosk_mode_refuses_targets_outside_its_list_even_when_allowed() {
    let assets = dist("kiosk");
    let mut c = config();
    c.kiosk = KioskConfig {
        enabled: true,
        targets: vec![
            TargetPreset { name: Some("Shell".into()), ..TargetPreset::new("localhost", Transport::Local) },
            TargetPreset { port: Some(2222), user: Some("ops".into()), ..TargetPreset::new("srv01.example", Transport::Ssh) },
        ],
    };
    let relay = start(c, store_at(None).await, &assets).await;
    let cookie = login(relay.addr).await;
    let mut ws = open_ws(relay.addr, &cookie).await;
    // The allow-list lets any SSH host through; the kiosk does not.
    for target in [
        json!({"computer_name": "srv02.example", "transport": "ssh", "user": "ops", "password": "pw"}),
        json!({"computer_name": "srv01.example", "transport": "ssh", "user": "ops", "password": "pw"}),
        json!({"computer_name": "srv01.example", "transport": "ssh", "port": 2222, "user": "root", "password": "pw"}),
    ] {
        let (code, message) = new_session(&mut ws, target.clone()).await.expect_err("refused");
        assert_eq!(code, ErrorCode::TargetNotAllowed, "{target}");
        assert!(message.contains("kiosk"), "{message}");
    }
    // A kiosk target opens (the name is the browser's to choose).
    let id = new_session(&mut ws, json!({"computer_name": "localhost", "transport": "local", "name": "mine"})).await.expect("a kiosk target");
    loop {
        if let Some(ServerMessage::SessionChanged { session }) = next(&mut ws).await
            && session.id == id
            && session.state != SessionState::Opening
        {
            assert_eq!(session.state, SessionState::Opened, "{session:?}");
            break;
        }
    }
    relay.stop_with(ws).await;
}

impl Relay {
    async fn stop_with(self, mut ws: Ws) {
        let _ = ws.close(None).await;
        drop(ws);
        self.stop().await;
    }
}

#[tokio::test]
async fn an_idle_login_ends_and_its_websockets_close_with_the_reason() {
    let assets = dist("idle");
    let mut c = config();
    c.auth.idle_timeout_secs = Some(2);
    let relay = start(c, store_at(None).await, &assets).await;
    let cookie = login(relay.addr).await;
    let mut ws = open_ws(relay.addr, &cookie).await;
    let session = new_session(&mut ws, json!({"computer_name": "localhost", "transport": "local"})).await.expect("a session");
    // Activity keeps it: a WebSocket message every 400 ms for 4.8 s (more than twice the timeout).
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        send(&mut ws, json!({"type": "get_sessions"})).await;
    }
    assert_eq!(me(relay.addr, &cookie).await, 200, "still logged in");
    // So do API calls.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(me(relay.addr, &cookie).await, 200);
    }
    // Then nothing: the relay closes the connection with the reason, and refuses the cookie.
    let started = std::time::Instant::now();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CLOSE_LOGIN_ENDED);
    assert!(reason.contains("without activity"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert_eq!(me(relay.addr, &cookie).await, 401);
    let mut req = format!("ws://{}/api/ws", relay.addr).into_client_request().expect("request");
    req.headers_mut().insert("cookie", HeaderValue::from_str(&cookie).expect("header"));
    req.headers_mut().insert("origin", HeaderValue::from_str(&format!("http://{}", relay.addr)).expect("header"));
    assert!(tokio_tungstenite::connect_async(req).await.is_err(), "the upgrade is refused");
    // The session belongs to the user, not the login: it is still there after the next login.
    let cookie = login(relay.addr).await;
    let mut ws = open_ws(relay.addr, &cookie).await;
    send(&mut ws, json!({"type": "get_sessions"})).await;
    loop {
        if let Some(ServerMessage::Sessions { sessions }) = next(&mut ws).await {
            assert!(sessions.iter().any(|s| s.id == session), "{sessions:?}");
            break;
        }
    }
    relay.stop_with(ws).await;
}

#[tokio::test]
async fn logins_survive_a_restart_and_logout_ends_them_everywhere() {
    let dir = scratch("restart");
    let db = dir.join("psgate.db");
    let assets = dist("restart-dist");
    let first = start(config(), store_at(Some(&db)).await, &assets).await;
    let cookie = login(first.addr).await;
    let other = login(first.addr).await;
    assert_eq!(me(first.addr, &cookie).await, 200);
    first.stop().await;

    // A new relay (new state, new store) on the same database.
    let second = start(config(), Arc::new(Store::open(&db).expect("db")), &assets).await;
    assert_eq!(me(second.addr, &cookie).await, 200, "the login survived the restart");
    let mut ws = open_ws(second.addr, &cookie).await;
    let mut other_ws = open_ws(second.addr, &other).await;
    send(&mut ws, json!({"type": "get_sessions"})).await;
    assert!(matches!(next(&mut ws).await, Some(ServerMessage::Sessions { .. })));
    // The database holds no token.
    let bytes = std::fs::read(&db).expect("db file");
    let token = cookie.split_once('=').expect("pair").1;
    assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "the token itself is never stored");

    // Logout: the cookie is refused, and that login's WebSocket closes at once; the other login's does not.
    let r = http(second.addr, "POST", "/api/logout", Some(&cookie), None).await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (CLOSE_LOGIN_ENDED, "logged out"));
    assert_eq!(me(second.addr, &cookie).await, 401);
    assert_eq!(me(second.addr, &other).await, 200);
    send(&mut other_ws, json!({"type": "get_sessions"})).await;
    assert!(matches!(next(&mut other_ws).await, Some(ServerMessage::Sessions { .. })));
    second.stop_with(other_ws).await;

    let third = start(config(), Arc::new(Store::open(&db).expect("db")), &assets).await;
    assert_eq!(me(third.addr, &cookie).await, 401, "a logout survives a restart too");
    assert_eq!(me(third.addr, &other).await, 200);
    third.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
