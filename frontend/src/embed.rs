//! The embed page (`/embed`, the console of one session for an iframe) and kiosk mode, the plain-Rust part:
//! the target from the URL or the relay's configuration, which session is the embedded one, the `postMessage`
//! events the state changes make, and the origins they may go to. No DOM: tested natively
//! ([`crate::components`] posts what this computes).
//!
//! Events (documented in `docs/api.md`), each `{"source": "psgate", "type": …}`: `ready` (the page knows whether
//! it is logged in), `logged_in`, `logged_out` (with the reason), `session` (the embedded session's state) and
//! `pipeline` (a command's state in it).

use std::collections::BTreeMap;

use psgate_shared::api::{PipelineId, PipelineState, SessionId, SessionInfo, SessionState, Target, Transport, WinrmAuth};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::app::{Auth, State, pipeline_state_name, session_state_label};

/// Whether a path is the embed page's.
pub fn is_embed_path(path: &str) -> bool {
    path == "/embed" || path.starts_with("/embed/")
}

/// `%41` and `+` decoded (invalid escapes kept as they are).
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The target of `?computer=HOST&transport=ssh|local&port=&user=&name=` (a leading `?` is fine). Absent
/// transport: `local` for `localhost`, else `ssh`. `None` without a computer or with a bad transport or port.
pub fn target_from_query(query: &str) -> Option<Target> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(url_decode(k)).or_insert_with(|| url_decode(v).trim().to_owned());
    }
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let computer = get("computer")?;
    let transport = match get("transport").as_deref() {
        Some("ssh") => Transport::Ssh,
        Some("local") => Transport::Local,
        Some("winrm") => Transport::Winrm,
        None if computer.eq_ignore_ascii_case("localhost") => Transport::Local,
        None => Transport::Ssh,
        Some(_) => return None,
    };
    let port = match get("port") {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => None,
    };
    Some(Target {
        computer_name: computer,
        transport,
        port,
        user: get("user"),
        password: None,
        key_file: None,
        subsystem: None,
        name: get("name"),
        use_ssl: matches!(get("usessl").as_deref(), Some("1" | "true")),
        authentication: match get("authentication").as_deref() {
            None => None,
            Some("negotiate") => Some(WinrmAuth::Negotiate),
            Some("ntlm") => Some(WinrmAuth::Ntlm),
            Some("kerberos") => Some(WinrmAuth::Kerberos),
            Some("basic") => Some(WinrmAuth::Basic),
            Some(_) => return None,
        },
        configuration_name: get("configuration"),
        shell_id: None,
    })
}

/// The target `/embed` opens: the relay's configured one wins over the URL's.
pub fn choose_target(configured: Option<Target>, from_url: Option<Target>) -> Option<Target> {
    configured.or(from_url)
}

/// Whether the target needs a password typed before it can open (SSH, WinRM; the relay holds no credentials).
pub fn needs_password(target: &Target) -> bool {
    target.transport != Transport::Local && target.password.is_none() && target.key_file.is_none()
}

/// Whether `session` is one the embed page opened on `target` (same computer, transport and, when the target names
/// one, name) and still usable (opening or opened).
pub fn is_embedded(session: &SessionInfo, target: &Target) -> bool {
    session.computer_name.eq_ignore_ascii_case(target.computer_name.trim())
        && session.transport == target.transport
        && target.name.as_deref().is_none_or(|n| session.name.eq_ignore_ascii_case(n))
        && matches!(session.state, SessionState::Opening | SessionState::Opened)
}

/// The embedded session among the user's (after a reload the page takes up the one it opened before).
pub fn find_embedded(sessions: &[SessionInfo], target: &Target) -> Option<SessionId> {
    sessions.iter().rev().find(|s| is_embedded(s, target)).map(|s| s.id)
}

/// An origin's parts: scheme, host (lowercase), port (the scheme's default when absent).
fn origin_parts(origin: &str) -> Option<(&str, String, Option<u16>)> {
    let (scheme, rest) = origin.split_once("://")?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p.parse().ok()?)),
        _ => (rest, None),
    };
    let default = match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    Some((scheme, host.to_ascii_lowercase(), port.or(default)))
}

/// Whether `origin` is allowed by one CSP `frame-ancestors` source (`'self'` = `own`, `*`,
/// `https://host[:port]`, `https://*.host[:*]`).
pub fn source_matches(source: &str, origin: &str, own: &str) -> bool {
    match source {
        "*" => origin.starts_with("https://") || origin.starts_with("http://"),
        "'self'" => origin.eq_ignore_ascii_case(own),
        "'none'" => false,
        _ => {
            let any_port = source.ends_with(":*");
            let source = source.strip_suffix(":*").unwrap_or(source);
            let (Some((s_scheme, s_host, s_port)), Some((o_scheme, o_host, o_port))) = (origin_parts(source), origin_parts(origin)) else {
                return false;
            };
            let host = match s_host.strip_prefix("*.") {
                Some(suffix) => o_host.len() > suffix.len() + 1 && o_host.ends_with(&format!(".{suffix}")),
                None => s_host == o_host,
            };
            s_scheme == o_scheme && host && (any_port || s_port == o_port)
        }
    }
}

