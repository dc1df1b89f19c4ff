//! `[store]` and `[uplink]`: defaults, every error with its key path, the `tls = false`
//! warning, and the PEM file checks.

use super::*;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ca.pem"), CERT).unwrap();
    std::fs::write(d.path().join("client.pem"), CERT).unwrap();
    std::fs::write(d.path().join("client.key"), KEY).unwrap();
    std::fs::write(d.path().join("junk.pem"), "hello").unwrap();
    d
}

fn doc(rest: &str) -> String {
    format!("[gateway]\nid = \"gw-7\"\nprofile_dirs = []\n\n{rest}")
}

fn parse(base: &Path, rest: &str) -> Result<Loaded, Vec<ConfigError>> {
    parse_str(&doc(rest), "t.toml", base)
}

#[test]
fn defaults() {
    let d = dir();
    let l = parse(
        d.path(),
        "[uplink]\nhost = \"mqtt.example\"\nca_file = \"ca.pem\"\n",
    )
    .unwrap();
    assert_eq!(l.config.store, StoreConfig::default());
    let u = l.config.uplink.unwrap();
    assert_eq!(u.port, 8883);
    assert!(u.tls);
    assert_eq!(u.ca_file, Some(d.path().join("ca.pem")));
    assert_eq!(u.client_id, "gasdtu-gw-7");
    assert_eq!(u.topic_root, "gasdtu/gw-7");
    assert_eq!(u.keepalive, Duration::from_secs(240));
    assert_eq!(u.connect_timeout, Duration::from_secs(60));
    assert_eq!(
        (u.reconnect_min, u.reconnect_max),
        (Duration::from_secs(1), Duration::from_secs(5))
    );
    assert_eq!((u.max_payload, u.inflight, u.rate_limit), (1024, 8, None));
    assert_eq!(u.encoding, Encoding::Json);
    assert_eq!(u.format, crate::config::PayloadFormat::V1);
    assert_eq!(
        (u.session, u.linger, u.check_in, u.ack_timeout),
        (
            crate::config::SessionMode::Always,
            Duration::from_secs(20),
            Duration::from_secs(3600),
            Duration::from_secs(30)
        )
    );
    assert!(l.warnings.iter().all(|w| !w.path.starts_with("uplink")));
    // No [uplink]: buffer only.
    assert_eq!(parse(d.path(), "").unwrap().config.uplink, None);
}

#[test]
fn everything_set() {
    let d = dir();
    let l = parse(
        d.path(),
        "[store]\nmax_bytes = \"64MiB\"\nmax_age = \"30d\"\nhistory = \"7d\"\n\
         [uplink]\nhost = \"10.0.0.1\"\nport = 8884\nca_file = \"ca.pem\"\nclient_cert = \"client.pem\"\n\
         client_key = \"client.key\"\nserver_name = \"broker.example\"\nusername = \"u\"\npassword = \"p\"\n\
         client_id = \"c1\"\ntopic_root = \"utility/north/gw-7\"\nkeepalive = \"5m\"\nconnect_timeout = \"90s\"\n\
         reconnect_min = \"500ms\"\nreconnect_max = \"30s\"\nmax_payload = 512\nrate_limit = 200\n\
         encoding = \"cbor\"\nformat = 2\ninflight = 2\n",
    )
    .unwrap();
    assert_eq!(l.config.store.max_bytes, 64 << 20);
    assert_eq!(l.config.store.max_age, Duration::from_secs(30 * 86400));
    let u = l.config.uplink.unwrap();
    assert_eq!(u.client_key, Some(d.path().join("client.key")));
    assert_eq!(u.server_name.as_deref(), Some("broker.example"));
    assert_eq!(
        (u.username.as_deref(), u.password.as_deref()),
        (Some("u"), Some("p"))
    );
    assert_eq!(
        (u.encoding, u.inflight, u.rate_limit, u.max_payload),
        (Encoding::Cbor, 2, Some(200), 512)
    );
    assert_eq!(u.format, crate::config::PayloadFormat::V2);
    assert_eq!(u.topic_root, "utility/north/gw-7");
    assert_eq!(
        parse(d.path(), "[store]\nmax_bytes = 2097152\n")
            .unwrap()
            .config
            .store
            .max_bytes,
        2 << 20
    );
}

#[test]
fn plain_tcp_is_allowed_with_a_warning() {
    let d = dir();
    let l = parse(d.path(), "[uplink]\nhost = \"h\"\ntls = false\n").unwrap();
    let u = l.config.uplink.unwrap();
    assert_eq!((u.tls, u.port), (false, 1883));
    let w: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.path == "uplink.tls")
        .collect();
    assert_eq!(w.len(), 1, "{:?}", l.warnings);
    assert!(w[0].message.contains("clear text"));
    assert_eq!(w[0].line, Some(7));
}

