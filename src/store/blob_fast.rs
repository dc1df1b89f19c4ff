//! The common shape of a batch blob (`blob`), read without a CBOR value tree (pure: no I/O):
//! an array of good samples `[point_id, value, dt_ms]`, definite lengths, the value an
//! integer, a float of any width, a bool, text or null. The store reads back every batch it
//! seals at ingest (issue 13: the general decoder was a tenth of the CPU per reading,
//! bench-results/cpu_round7.txt). Anything else (a bad sample, a NaN or infinity, an unknown
//! point, a kind mismatch, trailing bytes, anything unusual) is not read here: `None` sends the
//! blob to the general decoder, which gives the same samples or the error.

use super::blob::{RawSample, ValueKind};
use crate::model::{Quality, Value};

/// The samples of `blob`, or `None`: not the common shape (use `blob::decode`).
pub(super) fn decode(
    blob: &[u8],
    kind_of: &mut dyn FnMut(i64) -> Option<ValueKind>,
) -> Option<Vec<RawSample>> {
    let mut r = Reader { b: blob, at: 0 };
    let (major, n) = r.head()?;
    if major != ARRAY {
        return None;
    }
    // Each sample takes at least 4 bytes: a count beyond that is not this blob's.
    let n = usize::try_from(n).ok().filter(|n| *n <= blob.len() / 4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if r.head()? != (ARRAY, 3) {
            return None;
        }
        let point_id = r.int()?;
        let value = r.value(kind_of(point_id)?)?;
        let dt_ms = r.int()?;
        out.push(RawSample {
            point_id,
            value,
            dt_ms,
            quality: Quality::Good,
        });
    }
    (r.at == blob.len()).then_some(out)
}

const UINT: u8 = 0;
const NINT: u8 = 1;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const SIMPLE: u8 = 7;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    /// Major type and argument of the next item (definite lengths only); for major 7 the
    /// argument is the simple value or the float's bits.
    fn head(&mut self) -> Option<(u8, u64)> {
        let first = *self.take(1)?.first()?;
        let (major, info) = (first >> 5, first & 31);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => self
                .take(1 << (info - 24))?
                .iter()
                .fold(0u64, |a, x| (a << 8) | u64::from(*x)),
            _ => return None,
        };
        Some((major, arg))
    }

    /// An integer that fits i64 (what `blob::int` accepts).
    fn int(&mut self) -> Option<i64> {
        match self.head()? {
            (UINT, a) => i64::try_from(a).ok(),
            (NINT, a) => i64::try_from(a).ok().map(|a| -1 - a),
            _ => None,
        }
    }

    /// The value slot for a point of `kind`.
    fn value(&mut self, kind: ValueKind) -> Option<Option<Value>> {
        let start = self.at;
        let first = *self.b.get(start)?;
        let (major, arg) = self.head()?;
        Some(Some(match (kind, major) {
            (_, SIMPLE) if first == 0xf6 => return Some(None),
            (ValueKind::Bool, SIMPLE) if first == 0xf4 || first == 0xf5 => {
                Value::Bool(first == 0xf5)
            }
            (ValueKind::Int, UINT) => Value::Int(i64::try_from(arg).ok()?),
            (ValueKind::Int, NINT) => Value::Int(-1 - i64::try_from(arg).ok()?),
            (ValueKind::UInt, UINT) => Value::UInt(arg),
            (ValueKind::Float, SIMPLE) => Value::Float(float(first, arg)?),
            (ValueKind::Text, TEXT) => {
                let bytes = self.take(usize::try_from(arg).ok()?)?;
                Value::Text(std::str::from_utf8(bytes).ok()?.to_string())
            }
            _ => return None,
        }))
    }
}

/// A finite float of the width `first` names (half, single, double); `None` for anything
/// else, NaN and infinities included.
fn float(first: u8, bits: u64) -> Option<f64> {
    let x = match first {
        0xf9 => half(u16::try_from(bits).ok()?)?,
        0xfa => f64::from(f32::from_bits(u32::try_from(bits).ok()?)),
        0xfb => f64::from_bits(bits),
        _ => return None,
    };
    x.is_finite().then_some(x)
}

