//! The configuration loader and validator: `load_file` reads the file, `parse_str` validates a
//! document into a `Config` (the same code for `gasdtu check`, `gasdtu run` and later MQTT
//! config pushes). Validation runs in one pass that collects every error with its key path
//! and position; the only I/O after the read is looking up profile files.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::WordOrder;
use crate::planner::Limits;

use super::diag::{ConfigError, ConfigWarning, Diags, LoadError};
use super::doc::{join, parse_document, Field, Section};
use super::points::{self, ComputedDraft, PointDraft};
use super::profiles::{self, Profile};
use super::{BusConfig, Config, DeviceConfig, GatewayConfig, Parity, SerialSettings, Transport};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtu,
    Tcp,
    RtuOverTcp,
}

const RTU_ONLY: &[&str] = &["baud", "parity", "data_bits", "stop_bits"];
const TCP_ONLY: &[&str] = &["host"];
const ALL_BUS_KEYS: &[&str] = &[
    "kind",
    "port",
    "baud",
    "parity",
    "data_bits",
    "stop_bits",
    "timeout",
    "turnaround",
    "retries",
    "host",
];

/// One `[buses.<name>]` entry. `serial_port` receives an RTU bus's port even when other keys
/// are invalid, so that a port used twice is reported in the same pass.
fn parse_bus(
    d: &mut Diags<'_>,
    name: &str,
    mut sec: Section<'_, '_>,
    serial_port: &mut Option<(String, Range<usize>)>,
) -> Option<(BusConfig, Kind)> {
    points::check_name(d, &sec.path, sec.span.clone(), name);
    let f = sec.string(d, "kind");
    let kind = match sec.required(d, "kind", "rtu, tcp or rtu_over_tcp", f) {
        Field::Value(s, sp) => match s.as_str() {
            "rtu" => Some(Kind::Rtu),
            "tcp" => Some(Kind::Tcp),
            "rtu_over_tcp" => Some(Kind::RtuOverTcp),
            _ => {
                d.error(
                    &sec.key_path("kind"),
                    Some(sp),
                    format!("unknown bus kind {s:?}: use rtu, tcp or rtu_over_tcp"),
                );
                None
            }
        },
        _ => None,
    };
    let Some(kind) = kind else {
        // Without a kind the other keys cannot be judged; only flag keys no bus has.
        sec.skip(ALL_BUS_KEYS);
        sec.finish(d, |_| None);
        return None;
    };
    let rtu = kind == Kind::Rtu;
    let (timeout_default, turnaround_default) = match kind {
        Kind::Rtu | Kind::RtuOverTcp => (Duration::from_secs(1), Duration::from_millis(50)),
        Kind::Tcp => (Duration::from_secs(3), Duration::ZERO),
    };
    let timeout = sec
        .duration(
            d,
            "timeout",
            Duration::from_millis(10),
            Duration::from_secs(60),
        )
        .or(if kind == Kind::RtuOverTcp {
            Duration::from_secs(3)
        } else {
            timeout_default
        });
    let turnaround = sec
        .duration(d, "turnaround", Duration::ZERO, Duration::from_secs(10))
        .or(turnaround_default);
    let retries = sec.int(d, "retries", 0, 10).or(1);
    let transport = if rtu {
        let f = sec.string(d, "port");
        let port = match sec.required(d, "port", "serial device, e.g. /dev/ttyUSB0", f) {
            Field::Value(s, sp) if s.trim().is_empty() => {
                d.error(&sec.key_path("port"), Some(sp), "must not be empty");
                None
            }
            Field::Value(s, sp) => {
                *serial_port = Some((s.clone(), sp));
                Some(s)
            }
            _ => None,
        };
        let baud = match sec.int(d, "baud", 1, 10_000_000) {
            Field::Value(b, sp) if !BAUD_RATES.contains(&(b as u32)) => {
                let rates: Vec<String> = BAUD_RATES.iter().map(|r| r.to_string()).collect();
                d.error(
                    &sec.key_path("baud"),
                    Some(sp),
                    format!(
                        "{b} is not a standard rate: use one of {}",
                        rates.join(", ")
                    ),
                );
                None
            }
            f => f.or(9600).map(|b| b as u32),
        };
        let parity = match sec.string(d, "parity") {
            Field::Value(s, sp) => match s.as_str() {
                "none" => Some(Parity::None),
                "even" => Some(Parity::Even),
                "odd" => Some(Parity::Odd),
                _ => {
                    d.error(
                        &sec.key_path("parity"),
                        Some(sp),
                        format!("unknown parity {s:?}: use none, even or odd"),
                    );
                    None
                }
            },
            f => f.or(String::new()).map(|_| Parity::Even),
        };
        let data_bits = match sec.int(d, "data_bits", 0, 255) {
            Field::Value(b, sp) if b != 7 && b != 8 => {
                d.error(
                    &sec.key_path("data_bits"),
                    Some(sp),
                    format!("{b} data bits: use 7 or 8"),
                );
                None
            }
            f => f.or(8).map(|b| b as u8),
        };
        let stop_bits = match sec.int(d, "stop_bits", 0, 255) {
            Field::Value(b, sp) if b != 1 && b != 2 => {
                d.error(
                    &sec.key_path("stop_bits"),
                    Some(sp),
                    format!("{b} stop bits: use 1 or 2"),
                );
                None
            }
            f => f.or(1).map(|b| b as u8),
        };
        (|| {
            Some(Transport::Rtu(SerialSettings {
                port: port?,
                baud: baud?,
                parity: parity?,
                data_bits: data_bits?,
                stop_bits: stop_bits?,
            }))
        })()
    } else {
        let f = sec.string(d, "host");
        let host = match sec.required(d, "host", "IP address or host name", f) {
            Field::Value(s, sp) if s.trim().is_empty() || s.contains(char::is_whitespace) => {
                d.error(
                    &sec.key_path("host"),
                    Some(sp),
                    format!("invalid host {s:?}"),
                );
                None
            }
            f => f.or(String::new()),
        };
        let port = sec.int(d, "port", 1, 65535).or(502).map(|p| p as u16);
        match (host, port) {
            (Some(host), Some(port)) if kind == Kind::Tcp => Some(Transport::Tcp { host, port }),
            (Some(host), Some(port)) => Some(Transport::RtuOverTcp { host, port }),
            _ => None,
        }
    };
    let kind_name = match kind {
        Kind::Rtu => "rtu",
        Kind::Tcp => "tcp",
        Kind::RtuOverTcp => "rtu_over_tcp",
    };
    sec.finish(d, |k| {
        if RTU_ONLY.contains(&k) && !rtu {
            Some(format!(
                "`{k}` applies only to kind = \"rtu\", this bus is {kind_name:?}"
            ))
        } else if TCP_ONLY.contains(&k) && rtu {
            Some(format!(
                "`{k}` applies only to kind = \"tcp\" or \"rtu_over_tcp\", this bus is \"rtu\""
            ))
        } else {
            None
        }
    });
    Some((
        BusConfig {
            name: name.to_string(),
            transport: transport?,
            timeout: timeout?,
            turnaround: turnaround?,
            retries: retries? as u32,
        },
        kind,
    ))
}

