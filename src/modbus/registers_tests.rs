//! Fixtures are written as the registers appear on the wire, in hex, one row per case.
//! Every row that decodes to a value the encoder can reproduce is also round-tripped.

use super::*;
use crate::model::{DataType as T, WordOrder as O};

/// "4049 0FDB" -> [0x4049, 0x0FDB]
fn regs(hex: &str) -> Vec<u16> {
    hex.split_whitespace()
        .map(|w| u16::from_str_radix(w, 16).unwrap())
        .collect()
}

fn hex(regs: &[u16]) -> String {
    regs.iter()
        .map(|r| format!("{r:04X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug)]
enum Want {
    V(Value),
    NaN,
    Err(DecodeError),
}
use Want::*;

const RT: bool = true; // encode(decoded) must give the same registers back
const NO: bool = false;

fn u(v: u64) -> Want {
    V(Value::UInt(v))
}
fn i(v: i64) -> Want {
    V(Value::Int(v))
}
fn f(v: f64) -> Want {
    V(Value::Float(v))
}
fn b(v: bool) -> Want {
    V(Value::Bool(v))
}
fn s(v: &str) -> Want {
    V(Value::Text(v.to_string()))
}

#[rustfmt::skip]
fn decode_rows() -> Vec<(T, O, &'static str, Want, bool)> {
    let pi32 = std::f32::consts::PI as f64;
    let pi64 = std::f64::consts::PI;
    vec![
        // Bits: a bit-table value is 0 or 1; bit n of a register counts from the LSB.
        (T::Bool, O::Abcd, "0001", b(true), RT),
        (T::Bool, O::Abcd, "0000", b(false), RT),
        (T::BitOfRegister(0), O::Abcd, "0001", b(true), RT),
        (T::BitOfRegister(0), O::Abcd, "FFFE", b(false), NO),
        (T::BitOfRegister(15), O::Abcd, "8000", b(true), RT),
        (T::BitOfRegister(15), O::Abcd, "7FFF", b(false), NO),
        (T::BitOfRegister(7), O::Abcd, "0080", b(true), RT),
        (T::BitOfRegister(16), O::Abcd, "FFFF", Err(DecodeError::BitIndex(16)), NO),
        // u16 / i16: word order is moot for one register, byte swap is not.
        (T::U16, O::Abcd, "1234", u(0x1234), RT),
        (T::U16, O::Cdab, "1234", u(0x1234), RT),
        (T::U16, O::Badc, "3412", u(0x1234), RT),
        (T::U16, O::Dcba, "3412", u(0x1234), RT),
        (T::U16, O::Abcd, "FFFF", u(65535), RT),
        (T::I16, O::Abcd, "FFFE", i(-2), RT),
        (T::I16, O::Cdab, "FFFE", i(-2), RT),
        (T::I16, O::Badc, "FEFF", i(-2), RT),
        (T::I16, O::Dcba, "FEFF", i(-2), RT),
        (T::I16, O::Abcd, "8000", i(-32768), RT),
        (T::I16, O::Badc, "0080", i(-32768), RT),
        (T::I16, O::Abcd, "7FFF", i(32767), RT),
        // u32 123456789 = 0x075BCD15 in the four orders.
        (T::U32, O::Abcd, "075B CD15", u(123_456_789), RT),
        (T::U32, O::Cdab, "CD15 075B", u(123_456_789), RT),
        (T::U32, O::Badc, "5B07 15CD", u(123_456_789), RT),
        (T::U32, O::Dcba, "15CD 5B07", u(123_456_789), RT),
        // u32 above 2^31 stays positive.
        (T::U32, O::Abcd, "DEAD BEEF", u(3_735_928_559), RT),
        (T::U32, O::Cdab, "BEEF DEAD", u(3_735_928_559), RT),
        (T::U32, O::Badc, "ADDE EFBE", u(3_735_928_559), RT),
        (T::U32, O::Dcba, "EFBE ADDE", u(3_735_928_559), RT),
        (T::U32, O::Abcd, "8000 0000", u(2_147_483_648), RT),
        (T::U32, O::Abcd, "FFFF FFFF", u(4_294_967_295), RT),
        // i32 -123456789 = 0xF8A432EB.
        (T::I32, O::Abcd, "F8A4 32EB", i(-123_456_789), RT),
        (T::I32, O::Cdab, "32EB F8A4", i(-123_456_789), RT),
        (T::I32, O::Badc, "A4F8 EB32", i(-123_456_789), RT),
        (T::I32, O::Dcba, "EB32 A4F8", i(-123_456_789), RT),
        (T::I32, O::Abcd, "8000 0000", i(i32::MIN as i64), RT),
        (T::I32, O::Cdab, "FFFF 7FFF", i(i32::MAX as i64), RT),
        // u64 0x0123456789ABCDEF and extremes.
        (T::U64, O::Abcd, "0123 4567 89AB CDEF", u(0x0123_4567_89AB_CDEF), RT),
        (T::U64, O::Cdab, "CDEF 89AB 4567 0123", u(0x0123_4567_89AB_CDEF), RT),
        (T::U64, O::Badc, "2301 6745 AB89 EFCD", u(0x0123_4567_89AB_CDEF), RT),
        (T::U64, O::Dcba, "EFCD AB89 6745 2301", u(0x0123_4567_89AB_CDEF), RT),
        (T::U64, O::Abcd, "FFFF FFFF FFFF FFFF", u(u64::MAX), RT),
        (T::U64, O::Abcd, "8000 0000 0000 0000", u(1 << 63), RT),
        (T::U64, O::Dcba, "0000 0000 0000 0000", u(0), RT),
        // i64 extremes and a small negative.
        (T::I64, O::Abcd, "8000 0000 0000 0000", i(i64::MIN), RT),
        (T::I64, O::Cdab, "0000 0000 0000 8000", i(i64::MIN), RT),
        (T::I64, O::Badc, "0080 0000 0000 0000", i(i64::MIN), RT),
        (T::I64, O::Dcba, "0000 0000 0000 0080", i(i64::MIN), RT),
        (T::I64, O::Abcd, "7FFF FFFF FFFF FFFF", i(i64::MAX), RT),
        (T::I64, O::Dcba, "FFFF FFFF FFFF FF7F", i(i64::MAX), RT),
        (T::I64, O::Abcd, "FFFF FFFF FFFF FFFE", i(-2), RT),
        (T::I64, O::Cdab, "FFFE FFFF FFFF FFFF", i(-2), RT),
        (T::I64, O::Badc, "FFFF FFFF FFFF FEFF", i(-2), RT),
        (T::I64, O::Dcba, "FEFF FFFF FFFF FFFF", i(-2), RT),
        // f32 pi = 0x40490FDB, -1.5 = 0xBFC00000, NaN, infinities.
        (T::F32, O::Abcd, "4049 0FDB", f(pi32), RT),
        (T::F32, O::Cdab, "0FDB 4049", f(pi32), RT),
        (T::F32, O::Badc, "4940 DB0F", f(pi32), RT),
        (T::F32, O::Dcba, "DB0F 4940", f(pi32), RT),
        (T::F32, O::Abcd, "BFC0 0000", f(-1.5), RT),
        (T::F32, O::Cdab, "0000 BFC0", f(-1.5), RT),
        (T::F32, O::Abcd, "0000 0000", f(0.0), RT),
        (T::F32, O::Abcd, "7FC0 0000", NaN, RT),
        (T::F32, O::Cdab, "0000 7FC0", NaN, RT),
        (T::F32, O::Dcba, "0000 C07F", NaN, RT),
        (T::F32, O::Abcd, "7F80 0000", f(f64::INFINITY), RT),
        (T::F32, O::Abcd, "FF80 0000", f(f64::NEG_INFINITY), RT),
        (T::F32, O::Badc, "80FF 0000", f(f64::NEG_INFINITY), RT),
        // f64 pi = 0x400921FB54442D18, NaN, infinity.
        (T::F64, O::Abcd, "4009 21FB 5444 2D18", f(pi64), RT),
        (T::F64, O::Cdab, "2D18 5444 21FB 4009", f(pi64), RT),
        (T::F64, O::Badc, "0940 FB21 4454 182D", f(pi64), RT),
        (T::F64, O::Dcba, "182D 4454 FB21 0940", f(pi64), RT),
        (T::F64, O::Abcd, "C059 0000 0000 0000", f(-100.0), RT),
        (T::F64, O::Abcd, "7FF8 0000 0000 0000", NaN, RT),
        (T::F64, O::Abcd, "7FF0 0000 0000 0000", f(f64::INFINITY), RT),
        (T::F64, O::Cdab, "0000 0000 0000 FFF0", f(f64::NEG_INFINITY), RT),
        // BCD: digits per nibble; a bad digit names the register as on the wire.
        (T::Bcd16, O::Abcd, "1234", u(1234), RT),
        (T::Bcd16, O::Badc, "3412", u(1234), RT),
        (T::Bcd16, O::Abcd, "9999", u(9999), RT),
        (T::Bcd16, O::Abcd, "0000", u(0), RT),
        (T::Bcd16, O::Abcd, "12A4", Err(DecodeError::Bcd(0x12A4)), NO),
        (T::Bcd16, O::Badc, "A412", Err(DecodeError::Bcd(0xA412)), NO),
        (T::Bcd16, O::Abcd, "F000", Err(DecodeError::Bcd(0xF000)), NO),
        (T::Bcd32, O::Abcd, "1234 5678", u(12_345_678), RT),
        (T::Bcd32, O::Cdab, "5678 1234", u(12_345_678), RT),
        (T::Bcd32, O::Badc, "3412 7856", u(12_345_678), RT),
        (T::Bcd32, O::Dcba, "7856 3412", u(12_345_678), RT),
        (T::Bcd32, O::Abcd, "9999 9999", u(99_999_999), RT),
        (T::Bcd32, O::Abcd, "0000 0042", u(42), RT),
        (T::Bcd32, O::Abcd, "1234 56F8", Err(DecodeError::Bcd(0x56F8)), NO),
        (T::Bcd32, O::Abcd, "1B34 5678", Err(DecodeError::Bcd(0x1B34)), NO),
        (T::Bcd32, O::Cdab, "56F8 1234", Err(DecodeError::Bcd(0x56F8)), NO),
        (T::Bcd32, O::Dcba, "7856 341C", Err(DecodeError::Bcd(0x341C)), NO),
        // BCD48: twelve digits in three registers, every order; a bad nibble names the wire
        // register, never a wrong total.
        (T::Bcd48, O::Abcd, "0000 9876 5432", u(98_765_432), RT),
        (T::Bcd48, O::Cdab, "5432 9876 0000", u(98_765_432), RT),
        (T::Bcd48, O::Badc, "0000 7698 3254", u(98_765_432), RT),
        (T::Bcd48, O::Dcba, "3254 7698 0000", u(98_765_432), RT),
        (T::Bcd48, O::Abcd, "1234 5678 9012", u(123_456_789_012), RT),
        (T::Bcd48, O::Cdab, "9012 5678 1234", u(123_456_789_012), RT),
        (T::Bcd48, O::Badc, "3412 7856 1290", u(123_456_789_012), RT),
        (T::Bcd48, O::Dcba, "1290 7856 3412", u(123_456_789_012), RT),
        (T::Bcd48, O::Abcd, "9999 9999 9999", u(999_999_999_999), RT),
        (T::Bcd48, O::Abcd, "0000 0000 0000", u(0), RT),
        (T::Bcd48, O::Abcd, "F000 0000 0000", Err(DecodeError::Bcd(0xF000)), NO),
        (T::Bcd48, O::Abcd, "0000 98A6 5432", Err(DecodeError::Bcd(0x98A6)), NO),
        (T::Bcd48, O::Cdab, "5432 98A6 0000", Err(DecodeError::Bcd(0x98A6)), NO),
        (T::Bcd48, O::Badc, "0000 7698 32B4", Err(DecodeError::Bcd(0x32B4)), NO),
        (T::Bcd48, O::Dcba, "3254 76F8 0000", Err(DecodeError::Bcd(0x76F8)), NO),
        (T::Bcd48, O::Dcba, "3254 7698 000C", Err(DecodeError::Bcd(0x000C)), NO),
        // INTREAL: u32 integer part then f32 fraction, each half in the point's order; one f64
        // at the digits the fraction carries (987654 + 0.32f32 is 987654.32).
        (T::IntReal, O::Abcd, "000F 1206 3EA3 D70A", f(987_654.32), RT),
        (T::IntReal, O::Cdab, "1206 000F D70A 3EA3", f(987_654.32), RT),
        (T::IntReal, O::Badc, "0F00 0612 A33E 0AD7", f(987_654.32), RT),
        (T::IntReal, O::Dcba, "0612 0F00 0AD7 A33E", f(987_654.32), RT),
        // Above 2^24 (where an f32 total loses its fraction) and at the top of the u32.
        (T::IntReal, O::Abcd, "0100 0001 3E80 0000", f(16_777_217.25), RT),
        (T::IntReal, O::Cdab, "0001 0100 0000 3E80", f(16_777_217.25), RT),
        (T::IntReal, O::Badc, "0001 0100 803E 0000", f(16_777_217.25), RT),
        (T::IntReal, O::Dcba, "0100 0001 0000 803E", f(16_777_217.25), RT),
        (T::IntReal, O::Abcd, "FFFF FFFF 3F00 0000", f(4_294_967_295.5), RT),
        (T::IntReal, O::Dcba, "FFFF FFFF 0000 003F", f(4_294_967_295.5), RT),
        (T::IntReal, O::Abcd, "0000 0000 0000 0000", f(0.0), RT),
        // A fraction outside [0, 1) is bad quality, never a wrong total.
        (T::IntReal, O::Abcd, "000F 1206 3F80 0000", Err(DecodeError::Fraction(1.0)), NO),
        (T::IntReal, O::Abcd, "000F 1206 BF00 0000", Err(DecodeError::Fraction(-0.5)), NO),
        (T::IntReal, O::Cdab, "1206 000F 0000 4120", Err(DecodeError::Fraction(10.0)), NO),
        (T::IntReal, O::Dcba, "0612 0F00 0000 807F", Err(DecodeError::Fraction(f32::INFINITY)), NO),
        (T::IntReal, O::Abcd, "000F 1206 3EA3", Err(DecodeError::Short { expected: 4, got: 3 }), NO),
        (T::Bcd48, O::Abcd, "0000 0000", Err(DecodeError::Short { expected: 3, got: 2 }), NO),
        // Strings: two ASCII bytes per register, NUL or space padded.
        (T::String(8), O::Abcd, "4741 5344 5455 0000", s("GASDTU"), RT),
        (T::String(8), O::Abcd, "4741 5344 5455 2020", s("GASDTU"), NO),
        (T::String(8), O::Abcd, "4741 5344 5400 5858", s("GASDT"), NO),
        (T::String(8), O::Badc, "4147 4453 5554 0000", s("GASDTU"), RT),
        (T::String(6), O::Cdab, "5455 5344 4741", s("GASDTU"), RT),
        (T::String(5), O::Abcd, "4142 4344 4500", s("ABCDE"), RT),
        (T::String(5), O::Abcd, "4142 4344 4546", s("ABCDE"), NO),
        (T::String(4), O::Abcd, "0000 0000", s(""), RT),
        // Short input is an error, never a panic.
        (T::U16, O::Abcd, "", Err(DecodeError::Short { expected: 1, got: 0 }), NO),
        (T::U32, O::Abcd, "1234", Err(DecodeError::Short { expected: 2, got: 1 }), NO),
        (T::F32, O::Cdab, "1234", Err(DecodeError::Short { expected: 2, got: 1 }), NO),
        (T::F64, O::Abcd, "0000 0000 0000", Err(DecodeError::Short { expected: 4, got: 3 }), NO),
        (T::I64, O::Dcba, "0000", Err(DecodeError::Short { expected: 4, got: 1 }), NO),
        (T::Bcd32, O::Abcd, "1234", Err(DecodeError::Short { expected: 2, got: 1 }), NO),
        (T::String(8), O::Abcd, "4741 5344 5455", Err(DecodeError::Short { expected: 4, got: 3 }), NO),
        (T::Bool, O::Abcd, "", Err(DecodeError::Short { expected: 1, got: 0 }), NO),
    ]
}

#[test]
fn decode_table() {
    let mut failures = Vec::new();
    for (n, (t, o, raw, want, _)) in decode_rows().into_iter().enumerate() {
        let got = decode_raw(t, o, &regs(raw));
        let ok = match (&want, &got) {
            (V(w), Ok(g)) => w == g,
            (NaN, Ok(Value::Float(x))) => x.is_nan(),
            (Err(w), Result::Err(g)) => w == g,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "row {n}: {t} {o} [{raw}]: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn encode_round_trips_every_decodable_row() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, (t, o, raw, _, rt)) in decode_rows().into_iter().enumerate() {
        if !rt {
            continue;
        }
        let value = decode_raw(t, o, &regs(raw)).unwrap();
        match encode(t, o, 1.0, 0.0, &value) {
            Ok(back) if back == regs(raw) => checked += 1,
            other => failures.push(format!(
                "row {n}: {t} {o} [{raw}] -> {value:?} -> {:?}",
                other.map(|r| hex(&r))
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 60, "only {checked} rows round-tripped");
}

#[test]
fn every_type_and_order_is_covered() {
    let rows = decode_rows();
    let multi = [T::U32, T::I32, T::U64, T::I64, T::F32, T::F64, T::Bcd32];
    for t in multi {
        for o in [O::Abcd, O::Cdab, O::Badc, O::Dcba] {
            assert!(
                rows.iter()
                    .any(|r| r.0 == t && r.1 == o && matches!(r.3, V(_))),
                "no value row for {t} {o}"
            );
        }
    }
}

#[test]
fn intreal_nan_fraction_is_bad_in_every_order() {
    for (o, raw) in [
        (O::Abcd, "000F 1206 7FC0 0000"),
        (O::Cdab, "1206 000F 0000 7FC0"),
        (O::Badc, "0F00 0612 C07F 0000"),
        (O::Dcba, "0612 0F00 0000 C07F"),
    ] {
        match decode_raw(T::IntReal, o, &regs(raw)) {
            Result::Err(DecodeError::Fraction(x)) => assert!(x.is_nan(), "{o}: {x}"),
            other => panic!("{o} [{raw}]: {other:?}"),
        }
    }
    let e = decode_raw(T::IntReal, O::Abcd, &regs("000F 1206 3F80 0000")).unwrap_err();
    assert_eq!(e.to_string(), "INTREAL fraction 1 is outside [0, 1)");
}

#[test]
fn intreal_fraction_keeps_the_digits_its_f32_carries() {
    // (integer, fraction as f32, the one f64 expected)
    let rows: [(u32, f32, f64); 6] = [
        (987_654, 0.32, 987_654.32),
        (16_777_217, 0.25, 16_777_217.25),
        (123_456_789, 0.001, 123_456_789.001),
        (0, 0.1, 0.1),
        (7, 0.0, 7.0),
        (4_294_967_295, 0.99999994, 4_294_967_295.999_999_94),
    ];
    for (int, frac, want) in rows {
        let mut r = int.to_be_bytes().to_vec();
        r.extend_from_slice(&frac.to_be_bytes());
        let words: Vec<u16> = r
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(
            decode_raw(T::IntReal, O::Abcd, &words),
            Ok(Value::Float(want)),
            "{int} + {frac}"
        );
    }
    // Carrying a fraction that rounds to 1.0f32 into the integer part.
    assert_eq!(
        encode(T::IntReal, O::Abcd, 1.0, 0.0, &Value::Float(41.999_999_999)).map(|r| hex(&r)),
        Ok("0000 002A 0000 0000".to_string())
    );
}

#[test]
fn implied_decimals_divide_exactly() {
    // `decimals = k` is scale 10^-k; the count is divided by 10^k, so the value is the double
    // nearest to the decimal the meter shows (its shortest form prints those digits).
    #[rustfmt::skip]
    let rows: Vec<(T, O, &str, u8, &str)> = vec![
        (T::Bcd48, O::Abcd, "0000 9876 5432", 4, "9876.5432"),
        (T::Bcd48, O::Cdab, "5432 9876 0000", 4, "9876.5432"),
        (T::Bcd48, O::Badc, "0000 7698 3254", 4, "9876.5432"),
        (T::Bcd48, O::Dcba, "3254 7698 0000", 4, "9876.5432"),
        (T::Bcd48, O::Abcd, "9999 9999 9999", 3, "999999999.999"),
        (T::Bcd48, O::Abcd, "0000 0000 0001", 4, "0.0001"),
        (T::Bcd48, O::Abcd, "1234 5678 9012", 0, "123456789012"),
        (T::I16, O::Abcd, "DCDA", 1, "-899.8"),
        (T::U16, O::Abcd, "05DE", 1, "150.2"),
        (T::U32, O::Abcd, "0000 0FA2", 1, "400.2"),
        (T::Bcd32, O::Abcd, "0012 3456", 2, "1234.56"),
    ];
    for (t, o, raw, k, want) in rows {
        let mut p = point(t, o, decimal_scale(k), 0.0);
        if k == 0 {
            p.scale = 1.0;
        }
        let got = decode_point(&p, &regs(raw)).unwrap();
        assert_eq!(got.to_string(), want, "{t} {o} [{raw}] decimals {k}");
        // And back to the same registers.
        assert_eq!(hex(&encode_point(&p, &got).unwrap()), raw, "{t} {o} {want}");
    }
    assert_eq!(decimals_of(0.1), Some(1));
    assert_eq!(decimals_of(0.0001), Some(4));
    assert_eq!(decimals_of(decimal_scale(12)), Some(12));
    assert_eq!(decimals_of(0.5), None);
    assert_eq!(decimals_of(1.0), None);
}

#[test]
fn scale_from_decimals_table() {
    // (raw value, decimals reading, scale, offset, expected)
    let bad = |v: &str| {
        Result::Err(DecodeError::Decimals {
            point: "dp".into(),
            value: v.into(),
        })
    };
    type Row = (Value, Value, f64, f64, Result<Value, DecodeError>);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (Value::Int(-8998), Value::UInt(1), 1.0, 0.0, Ok(Value::Float(-899.8))),
        (Value::Int(1502), Value::UInt(1), 1.0, 0.0, Ok(Value::Float(150.2))),
        (Value::Int(1502), Value::UInt(3), 1.0, 0.0, Ok(Value::Float(1.502))),
        (Value::Int(1502), Value::Int(0), 1.0, 0.0, Ok(Value::Int(1502))),
        (Value::Int(32767), Value::UInt(9), 1.0, 0.0, Ok(Value::Float(0.000032767))),
        // The device's decimals, then the point's own unit conversion (bar -> kPa).
        (Value::Int(4002), Value::UInt(3), 100.0, 0.0, Ok(Value::Float(400.2))),
        (Value::Int(1502), Value::Float(2.0), 1.0, 0.0, Ok(Value::Float(15.02))),
        // Out of range or not whole: bad, never wrong.
        (Value::Int(1502), Value::UInt(10), 1.0, 0.0, bad("10")),
        (Value::Int(1502), Value::Int(-1), 1.0, 0.0, bad("-1")),
        (Value::Int(1502), Value::UInt(65535), 1.0, 0.0, bad("65535")),
        (Value::Int(1502), Value::Float(1.5), 1.0, 0.0, bad("1.5")),
        (Value::Int(1502), Value::Float(f64::NAN), 1.0, 0.0, bad("NaN")),
        (Value::Int(1502), Value::Bool(true), 1.0, 0.0, bad("1")),
        (Value::Int(1502), Value::Text("2".into()), 1.0, 0.0, bad("\"2\"")),
    ];
    for (raw, dec, sc, off, want) in rows {
        let got = apply_decimals(raw.clone(), "dp", &dec, sc, off);
        match (&got, &want) {
            (Ok(Value::Float(g)), Ok(Value::Float(w))) => {
                assert!((g - w).abs() < 1e-9, "{raw:?} dec {dec:?}: {g} != {w}")
            }
            _ => assert_eq!(got, want, "{raw:?} dec {dec:?}"),
        }
    }
    // Exactly the meter's digits when no unit conversion follows.
    let v = apply_decimals(Value::Int(-8998), "dp", &Value::UInt(1), 1.0, 0.0).unwrap();
    assert_eq!(v.to_string(), "-899.8");
    let e = apply_decimals(
        Value::Int(1),
        "pressure_decimals",
        &Value::UInt(12),
        1.0,
        0.0,
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "decimals point `pressure_decimals` reads 12: decimals must be a whole number 0 to 9"
    );
}

#[test]
fn bcd_error_message_names_the_wire_register() {
    let e = decode_raw(T::Bcd32, O::Cdab, &regs("56F8 1234")).unwrap_err();
    assert_eq!(e.to_string(), "invalid BCD digit in register value 0x56F8");
    let e = decode_raw(T::U32, O::Abcd, &regs("1234")).unwrap_err();
    assert_eq!(e.to_string(), "expected 2 registers, got 1");
}

fn point(t: T, o: O, scale: f64, offset: f64) -> PointSpec {
    PointSpec {
        name: "p".into(),
        table: crate::model::Table::HoldingRegister,
        address: 0,
        data_type: t,
        order: o,
        scale,
        offset,
        unit: None,
        writable: true,
        scale_from: None,
        publish: true,
    }
}

#[test]
fn scale_and_offset() {
    // (type, registers, scale, offset, expected engineering value, encodes back)
    #[rustfmt::skip]
    let rows: Vec<(T, &str, f64, f64, Value)> = vec![
        (T::U16, "04D2", 0.1, -10.0, Value::Float(113.4)),
        (T::I16, "FF9C", 0.01, 0.0, Value::Float(-1.0)),
        (T::I16, "0064", 1.0, 273.15, Value::Float(373.15)),
        (T::U32, "DEAD BEEF", 0.001, 0.0, Value::Float(3_735_928.559)),
        (T::F32, "BFC0 0000", 2.0, 1.0, Value::Float(-2.0)),
        (T::Bcd16, "0250", 0.1, 0.0, Value::Float(25.0)),
        // Identity scaling keeps integers exact (no trip through f64).
        (T::U64, "FFFF FFFF FFFF FFFF", 1.0, 0.0, Value::UInt(u64::MAX)),
        (T::I64, "7FFF FFFF FFFF FFFF", 1.0, 0.0, Value::Int(i64::MAX)),
        (T::U64, "0020 0000 0000 0001", 1.0, 0.0, Value::UInt((1 << 53) + 1)),
        // Bits and text are never scaled.
        (T::BitOfRegister(2), "0004", 10.0, 5.0, Value::Bool(true)),
        (T::String(2), "4F4B", 10.0, 5.0, Value::Text("OK".into())),
    ];
    for (t, raw, sc, off, want) in rows {
        let p = point(t, O::Abcd, sc, off);
        let got = decode_point(&p, &regs(raw)).unwrap();
        match (&want, &got) {
            (Value::Float(w), Value::Float(g)) => {
                assert!((w - g).abs() < 1e-9, "{t} [{raw}] *{sc}+{off}: {g} != {w}")
            }
            _ => assert_eq!(want, got, "{t} [{raw}] *{sc}+{off}"),
        }
        let back = encode_point(&p, &got).unwrap();
        assert_eq!(hex(&back), raw, "{t} {got:?} *{sc}+{off} encodes back");
    }
}

#[test]
fn encode_rounds_scaled_values_to_the_nearest_count() {
    // 21.37 kPa at 0.01 kPa/count is 2137 counts, even though 21.37/0.01 is 2136.99...
    let r = encode(T::U16, O::Abcd, 0.01, 0.0, &Value::Float(21.37)).unwrap();
    assert_eq!(hex(&r), "0859");
    let r = encode(T::I32, O::Cdab, 0.1, 0.0, &Value::Float(-0.5)).unwrap();
    assert_eq!(hex(&r), "FFFB FFFF");
}

#[test]
fn encode_errors() {
    let oor = |t: T, v: Value| EncodeError::OutOfRange {
        value: v.to_string(),
        data_type: t,
    };
    #[rustfmt::skip]
    let rows: Vec<(T, f64, Value, EncodeError)> = vec![
        (T::U16, 1.0, Value::Int(65536), oor(T::U16, Value::Int(65536))),
        (T::U16, 1.0, Value::Int(-1), oor(T::U16, Value::Int(-1))),
        (T::I16, 1.0, Value::Int(-32769), oor(T::I16, Value::Int(-32769))),
        (T::I16, 1.0, Value::UInt(32768), oor(T::I16, Value::UInt(32768))),
        (T::U32, 1.0, Value::Int(-1), oor(T::U32, Value::Int(-1))),
        (T::U32, 1.0, Value::UInt(1 << 32), oor(T::U32, Value::UInt(1 << 32))),
        (T::I32, 1.0, Value::Int(1 << 31), oor(T::I32, Value::Int(1 << 31))),
        (T::I64, 1.0, Value::UInt(u64::MAX), oor(T::I64, Value::UInt(u64::MAX))),
        (T::U64, 1.0, Value::Int(-1), oor(T::U64, Value::Int(-1))),
        // 700 counts of 0.01 is 70000: does not fit a u16 once the scale is undone.
        (T::U16, 0.01, Value::Float(700.0), oor(T::U16, Value::Float(700.0))),
        (T::U16, 1.0, Value::Float(f64::NAN), oor(T::U16, Value::Float(f64::NAN))),
        (T::I32, 1.0, Value::Float(f64::INFINITY), oor(T::I32, Value::Float(f64::INFINITY))),
        (T::F32, 1.0, Value::Float(1e300), oor(T::F32, Value::Float(1e300))),
        (T::Bcd16, 1.0, Value::Int(10_000), oor(T::Bcd16, Value::Int(10_000))),
        (T::Bcd16, 1.0, Value::Int(-1), oor(T::Bcd16, Value::Int(-1))),
        (T::Bcd32, 1.0, Value::Int(100_000_000), oor(T::Bcd32, Value::Int(100_000_000))),
        (T::Bcd48, 1.0, Value::Int(1_000_000_000_000), oor(T::Bcd48, Value::Int(1_000_000_000_000))),
        (T::Bcd48, 1.0, Value::Int(-1), oor(T::Bcd48, Value::Int(-1))),
        (T::IntReal, 1.0, Value::Float(-0.5), oor(T::IntReal, Value::Float(-0.5))),
        (T::IntReal, 1.0, Value::Float(4_294_967_296.0), oor(T::IntReal, Value::Float(4_294_967_296.0))),
        (T::IntReal, 1.0, Value::Float(f64::NAN), oor(T::IntReal, Value::Float(f64::NAN))),
        (T::IntReal, 1.0, Value::Text("1".into()), EncodeError::WrongKind { kind: "text", data_type: T::IntReal }),
        // Wrong bit values.
        (T::Bool, 1.0, Value::Int(2), oor(T::Bool, Value::Int(2))),
        (T::Bool, 1.0, Value::Int(-1), oor(T::Bool, Value::Int(-1))),
        (T::Bool, 1.0, Value::Float(0.5), oor(T::Bool, Value::Float(0.5))),
        (T::BitOfRegister(3), 1.0, Value::UInt(2), oor(T::BitOfRegister(3), Value::UInt(2))),
        (T::BitOfRegister(16), 1.0, Value::Bool(true), oor(T::BitOfRegister(16), Value::Bool(true))),
        // Text into numeric, numeric into text, strings that do not fit.
        (T::U16, 1.0, Value::Text("12".into()), EncodeError::WrongKind { kind: "text", data_type: T::U16 }),
        (T::F64, 1.0, Value::Text("1.5".into()), EncodeError::WrongKind { kind: "text", data_type: T::F64 }),
        (T::Bool, 1.0, Value::Text("on".into()), EncodeError::WrongKind { kind: "text", data_type: T::Bool }),
        (T::String(4), 1.0, Value::Int(12), EncodeError::WrongKind { kind: "numeric", data_type: T::String(4) }),
        (T::String(4), 1.0, Value::Text("GASDTU".into()), oor(T::String(4), Value::Text("GASDTU".into()))),
        (T::String(4), 1.0, Value::Text("µbar".into()), oor(T::String(4), Value::Text("µbar".into()))),
    ];
    for (t, sc, v, want) in rows {
        assert_eq!(
            encode(t, O::Abcd, sc, 0.0, &v),
            Result::Err(want),
            "{t} {v:?}"
        );
    }
}

#[test]
fn bits_ignore_scale_when_encoding() {
    for v in [
        Value::Bool(true),
        Value::Int(1),
        Value::UInt(1),
        Value::Float(1.0),
    ] {
        assert_eq!(
            encode(T::Bool, O::Abcd, 10.0, 3.0, &v),
            Ok(vec![1]),
            "{v:?}"
        );
        assert_eq!(
            encode(T::BitOfRegister(15), O::Dcba, 10.0, 3.0, &v),
            Ok(vec![0x8000]),
            "{v:?}"
        );
    }
    assert_eq!(
        encode(T::Bool, O::Abcd, 10.0, 0.0, &Value::Int(0)),
        Ok(vec![0])
    );
}

/// The fixed-width arrangement of the numeric types (`be`) is `to_be_bytes` for every word
/// order and width: each register distinct, so a swapped word or byte shows.
#[test]
fn fixed_width_bytes_equal_the_general_arrangement() {
    let wire = [0x0102u16, 0x0304, 0x0506, 0x0708];
    for order in [O::Abcd, O::Cdab, O::Badc, O::Dcba] {
        assert_eq!(
            be::<2>(&wire[..1], order).to_vec(),
            to_be_bytes(&wire[..1], order)
        );
        assert_eq!(
            be::<4>(&wire[..2], order).to_vec(),
            to_be_bytes(&wire[..2], order)
        );
        assert_eq!(
            be::<8>(&wire, order).to_vec(),
            to_be_bytes(&wire, order),
            "{order:?}"
        );
    }
    assert_eq!(
        be::<4>(&[0x0102], O::Abcd),
        [1, 2, 0, 0],
        "a missing register reads as zero"
    );
}
