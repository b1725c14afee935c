//! One HTTP/1.1 connection (TCP, or TLS over TCP) driven by hyper's client connection — deliberately not a pool:
//! NTLM and Kerberos authenticate the TCP connection, and the sealed messages' sequence numbers belong to it, so
//! every request of a session must go over this one connection, one at a time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::{debug, trace};

use super::tls;
use super::{Endpoint, WinrmError};

/// A plain or TLS stream, so that hyper sees one type.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection had closed before the request was written: nothing reached the server, it can be sent again
    /// on a new connection.
    NotSent,
    Failed(WinrmError),
}

/// One open connection. Dropping it closes the connection.
pub(crate) struct HttpConnection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    /// The server's certificate (DER), over HTTPS: what the channel binding hashes.
    pub peer_certificate: Option<Vec<u8>>,
    addr: String,
}

impl std::fmt::Debug for HttpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnection").field("addr", &self.addr).field("closed", &self.is_closed()).finish()
    }
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl HttpConnection {
    /// Opens the TCP connection and, for HTTPS, the TLS session. Not bounded in time: the caller's timeout is.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        tls_config: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<HttpConnection, WinrmError> {
        let addr = endpoint.display_addr();
        debug!(%addr, "winrm tcp connect");
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| WinrmError::Connect { addr: addr.clone(), source })?;
        // Requests and answers alternate: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let (stream, peer_certificate) = match tls_config {
            None => (Stream::Plain(tcp), None),
            Some(config) => {
                let name = tls::server_name(&endpoint.host)
                    .map_err(|reason| WinrmError::Tls { addr: addr.clone(), reason })?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await.map_err(|e| {
                    match tls::certificate_problem(&e) {
                        Some(problem) => WinrmError::Certificate { host: addr.clone(), problem },
                        None => WinrmError::Tls { addr: addr.clone(), reason: e.to_string() },
                    }
                })?;
                let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec());
                debug!(%addr, version = ?tls.get_ref().1.protocol_version(), "winrm tls established");
                (Stream::Tls(Box::new(tls)), cert)
            }
        };
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| WinrmError::Http { addr: addr.clone(), reason: e.to_string() })?;
        let driver_addr = addr.clone();
        let driver = tokio::spawn(async move {
            match connection.await {
                Ok(()) => debug!(addr = %driver_addr, "winrm connection closed"),
                Err(e) => debug!(addr = %driver_addr, error = %e, "winrm connection ended"),
            }
        });
        Ok(HttpConnection { sender, driver, peer_certificate, addr })
    }

    /// Whether the server (or the network) has closed the connection.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.driver.is_finished()
    }

    /// Sends one request and reads its whole answer (at most `limit` bytes of body) within `timeout`.
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        limit: usize,
        timeout: Duration,
    ) -> Result<RawResponse, SendError> {
        let addr = self.addr.clone();
        let exchange = async {
            if self.is_closed() || self.sender.ready().await.is_err() {
                return Err(SendError::NotSent);
            }
            let response = match self.sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut e) => {
                    if e.take_message().is_some() {
                        return Err(SendError::NotSent);
                    }
                    return Err(SendError::Failed(lost(&addr, e.error())));
                }
            };
            let (parts, body) = response.into_parts();
            let declared = parts
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(SendError::Failed(WinrmError::ResponseTooLarge { addr: addr.clone(), limit }));
            }
            let body = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(SendError::Failed(WinrmError::ResponseTooLarge { addr: addr.clone(), limit }));
                }
                Err(e) => {
                    let reason = match e.downcast_ref::<hyper::Error>() {
                        Some(h) => return Err(SendError::Failed(lost(&addr, h))),
                        None => e.to_string(),
                    };
                    return Err(SendError::Failed(WinrmError::ConnectionLost { addr: addr.clone(), reason }));
                }
            };
            trace!(%addr, status = %parts.status, bytes = body.len(), "winrm http response");
            Ok(RawResponse { status: parts.status, headers: parts.headers, body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Failed(WinrmError::Timeout { addr, after: timeout, stage: "waiting for the answer" })),
        }
    }
}

fn lost(addr: &str, e: &hyper::Error) -> WinrmError {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        WinrmError::ConnectionLost {
            addr: addr.to_owned(),
            reason: "the server closed the connection before it answered".to_owned(),
        }
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        WinrmError::Http { addr: addr.to_owned(), reason: format!("malformed HTTP answer: {e}") }
    } else {
        WinrmError::ConnectionLost { addr: addr.to_owned(), reason: e.to_string() }
    }
}
