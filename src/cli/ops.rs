//! The ops side of remote operations: the `[ops]` connection file (broker, TLS, credentials,
//! topic root template, signing key, default expiry and timeout) with line:col errors, and
//! `exchange`, the one MQTT round trip shared by `gasdtu cmd` and `gasdtu push`: subscribe to
//! every gateway's answer topic first, publish every request (QoS 1), then wait until each
//! gateway's matching answer arrives or the timeout passes. The pure parts (file parsing,
//! answer matching) do no I/O and are unit tested here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use crate::config::{escape, Encoding, UplinkConfig};
use crate::remote::sign::SigningKey;

/// `config::escape` as an owned string (control characters of outside text made visible).
pub fn esc(s: &str) -> String {
    escape(s).into_owned()
}

/// Largest `[ops]` file read.
pub const MAX_OPS_BYTES: u64 = 64 * 1024;
/// At most this many gateways in one invocation.
pub const MAX_GATEWAYS: usize = 256;
/// Bounds of `expires` and `timeout` (the gateway refuses more than 7 days ahead).
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 86_400);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Bounds of credentials (the same as `[uplink]`).
pub const MAX_CREDENTIAL: usize = 256;

/// A parsed `[ops]` file.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsConfig {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Template with `{gw}`, default `gasdtu/{gw}`.
    pub topic_root: String,
    pub key_file: Option<PathBuf>,
    pub expires: Duration,
    pub timeout: Duration,
}

impl OpsConfig {
    /// `<root>` of gateway `gw`.
    pub fn root(&self, gw: &str) -> String {
        self.topic_root.replace("{gw}", gw)
    }
}

