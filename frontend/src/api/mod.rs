//! The relay's API, the only code that talks to it: `POST /api/login`, `GET /api/me`, `POST /api/logout`, and
//! the one WebSocket (`/api/ws`, same origin) carrying [`psgate_shared::api`] messages.
//!
//! The socket reconnects by itself after a drop, with a growing delay ([`backoff_ms`]), and re-attaches every
//! pipeline that was still running with `after_seq` = the last sequence number seen ([`Resume`]), so nothing is
//! lost or shown twice. [`Resume`] and [`backoff_ms`] are plain Rust, tested natively; [`Socket`] is the thin
//! web-sys edge.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use psgate_shared::api::{ClientMessage, PipelineId, ServerMessage, SessionId};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

/// What the socket tells the page.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Connected (again): the page may ask for the sessions.
    Open,
    /// The connection dropped; the next attempt is in `retry_ms`.
    Closed {
        /// Milliseconds until the next attempt.
        retry_ms: u32,
    },
    /// A message from the relay (duplicates after a re-attach already removed).
    Message(ServerMessage),
    /// A frame that is not a message of this protocol version.
    Garbled(String),
    /// The login has ended (idle, expired, logged out elsewhere): the relay closed the connection with this reason,
    /// or refuses the login on reconnecting. The socket does not reconnect.
    LoggedOut(String),
    /// A joined console ended (the owner revoked the share, or closed the session): the reason. No reconnecting.
    Ended(String),
}

/// The relay's WebSocket close code when the connection's login has ended (the reason says why).
pub const CLOSE_LOGIN_ENDED: u16 = 4001;
/// The close code of a joined console whose share the owner revoked.
pub const CLOSE_REVOKED: u16 = 4403;
/// The close code of a joined console whose session ended.
pub const CLOSE_SESSION_ENDED: u16 = 4410;

/// The session this page joins (`/?join=OWNER/ID`: a session another user shared), if any.
pub fn joined_session() -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    let value = search.trim_start_matches('?').split('&').find_map(|p| p.strip_prefix("join="))?;
    js_sys::decode_uri_component(value).ok()?.as_string().filter(|v| !v.is_empty())
}

/// The watch page joined to `owner`'s session `session` (`/watch/?join=OWNER%2FID`).
pub fn watch_href(owner: &str, session: SessionId) -> String {
    format!("/watch/?join={}", js_sys::encode_uri_component(&format!("{owner}/{}", session.0)))
}

/// Delay before reconnect attempt `attempt` (0-based): 250 ms doubling up to 8 s.
pub fn backoff_ms(attempt: u32) -> u32 {
    250u32.saturating_mul(1 << attempt.min(5)).min(8_000)
}

/// The last sequence number seen of each running pipeline: what to re-attach after a reconnect, and which
/// events are repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    running: BTreeMap<(SessionId, PipelineId), u64>,
}

impl Resume {
    /// Notes a message; `false` when it is a pipeline event already seen (drop it).
    pub fn note(&mut self, message: &ServerMessage) -> bool {
        match message {
            ServerMessage::PipelineStarted { session, pipeline } => {
                // A session runs one pipeline at a time: one started (or re-attached by the relay that took the
                // session over) supersedes any other this page had running there, which is not attached again.
                self.running.retain(|(s, p), _| s != session || p == pipeline);
                self.running.entry((*session, *pipeline)).or_insert(0);
                true
            }
            ServerMessage::Output { session, pipeline, seq, .. }
            | ServerMessage::Record { session, pipeline, seq, .. }
            | ServerMessage::HostCall { session, pipeline, seq, .. }
            | ServerMessage::PipelineState { session, pipeline, seq, .. } => {
                let key = (*session, *pipeline);
                let last = self.running.get(&key).copied();
                if last.is_some_and(|last| *seq <= last) {
                    return false;
                }
                if matches!(message, ServerMessage::PipelineState { state, .. } if state.is_terminal()) {
                    self.running.remove(&key);
                } else {
                    self.running.insert(key, *seq);
                }
                true
            }
            ServerMessage::Sessions { sessions } => {
                self.running.retain(|(s, _), _| sessions.iter().any(|i| i.id == *s));
                true
            }
            _ => true,
        }
    }

