//! PEM material (CA bundle, client certificate, client key) parsed with rustls-pki-types'
//! `PemObject` (rustls-pemfile is unmaintained, RUSTSEC-2025-0134). Shared by the loader
//! (`gasdtu check` refuses a file that holds nothing usable) and `uplink::tls` (which builds
//! the rustls configuration). Pure: bytes in, DER items or a specific reason out.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
fn reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "unparsable PEM: a section has no matching -----END ...----- line".into()
        }
        pem::Error::IllegalSectionStart { .. } => {
            "unparsable PEM: a malformed -----BEGIN line".into()
        }
        pem::Error::Base64Decode(why) => {
            let why: String = why.chars().take(MAX_ECHO).collect();
            format!("unparsable PEM: bad base64 ({})", super::escape(&why))
        }
        pem::Error::SectionTooLarge => "unparsable PEM: a section is too large".into(),
        other => {
            let why: String = other.to_string().chars().take(MAX_ECHO).collect();
            format!("unparsable PEM: {}", super::escape(&why))
        }
    }
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reason(&e))?;
    if certs.is_empty() {
        return Err(format!(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): {}",
            found(bytes)
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => {
            let l = labels(bytes);
            Err(if l.iter().any(|l| l == "ENCRYPTED PRIVATE KEY") {
                "key format not supported: the private key is encrypted (ENCRYPTED PRIVATE KEY); \
                 store it unencrypted with mode 0600 (openssl pkey -in KEY -out KEY.pem)"
                    .into()
            } else if l.iter().any(|l| l == "OPENSSH PRIVATE KEY") {
                "key format not supported: OpenSSH private key; convert it to PKCS#8 \
                 (ssh-keygen -p -m PKCS8 -f KEY)"
                    .into()
            } else {
                format!(
                    "holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {}",
                    found(bytes)
                )
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
                    !cert_why.is_empty() && why.contains(cert_why),
                    "{text:?}: {why}"
                ),
            }
            let why = private_key(text.as_bytes()).unwrap_err();
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
