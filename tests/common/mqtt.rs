//! MQTT for the tests: certificates made at test time (`Pki`), a mosquitto broker on a
//! loopback port (`Broker`), a collecting `Subscriber`, a `Publisher` that waits for each
//! PUBACK and a probe of the broker's session for a client id (`session_present`).

use super::*;

/// PEM files of a test PKI in `dir`: `ca.pem` (+ key), `server.pem`/`server.key` for
/// localhost and 127.0.0.1, `named.pem`/`named.key` for "broker.example" only,
/// `client.pem`/`client.key` signed by the CA, and `other-ca.pem`, an unrelated CA.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The `[uplink]` lines of a gasdtu config that reaches `localhost:port` with this PKI's
    /// CA and client certificate (mutual TLS).
    pub fn uplink_toml(&self, port: u16) -> String {
        format!(
            "[uplink]\nhost = \"localhost\"\nport = {port}\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            self.path("ca.pem").display(),
            self.path("client.pem").display(),
            self.path("client.key").display(),
        )
    }

    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        let ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            (p, key, cert)
        };
        let (ca_p, ca_key, ca_cert) = ca("gasdtu test CA");
        write("ca.pem", ca_cert.pem());
        let (_, _, other) = ca("unrelated CA");
        write("other-ca.pem", other.pem());
        let issuer = Issuer::new(ca_p, ca_key);
        let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose, stem: &str| {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}.key"), key.serialize_pem());
        };
        leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(
            vec!["broker.example".into()],
            "broker.example",
            ExtendedKeyUsagePurpose::ServerAuth,
            "named",
        );
        leaf(
            Vec::new(),
            "gw-test",
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        Pki {
            dir: dir.to_path_buf(),
        }
    }
}

/// How the test broker listens.
#[derive(Clone, Debug)]
pub struct BrokerTls {
    /// Server certificate stem in the PKI dir ("server" or "named").
    pub cert: &'static str,
    pub require_certificate: bool,
    /// e.g. Some("tlsv1.2"); None lets mosquitto offer 1.2 and 1.3.
    pub tls_version: Option<&'static str>,
}

/// mosquitto on 127.0.0.1:`port` with a generated config; killed when dropped. With
/// `persistent`, subscriptions and queued QoS 1 messages survive `stop()` + `start()`.
pub struct Broker {
    pub port: u16,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl Broker {
    pub fn new(dir: &Path, pki: &Pki, tls: &BrokerTls, persistent: bool) -> Broker {
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\nallow_anonymous true\nlog_dest stderr\nlog_type error\n",
            pki.path("ca.pem").display(),
            pki.path(&format!("{}.pem", tls.cert)).display(),
            pki.path(&format!("{}.key", tls.cert)).display(),
            tls.require_certificate,
        );
        if let Some(v) = tls.tls_version {
            conf.push_str(&format!("tls_version {v}\n"));
        }
        if persistent {
            // As root, mosquitto drops to the `mosquitto` user and then cannot write its
            // persistence file into a root-owned temp dir: stay root for the test broker.
            if is_root() {
                conf.push_str("user root\n");
            }
            let p = dir.join(format!("mosq-{port}"));
            std::fs::create_dir_all(&p).unwrap();
            conf.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                p.display()
            ));
        } else {
            conf.push_str("persistence false\n");
        }
        let path = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut b = Broker {
            port,
            conf: path,
            proc: None,
        };
        b.start();
        b
    }

    /// Start (again, on the same port) and wait until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "broker already running");
        let p = Proc::spawn(
            "mosquitto",
            Command::new("mosquitto")
                .arg("-c")
                .arg(&self.conf)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        self.proc = Some(p);
        wait_port(self.port, Duration::from_secs(10));
    }

    /// Stop with SIGTERM (mosquitto saves its persistence file) and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pid = p.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            wait_for("mosquitto to exit", Duration::from_secs(10), || {
                p.child.try_wait().ok().flatten().map(|_| ())
            });
        }
    }
}

