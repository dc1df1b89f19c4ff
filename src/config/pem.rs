//! PEM material (CA bundle, client certificate, client key) parsed with rustls-pki-types'
//! `PemObject` (rustls-pemfile is unmaintained, RUSTSEC-2025-0134). Shared by the loader
//! (`gasdtu check` refuses a file that holds nothing usable) and `uplink::tls` (which builds
//! the rustls configuration). Pure: bytes in, DER items or a specific reason out.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why a PEM file gave no usable item (messages never echo more than a short label).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PemError {
    /// A section is broken (no END line, malformed BEGIN line, bad base64, too large).
    #[error("unparsable PEM: {0}")]
    Unparsable(String),
    /// No `CERTIFICATE` section; `found` says what the file holds instead.
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----): {found}")]
    NoCertificate { found: String },
    /// No private key section; `found` says what the file holds instead.
    #[error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {found}")]
    NoKey { found: String },
    /// A private key in a format rustls cannot use (encrypted, OpenSSH).
    #[error("key format not supported: {0}")]
    KeyFormat(&'static str),
}

/// Longest part of a file echoed in a reason.
const MAX_ECHO: usize = 64;

/// The labels of the PEM sections in `bytes` (`CERTIFICATE`, `ENCRYPTED PRIVATE KEY` ...),
/// at most a few, escaped and shortened for messages.
fn labels(bytes: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(rest) = line.strip_prefix(b"-----BEGIN ") else {
            continue;
        };
        let Some(label) = rest.strip_suffix(b"-----") else {
            continue;
        };
        let label = String::from_utf8_lossy(&label[..label.len().min(MAX_ECHO)]);
        let label = super::escape(&label).into_owned();
        if !out.contains(&label) {
            out.push(label);
        }
        if out.len() == 4 {
            break;
        }
    }
    out
}

fn found(bytes: &[u8]) -> String {
    match labels(bytes) {
        l if l.is_empty() => "no PEM section at all".into(),
        l => format!("found only {}", l.join(", ")),
    }
}

/// A parse failure in words (bounded: never echoes a whole line of the file).
fn reason(e: &pem::Error) -> PemError {
    PemError::Unparsable(match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a section has no matching -----END ...----- line".into()
        }
        pem::Error::IllegalSectionStart { .. } => "a malformed -----BEGIN line".into(),
        pem::Error::Base64Decode(why) => {
            let why: String = why.chars().take(MAX_ECHO).collect();
            format!("bad base64 ({})", super::escape(&why))
        }
        pem::Error::SectionTooLarge => "a section is too large".into(),
        other => {
            let why: String = other.to_string().chars().take(MAX_ECHO).collect();
            super::escape(&why).into_owned()
        }
    })
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reason(&e))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            found: found(bytes),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => {
            let l = labels(bytes);
            Err(if l.iter().any(|l| l == "ENCRYPTED PRIVATE KEY") {
                PemError::KeyFormat(
                    "the private key is encrypted (ENCRYPTED PRIVATE KEY); store it unencrypted \
                     with mode 0600 (openssl pkey -in KEY -out KEY.pem)",
                )
            } else if l.iter().any(|l| l == "OPENSSH PRIVATE KEY") {
                PemError::KeyFormat(
                    "OpenSSH private key; convert it to PKCS#8 (ssh-keygen -p -m PKCS8 -f KEY)",
                )
            } else {
                PemError::NoKey {
                    found: found(bytes),
                }
            })
        }
        Err(e) => Err(reason(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn reasons_are_specific() {
        // (file text, certificate reason fragment, key reason fragment)
        let cases = [
            ("hello", "no PEM section at all", "no PEM section at all"),
            (CERT, "", "found only CERTIFICATE"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "found only ENCRYPTED PRIVATE KEY",
                "the private key is encrypted",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nMIIB\n-----END OPENSSH PRIVATE KEY-----\n",
                "found only OPENSSH PRIVATE KEY",
                "OpenSSH private key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMIIB\n",
                "no matching -----END",
                "no matching -----END",
            ),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "bad base64",
                "bad base64",
            ),
            (
                "-----BEGIN \x1b[31mX-----\nMIIB\n-----END \x1b[31mX-----\n",
                "found only \\x1b[31mX",
                "found only \\x1b[31mX",
            ),
        ];
        for (text, cert_why, key_why) in cases {
            match certificates(text.as_bytes()) {
                Ok(c) => assert!(cert_why.is_empty() && c.len() == 1, "{text:?}"),
                Err(why) => assert!(
                    !cert_why.is_empty() && why.to_string().contains(cert_why),
                    "{text:?}: {why}"
                ),
            }
            let why = private_key(text.as_bytes()).unwrap_err().to_string();
            assert!(why.contains(key_why), "{text:?}: {why}");
        }
        let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
        assert!(private_key(key.as_bytes()).is_ok());
        assert_eq!(
            certificates(format!("{CERT}{CERT}").as_bytes())
                .unwrap()
                .len(),
            2
        );
    }
}
