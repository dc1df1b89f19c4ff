//! The simulator's value model: what a gas meter would show at a given instant, as a pure
//! function of time (seconds since the Unix epoch, UTC) and a seed. Driven by the canonical
//! point names of the gas data model: flows follow a daily cycle (morning and evening peaks,
//! a midday shoulder, quiet nights near zero) with noise; totalizers are the exact integral of
//! the noise-free flow profile, so they only ever rise; pressure is noise around a nominal;
//! differential pressure tracks flow squared; temperature is a slow daily sine around 10 °C;
//! the battery drains slowly; status bits stay 0; any other name wanders gently. Noise is a
//! hash of (seed, name, second), so the same inputs always give the same value.

use std::f64::consts::PI;

const DAY: f64 = 86_400.0;
/// Standard reference conditions for the conversion factor (101.325 kPa, 0 °C).
const P_REF_KPA: f64 = 101.325;
const T_REF_K: f64 = 273.15;

/// Flow as a fraction of the peak: (centre hour, half width in hours, amplitude).
const BUMPS: [(f64, f64, f64); 3] = [(7.5, 2.5, 1.0), (13.0, 3.0, 0.3), (19.0, 3.0, 0.8)];
/// Night trickle as a fraction of the peak.
const BASE: f64 = 0.01;

/// Parameters of one simulated meter.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueModel {
    pub seed: u64,
    /// When the totalizers showed their start values (seconds since the epoch).
    pub start: f64,
    /// Measured flow at the morning peak, m³/h.
    pub peak_flow: f64,
    /// Nominal gauge pressure, kPa.
    pub nominal_pressure: f64,
    /// Mean temperature, °C.
    pub mean_temperature: f64,
    /// Measured volume at `start`, m³.
    pub volume_start: f64,
}

impl ValueModel {
    /// A meter whose peak flow (40..160 m³/h) is picked by the seed.
    pub fn new(seed: u64, start: f64) -> Self {
        let pick = (hash3(seed, 0x5EED, 0) >> 11) as f64 / (1u64 << 53) as f64;
        ValueModel {
            seed,
            start,
            peak_flow: 40.0 + 120.0 * pick,
            nominal_pressure: 400.0,
            mean_temperature: 10.0,
            volume_start: 123_456.7,
        }
    }

    /// Conversion factor from measured to standard volume at nominal conditions.
    pub fn conversion_factor(&self) -> f64 {
        (self.nominal_pressure + P_REF_KPA) / P_REF_KPA * T_REF_K
            / (self.mean_temperature + T_REF_K)
    }

    /// Noise-free measured flow, m³/h.
    pub fn flow_profile(&self, t: f64) -> f64 {
        let h = hour_of_day(t);
        let mut f = BASE;
        for (c, w, a) in BUMPS {
            if (h - c).abs() < w {
                f += a * (1.0 + (PI * (h - c) / w).cos()) / 2.0;
            }
        }
        f * self.peak_flow
    }

    /// Integral of `flow_profile` from the epoch to `t`, m³ (closed form, so exact and
    /// monotonic).
    pub fn flow_integral(&self, t: f64) -> f64 {
        let days = (t / DAY).floor();
        let h = hour_of_day(t);
        let per_day: f64 = 24.0 * BASE + BUMPS.iter().map(|(_, w, a)| a * w).sum::<f64>();
        let mut partial = BASE * h;
        for (c, w, a) in BUMPS {
            partial += a * if h <= c - w {
                0.0
            } else if h >= c + w {
                w
            } else {
                (h - c + w) / 2.0 + w / (2.0 * PI) * (PI * (h - c) / w).sin()
            };
        }
        (days * per_day + partial) * self.peak_flow
    }

    /// Measured volume at `t`, m³.
    pub fn volume_measured(&self, t: f64) -> f64 {
        self.volume_start + (self.flow_integral(t) - self.flow_integral(self.start)).max(0.0)
    }

