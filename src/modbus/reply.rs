//! The reply check (pure core): does a Modbus reply answer exactly the request it came back
//! for? It owns the one decision between "a valid answer" (the requested registers or bits,
//! or a valid exception from a live device) and "a protocol error" (anything else: wrong unit,
//! wrong function, a byte count or length that does not match the requested count, an echo of
//! a write that differs from the write, an exception code outside the Modbus set). It reads
//! the reply's PDU bytes (function code onwards) and never panics on any input; no I/O.
//!
//! tokio-modbus 0.17 already rejects a reply whose header (TCP transaction id and unit id, RTU
//! slave id) or function code differs from the request, but it lets through a short or long
//! byte count (`ReadHoldingRegisters` of 5 words for a request of 6), coils packed in more
//! bytes than asked, echoes of writes that differ (only `debug_assert!`ed), and any exception
//! code (255 becomes `ExceptionCode::Custom(255)`). (Bytes after the data inside a frame it
//! refuses itself: "undecoded response data".) The link re-encodes what tokio-modbus
//! decoded into PDU bytes (losslessly for every reply it can hand back) and checks them here,
//! so one function decides, and it is fuzzed on arbitrary bytes.
//!
//! Valid exception codes (a live device answered): 1 illegal function, 2 illegal data address,
//! 3 illegal data value, 4 server device failure, 5 acknowledge, 6 server device busy,
//! 8 memory parity error, 0x0A gateway path unavailable, 0x0B gateway target failed to
//! respond. Any other code is garbage: a protocol error, and no sign of a live device.

use thiserror::Error;

use crate::model::Table;

/// What a request asked for, so the reply can be checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Read `count` registers or bits from `table` (functions 1 to 4).
    Read { table: Table, count: u16 },
    /// Write one coil (function 5): the reply echoes address and value.
    WriteCoil { address: u16, value: bool },
    /// Write one register (function 6): the reply echoes address and value.
    WriteRegister { address: u16, value: u16 },
    /// Write `count` registers (function 16): the reply echoes address and count.
    WriteRegisters { address: u16, count: u16 },
}

impl Expect {
    /// The function code of the request.
    pub fn function(&self) -> u8 {
        match self {
            Expect::Read { table, .. } => match table {
                Table::Coil => 0x01,
                Table::DiscreteInput => 0x02,
                Table::HoldingRegister => 0x03,
                Table::InputRegister => 0x04,
            },
            Expect::WriteCoil { .. } => 0x05,
            Expect::WriteRegister { .. } => 0x06,
            Expect::WriteRegisters { .. } => 0x10,
        }
    }
}

/// A valid answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The registers, or bits as 0/1, exactly as many as requested; empty for a write.
    Data(Vec<u16>),
    /// A valid Modbus exception (see `valid_exception`).
    Exception(u8),
}

/// Why a reply is not a valid answer to its request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    #[error("reply from unit {got}, request went to unit {expected}")]
    Unit { expected: u8, got: u8 },
    #[error("empty reply (no function code)")]
    Empty,
    #[error("reply has function 0x{got:02X}, request had 0x{expected:02X}")]
    Function { expected: u8, got: u8 },
    #[error("exception code {code} (0x{code:02X}) is not a Modbus exception code")]
    ExceptionCode { code: u8 },
    #[error("byte count {got} does not cover the {count} requested (needs {expected})")]
    ByteCount {
        count: u16,
        expected: usize,
        got: usize,
    },
    #[error("reply PDU is {got} bytes, its function and byte count make {expected}")]
    Length { expected: usize, got: usize },
    #[error("write echo differs: {what} {got}, written {expected}")]
    Echo {
        what: &'static str,
        expected: u16,
        got: u16,
    },
}

/// True for the exception codes a live, conforming device may send (1-6, 8, 0x0A, 0x0B).
pub fn valid_exception(code: u8) -> bool {
    matches!(code, 1..=6 | 8 | 0x0A | 0x0B)
}

/// Check the reply `pdu` that came back from `unit` against `expect` sent to `want_unit`.
/// Bits of the last data byte beyond the requested count (padding) are ignored.
pub fn check_reply(
    want_unit: u8,
    expect: &Expect,
    unit: u8,
    pdu: &[u8],
) -> Result<Answer, ReplyError> {
    if unit != want_unit {
        return Err(ReplyError::Unit {
            expected: want_unit,
            got: unit,
        });
    }
    let (&f, body) = pdu.split_first().ok_or(ReplyError::Empty)?;
    let func = expect.function();
    if f == func | 0x80 {
        let exact = |n: usize| {
            if pdu.len() == n {
                Ok(())
            } else {
                Err(ReplyError::Length {
                    expected: n,
                    got: pdu.len(),
                })
            }
        };
        let code = *body.first().ok_or(ReplyError::Length {
            expected: 2,
            got: pdu.len(),
        })?;
        exact(2)?;
        return if valid_exception(code) {
            Ok(Answer::Exception(code))
        } else {
            Err(ReplyError::ExceptionCode { code })
        };
    }
    if f != func {
        return Err(ReplyError::Function {
            expected: func,
            got: f,
        });
    }
    match expect {
        Expect::Read { table, count } => {
            let bits = table.is_bits();
            let expected = if bits {
                (*count as usize).div_ceil(8)
            } else {
                *count as usize * 2
            };
            let bc = *body.first().ok_or(ReplyError::Length {
                expected: 2 + expected,
                got: pdu.len(),
            })? as usize;
            if bc != expected {
                return Err(ReplyError::ByteCount {
                    count: *count,
                    expected,
                    got: bc,
                });
            }
            if pdu.len() != 2 + bc {
                return Err(ReplyError::Length {
                    expected: 2 + bc,
                    got: pdu.len(),
                });
            }
            let data = &body[1..];
            let out = if bits {
                (0..*count as usize)
                    .map(|i| u16::from((data[i / 8] >> (i % 8)) & 1))
                    .collect()
            } else {
                data.chunks_exact(2)
                    .map(|w| u16::from_be_bytes([w[0], w[1]]))
                    .collect()
            };
            Ok(Answer::Data(out))
        }
        Expect::WriteCoil { address, value } => {
            let v = if *value { 0xFF00 } else { 0x0000 };
            check_echo(pdu, *address, "value", v)
        }
        Expect::WriteRegister { address, value } => check_echo(pdu, *address, "value", *value),
        Expect::WriteRegisters { address, count } => check_echo(pdu, *address, "count", *count),
    }
}

