//! The operators' endpoints, for balancers, orchestrators and Prometheus: `GET /healthz` (alive), `GET /readyz`
//! (ready for traffic) and `GET /metrics` (Prometheus text). None needs a login, and none counts against
//! `[quotas] max_connections`: a relay serving its maximum must still tell its balancer that it is alive, and be
//! watched while it does.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::Api;

/// How long `/readyz` waits for the store: well under a balancer's check interval, so that a hung database makes
/// the relay unready rather than the check time out.
pub const STORE_PING_LIMIT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 `ok` whenever the process serves HTTP (a liveness check: failing it means restart me).
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 `ready` when the store answers within [`STORE_PING_LIMIT`] and the relay is not draining;
/// else 503 with the reason on one line (`draining`, `store unreachable: …`). A relay without the API (assets
/// only) has no store and is ready.
pub async fn readyz(State(api): State<Option<Api>>) -> Response {
    let Some(api) = api else { return (StatusCode::OK, "ready").into_response() };
    if api.manager.draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    let why = match tokio::time::timeout(STORE_PING_LIMIT, api.auth.store().ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {} s", STORE_PING_LIMIT.as_secs()),
    };
    tracing::warn!(reason = %why, "not ready: the store does not answer");
    // One line: a database's message may have several.
    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
    (StatusCode::SERVICE_UNAVAILABLE, format!("store unreachable: {why}")).into_response()
}

/// `GET /metrics`: this relay's metrics in Prometheus text format (see [`crate::metrics`]); 404 when the
/// configuration turns them off (`metrics = false`) or the relay has no API.
pub async fn metrics(State(api): State<Option<Api>>) -> Response {
    match api {
        Some(api) if api.config.metrics => {
            let text = api.manager.metrics().render(api.manager.session_states());
            ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "metrics are off on this relay (metrics = false in its configuration)").into_response(),
    }
}
