//! Mutual TLS for the benchmarks that reach the broker the way a deployed gateway and an ops
//! platform do: a PKI made with rcgen (a CA, a server certificate for localhost/127.0.0.1, a
//! client certificate), the matching `BrokerTls` for `Mosquitto::with_client_auth`, the
//! `[uplink]` lines of a gasdtu config, and a rustls client config for an in-process rumqttc
//! client. Files only; no broker or network I/O here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BrokerTls, Res};

/// PEM files of a benchmark PKI.
#[derive(Clone, Debug)]
pub struct MutualPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Generate `ca.pem`, `server.pem`/`server.key` (localhost, 127.0.0.1) and
/// `client.pem`/`client.key` (client auth), all signed by the CA, in `dir`.
pub fn make_mutual_pki(dir: &Path) -> Res<MutualPki> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let e = |x: rcgen::Error| format!("rcgen: {x}");
    let write = |name: &str, text: String| -> Res<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("write {p:?}: {e}"))?;
        Ok(p)
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name
        .push(DnType::CommonName, "gasdtu bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let ca_path = write("ca.pem", ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose, stem: &str| {
        let mut p = CertificateParams::new(sans).map_err(e)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(e)?;
        let cert = p.signed_by(&key, &issuer).map_err(e)?;
        Ok::<_, String>((
            write(&format!("{stem}.pem"), cert.pem())?,
            write(&format!("{stem}.key"), key.serialize_pem())?,
        ))
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    )?;
    let (client_cert, client_key) = leaf(
        Vec::new(),
        "gasdtu bench client",
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    )?;
    Ok(MutualPki {
        ca: ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

impl MutualPki {
    /// The broker's TLS listener on `port` with this PKI's server certificate.
    pub fn broker_tls(&self, port: u16) -> BrokerTls {
        BrokerTls {
            port,
            ca: self.ca.clone(),
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
        }
    }

    /// The `[uplink]` section header and connection lines of a gasdtu config reaching
    /// `localhost:port` with the CA and the client certificate (mutual TLS).
    pub fn uplink_toml(&self, port: u16) -> String {
        format!(
            "[uplink]\nhost = \"localhost\"\nport = {port}\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display(),
        )
    }

    /// A rustls client config (ring provider) trusting the CA and presenting the client
    /// certificate, for `rumqttc::TlsConfiguration::Rustls`.
    pub fn client_config(&self) -> Res<Arc<rustls::ClientConfig>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let certs = |p: &Path| -> Res<Vec<CertificateDer<'static>>> {
            CertificateDer::pem_file_iter(p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("read certificates {p:?}: {e}"))
        };
        for c in certs(&self.ca)? {
            roots.add(c).map_err(|e| format!("CA {:?}: {e}", self.ca))?;
        }
        let chain = certs(&self.client_cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.client_key)
            .map_err(|e| format!("read key {:?}: {e}", self.client_key))?;
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("rustls protocol versions: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("rustls client certificate: {e}"))?;
        Ok(Arc::new(cfg))
    }
}
