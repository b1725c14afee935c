//! The web server: the browser console's assets and, when configured, the API: [`auth`] (login, logout, me),
//! [`embed`] (`/api/config`, the frame headers of `/embed` and every other page) and [`ws`] (the WebSocket of
//! [`psgate_shared::api`]), served through [`channel`] when another relay holds the user's sessions; and, with or
//! without the API, [`ops`] (`/healthz`, `/readyz`, `/metrics`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::handler::HandlerWithoutStateExt as _;
use axum::http::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::services::{ServeDir, ServeFile};

use crate::config::Config;
use crate::session::manager::Manager;

mod audit;
pub mod auth;
pub mod channel;
mod join;
pub mod embed;
pub mod ops;
pub mod ws;

/// The API's state: logins, sessions, and the origins allowed besides the relay's own.
#[derive(Clone, Debug)]
pub struct Api {
    /// Logins.
    pub auth: Arc<auth::Auth>,
    /// Sessions.
    pub manager: Arc<Manager>,
    /// `Origin`s besides the relay's own that may open the WebSocket.
    pub allowed_origins: Arc<Vec<String>>,
    /// The configuration (kiosk mode, the embed page).
    pub config: Arc<Config>,
    /// `[quotas] max_connections`: the API requests and WebSockets open at once.
    pub connections: crate::quotas::Connections,
}

/// How long a refused client is told to wait, in seconds.
const RETRY_AFTER_SECS: u32 = 5;

/// A connection refused by `max_connections` (the limit): 503 with `Retry-After`.
#[derive(Debug)]
pub struct Busy(pub u32);

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let text = format!("The relay is serving its maximum number of connections ({}, max_connections in [quotas]). Retry later.", self.0);
        (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())], text).into_response()
    }
}

/// Counts an API request against `max_connections` while it runs (the WebSocket's upgrade takes its own permit,
/// kept by the connection).
async fn limit_connections(axum::extract::State(api): axum::extract::State<Api>, req: Request, next: Next) -> Response {
    // The WebSocket's upgrade takes its own permit; a relay channel's was taken by the relay the browser reached.
    if req.uri().path() == "/api/ws" || req.uri().path() == channel::PATH {
        return next.run(req).await;
    }
    match api.connections.take() {
        Ok(_permit) => next.run(req).await,
        Err(limit) => api.busy(limit).into_response(),
    }
}

impl Api {
    /// A connection refused by `max_connections`, counted in the metrics.
    pub fn busy(&self, limit: u32) -> Busy {
        self.manager.metrics().refused("max_connections");
        Busy(limit)
    }
}

/// What the web server needs.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Trunk's output folder.
    pub assets: PathBuf,
    /// The API under `/api/` (absent: assets only).
    pub api: Option<Api>,
}

