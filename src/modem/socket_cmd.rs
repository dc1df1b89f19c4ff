//! The AT socket dialects (pure core): builders of the open / connect / send / read / close
//! commands of BC95/BC28 (`NSO*`, hex), BG95/BG96 (`QI*`, raw bytes after a prompt), BC66/BC660K
//! (`QI*` in hex data format: inline hex sends and hex reads), SIM7020 (`CSO*`, hex) and
//! SIM7080 (`CA*`, raw bytes after a bare `>` prompt and inside `+CARECV:`), the parsers of their replies and
//! data / close URCs, send chunking to the module's per-command maximum, and bounded hex
//! decoding. It never does I/O and never panics on any reply (fuzzed); every length a module
//! reports is checked against the data that came with it and against `at::MAX_DATA`.
//! The formats are those of docs/dev/modem-dialects.md.

use std::net::IpAddr;

use thiserror::Error;

use super::at::{Exchange, Urc, UrcKind, MAX_DATA};
use super::profile::{Profile, SocketDialect};
use super::reply::{body, Fields, ReplyError};

/// A socket command that cannot be built or a socket reply that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SocketError {
    #[error("{dialect:?} sockets are not supported by this core")]
    Unsupported { dialect: SocketDialect },
    #[error("send of {len} bytes exceeds the module's {max} per command")]
    TooLong { len: usize, max: usize },
    #[error("{reply}: hex data invalid ({why})")]
    Hex {
        reply: &'static str,
        why: &'static str,
    },
    #[error("{reply}: length {said} does not match the {got} bytes received")]
    LengthMismatch {
        reply: &'static str,
        said: usize,
        got: usize,
    },
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

/// Upper-case hex of `data`.
pub fn encode_hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}

/// Decodes hex text (either case) of at most `MAX_DATA` bytes.
pub fn decode_hex(reply: &'static str, hex: &str) -> Result<Vec<u8>, SocketError> {
    let bytes = hex.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(SocketError::Hex {
            reply,
            why: "odd length",
        });
    }
    if bytes.len() / 2 > MAX_DATA {
        return Err(SocketError::Hex {
            reply,
            why: "longer than 1500 bytes",
        });
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    bytes
        .chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or(SocketError::Hex {
            reply,
            why: "not a hex digit",
        })
}

/// One step of a send: a complete command (hex inline), or a command answered by the `"> "`
/// prompt after which the payload is written raw (`Request::with_prompt`, then
/// `Request::payload()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStep<'a> {
    Inline(String),
    Prompt { command: String, payload: &'a [u8] },
}

/// The commands that send `data` on socket `id`, chunked to the profile's `max_send`.
pub fn send_steps<'a>(
    profile: &Profile,
    id: u8,
    data: &'a [u8],
) -> Result<Vec<SendStep<'a>>, SocketError> {
    if profile.max_send == 0 {
        return Err(SocketError::Unsupported {
            dialect: profile.socket,
        });
    }
    data.chunks(profile.max_send)
        .map(|chunk| send_one(profile.socket, id, chunk, profile.max_send))
        .collect()
}

/// The command sending one chunk of at most `max` bytes.
pub fn send_one(
    dialect: SocketDialect,
    id: u8,
    chunk: &[u8],
    max: usize,
) -> Result<SendStep<'_>, SocketError> {
    if chunk.len() > max {
        return Err(SocketError::TooLong {
            len: chunk.len(),
            max,
        });
    }
    let n = chunk.len();
    Ok(match dialect {
        SocketDialect::NsoHex => {
            SendStep::Inline(format!("AT+NSOSD={id},{n},{}", encode_hex(chunk)))
        }
        SocketDialect::QiHex => {
            SendStep::Inline(format!("AT+QISEND={id},{n},{}", encode_hex(chunk)))
        }
        SocketDialect::CsoHex => {
            SendStep::Inline(format!("AT+CSOSEND={id},{},{}", n * 2, encode_hex(chunk)))
        }
        SocketDialect::Qi => SendStep::Prompt {
            command: format!("AT+QISEND={id},{n}"),
            payload: chunk,
        },
        SocketDialect::Ca => SendStep::Prompt {
            command: format!("AT+CASEND={id},{n}"),
            payload: chunk,
        },
        SocketDialect::None => return Err(SocketError::Unsupported { dialect }),
    })
}

