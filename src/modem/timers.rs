//! PSM and eDRX timer encodings (pure core): the 8-bit GPRS timer strings of `AT+CPSMS` and
//! `+CEREG` (T3412 extended = "GPRS Timer 3", 3GPP TS 24.008 10.5.7.4a; T3324 active time =
//! "GPRS Timer 2", 10.5.7.4) and the 4-bit eDRX value of `AT+CEDRXS` (24.008 10.5.5.32, NB-S1
//! mode), decoded to seconds / milliseconds and encoded back for the setters. The bit strings
//! are ASCII '0'/'1', most significant bit first; bits 8-6 are the unit, bits 5-1 the value.

use super::reply::ReplyError;

/// A decoded PSM timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Unit bits 111: the timer is deactivated (PSM off for T3324, no periodic TAU for T3412).
    Deactivated,
    Seconds(u64),
}

/// T3412 extended units (bits 8-6, index = unit bits), in seconds; `None` = deactivated.
const T3412_UNITS: [Option<u64>; 8] = [
    Some(600),       // 000 10 min
    Some(3_600),     // 001 1 h
    Some(36_000),    // 010 10 h
    Some(2),         // 011 2 s
    Some(30),        // 100 30 s
    Some(60),        // 101 1 min
    Some(1_152_000), // 110 320 h
    None,            // 111 deactivated
];

/// T3324 units; 24.008: values 011-110 "shall be interpreted as multiples of 1 minute".
const T3324_UNITS: [Option<u64>; 8] = [
    Some(2),   // 000 2 s
    Some(60),  // 001 1 min
    Some(360), // 010 decihours
    Some(60),
    Some(60),
    Some(60),
    Some(60),
    None, // 111 deactivated
];

/// eDRX cycle per 4-bit value in milliseconds (E-UTRAN table; values marked WB-S1 only in
/// 24.008 are `None` for NB-IoT: 0000, 0001, 0100, 0110, 0111, 1000).
const EDRX_NB_MS: [Option<u64>; 16] = [
    None,
    None,
    Some(20_480),
    Some(40_960),
    None,
    Some(81_920),
    None,
    None,
    None,
    Some(163_840),
    Some(327_680),
    Some(655_360),
    Some(1_310_720),
    Some(2_621_440),
    Some(5_242_880),
    Some(10_485_760),
];

fn bits_value(
    reply: &'static str,
    field: &'static str,
    bits: &str,
    width: usize,
) -> Result<u8, ReplyError> {
    if bits.len() != width || !bits.bytes().all(|b| b == b'0' || b == b'1') {
        return Err(ReplyError::bad(reply, field, bits));
    }
    u8::from_str_radix(bits, 2).map_err(|_| ReplyError::bad(reply, field, bits))
}

fn decode(
    units: &[Option<u64>; 8],
    reply: &'static str,
    field: &'static str,
    bits: &str,
) -> Result<Timer, ReplyError> {
    let v = bits_value(reply, field, bits, 8)?;
    Ok(match units[usize::from(v >> 5)] {
        None => Timer::Deactivated,
        Some(unit) => Timer::Seconds(unit * u64::from(v & 0x1F)),
    })
}

/// Decodes a T3412 extended (periodic TAU) bit string.
pub fn decode_t3412(reply: &'static str, bits: &str) -> Result<Timer, ReplyError> {
    decode(&T3412_UNITS, reply, "T3412", bits)
}

/// Decodes a T3324 (active time) bit string.
pub fn decode_t3324(reply: &'static str, bits: &str) -> Result<Timer, ReplyError> {
    decode(&T3324_UNITS, reply, "T3324", bits)
}

