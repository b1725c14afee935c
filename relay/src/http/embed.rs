//! The embed page and kiosk mode, the relay's side: `GET /api/config` (what the page needs to know: kiosk mode and
//! its targets, the embed target, where `postMessage` events may go, the idle timeout) and the framing headers.
//!
//! Framing: `/embed` (and the assets it loads) carries `Content-Security-Policy: frame-ancestors` with
//! `[embed] frame_ancestors` (default `'none'`); every other response gets `frame-ancestors 'none'` and
//! `X-Frame-Options: DENY`, so the full console, the login page and the viewer can never be framed
//! (clickjacking).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use psgate_shared::api::PageConfig;

use super::Api;
use crate::config::{Config, TargetPreset};

/// `GET /api/config`: [`PageConfig`]; the targets only with a login (which the request refreshes).
pub async fn config(State(api): State<Api>, headers: HeaderMap) -> Json<PageConfig> {
    let logged_in = api.auth.login(&headers).await.is_some();
    let c = &api.config;
    Json(PageConfig {
        kiosk: c.kiosk.enabled,
        kiosk_targets: if logged_in && c.kiosk.enabled { c.kiosk.targets.iter().map(TargetPreset::to_target).collect() } else { Vec::new() },
        embed_target: c.embed.target.as_ref().filter(|_| logged_in).map(TargetPreset::to_target),
        frame_ancestors: c.embed.frame_ancestors.clone(),
        idle_timeout_secs: api.auth.idle_timeout().as_secs(),
    })
}

/// The framing headers: `/embed`'s and everyone else's.
#[derive(Clone, Debug)]
pub struct FramePolicy {
    /// `frame-ancestors …` for `/embed` and its assets.
    embed: HeaderValue,
    /// `/embed` may be framed by no one (the default): `X-Frame-Options: DENY` there too.
    embed_denied: bool,
}

impl FramePolicy {
    /// From `[embed] frame_ancestors` (no configuration: nobody frames anything).
    pub fn new(config: Option<&Config>) -> FramePolicy {
        let directive = config.map_or_else(|| "'none'".to_owned(), |c| c.embed.frame_ancestors_directive());
        // The configuration checked every source (no `;`, `,`, spaces or controls): always a valid header.
        let embed = HeaderValue::from_str(&format!("frame-ancestors {directive}")).unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'"));
        FramePolicy { embed_denied: directive == "'none'", embed }
    }
}

/// `/embed` and the paths under it: the page the single-page app lays out for an iframe.
pub fn is_embed_page(path: &str) -> bool {
    path == "/embed" || path.starts_with("/embed/")
}

/// A static asset (script, WebAssembly, style sheet…): what `/embed` loads besides itself.
fn is_asset(path: &str) -> bool {
    super::has_extension(path) && !path.starts_with("/api/") && !path.ends_with(".html") && !path.ends_with(".htm")
}

/// Sets the framing headers of every response.
pub async fn frame_headers(State(policy): State<FramePolicy>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if is_embed_page(&path) || is_asset(&path) {
        headers.insert(CONTENT_SECURITY_POLICY, policy.embed.clone());
        if policy.embed_denied {
            headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    } else {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_paths_are_embeddable() {
        for (path, embed) in [
            ("/embed", true),
            ("/embed/", true),
            ("/embed/x", true),
            ("/embedded", false),
            ("/", false),
            ("/viewer", false),
            ("/index.html", false),
            ("/api/me", false),
            ("/api/ws", false),
        ] {
            assert_eq!(is_embed_page(path) || is_asset(path), embed, "{path}");
        }
        assert!(is_asset("/psgate-frontend-1a339fc504889b2a_bg.wasm"));
        assert!(is_asset("/style-4b6eaa8ea15aebbd.css"));
    }
}