/// True when the tests run as root (uid 0), read from /proc so no libc binding is needed.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A fresh PKI in `dir` and a persistent mosquitto that requires client certificates: the
/// broker of the end-to-end tests.
pub fn mutual_tls_broker(dir: &Path) -> (Pki, Broker) {
    let pki = Pki::generate(dir);
    let broker = Broker::new(
        dir,
        &pki,
        &BrokerTls {
            cert: "server",
            require_certificate: true,
            tls_version: None,
        },
        true,
    );
    (pki, broker)
}

/// One message the subscriber saw.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// A rumqttc subscriber (mutual TLS with the test client cert) collecting every message on
/// `filter`; it reconnects by itself. `persistent` keeps its session on the broker
/// (clean_session = false) so messages queued while it reconnects are not lost.
pub struct Subscriber {
    pub msgs: std::sync::Arc<std::sync::Mutex<Vec<Msg>>>,
    pub subscribed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn tls_config(pki: &Pki) -> std::sync::Arc<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let certs = CertificateDer::pem_file_iter(pki.path("client.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path("client.key")).unwrap();
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap(),
    )
}

impl Subscriber {
    pub fn start(pki: &Pki, port: u16, filter: &str, id: &str, persistent: bool) -> Subscriber {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
        let mut o = MqttOptions::new(id, "localhost", port);
        o.set_clean_session(!persistent);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(pki),
        )));
        let (client, mut el) = AsyncClient::new(o, 100);
        let msgs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (m, s, filter) = (msgs.clone(), subscribed.clone(), filter.to_string());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => m.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    }),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Subscriber {
            msgs,
            subscribed,
            task,
        }
    }

    /// Wait (async) until the subscription is in place `n` times in total.
    pub async fn wait_subscribed(&self, n: u64, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.subscribed.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                Instant::now() < end,
                "subscriber not subscribed within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn snapshot(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }
}

// MQTT as ops sees it (issue 10): a publisher that waits for each PUBACK, and a probe of
// the broker's session for a client id.

/// A rumqttc publisher (TLS with the test client certificate) whose `publish` returns once
/// the broker acknowledged the message (QoS 1).
pub struct Publisher {
    client: rumqttc::AsyncClient,
    acks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    pub fn start(pki: &Pki, port: u16, id: &str) -> Publisher {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
        let mut o = MqttOptions::new(id, "localhost", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(4 << 20, 4 << 20);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(pki),
        )));
        let (client, mut el) = AsyncClient::new(o, 100);
        let acks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let a = acks.clone();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Publisher { client, acks, task }
    }

    /// Publish QoS 1 and wait (at most 10 s) for the broker's PUBACK. One at a time.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let before = self.acks.load(std::sync::atomic::Ordering::SeqCst);
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
        wait_until(
            &format!("PUBACK of a publish on {topic}"),
            Duration::from_secs(10),
            || (self.acks.load(std::sync::atomic::Ordering::SeqCst) > before).then_some(()),
        )
        .await;
    }
}

/// Whether the broker holds a persistent session for client id `id` (CONNACK
/// `session_present` of a connect that keeps it), leaving none behind (a clean connect
/// discards what the probe kept). Only while no other client uses `id`.
pub async fn session_present(pki: &Pki, port: u16, id: &str) -> bool {
    let present = connect_once(pki, port, id, false).await;
    connect_once(pki, port, id, true).await;
    present
}

/// Connect as `id` (TLS, test client certificate), return CONNACK's `session_present`,
/// disconnect.
async fn connect_once(pki: &Pki, port: u16, id: &str, clean: bool) -> bool {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, TlsConfiguration, Transport};
    let mut o = MqttOptions::new(id, "localhost", port);
    o.set_clean_session(clean);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        tls_config(pki),
    )));
    let (client, mut el) = AsyncClient::new(o, 10);
    let present = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::ConnAck(a)) = el.poll().await.unwrap() {
                break a.session_present;
            }
        }
    })
    .await
    .expect("CONNACK within 10 s");
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(ev) = el.poll().await {
            if ev == Event::Outgoing(Outgoing::Disconnect) {
                break;
            }
        }
    })
    .await;
    present
}
