//! Key exchange and SecureString (MS-PSRP 2.2.2.3–2.2.2.5, 3.1.5.4.3, 3.2.5.4.2; protocol.md §1.5).
//!
//! The client sends its RSA-2048 public key as a CAPI `PUBLICKEYBLOB`; the server answers with a
//! 32-byte AES-256 session key encrypted with it (PKCS#1 v1.5, byte-reversed, in a `SIMPLEBLOB`). A
//! `<SS>` is AES-256-CBC with an all-zero IV and PKCS#7 padding over the UTF-16LE text. From protocol
//! 2.4 on both sides, there is no key exchange and a `<SS>` is plain base64 of the UTF-16LE text.
//! The RSA key is made by the caller with its own randomness: this module draws none.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};

/// `06 02 00 00 | 00 A4 00 00 | "RSA1" | bit length 2048`: PUBLICKEYBLOB, CALG_RSA_KEYX.
const PUBLIC_KEY_HEADER: [u8; 16] = [0x06, 0x02, 0, 0, 0x00, 0xA4, 0, 0, b'R', b'S', b'A', b'1', 0x00, 0x08, 0, 0];
/// `01 02 00 00 | 10 66 00 00 | 00 A4 00 00`: SIMPLEBLOB, CALG_AES_256, encrypted with CALG_RSA_KEYX.
const SESSION_KEY_HEADER: [u8; 12] = [0x01, 0x02, 0, 0, 0x10, 0x66, 0, 0, 0x00, 0xA4, 0, 0];

/// What went wrong in the key exchange or with a SecureString.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key blob that is not what MS-PSRP describes.
    #[error("malformed {0} key blob")]
    BadBlob(&'static str),
    /// The session key did not decrypt with our private key.
    #[error("the server's session key does not decrypt with our key")]
    SessionKey,
    /// A SecureString that does not decrypt (wrong key, or corrupt).
    #[error("a SecureString does not decrypt with the session key")]
    Decrypt,
    /// Text that is not UTF-16.
    #[error("a SecureString is not valid UTF-16 text")]
    Text,
    /// A SecureString before the key exchange finished.
    #[error("no session key yet: the key exchange has not finished")]
    NoKey,
}

/// The client's RSA key pair for the exchange.
#[derive(Clone)]
pub struct ExchangeKey(RsaPrivateKey);

impl std::fmt::Debug for ExchangeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeKey(..)")
    }
}

impl ExchangeKey {
    /// A new 2048-bit key made with `rng` (the caller's randomness).
    pub fn generate<R: rsa::rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> Result<ExchangeKey, CryptoError> {
        RsaPrivateKey::new(rng, 2048).map(ExchangeKey).map_err(|_| CryptoError::BadBlob("generated RSA"))
    }

    /// From an existing private key (tests, or a key the caller keeps).
    pub fn from_private(key: RsaPrivateKey) -> ExchangeKey {
        ExchangeKey(key)
    }

    /// The CAPI PUBLICKEYBLOB of the public half (for PUBLIC_KEY, base64 on the wire).
    pub fn public_blob(&self) -> Vec<u8> {
        public_blob(&RsaPublicKey::from(&self.0))
    }

    /// Decrypts the server's ENCRYPTED_SESSION_KEY blob into the session key.
    pub fn session_key(&self, blob: &[u8]) -> Result<SessionKey, CryptoError> {
        let body = blob.strip_prefix(&SESSION_KEY_HEADER).ok_or(CryptoError::BadBlob("session"))?;
        let mut ciphertext = body.to_vec();
        ciphertext.reverse();
        let key = self.0.decrypt(Pkcs1v15Encrypt, &ciphertext).map_err(|_| CryptoError::SessionKey)?;
        let key: [u8; 32] = key.try_into().map_err(|_| CryptoError::SessionKey)?;
        Ok(SessionKey(key))
    }
}

