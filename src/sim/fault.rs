//! Fault injection for the simulator: rules of the form "with probability p, misbehave like
//! this" for one unit or for all, the parser of their command-line spelling, and the seeded
//! dice that pick a fault for each request. Pure apart from the PRNG state.
//!
//! Spelling: `[UNIT:]KIND[=PROBABILITY][:ARG]`, e.g. `crc=0.1`, `slow=0.2:800ms`,
//! `exception=0.05:6`, `2:timeout=0.5`, `3:dead`. Kinds: `timeout` (no reply to this request),
//! `crc` (corrupted CRC on RTU, lying MBAP length field on TCP), `exception[:CODE]` (default 4),
//! `garbage` (random bytes instead of, or before, the reply), `slow:DURATION` (reply late),
//! `dead` (never answers), and the lying devices: `short` (a read reply one register, or one
//! byte of bits, short, with a consistent byte count and length), `wrong-tid` (MBAP reply
//! with another transaction id; RTU has none and replies normally), `trailing` (a read reply
//! with two bytes after its data, counted by the MBAP length field, covered by the RTU CRC),
//! `wrong-unit` (reply from
//! another unit id), `wrong-function` (reply under another function code), `flood[:BYTES]`
//! (that many random bytes instead of the reply, default 4096, at most 1 MiB). An exception
//! with an invalid code is `exception:255`. The probability defaults to 1.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// One way to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// No reply to this request.
    Timeout,
    /// Reply with a corrupted CRC (RTU) or a lying length field (MBAP).
    Crc,
    /// Reply with this exception code instead of the data.
    Exception(u8),
    /// Random bytes instead of, or in front of, the reply.
    Garbage,
    /// Reply after this extra delay.
    Slow(Duration),
    /// Never answer.
    Dead,
    /// A read reply one register (or one byte of bits) short, byte count and length
    /// consistent with the short data.
    Short,
    /// An MBAP reply carrying another transaction id (no effect on RTU framing).
    WrongTid,
    /// A read reply with two bytes after its data, inside the frame (MBAP length, RTU CRC).
    Trailing,
    /// A reply from another unit id.
    WrongUnit,
    /// A reply under another function code (same body).
    WrongFunction,
    /// This many random bytes instead of the reply.
    Flood(usize),
}

/// Default and largest size of the `flood` fault, in bytes.
pub const FLOOD_DEFAULT: usize = 4096;
pub const FLOOD_MAX: usize = 1 << 20;

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Timeout => f.write_str("timeout"),
            FaultKind::Crc => f.write_str("crc"),
            FaultKind::Exception(c) => write!(f, "exception:{c}"),
            FaultKind::Garbage => f.write_str("garbage"),
            FaultKind::Slow(d) => write!(f, "slow:{}", humantime::format_duration(*d)),
            FaultKind::Dead => f.write_str("dead"),
            FaultKind::Short => f.write_str("short"),
            FaultKind::WrongTid => f.write_str("wrong-tid"),
            FaultKind::Trailing => f.write_str("trailing"),
            FaultKind::WrongUnit => f.write_str("wrong-unit"),
            FaultKind::WrongFunction => f.write_str("wrong-function"),
            FaultKind::Flood(n) => write!(f, "flood:{n}"),
        }
    }
}

/// A fault with its probability, for one unit or (`unit: None`) for every unit.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub unit: Option<u8>,
    pub kind: FaultKind,
    /// 0.0..=1.0
    pub probability: f64,
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = self.unit {
            write!(f, "unit {u}: ")?;
        }
        write!(f, "{} with p={}", self.kind, self.probability)
    }
}

/// Why a fault spelling was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FaultParseError {
    /// Occurs for a fault name that is not one of the kinds.
    #[error("fault `{spec}`: unknown kind `{kind}` (expected timeout, crc, exception, garbage, slow, dead, short, wrong-tid, trailing, wrong-unit, wrong-function or flood)")]
    Kind { spec: String, kind: String },
    /// Occurs for a probability that is not a number in 0..=1.
    #[error("fault `{spec}`: probability `{value}` is not a number between 0 and 1")]
    Probability { spec: String, value: String },
    /// Occurs for a unit prefix outside 0..=255.
    #[error("fault `{spec}`: unit `{value}` is not a number between 0 and 255")]
    Unit { spec: String, value: String },
    /// Occurs for a bad or missing argument (slow needs a duration, exception a code 1..=255).
    #[error("fault `{spec}`: {why}")]
    Argument { spec: String, why: String },
}