/// One error of an `[ops]` file: where and why.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The file cannot be read (missing, too large, not UTF-8).
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    /// The file was read but a key is wrong.
    #[error("{origin}:{line}:{col}: {key}: {why}")]
    Invalid {
        origin: String,
        line: usize,
        col: usize,
        key: String,
        why: String,
    },
    /// The signing key file cannot be used.
    #[error("signing key {path}: {why}")]
    Key { path: String, why: String },
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Read and parse an `[ops]` file; relative paths resolve against its directory.
pub fn load(path: &Path) -> Result<OpsConfig, OpsError> {
    let shown = esc(&path.display().to_string());
    let read_err = |why: String| OpsError::Read {
        path: shown.clone(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(read_err("not a regular file".into()));
    }
    if meta.len() > MAX_OPS_BYTES {
        return Err(read_err(format!("larger than {MAX_OPS_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| read_err(format!("not UTF-8: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &shown, base)
}

/// Parse the text of an `[ops]` file (pure).
pub fn parse(text: &str, origin: &str, base: &Path) -> Result<OpsConfig, OpsError> {
    let err = |span: Option<std::ops::Range<usize>>, key: &str, why: String| {
        let (line, col) = line_col(text, span.map_or(0, |s| s.start));
        OpsError::Invalid {
            origin: origin.to_string(),
            line,
            col,
            key: esc(key),
            why,
        }
    };
    let doc: toml::de::DeTable = toml::de::DeTable::parse(text)
        .map_err(|e| err(e.span(), "", esc(e.message())))?
        .into_inner();
    for (k, _) in doc.iter() {
        if k.get_ref() != "ops" {
            return Err(err(
                Some(k.span()),
                k.get_ref(),
                "unknown section (only [ops])".into(),
            ));
        }
    }
    let Some(ops) = doc.get("ops") else {
        return Err(err(None, "ops", "missing [ops] section".into()));
    };
    let toml::de::DeValue::Table(ops) = ops.get_ref() else {
        return Err(err(Some(ops.span()), "ops", "must be a table".into()));
    };
    const KEYS: &[&str] = &[
        "host",
        "port",
        "tls",
        "ca_file",
        "client_cert",
        "client_key",
        "server_name",
        "username",
        "password",
        "topic_root",
        "key_file",
        "expires",
        "timeout",
    ];
    for (k, _) in ops.iter() {
        if !KEYS.contains(&k.get_ref().as_ref()) {
            return Err(err(
                Some(k.span()),
                &format!("ops.{}", k.get_ref()),
                format!("unknown key (expected one of {})", KEYS.join(", ")),
            ));
        }
    }
    let get = |k: &str| ops.get(k);
    let string = |k: &str, max: usize| -> Result<Option<String>, OpsError> {
        match get(k) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                toml::de::DeValue::String(s) if s.is_empty() => {
                    Err(err(Some(v.span()), &format!("ops.{k}"), "is empty".into()))
                }
                toml::de::DeValue::String(s) if s.chars().count() > max => Err(err(
                    Some(v.span()),
                    &format!("ops.{k}"),
                    format!("longer than {max} characters"),
                )),
                toml::de::DeValue::String(s) if s.chars().any(char::is_control) => Err(err(
                    Some(v.span()),
                    &format!("ops.{k}"),
                    "contains control characters".into(),
                )),
                toml::de::DeValue::String(s) => Ok(Some(s.to_string())),
                _ => Err(err(
                    Some(v.span()),
                    &format!("ops.{k}"),
                    "must be a string".into(),
                )),
            },
        }
    };
    let path_of = |k: &str| -> Result<Option<PathBuf>, OpsError> {
        Ok(string(k, 4096)?.map(|s| base.join(s)))
    };
    let duration = |k: &str, default: Duration, max: Duration| -> Result<Duration, OpsError> {
        let Some(s) = string(k, 32)? else {
            return Ok(default);
        };
        let span = get(k).map(|v| v.span());
        let d = humantime::parse_duration(&s).map_err(|e| {
            err(
                span.clone(),
                &format!("ops.{k}"),
                format!("not a duration like \"5m\": {e}"),
            )
        })?;
        if d < Duration::from_secs(1) || d > max {
            return Err(err(
                span,
                &format!("ops.{k}"),
                format!("must be between 1s and {}", humantime::format_duration(max)),
            ));
        }
        Ok(d)
    };
    let host = string("host", 253)?.ok_or_else(|| err(None, "ops.host", "missing".into()))?;
    let tls = match get("tls") {
        None => true,
        Some(v) => match v.get_ref() {
            toml::de::DeValue::Boolean(b) => *b,
            _ => {
                return Err(err(
                    Some(v.span()),
                    "ops.tls",
                    "must be true or false".into(),
                ))
            }
        },
    };
    let port = match get("port") {
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
        Some(v) => match v.get_ref() {
            toml::de::DeValue::Integer(i) => i
                .as_str()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| err(Some(v.span()), "ops.port", "must be 1..=65535".into()))?,
            _ => {
                return Err(err(
                    Some(v.span()),
                    "ops.port",
                    "must be an integer 1..=65535".into(),
                ))
            }
        },
    };
    let ca_file = path_of("ca_file")?;
    let client_cert = path_of("client_cert")?;
    let client_key = path_of("client_key")?;
    if tls && ca_file.is_none() {
        return Err(err(
            None,
            "ops.ca_file",
            "required with tls = true (the CA that signs the broker's certificate)".into(),
        ));
    }
    if client_cert.is_some() != client_key.is_some() {
        return Err(err(
            get("client_cert").or(get("client_key")).map(|v| v.span()),
            "ops.client_cert",
            "client_cert and client_key go together".into(),
        ));
    }
    let username = string("username", MAX_CREDENTIAL)?;
    let password = string("password", MAX_CREDENTIAL)?;
    if password.is_some() && !tls {
        return Err(err(
            get("password").map(|v| v.span()),
            "ops.password",
            "refused over plain TCP (tls = false would send it in clear)".into(),
        ));
    }
    if password.is_some() && username.is_none() {
        return Err(err(
            get("password").map(|v| v.span()),
            "ops.password",
            "needs a username".into(),
        ));
    }
    let topic_root = string("topic_root", 128)?.unwrap_or_else(|| "gasdtu/{gw}".into());
    if topic_root.contains(['#', '+']) || !topic_root.contains("{gw}") {
        return Err(err(
            get("topic_root").map(|v| v.span()),
            "ops.topic_root",
            "must contain {gw} and no MQTT wildcard".into(),
        ));
    }
    Ok(OpsConfig {
        host,
        port,
        tls,
        ca_file,
        client_cert,
        client_key,
        server_name: string("server_name", 253)?,
        username,
        password,
        topic_root,
        key_file: path_of("key_file")?,
        expires: duration("expires", Duration::from_secs(300), MAX_EXPIRES)?,
        timeout: duration("timeout", Duration::from_secs(30), MAX_TIMEOUT)?,
    })
}

/// The signing key of `cfg` (none configured: unsigned requests).
pub fn signing_key(cfg: &OpsConfig) -> Result<Option<SigningKey>, OpsError> {
    let Some(path) = &cfg.key_file else {
        return Ok(None);
    };
    let shown = esc(&path.display().to_string());
    let bytes = crate::config::read_bounded(path, crate::remote::sign::MAX_KEY_PEM_BYTES as u64)
        .map_err(|e| OpsError::Key {
            path: shown.clone(),
            why: esc(&e.to_string()),
        })?;
    let pem = String::from_utf8(bytes).map_err(|_| OpsError::Key {
        path: shown.clone(),
        why: "not a PEM text file".into(),
    })?;
    SigningKey::from_pkcs8_pem(&pem)
        .map(Some)
        .map_err(|e| OpsError::Key {
            path: shown,
            why: e.to_string(),
        })
}

/// A new command id: `ops-<unix ms>-<8 random hex>`.
pub fn new_id(now_ms: i64) -> String {
    format!("ops-{now_ms}-{:08x}", fastrand::u32(..))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// MQTT options for a short-lived clean session with its own client id.
pub fn mqtt_options(cfg: &OpsConfig) -> anyhow::Result<MqttOptions> {
    let id = format!(
        "gasdtu-ops-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    );
    let mut o = MqttOptions::new(id, cfg.host.clone(), cfg.port);
    o.set_clean_session(true);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1024 * 1024, 512 * 1024);
    if let Some(u) = &cfg.username {
        o.set_credentials(u.clone(), cfg.password.clone().unwrap_or_default());
    }
    if cfg.tls {
        let up = UplinkConfig {
            host: cfg.host.clone(),
            port: cfg.port,
            tls: true,
            ca_file: cfg.ca_file.clone(),
            client_cert: cfg.client_cert.clone(),
            client_key: cfg.client_key.clone(),
            server_name: cfg.server_name.clone(),
            username: None,
            password: None,
            client_id: String::new(),
            topic_root: String::new(),
            keepalive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(5),
            max_payload: 1024,
            rate_limit: None,
            encoding: Encoding::Json,
            format: Default::default(),
            inflight: 8,
            session: crate::config::SessionMode::Always,
            linger: Duration::from_secs(20),
            check_in: Duration::from_secs(3600),
            ack_timeout: Duration::from_secs(30),
        };
        let tls = crate::uplink::tls::client_config(&up)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    Ok(o)
}

/// One request to one gateway and how to recognise its answer.
pub struct Request {
    pub gw: String,
    /// Publish topic and payload.
    pub topic: String,
    pub payload: Vec<u8>,
    /// The topic the answer arrives on.
    pub answer_topic: String,
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The final answer (a `cmd/res` result or a `config/state`).
    Answered(serde_json::Value),
    /// A non-final answer was seen (e.g. `pending_confirm`) but no final one in time.
    Pending(serde_json::Value),
    /// Published and acknowledged by the broker (`--no-wait`).
    Queued,
    /// No answer in time.
    TimedOut,
    /// Could not connect or publish.
    Failed(String),
}

/// How an answer relates to a request: not ours, ours but not final, final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Other,
    Interim,
    Final,
}

/// Publish every request and wait for the answers. `matches(index, json, live)` classifies a
/// JSON payload seen on request `index`'s answer topic (`live`: published while we were
/// subscribed, not a retained message replayed at subscription). With `wait = false` each request only waits
/// for the broker's PUBACK.
pub async fn exchange(
    cfg: &OpsConfig,
    requests: &[Request],
    timeout: Duration,
    wait: bool,
    matches: impl Fn(usize, &serde_json::Value, bool) -> Match,
) -> Vec<Outcome> {
    let n = requests.len();
    let mut out: Vec<Option<Outcome>> = vec![None; n];
    let opts = match mqtt_options(cfg) {
        Ok(o) => o,
        Err(e) => return vec![Outcome::Failed(format!("{e:#}")); n],
    };
    let (client, mut ev) = AsyncClient::new(opts, 2 * MAX_GATEWAYS + 8);
    let deadline = tokio::time::Instant::now() + timeout;
    // Subscriptions first (one SUBACK each), then publishes (one PUBACK each, in order).
    let mut subacks = 0usize;
    let mut published = false;
    let mut pubacks = 0usize;
    let mut last_error: Option<String> = None;
    if wait {
        for r in requests {
            if let Err(e) = client.subscribe(&r.answer_topic, QoS::AtLeastOnce).await {
                return vec![Outcome::Failed(e.to_string()); n];
            }
        }
    }
    loop {
        let done = out.iter().all(Option::is_some);
        if done {
            break;
        }
        let polled = tokio::time::timeout_at(deadline, ev.poll()).await;
        let event = match polled {
            Err(_) => break,
            Ok(Err(e)) => {
                last_error = Some(esc(&e.to_string()));
                // Not connected yet or dropped: retry until the deadline, gently.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Ok(e)) => e,
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                if published && wait {
                    // Reconnected (clean session): subscribe again.
                    for r in requests {
                        let _ = client.subscribe(&r.answer_topic, QoS::AtLeastOnce).await;
                    }
                }
                if !wait && !published {
                    published = true;
                    for r in requests {
                        let _ = client
                            .publish(&r.topic, QoS::AtLeastOnce, false, r.payload.clone())
                            .await;
                    }
                }
            }
            Event::Incoming(Packet::SubAck(_)) => {
                subacks += 1;
                if subacks == n && !published {
                    published = true;
                    for r in requests {
                        let _ = client
                            .publish(&r.topic, QoS::AtLeastOnce, false, r.payload.clone())
                            .await;
                    }
                }
            }
            Event::Incoming(Packet::PubAck(_)) if !wait => {
                if pubacks < n {
                    out[pubacks] = Some(Outcome::Queued);
                }
                pubacks += 1;
            }
            Event::Incoming(Packet::Publish(p)) => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                    continue;
                };
                for (i, r) in requests.iter().enumerate() {
                    if r.answer_topic != p.topic || matches!(out[i], Some(Outcome::Answered(_))) {
                        continue;
                    }
                    match matches(i, &v, !p.retain) {
                        Match::Other => {}
                        Match::Interim => out[i] = Some(Outcome::Pending(v.clone())),
                        Match::Final => out[i] = Some(Outcome::Answered(v.clone())),
                    }
                }
                if out.iter().all(|o| matches!(o, Some(Outcome::Answered(_)))) {
                    break;
                }
            }
            _ => {}
        }
        if out
            .iter()
            .all(|o| matches!(o, Some(Outcome::Answered(_)) | Some(Outcome::Queued)))
        {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let _ = client.disconnect().await;
        let _ = ev.poll().await;
    })
    .await;
    let connected = subacks > 0 || pubacks > 0 || published;
    out.into_iter()
        .map(|o| match o {
            Some(o) => o,
            None if !connected => Outcome::Failed(
                last_error
                    .clone()
                    .unwrap_or_else(|| "no connection to the broker".into()),
            ),
            None => Outcome::TimedOut,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<OpsConfig, OpsError> {
        parse(text, "ops.toml", Path::new("/etc/o"))
    }

    #[test]
    fn a_full_file_parses_with_paths_against_its_directory() {
        let c = p("[ops]\nhost = \"broker\"\nca_file = \"ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"/k/c.key\"\nkey_file = \"ops.key\"\nexpires = \"2h\"\ntimeout = \"10s\"\ntopic_root = \"utility/{gw}/gasdtu\"\n").unwrap();
        assert_eq!(c.port, 8883);
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/o/ca.pem")));
        assert_eq!(c.client_key, Some(PathBuf::from("/k/c.key")));
        assert_eq!(c.expires, Duration::from_secs(7200));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.root("gw-1"), "utility/gw-1/gasdtu");
        let c = p("[ops]\nhost = \"b\"\ntls = false\n").unwrap();
        assert_eq!(
            (c.port, c.tls, c.root("g")),
            (1883, false, "gasdtu/g".into())
        );
        assert_eq!(c.expires, Duration::from_secs(300));
    }

    #[test]
    fn bad_files_name_the_key_and_its_line() {
        let cases: &[(&str, &str)] = &[
            (
                "[ops]\nhost = \"b\"\n",
                "1:1: ops.ca_file: required with tls",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\nport = 0\n",
                "4:8: ops.port: must be 1..=65535",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\nusername = \"u\"\npassword = \"p\"\n",
                "5:12: ops.password: refused over plain TCP",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\nhots = 1\n",
                "4:1: ops.hots: unknown key",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\nexpires = \"soon\"\n",
                "4:11: ops.expires: not a duration",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\ntimeout = \"30d\"\n",
                "ops.timeout: must be between 1s and 1day",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\ntopic_root = \"x/#\"\n",
                "4:14: ops.topic_root: must contain {gw}",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = \"yes\"\n",
                "3:7: ops.tls: must be true or false",
            ),
            (
                "[ops]\nhost = \"b\"\ntls = false\nclient_cert = \"c\"\n",
                "ops.client_cert: client_cert and client_key go together",
            ),
            ("host = \"b\"\n", "1:1: host: unknown section"),
            ("[opz]\n", "1:2: opz: unknown section"),
            ("", "1:1: ops: missing [ops]"),
            ("[ops]\nhost = \n", "ops.toml:2:"),
        ];
        for (text, want) in cases {
            let got = p(text).expect_err(text).to_string();
            assert!(got.contains(want), "{text:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn ids_are_unique_and_valid() {
        let a = new_id(1_700_000_000_000);
        let b = new_id(1_700_000_000_000);
        assert_ne!(a, b);
        assert!(crate::remote::request::valid_command_id(&a), "{a}");
    }

    mod props {
        //! Fixed seed, bounded cases: the `[ops]` parser never panics on a mutated file, and
        //! every error it reports points at a line and column inside the text.
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};

        const GOOD: &str = "[ops]\nhost = \"b\"\nport = 8883\nca_file = \"ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"c.key\"\nusername = \"u\"\npassword = \"p\"\nkey_file = \"k.pem\"\nexpires = \"5m\"\ntimeout = \"30s\"\ntopic_root = \"gasdtu/{gw}\"\n";

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 1500,
                rng_seed: RngSeed::Fixed(0x0B5_C11),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn mutated_files_never_panic_and_errors_point_inside(
                at in 0..GOOD.len(),
                cut in 0usize..8,
                insert in "[\\x00-\\x7f\u{e9}\u{4e2d}]{0,6}",
            ) {
                let mut text = GOOD.to_string();
                let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                let end = (at..=(at + cut).min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(at);
                text.replace_range(at..end, &insert);
                if let Err(OpsError::Invalid { line, col, .. }) = parse(&text, "o", Path::new("/")) {
                    let lines = text.split('\n').count();
                    prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                    prop_assert!(col >= 1);
                }
            }
        }
    }
}