// ---- BC95 / BC28: NSO* --------------------------------------------------------------------

/// `AT+NSOCR=STREAM,6,<local port>,1` (port 0: any).
pub fn nso_create(local_port: u16) -> String {
    format!("AT+NSOCR=STREAM,6,{local_port},1")
}

/// The socket id line of `AT+NSOCR` ("<0..6>").
pub fn nso_created(x: &Exchange) -> Result<u8, SocketError> {
    let line = x
        .lines
        .first()
        .ok_or(ReplyError::NoLine { reply: "NSOCR" })?;
    let f = Fields::split("NSOCR", line)?;
    let id: u8 = f.num(0, "socket")?;
    if id > 6 || f.len() != 1 {
        return Err(ReplyError::bad("NSOCR", "socket", line).into());
    }
    Ok(id)
}

/// `AT+NSOCO=<s>,<ip>,<port>`.
pub fn nso_connect(id: u8, ip: IpAddr, port: u16) -> String {
    format!("AT+NSOCO={id},{ip},{port}")
}

/// The `"<s>,<len>"` line of `AT+NSOSD`: bytes accepted.
pub fn nso_sent(x: &Exchange) -> Result<usize, SocketError> {
    let line = x
        .lines
        .first()
        .ok_or(ReplyError::NoLine { reply: "NSOSD" })?;
    Ok(Fields::split("NSOSD", line)?.num(1, "length")?)
}

/// `AT+NSORF=<s>,<max>`.
pub fn nso_read(id: u8, max: usize) -> String {
    format!("AT+NSORF={id},{}", max.min(MAX_DATA))
}

/// Data read by `AT+NSORF` / `AT+QIRD`, with what the module still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub data: Vec<u8>,
    /// Bytes still buffered in the module (NSORF's `<remaining>`), when reported.
    pub remaining: Option<usize>,
}

/// `AT+NSORF`'s "<s>,<ip>,<port>,<len>,<hex>,<remaining>" line (none: nothing buffered).
pub fn nso_read_reply(x: &Exchange) -> Result<Received, SocketError> {
    const R: &str = "NSORF";
    let Some(line) = x.lines.first() else {
        return Ok(Received {
            data: Vec::new(),
            remaining: Some(0),
        });
    };
    let f = Fields::split(R, line)?;
    let len: usize = f.num(3, "length")?;
    let data = decode_hex(R, f.opt(4).unwrap_or(""))?;
    if data.len() != len {
        return Err(SocketError::LengthMismatch {
            reply: R,
            said: len,
            got: data.len(),
        });
    }
    Ok(Received {
        data,
        remaining: Some(f.num(5, "remaining")?),
    })
}

/// `AT+NSOCL=<s>`.
pub fn nso_close(id: u8) -> String {
    format!("AT+NSOCL={id}")
}

// ---- BG95 / BG96 (and BC66/BC660K opens): QI* ----------------------------------------------

/// `AT+QIOPEN=1,<id>,"TCP","<ip>",<port>,0,<access>`: push mode (1) delivers data in
/// `+QIURC: "recv",<id>,<n>` URCs (BG96: raw bytes after the line; BC66 in hex data format:
/// `+QIURC: "recv",<id>,<n>,<hex>`, inside the line), buffer mode (0) needs `AT+QIRD`.
pub fn qi_open(id: u8, ip: IpAddr, port: u16, push: bool) -> String {
    format!(
        "AT+QIOPEN=1,{id},\"TCP\",\"{ip}\",{port},0,{}",
        u8::from(push)
    )
}