impl FaultRule {
    /// Parse `[UNIT:]KIND[=PROBABILITY][:ARG]`.
    pub fn parse(spec: &str) -> Result<FaultRule, FaultParseError> {
        let s = spec.trim();
        let (unit, rest) = match s.split_once(':') {
            Some((u, rest)) if !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()) => {
                let unit = u.parse::<u8>().map_err(|_| FaultParseError::Unit {
                    spec: spec.to_string(),
                    value: u.to_string(),
                })?;
                (Some(unit), rest)
            }
            _ => (None, s),
        };
        // kind, then optional =prob, then optional :arg
        let (head, arg) = match rest.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (rest, None),
        };
        let (kind, prob) = match head.split_once('=') {
            Some((k, p)) => (k, Some(p)),
            None => (head, None),
        };
        let probability = match prob {
            None => 1.0,
            Some(p) => match p.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => x,
                _ => {
                    return Err(FaultParseError::Probability {
                        spec: spec.to_string(),
                        value: p.to_string(),
                    })
                }
            },
        };
        let argument = |why: &str| FaultParseError::Argument {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let no_arg = |k: FaultKind| match arg {
            None => Ok(k),
            Some(a) => Err(argument(&format!("`{kind}` takes no argument, got `{a}`"))),
        };
        let kind = match kind {
            "timeout" => no_arg(FaultKind::Timeout)?,
            "crc" => no_arg(FaultKind::Crc)?,
            "garbage" => no_arg(FaultKind::Garbage)?,
            "dead" => no_arg(FaultKind::Dead)?,
            "short" => no_arg(FaultKind::Short)?,
            "wrong-tid" => no_arg(FaultKind::WrongTid)?,
            "trailing" => no_arg(FaultKind::Trailing)?,
            "wrong-unit" => no_arg(FaultKind::WrongUnit)?,
            "wrong-function" => no_arg(FaultKind::WrongFunction)?,
            "flood" => match arg {
                None => FaultKind::Flood(FLOOD_DEFAULT),
                Some(a) => match a.parse::<usize>() {
                    Ok(n) if (1..=FLOOD_MAX).contains(&n) => FaultKind::Flood(n),
                    _ => {
                        return Err(argument(&format!(
                            "flood size `{a}` is not a number of bytes in 1..={FLOOD_MAX}"
                        )))
                    }
                },
            },
            "exception" => match arg {
                None => FaultKind::Exception(4),
                Some(a) => match a.parse::<u8>() {
                    Ok(c) if c > 0 => FaultKind::Exception(c),
                    _ => return Err(argument(&format!("exception code `{a}` is not 1..=255"))),
                },
            },
            "slow" => match arg {
                None => return Err(argument("slow needs a delay, e.g. slow=0.2:800ms")),
                Some(a) => FaultKind::Slow(
                    humantime::parse_duration(a)
                        .map_err(|e| argument(&format!("delay `{a}`: {e}")))?,
                ),
            },
            other => {
                return Err(FaultParseError::Kind {
                    spec: spec.to_string(),
                    kind: other.to_string(),
                })
            }
        };
        Ok(FaultRule {
            unit,
            kind,
            probability,
        })
    }
}

