//! Exact decimal arithmetic for the numbers gasdtu reads and publishes (pure core, no I/O).
//!
//! A meter value is a decimal: an int16 register of 0.1 bar counts holding -8998 means
//! -899.8, an f32 fraction register holding 0.32f32 means 0.32, a u32 whole part 987654 plus
//! that fraction means 987654.32. Binary floating point computes -8998 × 0.1 as
//! -899.8000000000001 and 987654 + f64::from(0.32f32) as 987654.3199999928. This module does
//! the scale/offset and sum arithmetic on the decimals the operands stand for (`Decimal`,
//! mantissa × 10^exponent, exact, overflow-checked) and converts the exact result once to the
//! nearest f64, whose shortest representation is then exactly the decimal a human reads off
//! the meter. Where a result does not fit (i128 overflow, non-finite operands) it falls back to
//! ordinary f64 arithmetic: never wrong, at worst one ulp of noise.
//!
//! The one rule of what decimal a float stands for is `meant`: a value that is exactly an f32
//! and whose shortest f64 representation needs more than 15 significant digits came from an
//! f32 register and stands for its shortest f32 representation (4.199999809265137 → 4.2);
//! every other value stands for its own shortest representation. Any decimal of at most 15
//! significant digits survives f64 unchanged, so `meant` never alters a value that came out of
//! this arithmetic. The payload codecs use the same rule (docs/mqtt.md, number formatting).

use std::fmt::Write as _;

/// Significant decimal digits that always survive a round trip through f64.
const F64_EXACT_DIGITS: u32 = 15;

/// `mantissa × 10^exponent`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub exponent: i32,
}

/// The powers of ten that are exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// 10^-k, the nearest doubles (as `1.0 / POW10[k]` computes them, pinned in the tests).
const NEG_POW10: [f64; 23] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22,
];

/// A small stack buffer for float formatting (no allocation on the polling path).
struct Buf {
    bytes: [u8; 64],
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, always with whole UTF-8 strings.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The decimal a shortest representation spells: `{:e}` form (`-8.998e2`, `1e-7`) or plain
/// (`-899.8`, `0.001`, `100.0`), as `zmij` and `{:e}` write them.
fn parse_sci(s: &str) -> Option<Decimal> {
    let (digits, mut exponent) = match s.split_once(['e', 'E']) {
        Some((d, e)) => (d, e.parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    // A float's shortest digits (at most 17) fit a u64: its arithmetic is several times cheaper
    // than i128's (issue 13, CPU per reading). Longer digit strings take the i128 path.
    let written_exponent = exponent;
    let mut mantissa: u64 = 0;
    let mut after_point = false;
    for c in digits.bytes() {
        match c {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                let Some(m) = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u64::from(c - b'0')))
                else {
                    return parse_sci_wide(neg, digits, written_exponent);
                };
                mantissa = m;
                if after_point {
                    exponent = exponent.checked_sub(1)?;
                }
            }
            _ => return None,
        }
    }
    if mantissa == 0 {
        return Some(Decimal {
            mantissa: 0,
            exponent: 0,
        });
    }
    // As `normalized`, in u64.
    while mantissa % 10 == 0 {
        let Some(e) = exponent.checked_add(1) else {
            break;
        };
        mantissa /= 10;
        exponent = e;
    }
    let m = i128::from(mantissa);
    Some(Decimal {
        mantissa: if neg { -m } else { m },
        exponent,
    })
}

/// `parse_sci` for digit strings beyond a u64 (more than 19 digits): the same rules in i128.
/// `digits` is the unsigned part before the exponent, `exponent` the written exponent.
fn parse_sci_wide(neg: bool, digits: &str, mut exponent: i32) -> Option<Decimal> {
    let mut mantissa: i128 = 0;
    let mut after_point = false;
    for c in digits.bytes() {
        match c {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                mantissa = mantissa
                    .checked_mul(10)?
                    .checked_add(i128::from(c - b'0'))?;
                if after_point {
                    exponent = exponent.checked_sub(1)?;
                }
            }
            _ => return None,
        }
    }
    Some(
        Decimal {
            mantissa: if neg { -mantissa } else { mantissa },
            exponent,
        }
        .normalized(),
    )
}

