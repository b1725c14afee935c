//! The relay-to-relay channel: how a relay serves a user whose sessions another relay holds.
//!
//! Each user is served by one relay at a time, their *home* (the store's `homes`; see [`Manager::home`]): it holds
//! their sessions, their prompt and their pipelines' buffers. A browser may reach any relay (the balancer needs no
//! stickiness): the relay it reached checks the login and the `Origin`, and when the home is another relay, opens
//! this channel's WebSocket to it (`GET /internal/ws` at the home's `[cluster] address`) and splices the two
//! WebSockets frame by frame. The home serves the connection exactly as its own (the same messages, `after_seq`
//! resumes as contiguous), and checks the login itself, so a logout anywhere ends it.
//!
//! The channel's requests are signed, never authenticated by the user's cookie: HMAC-SHA256 (a key derived from the
//! shared sealing key, see [`crate::seal::Sealer::sign`]) over the calling relay's id, the user, the login's key (the
//! hash the store knows it by, which the home checks is current and the user's) and the time (refused beyond
//! [`MAX_SKEW_MS`]). Keep `/internal/` off the balancer (the shipped nginx configuration answers 404 there): the
//! relays' addresses are for each other.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as UpCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as UpError, Message as UpMessage};

use super::Api;
use super::auth::Login;
use crate::session::manager::{Home, Manager};
use psgate_shared::api::SessionId;
use crate::unix_ms;

/// The channel's path on every relay.
pub const PATH: &str = "/internal/ws";

/// How far a signed request's time may be from the home's clock.
pub const MAX_SKEW_MS: i64 = 30_000;

/// How long the relay a browser reached waits for the home to take the channel.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// The close code a browser gets when the home relay went away mid-connection (the browser reconnects; another relay
/// has taken the sessions over by then, or soon): 1012, service restart.
const CLOSE_HOME_GONE: u16 = 1012;

const FROM: &str = "x-psgate-relay";
const USER: &str = "x-psgate-user";
const LOGIN: &str = "x-psgate-login";
const TIME: &str = "x-psgate-time";
const SIGNATURE: &str = "x-psgate-signature";
/// A joined console's session (`OWNER/ID`), when the channel is one (issue 20).
const JOIN: &str = "x-psgate-join";

/// What is signed (`join`: empty for the user's own connection).
fn signed(from: &str, user: &str, login: &str, time: i64, join: &str) -> Vec<u8> {
    let mut text = format!("psgate relay channel\n{PATH}\n{from}\n{user}\n{login}\n{time}");
    if !join.is_empty() {
        text.push_str(&format!("\njoin {join}"));
    }
    text.into_bytes()
}

/// The home's WebSocket, as the relay a browser reached holds it.
pub type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why the channel to a home could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// This relay has no channel key (no store).
    #[error("this relay has no key for the relay channel")]
    NoKey,
    /// The address is not `http://host:port` (or `https://`).
    #[error("the relay address {0:?} is not http://host:port")]
    BadAddress(String),
    /// Nothing listens there (the relay is down).
    #[error("{address} refused the connection")]
    Refused {
        /// Where.
        address: String,
    },
    /// The home answered the upgrade with an error.
    #[error("{address} answered {status}")]
    Status {
        /// Where.
        address: String,
        /// The HTTP status.
        status: u16,
    },
    /// No answer within [`CONNECT_LIMIT`].
    #[error("{0} did not answer in time")]
    Timeout(String),
    /// Anything else.
    #[error("{address}: {source}")]
    Other {
        /// Where.
        address: String,
        /// Why.
        #[source]
        source: Box<UpError>,
    },
}

impl ChannelError {
    /// Whether nothing listens at the home's address: the relay process is gone.
    pub fn refused(&self) -> bool {
        matches!(self, ChannelError::Refused { .. })
    }
}

/// `http://host:port` → `ws://host:port/internal/ws`.
fn channel_url(address: &str) -> Option<String> {
    let address = address.trim().trim_end_matches('/');
    let rest = address.strip_prefix("http://").map(|r| ("ws", r)).or_else(|| address.strip_prefix("https://").map(|r| ("wss", r)));
    rest.filter(|(_, host)| !host.is_empty() && !host.contains('/')).map(|(scheme, host)| format!("{scheme}://{host}{PATH}"))
}

