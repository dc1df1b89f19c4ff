//! Module faults and quirks for the modem simulator: the `--modem-fault KIND[=PROB][:ARG]`
//! spelling, and the seeded dice rolled once per received command. Pure apart from the PRNG.
//!
//! Kinds: `urc[:N]` (an unsolicited "+CEREG" line inside the reply, between its information
//! lines and the final result, and N s apart at random moments otherwise; default 5 s),
//! `slow:DURATION` (the reply comes late), `cme[:N]` (the command fails with CME error N,
//! default 100), `sleep:DURATION` (after that long idle the first command is answered only by a
//! bare CRLF), `deregister[:DURATION]` (registration lost for that long, default 30 s, sockets
//! closed), `netclose` (the network closes an open socket), `reboot` (the module restarts after
//! its reply), `hang` (no reply and nothing at all until a power cycle). The probability
//! (default 1) is per command; for `sleep` it is per wake-up.

use std::time::Duration;

use thiserror::Error;

/// One way for the module to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemFaultKind {
    Urc(Duration),
    Slow(Duration),
    Cme(u16),
    Sleep(Duration),
    Deregister(Duration),
    NetClose,
    Reboot,
    Hang,
}

/// A fault with its probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModemFault {
    pub kind: ModemFaultKind,
    pub probability: f64,
}

/// Why a `--modem-fault` spelling was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModemFaultError {
    /// Occurs for a name that is not one of the kinds.
    #[error("modem fault `{0}`: unknown kind (expected urc, slow, cme, sleep, deregister, netclose, reboot or hang)")]
    Kind(String),
    /// Occurs for a probability that is not a number in 0..=1.
    #[error("modem fault `{0}`: the probability is not a number between 0 and 1")]
    Probability(String),
    /// Occurs for a missing, superfluous or unreadable argument.
    #[error("modem fault `{spec}`: {why}")]
    Argument { spec: String, why: String },
}

/// Longest delay any fault argument may ask for.
const MAX_FAULT_DURATION: Duration = Duration::from_secs(3600);

impl ModemFault {
    /// Parse `KIND[=PROBABILITY][:ARG]`.
    pub fn parse(spec: &str) -> Result<ModemFault, ModemFaultError> {
        let s = spec.trim();
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        let (kind, prob) = match head.split_once('=') {
            Some((k, p)) => (k, Some(p)),
            None => (head, None),
        };
        let probability = match prob {
            None => 1.0,
            Some(p) => match p.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => x,
                _ => return Err(ModemFaultError::Probability(spec.into())),
            },
        };
        let bad = |why: String| ModemFaultError::Argument {
            spec: spec.into(),
            why,
        };
        let duration = |default: Option<Duration>| -> Result<Duration, ModemFaultError> {
            match (arg, default) {
                (None, Some(d)) => Ok(d),
                (None, None) => Err(bad(format!("`{kind}` needs a duration, e.g. {kind}:2s"))),
                (Some(a), _) => match humantime::parse_duration(a) {
                    Ok(d) if d <= MAX_FAULT_DURATION && !d.is_zero() => Ok(d),
                    Ok(_) => Err(bad(format!("duration `{a}` is not in (0, 1h]"))),
                    Err(e) => Err(bad(format!("duration `{a}`: {e}"))),
                },
            }
        };
        let none = |k: ModemFaultKind| match arg {
            None => Ok(k),
            Some(a) => Err(bad(format!("`{kind}` takes no argument, got `{a}`"))),
        };
        let kind = match kind {
            "urc" => ModemFaultKind::Urc(duration(Some(Duration::from_secs(5)))?),
            "slow" => ModemFaultKind::Slow(duration(None)?),
            "sleep" => ModemFaultKind::Sleep(duration(None)?),
            "deregister" => ModemFaultKind::Deregister(duration(Some(Duration::from_secs(30)))?),
            "cme" => match arg {
                None => ModemFaultKind::Cme(100),
                Some(a) => match a.parse::<u16>() {
                    Ok(n) if n <= 999 => ModemFaultKind::Cme(n),
                    _ => return Err(bad(format!("CME code `{a}` is not 0..=999"))),
                },
            },
            "netclose" => none(ModemFaultKind::NetClose)?,
            "reboot" => none(ModemFaultKind::Reboot)?,
            "hang" => none(ModemFaultKind::Hang)?,
            _ => return Err(ModemFaultError::Kind(spec.into())),
        };
        Ok(ModemFault { kind, probability })
    }
}

/// What the dice decided for one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roll {
    pub hang: bool,
    pub cme: Option<u16>,
    pub slow: Option<Duration>,
    pub urc: bool,
    pub deregister: Option<Duration>,
    pub netclose: bool,
    pub reboot: bool,
}

/// The fault rules in force and their dice.
#[derive(Debug, Clone)]
pub struct ModemFaults {
    rules: Vec<ModemFault>,
    rng: fastrand::Rng,
}