    /// Value of the canonical point `name` at `t`.
    pub fn value(&self, name: &str, t: f64) -> f64 {
        let n = |channel: &str| noise(self.seed, channel, t);
        let flow = || self.flow_profile(t) * (1.0 + 0.05 * n("flow"));
        match name {
            "flow_measured" => flow(),
            "flow_standard" => flow() * self.conversion_factor(),
            "volume_measured" => self.volume_measured(t),
            "volume_standard" => self.volume_measured(t) * self.conversion_factor(),
            "pressure" => self.nominal_pressure * (1.0 + 0.005 * n("pressure")),
            "diff_pressure" => 25.0 * (flow() / self.peak_flow).powi(2),
            "temperature" => {
                let h = hour_of_day(t);
                self.mean_temperature + 4.0 * (2.0 * PI * (h - 9.0) / 24.0).sin() + 0.05 * n(name)
            }
            "battery" => (100.0 - 0.5 * (t - self.start).max(0.0) / DAY).clamp(0.0, 100.0),
            "status" => 0.0,
            s if s.starts_with("status_") => 0.0,
            other => 100.0 + 10.0 * wander(self.seed, other, t),
        }
    }
}

fn hour_of_day(t: f64) -> f64 {
    t.rem_euclid(DAY) / 3600.0
}