/// The target origins of the page's `postMessage` events: the parent's own origin when it is known and one of the
/// frame ancestors allows it; when it is not known, each concrete origin configured (the browser delivers to the
/// one that is the parent), `*` only when `*` itself is configured. Nothing when nothing is configured.
pub fn post_origins(frame_ancestors: &[String], parent: Option<&str>, own: &str) -> Vec<String> {
    match parent.filter(|p| !p.is_empty() && *p != "null") {
        Some(parent) => {
            if frame_ancestors.iter().any(|s| source_matches(s, parent, own)) {
                vec![parent.to_owned()]
            } else {
                Vec::new()
            }
        }
        None => frame_ancestors
            .iter()
            .filter_map(|s| match s.as_str() {
                "*" => Some("*".to_owned()),
                "'self'" => Some(own.to_owned()),
                "'none'" => None,
                s if s.contains('*') => None,
                s => Some(s.to_owned()),
            })
            .collect(),
    }
}

/// The origin of a URL (`document.referrer`): scheme, host and port.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// One event for the parent: `{…fields, "source": "psgate", "type": kind}` once serialized (the object
/// `postMessage` sends). Not a `serde_json::Value`, whose map (an `IndexMap`) would cost the WebAssembly about 2 KiB
/// (gzip) for these few fields.
#[derive(Clone, Debug, PartialEq)]
pub struct ParentEvent {
    /// `type`.
    pub kind: &'static str,
    /// The other fields, in order.
    pub fields: Vec<(&'static str, EventValue)>,
}

/// A field's value in a [`ParentEvent`].
#[derive(Clone, Debug, PartialEq)]
pub enum EventValue {
    /// `true` or `false`.
    Bool(bool),
    /// A number (an id).
    Number(u64),
    /// A string, or `null`.
    Text(Option<String>),
}

impl From<&str> for EventValue {
    fn from(s: &str) -> EventValue {
        EventValue::Text(Some(s.to_owned()))
    }
}

impl Serialize for ParentEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len() + 2))?;
        for (name, value) in &self.fields {
            match value {
                EventValue::Bool(b) => map.serialize_entry(name, b)?,
                EventValue::Number(n) => map.serialize_entry(name, n)?,
                EventValue::Text(t) => map.serialize_entry(name, t)?,
            }
        }
        map.serialize_entry("source", "psgate")?;
        map.serialize_entry("type", self.kind)?;
        map.end()
    }
}

fn event(kind: &'static str, fields: Vec<(&'static str, EventValue)>) -> ParentEvent {
    ParentEvent { kind, fields }
}

/// Turns the page's successive states into events for the parent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tracker {
    ready: bool,
    user: Option<String>,
    /// The embedded session as last reported.
    session: Option<(SessionId, SessionState)>,
    /// Its pipelines' states as last reported.
    pipelines: BTreeMap<PipelineId, PipelineState>,
}