/// The shortest representation of a finite `x` as `zmij` writes it, several times faster
/// than `{:e}` (issue 13: the encoders ask for every float of every message they measure).
/// Its length is the shortest; where it has at most 15 digits it is also the very decimal
/// `{:e}` writes (any two decimals of 15 digits are different doubles). Longer, `zmij` may
/// pick another of the same length than `{:e}`'s closest: callers let `{:e}` decide then.
fn shortest_zmij(x: f64) -> Option<Decimal> {
    let mut b = zmij::Buffer::new();
    parse_sci(b.format_finite(x))
}

/// Significant decimal digits that always survive a round trip through f32.
const F32_EXACT_DIGITS: u32 = 6;

/// The shortest representation of a finite f32, as `{:e}` writes it: `zmij`'s up to 6 digits
/// (the only one of that length, as `shortest_zmij` for f64), `{:e}`'s beyond.
fn shortest32(f: f32) -> Option<Decimal> {
    let mut b = zmij::Buffer::new();
    match parse_sci(b.format_finite(f)) {
        Some(d) if fits_digits(d, F32_EXACT_DIGITS) => Some(d),
        _ => formatted(f),
    }
}

/// The digits `{:e}` writes for `x` (f64 or f32).
fn formatted(x: impl std::fmt::LowerExp) -> Option<Decimal> {
    let mut b = Buf::new();
    write!(b, "{x:e}").ok()?;
    parse_sci(b.as_str())
}

/// A normalized decimal has at most `n` significant digits: its mantissa is below 10^n (one
/// comparison where counting them took a 128-bit division per digit, at every float of every
/// message measured: issue 13).
fn fits_digits(d: Decimal, n: u32) -> bool {
    d.mantissa.unsigned_abs() < 10u128.pow(n)
}

/// The value a float stands for (see the module documentation): an exact f32 whose shortest
/// f64 representation needs more than 15 digits is read at f32 precision; anything else,
/// including NaN and infinities, is itself.
pub fn meant(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let f = x as f32;
    if f64::from(f) != x || (x.fract() == 0.0 && x.abs() < 1e15) {
        return x; // not an f32, or a whole number of at most 15 digits
    }
    if shortest_zmij(x).is_none_or(|d| fits_digits(d, F64_EXACT_DIGITS)) {
        return x;
    }
    shortest32(f).map_or(x, Decimal::to_f64)
}

impl Decimal {
    pub fn from_int(i: i128) -> Decimal {
        Decimal {
            mantissa: i,
            exponent: 0,
        }
        .normalized()
    }

    /// The decimal a finite float stands for (`meant`); `None` for NaN and infinities.
    /// Whole numbers below 10^15 and the decimal scales 10^-k (0.1, 0.01, ...: a point's scale
    /// and offset, at every scaled reading) are read without formatting: their shortest
    /// representation is the number itself (pinned against the formatting path in the tests).
    pub fn of(x: f64) -> Option<Decimal> {
        if !x.is_finite() {
            return None;
        }
        if x.fract() == 0.0 && x.abs() < 1e15 {
            return Some(Decimal::from_int(x as i128));
        }
        if x > 0.0 && x < 1.0 {
            if let Some(k) = NEG_POW10.iter().position(|&p| p == x) {
                return Some(Decimal {
                    mantissa: 1,
                    exponent: -(k as i32),
                });
            }
        }
        Decimal::of_formatted(x)
    }

    /// `of` through the shortest representation (`{:e}`) of `meant(x)`; `x` finite. One
    /// `zmij` formatting of `x` serves both `meant`'s digit count and, up to 15 digits, the
    /// digits (the payload encoders call this for every float of every message they measure:
    /// issue 13); an f32 that needs more takes its f32 digits, which are those of `meant(x)`
    /// (at most 9 digits survive f64 unchanged); any other long one takes `{:e}`'s.
    fn of_formatted(x: f64) -> Option<Decimal> {
        let d = shortest_zmij(x)?;
        if fits_digits(d, F64_EXACT_DIGITS) {
            return Some(d);
        }
        let f = x as f32;
        if f64::from(f) == x {
            return shortest32(f);
        }
        formatted(x)
    }

