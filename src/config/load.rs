//! The configuration loader and validator: `load_file` reads the file, `parse_str` validates a
//! document into a `Config` (the same code for `gasdtu check`, `gasdtu run` and later MQTT
//! config pushes). Validation runs in one pass that collects every error with its key path
//! and position; the only I/O after the read is looking up profile files.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

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
/// file's directory.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_str(&text, &path.display().to_string(), &base).map_err(|errors| LoadError::Invalid {
        path: path.to_path_buf(),
        errors,
    })
}

/// Validate a configuration document. `origin` names it in diagnostics; relative
/// `profile_dirs` resolve against `base_dir`. Pure apart from reading profile files.
pub fn parse_str(text: &str, origin: &str, base_dir: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let mut d = Diags::new(origin, text);
    let Some(doc) = parse_document(&mut d, text) else {
        return Err(d.errors);
    };
    let mut root = Section::new(String::new(), None, doc.get_ref());

    let gateway = match root.table(&mut d, "gateway") {
        Field::Value(sec, _) => parse_gateway(&mut d, sec, base_dir),
        Field::Absent => {
            d.error("gateway", None, "missing [gateway] section (at least `id`)");
            None
        }
        Field::Invalid => None,
    };
    let profile_dirs = match &gateway {
        Some(g) => g.profile_dirs.clone(),
        None => profiles::resolve_dirs(&default_dirs(), base_dir),
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
    let mut cache: HashMap<String, Option<Profile>> = HashMap::new();
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
    root.finish(&mut d, |k| match k {
        "store" | "uplink" | "alarms" | "modem" => {
            Some("this section is not supported by this version of gasdtu".to_string())
        }
        _ => None,
    });

    let Some(gateway) = gateway else {
        return Err(d.errors);
    };
    if !d.errors.is_empty() {
        return Err(d.errors);
    }
    buses.sort_by(|a, b| a.name.cmp(&b.name));
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    let config = Config {
        gateway,
        buses,
        devices,
        // Parsed from [store] and [uplink] with the store-and-forward issue.
        store: StoreConfig::default(),
        uplink: None,
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
    sec.finish(d, |_| None);
    Some(GatewayConfig {
        id: id?,
        state_dir: PathBuf::from(state_dir?),
        profile_dirs: profiles::resolve_dirs(&profile_dirs?, base_dir),
        log_level: log_level?,
    })
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
    for t in super::report::bus_timing(config) {
        let span = bus_spans.get(&t.bus).cloned().flatten();
        let path = join("buses", &t.bus);
        if let Some(msg) = t.warning() {
            d.warn(&path, span, msg);
        }
    }
}
