//! The alarm rule model: what `[alarms.<id>]` tables resolve to after validation (devices
//! expanded from globs, points checked against the device). Plain data; the config module
//! parses into it and the engine evaluates it. docs/alarms.md and docs/config.md describe it.

use std::fmt;
use std::time::Duration;

/// Severity, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "critical" => Severity::Critical,
            "major" => Severity::Major,
            "minor" => Severity::Minor,
            "warning" => Severity::Warning,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One limit level of a `limit` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    HighHigh,
    High,
    Low,
    LowLow,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::HighHigh, Level::High, Level::Low, Level::LowLow];

    /// The config key and the `level` field of the alarm message.
    pub fn key(self) -> &'static str {
        match self {
            Level::HighHigh => "hh",
            Level::High => "h",
            Level::Low => "l",
            Level::LowLow => "ll",
        }
    }

    pub fn is_high(self) -> bool {
        matches!(self, Level::HighHigh | Level::High)
    }
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Up to four limits, each with the rule's deadband.
    Limit {
        levels: Vec<(Level, f64)>,
        deadband: f64,
    },
    /// Change over `window` beyond `change` (negative: falling faster than |change|).
    Rate {
        change: f64,
        window: Duration,
        deadband: f64,
    },
    /// A status bit (any non-zero value) equal to `active` raises.
    Bit { active: bool },
    /// The device is offline (acquisition's `offline_after` failed cycles).
    Offline,
    /// The value did not move by more than `tolerance` for `after` (frozen sensor).
    Stuck { after: Duration, tolerance: f64 },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Limit { .. } => "limit",
            RuleKind::Rate { .. } => "rate",
            RuleKind::Bit { .. } => "bit",
            RuleKind::Offline => "offline",
            RuleKind::Stuck { .. } => "stuck",
        }
    }
}

/// A validated alarm rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRule {
    /// The `<id>` of `[alarms.<id>]`.
    pub id: String,
    /// Concrete device names (a glob or "*" is expanded at validation).
    pub devices: Vec<String>,
    /// The watched point; `None` for `offline`.
    pub point: Option<String>,
    pub kind: RuleKind,
    pub on_delay: Duration,
    pub off_delay: Duration,
    pub severity: Severity,
    /// Template with {rule} {device} {point} {value} {limit} {unit} {level} {state}.
    pub message: Option<String>,
    pub latched: bool,
    /// Interlock (opt-in): write this writable point of the same device once per raise.
    pub action: Option<Action>,
}

/// An interlock: on each raise of its rule (from fresh, good data), write `value` to the
/// writable `point` of the device that raised, at most once per `cooldown`, read it back and
/// report the result as an `interlock` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub point: String,
    pub value: f64,
    pub cooldown: Duration,
}

/// `*` matches any run of characters (the only wildcard).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.len() >= p.len() && rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Longest text of a `{value}` or `{limit}` in a message (`num_text`).
pub const NUM_TEXT_MAX: usize = 24;

/// A number as a message shows it: plain decimal, or the shortest exponent form when the
/// decimal is longer than `NUM_TEXT_MAX` (1e300 prints 301 digits in decimal), so a device's
/// value can never blow a message up.
pub fn num_text(v: f64) -> String {
    // The decimal the value stands for (a raw f32 reading 4.2, not 4.199999809265137).
    let v = crate::decimal::meant(v);
    let s = v.to_string();
    if s.len() <= NUM_TEXT_MAX {
        s
    } else {
        format!("{v:e}")
    }
}

/// Fill a message template.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "pt1", true),
            ("pt*", "pt1", true),
            ("pt*", "evc1", false),
            ("*1", "pt1", true),
            ("p*1", "pt1", true),
            ("p*x*1", "pt1", false),
            ("pt1", "pt1", true),
            ("pt1", "pt10", false),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn numbers_in_messages_are_bounded() {
        for (v, want) in [
            (900.0, "900"),
            (-0.25, "-0.25"),
            (1e300, "1e300"),
            (-1e-300, "-1e-300"),
            (f64::MAX, "1.7976931348623157e308"),
            (-f64::MIN_POSITIVE, "-2.2250738585072014e-308"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
            // A raw f32 reading reads as the meter shows it.
            (f64::from(4.2f32), "4.2"),
        ] {
            let t = num_text(v);
            assert_eq!(t, want);
            assert!(t.len() <= NUM_TEXT_MAX, "{t}");
        }
    }

    #[test]
    fn templates() {
        let s = render(
            "{device} {point} = {value} {unit} over {limit}",
            &[
                ("device", "pt1".into()),
                ("point", "pressure".into()),
                ("value", "900".into()),
                ("unit", "kPa".into()),
                ("limit", "700".into()),
            ],
        );
        assert_eq!(s, "pt1 pressure = 900 kPa over 700");
    }
}