/// IEEE 754 half precision, finite values only.
fn half(h: u16) -> Option<f64> {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => Some(sign * frac * (-24f64).exp2()),
        31 => None,
        _ => Some(sign * (1.0 + frac / 1024.0) * f64::from(exp - 15).exp2()),
    }
}

#[cfg(test)]
mod tests {
    //! The fast reader gives exactly what the general decoder gives, or steps aside.

    use super::super::blob;
    use super::*;

    fn sample(point_id: i64, value: Option<Value>, dt_ms: i64) -> RawSample {
        RawSample {
            point_id,
            value,
            dt_ms,
            quality: Quality::Good,
        }
    }

    fn kinds(id: i64) -> Option<ValueKind> {
        ValueKind::from_code(id.rem_euclid(10)).filter(|k| *k != ValueKind::None)
    }

    #[test]
    fn reads_what_the_general_decoder_reads() {
        let mut floats = vec![
            0.0,
            -0.0,
            1.5,
            -2.25,
            0.1,
            65504.0,
            6.0e-8,
            1e-300,
            3.402_823_5e38,
            1e300,
        ];
        floats.extend((0..200).map(|i| f64::from(i as f32 * 0.37) - 20.0));
        floats.extend((0..200).map(|i| f64::from(i) / 1024.0));
        let mut samples = Vec::new();
        for (i, x) in floats.iter().enumerate() {
            samples.push(sample(
                14 + 10 * i as i64,
                Some(Value::Float(*x)),
                i as i64 % 3,
            ));
        }
        for (i, v) in [
            0i64,
            1,
            -1,
            23,
            24,
            -25,
            255,
            256,
            65_536,
            i64::MIN,
            i64::MAX,
        ]
        .iter()
        .enumerate()
        {
            samples.push(sample(
                12 + 10 * i as i64,
                Some(Value::Int(*v)),
                -(i as i64),
            ));
        }
        for u in [0u64, 24, u64::MAX] {
            samples.push(sample(13, Some(Value::UInt(u)), 0));
        }
        samples.push(sample(11, Some(Value::Bool(true)), 0));
        samples.push(sample(21, Some(Value::Bool(false)), 0));
        samples.push(sample(15, Some(Value::Text("ärger \"x\"".into())), 0));
        samples.push(sample(25, Some(Value::Text(String::new())), 0));
        samples.push(sample(-6, None, 0));
        samples.push(sample(i64::MAX - 3, Some(Value::Float(1.0)), i64::MAX));
        let b = blob::encode(&samples);
        let fast = decode(&b, &mut kinds).expect("the common shape");
        assert_eq!(fast, blob::decode(&b, &mut kinds).unwrap());
        assert_eq!(fast, samples);
        // Through `blob::decode` too (it takes this path).
        assert_eq!(blob::decode(&b, &mut kinds).unwrap(), samples);
    }

    #[test]
    fn steps_aside_for_anything_else() {
        let bad = RawSample {
            quality: Quality::Bad(crate::model::BadReason::Timeout),
            ..sample(14, None, 0)
        };
        let cases: Vec<Vec<u8>> = vec![
            blob::encode(&[sample(14, Some(Value::Float(1.0)), 0), bad]),
            blob::encode(&[sample(14, Some(Value::Float(f64::NAN)), 0)]),
            blob::encode(&[sample(14, Some(Value::Float(f64::INFINITY)), 0)]),
            blob::encode(&[sample(14, Some(Value::Int(3)), 0)]), // kind mismatch
            blob::encode(&[sample(10, Some(Value::Int(3)), 0)]), // unknown point
            {
                let mut b = blob::encode(&[sample(12, Some(Value::Int(3)), 0)]);
                b.push(0);
                b
            },
            vec![0x9f, 0x83, 0x0c, 0x03, 0x00, 0xff], // indefinite length
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // hostile count
            vec![0x81, 0x83, 0x0c, 0x7a, 0xff, 0xff, 0xff, 0xff, 0x00], // text past the end
            vec![],
        ];
        for b in cases {
            assert_eq!(decode(&b, &mut kinds), None, "{b:02x?}");
        }
        assert_eq!(half(0x7c00), None);
        assert_eq!(half(0x0001), Some((-24f64).exp2()));
    }
}
