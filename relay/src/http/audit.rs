//! `GET /api/audit` and `GET /api/audit/verify`: the audit trail for relay admins, as JSON (the same selection as
//! `psgate audit search`, and the chain's check), for an admin page or a script with the admin's cookie.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Api;
use super::auth::json_error as error;
use crate::audit::export::Matcher;
use crate::store::AuditFilter;

/// The query of `GET /api/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user: Option<String>,
    computer: Option<String>,
    owner: Option<String>,
    session: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
    /// Comma-separated kinds.
    kinds: Option<String>,
    command: Option<String>,
    result_type: Option<String>,
    /// `Name=Spooler`.
    result: Option<String>,
    #[serde(default)]
    after_seq: i64,
    limit: Option<usize>,
}

/// The admin the cookie names (else the answer to give).
async fn admin(api: &Api, headers: &HeaderMap) -> Result<String, Response> {
    let Some(user) = api.auth.user(headers).await else { return Err(error(StatusCode::UNAUTHORIZED, "log in first")) };
    if !api.manager.is_admin(&user).await {
        return Err(error(StatusCode::FORBIDDEN, "only a relay admin reads the audit"));
    }
    Ok(user)
}

/// `GET /api/audit?…`: `{"records": [{"seq", "relay", "event"}], "more"}`, oldest first.
pub async fn records(State(api): State<Api>, headers: HeaderMap, query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let admin = match admin(&api, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(Query(q)) = query else { return error(StatusCode::BAD_REQUEST, "unknown or ill-typed query parameters (docs/api.md, The audit)") };
    let result_property = match q.result.as_deref().map(|r| r.split_once('=')) {
        Some(Some((name, value))) => Some((name.trim().to_owned(), value.trim().to_owned())),
        Some(None) => return error(StatusCode::BAD_REQUEST, "result is PROPERTY=VALUE, as Name=Spooler"),
        None => None,
    };
    let kinds = q.kinds.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
    let filter = AuditFilter { kinds, user: q.user, computer: q.computer, since: q.since, until: q.until, session: q.owner.zip(q.session) };
    let matcher = Matcher { command: q.command, result_type: q.result_type, result_property };
    let limit = q.limit.unwrap_or(500).clamp(1, 500);
    match api.manager.audit_records(&admin, &filter, &matcher, q.after_seq, limit).await {
        Ok((records, more)) => {
            let records: Vec<serde_json::Value> = records
                .iter()
                .map(|r| serde_json::json!({"seq": r.seq, "relay": r.relay, "event": serde_json::from_str::<serde_json::Value>(&r.body).unwrap_or_default()}))
                .collect();
            Json(serde_json::json!({ "records": records, "more": more })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    }
}

/// `GET /api/audit/verify`: `{"records", "end", "problems": [..]}` (no problems: the chain is intact).
pub async fn verify(State(api): State<Api>, headers: HeaderMap) -> Response {
    let admin = match admin(&api, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match api.manager.audit_verify(&admin).await {
        Ok((records, end, problems)) => Json(serde_json::json!({ "records": records, "end": end, "problems": problems })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    }
}