/// The fault rules in force and the dice that apply them.
#[derive(Debug, Clone)]
pub struct Faults {
    rules: Vec<FaultRule>,
    rng: fastrand::Rng,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults {
            rules: Vec::new(),
            rng: fastrand::Rng::new(),
        }
    }

    /// These rules, with dice seeded by `seed` (random if `None`).
    pub fn new(rules: Vec<FaultRule>, seed: Option<u64>) -> Self {
        Faults {
            rules,
            rng: seed.map(fastrand::Rng::with_seed).unwrap_or_default(),
        }
    }

    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    pub fn push(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Roll the dice for one request to `unit`: `dead` wins outright, then each rule that
    /// applies to the unit is tried in order and the first that hits is returned.
    pub fn pick(&mut self, unit: u8) -> Option<FaultKind> {
        let applies = |r: &&FaultRule| r.unit.is_none_or(|u| u == unit);
        if self
            .rules
            .iter()
            .filter(applies)
            .any(|r| r.kind == FaultKind::Dead && r.probability >= 1.0)
        {
            return Some(FaultKind::Dead);
        }
        for r in self.rules.iter().filter(applies) {
            if r.probability >= 1.0 || self.rng.f64() < r.probability {
                return Some(r.kind.clone());
            }
        }
        None
    }

    /// Random bytes (1..=16 of them) for the garbage fault.
    pub fn garbage(&mut self) -> Vec<u8> {
        let n = self.rng.usize(1..=16);
        (0..n).map(|_| self.rng.u8(..)).collect()
    }

    /// `n` random bytes for the flood fault.
    pub fn flood(&mut self, n: usize) -> Vec<u8> {
        (0..n.min(FLOOD_MAX)).map(|_| self.rng.u8(..)).collect()
    }

    /// A coin flip for the fault injector (garbage instead of vs. before the reply).
    pub fn coin(&mut self) -> bool {
        self.rng.bool()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spellings() {
        let ms = Duration::from_millis;
        let cases: Vec<(&str, Option<u8>, FaultKind, f64)> = vec![
            ("crc=0.1", None, FaultKind::Crc, 0.1),
            ("slow=0.2:800ms", None, FaultKind::Slow(ms(800)), 0.2),
            ("slow:2s", None, FaultKind::Slow(ms(2000)), 1.0),
            ("exception=0.05:6", None, FaultKind::Exception(6), 0.05),
            ("exception", None, FaultKind::Exception(4), 1.0),
            ("2:timeout=0.5", Some(2), FaultKind::Timeout, 0.5),
            ("3:dead", Some(3), FaultKind::Dead, 1.0),
            ("17:slow=1:10ms", Some(17), FaultKind::Slow(ms(10)), 1.0),
            ("garbage=0", None, FaultKind::Garbage, 0.0),
            ("short", None, FaultKind::Short, 1.0),
            ("2:wrong-tid", Some(2), FaultKind::WrongTid, 1.0),
            ("trailing", None, FaultKind::Trailing, 1.0),
            ("wrong-unit=0.5", None, FaultKind::WrongUnit, 0.5),
            ("wrong-function", None, FaultKind::WrongFunction, 1.0),
            ("flood", None, FaultKind::Flood(FLOOD_DEFAULT), 1.0),
            ("3:flood:300", Some(3), FaultKind::Flood(300), 1.0),
            ("exception:255", None, FaultKind::Exception(255), 1.0),
        ];
        for (s, unit, kind, probability) in cases {
            assert_eq!(
                FaultRule::parse(s),
                Ok(FaultRule {
                    unit,
                    kind,
                    probability
                }),
                "{s}"
            );
        }
    }

    #[test]
    fn refuses_bad_spellings() {
        for s in [
            "boom",
            "crc=2",
            "crc=x",
            "crc:5",
            "slow",
            "slow:soon",
            "exception:0",
            "300:crc",
            "dead=0.5:1",
            "short:1",
            "flood:0",
            "flood:2000000",
            "flood:lots",
            "wrong-unit:3",
        ] {
            assert!(FaultRule::parse(s).is_err(), "{s} was accepted");
        }
    }

    #[test]
    fn dice_follow_probability_and_unit() {
        let rules = vec![
            FaultRule::parse("2:exception").unwrap(),
            FaultRule::parse("crc=0.25").unwrap(),
            FaultRule::parse("9:dead").unwrap(),
        ];
        let mut f = Faults::new(rules, Some(42));
        assert_eq!(f.pick(2), Some(FaultKind::Exception(4)));
        assert_eq!(f.pick(9), Some(FaultKind::Dead));
        let hits = (0..4000)
            .filter(|_| f.pick(1) == Some(FaultKind::Crc))
            .count();
        assert!(
            (800..1200).contains(&hits),
            "{hits} crc hits of 4000 at p=0.25"
        );
        assert_eq!(Faults::none().pick(1), None);
    }
}