fn check_echo(pdu: &[u8], address: u16, what: &'static str, v: u16) -> Result<Answer, ReplyError> {
    if pdu.len() != 5 {
        return Err(ReplyError::Length {
            expected: 5,
            got: pdu.len(),
        });
    }
    let a = u16::from_be_bytes([pdu[1], pdu[2]]);
    let b = u16::from_be_bytes([pdu[3], pdu[4]]);
    if a != address {
        return Err(ReplyError::Echo {
            what: "address",
            expected: address,
            got: a,
        });
    }
    if b != v {
        return Err(ReplyError::Echo {
            what,
            expected: v,
            got: b,
        });
    }
    Ok(Answer::Data(Vec::new()))
}

/// The canonical reply PDU that answers `expect` with `answer` (padding bits zero): what a
/// conforming device sends. `check_reply` accepts exactly these (up to padding bits). For
/// tests, fuzzing and the simulator's view of a well-formed reply.
pub fn encode_reply(expect: &Expect, answer: &Answer) -> Vec<u8> {
    let func = expect.function();
    match answer {
        Answer::Exception(code) => vec![func | 0x80, *code],
        Answer::Data(data) => match expect {
            Expect::Read { table, .. } if table.is_bits() => {
                let mut bytes = vec![0u8; data.len().div_ceil(8)];
                for (i, b) in data.iter().enumerate() {
                    if *b != 0 {
                        bytes[i / 8] |= 1 << (i % 8);
                    }
                }
                let mut out = vec![func, bytes.len() as u8];
                out.extend(bytes);
                out
            }
            Expect::Read { .. } => {
                let mut out = vec![func, (data.len() * 2) as u8];
                out.extend(data.iter().flat_map(|w| w.to_be_bytes()));
                out
            }
            Expect::WriteCoil { address, value } => {
                let v: u16 = if *value { 0xFF00 } else { 0 };
                echo(func, *address, v)
            }
            Expect::WriteRegister { address, value } => echo(func, *address, *value),
            Expect::WriteRegisters { address, count } => echo(func, *address, *count),
        },
    }
}

fn echo(func: u8, a: u16, b: u16) -> Vec<u8> {
    let mut out = vec![func];
    out.extend(a.to_be_bytes());
    out.extend(b.to_be_bytes());
    out
}

/// One readable clause for a reply whose header tokio-modbus refused (`HeaderMismatch`), from
/// its message ("expected/request = Header { transaction_id: 8, unit_id: 3 }, actual/response
/// = Header { transaction_id: 7, unit_id: 3 }"; RTU: `slave_id`), the reply's `function` and
/// whether it was an exception: "reply for unit 3 function 3 has transaction id 7, expected 8".
/// Only numbers are taken from the message; one it does not recognise gives the plain
/// "reply header does not match the request" (never a dump of the reply).
pub fn header_mismatch(message: &str, function: u8, exception: bool) -> String {
    let plain = "reply header does not match the request".to_string();
    let Some((want, got)) = message
        .strip_prefix("expected/request = ")
        .and_then(|m| m.split_once(", actual/response = "))
    else {
        return plain;
    };
    let (Some(want), Some(got)) = (header_fields(want), header_fields(got)) else {
        return plain;
    };
    let label = |k: &str| match k {
        "transaction_id" => "transaction id".to_string(),
        "unit_id" | "slave_id" => "unit".to_string(),
        k => k.replace('_', " "),
    };
    let mut unit = None;
    let mut diffs = Vec::new();
    for (k, w) in &want {
        let Some((_, g)) = got.iter().find(|(gk, _)| gk == k) else {
            return plain;
        };
        if g != w {
            diffs.push((label(k), *g, *w));
        } else if label(k) == "unit" {
            unit = Some(*w);
        }
    }
    if diffs.is_empty() || want.len() != got.len() {
        return plain;
    }
    let mut who = match unit {
        Some(u) => format!("unit {u} function {function}"),
        None => format!("function {function}"),
    };
    if exception {
        who.push_str(" (an exception)");
    }
    let join = |value: fn(&(String, u64, u64)) -> u64| {
        diffs
            .iter()
            .map(|d| format!("{} {}", d.0, value(d)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let has = join(|d| d.1);
    // "expected 8" after one difference, "expected transaction id 8 and unit 3" after two.
    let expected = match diffs.as_slice() {
        [(_, _, w)] => w.to_string(),
        _ => join(|d| d.2),
    };
    format!("reply for {who} has {has}, expected {expected}")
}

/// The `name: number` fields of "Header { a: 1, b: 2 }"; None for anything else.
fn header_fields(s: &str) -> Option<Vec<(String, u64)>> {
    let body = s.trim().strip_prefix("Header {")?.strip_suffix('}')?.trim();
    body.split(',')
        .map(|f| {
            let (k, v) = f.split_once(':')?;
            let k = k.trim();
            let ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            ok.then_some(())?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
