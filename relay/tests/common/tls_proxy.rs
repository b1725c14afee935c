//! A TLS-intercepting proxy on loopback: it presents a certificate of its own (made by the WS-Management peer's
//! `self_signed` helper) and relays to an upstream TLS server without checking the upstream's certificate — what an
//! attacker in the middle does, and what channel binding (RFC 5929 `tls-server-end-point`) exists to defeat: the client
//! binds its authentication to the proxy's certificate, the server expects its own.
//!
//! Include `common/winrm_peer.rs` as `winrm_peer` next to this module.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::winrm_peer::{python, repo};

#[derive(Debug)]
pub struct TlsProxy {
    pub port: u16,
    /// The proxy's certificate (PEM), for the client to trust.
    pub cert: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on a free loopback port and relays each connection to `127.0.0.1:upstream` over TLS.
    pub async fn start(upstream: u16, dir: &Path) -> Self {
        let folder = dir.join("tls-proxy");
        std::fs::create_dir_all(&folder).expect("the proxy's folder");
        let script = format!(
            "import sys; sys.path.insert(0, {peers:?}); import winrm_host; \
             c, k, _ = winrm_host.self_signed({dir:?}, '127.0.0.1'); print(c); print(k)",
            peers = repo().join("tests/peers").display().to_string(),
            dir = folder.display().to_string(),
        );
        let out = std::process::Command::new(python()).args(["-c", &script]).output().expect("python for a certificate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines().map(str::to_owned);
        let (cert, key) = (lines.next().expect("a certificate path"), lines.next().expect("a key path"));

        let chain = CertificateDer::pem_file_iter(&cert).expect("certificate").collect::<Result<Vec<_>, _>>().expect("PEM");
        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the proxy's TLS configuration");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, connector) = (acceptor.clone(), connector.clone());
                tokio::spawn(async move {
                    let Ok(mut downstream) = acceptor.accept(tcp).await else { return };
                    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let Ok(name) = ServerName::try_from("127.0.0.1") else { return };
                    let Ok(mut upstream) = connector.connect(name, tcp).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                });
            }
        });
        Self { port, cert: cert.into(), task }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/wsman", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The attacker's side trusts whatever the real server presents.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
