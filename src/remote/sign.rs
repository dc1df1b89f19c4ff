//! Signatures of remote operations (pure core, no I/O): the signed form of a command or config
//! push (`"gasdtu-remote-v1\n" + kind + "\n" + gateway id + "\n" + body`), Ed25519 signing and
//! verification with `ring`, key ids (the first 8 bytes of SHA-256 of the raw public key, as 16
//! lowercase hex characters), key generation (RFC 8410 PKCS#8 in a PEM "PRIVATE KEY" block) and the
//! base64 forms of public keys and signatures. The format is documented in docs/remote.md;
//! changing it is a versioned change (the `v1` in the prefix).

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use thiserror::Error;

/// The first line of every signed form: names the scheme and its version.
pub const PREFIX: &str = "gasdtu-remote-v1\n";
/// Length of a raw Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a signature in standard base64 with padding.
pub const SIGNATURE_B64_LEN: usize = 88;
/// Length of a public key in standard base64 with padding.
pub const PUBLIC_KEY_B64_LEN: usize = 44;
/// Largest PEM private key file read (a PKCS#8 Ed25519 key is about 170 bytes).
pub const MAX_KEY_PEM_BYTES: usize = 4096;

/// Which topic a signature is for: a signature made for one kind is refused as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cmd/req`.
    Cmd,
    /// `config/set`.
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cmd => "cmd",
            Kind::Config => "config",
        }
    }
}

/// A key id: the first 8 bytes of SHA-256 of the raw public key. Displays as 16 lowercase hex
/// characters, the form used in envelopes and printed by `gasdtu keygen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl KeyId {
    /// Parse exactly 16 lowercase hex characters; anything else is `None`.
    pub fn parse(s: &str) -> Option<KeyId> {
        let b = s.as_bytes();
        if b.len() != 16 {
            return None;
        }
        let mut out = [0u8; 8];
        for (i, pair) in b.chunks(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(KeyId(out))
    }
}

/// A lowercase hex digit's value (upper case is not the canonical form and is refused).
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key id of a raw public key.
pub fn key_id(public: &[u8; 32]) -> KeyId {
    let h = sha256(public);
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    KeyId(id)
}

/// The exact bytes a signature covers.
pub fn signed_bytes(kind: Kind, gw: &str, body: &str) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(PREFIX.len() + kind.as_str().len() + gw.len() + body.len() + 2);
    out.extend_from_slice(PREFIX.as_bytes());
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(gw.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body.as_bytes());
    out
}

/// Whether `sig` is a valid Ed25519 signature by `public` over the signed form.
pub fn verify(public: &[u8; 32], kind: Kind, gw: &str, body: &str, sig: &[u8; 64]) -> bool {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&signed_bytes(kind, gw, body), sig)
        .is_ok()
}

/// Why a key could not be made or loaded.
#[derive(Debug, Error)]
pub enum SignError {
    /// The system's random source failed while generating a key.
    #[error("cannot generate a key: the system random source failed")]
    Random,
    /// The file holds no PEM "PRIVATE KEY" block (or more than the size bound).
    #[error("not a PEM private key: {0}")]
    Pem(String),
    /// The PEM block is not a PKCS#8 Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key: {0}")]
    Key(String),
}

/// A private key that signs commands and config pushes (ops tooling and tests only; the
/// gateway only verifies).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: [u8; 32],
    id: KeyId,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "SigningKey({})", self.id)
    }
}

impl SigningKey {
    /// From PKCS#8 DER: v1 (RFC 8410, what `generate`, `openssl genpkey` and Python's
    /// `cryptography` write) or v2 (with the public key, what ring generates).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, SignError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| SignError::Key(e.to_string()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            public,
            id: key_id(&public),
        })
    }

    /// From a raw 32-byte Ed25519 seed (RFC 8032's private key): fixed keys for tests and
    /// documentation examples.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        // Infallible for a 32-byte seed; `from_seed_unchecked` only fails on a wrong length.
        let pair = match Ed25519KeyPair::from_seed_unchecked(seed) {
            Ok(p) => p,
            Err(_) => unreachable!("a 32-byte seed is always a valid Ed25519 key"),
        };
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        SigningKey {
            pair,
            public,
            id: key_id(&public),
        }
    }

    /// From the text of a PEM file with one "PRIVATE KEY" block (at most `MAX_KEY_PEM_BYTES`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, SignError> {
        if pem.len() > MAX_KEY_PEM_BYTES {
            return Err(SignError::Pem(format!(
                "{} bytes, more than the {MAX_KEY_PEM_BYTES} an Ed25519 key needs",
                pem.len()
            )));
        }
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| SignError::Pem(format!("no \"PRIVATE KEY\" block ({e})")))?;
        SigningKey::from_pkcs8_der(der.secret_pkcs8_der())
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The signature over the signed form, raw.
    pub fn sign_raw(&self, kind: Kind, gw: &str, body: &str) -> [u8; 64] {
        let sig = self.pair.sign(&signed_bytes(kind, gw, body));
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        out
    }

    /// The signature over the signed form, in standard base64 with padding (88 characters).
    pub fn sign(&self, kind: Kind, gw: &str, body: &str) -> String {
        B64.encode(self.sign_raw(kind, gw, body))
    }
}

/// The DER of an RFC 8410 (PKCS#8 v1) Ed25519 private key up to its 32-byte seed.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new key pair: the private key as a PEM "PRIVATE KEY" text, and the raw public key. The
/// PEM holds RFC 8410's PKCS#8 form (v1: the 32-byte seed), what `openssl genpkey` and
/// Python's `cryptography` write and read; ring's own PKCS#8 v2 output is refused by both.
pub fn generate() -> Result<(String, [u8; 32]), SignError> {
    use ring::rand::SecureRandom as _;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| SignError::Random)?;
    let mut der = PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let key = SigningKey::from_pkcs8_der(&der)?;
    Ok((pem_private_key(&der), key.public))
}

