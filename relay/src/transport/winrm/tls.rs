//! HTTPS for WinRM: rustls (on aws-lc-rs) with the system's CA store plus an optional CA file, a loudly named
//! opt-out, readable certificate errors, and the `tls-server-end-point` channel binding (RFC 5929 §4) that NTLM and
//! Kerberos put in their tokens so that a TLS-intercepting proxy cannot relay them.
//!
//! Why the system store and not a bundled Mozilla list: WinRM listeners mostly carry certificates from an
//! enterprise CA (AD CS), which administrators install in the system store, not in any public list.
//! `rustls-native-certs` (the rustls project's loader) reads it: on Linux the OpenSSL locations, honouring
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest as _, Sha224, Sha256, Sha384, Sha512};
use tracing::{debug, warn};

use super::WinrmError;

/// How the server's certificate is checked over HTTPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVerification {
    /// The certificate must chain to the system's CA store (or to [`WinrmOptions::ca_file`](super::WinrmOptions))
    /// and name the host; the default.
    #[default]
    Verify,
    /// Any certificate is accepted — expired, self-signed, for another name. Only for a lab: anyone on the path can
    /// then read and change the whole session, the password too with Basic. The channel binding still protects
    /// NTLM and Kerberos from being relayed.
    DangerAcceptInvalidCertificates,
}

/// What is wrong with a server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// It does not chain to a trusted CA: self-signed, or its CA is not in the system store or the CA file.
    UnknownIssuer,
    Expired,
    NotYetValid,
    /// It was issued for other names.
    WrongName { expected: String, presented: Vec<String> },
    Revoked,
    /// It is not meant for TLS servers (extended key usage).
    NotForServers,
    Other(String),
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str(
                "it is not issued by a trusted certificate authority (self-signed, or its CA is neither in the \
                 system store nor in the CA file given)",
            ),
            Self::Expired => f.write_str("it has expired"),
            Self::NotYetValid => f.write_str("it is not valid yet (check the clocks)"),
            Self::WrongName { expected, presented } if presented.is_empty() => {
                write!(f, "it is not valid for the name {expected}")
            }
            Self::WrongName { expected, presented } => {
                write!(f, "it is not valid for the name {expected} (it names {})", presented.join(", "))
            }
            Self::Revoked => f.write_str("it has been revoked"),
            Self::NotForServers => f.write_str("it is not a server certificate (extended key usage)"),
            Self::Other(reason) => f.write_str(reason),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// The system store's certificates, read once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            warn!(%error, "reading the system CA store");
        }
        debug!(certificates = loaded.certs.len(), "system CA store read");
        loaded.certs
    })
}

/// The certificates of a PEM (or single DER) file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, WinrmError> {
    let error = |reason: String| WinrmError::CaFile { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not a PEM certificate file: {e}")))?;
    if !certs.is_empty() {
        return Ok(certs);
    }
    // A DER certificate starts with a SEQUENCE.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(bytes)]);
    }
    Err(error("it holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)".to_owned()))
}

/// The rustls client configuration for `verification` (and a CA file added to the system store).
pub(crate) fn client_config(
    verification: TlsVerification,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, WinrmError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| WinrmError::Tls { addr: String::new(), reason: e.to_string() })?;
    let mut config = match verification {
        TlsVerification::Verify => {
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
            debug!(added, ignored, "system CA certificates");
            if let Some(path) = ca_file {
                for cert in read_ca_file(path)? {
                    roots.add(cert).map_err(|e| WinrmError::CaFile {
                        path: path.to_owned(),
                        reason: format!("a certificate cannot be used as a CA: {e}"),
                    })?;
                }
            }
            if roots.is_empty() {
                warn!("no CA certificates: the system store is empty and no CA file was given");
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsVerification::DangerAcceptInvalidCertificates => {
            warn!("TLS certificate checks are OFF (DangerAcceptInvalidCertificates)");
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))).with_no_client_auth()
        }
    };
    // WinRM speaks HTTP/1.1; HTTP.sys would offer h2 to a client that asked.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name rustls checks the certificate against: an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} is not a valid host name for TLS: {e}"))
}