/// Opens the channel to the home relay at `address` for `login`.
pub async fn connect(manager: &Manager, address: &str, login: &Login, join: Option<(&str, SessionId)>) -> Result<Upstream, ChannelError> {
    let sealer = manager.channel().ok_or(ChannelError::NoKey)?;
    let url = channel_url(address).ok_or_else(|| ChannelError::BadAddress(address.to_owned()))?;
    let mut request = url.as_str().into_client_request().map_err(|_| ChannelError::BadAddress(address.to_owned()))?;
    let time = unix_ms();
    let from = manager.relay_id();
    let join = join.map(|(owner, session)| super::join::encode(owner, session)).unwrap_or_default();
    let signature = sealer.sign(&signed(from, &login.user, &login.key, time, &join));
    let headers = request.headers_mut();
    for (name, value) in [(FROM, from), (USER, &login.user), (LOGIN, &login.key), (TIME, &time.to_string()), (SIGNATURE, &signature)] {
        headers.insert(name, HeaderValue::from_str(value).map_err(|_| ChannelError::BadAddress(address.to_owned()))?);
    }
    if !join.is_empty() {
        // Encoded as the browser's query has it (a user name may hold what a header may not).
        headers.insert(JOIN, HeaderValue::from_str(&join).map_err(|_| ChannelError::BadAddress(address.to_owned()))?);
    }
    let address = address.to_owned();
    match tokio::time::timeout(CONNECT_LIMIT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(ChannelError::Timeout(address)),
        Ok(Ok((upstream, _))) => Ok(upstream),
        Ok(Err(UpError::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(ChannelError::Refused { address }),
        Ok(Err(UpError::Http(response))) => Err(ChannelError::Status { address, status: response.status().as_u16() }),
        Ok(Err(e)) => Err(ChannelError::Other { address, source: Box::new(e) }),
    }
}

/// Passes frames both ways between the browser's WebSocket and the home's until either ends. The home's close (a
/// login ended, with its code and reason) reaches the browser as it was; a home that went away without one closes
/// the browser's with [`CLOSE_HOME_GONE`], and the browser reconnects.
pub async fn splice(browser: WebSocket, upstream: Upstream) {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_home, mut from_home) = upstream.split();
    let down = async {
        while let Some(Ok(frame)) = from_home.next().await {
            let frame = match frame {
                UpMessage::Text(t) => Message::Text(t.as_str().into()),
                UpMessage::Binary(b) => Message::Binary(b),
                UpMessage::Close(close) => {
                    let close = close.map(|c| CloseFrame { code: u16::from(c.code), reason: c.reason.as_str().into() });
                    let _ = to_browser.send(Message::Close(close)).await;
                    return;
                }
                UpMessage::Ping(_) | UpMessage::Pong(_) | UpMessage::Frame(_) => continue,
            };
            if to_browser.send(frame).await.is_err() {
                return;
            }
        }
        let reason = "the relay serving your sessions went away: reconnecting";
        let _ = to_browser.send(Message::Close(Some(CloseFrame { code: CLOSE_HOME_GONE, reason: reason.into() }))).await;
    };
    let up = async {
        while let Some(Ok(frame)) = from_browser.next().await {
            let frame = match frame {
                Message::Text(t) => UpMessage::Text(t.as_str().into()),
                Message::Binary(b) => UpMessage::Binary(b),
                Message::Close(close) => {
                    let close = close.map(|c| UpCloseFrame { code: CloseCode::from(c.code), reason: c.reason.as_str().into() });
                    let _ = to_home.send(UpMessage::Close(close)).await;
                    return;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if to_home.send(frame).await.is_err() {
                return;
            }
        }
        let _ = to_home.close().await;
    };
    tokio::select! {
        () = down => {}
        () = up => {}
    }
}

/// A header's text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `GET /internal/ws` on the home: another relay's signed request for a user's connection, served as the user's own.
pub async fn accept(State(api): State<Api>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let Some(sealer) = api.manager.channel() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (Some(from), Some(user), Some(key), Some(time), Some(signature)) =
        (header(&headers, FROM), header(&headers, USER), header(&headers, LOGIN), header(&headers, TIME).and_then(|t| t.parse::<i64>().ok()), header(&headers, SIGNATURE))
    else {
        return (StatusCode::UNAUTHORIZED, "not a signed relay request").into_response();
    };
    let join = header(&headers, JOIN).map(|j| super::join::parse(Some(&format!("join={j}"))));
    let join_text = match &join {
        Some(Some(Ok((owner, session)))) => super::join::encode(owner, *session),
        Some(_) => return (StatusCode::BAD_REQUEST, "a join names OWNER/ID").into_response(),
        None => String::new(),
    };
    if !sealer.verify(&signed(from, user, key, time, &join_text), signature) {
        tracing::warn!(%from, %user, "a relay channel request with a bad signature refused");
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    if unix_ms().abs_diff(time) > MAX_SKEW_MS.unsigned_abs() {
        tracing::warn!(%from, %user, time, "a relay channel request out of time refused (check the relays' clocks)");
        return (StatusCode::UNAUTHORIZED, "out of time").into_response();
    }
    // The login must be current and the user's: the calling relay vouches for nothing the store does not say.
    if api.auth.current(key).await.as_deref() != Some(user) {
        return (StatusCode::UNAUTHORIZED, "no such login").into_response();
    }
    // A joined console: served where the owner's session is, to a joiner it is shared with.
    if let Some(Some(Ok((owner, session)))) = join {
        match api.manager.home(&owner).await {
            Ok(Home::Here) => {}
            Ok(Home::There { relay, .. }) => return (StatusCode::CONFLICT, format!("{owner} is served by relay {relay}")).into_response(),
            Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "the store did not answer").into_response(),
        }
        return super::join::upgrade(ws, api.manager.clone(), api.auth.clone(), user.to_owned(), key.to_owned(), owner, session, None).await;
    }
    match api.manager.home(user).await {
        Ok(Home::Here) => {}
        Ok(Home::There { relay, .. }) => {
            tracing::info!(%from, %user, home = %relay, "a relay channel request for a user another relay serves");
            return (StatusCode::CONFLICT, format!("{user} is served by relay {relay}")).into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a user's home");
            return (StatusCode::SERVICE_UNAVAILABLE, "the store did not answer").into_response();
        }
    }
    tracing::debug!(%from, %user, "serving a user's connection through relay {from}");
    let (manager, auth, user, key) = (api.manager.clone(), api.auth.clone(), user.to_owned(), key.to_owned());
    ws.on_upgrade(move |socket| async move {
        let open = manager.metrics().websocket_opened();
        super::ws::connection(socket, manager, user, auth, key).await;
        drop(open);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_name_the_channel() {
        assert_eq!(channel_url("http://10.0.0.5:8080").as_deref(), Some("ws://10.0.0.5:8080/internal/ws"));
        assert_eq!(channel_url("https://relay-b.contoso.com/").as_deref(), Some("wss://relay-b.contoso.com/internal/ws"));
        for bad in ["10.0.0.5:8080", "http://", "ftp://x", "http://x/y"] {
            assert_eq!(channel_url(bad), None, "{bad}");
        }
    }
}