    /// The `attach` messages that resume every running pipeline.
    pub fn attachments(&self) -> Vec<ClientMessage> {
        self.running
            .iter()
            .map(|(&(session, pipeline), &after_seq)| ClientMessage::Attach { session, pipeline, after_seq })
            .collect()
    }
}

/// The WebSocket, reconnecting by itself. Cloning shares the one connection.
#[derive(Clone)]
pub struct Socket {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("connected", &self.inner.borrow().ws.is_some()).finish()
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

struct Inner {
    ws: Option<WebSocket>,
    on_event: Callback<Event>,
    resume: Resume,
    attempt: u32,
    closed_by_page: bool,
    // Kept alive as long as the socket they are attached to.
    handlers: Vec<Box<dyn std::any::Any>>,
}

impl Socket {
    /// Connects to `/api/ws` on the page's origin; every event goes to `on_event`.
    pub fn connect(on_event: Callback<Event>) -> Socket {
        let inner = Inner { ws: None, on_event, resume: Resume::default(), attempt: 0, closed_by_page: false, handlers: Vec::new() };
        let socket = Socket { inner: Rc::new(RefCell::new(inner)) };
        socket.open();
        socket
    }

    /// Sends a message (dropped while disconnected: the page shows that state and disables its forms).
    pub fn send(&self, message: &ClientMessage) {
        let inner = self.inner.borrow();
        if let (Some(ws), Ok(text)) = (&inner.ws, serde_json::to_string(message))
            && ws.ready_state() == WebSocket::OPEN
        {
            let _ = ws.send_with_str(&text);
        }
    }

    /// Closes for good (log out).
    pub fn close(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.closed_by_page = true;
        if let Some(ws) = inner.ws.take() {
            // The handlers go with this socket: the browser must not call them once they are dropped.
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
    }

    fn url() -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
        let join = joined_session().map(|j| format!("?join={}", js_sys::encode_uri_component(&j))).unwrap_or_default();
        Some(format!("{scheme}://{}/api/ws{join}", location.host().ok()?))
    }

    fn open(&self) {
        let Some(ws) = Self::url().and_then(|url| WebSocket::new(&url).ok()) else {
            self.retry();
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        let onopen = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                let Some(inner) = weak.upgrade() else { return };
                let socket = Socket { inner };
                let (attach, on_event) = {
                    let mut i = socket.inner.borrow_mut();
                    i.attempt = 0;
                    (i.resume.attachments(), i.on_event.clone())
                };
                for message in &attach {
                    socket.send(message);
                }
                on_event.emit(Event::Open);
            }
        });
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new({
            let weak = weak.clone();
            move |e: MessageEvent| {
                let Some(inner) = weak.upgrade() else { return };
                let text = e.data().as_string().unwrap_or_default();
                let event = match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(message) => {
                        if !inner.borrow_mut().resume.note(&message) {
                            return;
                        }
                        Event::Message(message)
                    }
                    Err(e) => Event::Garbled(e.to_string()),
                };
                let on_event = inner.borrow().on_event.clone();
                on_event.emit(event);
            }
        });
        let onclose = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            let Some(inner) = weak.upgrade() else { return };
            let socket = Socket { inner };
            if socket.inner.borrow().closed_by_page {
                return;
            }
            socket.inner.borrow_mut().ws = None;
            if e.code() == CLOSE_LOGIN_ENDED {
                socket.logged_out(Some(e.reason()).filter(|r| !r.is_empty()).unwrap_or_else(|| "logged out".into()));
                return;
            }
            // A joined console whose share was revoked, or whose session ended: over, no reconnecting.
            if matches!(e.code(), CLOSE_REVOKED | CLOSE_SESSION_ENDED) {
                let on_event = {
                    let mut inner = socket.inner.borrow_mut();
                    inner.closed_by_page = true;
                    inner.on_event.clone()
                };
                on_event.emit(Event::Ended(e.reason()));
                return;
            }
            socket.retry();
        });
        ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
        let mut inner = self.inner.borrow_mut();
        inner.handlers = vec![Box::new(onopen), Box::new(onmessage), Box::new(onclose)];
        inner.ws = Some(ws);
    }

    /// The login has ended: no more attempts; the page shows the login (after the running handler has returned:
    /// the page then drops this socket and its handlers).
    fn logged_out(&self, reason: String) {
        let on_event = {
            let mut inner = self.inner.borrow_mut();
            inner.closed_by_page = true;
            inner.on_event.clone()
        };
        yew::platform::spawn_local(async move { on_event.emit(Event::LoggedOut(reason)) });
    }

    fn retry(&self) {
        let (retry_ms, on_event) = {
            let mut inner = self.inner.borrow_mut();
            let ms = backoff_ms(inner.attempt);
            inner.attempt += 1;
            (ms, inner.on_event.clone())
        };
        on_event.emit(Event::Closed { retry_ms });
        let socket = self.clone();
        yew::platform::spawn_local(async move {
            yew::platform::time::sleep(std::time::Duration::from_millis(retry_ms.into())).await;
            // A refused upgrade looks like any drop: ask whether the login is still current (the relay may have
            // ended it while the connection was down).
            if login_state().await == Some(false) && !socket.inner.borrow().closed_by_page {
                socket.logged_out("your login has ended: log in again".into());
                return;
            }
            if !socket.inner.borrow().closed_by_page {
                socket.open();
            }
        });
    }
}

