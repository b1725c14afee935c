//! Logins: `POST /api/login`, `POST /api/logout`, `GET /api/me`, and the cookie check the other routes use.
//!
//! The cookie holds a random token (32 bytes from the OS). The database keeps only its SHA-256 (the token has 256
//! bits of entropy, so a plain hash is enough: nothing to guess), with the user, the last activity and the expiry,
//! so a login survives a restart of the relay and a copy of the database holds no usable cookie. A login ends when
//! it expires (`login_minutes` after the login), after `[auth] idle_timeout_secs` without activity (API calls and
//! WebSocket messages refresh it), or at logout; an ended login is deleted, and its open WebSockets are closed with
//! [`CLOSE_LOGIN_ENDED`] and the reason. The cookie is `HttpOnly`, `Path=/`, `SameSite` as configured
//! (`[embed] cookie_same_site`, default `Strict`), `Secure` with `secure_cookies`, and `Partitioned` with
//! `SameSite=None` (an iframe under another site keeps a cookie of its own, per embedding site).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::broadcast;

use super::Api;
use crate::config::{Config, SameSite};
use crate::store::Store;
use crate::unix_ms;

/// The cookie's name.
pub const COOKIE_NAME: &str = "psgate_session";

/// The WebSocket close code when the connection's login has ended (idle, expired, logged out); the close reason
/// says which, for people.
pub const CLOSE_LOGIN_ENDED: u16 = 4001;

/// How often an open WebSocket's login is looked at again in the store (a logout on another relay ends it).
const RECHECK: Duration = Duration::from_secs(5);

/// How often ended logins are purged from the database at most.
const PURGE_EVERY_MS: i64 = 60_000;

/// A current login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// Whose.
    pub user: String,
    /// The hash of its token: how the database and the WebSockets name it.
    pub key: String,
}

/// Why a login is not current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// No activity for the idle timeout.
    Idle,
    /// Older than `login_minutes`.
    Expired,
    /// Logged out (or never was, or the password changed).
    LoggedOut,
    /// The database could not say (the error is logged); treated as not logged in, but an open WebSocket is not
    /// closed for it.
    Unknown,
}

/// The logins.
#[derive(Debug)]
pub struct Auth {
    store: Arc<Store>,
    /// The relay's metrics (the login check's latency).
    metrics: Arc<crate::metrics::Metrics>,
    ttl: Duration,
    idle: Duration,
    secure: bool,
    same_site: SameSite,
    /// The keys of logins that ended by logout (their WebSockets close at once).
    logouts: broadcast::Sender<String>,
    last_purge: AtomicI64,
}


fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The key a token is stored under: its SHA-256, in hex.
pub fn token_key(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `90 s`, `15 min`, `8 h`.
fn human(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

impl Auth {
    /// Logins checked against `store`, with `config`'s lifetime, idle timeout and cookie attributes; the login
    /// checks timed in `metrics` (the relay's).
    pub fn new(store: Arc<Store>, config: &Config, metrics: Arc<crate::metrics::Metrics>) -> Auth {
        Auth {
            store,
            metrics,
            ttl: Duration::from_secs(config.login_minutes.saturating_mul(60)),
            idle: config.idle_timeout(),
            secure: config.secure_cookies || config.embed.cookie_same_site == SameSite::None,
            same_site: config.embed.cookie_same_site,
            logouts: broadcast::channel(64).0,
            last_purge: AtomicI64::new(i64::MIN),
        }
    }

    /// The store the logins are kept in (`/readyz` pings it).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// The current login a request's cookie names, noting the request as activity.
    pub async fn login(&self, headers: &HeaderMap) -> Option<Login> {
        let key = token_key(cookie(headers)?);
        self.state(&key, true).await.ok().map(|(_, user)| Login { user, key })
    }

    /// The user a request's cookie names, if its login is current (noting the request as activity).
    pub async fn user(&self, headers: &HeaderMap) -> Option<String> {
        self.login(headers).await.map(|l| l.user)
    }

    /// The user of login `key`, if it is current (not noted as activity).
    pub async fn current(&self, key: &str) -> Option<String> {
        self.state(key, false).await.ok().map(|(_, user)| user)
    }

    /// Notes activity on a login (a WebSocket message); `Err` when it has ended.
    pub async fn touch(&self, key: &str) -> Result<(), Ended> {
        match self.state(key, true).await {
            Ok(_) | Err(Ended::Unknown) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// When the login ends if nothing happens (ms since the epoch) and whose it is, or why it has ended. An ended login is
    /// deleted. With `touch`, the check counts as activity (written at most every 1/20 of the idle timeout, at
    /// most every minute, so the database is not written on every message). One query when nothing is written.
    async fn state(&self, key: &str, touch: bool) -> Result<(i64, String), Ended> {
        let now = unix_ms();
        let row = self.metrics.time_store(crate::metrics::StoreOp::Login, self.store.login(key)).await;
        // After the read, so an ended login read here is reported as what ended it.
        self.purge(now).await;
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => return Err(Ended::LoggedOut),
            Err(error) => {
                tracing::error!(%error, "reading a login");
                return Err(Ended::Unknown);
            }
        };
        let idle = ms(self.idle);
        let ended = if now >= row.expires {
            Some(Ended::Expired)
        } else if now.saturating_sub(row.last_seen) >= idle {
            Some(Ended::Idle)
        } else {
            None
        };
        if let Some(why) = ended {
            tracing::info!(user = %row.user, reason = ?why, "login ended");
            if let Err(error) = self.store.remove_login(key).await {
                tracing::error!(%error, "removing an ended login");
            }
            return Err(why);
        }
        let mut last_seen = row.last_seen;
        if touch && now - row.last_seen >= (idle / 20).min(60_000) {
            match self.store.touch_login(key, now).await {
                Ok(()) => last_seen = now,
                Err(error) => tracing::error!(%error, "noting activity on a login"),
            }
        }
        Ok((row.expires.min(last_seen.saturating_add(idle)), row.user))
    }

    /// Deletes ended logins, at most every minute.
    async fn purge(&self, now: i64) {
        let last = self.last_purge.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PURGE_EVERY_MS || self.last_purge.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        match self.store.purge_logins(now, now.saturating_sub(ms(self.idle))).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(logins = n, "ended logins purged"),
            Err(error) => tracing::error!(%error, "purging ended logins"),
        }
    }

    /// Resolves when the login `key` ends (never with [`Ended::Unknown`]): sleeps until its idle deadline (at most a
    /// few seconds: another relay may have ended it), checks again (another tab may have been active), and wakes at
    /// once on its logout on this relay.
    pub async fn ended(&self, key: &str) -> Ended {
        let mut logouts = self.logouts.subscribe();
        loop {
            let wait = match self.state(key, false).await {
                // Looked at again every few seconds at most: a logout on another relay of the store (whose broadcast
                // does not reach this one) ends this WebSocket too.
                Ok((deadline, _)) => Duration::from_millis(u64::try_from(deadline - unix_ms()).unwrap_or(0) + 20).min(RECHECK),
                Err(Ended::Unknown) => Duration::from_secs(5),
                Err(why) => return why,
            };
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    logout = logouts.recv() => match logout {
                        Ok(k) if k == key => return Ended::LoggedOut,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        // Never: `self` holds the sender. Wait for the deadline.
                        Err(broadcast::error::RecvError::Closed) => {
                            sleep.as_mut().await;
                            break;
                        }
                    },
                }
            }
        }
    }

    /// For people: why the login ended (the WebSocket's close reason, under 123 bytes).
    pub fn reason(&self, why: Ended) -> String {
        match why {
            Ended::Idle => format!("logged out after {} without activity", human(self.idle)),
            Ended::Expired => "logged out: the login has expired".into(),
            Ended::LoggedOut | Ended::Unknown => "logged out".into(),
        }
    }

    fn cookie_header(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        // CHIPS: a third-party cookie is kept only partitioned by the top-level site (the portal).
        let partitioned = if self.same_site == SameSite::None { "; Partitioned" } else { "" };
        let same_site = self.same_site.as_str();
        HeaderValue::from_str(&format!("{COOKIE_NAME}={token}; HttpOnly; SameSite={same_site}; Path=/; Max-Age={max_age}{secure}{partitioned}"))
            .unwrap_or_else(|_| HeaderValue::from_static("psgate_session=; Max-Age=0"))
    }
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value)
}