/// The smallest encodable duration >= `seconds` (exact when possible) as 8 bits.
fn encode(
    units: &[Option<u64>; 8],
    writable: std::ops::RangeInclusive<usize>,
    timer: &'static str,
    value: Timer,
) -> Result<String, ReplyError> {
    let seconds = match value {
        Timer::Deactivated => return Ok("11100000".to_string()),
        Timer::Seconds(s) => s,
    };
    // (resulting seconds, unit seconds, unit index, count): the smallest result, and on a tie
    // the coarsest unit ("00100001" for 1 min, not 30 x 2 s); T3324's alias units 011-110
    // (read as minutes) are never written.
    let mut best: Option<(u64, u64, usize, u64)> = None;
    for (i, unit) in units.iter().enumerate() {
        let Some(unit) = *unit else { continue };
        if !writable.contains(&i) {
            continue;
        }
        let count = seconds.div_ceil(unit);
        if count > 31 {
            continue;
        }
        let got = count * unit;
        if best.is_none_or(|(b, bu, _, _)| got < b || (got == b && unit > bu)) {
            best = Some((got, unit, i, count));
        }
    }
    let (_, _, unit, count) = best.ok_or(ReplyError::Unrepresentable { timer, seconds })?;
    Ok(format!("{:03b}{:05b}", unit, count))
}

/// Encodes a T3412 extended request for `AT+CPSMS=1,,,"<bits>",...`.
pub fn encode_t3412(value: Timer) -> Result<String, ReplyError> {
    encode(&T3412_UNITS, 0..=6, "T3412", value)
}

/// Encodes a T3324 request for `AT+CPSMS=1,,,...,"<bits>"`.
pub fn encode_t3324(value: Timer) -> Result<String, ReplyError> {
    encode(&T3324_UNITS, 0..=2, "T3324", value)
}

/// Decodes a 4-bit NB-IoT eDRX value to its cycle in milliseconds.
pub fn decode_edrx(reply: &'static str, bits: &str) -> Result<u64, ReplyError> {
    let v = bits_value(reply, "eDRX", bits, 4)?;
    EDRX_NB_MS[usize::from(v)].ok_or_else(|| ReplyError::bad(reply, "eDRX", bits))
}

/// Encodes the shortest NB-IoT eDRX cycle >= `ms` as 4 bits for `AT+CEDRXS=1,5,"<bits>"`.
pub fn encode_edrx(ms: u64) -> Result<String, ReplyError> {
    EDRX_NB_MS
        .iter()
        .enumerate()
        .find(|(_, c)| c.is_some_and(|c| c >= ms))
        .map(|(i, _)| format!("{i:04b}"))
        .ok_or(ReplyError::Unrepresentable {
            timer: "eDRX",
            seconds: ms / 1000,
        })
}

/// `AT+CPSMS=1,,,"<T3412>","<T3324>"` requesting these timers, or `AT+CPSMS=0` (PSM off).
pub fn cpsms_command(request: Option<(Timer, Timer)>) -> Result<String, ReplyError> {
    match request {
        None => Ok("AT+CPSMS=0".to_string()),
        Some((tau, active)) => Ok(format!(
            "AT+CPSMS=1,,,\"{}\",\"{}\"",
            encode_t3412(tau)?,
            encode_t3324(active)?
        )),
    }
}