/// What a page sends: to its socket, while it has one.
pub fn sender(socket: &Rc<RefCell<Option<Socket>>>) -> Callback<ClientMessage> {
    let socket = Rc::clone(socket);
    Callback::from(move |m: ClientMessage| {
        if let Some(s) = socket.borrow().as_ref() {
            s.send(&m);
        }
    })
}

/// The body of `POST /api/login`.
#[derive(serde::Serialize)]
struct Credentials<'a> {
    name: &'a str,
    password: &'a str,
}

/// `POST /api/login`: `Ok(user)`, or the message to show.
pub async fn login(name: &str, password: &str) -> Result<String, String> {
    let body = serde_json::to_string(&Credentials { name, password }).map_err(|e| e.to_string())?;
    let response = fetch("POST", "/api/login", Some(&body)).await.map_err(|e| format!("the relay cannot be reached: {e}"))?;
    match response.status() {
        200 => Ok(text(&response).await.and_then(|t| user_of(&t)).unwrap_or_else(|| name.to_owned())),
        401 => Err("wrong user name or password".into()),
        status => Err(format!("login failed (HTTP {status})")),
    }
}

/// `GET /api/me`: the logged-in user, if any.
pub async fn me() -> Option<String> {
    let response = fetch("GET", "/api/me", None).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    user_of(&text(&response).await?)
}

/// Whether the login is current: `Some(false)` when the relay says it is not (401), `None` when the relay cannot
/// be reached.
pub async fn login_state() -> Option<bool> {
    let response = fetch("GET", "/api/me", None).await.ok()?;
    match response.status() {
        200 => Some(true),
        401 => Some(false),
        _ => None,
    }
}

/// `GET /api/config`: kiosk mode, the embed page's settings (the targets only once logged in).
pub async fn page_config() -> Option<psgate_shared::api::PageConfig> {
    let response = fetch("GET", "/api/config", None).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    serde_json::from_str(&text(&response).await?).ok()
}

/// `GET /api/audit?{query}` (relay admins): the records, or the message to show.
pub async fn audit(query: &str) -> Result<crate::audit::Page, String> {
    let response = fetch("GET", &format!("/api/audit?{query}"), None).await.map_err(|e| format!("the relay cannot be reached: {e}"))?;
    let body = text(&response).await.unwrap_or_default();
    match response.status() {
        200 => serde_json::from_str(&body).map_err(|e| format!("the relay's answer was not understood: {e}")),
        // The relay says why (`{"error": …}`): not logged in, not an admin, a bad query.
        status => Err(serde_json::from_str::<ErrorBody>(&body).map(|b| b.error).unwrap_or_else(|_| format!("HTTP {status}"))),
    }
}

/// A JSON error answer of the relay's HTTP API.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
}

/// `POST /api/logout`.
pub async fn logout() {
    let _ = fetch("POST", "/api/logout", None).await;
}

/// A request to the relay (`url` on the page's origin, with a JSON body or none): its response, or why there is
/// none as JavaScript words it (`TypeError: Failed to fetch`). The browser's `fetch` itself: these few calls need
/// no request builder.
async fn fetch(method: &str, url: &str, json: Option<&str>) -> Result<web_sys::Response, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(body) = json {
        let headers = web_sys::Headers::new().map_err(js_error)?;
        headers.set("Content-Type", "application/json").map_err(js_error)?;
        init.set_headers(&headers);
        init.set_body(&body.into());
    }
    let window = web_sys::window().ok_or("no window")?;
    let response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init(url, &init)).await.map_err(js_error)?;
    Ok(response.unchecked_into())
}

