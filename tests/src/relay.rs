//! The relay as a browser uses it, for the API tests: a relay on an ephemeral port with test users, logins, and a
//! WebSocket client that reads the API's messages with every wait bounded by [`crate::STEP`].
#![allow(missing_docs)]

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use psgate_relay::config::{AllowRule, Config};
use psgate_relay::http::{AppConfig, serve};
use psgate_relay::store::Store;
use psgate_shared::api::{ErrorCode, PipelineId, ServerMessage, SessionId, SessionInfo, SessionState, Transport};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{STEP, local_host_argv};

#[derive(Debug)]
pub struct Relay {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its sessions.
    pub manager: Arc<psgate_relay::session::manager::Manager>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A relay on an ephemeral port with users alice and bob, allowing only `localhost` over the local transport (the
/// test host).
pub async fn relay() -> Relay {
    relay_with(|_| {}).await
}

/// [`relay`] with its configuration changed by `change`.
pub async fn relay_with(change: impl FnOnce(&mut Config)) -> Relay {
    let store = Arc::new(Store::in_memory().expect("db"));
    store.set_user("alice", "alice-pw").await.expect("user");
    store.set_user("bob", "bob-pw").await.expect("user");
    relay_on(store, change).await
}

/// [`relay_with`] on `store` (users are the caller's).
pub async fn relay_on(store: Arc<Store>, change: impl FnOnce(&mut Config)) -> Relay {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        // One id for the relays of a test: a relay made again on the same store is the same relay restarted (tests of
        // several relays on one store name each).
        cluster: psgate_relay::config::ClusterConfig { relay_id: Some("test-relay".into()), heartbeat_secs: 3600, ..Default::default() },
        local_command: Some(local_host_argv().iter().map(|s| s.to_string_lossy().into_owned()).collect()),
        allow: vec![AllowRule { hosts: vec!["localhost".into()], ports: vec![], transports: vec![Transport::Local], ..AllowRule::default() }],
        ..Config::default()
    };
    change(&mut config);
    let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Where the other relays of a test reach this one.
    config.listen = addr;
    let config = Arc::new(config);
    let api = psgate_relay::cli::serve::api(config, store).await;
    let manager = api.manager.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, AppConfig { assets: "no-such-dist".into(), api: Some(api) }, async move {
        let _ = stopped.await;
    }));
    Relay { addr, manager, _stop: stop }
}

/// A minimal HTTP/1.1 POST; returns the status and the `Set-Cookie` value.
pub async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Option<String>) {
    send_post(addr, path, &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())).await
}

/// POST `path` to `addr` with `rest` after the Host header (more headers, the blank line, the body): the status and
/// the `Set-Cookie` value.
async fn send_post(addr: std::net::SocketAddr, path: &str, rest: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{rest}");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let cookie = resp.lines().find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: "))).map(str::to_owned);
    (status, cookie)
}

/// A POST with the login cookie and no body (`/api/logout`): the status and the `Set-Cookie` value.
pub async fn post_with_cookie(addr: std::net::SocketAddr, path: &str, cookie: &str) -> (u16, Option<String>) {
    send_post(addr, path, &format!("Cookie: {cookie}\r\nOrigin: http://{addr}\r\nContent-Length: 0\r\n\r\n")).await
}

/// A minimal HTTP/1.1 GET without a login: the status, the `Content-Type` and the body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    get_as(addr, path, None).await
}

/// [`get`] with a login's cookie (`name=value`).
pub async fn get_as(addr: std::net::SocketAddr, path: &str, cookie: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut raw)).await.expect("an answer in time").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let content_type = head.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_owned())).unwrap_or_default();
    (status, content_type, body.to_owned())
}

pub async fn login(relay: &Relay, name: &str, password: &str) -> String {
    login_at(relay.addr, name, password).await
}

