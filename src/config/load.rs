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
use super::profiles::{self, Profile};
use super::sections::{default_dirs, parse_gateway, parse_store, DEFAULT_STATE_DIR};
use super::{BusConfig, Config, DeviceConfig, StoreConfig};

/// A validated configuration and what looked suspicious in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
    /// Per device: where each of its points and their fields came from (`check --show`).
    pub origins: BTreeMap<String, super::merge::DeviceOrigins>,
}

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

    let point_sets = super::point_sets::parse_point_sets(&mut d, &mut root);
    let mut origins = BTreeMap::new();
    // Devices.
    let mut devices: Vec<DeviceConfig> = Vec::new();
    let mut units: HashMap<(String, u8), String> = HashMap::new();
    if let Field::Value(mut sec, _) = root.table(&mut d, "devices") {
        for (name, entry) in sec.named_tables(&mut d) {
            let ctx = DeviceCtx {
                bus_kinds: &bus_kinds,
                profile_dirs: &profile_dirs,
                point_sets: &point_sets,
            };
            if let Some((dev, unit_span, from)) =
                parse_device(&mut d, &name, entry, &ctx, &mut cache)
            {
                origins.insert(name.clone(), from);
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
    super::point_sets::warn_unused(&mut d, &point_sets, &origins);
    let gw_id = gateway
        .as_ref()
        .map(|g| g.id.clone())
        .unwrap_or_else(|| "gateway".to_string());
    let store = match root.table(&mut d, "store") {
        Field::Value(sec, _) => parse_store(&mut d, sec),
        Field::Absent => Some(StoreConfig::default()),
        Field::Invalid => None,
    };
    let (uplink, sparkplug) = match root.table(&mut d, "uplink") {
        Field::Value(sec, _) => match super::uplink::parse_uplink(&mut d, sec, &gw_id, base_dir) {
            Some((up, sp)) => (Some(Some(up)), sp),
            None => (None, None),
        },
        Field::Absent => (Some(None), None),
        Field::Invalid => (None, None),
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
        sparkplug,
    };
    check_sparkplug(&mut d, &config);
    if d.has_errors() {
        return Err(d.take_errors());
    }
    warn_config(&mut d, &config, &bus_spans);
    Ok(Loaded {
        config,
        warnings: d.take_warnings(),
        origins,
    })
}

/// Sparkplug mode: the devices must make a metric model, and the largest NBIRTH and every
/// device's largest DBIRTH (measured by the encoder, docs/sparkplug.md) must fit `[uplink]
/// max_payload`.
fn check_sparkplug(d: &mut Diags<'_>, config: &Config) {
    use crate::uplink::sparkplug::{build, size};
    let (Some(_), Some(up)) = (&config.sparkplug, &config.uplink) else {
        return;
    };
    let model = match build(config) {
        Ok(m) => m,
        Err(e) => {
            d.error("uplink.protocol", None, format!("sparkplug: {e}"));
            return;
        }
    };
    let nb = size::nbirth_max_size(&model);
    if nb > up.max_payload {
        d.error(
            "uplink.max_payload",
            None,
            format!(
                "sparkplug: the NBIRTH can be {nb} bytes (every node metric at its widest \
                 value{}), over uplink.max_payload = {}: raise [uplink] max_payload to at least \
                 {nb}",
                if config.modem.is_some() {
                    ", with the modem's"
                } else {
                    ""
                },
                up.max_payload
            ),
        );
    }
    for o in size::oversize_births(config, &model, up.max_payload) {
        d.error(
            &join("devices", &o.device),
            None,
            format!(
                "sparkplug: the DBIRTH of device `{}` can be {} bytes (every metric at its \
                 widest value), over uplink.max_payload = {}: raise [uplink] max_payload to at \
                 least {} (or publish fewer points of this device)",
                o.device, o.size, up.max_payload, o.size
            ),
        );
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
