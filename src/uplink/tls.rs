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
//!
//! Session resumption: a `SessionCache` lives as long as its forwarder (so, across every
//! reconnect of one uplink configuration) and is plugged into the `ClientConfig` the forwarder
//! keeps (rustls resumes only under the same verifier instance; the forwarder rebuilds the
//! config when a PEM file changes). The session tickets the broker issued survive, so a
//! reconnect resumes (TLS 1.3 PSK, or a TLS 1.2 session id) instead of repeating the full
//! handshake with the server's certificate chain: on an NB-IoT downlink that chain alone costs
//! seconds. The cache counts the tickets it hands out (`offered`), i.e. resumption attempts.
//!
//! Time: the config's rustls `TimeProvider` is `crate::time::now`, the daemon's clock seam, not
//! the raw system clock. A gateway that booted in 1970 (or restored a stale time) cannot
//! validate a broker certificate ("not valid yet"); once the modem's network time corrects the
//! clock, the same config validates it, without a rebuild.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The standard WebPKI verifier, verifying the broker certificate against `name` instead of
/// the connected host when set (`server_name`), and counting full verifications in `full`: a
/// resumed session verifies nothing, so the count tells resumptions the server accepted.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    name: Option<ServerName<'static>>,
    full: Arc<AtomicU64>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.full.fetch_add(1, Ordering::Relaxed);
        let name = self.name.as_ref().unwrap_or(server_name);
        self.inner
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
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

/// Certificate and ticket times from the daemon's clock seam (`crate::time::now`): the system
/// clock, or the network-corrected one while the system clock is untrusted.
#[derive(Debug)]
struct SeamTime;

impl TimeProvider for SeamTime {
    fn current_time(&self) -> Option<UnixTime> {
        crate::time::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(UnixTime::since_unix_epoch)
    }
}

/// Servers remembered by a `SessionCache` (one broker in practice; a few for a changed host).
const CACHED_SERVERS: usize = 4;

/// The TLS session store shared by every connection attempt of one forwarder: rustls's
/// bounded in-memory cache, counting the resumption tickets it hands out.
#[derive(Debug)]
pub struct SessionCache {
    inner: ClientSessionMemoryCache,
    offered: AtomicU64,
    stored: AtomicU64,
    /// Broker certificates verified (full handshakes) under configs using this cache.
    full: Arc<AtomicU64>,
}

impl SessionCache {
    pub fn new() -> Arc<SessionCache> {
        Arc::new(SessionCache {
            // rustls keeps up to 8 TLS 1.3 tickets per server; its size counts tickets.
            inner: ClientSessionMemoryCache::new(CACHED_SERVERS * 8),
            offered: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            full: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Handshakes that offered a stored session (resumption attempts).
    pub fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Full handshakes (broker certificate verified); a resumed connection adds none.
    pub fn full_handshakes(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Tickets or sessions the servers issued and the cache took.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }
}

impl ClientSessionStore for SessionCache {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.inner.set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let v = self.inner.tls12_session(server_name);
        if v.is_some() {
            self.offered.fetch_add(1, Ordering::Relaxed);
        }
        v
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.inner.insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let v = self.inner.take_tls13_ticket(server_name);
        if v.is_some() {
            self.offered.fetch_add(1, Ordering::Relaxed);
        }
        v
    }
}

/// The rustls client configuration for `cfg` (ring provider, TLS 1.2 and 1.3), with its own
/// session cache (no resumption across calls: for one-shot tools).
pub fn client_config(cfg: &UplinkConfig) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(cfg, SessionCache::new())
}

/// The rustls client configuration for `cfg`, resuming sessions from `cache` (keep one cache
/// for the life of a forwarder, pass it to every attempt).
pub fn client_config_with(
    cfg: &UplinkConfig,
    cache: Arc<SessionCache>,
) -> Result<Arc<ClientConfig>, TlsError> {
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
    let builder = ClientConfig::builder_with_details(provider.clone(), Arc::new(SeamTime))
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let name = match &cfg.server_name {
        Some(name) => Some(
            ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name.clone()))?,
        ),
        None => None,
    };
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let verifier = Verifier {
        inner,
        name,
        full: cache.full.clone(),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
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
    let mut config = config;
    config.resumption = Resumption::store(cache);
    Ok(Arc::new(config))
}
