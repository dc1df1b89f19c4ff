//! `[alarms.<id>]`: alarm rules, validated against the devices and points they name (a glob
//! device expands to every device with that point). Errors carry key paths like every other
//! section; the result is `alarm::AlarmRule`s. Semantics: docs/alarms.md. No I/O.

use std::time::Duration;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::points;
use super::DeviceConfig;
use crate::alarm::rule::{glob_match, AlarmRule, Level, RuleKind, Severity};

const KINDS: &str = "limit, rate, bit, offline or stuck";
const DAY: Duration = Duration::from_secs(86400);

/// Keys only some kinds accept, for the "not allowed here" hint.
fn hint(key: &str) -> Option<String> {
    let kinds = match key {
        "hh" | "h" | "l" | "ll" => "limit",
        "deadband" => "limit and rate",
        "rate" | "window" => "rate",
        "active" => "bit",
        "after" | "tolerance" => "stuck",
        "point" => "every kind but offline",
        _ => return None,
    };
    Some(format!("only for kind = {kinds}"))
}

/// Longest message template (bytes).
pub const TEMPLATE_MAX: usize = 256;
/// Longest a template may expand to with the longest names, units and numbers it can be
/// filled with (bytes): with the other fields an alarm message stays within the default
/// 1024-byte payload (docs/alarms.md).
pub const MESSAGE_MAX: usize = 256;