/// A typed certificate problem, if the TLS error is one.
pub(crate) fn certificate_problem(error: &std::io::Error) -> Option<CertificateProblem> {
    let rustls::Error::InvalidCertificate(cert) = error.get_ref()?.downcast_ref::<rustls::Error>()? else {
        return None;
    };
    Some(match cert {
        CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => CertificateProblem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => CertificateProblem::NotYetValid,
        CertificateError::NotValidForNameContext { expected, presented } => CertificateProblem::WrongName {
            expected: expected.to_str().into_owned(),
            presented: presented.clone(),
        },
        CertificateError::NotValidForName => CertificateProblem::WrongName { expected: String::new(), presented: vec![] },
        CertificateError::Revoked => CertificateProblem::Revoked,
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            CertificateProblem::NotForServers
        }
        other => CertificateProblem::Other(other.to_string()),
    })
}

/// Accepts any certificate, but still checks that the server holds its key (the handshake signature), so the
/// certificate the channel binding hashes is the one the server proved.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Channel binding (RFC 5929 §4.1, as MS-NLMP and MS-KILE use it)

/// `tls-server-end-point:` + the hash of the server's certificate (DER). The hash is the one the certificate's
/// signature uses, except that MD5 and SHA-1 become SHA-256; a signature with no single hash (Ed25519) or one not
/// known here gets SHA-256 too, as pyspnego/pypsrp and .NET do.
pub fn tls_server_end_point(certificate_der: &[u8]) -> Vec<u8> {
    let mut data = b"tls-server-end-point:".to_vec();
    match signature_hash(certificate_der) {
        CbtHash::Sha224 => data.extend_from_slice(&Sha224::digest(certificate_der)),
        CbtHash::Sha256 => data.extend_from_slice(&Sha256::digest(certificate_der)),
        CbtHash::Sha384 => data.extend_from_slice(&Sha384::digest(certificate_der)),
        CbtHash::Sha512 => data.extend_from_slice(&Sha512::digest(certificate_der)),
    }
    data
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CbtHash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

// OIDs (DER contents) of signature algorithms whose hash decides the binding's, and of the hashes in RSA-PSS.
const RSA_PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1.x
const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]; // 1.2.840.113549.1.1.10
const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3.x
const NIST_HASH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02]; // 2.16.840.1.101.3.4.2.x
const DSA_SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03]; // 2.16.840.1.101.3.4.3.x

/// The binding's hash for a certificate: from `Certificate.signatureAlgorithm` (RFC 5280 §4.1.1.2).
fn signature_hash(certificate_der: &[u8]) -> CbtHash {
    let algorithm = der_sequence(certificate_der)
        .and_then(|cert| {
            let (_tbs, rest) = der_tlv(cert, 0x30)?;
            der_sequence(rest)
        })
        .and_then(|alg| {
            let (oid, params) = der_tlv(alg, 0x06)?;
            Some((oid, params))
        });
    let Some((oid, params)) = algorithm else { return CbtHash::Sha256 };
    let last = oid.last().copied().unwrap_or(0);
    if oid == RSA_PSS {
        // RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, … } (RFC 4055)
        let hash = der_sequence(params)
            .and_then(|p| der_tlv(p, 0xa0))
            .and_then(|(h, _)| der_sequence(h))
            .and_then(|h| der_tlv(h, 0x06))
            .map(|(oid, _)| oid);
        return match hash {
            Some(h) if h.len() == NIST_HASH.len() + 1 && h.starts_with(NIST_HASH) => nist_hash(h[NIST_HASH.len()]),
            _ => CbtHash::Sha256, // SHA-1 (the default) or unknown
        };
    }
    if oid.len() == RSA_PKCS1.len() + 1 && oid.starts_with(RSA_PKCS1) {
        return match last {
            0x0b => CbtHash::Sha256,
            0x0c => CbtHash::Sha384,
            0x0d => CbtHash::Sha512,
            0x0e => CbtHash::Sha224,
            _ => CbtHash::Sha256, // MD2, MD5, SHA-1
        };
    }
    if oid.len() == ECDSA_SHA2.len() + 1 && oid.starts_with(ECDSA_SHA2) {
        return match last {
            0x01 => CbtHash::Sha224,
            0x03 => CbtHash::Sha384,
            0x04 => CbtHash::Sha512,
            _ => CbtHash::Sha256,
        };
    }
    if oid.len() == DSA_SHA2.len() + 1 && oid.starts_with(DSA_SHA2) {
        return match last {
            0x01 => CbtHash::Sha224,
            _ => CbtHash::Sha256,
        };
    }
    CbtHash::Sha256
}

fn nist_hash(last: u8) -> CbtHash {
    match last {
        0x02 => CbtHash::Sha384,
        0x03 => CbtHash::Sha512,
        0x04 => CbtHash::Sha224,
        _ => CbtHash::Sha256,
    }
}