/// `AT+QIRD=<id>,<max>`.
pub fn qi_read(id: u8, max: usize) -> String {
    format!("AT+QIRD={id},{}", max.min(MAX_DATA))
}

/// The `+QIRD: <n>` line and the `n` raw bytes the parser attached to the exchange.
pub fn qi_read_reply(x: &Exchange) -> Result<Received, SocketError> {
    raw_read_reply(x, "QIRD", "+QIRD:")
}

/// A read whose `<prefix> <n>` line comes with `n` raw bytes the parser attached to the
/// exchange (after the line for QIRD, inside it for CARECV): the bytes, checked against `n`.
fn raw_read_reply(
    x: &Exchange,
    reply: &'static str,
    prefix: &str,
) -> Result<Received, SocketError> {
    let line = x
        .lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .ok_or(ReplyError::NoLine { reply })?;
    let said: usize = Fields::split(reply, body(reply, prefix, line)?)?.num(0, "length")?;
    let data = x.data.clone().unwrap_or_default();
    if data.len() != said {
        return Err(SocketError::LengthMismatch {
            reply,
            said,
            got: data.len(),
        });
    }
    Ok(Received {
        data,
        remaining: None,
    })
}

/// `AT+QICLOSE=<id>`.
pub fn qi_close(id: u8) -> String {
    format!("AT+QICLOSE={id}")
}

// ---- BC66 / BC660K: QI* in hex data format ---------------------------------------------------

/// `AT+QICFG="dataformat",1,1`: sends and reads in hex (sent before every open, so a module
/// reboot never leaves it in text mode).
pub const QI_HEX_FORMAT: &str = "AT+QICFG=\"dataformat\",1,1";

/// The `+QIRD: <n>,<hex>` line of a hex-mode `AT+QIRD` (`+QIRD: 0`: nothing buffered).
pub fn qi_hex_read_reply(x: &Exchange) -> Result<Received, SocketError> {
    const R: &str = "QIRD";
    let line = x
        .lines
        .iter()
        .find(|l| l.starts_with("+QIRD:"))
        .ok_or(ReplyError::NoLine { reply: R })?;
    let f = Fields::split(R, body(R, "+QIRD:", line)?)?;
    let said: usize = f.num(0, "length")?;
    if said > MAX_DATA {
        return Err(ReplyError::bad(R, "length", line).into());
    }
    let data = decode_hex(R, f.opt(1).unwrap_or(""))?;
    if data.len() != said {
        return Err(SocketError::LengthMismatch {
            reply: R,
            said,
            got: data.len(),
        });
    }
    Ok(Received {
        data,
        remaining: None,
    })
}

// ---- SIM7080: CA* ---------------------------------------------------------------------------

/// Deactivate BG96's context 1 (what its manual asks after `+QIURC: "pdpdeact"`, before
/// `AT+QIACT` again).
pub const QI_DEACT: &str = "AT+QIDEACT=1";

/// `AT+CAOPEN=<cid>,0,"TCP","<ip>",<port>` (PDP context 0).
pub fn ca_open(cid: u8, ip: IpAddr, port: u16) -> String {
    format!("AT+CAOPEN={cid},0,\"TCP\",\"{ip}\",{port}")
}

/// The `+CAOPEN: <cid>,<result>` line of `AT+CAOPEN` (result 0 = connected).
pub fn ca_opened(x: &Exchange) -> Result<(u8, u16), SocketError> {
    const R: &str = "CAOPEN";
    let line = x
        .lines
        .iter()
        .find(|l| l.starts_with("+CAOPEN:"))
        .ok_or(ReplyError::NoLine { reply: R })?;
    let f = Fields::split(R, body(R, "+CAOPEN:", line)?)?;
    Ok((f.num(0, "cid")?, f.num(1, "result")?))
}

/// `AT+CARECV=<cid>,<max>`.
pub fn ca_read(cid: u8, max: usize) -> String {
    format!("AT+CARECV={cid},{}", max.clamp(1, MAX_DATA))
}