/// Logs `name` in at `addr` (a relay, or a balancer in front of relays): the cookie's `name=value`.
pub async fn login_at(addr: std::net::SocketAddr, name: &str, password: &str) -> String {
    let (status, cookie) = post(addr, "/api/login", &json!({"name": name, "password": password}).to_string()).await;
    assert_eq!(status, 200, "login {name}");
    let cookie = cookie.expect("a cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().expect("pair").to_owned()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn open_ws(relay: &Relay, cookie: Option<&str>, origin: Option<&str>) -> Result<Ws, WsError> {
    open_ws_at(relay.addr, cookie, origin).await
}

/// The API's WebSocket at `addr` (a relay, or a balancer in front of relays).
pub async fn open_ws_at(addr: std::net::SocketAddr, cookie: Option<&str>, origin: Option<&str>) -> Result<Ws, WsError> {
    open_ws_path(addr, "/api/ws", cookie, origin).await
}

/// The API's WebSocket at `addr` and `path` (`/api/ws?join=alice/1`: a joined console).
pub async fn open_ws_path(addr: std::net::SocketAddr, path: &str, cookie: Option<&str>, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", HeaderValue::from_str(c).expect("header"));
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", HeaderValue::from_str(o).expect("header"));
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

#[derive(Debug)]
pub struct Client {
    /// The socket.
    pub ws: Ws,
}

impl Client {
    pub async fn connect(relay: &Relay, user: &str) -> Client {
        Client::connect_at(relay.addr, user).await
    }

    /// [`Client::connect`] through `addr`: a relay, or a balancer in front of relays.
    pub async fn connect_at(addr: std::net::SocketAddr, user: &str) -> Client {
        let cookie = login_at(addr, user, &format!("{user}-pw")).await;
        let ws = open_ws_at(addr, Some(&cookie), Some(&format!("http://{addr}"))).await.expect("websocket");
        let mut c = Client { ws };
        match c.next().await {
            ServerMessage::Hello { protocol, user: u, .. } => assert_eq!((protocol, u.as_str()), (psgate_shared::api::PROTOCOL_VERSION, user)),
            other => panic!("expected hello, got {other:?}"),
        }
        c
    }

    /// `user`'s console joined to `owner`'s session `session` through `addr` (`Err`: the upgrade's HTTP status).
    pub async fn join_at(addr: std::net::SocketAddr, user: &str, owner: &str, session: psgate_shared::api::SessionId) -> Result<Client, u16> {
        let cookie = login_at(addr, user, &format!("{user}-pw")).await;
        let path = format!("/api/ws?join={owner}%2F{}", session.0);
        match open_ws_path(addr, &path, Some(&cookie), Some(&format!("http://{addr}"))).await {
            Ok(ws) => {
                let mut c = Client { ws };
                match c.next().await {
                    ServerMessage::Hello { user: u, .. } => assert_eq!(u, user),
                    other => panic!("expected hello, got {other:?}"),
                }
                Ok(c)
            }
            Err(WsError::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("joining: {e}"),
        }
    }

    /// How the relay closed the socket: its close code (none: it is still open after a moment, or closed without
    /// one).
    pub async fn closed_with(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(STEP, self.ws.next()).await.ok()?? {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The user's sessions, as the relay lists them (`get_sessions`).
    pub async fn sessions(&mut self) -> Vec<psgate_shared::api::SessionInfo> {
        self.send(json!({"type": "get_sessions"})).await;
        self.until(|m| match m {
            ServerMessage::Sessions { sessions } => Some(sessions.clone()),
            _ => None,
        })
        .await
    }

    pub async fn send(&mut self, v: serde_json::Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.expect("send");
    }

    pub async fn next(&mut self) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(STEP, self.ws.next()).await.expect("a message in time").expect("open").expect("frame");
            if let Message::Text(t) = frame {
                return serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("{t}: {e}"));
            }
        }
    }

    /// The next message `pick` accepts (others, such as session_changed, are skipped).
    pub async fn until<T>(&mut self, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
        loop {
            let m = self.next().await;
            if let Some(t) = pick(&m) {
                return t;
            }
        }
    }

    pub async fn error(&mut self) -> (ErrorCode, String) {
        self.until(|m| match m {
            ServerMessage::Error { code, message } => Some((*code, message.clone())),
            _ => None,
        })
        .await
    }

    /// A new session on the test host, opened.
    pub async fn new_session(&mut self) -> SessionId {
        self.new_session_on(json!({"computer_name": "localhost", "transport": "local", "name": "demo"})).await
    }

    /// A new session on `target`, opened.
    pub async fn new_session_on(&mut self, target: serde_json::Value) -> SessionId {
        self.send(json!({"type": "new_sessions", "targets": [target]})).await;
        let id = self.until(|m| match m {
            ServerMessage::Sessions { sessions } => sessions.last().map(|s| s.id),
            _ => None,
        })
        .await;
        let info: SessionInfo = self
            .until(|m| match m {
                ServerMessage::SessionChanged { session } if session.id == id && session.state != SessionState::Opening => Some(session.clone()),
                _ => None,
            })
            .await;
        assert_eq!(info.state, SessionState::Opened, "{info:?}");
        id
    }

    /// The next host call: its `call_id` and method.
    pub async fn host_call(&mut self) -> (i64, String) {
        self.until(|m| match m {
            ServerMessage::HostCall { call_id, method, .. } if *call_id >= 0 => Some((*call_id, method.clone())),
            _ => None,
        })
        .await
    }

    pub async fn run(&mut self, session: SessionId, script: &str) -> PipelineId {
        self.send(json!({"type": "run", "session": session, "script": script})).await;
        self.until(|m| match m {
            ServerMessage::PipelineStarted { pipeline, .. } => Some(*pipeline),
            _ => None,
        })
        .await
    }

    /// Pipeline events until the terminal state.
    pub async fn until_done(&mut self, pipeline: PipelineId) -> Vec<ServerMessage> {
        let mut events = Vec::new();
        loop {
            let m = self.next().await;
            let done = matches!(&m, ServerMessage::PipelineState { pipeline: p, state, .. } if *p == pipeline && state.is_terminal());
            if m.seq().is_some() {
                events.push(m);
            }
            if done {
                return events;
            }
        }
    }
}

pub fn outputs(events: &[ServerMessage]) -> Vec<psgate_shared::clixml::Value> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Output { clixml, .. } => Some(psgate_shared::clixml::decode_message(clixml.as_bytes()).expect("CLIXML the browser decodes")),
            _ => None,
        })
        .collect()
}


/// A PostgreSQL database of its own for a test (made afresh) in the server the test command starts
/// (`scripts/postgres.sh`, whose URL is in `PSGATE_TEST_POSTGRES`): its URL.
pub async fn postgres_database(name: &str) -> String {
    let url = std::env::var("PSGATE_TEST_POSTGRES").expect("PSGATE_TEST_POSTGRES is not set: run `eval \"$(bash scripts/postgres.sh)\"` first (scripts/test.sh does)");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("the test PostgreSQL server");
    tokio::spawn(connection);
    let db = format!("psgate_it{}_{name}", std::process::id());
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.expect("drop");
    client.batch_execute(&format!("CREATE DATABASE {db}")).await.expect("create");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    format!("{base}/{db}")
}

/// The `Index` property of each output object (the peers' `Get-Objects`), in order.
pub fn indexes(events: &[ServerMessage]) -> Vec<i64> {
    outputs(events).iter().filter_map(|v| v.as_object()?.property("Index")?.as_i64()).collect()
}