/// `POST /api/login`'s body.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

pub(super) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /api/login`: 200 with the cookie, or 401.
pub async fn login(State(api): State<Api>, body: Result<Json<LoginForm>, axum::extract::rejection::JsonRejection>) -> Response {
    let Ok(Json(form)) = body else {
        return json_error(StatusCode::BAD_REQUEST, "send {\"name\": …, \"password\": …} as JSON");
    };
    let auth = &api.auth;
    let name = form.name.clone();
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let key = token_key(&token);
    // The store hashes on the blocking pool (argon2 is slow).
    let ok = async {
        if !auth.store.verify(&form.name, &form.password).await? {
            return Ok(false);
        }
        let now = unix_ms();
        auth.store.add_login(&key, &form.name, now, now.saturating_add(ms(auth.ttl))).await?;
        Ok::<bool, crate::store::StoreError>(true)
    }
    .await;
    match ok {
        Ok(true) => {
            tracing::info!(user = %name, "login");
            api.manager.audit(crate::audit::Event::new(crate::audit::Kind::Login, &name));
            let mut response = Json(serde_json::json!({ "name": name })).into_response();
            response.headers_mut().insert(SET_COOKIE, api.auth.cookie_header(&token, api.auth.ttl.as_secs()));
            response
        }
        Ok(false) => {
            tracing::info!(user = %name, "login refused");
            api.manager.audit(crate::audit::Event::new(crate::audit::Kind::LoginRefused, &name));
            json_error(StatusCode::UNAUTHORIZED, "wrong user name or password")
        }
        Err(e) => {
            tracing::error!(error = %e, "login");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the relay could not check the login")
        }
    }
}

/// `POST /api/logout`: forgets the login (its WebSockets close), clears the cookie.
pub async fn logout(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers) {
        let key = token_key(token);
        let user = api.auth.store.login(&key).await.ok().flatten().map(|l| l.user);
        match api.auth.store.remove_login(&key).await {
            Ok(true) => {
                tracing::info!("logout");
                if let Some(user) = user {
                    api.manager.audit(crate::audit::Event::new(crate::audit::Kind::Logout, &user));
                }
            }
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "logout"),
        }
        let _ = api.auth.logouts.send(key);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(SET_COOKIE, api.auth.cookie_header("", 0));
    response
}

/// `GET /api/me`: `{"name": …}` or 401.
pub async fn me(State(api): State<Api>, headers: HeaderMap) -> Response {
    match api.auth.user(&headers).await {
        Some(name) => Json(serde_json::json!({ "name": name })).into_response(),
        None => json_error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn auth(change: impl FnOnce(&mut Config)) -> (Arc<Store>, Auth) {
        let store = Arc::new(Store::in_memory().expect("db"));
        store.set_user("alice", "pw").await.expect("user");
        let mut config = Config::default();
        change(&mut config);
        let auth = Auth::new(store.clone(), &config, Arc::default());
        (store, auth)
    }

    fn with_cookie(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("other=1; {COOKIE_NAME}={token}")).expect("header"));
        h
    }

    #[tokio::test]
    async fn only_the_hash_of_the_token_is_stored() {
        let (store, auth) = auth(|_| {}).await;
        let token = "00ff".repeat(16);
        let now = unix_ms();
        store.add_login(&token_key(&token), "alice", now, now + 60_000).await.expect("login");
        assert_eq!(auth.user(&with_cookie(&token)).await.as_deref(), Some("alice"));
        assert!(store.login(&token).await.expect("read").is_none(), "the token itself is no key");
        assert_eq!(token_key(&token).len(), 64);
        assert_eq!(auth.user(&with_cookie("forged")).await, None);
        assert_eq!(auth.user(&HeaderMap::new()).await, None);
        assert_eq!(auth.user(&with_cookie("")).await, None);
    }

    #[tokio::test]
    async fn idle_and_expired_logins_are_refused_and_deleted() {
        let (store, auth) = auth(|c| c.auth.idle_timeout_secs = Some(60)).await;
        let now = unix_ms();
        auth.last_purge.store(now, Ordering::Relaxed); // no purge yet: each login is refused for its reason
        store.add_login(&token_key("idle"), "alice", now - 61_000, now + 600_000).await.expect("login");
        store.add_login(&token_key("old"), "alice", now - 1_000, now - 1).await.expect("login");
        store.add_login(&token_key("fresh"), "alice", now - 30_000, now + 600_000).await.expect("login");
        assert_eq!(auth.state(&token_key("idle"), false).await, Err(Ended::Idle));
        assert_eq!(auth.state(&token_key("old"), false).await, Err(Ended::Expired));
        assert!(store.login(&token_key("idle")).await.expect("read").is_none() && store.login(&token_key("old")).await.expect("read").is_none());
        let (before, user) = auth.state(&token_key("fresh"), false).await.expect("current");
        assert_eq!(user, "alice");
        assert!((before - (now + 30_000)).abs() < 1_000, "idle deadline from the last activity");
        let (after, _) = auth.state(&token_key("fresh"), true).await.expect("current");
        assert!(after >= now + 59_000, "activity moves the deadline");
        assert!(auth.reason(Ended::Idle).contains("60 s"), "{}", auth.reason(Ended::Idle));
        // The purge deletes ended logins nobody asks about.
        store.add_login(&token_key("forgotten"), "alice", now - 61_000, now + 600_000).await.expect("login");
        auth.last_purge.store(i64::MIN, Ordering::Relaxed);
        auth.state(&token_key("fresh"), false).await.expect("current");
        assert!(store.login(&token_key("forgotten")).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn cookie_attributes() {
        let (_, strict) = auth(|_| {}).await;
        let c = strict.cookie_header("t", 60);
        assert_eq!(c.to_str().expect("ascii"), "psgate_session=t; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
        let (_, none) = auth(|c| {
            c.secure_cookies = true;
            c.embed.cookie_same_site = SameSite::None;
        })
        .await;
        let c = none.cookie_header("t", 60);
        assert_eq!(c.to_str().expect("ascii"), "psgate_session=t; HttpOnly; SameSite=None; Path=/; Max-Age=60; Secure; Partitioned");
    }

    #[tokio::test]
    async fn a_logout_wakes_the_watchers_of_that_login_only() {
        let (store, auth) = auth(|_| {}).await;
        let auth = Arc::new(auth);
        let now = unix_ms();
        store.add_login("k1", "alice", now, now + 600_000).await.expect("login");
        store.add_login("k2", "alice", now, now + 600_000).await.expect("login");
        let (a1, a2) = (auth.clone(), auth.clone());
        let w1 = tokio::spawn(async move { a1.ended("k1").await });
        let w2 = tokio::spawn(async move { a2.ended("k2").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.remove_login("k1").await.expect("remove");
        let _ = auth.logouts.send("k1".into());
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), w1).await.expect("in time").expect("task"), Ended::LoggedOut);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!w2.is_finished());
        w2.abort();
    }
}