/// Bound a message template: its own length, and its worst-case expansion, rendered by the
/// engine's own `render` with the longest matched device name, the point, the longest unit of
/// that point on the matched devices, numbers of `NUM_TEXT_MAX` characters, level `hh` and
/// state `cleared`.
fn check_template(
    t: &str,
    rule: &str,
    resolved: &[String],
    point: Option<&str>,
    devices: &[DeviceConfig],
) -> Result<(), String> {
    use crate::alarm::rule::{render, NUM_TEXT_MAX};
    if t.len() > TEMPLATE_MAX {
        return Err(format!(
            "message template is {} bytes, more than {TEMPLATE_MAX}: shorten it",
            t.len()
        ));
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(format!(
            "message template contains the control character {}: alarm messages reach \
             operators' screens and the journal as text",
            c.escape_debug()
        ));
    }
    let device = resolved
        .iter()
        .max_by_key(|n| n.len())
        .cloned()
        .unwrap_or_default();
    let unit = point
        .map(|p| {
            resolved
                .iter()
                .filter_map(|n| devices.iter().find(|x| &x.name == n))
                .filter_map(|dev| {
                    dev.points
                        .iter()
                        .find(|x| x.name == p)
                        .and_then(|x| x.unit.clone())
                        .or_else(|| {
                            dev.computed
                                .iter()
                                .find(|c| c.name == p)
                                .and_then(|c| c.unit.clone())
                        })
                })
                .max_by_key(|u| u.len())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let num = "9".repeat(NUM_TEXT_MAX);
    let worst = render(
        t,
        &[
            ("rule", rule.to_string()),
            ("device", device.clone()),
            ("point", point.unwrap_or_default().to_string()),
            ("value", num.clone()),
            ("limit", num),
            ("unit", unit.clone()),
            ("level", "hh".into()),
            ("state", "cleared".into()),
        ],
    );
    if worst.len() > MESSAGE_MAX {
        return Err(format!(
            "message can expand to {} bytes, more than {MESSAGE_MAX} (device names up to {} \
             bytes, unit up to {} bytes, numbers up to {NUM_TEXT_MAX}): shorten the template",
            worst.len(),
            device.len(),
            unit.len()
        ));
    }
    Ok(())
}

fn has_point(dev: &DeviceConfig, point: &str) -> bool {
    dev.points.iter().any(|p| p.name == point) || dev.computed.iter().any(|c| c.name == point)
}

pub(crate) fn parse_alarms(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    devices: &[DeviceConfig],
) -> Vec<AlarmRule> {
    let mut out = Vec::new();
    for (id, entry) in sec.named_tables(d) {
        if let Some(r) = parse_rule(d, &id, entry, devices) {
            out.push(r);
        }
    }
    sec.finish(d, |_| None);
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn parse_rule(
    d: &mut Diags<'_>,
    id: &str,
    mut sec: Section<'_, '_>,
    devices: &[DeviceConfig],
) -> Option<AlarmRule> {
    let mut ok = true;
    if !points::valid_name(id) {
        d.error(
            &sec.path,
            sec.span.clone(),
            format!("invalid alarm id {id:?}: use 1 to 64 of A-Z a-z 0-9 _ -"),
        );
        ok = false;
    }
    let f = sec.string(d, "kind");
    let kind_name = match sec.required(d, "kind", KINDS, f) {
        Field::Value(k, sp) => match k.as_str() {
            "limit" | "rate" | "bit" | "offline" | "stuck" => Some(k),
            _ => {
                d.error(
                    &sec.key_path("kind"),
                    Some(sp),
                    format!("unknown alarm kind {k:?}: use {KINDS}"),
                );
                None
            }
        },
        _ => None,
    };
    let f = sec.string(d, "device");
    let device = sec
        .required(
            d,
            "device",
            "a device name, a glob like \"pt*\", or \"*\"",
            f,
        )
        .opt()
        .ok()
        .flatten();
    let device_span = None::<std::ops::Range<usize>>;
    let offline = kind_name.as_deref() == Some("offline");
    let point = if offline {
        None
    } else {
        let f = sec.string(d, "point");
        match sec.required(d, "point", "the point the rule watches", f) {
            Field::Value(p, sp) => Some((p, sp)),
            _ => {
                ok = false;
                None
            }
        }
    };
    let severity = {
        let f = sec.string(d, "severity");
        match sec.required(d, "severity", "critical, major, minor or warning", f) {
            Field::Value(s, sp) => match Severity::parse(&s) {
                Some(v) => Some(v),
                None => {
                    d.error(
                        &sec.key_path("severity"),
                        Some(sp),
                        format!("unknown severity {s:?}: use critical, major, minor or warning"),
                    );
                    None
                }
            },
            _ => None,
        }
    };
    let on_delay = sec
        .duration(d, "on_delay", Duration::ZERO, DAY)
        .or(Duration::ZERO);
    let off_delay = sec
        .duration(d, "off_delay", Duration::ZERO, DAY)
        .or(Duration::ZERO);
    let mut message_span = None;
    let message = match sec.string(d, "message") {
        Field::Value(m, sp) => {
            message_span = Some(sp);
            Some(Some(m))
        }
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    let latched = sec.boolean(d, "latched").or(false);
    // Interlock: `action = { point = "valve_close", value = 1, cooldown = "10m" }`.
    let action_field = match sec.table(d, "action") {
        Field::Value(mut a, sp) => {
            let point = match a.string(d, "point") {
                Field::Value(p, psp) => Some((p, psp)),
                Field::Absent => {
                    d.error(
                        &a.key_path("point"),
                        Some(sp.clone()),
                        "missing: the writable point to write",
                    );
                    None
                }
                Field::Invalid => None,
            };
            let value = match a.float(d, "value") {
                Field::Value(v, _) => Some(v),
                Field::Absent => {
                    d.error(
                        &a.key_path("value"),
                        Some(sp.clone()),
                        "missing: the value to write",
                    );
                    None
                }
                Field::Invalid => None,
            };
            let cooldown = a
                .duration(d, "cooldown", Duration::ZERO, DAY)
                .or(Duration::from_secs(600));
            let path = a.path.clone();
            a.finish(d, |_| None);
            match (point, value, cooldown) {
                (Some((p, psp)), Some(v), Some(c)) => Some(Some((p, psp, v, c, path, sp))),
                _ => None,
            }
        }
        Field::Absent => Some(None),
        Field::Invalid => None,
    };

    let nonneg = |sec: &mut Section<'_, '_>, d: &mut Diags<'_>, key: &str| -> Option<f64> {
        match sec.float(d, key) {
            Field::Value(x, sp) if x < 0.0 => {
                d.error(
                    &sec.key_path(key),
                    Some(sp),
                    format!("{x} must not be negative"),
                );
                None
            }
            f => f.or(0.0),
        }
    };
    let kind = match kind_name.as_deref() {
        Some("limit") => {
            let mut levels = Vec::new();
            let mut bad = false;
            for l in Level::ALL {
                match sec.float(d, l.key()) {
                    Field::Value(x, sp) => levels.push((l, x, sp)),
                    Field::Invalid => bad = true,
                    Field::Absent => {}
                }
            }
            let deadband = nonneg(&mut sec, d, "deadband");
            if levels.is_empty() && !bad {
                d.error(
                    &sec.path,
                    sec.span.clone(),
                    "a limit rule needs at least one of hh, h, l, ll",
                );
                bad = true;
            }
            // hh > h > l > ll where given.
            for w in levels.windows(2) {
                let ((a, x, _), (b, y, sp)) = (&w[0], &w[1]);
                if x <= y {
                    d.error(
                        &sec.key_path(b.key()),
                        Some(sp.clone()),
                        format!(
                            "limits must descend hh > h > l > ll: {} = {y} is not below {} = {x}",
                            b.key(),
                            a.key()
                        ),
                    );
                    bad = true;
                }
            }
            match (bad, deadband) {
                (false, Some(deadband)) => Some(RuleKind::Limit {
                    levels: levels.into_iter().map(|(l, x, _)| (l, x)).collect(),
                    deadband,
                }),
                _ => None,
            }
        }
        Some("rate") => {
            let f = sec.float(d, "rate");
            let change = match sec.required(d, "rate", "change per window, negative = falling", f) {
                Field::Value(0.0, sp) => {
                    d.error(&sec.key_path("rate"), Some(sp), "must not be 0");
                    None
                }
                f => f.opt().ok().flatten(),
            };
            let f = sec.duration(d, "window", Duration::from_secs(1), DAY);
            let window = sec
                .required(
                    d,
                    "window",
                    "the window the rate is measured over, e.g. \"1m\"",
                    f,
                )
                .opt()
                .ok()
                .flatten();
            let deadband = nonneg(&mut sec, d, "deadband");
            match (change, window, deadband) {
                (Some(change), Some(window), Some(deadband)) => Some(RuleKind::Rate {
                    change,
                    window,
                    deadband,
                }),
                _ => None,
            }
        }
        Some("bit") => sec
            .boolean(d, "active")
            .or(true)
            .map(|active| RuleKind::Bit { active }),
        Some("offline") => Some(RuleKind::Offline),
        Some("stuck") => {
            let f = sec.duration(d, "after", Duration::from_secs(1), DAY * 365);
            let after = sec
                .required(
                    d,
                    "after",
                    "how long an unchanged value means frozen, e.g. \"2h\"",
                    f,
                )
                .opt()
                .ok()
                .flatten();
            let tolerance = nonneg(&mut sec, d, "tolerance");
            match (after, tolerance) {
                (Some(after), Some(tolerance)) => Some(RuleKind::Stuck { after, tolerance }),
                _ => None,
            }
        }
        _ => None,
    };
    let path = sec.path.clone();
    let span = sec.span.clone();
    sec.finish(d, hint);

    // Resolve the devices (and check the point on each).
    let device = device?;
    let point_name = point.as_ref().map(|(p, _)| p.clone());
    let mut resolved = Vec::new();
    if device.contains('*') {
        for dev in devices.iter().filter(|x| glob_match(&device, &x.name)) {
            if point_name.as_deref().is_none_or(|p| has_point(dev, p)) {
                resolved.push(dev.name.clone());
            }
        }
        if resolved.is_empty() {
            let what = match &point_name {
                Some(p) => format!("no device matching {device:?} has a point `{p}`"),
                None => format!("no device matches {device:?}"),
            };
            d.error(
                &format!("{path}.device"),
                span.clone().or(device_span),
                what,
            );
            return None;
        }
    } else {
        match devices.iter().find(|x| x.name == device) {
            None => {
                d.error(
                    &format!("{path}.device"),
                    span.clone(),
                    format!("no device `{device}` in [devices]"),
                );
                return None;
            }
            Some(dev) => {
                if let Some((p, sp)) = &point {
                    if !has_point(dev, p) {
                        let mut names: Vec<&str> = dev
                            .points
                            .iter()
                            .map(|x| x.name.as_str())
                            .chain(dev.computed.iter().map(|c| c.name.as_str()))
                            .collect();
                        names.sort();
                        d.error(
                            &format!("{path}.point"),
                            Some(sp.clone()),
                            format!(
                                "device `{device}` has no point `{p}` (it has: {})",
                                names.join(", ")
                            ),
                        );
                        return None;
                    }
                }
                resolved.push(dev.name.clone());
            }
        }
    }
    // The message must fit an MQTT alarm message whatever fills it in.
    if let (Some(Some(t)), Some(sp)) = (&message, &message_span) {
        if let Err(why) = check_template(t, id, &resolved, point_name.as_deref(), devices) {
            d.error(&format!("{path}.message"), Some(sp.clone()), why);
            ok = false;
        }
    }
    // An interlock acts only on value alarms (never on comm loss or a frozen sensor: stale
    // data), and only on a point every matched device has and declares writable.
    let mut action = None;
    if let Some(Some((p, psp, v, c, path, sp))) = &action_field {
        if matches!(kind_name.as_deref(), Some("offline") | Some("stuck")) {
            d.error(
                path,
                Some(sp.clone()),
                "an action runs only on limit, rate or bit alarms, never on comm loss or stale data",
            );
            ok = false;
        }
        for device in &resolved {
            let Some(dev) = devices.iter().find(|x| &x.name == device) else {
                continue;
            };
            match dev.points.iter().find(|x| &x.name == p) {
                Some(pt) if pt.writable => {}
                Some(_) => {
                    d.error(
                        &format!("{path}.point"),
                        Some(psp.clone()),
                        format!("point `{p}` of device `{device}` is not writable (declare it `writable = true`)"),
                    );
                    ok = false;
                }
                None => {
                    d.error(
                        &format!("{path}.point"),
                        Some(psp.clone()),
                        format!("device `{device}` has no point `{p}`"),
                    );
                    ok = false;
                }
            }
        }
        action = Some(crate::alarm::rule::Action {
            point: p.clone(),
            value: *v,
            cooldown: *c,
        });
    }
    if action_field.is_none() {
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(AlarmRule {
        id: id.to_string(),
        devices: resolved,
        point: point_name,
        kind: kind?,
        on_delay: on_delay?,
        off_delay: off_delay?,
        severity: severity?,
        message: message?,
        latched: latched?,
        action,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::alarm::{Level, RuleKind, Severity};
    use crate::config::{parse_str, ConfigError, Loaded};

    fn doc(alarms: &str) -> String {
        format!(
            r#"[gateway]
id = "gw-1"
profile_dirs = []

[buses.t]
kind = "tcp"
host = "127.0.0.1"

[devices.pt1]
bus = "t"
unit = 1
profile = "pt-float"

[devices.pt2]
bus = "t"
unit = 2
profile = "pt-float"

[devices.evc1]
bus = "t"
unit = 3
profile = "evc-dcba"

{alarms}"#
        )
    }

    fn parse(alarms: &str) -> Result<Loaded, Vec<ConfigError>> {
        parse_str(&doc(alarms), "test.toml", Path::new("/nonexistent"))
    }

    #[test]
    fn every_kind_parses_and_globs_expand() {
        let l = parse(
            r#"
[alarms.p_high]
device = "pt*"
point = "pressure"
kind = "limit"
hh = 800
h = 700.5
l = 200
deadband = 10
on_delay = "10s"
off_delay = "30s"
severity = "critical"
message = "{device} {point} {value} {unit} over {limit}"
latched = true

[alarms.line_break]
device = "evc1"
point = "pressure"
kind = "rate"
rate = -50
window = "1m"
severity = "major"

[alarms.tamper]
device = "*"
point = "status_tamper"
kind = "bit"
severity = "minor"

[alarms.comm]
device = "*"
kind = "offline"
severity = "critical"

[alarms.frozen]
device = "pt1"
point = "pressure"
kind = "stuck"
after = "2h"
tolerance = 0.01
severity = "warning"
"#,
        )
        .unwrap_or_else(|e| panic!("{e:#?}"));
        let a = &l.config.alarms;
        let ids: Vec<&str> = a.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["comm", "frozen", "line_break", "p_high", "tamper"]);
        assert_eq!(a[0].devices, ["evc1", "pt1", "pt2"]);
        assert_eq!(a[0].kind, RuleKind::Offline);
        assert_eq!(a[0].point, None);
        let p = &a[3];
        assert_eq!(p.devices, ["pt1", "pt2"]);
        assert_eq!(
            p.kind,
            RuleKind::Limit {
                levels: vec![
                    (Level::HighHigh, 800.0),
                    (Level::High, 700.5),
                    (Level::Low, 200.0)
                ],
                deadband: 10.0
            }
        );
        assert_eq!(p.on_delay.as_secs(), 10);
        assert_eq!(p.off_delay.as_secs(), 30);
        assert!(p.latched);
        assert_eq!(p.severity, Severity::Critical);
        assert_eq!(a[4].devices, ["evc1"], "only the device with that point");
        assert!(matches!(a[2].kind, RuleKind::Rate { change, .. } if change == -50.0));
        assert!(matches!(a[1].kind, RuleKind::Stuck { tolerance, .. } if tolerance == 0.01));
    }

    /// Issue 9 item 1: the bound is on the worst case, placed at the template's line:col; a
    /// template that fits at its worst passes.
    #[test]
    fn message_templates_are_bounded_by_their_worst_case() {
        let rule = |msg: &str| {
            format!("[alarms.a]\ndevice = \"pt*\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nseverity = \"major\"\nmessage = \"{msg}\"\n")
        };
        let ok = "{rule} {device} {point} {value} {unit} beyond {level} limit {limit} ({state})";
        parse(&rule(ok)).unwrap_or_else(|e| panic!("{e:#?}"));
        // 9.6 kB of template output from the tester's report.
        let errs = parse(&rule(&"{device} ".repeat(1100))).unwrap_err();
        let e = errs
            .iter()
            .find(|e| e.path == "alarms.a.message")
            .expect("message error");
        assert!(e.message.contains("more than 256"), "{e:?}");
        let text = doc(&rule("x"));
        let want_line = text
            .lines()
            .position(|l| l.starts_with("message ="))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(want_line), "{e:?}");
        assert!(e.column.is_some());
        // Exactly at the bound passes, one byte more does not (no placeholders: exact).
        parse(&rule(&"x".repeat(256))).unwrap_or_else(|e| panic!("{e:#?}"));
        assert!(parse(&rule(&"x".repeat(257))).is_err());
    }

    #[test]
    fn errors_have_key_paths() {
        let rule = |msg: &str| {
            format!("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nseverity = \"major\"\nmessage = \"{msg}\"\n")
        };
        let long_template = rule(&"x".repeat(300));
        // 250 bytes of template, but every {value} can be 24 characters.
        let expanding = rule(&"{value}".repeat(35));
        let escape = rule("high\\u001b[2J {value}");
        let cases: &[(&str, &str, &str)] = &[
            ("[alarms.a]\ndevice = \"nope\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 1\nseverity = \"major\"\n", "alarms.a.device", "no device `nope`"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"flow\"\nkind = \"limit\"\nh = 1\nseverity = \"major\"\n", "alarms.a.point", "has no point `flow`"),
            ("[alarms.a]\ndevice = \"x*\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 1\nseverity = \"major\"\n", "alarms.a.device", "no device matching"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"level\"\nseverity = \"major\"\n", "alarms.a.kind", "unknown alarm kind"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nseverity = \"major\"\n", "alarms.a", "at least one of hh, h, l, ll"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nhh = 4\nseverity = \"major\"\n", "alarms.a.h", "must descend"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nseverity = \"urgent\"\n", "alarms.a.severity", "unknown severity"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\n", "alarms.a.severity", "missing required key `severity`"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\ndeadband = -1\nseverity = \"major\"\n", "alarms.a.deadband", "must not be negative"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nwindow = \"1m\"\nseverity = \"major\"\n", "alarms.a.window", "only for kind = rate"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"rate\"\nrate = 0\nwindow = \"1m\"\nseverity = \"major\"\n", "alarms.a.rate", "must not be 0"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"rate\"\nrate = 5\nseverity = \"major\"\n", "alarms.a.window", "missing required key `window`"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"stuck\"\nseverity = \"major\"\n", "alarms.a.after", "missing required key `after`"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"offline\"\nseverity = \"major\"\n", "alarms.a.point", "only for kind = every kind but offline"),
            ("[alarms.a]\ndevice = \"pt1\"\nkind = \"bit\"\nseverity = \"major\"\n", "alarms.a.point", "missing required key `point`"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"bit\"\non_delay = \"soon\"\nseverity = \"major\"\n", "alarms.a.on_delay", "invalid duration"),
            ("[alarms.\"a b\"]\ndevice = \"pt1\"\nkind = \"offline\"\nseverity = \"major\"\n", "alarms.a b", "invalid alarm id"),
            ("[alarms.a]\ndevice = \"pt1\"\nkind = \"offline\"\nseverity = \"major\"\ncolour = 1\n", "alarms.a.colour", "unknown key"),
            // Interlocks: only writable points, never on comm loss or stale data.
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nseverity = \"major\"\naction = { point = \"temperature\", value = 1 }\n", "alarms.a.action.point", "is not writable"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nseverity = \"major\"\naction = { point = \"valve\", value = 1 }\n", "alarms.a.action.point", "has no point `valve`"),
            ("[alarms.a]\ndevice = \"pt1\"\nkind = \"offline\"\nseverity = \"major\"\naction = { point = \"temperature\", value = 1 }\n", "alarms.a.action", "never on comm loss"),
            ("[alarms.a]\ndevice = \"pt1\"\npoint = \"pressure\"\nkind = \"limit\"\nh = 5\nseverity = \"major\"\naction = { point = \"temperature\" }\n", "alarms.a.action.value", "missing: the value"),
            // Issue 9: a template must fit an alarm message, whatever fills it in.
            (&long_template, "alarms.a.message", "message template is 300 bytes, more than 256"),
            (&expanding, "alarms.a.message", "message can expand to"),
            (&escape, "alarms.a.message", "control character \\u{1b}"),
        ];
        for (text, path, msg) in cases {
            let errs = match parse(text) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e,
            };
            assert!(
                errs.iter()
                    .any(|e| e.path == *path && e.message.contains(msg)),
                "{text}\nwant {path}: {msg}\ngot {errs:#?}"
            );
        }
    }
}