/// A DER PKCS#8 key as a PEM "PRIVATE KEY" block (64-character lines).
fn pem_private_key(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// A public key in standard base64 (44 characters).
pub fn public_key_base64(public: &[u8; 32]) -> String {
    B64.encode(public)
}

/// Parse a public key written in standard base64 of its 32 raw bytes. The length is checked
/// before decoding; the message says what is wrong.
pub fn parse_public_key(s: &str) -> Result<[u8; 32], String> {
    if s.len() != PUBLIC_KEY_B64_LEN {
        return Err(format!(
            "an Ed25519 public key is {PUBLIC_KEY_B64_LEN} characters of standard base64 \
             (32 bytes), this is {} characters",
            s.chars().count()
        ));
    }
    let raw = B64
        .decode(s)
        .map_err(|e| format!("not standard base64 with padding: {e}"))?;
    <[u8; 32]>::try_from(raw.as_slice())
        .map_err(|_| format!("decodes to {} bytes, an Ed25519 key is 32", raw.len()))
}

/// Parse a signature written in standard base64 of its 64 raw bytes (length checked first).
pub fn parse_signature(s: &str) -> Result<[u8; 64], String> {
    if s.len() != SIGNATURE_B64_LEN {
        return Err(format!(
            "an Ed25519 signature is {SIGNATURE_B64_LEN} characters of standard base64, \
             this is {} characters",
            s.chars().count()
        ));
    }
    let raw = B64
        .decode(s)
        .map_err(|e| format!("not standard base64 with padding: {e}"))?;
    <[u8; 64]>::try_from(raw.as_slice())
        .map_err(|_| format!("decodes to {} bytes, a signature is 64", raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_form_is_exact() {
        assert_eq!(
            signed_bytes(Kind::Cmd, "gw-1", "{\"id\":\"a\"}"),
            b"gasdtu-remote-v1\ncmd\ngw-1\n{\"id\":\"a\"}".to_vec()
        );
        assert_eq!(
            signed_bytes(Kind::Config, "g", ""),
            b"gasdtu-remote-v1\nconfig\ng\n".to_vec()
        );
    }

    /// The test vector of docs/remote.md (Ed25519 is deterministic; Python's `cryptography`
    /// produced the same values).
    #[test]
    fn documented_test_vector() {
        let key = SigningKey::from_seed(&[1u8; 32]);
        assert_eq!(
            public_key_base64(key.public()),
            "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
        );
        assert_eq!(key.id().to_string(), "34750f98bd59fcfc");
        let body = r#"{"id":"ops-42","gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"write","args":{"point":"valve1.close","value":true}}"#;
        assert_eq!(
            key.sign(Kind::Cmd, "gw-1", body),
            "Vqzazh/ukAdEz6v7Ily90q6eEpZ5bQkyzmLGuJ3NwOiiEb1W4cU47GcCEY49EwnNvGoJLCO9IvpsKx2l7jMvAQ=="
        );
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        // SHA-256 of 32 zero bytes starts 66687aadf862bd77.
        assert_eq!(key_id(&[0u8; 32]).to_string(), "66687aadf862bd77");
        let id = key_id(&[7u8; 32]);
        assert_eq!(KeyId::parse(&id.to_string()), Some(id));
        for bad in [
            "",
            "66687aadf862bd7",
            "66687AADF862BD77",
            "66687aadf862bd7g",
            "66687aadf862bd770",
        ] {
            assert_eq!(KeyId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn generate_sign_verify_and_pem_round_trip() {
        let (pem, public) = generate().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(key.public(), &public);
        assert_eq!(key.id(), key_id(&public));
        assert!(!format!("{key:?}").contains(&pem[30..50]));
        let sig = key.sign(Kind::Cmd, "gw-1", "body");
        assert_eq!(sig.len(), SIGNATURE_B64_LEN);
        let raw = parse_signature(&sig).unwrap();
        assert!(verify(&public, Kind::Cmd, "gw-1", "body", &raw));
        assert!(!verify(&public, Kind::Config, "gw-1", "body", &raw));
        assert!(!verify(&public, Kind::Cmd, "gw-2", "body", &raw));
        assert!(!verify(&public, Kind::Cmd, "gw-1", "bodY", &raw));
        let b64 = public_key_base64(&public);
        assert_eq!(b64.len(), PUBLIC_KEY_B64_LEN);
        assert_eq!(parse_public_key(&b64).unwrap(), public);
    }

    #[test]
    fn bad_keys_and_signatures_say_why() {
        let cases: &[(&str, &str)] = &[
            ("", "44 characters"),
            ("AAAA", "44 characters"),
            ("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=", "base64"),
            ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", "33 bytes"),
            // Non-zero trailing bits (a second spelling of the same key) are refused.
            ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", "base64"),
        ];
        for (s, frag) in cases {
            let e = parse_public_key(s).unwrap_err();
            assert!(e.contains(frag), "{s:?}: {e}");
        }
        assert!(parse_signature("AAAA").unwrap_err().contains("88"));
        for pem in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(SigningKey::from_pkcs8_pem(pem).is_err(), "{pem:?}");
        }
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&"x".repeat(MAX_KEY_PEM_BYTES + 1)),
            Err(SignError::Pem(_))
        ));
    }
}