/// The `+CARECV: <n>` line and the `n` raw bytes the parser took from inside it.
pub fn ca_read_reply(x: &Exchange) -> Result<Received, SocketError> {
    raw_read_reply(x, "CARECV", "+CARECV:")
}

/// `AT+CACLOSE=<cid>`.
pub fn ca_close(cid: u8) -> String {
    format!("AT+CACLOSE={cid}")
}

// ---- SIM7020: CSO* -------------------------------------------------------------------------

/// `AT+CSOC=1,1,1` (IPv4, TCP, IP protocol).
pub const CSO_CREATE: &str = "AT+CSOC=1,1,1";

/// The `+CSOC: <s>` line of `AT+CSOC`.
pub fn cso_created(x: &Exchange) -> Result<u8, SocketError> {
    let line = x
        .lines
        .iter()
        .find(|l| l.starts_with("+CSOC:"))
        .ok_or(ReplyError::NoLine { reply: "CSOC" })?;
    Ok(Fields::split("CSOC", body("CSOC", "+CSOC:", line)?)?.num(0, "socket")?)
}

/// `AT+CSOCON=<s>,<port>,"<ip>"`.
pub fn cso_connect(id: u8, ip: IpAddr, port: u16) -> String {
    format!("AT+CSOCON={id},{port},\"{ip}\"")
}

/// `AT+CSOCL=<s>`.
pub fn cso_close(id: u8) -> String {
    format!("AT+CSOCL={id}")
}

// ---- URCs ---------------------------------------------------------------------------------

/// A socket event from an unsolicited line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketUrc {
    /// Data is buffered in the module: read it (`len` when the module says).
    DataWaiting { id: u8, len: Option<usize> },
    /// Data pushed in the URC itself.
    Data { id: u8, data: Vec<u8> },
    /// The result of `AT+QIOPEN`: 0 = connected, else the module's error (e.g. 566).
    Opened { id: u8, result: u16 },
    /// The peer or the network closed the socket (NSOCLI, QIURC "closed", CSOERR 4).
    Closed { id: u8 },
    /// A socket error other than a close (`+CSOERR: <s>,<err>`).
    Failed { id: u8, code: u16 },
    /// The PDP context is gone (`+QIURC: "pdpdeact",<ctx>`, `+APP PDP: <n>,DEACTIVE`): every
    /// socket with it.
    PdpDeactivated,
    /// The PDP context is up (`+APP PDP: <n>,ACTIVE` after `AT+CNACT=<n>,1`).
    PdpActivated,
}

/// The socket event of a URC; `None` for URCs that are not about sockets (or unknown
/// `+QIURC` kinds such as "incoming full").
pub fn parse_urc(urc: &Urc) -> Option<Result<SocketUrc, SocketError>> {
    let l = urc.line.as_str();
    let r = match urc.kind? {
        UrcKind::Nsonmi => fields_of("NSONMI", "+NSONMI:", l).and_then(|f| {
            Ok(SocketUrc::DataWaiting {
                id: f.num(0, "socket")?,
                len: Some(f.num(1, "length")?),
            })
        }),
        UrcKind::Nsocli => fields_of("NSOCLI", "+NSOCLI:", l).and_then(|f| {
            Ok(SocketUrc::Closed {
                id: f.num(0, "socket")?,
            })
        }),
        UrcKind::Qiopen => fields_of("QIOPEN", "+QIOPEN:", l).and_then(|f| {
            Ok(SocketUrc::Opened {
                id: f.num(0, "id")?,
                result: f.num(1, "err")?,
            })
        }),
        UrcKind::Csoerr => fields_of("CSOERR", "+CSOERR:", l).and_then(|f| {
            let id = f.num(0, "socket")?;
            Ok(match f.num(1, "err")? {
                4 => SocketUrc::Closed { id },
                code => SocketUrc::Failed { id, code },
            })
        }),
        UrcKind::Cadataind => fields_of("CADATAIND", "+CADATAIND:", l).and_then(|f| {
            Ok(SocketUrc::DataWaiting {
                id: f.num(0, "cid")?,
                len: None,
            })
        }),
        UrcKind::Castate => {
            let r = fields_of("CASTATE", "+CASTATE:", l)
                .and_then(|f| Ok((f.num::<u8>(0, "cid")?, f.num::<u8>(1, "state")?)));
            match r {
                // 0 closed; 1 connected, 2 listening: nothing to do.
                Ok((id, 0)) => Ok(SocketUrc::Closed { id }),
                Ok(_) => return None,
                Err(e) => Err(e),
            }
        }
        UrcKind::AppPdp => {
            fields_of("APP PDP", "+APP PDP:", l).and_then(|f| match f.str(1, "state")? {
                "ACTIVE" => Ok(SocketUrc::PdpActivated),
                "DEACTIVE" => Ok(SocketUrc::PdpDeactivated),
                other => Err(ReplyError::bad("APP PDP", "state", other)),
            })
        }
        UrcKind::Csonmi => return Some(csonmi(l)),
        UrcKind::Qiurc => return qiurc(urc),
        _ => return None,
    };
    Some(r.map_err(SocketError::from))
}

