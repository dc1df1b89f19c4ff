//! Property tests of the register codec (fixed seed, bounded cases): decoding arbitrary
//! registers never panics for any data type, word order or bit index; every exact type
//! round-trips registers → value → registers bit for bit; scaled integer registers round-trip
//! through scale and offset; encoding never panics on any value or scaling, and whatever it
//! encodes decodes back to the value (up to the type's resolution).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0DEC_0DE5),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn order() -> impl Strategy<Value = WordOrder> {
    prop_oneof![
        Just(WordOrder::Abcd),
        Just(WordOrder::Cdab),
        Just(WordOrder::Badc),
        Just(WordOrder::Dcba),
    ]
}

/// Every data type, including bit indexes and string lengths outside what config allows.
fn data_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::Bool),
        any::<u8>().prop_map(DataType::BitOfRegister),
        Just(DataType::U16),
        Just(DataType::I16),
        Just(DataType::U32),
        Just(DataType::I32),
        Just(DataType::U64),
        Just(DataType::I64),
        Just(DataType::F32),
        Just(DataType::F64),
        Just(DataType::Bcd16),
        Just(DataType::Bcd32),
        Just(DataType::Bcd48),
        Just(DataType::IntReal),
        (0..=300u16).prop_map(DataType::String),
    ]
}

/// The types whose registers → value → registers is the identity (every bit pattern).
fn exact_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::U16),
        Just(DataType::I16),
        Just(DataType::U32),
        Just(DataType::I32),
        Just(DataType::U64),
        Just(DataType::I64),
        Just(DataType::F32),
        Just(DataType::F64),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>().prop_map(Value::Float),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
        ]
        .prop_map(Value::Float),
        "[ -~]{0,40}".prop_map(Value::Text),
        "\\PC{0,8}".prop_map(Value::Text),
    ]
}

fn is_nan(v: &Value) -> bool {
    matches!(v, Value::Float(x) if x.is_nan())
}