/// A CAPI PUBLICKEYBLOB: header, exponent (u32 LE), modulus (LE).
pub fn public_blob(key: &RsaPublicKey) -> Vec<u8> {
    let mut out = PUBLIC_KEY_HEADER.to_vec();
    let mut e = key.e().to_bytes_le();
    e.resize(4, 0);
    out.extend_from_slice(&e[..4]);
    let mut n = key.n().to_bytes_le();
    n.resize(256, 0);
    out.extend_from_slice(&n);
    out
}

/// Reads a PUBLICKEYBLOB (the server side of the exchange; used by tests and test peers).
pub fn parse_public_blob(blob: &[u8]) -> Result<RsaPublicKey, CryptoError> {
    let bad = CryptoError::BadBlob("public");
    if blob.len() != 16 + 4 + 256 || blob[..12] != PUBLIC_KEY_HEADER[..12] {
        return Err(bad);
    }
    let e = rsa::BigUint::from_bytes_le(&blob[16..20]);
    let n = rsa::BigUint::from_bytes_le(&blob[20..]);
    RsaPublicKey::new(n, e).map_err(|_| bad)
}

/// Encrypts a session key for a client's public key, as a server does (tests and test peers).
pub fn encrypt_session_key<R: rsa::rand_core::CryptoRngCore>(
    rng: &mut R,
    public: &RsaPublicKey,
    key: &SessionKey,
) -> Result<Vec<u8>, CryptoError> {
    let mut ciphertext = public.encrypt(rng, Pkcs1v15Encrypt, &key.0).map_err(|_| CryptoError::SessionKey)?;
    ciphertext.reverse();
    let mut out = SESSION_KEY_HEADER.to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// The AES-256 session key.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

impl SessionKey {
    /// A SecureString's ciphertext for `text`.
    pub fn encrypt(&self, text: &str) -> Vec<u8> {
        let plain: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        Enc::new(&self.0.into(), &[0u8; 16].into()).encrypt_padded_vec_mut::<Pkcs7>(&plain)
    }

    /// The text of a SecureString's ciphertext.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<String, CryptoError> {
        let plain =
            Dec::new(&self.0.into(), &[0u8; 16].into()).decrypt_padded_vec_mut::<Pkcs7>(ciphertext).map_err(|_| CryptoError::Decrypt)?;
        utf16le(&plain)
    }
}

/// Protocol 2.4's plain SecureString: the UTF-16LE text.
pub fn plain_secure_string(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Reads UTF-16LE text.
pub fn utf16le(bytes: &[u8]) -> Result<String, CryptoError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(CryptoError::Text);
    }
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).map_err(|_| CryptoError::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed, non-random generator: deterministic tests need no entropy.
    struct Counter(u64);
    impl rsa::rand_core::RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = (self.next_u64() >> 33) as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rsa::rand_core::CryptoRng for Counter {}

    #[test]
    fn exchange_both_sides_and_secure_strings() {
        let mut rng = Counter(7);
        let client = ExchangeKey::generate(&mut rng).expect("key");
        let blob = client.public_blob();
        assert_eq!(blob.len(), 276);
        assert_eq!(&blob[..16], &PUBLIC_KEY_HEADER);
        let server_view = parse_public_blob(&blob).expect("parses");
        let session = SessionKey([0x42; 32]);
        let encrypted = encrypt_session_key(&mut rng, &server_view, &session).expect("encrypts");
        assert_eq!(encrypted.len(), 12 + 256);
        let got = client.session_key(&encrypted).expect("decrypts");
        assert_eq!(got, session);

        let ss = session.encrypt("pa$$wörd 😀");
        assert_eq!(ss.len() % 16, 0);
        assert_eq!(session.decrypt(&ss).as_deref(), Ok("pa$$wörd 😀"));
        assert_eq!(SessionKey([1; 32]).decrypt(&ss), Err(CryptoError::Decrypt));
        assert_eq!(client.session_key(&encrypted[1..]), Err(CryptoError::BadBlob("session")));
        assert_eq!(utf16le(&plain_secure_string("abc")).as_deref(), Ok("abc"));
    }
}