struct DeviceCtx<'a> {
    bus_kinds: &'a HashMap<String, Option<Kind>>,
    profile_dirs: &'a [PathBuf],
}

fn parse_device(
    d: &mut Diags<'_>,
    name: &str,
    mut sec: Section<'_, '_>,
    ctx: &DeviceCtx<'_>,
    cache: &mut HashMap<String, Option<Profile>>,
) -> Option<(DeviceConfig, Option<Range<usize>>)> {
    let prefix = sec.path.clone();
    points::check_name(d, &prefix, sec.span.clone(), name);
    let f = sec.string(d, "bus");
    let (bus, bus_kind) = match sec.required(d, "bus", "the name of a [buses.<name>] section", f) {
        Field::Value(b, sp) => match ctx.bus_kinds.get(&b) {
            Some(k) => (Some(b), *k),
            None => {
                let mut known: Vec<&String> = ctx.bus_kinds.keys().collect();
                known.sort();
                let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
                d.error(
                    &sec.key_path("bus"),
                    Some(sp),
                    format!(
                        "no bus named `{b}` (buses: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                (None, None)
            }
        },
        _ => (None, None),
    };
    let f = sec.int(d, "unit", 0, 255);
    let unit_field = sec.required(d, "unit", "Modbus unit id 1..=247", f);
    let unit_span = unit_field.span();
    let unit = match unit_field {
        Field::Value(u, sp) => {
            if u == 0 {
                d.error(
                    &sec.key_path("unit"),
                    Some(sp),
                    "unit 0 is the broadcast address and cannot be polled: use 1..=247",
                );
                None
            } else if u == 255 && bus_kind == Some(Kind::Tcp) || u <= 247 {
                Some(u as u8)
            } else if u == 255 {
                d.error(
                    &sec.key_path("unit"),
                    Some(sp),
                    "unit 255 is only allowed on kind = \"tcp\" buses: use 1..=247",
                );
                None
            } else {
                d.error(
                    &sec.key_path("unit"),
                    Some(sp),
                    format!("unit {u} is reserved: use 1..=247 (255 on tcp)"),
                );
                None
            }
        }
        _ => None,
    };
    let poll_field = sec.duration(
        d,
        "poll",
        Duration::from_secs(1),
        Duration::from_secs(86400),
    );
    let poll_span = poll_field.span();
    let poll = poll_field.or(Duration::from_secs(300));
    let phase_field = sec.duration(d, "phase", Duration::ZERO, Duration::from_secs(86400));
    let phase_span = phase_field.span();
    let phase = phase_field.or(Duration::ZERO);
    if let (Some(p), Some(ph)) = (poll, phase) {
        if ph >= p {
            d.error(
                &sec.key_path("phase"),
                phase_span,
                format!(
                    "phase {} must be shorter than poll {}",
                    humantime::format_duration(ph),
                    humantime::format_duration(p)
                ),
            );
        }
        if poll_span.is_some() && (p.subsec_nanos() != 0 || 86400 % p.as_secs().max(1) != 0) {
            d.warn(
                &sec.key_path("poll"),
                poll_span,
                format!("poll {} does not divide a day evenly: polls will not fall on the same clock times every day", humantime::format_duration(p)),
            );
        }
    }
    let max_registers = sec.int(d, "max_registers", 1, 125).opt();
    let max_gap = sec.int(d, "max_gap", 0, 125).opt();
    let offline_after = sec.int(d, "offline_after", 1, 10_000).or(3);
    let enabled = sec.boolean(d, "enabled").or(true);
    let order = match sec.string(d, "order") {
        Field::Value(s, sp) => match WordOrder::parse(&s) {
            Some(o) => Some(Some(o)),
            None => {
                d.error(
                    &sec.key_path("order"),
                    Some(sp),
                    format!("unknown order {s:?}: use ABCD, CDAB, BADC or DCBA"),
                );
                None
            }
        },
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    // The profile, looked up once per id for the whole document.
    let profile_field = sec.string(d, "profile");
    let (profile_id, profile, profile_ok) = match profile_field {
        Field::Value(id, sp) if !points::valid_name(&id) => {
            d.error(
                &sec.key_path("profile"),
                Some(sp),
                format!("invalid profile id {id:?}: use 1 to 64 of A-Z a-z 0-9 _ - (the file is <id>.toml)"),
            );
            (None, None, false)
        }
        Field::Value(id, sp) => {
            let path = sec.key_path("profile");
            let entry = match cache.get(&id) {
                Some(Some(p)) => Some(p.clone()),
                Some(None) => {
                    d.error(
                        &path,
                        Some(sp),
                        format!("profile {id:?} is unavailable (see the errors above)"),
                    );
                    None
                }
                None => {
                    let found = match profiles::find_profile(&id, ctx.profile_dirs) {
                        Ok(Some(p)) => Some(p),
                        Ok(None) => {
                            d.error(
                                &path,
                                Some(sp),
                                profiles::not_found_message(&id, ctx.profile_dirs),
                            );
                            None
                        }
                        Err(errs) => {
                            let n = errs.len();
                            d.errors.extend(errs);
                            d.error(
                                &path,
                                Some(sp),
                                format!(
                                    "profile {id:?} is invalid ({n} errors in the profile file)"
                                ),
                            );
                            None
                        }
                    };
                    cache.insert(id.clone(), found.clone());
                    found
                }
            };
            let ok = entry.is_some();
            (Some(id), entry, ok)
        }
        Field::Absent => (None, None, true),
        Field::Invalid => (None, None, false),
    };
    let device_order = order.flatten();
    let default_order = device_order
        .or(profile.as_ref().map(|p| p.default_order))
        .unwrap_or_default();
    let entries = points::parse_entries(d, &mut sec, default_order);
    let sec_span = sec.span.clone();
    sec.finish(d, |_| None);

    // Merge: profile points (device order replacing the profile default), then inline
    // entries, which replace profile entries of the same name.
    let mut pts: Vec<PointDraft> = Vec::new();
    let mut comp: Vec<ComputedDraft> = Vec::new();
    if let Some(p) = &profile {
        for spec in &p.points {
            let mut spec = spec.clone();
            if let Some(o) = device_order {
                if spec.order == p.default_order {
                    spec.order = o;
                }
            }
            pts.push(PointDraft { spec, span: None });
        }
        for c in &p.computed {
            comp.push(ComputedDraft {
                term_spans: vec![None; c.terms.len()],
                spec: c.clone(),
                span: None,
            });
        }
    }
    for ip in entries.points {
        match pts.iter_mut().find(|p| p.spec.name == ip.spec.name) {
            Some(slot) => *slot = ip,
            None => pts.push(ip),
        }
    }
    for ic in entries.computed {
        match comp.iter_mut().find(|c| c.spec.name == ic.spec.name) {
            Some(slot) => *slot = ic,
            None => comp.push(ic),
        }
    }
    if pts.is_empty() && entries.ok && profile_ok && profile_id.is_none() {
        d.error(
            &prefix,
            sec_span,
            "device has no points: set `profile` or add [devices.<name>.points.<point>] entries",
        );
    }
    let max_registers = max_registers.ok()?;
    let max_gap = max_gap.ok()?;
    let limits = Limits {
        max_registers: max_registers
            .map(|v| v as u16)
            .or(profile.as_ref().and_then(|p| p.max_registers))
            .unwrap_or(125),
        max_gap: max_gap
            .map(|v| v as u16)
            .or(profile.as_ref().and_then(|p| p.max_gap))
            .unwrap_or(10),
    };
    if profile_ok {
        points::check_set(d, &prefix, &pts, &comp, &entries.broken, limits);
    }
    if !(entries.ok && profile_ok) {
        return None;
    }
    Some((
        DeviceConfig {
            name: name.to_string(),
            bus: bus?,
            unit: unit?,
            poll: poll?,
            phase: phase?,
            max_registers: limits.max_registers,
            max_gap: limits.max_gap,
            offline_after: offline_after? as u32,
            enabled: enabled?,
            profile: profile_id,
            points: pts.into_iter().map(|p| p.spec).collect(),
            computed: comp.into_iter().map(|c| c.spec).collect(),
        },
        unit_span,
    ))
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
