//! The `[modem]` section (issue 11): how gasdtu reaches the NB-IoT module that carries its
//! uplink — the mode (`none`, `os`: the OS owns the data path and gasdtu supervises through a
//! spare AT port, `socket`: gasdtu drives the module's AT socket commands), the AT serial port,
//! the module profile (`auto` or a profile id the AT core knows), the APN, the signal sampling
//! period, the registration bound before the reset ladder climbs, requested PSM/eDRX timers,
//! the reset caps, `set_clock` (the network's time corrects an untrusted system clock) and
//! `[modem.power]` (GPIO line or command that power-cycles the module).
//! Every error carries its key path and line:column, like the other sections; no I/O.

use std::path::PathBuf;
use std::time::Duration;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::load::BAUD_RATES;
use crate::modem::profile;
use crate::modem::timers::{encode_edrx, encode_t3324, encode_t3412, Timer};

/// Bounds of `signal_every`.
pub const MIN_SIGNAL_EVERY: Duration = Duration::from_secs(10);
pub const MAX_SIGNAL_EVERY: Duration = Duration::from_secs(86_400);
/// Bounds of `register_within`.
pub const MIN_REGISTER_WITHIN: Duration = Duration::from_secs(30);
pub const MAX_REGISTER_WITHIN: Duration = Duration::from_secs(3_600);
/// Longest APN (3GPP TS 23.003: 100 octets; modules accept 63 in CGDCONT).
pub const MAX_APN: usize = 63;
/// Most words of `[modem.power] command`.
pub const MAX_COMMAND_WORDS: usize = 16;
/// Highest GPIO line offset accepted.
pub const MAX_GPIO_LINE: i64 = 1023;
/// Bounds of `off_for`.
pub const MIN_OFF_FOR: Duration = Duration::from_millis(100);
pub const MAX_OFF_FOR: Duration = Duration::from_secs(60);

/// How gasdtu reaches the network through the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemMode {
    /// The OS owns the data path (PPP, ECM, QMI); gasdtu supervises on an AT port.
    Os,
    /// UART-only module: gasdtu opens TCP through the module's AT socket commands.
    Socket,
}

impl ModemMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ModemMode::Os => "os",
            ModemMode::Socket => "socket",
        }
    }
}

/// Requested PSM timers (both set or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsmRequest {
    /// Requested periodic TAU (T3412 extended).
    pub tau: Duration,
    /// Requested active time (T3324).
    pub active: Duration,
}

/// What switches the module's power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerSwitch {
    /// A line of a Linux GPIO character device (`/dev/gpiochipN`).
    Gpio {
        chip: PathBuf,
        line: u32,
        /// The line drives power on when low.
        active_low: bool,
    },
    /// A program (absolute path) and its arguments that power-cycles the module.
    Command(Vec<String>),
}

/// `[modem.power]`: the last rung of the reset ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerConfig {
    pub switch: PowerSwitch,
    /// How long power stays off (default 2 s).
    pub off_for: Duration,
    /// Power cycles allowed per day (default 6, 1..=48).
    pub max_power_cycles_per_day: u32,
}

/// `[modem]` with a mode other than `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemConfig {
    pub mode: ModemMode,
    /// The AT serial port (or pty path).
    pub port: String,
    pub baud: u32,
    /// A profile id (`profile::by_id`); `None` = detect from ATI/CGMM.
    pub model: Option<String>,
    /// Set with `AT+CGDCONT=1,"IP","<apn>"` when given.
    pub apn: Option<String>,
    pub signal_every: Duration,
    /// How long registration may be missing before the reset ladder climbs.
    pub register_within: Duration,
    pub psm: Option<PsmRequest>,
    /// Requested eDRX cycle.
    pub edrx: Option<Duration>,
    pub power: Option<PowerConfig>,
    /// Radio cycles and module resets allowed per day (default 24).
    pub max_resets_per_day: u32,
    /// Socket mode: addresses of host names the uplink uses (`hosts = ["203.0.113.7
    /// broker.example.net"]`, like /etc/hosts lines); module DNS is not used.
    pub hosts: Vec<(String, std::net::IpAddr)>,
    /// The reset ladder's first gap between steps (doubling per step, up to 30 min).
    pub ladder_gap: Duration,
    /// Correct an untrusted system clock with the network's time (`AT+CCLK?`; default true).
    pub set_clock: bool,
}

