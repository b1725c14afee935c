//! The web server: the browser console's assets (and, later, the WebSocket API).

use std::future::Future;
use std::path::PathBuf;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

/// What the web server needs.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Trunk's output folder.
    pub assets: PathBuf,
}

/// The application's routes.
pub fn app(config: &AppConfig) -> Router {
    let index = config.assets.join("index.html");
    Router::new().fallback_service(ServeDir::new(&config.assets).fallback(ServeFile::new(index)))
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
    axum::serve(listener, app(&config)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