/// The contents of the SEQUENCE at the start of `input`.
fn der_sequence(input: &[u8]) -> Option<&[u8]> {
    der_tlv(input, 0x30).map(|(contents, _)| contents)
}

/// The element with `tag` at the start of `input`: (its contents, what follows it). Definite lengths only.
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
    };
    Some((rest.get(..len)?, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    /// A certificate-shaped DER value: the binding hashes the whole of it and reads only the signature algorithm.
    fn cert(oid: &[u8], params: &[u8]) -> Vec<u8> {
        let tbs = tlv(0x30, &[0x55; 200]); // long enough for a two-byte length
        let alg = tlv(0x30, &[tlv(0x06, oid), params.to_vec()].concat());
        tlv(0x30, &[tbs, alg, tlv(0x03, &[0, 1, 2, 3])].concat())
    }

    fn oid(prefix: &[u8], last: u8) -> Vec<u8> {
        [prefix, &[last]].concat()
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let null = [0x05, 0x00];
        assert_eq!(signature_hash(&cert(&oid(RSA_PKCS1, 0x04), &null)), CbtHash::Sha256, "md5WithRSAEncryption");
        assert_eq!(signature_hash(&cert(&oid(RSA_PKCS1, 0x05), &null)), CbtHash::Sha256, "sha1WithRSAEncryption");
        assert_eq!(signature_hash(&cert(&oid(RSA_PKCS1, 0x0b), &null)), CbtHash::Sha256);
        assert_eq!(signature_hash(&cert(&oid(RSA_PKCS1, 0x0c), &null)), CbtHash::Sha384);
        assert_eq!(signature_hash(&cert(&oid(RSA_PKCS1, 0x0d), &null)), CbtHash::Sha512);
        assert_eq!(signature_hash(&cert(&oid(ECDSA_SHA2, 0x02), &[])), CbtHash::Sha256);
        assert_eq!(signature_hash(&cert(&oid(ECDSA_SHA2, 0x03), &[])), CbtHash::Sha384);
        assert_eq!(signature_hash(&cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01], &[])), CbtHash::Sha256, "ecdsa-sha1");
        assert_eq!(signature_hash(&cert(&[0x2b, 0x65, 0x70], &[])), CbtHash::Sha256, "Ed25519 has no hash");
        // RSA-PSS names its hash in the parameters; absent, it is SHA-1.
        let pss_384 = tlv(0x30, &tlv(0xa0, &tlv(0x30, &[tlv(0x06, &oid(NIST_HASH, 0x02)), null.to_vec()].concat())));
        assert_eq!(signature_hash(&cert(RSA_PSS, &pss_384)), CbtHash::Sha384);
        assert_eq!(signature_hash(&cert(RSA_PSS, &tlv(0x30, &[]))), CbtHash::Sha256);
    }

    #[test]
    fn binding_data_is_the_prefix_and_the_hash() {
        let der = cert(&oid(RSA_PKCS1, 0x0c), &[0x05, 0x00]);
        let data = tls_server_end_point(&der);
        assert_eq!(&data[..21], b"tls-server-end-point:");
        assert_eq!(&data[21..], Sha384::digest(&der).as_slice());
        let sha1 = cert(&oid(RSA_PKCS1, 0x05), &[0x05, 0x00]);
        assert_eq!(&tls_server_end_point(&sha1)[21..], Sha256::digest(&sha1).as_slice());
    }

    #[test]
    fn garbage_never_panics_and_hashes_with_sha256() {
        for input in [&b""[..], &[0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x30, 0x80, 0, 0], &[0x06, 0x01]] {
            assert_eq!(signature_hash(input), CbtHash::Sha256);
        }
        let der = cert(&oid(RSA_PKCS1, 0x0d), &[0x05, 0x00]);
        for cut in 0..der.len() {
            let _ = signature_hash(&der[..cut]);
        }
    }

    #[test]
    fn ca_files_are_read_or_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = read_ca_file(&missing).expect_err("missing file");
        assert!(matches!(err, WinrmError::CaFile { .. }), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let err = read_ca_file(&empty).expect_err("no certificate");
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        let err = client_config(TlsVerification::Verify, Some(&empty)).expect_err("refused");
        assert!(err.to_string().contains(&*empty.to_string_lossy()), "{err}");
        assert!(client_config(TlsVerification::DangerAcceptInvalidCertificates, None).is_ok());
    }
}
