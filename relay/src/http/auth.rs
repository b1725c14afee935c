//! Logins: `POST /api/login`, `POST /api/logout`, `GET /api/me`, and the cookie check the WebSocket uses.
//!
//! The cookie holds a random token (32 bytes from the OS) that names a login in a server-side map with an expiry;
//! it is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when the relay is reached over HTTPS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use serde::Deserialize;

use super::Api;
use crate::store::Store;

/// The cookie's name.
pub const COOKIE_NAME: &str = "psgate_session";

/// The logins.
#[derive(Debug)]
pub struct Auth {
    store: Arc<Store>,
    logins: Mutex<HashMap<String, (String, Instant)>>,
    ttl: Duration,
    secure: bool,
}

impl Auth {
    /// Logins checked against `store`, lasting `ttl`; `secure` marks the cookie `Secure`.
    pub fn new(store: Arc<Store>, ttl: Duration, secure: bool) -> Auth {
        Auth { store, logins: Mutex::default(), ttl, secure }
    }

    /// The user a request's cookie names, if its login is current.
    pub fn user(&self, headers: &HeaderMap) -> Option<String> {
        let token = cookie(headers)?;
        let mut logins = self.logins.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        logins.retain(|_, (_, expires)| *expires > now);
        logins.get(token).map(|(user, _)| user.clone())
    }

    fn cookie_header(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"))
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
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// `POST /api/login`'s body.
#[derive(Debug, Deserialize)]
pub struct Login {
    name: String,
    password: String,
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /api/login`: 200 with the cookie, or 401.
pub async fn login(State(api): State<Api>, body: Result<Json<Login>, axum::extract::rejection::JsonRejection>) -> Response {
    let Ok(Json(login)) = body else {
        return json_error(StatusCode::BAD_REQUEST, "send {\"name\": …, \"password\": …} as JSON");
    };
    let auth = api.auth.clone();
    let name = login.name.clone();
    let ok = tokio::task::spawn_blocking(move || auth.store.verify(&login.name, &login.password)).await;
    match ok {
        Ok(Ok(true)) => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            api.auth.logins.lock().unwrap_or_else(PoisonError::into_inner).insert(token.clone(), (name.clone(), Instant::now() + api.auth.ttl));
            tracing::info!(user = %name, "login");
            let mut response = Json(serde_json::json!({ "name": name })).into_response();
            response.headers_mut().insert(SET_COOKIE, api.auth.cookie_header(&token, api.auth.ttl.as_secs()));
            response
        }
        Ok(Ok(false)) => {
            tracing::info!(user = %name, "login refused");
            json_error(StatusCode::UNAUTHORIZED, "wrong user name or password")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "login");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the relay could not check the login")
        }
        Err(e) => {
            tracing::error!(error = %e, "login task");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the relay could not check the login")
        }
    }
}

/// `POST /api/logout`: forgets the login and clears the cookie.
pub async fn logout(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers) {
        api.auth.logins.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(SET_COOKIE, api.auth.cookie_header("", 0));
    response
}

/// `GET /api/me`: `{"name": …}` or 401.
pub async fn me(State(api): State<Api>, headers: HeaderMap) -> Response {
    match api.auth.user(&headers) {
        Some(name) => Json(serde_json::json!({ "name": name })).into_response(),
        None => json_error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}