fn fields_of<'a>(
    reply: &'static str,
    prefix: &str,
    line: &'a str,
) -> Result<Fields<'a>, ReplyError> {
    Fields::split(reply, body(reply, prefix, line)?)
}

fn csonmi(line: &str) -> Result<SocketUrc, SocketError> {
    const R: &str = "CSONMI";
    let f = fields_of(R, "+CSONMI:", line)?;
    let id = f.num(0, "socket")?;
    let count: usize = f.num(1, "length")?;
    let data = decode_hex(R, f.opt(2).unwrap_or(""))?;
    if data.len() * 2 != count {
        return Err(SocketError::LengthMismatch {
            reply: R,
            said: count,
            got: data.len() * 2,
        });
    }
    Ok(SocketUrc::Data { id, data })
}

fn qiurc(urc: &Urc) -> Option<Result<SocketUrc, SocketError>> {
    const R: &str = "QIURC";
    let f = match fields_of(R, "+QIURC:", &urc.line) {
        Ok(f) => f,
        Err(e) => return Some(Err(e.into())),
    };
    let id = || f.num::<u8>(1, "id").map_err(SocketError::from);
    Some(match f.opt(0)? {
        "closed" => id().map(|id| SocketUrc::Closed { id }),
        "pdpdeact" => Ok(SocketUrc::PdpDeactivated),
        // BC66 push mode in hex data format: the data inside the line, hex (bounded by
        // `at::MAX_LINE` and `decode_hex`'s `MAX_DATA`).
        "recv" if f.opt(3).is_some() => id().and_then(|id| {
            let said = f.num::<usize>(2, "length")?;
            let data = decode_hex("QIURC recv (hex push)", f.opt(3).unwrap_or_default())?;
            if data.len() != said {
                return Err(SocketError::LengthMismatch {
                    reply: "QIURC recv (hex push)",
                    said,
                    got: data.len(),
                });
            }
            Ok(SocketUrc::Data { id, data })
        }),
        "recv" => id().and_then(|id| match (f.opt_num::<usize>(2, "length"), &urc.data) {
            (Ok(Some(said)), Some(data)) if data.len() == said => Ok(SocketUrc::Data {
                id,
                data: data.clone(),
            }),
            (Ok(Some(said)), data) => Err(SocketError::LengthMismatch {
                reply: R,
                said,
                got: data.as_ref().map_or(0, Vec::len),
            }),
            (Ok(None), _) => Ok(SocketUrc::DataWaiting { id, len: None }),
            (Err(e), _) => Err(e.into()),
        }),
        _ => return None,
    })
}

#[cfg(test)]
#[path = "socket_cmd_tests.rs"]
mod tests;