/// A response's body as text.
async fn text(response: &web_sys::Response) -> Option<String> {
    wasm_bindgen_futures::JsFuture::from(response.text().ok()?).await.ok()?.as_string()
}

/// A JavaScript error as its `toString()` says it.
fn js_error(error: wasm_bindgen::JsValue) -> String {
    js_sys::Object::from(error).to_string().into()
}

/// The `name` of a `{"name": …}` answer. In the browser its own JSON parser reads it: serde_json's generic `Value`
/// reader would cost the WebAssembly a kilobyte (gzip) for this one field.
#[cfg(target_arch = "wasm32")]
fn user_of(json: &str) -> Option<String> {
    let value = js_sys::JSON::parse(json).ok()?;
    js_sys::Reflect::get(&value, &"name".into()).ok()?.as_string()
}

/// The `name` of a `{"name": …}` answer (natively, for the tests).
#[cfg(not(target_arch = "wasm32"))]
fn user_of(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json).ok()?.get("name")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use psgate_shared::api::{PipelineState, RecordKind};

    use super::*;

    fn output(pipeline: u64, seq: u64) -> ServerMessage {
        ServerMessage::Output { session: SessionId(1), pipeline: PipelineId(pipeline), seq, clixml: "<I32>1</I32>".into() }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!((0..8).map(backoff_ms).collect::<Vec<_>>(), [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff_ms(u32::MAX), 8000);
    }

    #[test]
    fn running_pipelines_are_reattached_after_the_last_seq() {
        let mut r = Resume::default();
        assert!(r.note(&ServerMessage::PipelineStarted { session: SessionId(1), pipeline: PipelineId(2) }));
        assert_eq!(r.attachments(), [ClientMessage::Attach { session: SessionId(1), pipeline: PipelineId(2), after_seq: 0 }]);
        assert!(r.note(&output(2, 1)));
        assert!(r.note(&ServerMessage::Record { session: SessionId(1), pipeline: PipelineId(2), seq: 2, kind: RecordKind::Warning, clixml: String::new() }));
        assert_eq!(r.attachments(), [ClientMessage::Attach { session: SessionId(1), pipeline: PipelineId(2), after_seq: 2 }]);
    }

    #[test]
    fn repeats_are_dropped_and_finished_pipelines_forgotten() {
        let mut r = Resume::default();
        r.note(&ServerMessage::PipelineStarted { session: SessionId(1), pipeline: PipelineId(2) });
        assert!(r.note(&output(2, 1)));
        assert!(!r.note(&output(2, 1)), "a repeat after a re-attach");
        let done = ServerMessage::PipelineState { session: SessionId(1), pipeline: PipelineId(2), seq: 2, state: PipelineState::Completed, error: None };
        assert!(r.note(&done));
        assert!(r.attachments().is_empty());
    }

    #[test]
    fn a_pipeline_re_attached_under_another_id_supersedes_the_one_running_on_its_session() {
        let mut r = Resume::default();
        r.note(&output(7, 12));
        r.note(&ServerMessage::PipelineStarted { session: SessionId(2), pipeline: PipelineId(3) });
        r.note(&ServerMessage::PipelineStarted { session: SessionId(1), pipeline: PipelineId(9) });
        assert_eq!(
            r.attachments(),
            [ClientMessage::Attach { session: SessionId(1), pipeline: PipelineId(9), after_seq: 0 }, ClientMessage::Attach { session: SessionId(2), pipeline: PipelineId(3), after_seq: 0 }]
        );
    }

    #[test]
    fn removed_sessions_are_not_reattached() {
        let mut r = Resume::default();
        r.note(&ServerMessage::PipelineStarted { session: SessionId(1), pipeline: PipelineId(2) });
        r.note(&ServerMessage::Sessions { sessions: vec![] });
        assert!(r.attachments().is_empty());
    }

    #[test]
    fn the_user_is_read_from_the_answer() {
        assert_eq!(user_of(r#"{"name":"demo"}"#).as_deref(), Some("demo"));
        assert_eq!(user_of("nope"), None);
    }
}