#[test]
fn session_modes_and_their_timers() {
    let d = dir();
    let up = "[uplink]\nhost = \"h\"\nca_file = \"ca.pem\"\n";
    let l = parse(
        d.path(),
        &format!("{up}session = \"on_demand\"\nlinger = \"45s\"\ncheck_in = \"6h\"\nack_timeout = \"10s\"\n"),
    )
    .unwrap();
    let u = l.config.uplink.unwrap();
    assert_eq!(u.session, crate::config::SessionMode::OnDemand);
    assert_eq!(
        (u.linger, u.check_in, u.ack_timeout),
        (
            Duration::from_secs(45),
            Duration::from_secs(6 * 3600),
            Duration::from_secs(10)
        )
    );
    assert!(
        l.warnings.iter().all(|w| !w.path.starts_with("uplink")),
        "{:?}",
        l.warnings
    );
    // linger without on_demand: accepted, with a warning naming the key.
    let l = parse(d.path(), &format!("{up}linger = \"45s\"\n")).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.path == "uplink.linger" && w.message.contains("on_demand")),
        "{:?}",
        l.warnings
    );
    for (tail, path, frag) in [
        (
            "session = \"sometimes\"\n",
            "uplink.session",
            "unknown session mode",
        ),
        ("ack_timeout = \"1s\"\n", "uplink.ack_timeout", ""),
        ("linger = \"2h\"\n", "uplink.linger", ""),
        ("check_in = \"10s\"\n", "uplink.check_in", ""),
    ] {
        let errs = parse(d.path(), &format!("{up}{tail}")).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(frag) && e.line.is_some()),
            "{tail}: {errs:?}"
        );
    }
}

#[test]
fn each_error_has_its_key_path() {
    let d = dir();
    let up = "[uplink]\nhost = \"h\"\nca_file = \"ca.pem\"\n";
    // (case, document tail, key path, message fragment)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "no host",
            "[uplink]\nca_file = \"ca.pem\"\n".into(),
            "uplink.host",
            "missing required key",
        ),
        (
            "tls without ca",
            "[uplink]\nhost = \"h\"\n".into(),
            "uplink.ca_file",
            "required with TLS",
        ),
        (
            "ca missing",
            "[uplink]\nhost = \"h\"\nca_file = \"nope.pem\"\n".into(),
            "uplink.ca_file",
            "cannot read",
        ),
        (
            "ca not pem",
            "[uplink]\nhost = \"h\"\nca_file = \"junk.pem\"\n".into(),
            "uplink.ca_file",
            "holds no PEM certificate",
        ),
        (
            "key not pem",
            format!("{up}client_cert = \"client.pem\"\nclient_key = \"ca.pem\"\n"),
            "uplink.client_key",
            "private key",
        ),
        (
            "cert without key",
            format!("{up}client_cert = \"client.pem\"\n"),
            "uplink.client_key",
            "needs both",
        ),
        (
            "key without cert",
            format!("{up}client_key = \"client.key\"\n"),
            "uplink.client_cert",
            "needs both",
        ),
        (
            "ca with plain tcp",
            "[uplink]\nhost = \"h\"\ntls = false\nca_file = \"ca.pem\"\n".into(),
            "uplink.ca_file",
            "only used with TLS",
        ),
        (
            "password alone",
            format!("{up}password = \"p\"\n"),
            "uplink.password",
            "without username",
        ),
        (
            "bad server name",
            format!("{up}server_name = \"a b\"\n"),
            "uplink.server_name",
            "not a valid DNS name",
        ),
        (
            "wildcard root",
            format!("{up}topic_root = \"a/#\"\n"),
            "uplink.topic_root",
            "no wildcards",
        ),
        (
            "sub-second keepalive",
            format!("{up}keepalive = \"500ms\"\n"),
            "uplink.keepalive",
            "whole seconds",
        ),
        (
            "min above max",
            format!("{up}reconnect_min = \"5m\"\nreconnect_max = \"1m\"\n"),
            "uplink.reconnect_min",
            "above reconnect_max",
        ),
        (
            "encoding",
            format!("{up}encoding = \"xml\"\n"),
            "uplink.encoding",
            "use \"json\" or \"cbor\"",
        ),
        (
            "format 3",
            format!("{up}format = 3\n"),
            "uplink.format",
            "out of range 1..=2",
        ),
        (
            "format as text",
            format!("{up}format = \"2\"\n"),
            "uplink.format",
            "integer",
        ),
        (
            "payload too small",
            format!("{up}max_payload = 10\n"),
            "uplink.max_payload",
            "out of range",
        ),
        (
            "inflight 0",
            format!("{up}inflight = 0\n"),
            "uplink.inflight",
            "out of range",
        ),
        (
            "port",
            format!("{up}port = 0\n"),
            "uplink.port",
            "out of range",
        ),
        (
            "unknown key",
            format!("{up}qos = 2\n"),
            "uplink.qos",
            "unknown key",
        ),
        (
            "store size unit",
            "[store]\nmax_bytes = \"12XB\"\n".into(),
            "store.max_bytes",
            "invalid size",
        ),
        (
            "store size small",
            "[store]\nmax_bytes = 1000\n".into(),
            "store.max_bytes",
            "out of range",
        ),
        (
            "store age",
            "[store]\nmax_age = \"1m\"\n".into(),
            "store.max_age",
            "out of range",
        ),
        (
            "store unknown",
            "[store]\npath = \"x\"\n".into(),
            "store.path",
            "unknown key",
        ),
    ];
    for (name, tail, path, frag) in cases {
        let errs = match parse(d.path(), &tail) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => e,
        };
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(frag)),
            "{name}: want {path}: {frag}, got {:#?}",
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        );
    }
}