    /// Trailing zeros moved into the exponent (one representation per value).
    fn normalized(mut self) -> Decimal {
        if self.mantissa == 0 {
            return Decimal {
                mantissa: 0,
                exponent: 0,
            };
        }
        while self.mantissa % 10 == 0 {
            let Some(e) = self.exponent.checked_add(1) else {
                break;
            };
            self.mantissa /= 10;
            self.exponent = e;
        }
        self
    }

    pub fn checked_mul(self, o: Decimal) -> Option<Decimal> {
        Some(
            Decimal {
                mantissa: self.mantissa.checked_mul(o.mantissa)?,
                exponent: self.exponent.checked_add(o.exponent)?,
            }
            .normalized(),
        )
    }

    pub fn checked_add(self, o: Decimal) -> Option<Decimal> {
        let (hi, lo) = if self.exponent >= o.exponent {
            (self, o)
        } else {
            (o, self)
        };
        let shift = u32::try_from(hi.exponent.checked_sub(lo.exponent)?).ok()?;
        let scaled = hi.mantissa.checked_mul(10i128.checked_pow(shift)?)?;
        Some(
            Decimal {
                mantissa: scaled.checked_add(lo.mantissa)?,
                exponent: lo.exponent,
            }
            .normalized(),
        )
    }

    /// The nearest f64 (correctly rounded).
    pub fn to_f64(self) -> f64 {
        // Both operands exact in f64: one IEEE operation rounds correctly (Clinger's fast path).
        if self.mantissa.unsigned_abs() < (1u128 << 53) {
            let m = self.mantissa as f64;
            if let Ok(e) = usize::try_from(self.exponent) {
                if let Some(p) = POW10.get(e) {
                    return m * p;
                }
            } else if let Some(p) = usize::try_from(-i64::from(self.exponent))
                .ok()
                .and_then(|e| POW10.get(e))
            {
                return m / p;
            }
        }
        let mut b = Buf::new();
        if write!(b, "{}e{}", self.mantissa, self.exponent).is_err() {
            return f64::NAN;
        }
        b.as_str().parse::<f64>().unwrap_or(f64::NAN)
    }
}

/// `raw × scale + offset` on the decimals the operands stand for, rounded once to the nearest
/// f64; ordinary float arithmetic where the decimals do not fit.
pub fn affine(raw: Decimal, scale: f64, offset: f64) -> Option<f64> {
    let s = Decimal::of(scale)?;
    let o = Decimal::of(offset)?;
    Some(raw.checked_mul(s)?.checked_add(o)?.to_f64())
}