impl ModemConfig {
    /// A config with the defaults for `port` (tests and examples).
    pub fn new(mode: ModemMode, port: impl Into<String>) -> Self {
        ModemConfig {
            mode,
            port: port.into(),
            baud: 9600,
            model: None,
            apn: None,
            signal_every: Duration::from_secs(300),
            register_within: Duration::from_secs(180),
            psm: None,
            edrx: None,
            power: None,
            max_resets_per_day: 24,
            hosts: Vec::new(),
            ladder_gap: Duration::from_secs(30),
            set_clock: true,
        }
    }
}

/// Parse `[modem]`; `Some(None)` for `mode = "none"`, `None` when there were errors.
pub(crate) fn parse_modem(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
) -> Option<Option<ModemConfig>> {
    let mut ok = true;
    let mode_path = sec.key_path("mode");
    let mode = sec.string(d, "mode");
    let mode = match sec.required(d, "mode", "\"none\", \"os\" or \"socket\"", mode) {
        Field::Value(m, span) => {
            match m.as_str() {
                "none" => Some(None),
                "os" => Some(Some(ModemMode::Os)),
                "socket" => Some(Some(ModemMode::Socket)),
                other => {
                    d.error(
                    &mode_path,
                    Some(span),
                    format!("unknown modem mode {other:?} (expected \"none\", \"os\" or \"socket\")"),
                );
                    None
                }
            }
        }
        _ => None,
    };
    let none = matches!(mode, Some(None));
    let port = match sec.string(d, "port") {
        Field::Absent if none => Some(String::new()),
        Field::Absent => {
            sec.missing(d, "port", "the module's AT serial port");
            None
        }
        Field::Value(p, span) if p.trim().is_empty() => {
            d.error(
                &sec.key_path("port"),
                Some(span),
                "the port must not be empty",
            );
            None
        }
        f => f.or(String::new()),
    };
    let baud = match sec.int(d, "baud", 1, 10_000_000) {
        Field::Value(b, span) if !BAUD_RATES.contains(&(b as u32)) => {
            d.error(
                &sec.key_path("baud"),
                Some(span),
                format!("{b} is not a standard rate (use one of {BAUD_RATES:?})"),
            );
            None
        }
        f => f.or(9600).map(|b| b as u32),
    };
    let model_path = sec.key_path("model");
    let model_field = sec.string(d, "model");
    let model_span = model_field.span();
    let model = match model_field {
        Field::Value(m, _) if m == "auto" => Some(None),
        Field::Value(m, span) => {
            if profile::by_id(&m).is_some() {
                Some(Some(m))
            } else {
                let known: Vec<&str> = profile::PROFILES.iter().map(|p| p.id).collect();
                d.error(
                    &sec.key_path("model"),
                    Some(span),
                    format!(
                        "unknown modem model {:?} (expected \"auto\" or one of {})",
                        super::escape(&m),
                        known.join(", ")
                    ),
                );
                None
            }
        }
        f => f.opt().ok().map(|_| None),
    };
    let apn = match sec.string(d, "apn") {
        Field::Value(a, span) => {
            let valid = !a.is_empty()
                && a.len() <= MAX_APN
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if valid {
                Some(Some(a))
            } else {
                d.error(
                    &sec.key_path("apn"),
                    Some(span),
                    format!(
                        "invalid APN {:?}: 1 to {MAX_APN} letters, digits, '.' or '-'",
                        super::escape(&a)
                    ),
                );
                None
            }
        }
        f => f.opt().ok().map(|_| None),
    };
    let signal_every = sec
        .duration(d, "signal_every", MIN_SIGNAL_EVERY, MAX_SIGNAL_EVERY)
        .or(Duration::from_secs(300));
    let register_within = sec
        .duration(
            d,
            "register_within",
            MIN_REGISTER_WITHIN,
            MAX_REGISTER_WITHIN,
        )
        .or(Duration::from_secs(180));
    let psm = parse_psm(d, &mut sec);
    let edrx = match sec.duration(
        d,
        "edrx",
        Duration::from_millis(20_480),
        Duration::from_millis(10_485_760),
    ) {
        Field::Value(e, span) => match encode_edrx(e.as_millis() as u64) {
            Ok(_) => Some(Some(e)),
            Err(err) => {
                d.error(&sec.key_path("edrx"), Some(span), err.to_string());
                None
            }
        },
        f => f.or(Duration::ZERO).map(|_| None),
    };
    let max_resets_per_day = sec.int(d, "max_resets_per_day", 1, 240).or(24);
    let hosts = parse_hosts(d, &mut sec);
    let ladder_gap = sec
        .duration(
            d,
            "ladder_gap",
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )
        .or(Duration::from_secs(30));
    let set_clock = sec.boolean(d, "set_clock").or(true);
    let power = match sec.table(d, "power") {
        Field::Value(p, _) => parse_power(d, p).map(Some),
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    sec.finish(d, |_| None);
    if port.is_none() {
        ok = false;
    }
    let mode = mode?;
    let (port, baud, model, apn) = (port?, baud?, model?, apn?);
    let (signal_every, register_within, psm, edrx) = (signal_every?, register_within?, psm?, edrx?);
    let (max_resets_per_day, power, hosts, ladder_gap, set_clock) =
        (max_resets_per_day?, power?, hosts?, ladder_gap?, set_clock?);
    if !ok {
        return None;
    }
    let Some(mode) = mode else {
        return Some(None);
    };
    if let (ModemMode::Socket, Some(id)) = (mode, &model) {
        let dialect = profile::by_id(id).map(|p| p.socket);
        let why = match dialect {
            Some(profile::SocketDialect::None) => Some("has no AT socket commands"),
            _ => None,
        };
        if let Some(why) = why {
            d.error(
                &model_path,
                model_span,
                format!("model {id:?} {why}: use mode = \"os\" (PPP or the OS's driver owns the data path)"),
            );
            return None;
        }
    }
    Some(Some(ModemConfig {
        mode,
        port,
        baud,
        model,
        apn,
        signal_every,
        register_within,
        psm,
        edrx,
        power,
        max_resets_per_day: max_resets_per_day as u32,
        hosts,
        ladder_gap,
        set_clock,
    }))
}

/// Most `hosts` entries.
pub const MAX_HOSTS: usize = 16;

/// `hosts = ["<address> <name>", ...]`: /etc/hosts-like lines, one name each.
fn parse_hosts(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
) -> Option<Vec<(String, std::net::IpAddr)>> {
    let path = sec.key_path("hosts");
    let items = match sec.strings_spanned(d, "hosts") {
        Field::Value(items, _) => items,
        Field::Absent => return Some(Vec::new()),
        Field::Invalid => return None,
    };
    let mut ok = true;
    let mut out = Vec::new();
    if items.len() > MAX_HOSTS {
        d.error(
            &path,
            sec.value_span("hosts"),
            format!("{} entries: at most {MAX_HOSTS}", items.len()),
        );
        return None;
    }
    for (i, (text, span)) in items.iter().enumerate() {
        let mut parts = text.split_whitespace();
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(addr), Some(name), None) => addr
                .parse::<std::net::IpAddr>()
                .ok()
                .filter(|_| !name.is_empty() && name.len() <= 253 && !name.contains(':'))
                .map(|ip| (name.to_string(), ip)),
            _ => None,
        };
        match parsed {
            Some(e) => out.push(e),
            None => {
                d.error(
                    &format!("{path}[{i}]"),
                    Some(span.clone()),
                    format!(
                        "{:?}: expected \"<IP address> <host name>\", e.g. \"203.0.113.7 broker.example.net\"",
                        super::escape(text)
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `psm_tau` + `psm_active`, both or neither; each must be encodable as a GPRS timer.
fn parse_psm(d: &mut Diags<'_>, sec: &mut Section<'_, '_>) -> Option<Option<PsmRequest>> {
    // T3412 extended: up to 31 x 320 h; T3324: up to 31 x 6 min.
    let tau = sec.duration(
        d,
        "psm_tau",
        Duration::from_secs(60),
        Duration::from_secs(31 * 1_152_000),
    );
    let active = sec.duration(
        d,
        "psm_active",
        Duration::ZERO,
        Duration::from_secs(31 * 360),
    );
    let (tau_span, active_span) = (tau.span(), active.span());
    let (tau, active) = match (tau.opt(), active.opt()) {
        (Ok(t), Ok(a)) => (t, a),
        _ => return None,
    };
    match (tau, active) {
        (None, None) => Some(None),
        (Some(_), None) => {
            d.error(
                &sec.key_path("psm_active"),
                tau_span,
                "psm_tau is set without psm_active: set both or neither",
            );
            None
        }
        (None, Some(_)) => {
            d.error(
                &sec.key_path("psm_tau"),
                active_span,
                "psm_active is set without psm_tau: set both or neither",
            );
            None
        }
        (Some(tau), Some(active)) => {
            let t = encode_t3412(Timer::Seconds(tau.as_secs()));
            let a = encode_t3324(Timer::Seconds(active.as_secs()));
            if let Err(e) = &t {
                d.error(&sec.key_path("psm_tau"), tau_span, e.to_string());
            }
            if let Err(e) = &a {
                d.error(
                    &sec.key_path("psm_active"),
                    active_span.clone(),
                    e.to_string(),
                );
            }
            if active >= tau {
                d.error(
                    &sec.key_path("psm_active"),
                    active_span,
                    "psm_active must be shorter than psm_tau",
                );
                return None;
            }
            (t.is_ok() && a.is_ok()).then_some(Some(PsmRequest { tau, active }))
        }
    }
}

/// `[modem.power]`: a GPIO line or a command.
fn parse_power(d: &mut Diags<'_>, mut sec: Section<'_, '_>) -> Option<PowerConfig> {
    let chip = sec.string(d, "gpio_chip");
    let chip_span = chip.span();
    let line = sec.int(d, "gpio_line", 0, MAX_GPIO_LINE);
    let line_span = line.span();
    let active_low = sec.boolean(d, "active_low");
    let active_low_span = active_low.span();
    let command = sec.strings_spanned(d, "command");
    let command_span = command.span();
    let off_for = sec
        .duration(d, "off_for", MIN_OFF_FOR, MAX_OFF_FOR)
        .or(Duration::from_secs(2));
    let max = sec.int(d, "max_power_cycles_per_day", 1, 48).or(6);
    let path = sec.path.clone();
    let span = sec.span.clone();
    sec.finish(d, |_| None);
    let (chip, line, active_low, command) = (
        chip.opt().ok()?,
        line.opt().ok()?,
        active_low.opt().ok()?,
        command.opt().ok()?,
    );
    let switch = match (chip, line, command) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            d.error(
                &format!("{path}.command"),
                command_span,
                "give either gpio_chip + gpio_line or command, not both",
            );
            return None;
        }
        (Some(chip), Some(line), None) => {
            if chip.trim().is_empty() || chip.contains('\0') {
                d.error(
                    &format!("{path}.gpio_chip"),
                    chip_span,
                    "the GPIO chip must be a device path such as /dev/gpiochip0",
                );
                return None;
            }
            let chip = if chip.starts_with('/') {
                PathBuf::from(chip)
            } else {
                PathBuf::from("/dev").join(chip)
            };
            PowerSwitch::Gpio {
                chip,
                line: line as u32,
                active_low: active_low.unwrap_or(false),
            }
        }
        (Some(_), None, None) => {
            d.error(
                &format!("{path}.gpio_line"),
                chip_span,
                "gpio_chip is set without gpio_line",
            );
            return None;
        }
        (None, Some(_), None) => {
            d.error(
                &format!("{path}.gpio_chip"),
                line_span,
                "gpio_line is set without gpio_chip",
            );
            return None;
        }
        (None, None, Some(words)) => {
            if active_low.is_some() {
                d.error(
                    &format!("{path}.active_low"),
                    active_low_span,
                    "active_low applies to a GPIO line, not to a command",
                );
                return None;
            }
            let first = words.first().map(|(w, sp)| (w.clone(), sp.clone()));
            match first {
                None => {
                    d.error(
                        &format!("{path}.command"),
                        command_span,
                        "the command is empty: give the program's absolute path first",
                    );
                    return None;
                }
                Some((program, sp)) if !program.starts_with('/') => {
                    d.error(
                        &format!("{path}.command[0]"),
                        Some(sp),
                        format!(
                            "{:?} is not an absolute program path",
                            super::escape(&program)
                        ),
                    );
                    return None;
                }
                Some(_) if words.len() > MAX_COMMAND_WORDS => {
                    d.error(
                        &format!("{path}.command"),
                        command_span,
                        format!("{} words: at most {MAX_COMMAND_WORDS}", words.len()),
                    );
                    return None;
                }
                Some(_) => PowerSwitch::Command(words.into_iter().map(|(w, _)| w).collect()),
            }
        }
        (None, None, None) => {
            d.error(
                &path,
                span,
                "give gpio_chip + gpio_line, or command = [\"/path\", ...]",
            );
            return None;
        }
    };
    Some(PowerConfig {
        switch,
        off_for: off_for?,
        max_power_cycles_per_day: max? as u32,
    })
}

#[cfg(test)]
#[path = "modem_tests.rs"]
mod tests;