/// `AT+CEDRXS=1,5,"<bits>"` requesting the shortest NB-IoT cycle >= `ms`, or `AT+CEDRXS=0`.
pub fn cedrxs_command(cycle_ms: Option<u64>) -> Result<String, ReplyError> {
    match cycle_ms {
        None => Ok("AT+CEDRXS=0".to_string()),
        Some(ms) => Ok(format!("AT+CEDRXS=1,5,\"{}\"", encode_edrx(ms)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gprs_timers_decode() {
        let t3412: &[(&str, Timer)] = &[
            ("00000001", Timer::Seconds(600)),
            ("00100001", Timer::Seconds(3_600)),
            ("01000011", Timer::Seconds(108_000)),
            ("01100101", Timer::Seconds(10)),
            ("10000011", Timer::Seconds(90)),
            ("10100010", Timer::Seconds(120)),
            ("11000001", Timer::Seconds(1_152_000)),
            ("11100000", Timer::Deactivated),
            ("11111111", Timer::Deactivated),
        ];
        for (bits, want) in t3412 {
            assert_eq!(decode_t3412("CPSMS", bits), Ok(*want), "{bits}");
        }
        let t3324: &[(&str, Timer)] = &[
            ("00000101", Timer::Seconds(10)),
            ("00100001", Timer::Seconds(60)),
            ("01000010", Timer::Seconds(720)),
            ("01100011", Timer::Seconds(180)),
            ("11100000", Timer::Deactivated),
        ];
        for (bits, want) in t3324 {
            assert_eq!(decode_t3324("CPSMS", bits), Ok(*want), "{bits}");
        }
        for bad in ["", "0000000", "000000001", "0000000x", "２0000000"] {
            assert!(decode_t3412("CPSMS", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gprs_timers_encode_round_up_exactly() {
        for secs in [0, 10, 60, 90, 3_600, 86_400, 360_000] {
            let got = encode_t3412(Timer::Seconds(secs)).expect("encodable");
            assert_eq!(decode_t3412("x", &got), Ok(Timer::Seconds(secs)), "{secs}");
        }
        assert_eq!(encode_t3412(Timer::Seconds(10)).as_deref(), Ok("01100101"));
        let day = encode_t3412(Timer::Seconds(86_400)).expect("a day");
        assert_eq!(decode_t3412("x", &day), Ok(Timer::Seconds(86_400)));
        let odd = encode_t3412(Timer::Seconds(61)).expect("61 s");
        assert_eq!(decode_t3412("x", &odd), Ok(Timer::Seconds(62)));
        assert_eq!(encode_t3412(Timer::Deactivated).as_deref(), Ok("11100000"));
        assert!(encode_t3412(Timer::Seconds(31 * 1_152_000 + 1)).is_err());
        let active = encode_t3324(Timer::Seconds(30)).expect("30 s");
        assert_eq!(active, "00001111");
        assert_eq!(encode_t3324(Timer::Seconds(60)).as_deref(), Ok("00100001"));
        assert_eq!(encode_t3324(Timer::Seconds(720)).as_deref(), Ok("01000010"));
        assert_eq!(encode_t3412(Timer::Seconds(600)).as_deref(), Ok("00000001"));
        assert_eq!(
            encode_t3412(Timer::Seconds(108_000)).as_deref(),
            Ok("01000011")
        );
        assert!(encode_t3324(Timer::Seconds(31 * 360 + 1)).is_err());
        // Every encodable request round-trips to a value >= the request.
        for secs in (0..20_000).step_by(7) {
            if let Ok(bits) = encode_t3324(Timer::Seconds(secs)) {
                let Ok(Timer::Seconds(got)) = decode_t3324("x", &bits) else {
                    panic!("{bits}")
                };
                assert!(got >= secs, "{secs} -> {got}");
            }
        }
    }

    #[test]
    fn setter_commands() {
        assert_eq!(
            cpsms_command(Some((Timer::Seconds(108_000), Timer::Seconds(60)))).as_deref(),
            Ok("AT+CPSMS=1,,,\"01000011\",\"00100001\"")
        );
        assert_eq!(cpsms_command(None).as_deref(), Ok("AT+CPSMS=0"));
        assert!(cpsms_command(Some((Timer::Seconds(60), Timer::Seconds(1_000_000)))).is_err());
        assert_eq!(
            cedrxs_command(Some(81_920)).as_deref(),
            Ok("AT+CEDRXS=1,5,\"0101\"")
        );
        assert_eq!(cedrxs_command(None).as_deref(), Ok("AT+CEDRXS=0"));
    }

    #[test]
    fn edrx() {
        assert_eq!(decode_edrx("CEDRXS", "0010"), Ok(20_480));
        assert_eq!(decode_edrx("CEDRXS", "0101"), Ok(81_920));
        assert_eq!(decode_edrx("CEDRXS", "1001"), Ok(163_840));
        assert_eq!(decode_edrx("CEDRXS", "1111"), Ok(10_485_760));
        assert!(decode_edrx("CEDRXS", "0100").is_err());
        assert!(decode_edrx("CEDRXS", "10").is_err());
        assert_eq!(encode_edrx(20_480).as_deref(), Ok("0010"));
        assert_eq!(encode_edrx(50_000).as_deref(), Ok("0101"));
        assert_eq!(encode_edrx(0).as_deref(), Ok("0010"));
        assert!(encode_edrx(10_485_761).is_err());
    }
}