proptest! {
    #![proptest_config(config(3000))]

    /// Arbitrary registers (too few, exact, too many) never panic any decoder, and a failure
    /// is one of the typed reasons that fits the input.
    #[test]
    fn decoding_arbitrary_registers_never_panics(
        t in data_type(),
        o in order(),
        regs in prop::collection::vec(any::<u16>(), 0..12),
        s in prop_oneof![Just(1.0), any::<f64>()],
        off in prop_oneof![Just(0.0), any::<f64>()],
    ) {
        let p = PointSpec {
            name: "p".into(),
            table: crate::model::Table::HoldingRegister,
            address: 0,
            data_type: t,
            order: o,
            scale: s,
            offset: off,
            unit: None,
            writable: false,
            scale_from: None,
            publish: true,
        };
        match decode_point(&p, &regs) {
            Ok(_) => prop_assert!(regs.len() >= t.width() as usize),
            Err(DecodeError::Short { expected, got }) => {
                prop_assert_eq!((expected, got), (t.width() as usize, regs.len()))
            }
            Err(DecodeError::Bcd(_)) => {
                prop_assert!(matches!(t, DataType::Bcd16 | DataType::Bcd32 | DataType::Bcd48))
            }
            Err(DecodeError::BitIndex(b)) => prop_assert!(b > 15),
            Err(DecodeError::Fraction(f)) => {
                prop_assert!(t == DataType::IntReal && !(0.0..1.0).contains(&f))
            }
            Err(e @ DecodeError::Decimals { .. }) => prop_assert!(false, "{}", e),
        }
    }

    /// An INTREAL is its integer part plus its fraction, or bad: never another number. Within
    /// f64 precision the value lies in [int, int + 1), and its integer part is the u32 itself.
    #[test]
    fn intreal_is_its_integer_plus_its_fraction_or_bad(
        o in order(),
        int in any::<u32>(),
        frac in prop_oneof![0.0..1.0f32, any::<f32>()],
    ) {
        let mut bytes = int.to_be_bytes().to_vec();
        bytes.extend_from_slice(&frac.to_be_bytes());
        // The registers as a device in order `o` sends them (each half in that order).
        let mut regs = from_be_bytes(&bytes[..4], o);
        regs.extend(from_be_bytes(&bytes[4..], o));
        match decode_raw(DataType::IntReal, o, &regs) {
            Ok(Value::Float(x)) => {
                prop_assert!((0.0..1.0).contains(&frac), "{} + {} gave {}", int, frac, x);
                prop_assert!(x >= int as f64 && x <= int as f64 + 1.0, "{} + {} gave {}", int, frac, x);
                prop_assert!((x - (int as f64 + frac as f64)).abs() <= 1e-6, "{} + {} gave {}", int, frac, x);
            }
            Ok(v) => prop_assert!(false, "not a float: {:?}", v),
            Err(DecodeError::Fraction(f)) => {
                prop_assert!(!(0.0..1.0).contains(&frac));
                prop_assert!(f.to_bits() == frac.to_bits());
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    /// registers → value → registers is the identity for every integer and float type in
    /// every word order (NaN payloads aside: a NaN stays a NaN).
    #[test]
    fn exact_types_round_trip_their_registers(
        t in exact_type(),
        o in order(),
        regs in prop::collection::vec(any::<u16>(), 4),
    ) {
        let regs = &regs[..t.width() as usize];
        let v = decode_raw(t, o, regs).unwrap();
        let back = encode(t, o, 1.0, 0.0, &v).unwrap();
        if is_nan(&v) {
            prop_assert!(is_nan(&decode_raw(t, o, &back).unwrap()));
        } else {
            prop_assert_eq!(back.as_slice(), regs);
        }
    }

    /// Valid BCD registers round-trip; a register with a digit above 9 is a `Bcd` error
    /// naming a register of the input.
    #[test]
    fn bcd_round_trips_or_names_the_bad_register(
        o in order(),
        regs in prop::collection::vec(any::<u16>(), 3),
    ) {
        for t in [DataType::Bcd16, DataType::Bcd32, DataType::Bcd48] {
            let regs = &regs[..t.width() as usize];
            match decode_raw(t, o, regs) {
                Ok(v) => prop_assert_eq!(encode(t, o, 1.0, 0.0, &v).unwrap(), regs.to_vec()),
                Err(DecodeError::Bcd(r)) => prop_assert!(regs.contains(&r)),
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
    }

    /// A scaled integer register (scale 0.001..1000, offset ±1e6) decodes to raw * scale +
    /// offset and encodes back to the same register.
    #[test]
    fn scaled_registers_round_trip(
        t in prop_oneof![Just(DataType::U16), Just(DataType::I16), Just(DataType::U32), Just(DataType::I32)],
        o in order(),
        regs in prop::collection::vec(any::<u16>(), 2),
        s in prop_oneof![0.001..1000.0f64, -1000.0..-0.001f64],
        off in -1.0e6..1.0e6f64,
    ) {
        let regs = &regs[..t.width() as usize];
        let raw = decode_raw(t, o, regs).unwrap().as_f64().unwrap();
        let v = scale(decode_raw(t, o, regs).unwrap(), s, off);
        let x = v.as_f64().unwrap();
        prop_assert!((x - (raw * s + off)).abs() <= 1e-9 * (raw * s + off).abs().max(1.0));
        prop_assert_eq!(encode(t, o, s, off, &v).unwrap(), regs.to_vec());
    }

    /// Encoding never panics on any value, type, order or scaling (zero, NaN and infinite
    /// scales included); whatever it encodes has the type's width and decodes back to the
    /// value up to the type's resolution.
    #[test]
    fn encoding_never_panics_and_what_it_encodes_decodes_back(
        t in data_type(),
        o in order(),
        v in value(),
        s in prop_oneof![Just(1.0), 0.01..100.0f64, any::<f64>()],
        off in prop_oneof![Just(0.0), -100.0..100.0f64, any::<f64>()],
    ) {
        let Ok(regs) = encode(t, o, s, off, &v) else { return Ok(()); };
        // Beyond "no panic", the round trip is promised for the scalings meters use (|scale|
        // 1e-6..1e6, |offset| up to 1e9): a scale of 1e130 puts every value below an f32
        // step, which is the scaling's loss, not the codec's.
        // Values within 1e300 (rescaling f64::MAX may round up to infinity).
        let huge = v.as_f64().is_some_and(|x| x.abs() > 1e300);
        if huge || !((1e-6..=1e6).contains(&s.abs()) && off.abs() <= 1e9) {
            return Ok(());
        }
        prop_assert_eq!(regs.len(), t.width() as usize);
        let back = decode_raw(t, o, &regs);
        let back = match back {
            Ok(b) => b,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "encoded {v:?} as {regs:?} but decoding fails: {e}"
                )));
            }
        };
        match (t, &v, &back) {
            (DataType::String(_), Value::Text(a), Value::Text(b)) => {
                prop_assert_eq!(a.trim_end_matches([' ', '\0']), b.as_str())
            }
            (DataType::Bool | DataType::BitOfRegister(_), _, Value::Bool(b)) => {
                prop_assert_eq!(Some(if *b { 1.0 } else { 0.0 }), v.as_f64())
            }
            // Integers into integer types, unscaled: exact.
            _ if s == 1.0
                && off == 0.0
                && !matches!(v, Value::Float(_))
                && !matches!(t, DataType::F32 | DataType::F64) =>
            {
                prop_assert_eq!(back.as_f64(), v.as_f64())
            }
            _ => {
                // Scaled or float: decode with the same scaling lands within half a count.
                let want = v.as_f64().unwrap();
                let got = scale(back.clone(), s, off).as_f64().unwrap();
                // Resolution: half a count of an integer register, the float's precision at
                // the raw (unscaled) magnitude, plus rounding of the scaling arithmetic.
                let arith = (want.abs() + off.abs()) * 1e-12;
                let tol = match t {
                    DataType::F32 => (want - off).abs() * 1.2e-7 + arith,
                    DataType::F64 => (want - off).abs() * 1e-15 + arith,
                    // The fraction's f32 steps (below 6e-8) and the f64 sum.
                    DataType::IntReal => s.abs() * 1.2e-7 + (want - off).abs() * 1e-15 + arith,
                    _ => s.abs() * 0.5 + arith,
                } + 1e-12;
                prop_assert!(
                    (want.is_nan() && got.is_nan()) || want == got || (got - want).abs() <= tol,
                    "{:?} {:?} scale {} offset {}: {:?} -> {} ({:?})", t, v, s, off, regs, got, back
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Regression fixtures: cases the properties found.

/// Found by `encoding_never_panics_and_what_it_encodes_decodes_back`: `true` written to a
/// U16 register scaled 0.01 was encoded raw (register 1) and read back as 0.01. A bool is the
/// engineering value 1, scaled like any number: register 100.
#[test]
fn regression_a_bool_to_a_scaled_register_is_scaled() {
    let regs = encode(
        DataType::U16,
        WordOrder::Abcd,
        0.01,
        0.0,
        &Value::Bool(true),
    )
    .unwrap();
    assert_eq!(regs, vec![100]);
    let back = scale(
        decode_raw(DataType::U16, WordOrder::Abcd, &regs).unwrap(),
        0.01,
        0.0,
    );
    assert!((back.as_f64().unwrap() - 1.0).abs() < 1e-12);
    // Unscaled, a bool is still the raw 0 or 1.
    assert_eq!(
        encode(DataType::U16, WordOrder::Abcd, 1.0, 0.0, &Value::Bool(true)).unwrap(),
        vec![1]
    );
}

/// Found by `encoding_never_panics_and_what_it_encodes_decodes_back`: a finite value through
/// a zero scale became NaN and was written as a NaN float. It is refused now.
#[test]
fn regression_a_finite_value_that_unscales_to_nan_is_refused() {
    for t in [DataType::F32, DataType::F64] {
        let e = encode(t, WordOrder::Abcd, 0.0, 0.0, &Value::Bool(false)).unwrap_err();
        assert!(matches!(e, EncodeError::OutOfRange { .. }), "{t}: {e}");
    }
    // NaN in, NaN out: a NaN value is written as a NaN.
    assert!(encode(
        DataType::F32,
        WordOrder::Abcd,
        1.0,
        0.0,
        &Value::Float(f64::NAN)
    )
    .is_ok());
}