/// `Σ value × factor` on the decimals the operands stand for, rounded once; float arithmetic
/// (on the `meant` values) where the decimals do not fit.
pub fn weighted_sum(terms: &[(f64, f64)]) -> f64 {
    let exact = terms.iter().try_fold(Decimal::from_int(0), |acc, (x, k)| {
        acc.checked_add(Decimal::of(*x)?.checked_mul(Decimal::of(*k)?)?)
    });
    match exact {
        Some(d) => d.to_f64(),
        None => terms.iter().map(|(x, k)| meant(*x) * meant(*k)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(m: i128, e: i32) -> Decimal {
        Decimal {
            mantissa: m,
            exponent: e,
        }
    }

    /// The u64 fast path of `parse_sci` reads every string as the i128 rules do: signs,
    /// points, trailing zeros, exponents at the edge of i32, more digits than a u64 holds, and
    /// malformed input.
    #[test]
    fn parse_sci_u64_path_matches_the_i128_rules() {
        let cases = [
            "0",
            "-0.0",
            "0e5",
            "100.0",
            "1e2",
            "-8.998e2",
            "1.5e-7",
            "0.001",
            "400.20000000000005",
            "1.7976931348623157e308",
            "5e-324",
            "18446744073709551615",
            "18446744073709551616",
            "184467440737095516150",
            "123456789012345678901234567890e-10",
            "-99999999999999999999.5",
            "1e2147483647",
            "10e2147483647",
            "1.0e-2147483648",
            "",
            "-",
            "1e",
            "1.2.3",
            "--1",
            "1x",
        ];
        for s in cases {
            let (digits, exponent) = match s.split_once(['e', 'E']) {
                Some((d, e)) => (d, e.parse::<i32>().ok()),
                None => (s, Some(0)),
            };
            let (neg, digits) = match digits.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, digits),
            };
            let want = exponent.and_then(|e| parse_sci_wide(neg, digits, e));
            assert_eq!(parse_sci(s), want, "{s:?}");
        }
        assert_eq!(parse_sci("100.0"), Some(dec(1, 2)));
        assert_eq!(parse_sci("-8.998e2"), Some(dec(-8998, -1)));
        assert_eq!(
            parse_sci("184467440737095516150"),
            Some(dec(18446744073709551615, 1))
        );
    }

    #[test]
    fn meant_reads_exact_f32_noise_at_f32_precision_only() {
        let cases: &[(f64, f64)] = &[
            (f64::from(4.2f32), 4.2),
            (f64::from(-899.8f32), -899.8),
            (f64::from(0.32f32), 0.32),
            (f64::from(1.01325f32), 1.01325),
            // Exact f32 with a short decimal: itself (987654.3 at f32 precision would lose .0125).
            (987_654.312_5, 987_654.312_5),
            (0.5, 0.5),
            (16_777_216.0, 16_777_216.0),
            // Not an f32: itself, noise or not.
            (987_654.32, 987_654.32),
            (-899.800_000_000_000_1, -899.800_000_000_000_1),
            (16_777_217.25, 16_777_217.25),
            (0.1, 0.1),
        ];
        for &(x, want) in cases {
            assert_eq!(meant(x).to_bits(), want.to_bits(), "meant({x:?})");
        }
        assert!(meant(f64::NAN).is_nan());
        assert_eq!(meant(f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn decimals_of_floats_are_their_shortest_representation() {
        let cases: &[(f64, Decimal)] = &[
            (0.0, dec(0, 0)),
            (-0.0, dec(0, 0)),
            (0.1, dec(1, -1)),
            (-899.8, dec(-8998, -1)),
            (1e-7, dec(1, -7)),
            (1.5e300, dec(15, 299)),
            (123_000.0, dec(123, 3)),
            (f64::from(0.32f32), dec(32, -2)),
            (16_777_217.25, dec(1_677_721_725, -2)),
            (f64::MAX, dec(17_976_931_348_623_157, 292)),
        ];
        for &(x, want) in cases {
            assert_eq!(Decimal::of(x), Some(want), "{x:?}");
        }
        assert_eq!(Decimal::of(f64::NAN), None);
        assert_eq!(Decimal::of(f64::NEG_INFINITY), None);
    }

    #[test]
    fn fast_paths_of_decimal_of_agree_with_formatting() {
        let mut xs: Vec<f64> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            7.0,
            10.0,
            100.0,
            123_000.0,
            -8998.0,
            16_777_216.0,
            4_294_967_295.0,
            999_999_999_999_999.0,
            -999_999_999_999_999.0,
            // Just outside the whole-number fast path: formatting decides.
            1e15,
            9_007_199_254_740_992.0,
            0.5,
            0.25,
            1.5,
            0.2,
            0.3,
            0.05,
        ];
        for k in 1..POW10.len() {
            assert_eq!(
                NEG_POW10[k].to_bits(),
                (1.0 / POW10[k]).to_bits(),
                "10^-{k}"
            );
            xs.push(1.0 / POW10[k]);
            xs.push(-1.0 / POW10[k]);
            xs.push(POW10[k]);
        }
        for x in xs {
            assert_eq!(Decimal::of(x), Decimal::of_formatted(x), "{x:?}");
        }
        // The one-formatting path equals the definition: the digits of `meant(x)`, over
        // f32 register values (noise digits), f64 results and random bit patterns.
        // The definition, through core's `{:e}` (Grisu/Dragon, shortest and closest).
        let meant_ref = |x: f64| -> f64 {
            let f = x as f32;
            let s = format!("{x:e}");
            let n = s
                .split('e')
                .next()
                .unwrap_or("")
                .bytes()
                .filter(u8::is_ascii_digit)
                .count();
            if !x.is_finite() || f64::from(f) != x || n <= F64_EXACT_DIGITS as usize {
                x
            } else {
                format!("{f:e}").parse().unwrap_or(x)
            }
        };
        let by_meant = |x: f64| parse_sci(&format!("{:e}", meant_ref(x)));
        let mut bits = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u32 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let f32_reg = f64::from(f32::from_bits(bits as u32));
            let scaled = f64::from(i) * 0.1 - 1000.0;
            for x in [
                f32_reg,
                scaled,
                f64::from_bits(bits),
                f64::from(i as f32 / 7.0),
                f64::from(i as f32 / 100.0 - 50.0), // f32 registers of few digits
            ] {
                if x.is_finite() {
                    assert_eq!(Decimal::of_formatted(x), by_meant(x), "{x:?}");
                    assert_eq!(meant(x).to_bits(), meant_ref(x).to_bits(), "{x:?}");
                }
            }
        }
        // The fast paths are taken where they are meant to be (same value, no formatting).
        assert_eq!(Decimal::of(0.1), Some(dec(1, -1)));
        assert_eq!(Decimal::of(0.001), Some(dec(1, -3)));
        assert_eq!(Decimal::of(-8998.0), Some(dec(-8998, 0)));
    }

    #[test]
    fn to_f64_rounds_once_to_the_nearest_double() {
        let cases: &[(Decimal, f64)] = &[
            (dec(-8998, -1), -899.8),
            (dec(1502, -1), 150.2),
            (dec(4002, -1), 400.2),
            (dec(98_765_432, -2), 987_654.32),
            (dec(1_677_721_725, -2), 16_777_217.25),
            // Beyond the fast path: through the correctly rounded parser.
            (
                dec(12_345_678_901_234_567_891, -3),
                12_345_678_901_234_567.891,
            ),
            (dec(1, -30), 1e-30),
            (dec(7, 40), 7e40),
            (dec(1, 400), f64::INFINITY),
        ];
        for &(d, want) in cases {
            assert_eq!(d.to_f64().to_bits(), want.to_bits(), "{d:?}");
        }
    }

    #[test]
    fn scaled_integers_are_the_decimal_a_human_reads() {
        // (raw, scale, offset, JSON text of the result)
        let cases: &[(i128, f64, f64, &str)] = &[
            (-8998, 0.1, 0.0, "-899.8"),
            (1502, 0.1, 0.0, "150.2"),
            (4002, 0.1, 0.0, "400.2"),
            (-32768, 0.01, 0.0, "-327.68"),
            (65535, 0.001, 0.0, "65.535"),
            (12345, 0.05, 0.0, "617.25"),
            (3, 0.1, 0.0, "0.3"),
            (7, 0.1, -40.0, "-39.3"),
            (2731, 0.1, -273.15, "-0.05"),
            (i128::from(u64::MAX), 0.001, 0.0, "1.844674407370955e+16"),
            (100, 1.0 / 3.0, 0.0, "33.33333333333333"),
        ];
        for &(raw, scale, offset, text) in cases {
            let v = affine(Decimal::from_int(raw), scale, offset).expect("fits");
            assert_eq!(
                serde_json::to_string(&v).ok().as_deref(),
                Some(text),
                "{raw} {scale}"
            );
            // The naive product is the noise this module exists for (sanity of the fixture).
            if raw == -8998 {
                assert_ne!(raw as f64 * scale, v);
            }
        }
    }

    #[test]
    fn weighted_sums_keep_int_plus_fraction_totals_exact() {
        let cases: &[(&[(f64, f64)], &str)] = &[
            (&[(16_777_217.0, 1.0), (0.25, 1.0)], "16777217.25"),
            (&[(987_654.0, 1.0), (f64::from(0.32f32), 1.0)], "987654.32"),
            (
                &[(4_294_967_295.0, 1.0), (f64::from(0.999f32), 1.0)],
                "4294967295.999",
            ),
            (&[(1234.0, 10_000.0), (5678.0, 1.0)], "12345678.0"),
            (&[(1.0, 0.1), (2.0, 0.2)], "0.5"),
            (&[], "0.0"),
        ];
        for &(terms, text) in cases {
            let v = weighted_sum(terms);
            assert_eq!(
                serde_json::to_string(&v).ok().as_deref(),
                Some(text),
                "{terms:?}"
            );
        }
        // Non-finite terms fall back to float arithmetic.
        assert!(weighted_sum(&[(f64::NAN, 1.0), (1.0, 1.0)]).is_nan());
        assert_eq!(weighted_sum(&[(f64::INFINITY, 1.0)]), f64::INFINITY);
        // Decimals that overflow i128 fall back too (and stay finite and close).
        let big = weighted_sum(&[(1e300, 1.0), (1e-300, 1.0)]);
        assert_eq!(big, 1e300);
    }

    #[test]
    fn addition_aligns_exponents_and_refuses_overflow() {
        assert_eq!(dec(1, 3).checked_add(dec(5, -1)), Some(dec(10005, -1)));
        assert_eq!(dec(1, 0).checked_add(dec(-1, 0)), Some(dec(0, 0)));
        assert_eq!(dec(1, 300).checked_add(dec(1, -300)), None);
        assert_eq!(dec(i128::MAX, 0).checked_mul(dec(2, 0)), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngSeed, TestRunner};

        fn runner(cases: u32, seed: u64) -> TestRunner {
            TestRunner::new(Config {
                cases,
                rng_seed: RngSeed::Fixed(seed),
                failure_persistence: None,
                ..Config::default()
            })
        }

        /// Any integer register at any decimal scale 10^-d is the correctly rounded double of
        /// the decimal `raw / 10^d`, and JSON writes it with at most `d` decimals.
        #[test]
        fn decimal_scales_give_the_correctly_rounded_decimal() {
            runner(5000, 0xdec1_0001)
                .run(&(any::<i64>(), 0u32..=9), |(raw, d)| {
                    let scale = format!("1e-{d}").parse::<f64>().unwrap_or(1.0);
                    let got = affine(Decimal::from_int(i128::from(raw)), scale, 0.0);
                    let want: f64 = format!("{raw}e-{d}").parse().unwrap_or(f64::NAN);
                    prop_assert_eq!(got.map(f64::to_bits), Some(want.to_bits()));
                    let text = serde_json::to_string(&want).unwrap_or_default();
                    if raw.unsigned_abs() < 1 << 50 && !text.contains('e') {
                        let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
                        prop_assert!(
                            decimals <= d.max(1) as usize,
                            "{} at 1e-{}: {}",
                            raw,
                            d,
                            text
                        );
                    }
                    Ok(())
                })
                .unwrap();
        }

        /// A u32 whole part plus an f32 fraction sums to the double nearest the decimal
        /// `int + shortest(frac)`.
        #[test]
        fn int_plus_f32_fraction_sums_exactly() {
            runner(5000, 0xdec1_0002)
                .run(&(any::<u32>(), 0.0f32..1.0), |(int, frac)| {
                    let got = weighted_sum(&[(f64::from(int), 1.0), (f64::from(frac), 1.0)]);
                    let Some(f) = Decimal::of(f64::from(frac)) else {
                        return Err(TestCaseError::fail("finite fraction"));
                    };
                    let want = Decimal::from_int(i128::from(int))
                        .checked_add(f)
                        .map(Decimal::to_f64);
                    prop_assert_eq!(Some(got.to_bits()), want.map(f64::to_bits));
                    // Never further from the binary sum than the f32's own rounding (half an
                    // f32 ulp below 1) plus a few ulps of the sum.
                    let binary = f64::from(int) + f64::from(frac);
                    prop_assert!((got - binary).abs() <= 3e-8 + binary.abs() * 4.0 * f64::EPSILON);
                    Ok(())
                })
                .unwrap();
        }
    }
}