impl Tracker {
    /// The events since the last call: `state` is the page now, `embedded` the embedded session (if any).
    pub fn events(&mut self, state: &State, embedded: Option<SessionId>) -> Vec<ParentEvent> {
        let mut out = Vec::new();
        match &state.auth {
            Auth::Checking => return out,
            Auth::LoggedIn(user) => {
                if !self.ready {
                    out.push(event("ready", vec![("logged_in", EventValue::Bool(true)), ("user", user.as_str().into())]));
                } else if self.user.as_deref() != Some(user) {
                    out.push(event("logged_in", vec![("user", user.as_str().into())]));
                }
                self.user = Some(user.clone());
            }
            Auth::LoggedOut(reason) => {
                if !self.ready {
                    out.push(event("ready", vec![("logged_in", EventValue::Bool(false))]));
                } else if self.user.take().is_some() {
                    // The session stays the user's; a new login reports it afresh.
                    self.session = None;
                    self.pipelines.clear();
                    out.push(event("logged_out", vec![("reason", EventValue::Text(reason.clone()))]));
                }
            }
        }
        self.ready = true;
        if !matches!(state.auth, Auth::LoggedIn(_)) {
            return out;
        }
        let info = embedded.and_then(|id| state.session(id));
        match (info, self.session) {
            (Some(info), last) if last != Some((info.id, info.state)) => {
                self.session = Some((info.id, info.state));
                out.push(event(
                    "session",
                    vec![
                        ("state", session_state_label(info.state).to_ascii_lowercase().as_str().into()),
                        ("id", EventValue::Number(info.id.0)),
                        ("computer", info.computer_name.as_str().into()),
                        ("name", info.name.as_str().into()),
                        ("reason", EventValue::Text(info.reason.clone())),
                    ],
                ));
            }
            // The session went away (removed, or closed and dropped from the list).
            (None, Some((id, state))) if state != SessionState::Closed && embedded.is_none_or(|e| e == id) => {
                self.session = Some((id, SessionState::Closed));
                out.push(event("session", vec![("state", "closed".into()), ("id", EventValue::Number(id.0))]));
            }
            _ => {}
        }
        if let Some(info) = info
            && let Some(console) = state.consoles.get(&info.id)
        {
            for entry in &console.entries {
                let Some(pipeline) = entry.pipeline else { continue };
                let now = entry.state.unwrap_or(PipelineState::Running);
                if self.pipelines.get(&pipeline) != Some(&now) {
                    self.pipelines.insert(pipeline, now);
                    out.push(event("pipeline", vec![("state", pipeline_state_name(now).into()), ("session", EventValue::Number(info.id.0)), ("pipeline", EventValue::Number(pipeline.0))]));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use psgate_shared::api::ServerMessage;
    use serde_json::{Value, json};
    use yew::Reducible as _;

    use super::*;
    use crate::api::Event;
    use crate::app::Action;

    #[test]
    fn the_target_from_the_url() {
        let t = target_from_query("?computer=srv01.contoso.com&transport=ssh&port=2222&user=ops&name=web%20one").expect("target");
        assert_eq!((t.computer_name.as_str(), t.transport, t.port, t.user.as_deref(), t.name.as_deref()), ("srv01.contoso.com", Transport::Ssh, Some(2222), Some("ops"), Some("web one")));
        let t = target_from_query("computer=localhost").expect("target");
        assert_eq!((t.transport, t.port, t.user, t.name), (Transport::Local, None, None, None));
        assert_eq!(target_from_query("computer=srv&port=").expect("target").transport, Transport::Ssh);
        let t = target_from_query("computer=srv02&transport=winrm&usessl=1&authentication=kerberos&configuration=JEA.Helpdesk").expect("target");
        assert_eq!(
            (t.transport, t.use_ssl, t.authentication, t.configuration_name.as_deref()),
            (Transport::Winrm, true, Some(WinrmAuth::Kerberos), Some("JEA.Helpdesk"))
        );
        for bad in ["", "?", "?transport=ssh", "?computer=a&transport=telnet", "?computer=a&transport=winrm&authentication=digest", "?computer=a&port=99999", "?computer=a&port=0", "?computer=%zz&port=x"] {
            assert!(target_from_query(bad).is_none(), "{bad}");
        }
        assert_eq!(url_decode("a%2Bb+c%"), "a+b c%");
        let configured = target_from_query("computer=configured");
        assert_eq!(choose_target(configured.clone(), target_from_query("computer=url")), configured, "the relay's wins");
        assert_eq!(choose_target(None, target_from_query("computer=url")).map(|t| t.computer_name), Some("url".into()));
    }

    #[test]
    fn origins_events_may_go_to() {
        let own = "http://127.0.0.1:8080";
        let fa = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(post_origins(&fa(&["https://portal.example"]), Some("https://portal.example"), own), ["https://portal.example"]);
        assert!(post_origins(&fa(&["https://portal.example"]), Some("https://evil.example"), own).is_empty());
        assert!(post_origins(&[], Some("https://portal.example"), own).is_empty(), "nothing configured: nothing sent");
        assert!(post_origins(&[], None, own).is_empty());
        assert_eq!(post_origins(&fa(&["https://*.contoso.com"]), Some("https://a.contoso.com"), own), ["https://a.contoso.com"]);
        assert!(post_origins(&fa(&["https://*.contoso.com"]), Some("https://contoso.com"), own).is_empty());
        assert!(post_origins(&fa(&["https://*.contoso.com"]), Some("https://a.contoso.com:8443"), own).is_empty(), "another port");
        assert_eq!(post_origins(&fa(&["https://*.contoso.com:*"]), Some("https://a.contoso.com:8443"), own).len(), 1);
        assert_eq!(post_origins(&fa(&["https://portal.example:443"]), Some("https://portal.example"), own).len(), 1, "the default port");
        assert_eq!(post_origins(&fa(&["'self'"]), Some(own), own), [own]);
        assert_eq!(post_origins(&fa(&["*"]), Some("https://x.example"), own), ["https://x.example"], "the parent's origin, not *");
        // Unknown parent: the concrete origins, `*` only if configured.
        assert_eq!(post_origins(&fa(&["https://a.example", "https://*.b.example", "'self'"]), None, own), ["https://a.example", own]);
        assert_eq!(post_origins(&fa(&["*"]), None, own), ["*"]);
        assert_eq!(origin_of("https://portal.example:8443/page?x=1"), Some("https://portal.example:8443".into()));
        assert_eq!(origin_of(""), None);
    }

    fn info(id: u64, name: &str, state: SessionState) -> SessionInfo {
        serde_json::from_value(json!({"id": id, "name": name, "computer_name": "localhost", "transport": "local", "state": state, "availability": "none"})).expect("info")
    }

    #[test]
    fn the_embedded_session_is_found_again() {
        let target = target_from_query("computer=LOCALHOST&name=emb").expect("target");
        let sessions = [info(1, "other", SessionState::Opened), info(2, "emb", SessionState::Broken), info(3, "emb", SessionState::Opened)];
        assert_eq!(find_embedded(&sessions, &target), Some(SessionId(3)));
        assert_eq!(find_embedded(&sessions[..2], &target), None, "a broken one is not taken up");
        assert_eq!(find_embedded(&sessions, &target_from_query("computer=localhost").expect("t")), Some(SessionId(3)));
        assert!(needs_password(&target_from_query("computer=srv").expect("t")));
        assert!(!needs_password(&target));
    }

    fn msg(m: ServerMessage) -> Action {
        Action::Socket(Event::Message(m))
    }

    /// The events as the parent receives them.
    fn events(t: &mut Tracker, s: &State, embedded: Option<SessionId>) -> Vec<Value> {
        t.events(s, embedded).iter().map(|e| serde_json::to_value(e).expect("json")).collect()
    }

    #[test]
    fn state_changes_become_events() {
        let mut t = Tracker::default();
        let mut s = std::rc::Rc::new(State::default());
        assert!(events(&mut t, &s, None).is_empty(), "nothing while checking the login");
        s = s.reduce(Action::LoggedOut(None));
        assert_eq!(events(&mut t, &s, None), [json!({"source": "psgate", "type": "ready", "logged_in": false})]);
        s = s.reduce(Action::LoggedIn("demo".into()));
        assert_eq!(events(&mut t, &s, None), [json!({"source": "psgate", "type": "logged_in", "user": "demo"})]);
        s = s.reduce(msg(ServerMessage::Sessions { sessions: vec![info(4, "emb", SessionState::Opening)] }));
        let e = t.events(&s, Some(SessionId(4)));
        assert_eq!(
            e.iter().map(|e| serde_json::to_string(e).expect("json")).collect::<Vec<_>>(),
            [r#"{"state":"opening","id":4,"computer":"localhost","name":"emb","reason":null,"source":"psgate","type":"session"}"#]
        );
        assert!(events(&mut t, &s, Some(SessionId(4))).is_empty(), "no change, no event");
        s = s.reduce(msg(ServerMessage::SessionChanged { session: info(4, "emb", SessionState::Opened) }));
        assert_eq!(events(&mut t, &s, Some(SessionId(4)))[0]["state"], "opened");
        s = s.reduce(Action::Ran(SessionId(4), "Get-Date".into()));
        assert!(events(&mut t, &s, Some(SessionId(4))).is_empty(), "not started yet");
        s = s.reduce(msg(ServerMessage::PipelineStarted { session: SessionId(4), pipeline: PipelineId(9) }));
        assert_eq!(events(&mut t, &s, Some(SessionId(4))), [json!({"source": "psgate", "type": "pipeline", "state": "running", "session": 4, "pipeline": 9})]);
        s = s.reduce(msg(ServerMessage::PipelineState { session: SessionId(4), pipeline: PipelineId(9), seq: 1, state: PipelineState::Completed, error: None }));
        assert_eq!(events(&mut t, &s, Some(SessionId(4)))[0]["state"], "completed");
        s = s.reduce(msg(ServerMessage::SessionChanged { session: info(4, "emb", SessionState::Broken) }));
        assert_eq!(events(&mut t, &s, Some(SessionId(4)))[0]["state"], "broken");
        s = s.reduce(msg(ServerMessage::Sessions { sessions: vec![] }));
        assert_eq!(events(&mut t, &s, Some(SessionId(4))), [json!({"source": "psgate", "type": "session", "state": "closed", "id": 4})]);
        s = s.reduce(Action::Socket(Event::LoggedOut("logged out after 15 min without activity".into())));
        assert_eq!(events(&mut t, &s, None), [json!({"source": "psgate", "type": "logged_out", "reason": "logged out after 15 min without activity"})]);
        assert!(events(&mut t, &s, None).is_empty());
    }
}