impl ModemFaults {
    pub fn new(rules: Vec<ModemFault>, seed: Option<u64>) -> Self {
        ModemFaults {
            rules,
            rng: seed.map(fastrand::Rng::with_seed).unwrap_or_default(),
        }
    }

    pub fn push(&mut self, rule: ModemFault) {
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    fn hit(&mut self, p: f64) -> bool {
        p >= 1.0 || (p > 0.0 && self.rng.f64() < p)
    }

    /// Roll every rule once for one command.
    pub fn roll(&mut self) -> Roll {
        let mut r = Roll::default();
        for i in 0..self.rules.len() {
            let rule = self.rules[i];
            if !self.hit(rule.probability) {
                continue;
            }
            match rule.kind {
                ModemFaultKind::Hang => r.hang = true,
                ModemFaultKind::Cme(n) => r.cme = r.cme.or(Some(n)),
                ModemFaultKind::Slow(d) => r.slow = r.slow.or(Some(d)),
                ModemFaultKind::Urc(_) => r.urc = true,
                ModemFaultKind::Deregister(d) => r.deregister = r.deregister.or(Some(d)),
                ModemFaultKind::NetClose => r.netclose = true,
                ModemFaultKind::Reboot => r.reboot = true,
                ModemFaultKind::Sleep(_) => {}
            }
        }
        r
    }

    /// The idle time after which the module sleeps, if the sleep quirk is on.
    pub fn sleep_after(&self) -> Option<Duration> {
        self.rules.iter().find_map(|r| match r.kind {
            ModemFaultKind::Sleep(d) => Some(d),
            _ => None,
        })
    }

    /// Whether a sleeping module loses this wake-up command (the sleep rule's probability).
    pub fn sleep_loses(&mut self) -> bool {
        let p = self
            .rules
            .iter()
            .find(|r| matches!(r.kind, ModemFaultKind::Sleep(_)))
            .map(|r| r.probability)
            .unwrap_or(0.0);
        self.hit(p)
    }

    /// The mean gap between spontaneous URCs, and their probability, if the urc quirk is on.
    pub fn urc_every(&self) -> Option<(Duration, f64)> {
        self.rules.iter().find_map(|r| match r.kind {
            ModemFaultKind::Urc(d) => Some((d, r.probability)),
            _ => None,
        })
    }

    /// A random moment within `0.5..1.5` times `mean` from now (for spontaneous URCs).
    pub fn jitter(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(0.5 + self.rng.f64())
    }

    /// Roll a probability outside the per-command rules.
    pub fn chance(&mut self, p: f64) -> bool {
        self.hit(p)
    }

    /// A random index below `n` (n > 0).
    pub fn pick(&mut self, n: usize) -> usize {
        self.rng.usize(..n.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spellings() {
        let s = Duration::from_secs;
        let cases = [
            ("urc", ModemFaultKind::Urc(s(5)), 1.0),
            ("urc=0.5:2s", ModemFaultKind::Urc(s(2)), 0.5),
            ("slow=0.2:3s", ModemFaultKind::Slow(s(3)), 0.2),
            ("cme=0.1", ModemFaultKind::Cme(100), 0.1),
            ("cme:4", ModemFaultKind::Cme(4), 1.0),
            ("sleep:10s", ModemFaultKind::Sleep(s(10)), 1.0),
            ("deregister=0.01", ModemFaultKind::Deregister(s(30)), 0.01),
            ("deregister:5s", ModemFaultKind::Deregister(s(5)), 1.0),
            ("netclose=0.05", ModemFaultKind::NetClose, 0.05),
            ("reboot=0", ModemFaultKind::Reboot, 0.0),
            ("hang=0.001", ModemFaultKind::Hang, 0.001),
        ];
        for (spec, kind, probability) in cases {
            assert_eq!(
                ModemFault::parse(spec),
                Ok(ModemFault { kind, probability }),
                "{spec}"
            );
        }
        for bad in [
            "boom",
            "slow",
            "sleep",
            "slow:soon",
            "slow:0s",
            "slow:2h",
            "cme:x",
            "cme:1000",
            "hang:1",
            "urc=2",
            "netclose=x",
        ] {
            assert!(ModemFault::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dice_follow_the_rules() {
        let rules = ["cme:4", "slow=0:1s", "hang=0"]
            .iter()
            .map(|s| ModemFault::parse(s).unwrap())
            .collect();
        let mut f = ModemFaults::new(rules, Some(1));
        for _ in 0..100 {
            let r = f.roll();
            assert_eq!(r.cme, Some(4));
            assert!(r.slow.is_none() && !r.hang);
        }
        let mut half = ModemFaults::new(vec![ModemFault::parse("reboot=0.5").unwrap()], Some(7));
        let hits = (0..2000).filter(|_| half.roll().reboot).count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert_eq!(half.sleep_after(), None);
    }
}
