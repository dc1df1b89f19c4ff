//! The configuration loader and validator: `load_file` reads the file, `parse_str` validates a
//! document into a `Config` (the same code for `gasdtu check`, `gasdtu run` and later MQTT
//! config pushes). Validation runs in one pass that collects every error with its key path
//! and position; the only I/O after the read is looking up profile files.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::bus::{parse_bus, Kind};
use super::device::{parse_device, DeviceCtx};
use super::diag::{ConfigError, ConfigWarning, Diags, LoadError};
use super::doc::{join, parse_document, Field, Section};
use super::points;
use super::profiles::{self, Profile};
use super::StoreConfig;
use super::{BusConfig, Config, DeviceConfig, GatewayConfig};

/// A validated configuration and what looked suspicious in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
}

/// Default directories searched for profiles (the built-in profiles always come last).
pub const DEFAULT_PROFILE_DIRS: &[&str] = &["/etc/gasdtu/profiles", "/usr/share/gasdtu/profiles"];
pub const DEFAULT_STATE_DIR: &str = "/var/lib/gasdtu";
/// Standard serial rates accepted for `baud`.
pub const BAUD_RATES: &[u32] = &[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400];

/// Read and validate a configuration file. Relative profile directories resolve against the
/// file's directory. Only a regular file of at most `MAX_CONFIG_BYTES` is read; bytes that
/// are not UTF-8 are an error at their line and column.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let bytes =
        super::file::read_bounded(path, super::file::MAX_CONFIG_BYTES).map_err(|source| {
            LoadError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let origin = path.display().to_string();
    let text = super::file::utf8(bytes).map_err(|bad| LoadError::Invalid {
        path: path.to_path_buf(),
        errors: vec![ConfigError {
            origin: origin.clone(),
            path: String::new(),
            line: Some(bad.line),
            column: Some(bad.column),
            message: bad.message(),
        }],
    })?;
    parse_str(&text, &origin, &config_dir(path)).map_err(|errors| LoadError::Invalid {
        path: path.to_path_buf(),
        errors,
    })
}

/// The directory relative paths in the config file at `path` resolve against.
pub fn config_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Validate a configuration document. `origin` names it in diagnostics; relative
/// `profile_dirs` resolve against `base_dir`. Pure apart from reading profile files.
pub fn parse_str(text: &str, origin: &str, base_dir: &Path) -> Result<Loaded, Vec<ConfigError>> {
    parse_with_profiles(text, origin, base_dir, &[])
}

/// Validate a configuration document together with profiles given in memory (`extra`: name,
/// TOML text), as a config push carries them: every one of them is validated (at most
/// `profiles::MAX_PUSHED_PROFILES`, errors named `push:<name>.toml`), and they shadow profile
/// files of the same name, `<state_dir>/profiles/` included. Otherwise exactly `parse_str`.
pub fn parse_with_profiles(
    text: &str,
    origin: &str,
    base_dir: &Path,
    extra: &[(String, String)],
) -> Result<Loaded, Vec<ConfigError>> {
    let mut d = Diags::new(origin, text);
    // Pushed profiles seed the per-document profile cache: a device naming one gets it (or
    // "unavailable" when it is invalid) without looking at any file.
    let mut cache: HashMap<String, Option<Profile>> = HashMap::new();
    let (pushed, errs) = profiles::parse_pushed(extra);
    cache.extend(pushed);
    d.extend(errs);
    let Some(doc) = parse_document(&mut d, text) else {
        return Err(d.take_errors());
    };
    let mut root = Section::new(String::new(), None, doc.get_ref());

    let gateway = match root.table(&mut d, "gateway") {
        Field::Value(sec, _) => parse_gateway(&mut d, sec, base_dir),
        Field::Absent => {
            // Placed at the top of the document: the section belongs there.
            d.error(
                "gateway",
                Some(0..1),
                "missing [gateway] section (at least `id`)",
            );
            None
        }
        Field::Invalid => None,
    };
    // `<state_dir>/profiles` (pushed profiles) is always searched first.
    let profile_dirs = match &gateway {
        Some(g) => profiles::search_dirs(&g.state_dir, &g.profile_dirs),
        None => profiles::search_dirs(
            Path::new(DEFAULT_STATE_DIR),
            &profiles::resolve_dirs(&default_dirs(), base_dir),
        ),
    };

    // Buses.
    let mut buses: Vec<BusConfig> = Vec::new();
    let mut bus_kinds: HashMap<String, Option<Kind>> = HashMap::new();
    let mut bus_spans: HashMap<String, Option<Range<usize>>> = HashMap::new();
    let mut rtu_ports: HashMap<String, String> = HashMap::new();
    if let Field::Value(mut sec, _) = root.table(&mut d, "buses") {
        for (name, entry) in sec.named_tables(&mut d) {
            bus_spans.insert(name.clone(), entry.span.clone());
            let mut serial_port = None;
            let parsed = parse_bus(&mut d, &name, entry, &mut serial_port);
            bus_kinds.insert(name.clone(), parsed.as_ref().map(|(_, k)| *k));
            if let Some((port, port_span)) = serial_port {
                if let Some(other) = rtu_ports.get(&port) {
                    d.error(
                        &format!("buses.{name}.port"),
                        Some(port_span),
                        format!("serial port {port} is already used by bus `{other}`: one bus per port (put both devices on one bus)"),
                    );
                } else {
                    rtu_ports.insert(port, name.clone());
                }
            }
            if let Some((bus, _)) = parsed {
                buses.push(bus);
            }
        }
        sec.finish(&mut d, |_| None);
    }

    // Devices.
    let mut devices: Vec<DeviceConfig> = Vec::new();
    let mut units: HashMap<(String, u8), String> = HashMap::new();
    if let Field::Value(mut sec, _) = root.table(&mut d, "devices") {
        for (name, entry) in sec.named_tables(&mut d) {
            let ctx = DeviceCtx {
                bus_kinds: &bus_kinds,
                profile_dirs: &profile_dirs,
            };
            if let Some((dev, unit_span)) = parse_device(&mut d, &name, entry, &ctx, &mut cache) {
                if dev.enabled {
                    let key = (dev.bus.clone(), dev.unit);
                    if let Some(other) = units.get(&key) {
                        d.error(
                            &format!("devices.{name}.unit"),
                            unit_span,
                            format!(
                                "unit {} on bus `{}` is already used by device `{other}`",
                                dev.unit, dev.bus
                            ),
                        );
                    } else {
                        units.insert(key, name.clone());
                    }
                }
                devices.push(dev);
            }
        }
        sec.finish(&mut d, |_| None);
    }
    let gw_id = gateway
        .as_ref()
        .map(|g| g.id.clone())
        .unwrap_or_else(|| "gateway".to_string());
    let store = match root.table(&mut d, "store") {
        Field::Value(sec, _) => parse_store(&mut d, sec),
        Field::Absent => Some(StoreConfig::default()),
        Field::Invalid => None,
    };
    let uplink = match root.table(&mut d, "uplink") {
        Field::Value(sec, _) => {
            super::uplink::parse_uplink(&mut d, sec, &gw_id, base_dir).map(Some)
        }
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    let alarms = match root.table(&mut d, "alarms") {
        Field::Value(sec, _) => super::alarms::parse_alarms(&mut d, sec, &devices),
        _ => Vec::new(),
    };
    let remote = match root.table(&mut d, "remote") {
        Field::Value(sec, _) => super::remote::parse_remote(&mut d, sec, &devices).map(Some),
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    let modem = match root.table(&mut d, "modem") {
        Field::Value(sec, _) => super::modem::parse_modem(&mut d, sec),
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    root.finish(&mut d, |_| None);

    let (Some(gateway), Some(store), Some(uplink), Some(remote), Some(modem)) =
        (gateway, store, uplink, remote, modem)
    else {
        return Err(d.take_errors());
    };
    // Socket mode: the module connects to an address, so the broker must have one.
    if let (Some(m), Some(up)) = (&modem, &uplink) {
        if m.mode == super::ModemMode::Socket
            && crate::modem::bridge::resolve(&up.host, &m.hosts).is_none()
        {
            d.error(
                "modem.hosts",
                None,
                format!(
                    "socket mode: the module needs the broker's IP address, and uplink.host {:?} \
                     is a name: add \"<IP address> {}\" to modem.hosts (module DNS is not used)",
                    super::escape(&up.host),
                    super::escape(&up.host)
                ),
            );
        }
    }
    if d.has_errors() {
        return Err(d.take_errors());
    }
    buses.sort_by(|a, b| a.name.cmp(&b.name));
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    let config = Config {
        gateway,
        buses,
        devices,
        store,
        uplink,
        alarms,
        remote,
        modem,
    };
    warn_config(&mut d, &config, &bus_spans);
    Ok(Loaded {
        config,
        warnings: d.warnings,
    })
}

fn default_dirs() -> Vec<String> {
    DEFAULT_PROFILE_DIRS.iter().map(|s| s.to_string()).collect()
}

fn parse_gateway(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    base_dir: &Path,
) -> Option<GatewayConfig> {
    let f = sec.string(d, "id");
    let id = match sec.required(d, "id", "this gateway's id, [A-Za-z0-9_-]{1,64}", f) {
        Field::Value(s, sp) => {
            if points::valid_name(&s) {
                Some(s)
            } else {
                d.error(
                    &sec.key_path("id"),
                    Some(sp),
                    format!("invalid gateway id {s:?}: use 1 to 64 of A-Z a-z 0-9 _ - (it becomes an MQTT topic level)"),
                );
                None
            }
        }
        _ => None,
    };
    let state_dir = match sec.string(d, "state_dir") {
        Field::Value(s, sp) if s.is_empty() => {
            d.error(&sec.key_path("state_dir"), Some(sp), "must not be empty");
            None
        }
        // Relative to the config file's directory, as profile_dirs (not to the working
        // directory, which is / under systemd).
        Field::Value(s, sp) => match std::fs::metadata(resolve_path(&s, base_dir)) {
            // A missing directory is created by the daemon; anything else in its place is not
            // usable and would only fail at start.
            Ok(m) if !m.is_dir() => {
                d.error(
                    &sec.key_path("state_dir"),
                    Some(sp),
                    format!("{s:?} exists and is not a directory"),
                );
                None
            }
            _ => Some(s),
        },
        f => f.or(DEFAULT_STATE_DIR.to_string()),
    };
    let profile_dirs = sec.strings(d, "profile_dirs").or(default_dirs());
    let log_level = match sec.string(d, "log_level") {
        Field::Value(s, sp) => {
            if tracing_subscriber::EnvFilter::try_new(&s).is_ok() && !s.trim().is_empty() {
                Some(s)
            } else {
                d.error(
                    &sec.key_path("log_level"),
                    Some(sp),
                    format!("invalid log level {s:?}: use error, warn, info, debug, trace or a tracing filter"),
                );
                None
            }
        }
        f => f.or("info".to_string()),
    };
    let commissioned = sec.boolean(d, "commissioned").or(true);
    let socket = match sec.string(d, "socket") {
        Field::Value(s, sp) if s.is_empty() => {
            d.error(&sec.key_path("socket"), Some(sp), "must not be empty");
            None
        }
        f => f.opt().ok().map(|s| s.map(|s| resolve_path(&s, base_dir))),
    };
    sec.finish(d, |_| None);
    Some(GatewayConfig {
        id: id?,
        state_dir: resolve_path(&state_dir?, base_dir),
        profile_dirs: profiles::resolve_dirs(&profile_dirs?, base_dir),
        log_level: log_level?,
        commissioned: commissioned?,
        socket: socket?,
    })
}

/// `p` as is when absolute, else under `base_dir` (the config file's directory).
pub fn resolve_path(p: &str, base_dir: &Path) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base_dir.join(p)
    }
}

/// Warnings on a valid configuration: empty buses and poll cycles that do not fit the wire.
fn warn_config(
    d: &mut Diags<'_>,
    config: &Config,
    bus_spans: &HashMap<String, Option<Range<usize>>>,
) {
    if config.devices.iter().all(|dv| !dv.enabled) {
        d.warn(
            "devices",
            None,
            "no enabled devices: the daemon will poll nothing",
        );
    }
    let mut used: BTreeMap<&str, usize> = BTreeMap::new();
    for dv in config.devices.iter().filter(|dv| dv.enabled) {
        *used.entry(dv.bus.as_str()).or_default() += 1;
    }
    for bus in &config.buses {
        let span = bus_spans.get(&bus.name).cloned().flatten();
        let path = join("buses", &bus.name);
        if !used.contains_key(bus.name.as_str()) {
            d.warn(&path, span.clone(), "no enabled device uses this bus");
        }
    }
    for t in super::wire_time::bus_timing(config) {
        let span = bus_spans.get(&t.bus).cloned().flatten();
        let path = join("buses", &t.bus);
        if let Some(msg) = t.warning() {
            d.warn(&path, span, msg);
        }
    }
    // PSM lets the module sleep between sessions: an always-on MQTT session either keeps it
    // awake (keepalives) or breaks each time it sleeps.
    if let (Some(m), Some(up)) = (&config.modem, &config.uplink) {
        if m.psm.is_some() && up.session == super::SessionMode::Always {
            d.warn(
                "modem.psm_tau",
                None,
                "PSM requested with uplink.session = \"always\": the module cannot sleep while the \
                 session is up (keepalives wake it), or the session breaks when it does; use \
                 uplink.session = \"on_demand\"",
            );
        }
    }
}

/// `[store]`: bounds of the buffer.
fn parse_store(d: &mut Diags<'_>, mut sec: Section<'_, '_>) -> Option<StoreConfig> {
    let def = StoreConfig::default();
    let max_bytes = parse_size(d, &mut sec, "max_bytes", 1 << 20, 1 << 40).or(def.max_bytes);
    let day = Duration::from_secs(86400);
    let max_age = sec
        .duration(d, "max_age", Duration::from_secs(3600), day * 3650)
        .or(def.max_age);
    let history = sec
        .duration(d, "history", Duration::ZERO, day * 3650)
        .or(def.history);
    sec.finish(d, |_| None);
    Some(StoreConfig {
        max_bytes: max_bytes?,
        max_age: max_age?,
        history: history?,
    })
}

/// A byte size: an integer, or a string with a unit (`"512MiB"`, `"2GB"`, `"64KiB"`).
fn parse_size(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    key: &str,
    lo: u64,
    hi: u64,
) -> Field<u64> {
    let path = sec.key_path(key);
    let range = format!("out of range {lo}..={hi} bytes (1 MiB ..= 1 TiB)");
    // Try the string form first, then the integer form (each records its own type error).
    if let Field::Value(n, sp) = sec.int(&mut Diags::new("", ""), key, 0, i64::MAX) {
        let n = n as u64;
        if n < lo || n > hi {
            d.error(&path, Some(sp), format!("{n} is {range}"));
            return Field::Invalid;
        }
        return Field::Value(n, sp);
    }
    match sec.string(&mut Diags::new("", ""), key) {
        Field::Value(s, sp) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let mult: Option<u64> = match unit.trim() {
                "" | "B" => Some(1),
                "KB" | "kB" => Some(1000),
                "MB" => Some(1_000_000),
                "GB" => Some(1_000_000_000),
                "KiB" => Some(1 << 10),
                "MiB" => Some(1 << 20),
                "GiB" => Some(1 << 30),
                _ => None,
            };
            match (num.parse::<u64>().ok(), mult) {
                (Some(n), Some(m)) => match n.checked_mul(m) {
                    Some(v) if v >= lo && v <= hi => Field::Value(v, sp),
                    _ => {
                        d.error(&path, Some(sp), format!("{s:?} is {range}"));
                        Field::Invalid
                    }
                },
                _ => {
                    d.error(
                        &path,
                        Some(sp),
                        format!("invalid size {s:?}: write bytes as an integer or e.g. \"512MiB\", \"2GB\""),
                    );
                    Field::Invalid
                }
            }
        }
        Field::Absent => Field::Absent,
        Field::Invalid => {
            let msg = match sec.int(&mut Diags::new("", ""), key, i64::MIN, i64::MAX) {
                Field::Value(n, _) => format!("{n} is {range}"),
                _ => "expected a size: an integer (bytes) or a string such as \"512MiB\"".into(),
            };
            d.error(&path, sec.value_span(key), msg);
            Field::Invalid
        }
    }
}

#[cfg(test)]
mod store_uplink_tests {
    //! `[store]` and `[uplink]`: defaults, every error with its key path, the `tls = false`
    //! warning, and the PEM file checks.
    use super::*;
    use crate::config::Encoding;

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
             encoding = \"cbor\"\ninflight = 2\n",
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
}
