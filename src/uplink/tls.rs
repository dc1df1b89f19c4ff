//! TLS for the uplink: builds the rustls `ClientConfig` (ring provider, TLS 1.2 and 1.3) from
//! the configured CA bundle, optional client certificate and key (mutual TLS) and optional
//! server-name override. Reads the PEM files (regular files only, bounded, parsed by
//! `config::pem`); every failure names the file and the reason.
//!
//! Server-name override: rumqttc verifies the broker certificate against the host it connects
//! to (it builds the rustls `ServerName` from the host). When `server_name` is set, the
//! verifier below wraps the standard WebPKI verifier and substitutes that name, so a gateway
//! can connect to an IP address (or a DNS alias) and still verify the broker's real name. The
//! chain, validity and signatures are checked exactly as usual; only the name differs. The SNI
//! sent stays the host (none for an IP address).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

use crate::config::UplinkConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    /// A configured file cannot be read.
    #[error("cannot read {what} {}: {source}", crate::config::escape(&path.display().to_string()))]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but holds no usable PEM item of the expected kind.
    #[error("{what} {}: {why}", crate::config::escape(&path.display().to_string()))]
    Pem {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    /// `tls = true` without `ca_file` (the loader refuses this; kept for direct callers).
    #[error("TLS needs a CA file (uplink.ca_file)")]
    NoCaFile,
    /// Only one of client certificate and key.
    #[error("mutual TLS needs both uplink.client_cert and uplink.client_key")]
    HalfClientAuth,
    /// `server_name` is not a valid DNS name or IP address.
    #[error("uplink.server_name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    /// rustls refused the material (e.g. a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::config::read_bounded(path, crate::config::MAX_PEM_BYTES).map_err(|source| {
        TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    crate::config::pem::certificates(&bytes).map_err(|e| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "client key";
    let bytes = read(what, path)?;
    crate::config::pem::private_key(&bytes).map_err(|e| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Verifies the broker certificate against a fixed name instead of the connected host.
#[derive(Debug)]
struct NameOverride {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls client configuration for `cfg` (ring provider, TLS 1.2 and 1.3).
pub fn client_config(cfg: &UplinkConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let ca_file = cfg.ca_file.as_deref().ok_or(TlsError::NoCaFile)?;
    let mut roots = RootCertStore::empty();
    for (i, c) in load_certs("CA file", ca_file)?.into_iter().enumerate() {
        roots.add(c).map_err(|e| TlsError::Pem {
            what: "CA file",
            path: ca_file.to_path_buf(),
            why: format!("certificate #{} is not a usable trust anchor: {e}", i + 1),
        })?;
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &cfg.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| TlsError::ServerName(name.clone()))?;
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NameOverride { inner, name }))
        }
        None => builder.with_root_certificates(roots),
    };
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let certs = load_certs("client certificate", cert)?;
            let key = load_key(key)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                TlsError::Rustls(format!(
                    "client certificate {} and key: {e}",
                    cert.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::HalfClientAuth),
    };
    Ok(Arc::new(config))
}