/// The application's routes.
///
/// Files come from Trunk's `dist`. A path that names no file and has no extension is a page of the single-page
/// app and gets `index.html`; a missing asset (`/old-hash.wasm`) is a 404, not `index.html` served as
/// JavaScript or WebAssembly.
pub fn app(config: &AppConfig) -> Router {
    let index = config.assets.join("index.html");
    let pages = config.assets.join("pages").join("index.html");
    let page = move |req: Request| {
        // The CLIXML viewer and the watch page are the other bundle's (dist/pages/).
        let mut index = ServeFile::new(if is_pages_route(req.uri().path()) { &pages } else { &index });
        async move {
            if has_extension(req.uri().path()) {
                return StatusCode::NOT_FOUND.into_response();
            }
            match index.try_call(req).await {
                Ok(response) => response.into_response(),
                Err(error) => {
                    tracing::error!(%error, "reading index.html");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    };
    let router = match &config.api {
        Some(api) => Router::new()
            .route("/api/login", post(auth::login))
            .route("/api/logout", post(auth::logout))
            .route("/api/me", get(auth::me))
            .route("/api/config", get(embed::config))
            .route("/api/ws", get(ws::upgrade))
            .route("/api/audit", get(audit::records))
            .route("/api/audit/verify", get(audit::verify))
            .route(channel::PATH, get(channel::accept))
            .with_state(api.clone())
            .layer(middleware::from_fn_with_state(api.clone(), limit_connections)),
        None => Router::new(),
    };
    // Merged after the limit's layer, which therefore does not count them.
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(config.api.clone());
    router
        .merge(ops)
        .fallback_service(ServeDir::new(&config.assets).fallback(page.into_service()))
        .layer(middleware::from_fn(cache_headers))
        .layer(middleware::from_fn_with_state(embed::FramePolicy::new(config.api.as_ref().map(|a| &*a.config)), embed::frame_headers))
}

/// The pages of the second bundle (`dist/pages/index.html`): `/viewer` (the CLIXML viewer) and `/watch/…` (a shared
/// session, the audit page). The console's download does not carry them.
fn is_pages_route(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == "/viewer" || path == "/watch" || path.starts_with("/watch/")
}

/// Trunk names every asset after a hash of its content, so those never change and can be cached for good;
/// `index.html` (and anything else) must be revalidated, since it names the current assets.
async fn cache_headers(req: Request, next: Next) -> Response {
    let fingerprinted = is_fingerprinted(req.uri().path());
    let mut response = next.run(req).await;
    let policy = if fingerprinted && response.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn has_extension(path: &str) -> bool {
    file_name(path).contains('.')
}

/// `psgate-frontend-1a339fc504889b2a_bg.wasm`, `style-4b6eaa8ea15aebbd.css`: Trunk's 16 hex digits after a
/// `-`, then `.` or `_`.
///
/// The hash is written without leading zeros (seen: `psgate-frontend-6771b0ea9745386_bg.wasm`, 15 digits), so 12 to 16
/// hex digits are taken.
fn is_fingerprinted(path: &str) -> bool {
    file_name(path).split('-').skip(1).any(|part| {
        let digits = part.bytes().take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)).count();
        (12..=16).contains(&digits) && matches!(part.as_bytes().get(digits), Some(b'.' | b'_'))
    })
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: AppConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if !config.assets.join("index.html").is_file() {
        tracing::warn!(assets = %config.assets.display(), "no built browser console here; run `trunk build --release` first");
    }
    // Small frames (a prompt, one output) go out at once: without TCP_NODELAY, Nagle's algorithm holds each one
    // until the browser's delayed ACK, 40 ms later, on every command.
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, app(&config)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::body::Body;
    use axum::http::header::CONTENT_TYPE;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// A `dist` folder like Trunk's, unique to the test.
    fn dist(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("psgate-http-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |name: &str, body: &[u8]| std::fs::write(dir.join(name), body).expect("write");
        write("index.html", b"<!doctype html><title>psgate</title>");
        write("psgate-frontend-1a339fc504889b2a_bg.wasm", b"\0asm\x01\0\0\0");
        write("psgate-frontend-1a339fc504889b2a.js", b"export default 1;");
        write("style-4b6eaa8ea15aebbd.css", b"body{}");
        std::fs::create_dir_all(dir.join("pages")).expect("pages");
        write("pages/index.html", b"<!doctype html><title>psgate pages</title>");
        dir
    }

    async fn get(assets: &Path, path: &str) -> (StatusCode, String, String, String) {
        let response = app(&AppConfig { assets: assets.to_owned(), api: None })
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        };
        let (status, content_type, cache) = (response.status(), header(CONTENT_TYPE), header(CACHE_CONTROL));
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, content_type, cache, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_with_their_types() {
        let d = dist("hashed");
        let (status, content_type, cache, _) = get(&d, "/psgate-frontend-1a339fc504889b2a_bg.wasm").await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/wasm"));
        assert_eq!(cache, "public, max-age=31536000, immutable");
        let (_, content_type, _, _) = get(&d, "/psgate-frontend-1a339fc504889b2a.js").await;
        assert_eq!(content_type, "text/javascript");
        let (_, content_type, cache, _) = get(&d, "/style-4b6eaa8ea15aebbd.css").await;
        assert_eq!((content_type.as_str(), cache.as_str()), ("text/css", "public, max-age=31536000, immutable"));
    }

    #[tokio::test]
    async fn the_page_is_revalidated_and_serves_every_route() {
        let d = dist("page");
        for path in ["/", "/index.html", "/sessions/42"] {
            let (status, content_type, cache, body) = get(&d, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
            assert_eq!(cache, "no-cache", "{path}");
            assert!(body.contains("<title>psgate</title>"), "{path}");
        }
    }

    #[tokio::test]
    async fn the_viewer_and_the_watch_page_are_the_other_bundles() {
        let d = dist("pages");
        for path in ["/viewer", "/viewer/", "/watch", "/watch/", "/watch/?join=alice%2F3", "/pages/"] {
            let (status, _, cache, body) = get(&d, path).await;
            assert_eq!((status, cache.as_str()), (StatusCode::OK, "no-cache"), "{path}");
            assert!(body.contains("<title>psgate pages</title>"), "{path}: {body}");
        }
        for path in ["/", "/viewers", "/watching", "/embed"] {
            let (_, _, _, body) = get(&d, path).await;
            assert!(body.contains("<title>psgate</title>"), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn a_missing_asset_is_not_found_rather_than_the_page() {
        let d = dist("missing");
        let (status, _, cache, body) = get(&d, "/psgate-frontend-0000000000000000_bg.wasm").await;
        assert_eq!((status, cache.as_str()), (StatusCode::NOT_FOUND, "no-cache"));
        assert!(!body.contains("<title>"));
    }

    #[test]
    fn fingerprints_are_trunks_sixteen_hex_digits() {
        assert!(is_fingerprinted("/psgate-frontend-1a339fc504889b2a_bg.wasm"));
        assert!(is_fingerprinted("/style-4b6eaa8ea15aebbd.css"));
        assert!(!is_fingerprinted("/index.html"));
        assert!(!is_fingerprinted("/my-style.css"));
        assert!(!is_fingerprinted("/a-1a339fc504889b2g.js"));
        // The hash without its leading zero (psgate-frontend-6771b0ea9745386_bg.wasm, a real build's).
        assert!(is_fingerprinted("/psgate-frontend-6771b0ea9745386_bg.wasm"));
        assert!(is_fingerprinted("/pages/psgate-pages-c994ddbbbf8ac6a8.js"));
        assert!(!is_fingerprinted("/jquery-3.js"));
        assert!(!is_fingerprinted("/a-1a339fc504889b2a1.js"));
    }
}