/// splitmix64 finaliser over three inputs.
fn hash3(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.rotate_left(21))
        .wrapping_add(c.rotate_left(42))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn name_hash(s: &str) -> u64 {
    // FNV-1a
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Noise in [-1, 1], constant within one second.
pub fn noise(seed: u64, channel: &str, t: f64) -> f64 {
    let sec = t.floor() as i64 as u64;
    2.0 * unit_interval(hash3(seed, name_hash(channel), sec)) - 1.0
}

/// Smooth wandering in [-1, 1]: cosine-interpolated value noise on 10-minute knots.
fn wander(seed: u64, channel: &str, t: f64) -> f64 {
    let step = 600.0;
    let k = (t / step).floor();
    let frac = t / step - k;
    let knot = |i: f64| 2.0 * unit_interval(hash3(seed, name_hash(channel), i as i64 as u64)) - 1.0;
    let w = (1.0 - (PI * frac).cos()) / 2.0;
    knot(k) * (1.0 - w) + knot(k + 1.0) * w
}

/// Split a canonical value into the terms of a computed point: terms sorted by factor
/// descending (ties keep their order); every term but the last gets floor(remaining/factor),
/// the last gets remaining/factor. Returns (term name, value) in that order.
pub fn split(value: f64, terms: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut sorted: Vec<&(String, f64)> = terms.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut remaining = value;
    let mut out = Vec::with_capacity(sorted.len());
    for (i, (name, factor)) in sorted.iter().enumerate() {
        let factor = if *factor == 0.0 { 1.0 } else { *factor };
        let part = if i + 1 == sorted.len() {
            remaining / factor
        } else {
            (remaining / factor).floor()
        };
        remaining -= part * factor;
        out.push((name.clone(), part));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-12 00:00:00 UTC.
    const MIDNIGHT: f64 = 1_710_201_600.0;

    #[test]
    fn totalizers_rise_monotonically_over_a_day() {
        let m = ValueModel::new(7, MIDNIGHT);
        assert_eq!(m.value("volume_measured", MIDNIGHT), 123_456.7);
        let mut last = (0.0, 0.0);
        for minute in 0..=(2 * 24 * 60) {
            let t = MIDNIGHT + minute as f64 * 60.0;
            let v = (m.value("volume_measured", t), m.value("volume_standard", t));
            assert!(
                v.0 >= last.0 && v.1 >= last.1,
                "minute {minute}: {v:?} < {last:?}"
            );
            last = v;
        }
        // Two days of flow went through: per day = peak * (24*0.01 + 2.5 + 0.9 + 2.4).
        let per_day = m.peak_flow * (0.24 + 2.5 + 0.9 + 2.4);
        assert!((last.0 - 123_456.7 - 2.0 * per_day).abs() < 1e-6 * last.0);
    }

    #[test]
    fn integral_matches_numeric_integration_of_the_profile() {
        let m = ValueModel::new(3, MIDNIGHT);
        let step = 10.0;
        let mut sum = 0.0;
        let mut t = MIDNIGHT;
        while t < MIDNIGHT + DAY {
            sum += m.flow_profile(t + step / 2.0) * step / 3600.0;
            t += step;
        }
        let exact = m.flow_integral(MIDNIGHT + DAY) - m.flow_integral(MIDNIGHT);
        assert!((sum - exact).abs() < 1e-3 * exact, "{sum} vs {exact}");
    }

    #[test]
    fn flow_is_quiet_at_night_and_high_at_the_peaks() {
        let m = ValueModel::new(11, MIDNIGHT);
        let at = |h: f64| m.value("flow_measured", MIDNIGHT + h * 3600.0);
        let night = at(3.0);
        assert!(night >= 0.0 && night < 0.02 * m.peak_flow, "night {night}");
        assert!(at(7.5) > 0.9 * m.peak_flow, "morning {}", at(7.5));
        assert!(at(19.0) > 0.7 * m.peak_flow, "evening {}", at(19.0));
        assert!(at(7.5) > 20.0 * night && at(19.0) > 20.0 * night);
        assert!(m.value("flow_standard", MIDNIGHT + 7.5 * 3600.0) > at(7.5) * 4.0);
        assert!(m.value("diff_pressure", MIDNIGHT + 7.5 * 3600.0) > 20.0);
        assert!(m.value("diff_pressure", MIDNIGHT + 3.0 * 3600.0) < 0.1);
    }

    #[test]
    fn other_quantities_stay_plausible() {
        let m = ValueModel::new(1, MIDNIGHT);
        for minute in 0..(24 * 60) {
            let t = MIDNIGHT + minute as f64 * 60.0;
            let p = m.value("pressure", t);
            assert!((398.0..=402.0).contains(&p), "pressure {p}");
            let temp = m.value("temperature", t);
            assert!((5.5..=14.5).contains(&temp), "temperature {temp}");
            assert_eq!(m.value("status_low_battery", t), 0.0);
            let w = m.value("anything_else", t);
            assert!((90.0..=110.0).contains(&w), "wander {w}");
        }
        assert!(m.value("temperature", MIDNIGHT + 15.0 * 3600.0) > 13.0);
        assert!(m.value("temperature", MIDNIGHT + 3.0 * 3600.0) < 7.0);
        assert_eq!(m.value("battery", MIDNIGHT), 100.0);
        assert!(m.value("battery", MIDNIGHT + 10.0 * DAY) < 100.0);
    }

    #[test]
    fn same_seed_same_values_other_seed_other_noise() {
        let (a, b, c) = (
            ValueModel::new(5, MIDNIGHT),
            ValueModel::new(5, MIDNIGHT),
            ValueModel::new(6, MIDNIGHT),
        );
        let t = MIDNIGHT + 1234.0;
        assert_eq!(a.value("pressure", t), b.value("pressure", t));
        assert_ne!(a.value("pressure", t), c.value("pressure", t));
    }

    #[test]
    fn split_reproduces_the_canonical_value() {
        let terms = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
            v.iter().map(|(n, f)| (n.to_string(), *f)).collect()
        };
        type Case = (f64, Vec<(String, f64)>, Vec<f64>);
        let cases: Vec<Case> = vec![
            // integer + fraction
            (
                123_456.75,
                terms(&[("int", 1.0), ("frac", 1.0)]),
                vec![123_456.0, 0.75],
            ),
            // two BCD words, listed low first: sorted by factor
            (
                12_345_678.0,
                terms(&[("lo", 1.0), ("hi", 10_000.0)]),
                vec![1234.0, 5678.0],
            ),
            // three terms
            (
                1_234_567.5,
                terms(&[("m", 1000.0), ("k", 1.0), ("g", 1e6)]),
                vec![1.0, 234.0, 567.5],
            ),
        ];
        for (value, t, want) in cases {
            let got = split(value, &t);
            assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), want, "{value}");
            let back: f64 = got
                .iter()
                .map(|(n, v)| v * t.iter().find(|(m, _)| m == n).unwrap().1)
                .sum();
            assert!((back - value).abs() < 1e-9, "{value} -> {back}");
        }
    }
}
