//! Remote requests on the wire (pure core, no I/O, no clock: `now_ms` is an argument): opening
//! an envelope (size bound first, then strict JSON, then the signature against the configured
//! keys), parsing a command or a config push body into typed values (every field checked,
//! duplicate JSON keys refused at every level, every count and length bounded), the policy of
//! who may do what (`authorize_command`, `authorize_push`, `check_write` with the
//! `[remote.writes]` allow-list and its min/max), the result JSON of `cmd/res`, and
//! `RemoteError`, whose `code()` is the stable error code of docs/remote.md. Never panics on
//! any input (property-tested in request_tests.rs).

use std::fmt;
use std::time::Duration;

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use thiserror::Error;

use super::sign::{self, KeyId, Kind, SigningKey};
use crate::config::{RemoteConfig, MAX_CONFIRM_WITHIN, MIN_CONFIRM_WITHIN};

/// Largest `cmd/req` payload (the whole MQTT payload).
pub const MAX_CMD_PAYLOAD: usize = 8 * 1024;
/// Largest `config/set` payload (the whole MQTT payload).
pub const MAX_PUSH_PAYLOAD: usize = 256 * 1024;
/// Furthest an expiry may lie ahead of the gateway's clock.
pub const MAX_EXPIRY_AHEAD_MS: i64 = 7 * 86_400_000;
/// Longest time range of one `resend`.
pub const MAX_RESEND_SPAN_MS: i64 = 31 * 86_400_000;
/// Most points one `read` names.
pub const MAX_READ_POINTS: usize = 64;
/// Most profiles one push carries.
pub const MAX_PUSH_PROFILES: usize = 32;
/// Longest `ack` note, in characters.
pub const MAX_NOTE_CHARS: usize = 64;
/// Longest piece of outside text quoted in an error message.
const MAX_QUOTED: usize = 200;

/// The largest payload accepted on a topic kind.
pub fn max_payload(kind: Kind) -> usize {
    match kind {
        Kind::Cmd => MAX_CMD_PAYLOAD,
        Kind::Config => MAX_PUSH_PAYLOAD,
    }
}

/// Why a request was refused or failed. `code()` is the stable error code sent in results;
/// the Display text is the human message (outside text quoted, escaped and clipped).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RemoteError {
    /// Malformed: not JSON, wrong types, unknown or duplicate keys, bad ids, unknown op,
    /// values outside the protocol's bounds.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Larger than the topic's bound; refused before any parsing.
    #[error("payload of {size} bytes is larger than the {max} bytes allowed on this topic")]
    TooLarge { size: usize, max: usize },
    /// A signature that does not verify (wrong key, wrong gateway, wrong kind, changed body)
    /// or is malformed.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Signed by a key this gateway does not have in `[remote] keys`.
    #[error("unknown key: {0}")]
    UnknownKey(String),
    /// Unsigned where a signature is required.
    #[error("unsigned: {0}")]
    Unsigned(String),
    /// The body names another gateway.
    #[error("wrong gateway: the request is for {got}, this gateway is {want:?}")]
    WrongGateway { got: String, want: String },
    /// The expiry has passed on the gateway's clock.
    #[error("expired at {} (gateway time {})", crate::time::rfc3339_ms(*expires_ms), crate::time::rfc3339_ms(*now_ms))]
    Expired { expires_ms: i64, now_ms: i64 },
    /// Not permitted by the configuration (a point not in `[remote.writes]`).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// A write value outside the point's min/max or of the wrong type for it.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The gateway's clock is not set (before 2026): expiries cannot be judged, so writes and
    /// config pushes are refused.
    #[error("the gateway's clock is not trusted (not set since boot): writes and config pushes are refused until it is")]
    ClockUntrusted,
    /// A named device, point or alarm occurrence does not exist (execution, part E).
    #[error("not found: {0}")]
    NotFound(String),
    /// The bus failed to carry a read or write (execution, part E).
    #[error("bus error: {0}")]
    Bus(String),
    /// The store failed (execution, part E).
    #[error("store error: {0}")]
    Store(String),
    /// The gateway restarted while this command ran: its effect may or may not have happened,
    /// and it is never executed again.
    #[error("interrupted: the gateway restarted while this command ran; its effect is unknown and it is not run again")]
    Interrupted,
}

impl RemoteError {
    /// The stable error code (docs/remote.md).
    pub fn code(&self) -> &'static str {
        match self {
            RemoteError::BadRequest(_) => "bad_request",
            RemoteError::TooLarge { .. } => "too_large",
            RemoteError::BadSignature(_) => "bad_signature",
            RemoteError::UnknownKey(_) => "unknown_key",
            RemoteError::Unsigned(_) => "unsigned",
            RemoteError::WrongGateway { .. } => "wrong_gateway",
            RemoteError::Expired { .. } => "expired",
            RemoteError::NotAllowed(_) => "not_allowed",
            RemoteError::OutOfRange(_) => "out_of_range",
            RemoteError::ClockUntrusted => "clock_untrusted",
            RemoteError::NotFound(_) => "not_found",
            RemoteError::Bus(_) => "bus_error",
            RemoteError::Store(_) => "store_error",
            RemoteError::Interrupted => "interrupted",
        }
    }

    /// The result status this error is reported with: `expired` for an expiry, `refused` for
    /// anything decided before execution, `unknown_outcome` for an interruption, `error` for a
    /// failure during execution.
    pub fn status(&self) -> Status {
        match self {
            RemoteError::Expired { .. } => Status::Expired,
            RemoteError::Interrupted => Status::UnknownOutcome,
            RemoteError::NotFound(_) | RemoteError::Bus(_) | RemoteError::Store(_) => Status::Error,
            _ => Status::Refused,
        }
    }
}

/// Outside text for a message: escaped (no control characters reach a log or terminal) and
/// clipped, quoted.
fn quote(s: &str) -> String {
    let clipped: String = s.chars().take(MAX_QUOTED).collect();
    let more = if clipped.len() < s.len() { "…" } else { "" };
    format!("\"{}{more}\"", crate::config::escape(&clipped))
}

fn bad(msg: impl Into<String>) -> RemoteError {
    let msg = msg.into();
    let clipped: String = msg.chars().take(4 * MAX_QUOTED).collect();
    RemoteError::BadRequest(crate::config::escape(&clipped).into_owned())
}

/// An opened envelope: the body text (signature checked when keys are configured) and who
/// signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub body: String,
    pub signer: Option<KeyId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    v: u32,
    body: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    sig: Option<String>,
}

/// Open an envelope received on a `kind` topic of gateway `gw`. With `keys` configured, a valid
/// signature by one of them is required (`unsigned`, `unknown_key`, `bad_signature`); without
/// keys, a signed envelope is refused (`unknown_key`: this gateway cannot check it) and an
/// unsigned one passes with `signer: None` (what it may do is `authorize_*`'s decision).
pub fn open(
    payload: &[u8],
    kind: Kind,
    gw: &str,
    keys: &[[u8; 32]],
) -> Result<Envelope, RemoteError> {
    let max = max_payload(kind);
    if payload.len() > max {
        return Err(RemoteError::TooLarge {
            size: payload.len(),
            max,
        });
    }
    let env: RawEnvelope = serde_json::from_slice(payload).map_err(|e| {
        bad(format!(
            "envelope: {e} (expected {{\"v\":1,\"body\":\"...\",\"key\":\"...\",\"sig\":\"...\"}})"
        ))
    })?;
    if env.v != 1 {
        return Err(bad(format!(
            "envelope: version v = {} is not supported (this gateway speaks v = 1)",
            env.v
        )));
    }
    if env.body.is_empty() {
        return Err(bad("envelope: body is empty"));
    }
    match (env.key, env.sig) {
        (None, None) => {
            if keys.is_empty() {
                Ok(Envelope {
                    body: env.body,
                    signer: None,
                })
            } else {
                Err(RemoteError::Unsigned(
                    "this gateway accepts only requests signed by one of its [remote] keys".into(),
                ))
            }
        }
        (Some(_), None) => Err(bad("envelope: `key` without `sig`")),
        (None, Some(_)) => Err(bad("envelope: `sig` without `key`")),
        (Some(key), Some(sig)) => {
            // Constant-size checks before any decoding.
            let Some(id) = KeyId::parse(&key) else {
                return Err(bad(format!(
                    "envelope: key {} is not a key id (16 lowercase hex characters)",
                    quote(&key)
                )));
            };
            let raw = sign::parse_signature(&sig)
                .map_err(|e| RemoteError::BadSignature(format!("sig: {e}")))?;
            if keys.is_empty() {
                return Err(RemoteError::UnknownKey(format!(
                    "signed by {id}, but this gateway has no [remote] keys to check it against"
                )));
            }
            let Some(public) = keys.iter().find(|k| sign::key_id(k) == id) else {
                return Err(RemoteError::UnknownKey(format!(
                    "{id} is not one of this gateway's [remote] keys"
                )));
            };
            if !sign::verify(public, kind, gw, &env.body, &raw) {
                return Err(RemoteError::BadSignature(format!(
                    "does not verify with key {id} for a {} request to gateway {gw:?} \
                     (signed for another gateway or topic, or the body was changed)",
                    kind.as_str()
                )));
            }
            Ok(Envelope {
                body: env.body,
                signer: Some(id),
            })
        }
    }
}

/// An envelope's bytes: unsigned, or signed by `key` for `kind` and gateway `gw`. For ops
/// tooling and tests.
pub fn envelope(body: &str, signed: Option<(&SigningKey, Kind, &str)>) -> Vec<u8> {
    let v = match signed {
        None => serde_json::json!({"v": 1, "body": body}),
        Some((key, kind, gw)) => serde_json::json!({
            "v": 1,
            "body": body,
            "key": key.id().to_string(),
            "sig": key.sign(kind, gw, body),
        }),
    };
    v.to_string().into_bytes()
}

/// A parsed, validated command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    pub expires_ms: i64,
    pub op: Op,
}

/// A command's operation and its arguments. Points are (device, point) pairs.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Ping,
    Status,
    ConfigGet,
    Read {
        points: Vec<(String, String)>,
    },
    Write {
        device: String,
        point: String,
        value: WriteValue,
    },
    Ack {
        occurrence: u64,
        note: Option<String>,
    },
    Resend {
        device: String,
        from_ms: i64,
        to_ms: i64,
    },
}

impl Op {
    /// The operation's name on the wire (`op` of the request and the result).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Status => "status",
            Op::ConfigGet => "config/get",
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Ack { .. } => "ack",
            Op::Resend { .. } => "resend",
        }
    }
}

/// The value of a `write`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WriteValue {
    Bool(bool),
    Number(f64),
}

impl fmt::Display for WriteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteValue::Bool(b) => write!(f, "{b}"),
            WriteValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A refused body: the error, and the command id (or push version) when it could be read, so
/// that the refusal can be answered and remembered under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub id: Option<String>,
    pub error: RemoteError,
}

fn valid_id(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b) || extra.contains(&b))
}

/// Command ids: 1-64 of `[A-Za-z0-9._:-]`.
pub fn valid_command_id(s: &str) -> bool {
    valid_id(s, b"")
}

/// Push versions: 1-64 of `[A-Za-z0-9._:+-]`.
pub fn valid_version(s: &str) -> bool {
    valid_id(s, b"+")
}

/// Device names and profile ids: 1-64 of `[A-Za-z0-9_-]` (as in the config).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The value of a top-level string field, read leniently (for the id of a refusal).
fn peek(body: &str, field: &str, valid: fn(&str) -> bool) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let s = v.get(field)?.as_str()?;
    valid(s).then(|| s.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    id: String,
    gw: String,
    expires: Value,
    op: String,
    #[serde(default)]
    args: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    points: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    point: String,
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckArgs {
    occurrence: u64,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendArgs {
    device: String,
    from: Value,
    to: Value,
}

/// Parse and validate a command body for gateway `gw` at gateway time `now_ms`. Checks, in
/// order: strict JSON shape (unknown and duplicate keys refused), `id`, `gw`, `expires`'s form,
/// the op and its arguments, the clock (a `write` needs a trusted clock), then the expiry
/// (`expired` when past, `bad_request` when more than 7 days ahead; not judged for other ops
/// while the clock is untrusted).
pub fn parse_command(body: &str, gw: &str, now_ms: i64) -> Result<Command, Rejected> {
    let id = peek(body, "id", valid_command_id);
    let reject = |error: RemoteError| Rejected {
        id: id.clone(),
        error,
    };
    let raw: RawCommand =
        serde_json::from_str(body).map_err(|e| reject(bad(format!("body: {e}"))))?;
    if !valid_command_id(&raw.id) {
        return Err(reject(bad(format!(
            "id {} is not 1 to 64 of A-Z a-z 0-9 . _ : -",
            quote(&raw.id)
        ))));
    }
    check_gateway(&raw.gw, gw).map_err(reject)?;
    let expires_ms = parse_time(&raw.expires, "expires").map_err(reject)?;
    let op = parse_op(&raw.op, raw.args.as_deref()).map_err(reject)?;
    let needs_clock = matches!(op, Op::Write { .. });
    check_expiry(expires_ms, now_ms, needs_clock).map_err(reject)?;
    Ok(Command {
        id: raw.id,
        expires_ms,
        op,
    })
}

fn check_gateway(got: &str, want: &str) -> Result<(), RemoteError> {
    if got == want {
        Ok(())
    } else {
        Err(RemoteError::WrongGateway {
            got: quote(got),
            want: want.to_string(),
        })
    }
}

/// The expiry against the clock. With an untrusted clock, `needs_clock` requests are refused
/// and the others pass (their expiry cannot be judged, and they change nothing in the field).
fn check_expiry(expires_ms: i64, now_ms: i64, needs_clock: bool) -> Result<(), RemoteError> {
    if now_ms < crate::time::MIN_TRUSTED_UNIX_MS {
        return if needs_clock {
            Err(RemoteError::ClockUntrusted)
        } else {
            Ok(())
        };
    }
    if expires_ms <= now_ms {
        return Err(RemoteError::Expired { expires_ms, now_ms });
    }
    if expires_ms - now_ms > MAX_EXPIRY_AHEAD_MS {
        return Err(bad(format!(
            "expires {} is more than 7 days after the gateway's time {}",
            crate::time::rfc3339_s(expires_ms),
            crate::time::rfc3339_s(now_ms)
        )));
    }
    Ok(())
}

/// The `args` of an op, strictly (unknown and duplicate keys refused). Ops without arguments
/// accept `args` absent or `{}`.
fn args<T: serde::de::DeserializeOwned>(
    op: &str,
    raw: Option<&RawValue>,
    optional: bool,
) -> Result<T, RemoteError> {
    let text = match raw {
        Some(r) => r.get(),
        None if optional => "{}",
        None => return Err(bad(format!("missing `args` for op {op}"))),
    };
    serde_json::from_str(text).map_err(|e| bad(format!("args of {op}: {e}")))
}

fn parse_op(op: &str, raw: Option<&RawValue>) -> Result<Op, RemoteError> {
    match op {
        "ping" | "status" | "config/get" => {
            let NoArgs {} = args(op, raw, true)?;
            Ok(match op {
                "ping" => Op::Ping,
                "status" => Op::Status,
                _ => Op::ConfigGet,
            })
        }
        "read" => {
            let a: ReadArgs = args(op, raw, false)?;
            if a.points.is_empty() || a.points.len() > MAX_READ_POINTS {
                return Err(bad(format!(
                    "args of read: points names {} points, 1 to {MAX_READ_POINTS} are allowed",
                    a.points.len()
                )));
            }
            let points = a
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| split_point(p, &format!("args of read: points[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Op::Read { points })
        }
        "write" => {
            let a: WriteArgs = args(op, raw, false)?;
            let (device, point) = split_point(&a.point, "args of write: point")?;
            let value = match a.value {
                Value::Bool(b) => WriteValue::Bool(b),
                Value::Number(n) => match n.as_f64() {
                    Some(x) if x.is_finite() => WriteValue::Number(x),
                    _ => {
                        return Err(bad(format!(
                            "args of write: value {n} is not a finite number"
                        )))
                    }
                },
                other => {
                    return Err(bad(format!(
                        "args of write: value must be true, false or a number, found {}",
                        json_type(&other)
                    )))
                }
            };
            Ok(Op::Write {
                device,
                point,
                value,
            })
        }
        "ack" => {
            let a: AckArgs = args(op, raw, false)?;
            if let Some(n) = &a.note {
                if n.chars().count() > MAX_NOTE_CHARS || n.chars().any(char::is_control) {
                    return Err(bad(format!(
                        "args of ack: note must be at most {MAX_NOTE_CHARS} characters without control characters"
                    )));
                }
            }
            Ok(Op::Ack {
                occurrence: a.occurrence,
                note: a.note,
            })
        }
        "resend" => {
            let a: ResendArgs = args(op, raw, false)?;
            if !valid_name(&a.device) {
                return Err(bad(format!(
                    "args of resend: device {} is not a device name",
                    quote(&a.device)
                )));
            }
            let from_ms = parse_time(&a.from, "args of resend: from")?;
            let to_ms = parse_time(&a.to, "args of resend: to")?;
            if to_ms < from_ms {
                return Err(bad("args of resend: `to` is before `from`"));
            }
            if to_ms.saturating_sub(from_ms) > MAX_RESEND_SPAN_MS {
                return Err(bad("args of resend: the range is longer than 31 days"));
            }
            Ok(Op::Resend {
                device: a.device,
                from_ms,
                to_ms,
            })
        }
        other => Err(bad(format!(
            "unknown op {}: use ping, status, config/get, read, write, ack or resend",
            quote(other)
        ))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `"device.point"` into its parts (device names have no dot; the point is the rest).
fn split_point(s: &str, what: &str) -> Result<(String, String), RemoteError> {
    match s.split_once('.') {
        Some((d, p))
            if valid_name(d)
                && !p.is_empty()
                && p.len() <= 64
                && !p.chars().any(char::is_control) =>
        {
            Ok((d.to_string(), p.to_string()))
        }
        _ => Err(bad(format!("{what}: {} is not \"device.point\"", quote(s)))),
    }
}

/// A time: RFC 3339 text or unix milliseconds (an integer).
fn parse_time(v: &Value, what: &str) -> Result<i64, RemoteError> {
    match v {
        Value::String(s) => parse_rfc3339(s).ok_or_else(|| {
            bad(format!(
                "{what}: {} is not an RFC 3339 time (e.g. \"2026-12-02T10:00:00Z\")",
                quote(s)
            ))
        }),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| bad(format!("{what}: {n} is not whole unix milliseconds"))),
        other => Err(bad(format!(
            "{what}: expected an RFC 3339 string or unix milliseconds, found {}",
            json_type(other)
        ))),
    }
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, years 0000-9999, `T`/`t` and `Z`/`z`,
/// fractions below a millisecond truncated) to unix ms. No leap seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            Some(part.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let days_in = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut milli = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                milli = milli * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            milli *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    // Days from civil (H. Hinnant), proleptic Gregorian.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + milli)
}

/// A parsed, validated config push.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub version: String,
    pub expires_ms: i64,
    pub sha256: [u8; 32],
    pub config: String,
    /// Sorted by name, names unique.
    pub profiles: Vec<(String, String)>,
    pub confirm_within: Option<Duration>,
}

/// `profiles`: an object of name -> TOML text, at most `MAX_PUSH_PROFILES`, no duplicate names
/// (serde_json's maps would keep the last one silently).
struct Profiles(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Profiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Profiles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of profile name to TOML text")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Profiles, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if out.len() == MAX_PUSH_PROFILES {
                        return Err(A::Error::custom(format!(
                            "more than {MAX_PUSH_PROFILES} profiles"
                        )));
                    }
                    if out.iter().any(|(n, _)| *n == k) {
                        return Err(A::Error::custom(format!("duplicate profile {}", quote(&k))));
                    }
                    out.push((k, v));
                }
                Ok(Profiles(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPush {
    version: String,
    gw: String,
    expires: Value,
    sha256: String,
    config: String,
    #[serde(default)]
    profiles: Option<Profiles>,
    #[serde(default)]
    confirm_within: Option<String>,
}

/// Parse and validate a config push body for gateway `gw` at gateway time `now_ms`: strict
/// JSON shape, `version`, `gw`, `expires`, `sha256` (form, then that it matches `config`),
/// profile names, `confirm_within` (5 s - 24 h), then the clock (a push needs a trusted
/// clock: its expiry is what stops a replay) and the expiry. `Rejected.id` is the version.
/// The TOML itself is validated later by the code of `gasdtu check`.
pub fn parse_push(body: &str, gw: &str, now_ms: i64) -> Result<Push, Rejected> {
    let id = peek(body, "version", valid_version);
    let reject = |error: RemoteError| Rejected {
        id: id.clone(),
        error,
    };
    let raw: RawPush = serde_json::from_str(body).map_err(|e| reject(bad(format!("body: {e}"))))?;
    if !valid_version(&raw.version) {
        return Err(reject(bad(format!(
            "version {} is not 1 to 64 of A-Z a-z 0-9 . _ : + -",
            quote(&raw.version)
        ))));
    }
    check_gateway(&raw.gw, gw).map_err(reject)?;
    let expires_ms = parse_time(&raw.expires, "expires").map_err(reject)?;
    let sha = raw.sha256.as_bytes();
    let mut sha256 = [0u8; 32];
    let hex_ok = sha.len() == 64
        && sha.chunks(2).enumerate().all(|(i, p)| {
            match (sign::hex_digit(p[0]), sign::hex_digit(p[1])) {
                (Some(a), Some(b)) => {
                    sha256[i] = (a << 4) | b;
                    true
                }
                _ => false,
            }
        });
    if !hex_ok {
        return Err(reject(bad(
            "sha256 must be 64 lowercase hex characters (SHA-256 of the config's UTF-8 bytes)",
        )));
    }
    let actual = sign::sha256(raw.config.as_bytes());
    if actual != sha256 {
        return Err(reject(bad(format!(
            "sha256 does not match the config: the config's SHA-256 is {}",
            sign::hex(&actual)
        ))));
    }
    let mut profiles = raw.profiles.map(|p| p.0).unwrap_or_default();
    if let Some((name, _)) = profiles.iter().find(|(n, _)| !valid_name(n)) {
        return Err(reject(bad(format!(
            "profiles: {} is not a profile id (1 to 64 of A-Z a-z 0-9 _ -)",
            quote(name)
        ))));
    }
    profiles.sort_by(|a, b| a.0.cmp(&b.0));
    let confirm_within = match raw.confirm_within {
        None => None,
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(t) if (MIN_CONFIRM_WITHIN..=MAX_CONFIRM_WITHIN).contains(&t) => Some(t),
            Ok(_) => {
                return Err(reject(bad(format!(
                    "confirm_within {} is out of range 5s..=24h",
                    quote(&s)
                ))))
            }
            Err(e) => {
                return Err(reject(bad(format!(
                    "confirm_within {}: {e} (write e.g. \"10m\")",
                    quote(&s)
                ))))
            }
        },
    };
    check_expiry(expires_ms, now_ms, true).map_err(reject)?;
    Ok(Push {
        version: raw.version,
        expires_ms,
        sha256,
        config: raw.config,
        profiles,
        confirm_within,
    })
}

fn signature_policy(signer: Option<&KeyId>, cfg: &RemoteConfig) -> Result<bool, RemoteError> {
    match signer {
        Some(id) => {
            if cfg.keys.iter().any(|k| sign::key_id(k) == *id) {
                Ok(true)
            } else {
                Err(RemoteError::UnknownKey(format!(
                    "{id} is not one of this gateway's [remote] keys"
                )))
            }
        }
        None if !cfg.keys.is_empty() => Err(RemoteError::Unsigned(
            "this gateway accepts only requests signed by one of its [remote] keys".into(),
        )),
        None => Ok(false),
    }
}

/// Whether a command may run: with `[remote] keys`, only signed by one of them; without keys,
/// `write` only with `allow_unsigned = true` (every other op is accepted unsigned). A write
/// also passes `check_write`.
pub fn authorize_command(
    op: &Op,
    signer: Option<&KeyId>,
    cfg: &RemoteConfig,
) -> Result<(), RemoteError> {
    let signed = signature_policy(signer, cfg)?;
    if let Op::Write {
        device,
        point,
        value,
    } = op
    {
        if !signed && !cfg.allow_unsigned {
            return Err(RemoteError::Unsigned(
                "a write needs a signature: configure [remote] keys (or, on a private \
                 network, allow_unsigned = true)"
                    .into(),
            ));
        }
        check_write(device, point, value, cfg)?;
    }
    Ok(())
}

/// Whether a config push may be installed: with `[remote] keys`, only signed by one of them;
/// without keys, only with `allow_unsigned = true`.
pub fn authorize_push(signer: Option<&KeyId>, cfg: &RemoteConfig) -> Result<(), RemoteError> {
    let signed = signature_policy(signer, cfg)?;
    if !signed && !cfg.allow_unsigned {
        return Err(RemoteError::Unsigned(
            "a config push needs a signature: configure [remote] keys (or, on a private \
             network, allow_unsigned = true)"
                .into(),
        ));
    }
    Ok(())
}

/// A write against `[remote.writes]`: the point must be listed (`not_allowed`), and a number
/// must lie within its min/max (`out_of_range`; a point with limits takes numbers only). The
/// point's own type is checked by the executor against the point's spec.
pub fn check_write(
    device: &str,
    point: &str,
    value: &WriteValue,
    cfg: &RemoteConfig,
) -> Result<(), RemoteError> {
    let Some(w) = cfg
        .writes
        .iter()
        .find(|w| w.device == device && w.point == point)
    else {
        return Err(RemoteError::NotAllowed(format!(
            "{}.{} is not listed in [remote.writes]",
            crate::config::escape(device),
            crate::config::escape(point)
        )));
    };
    if w.min.is_none() && w.max.is_none() {
        return Ok(());
    }
    let x = match value {
        WriteValue::Number(x) => *x,
        WriteValue::Bool(b) => {
            return Err(RemoteError::OutOfRange(format!(
                "{device}.{point} has limits and takes a number, not {b}"
            )))
        }
    };
    let limits = || {
        format!(
            "{}..={}",
            w.min.map_or("-inf".to_string(), |m| m.to_string()),
            w.max.map_or("inf".to_string(), |m| m.to_string())
        )
    };
    if w.min.is_some_and(|m| x < m) || w.max.is_some_and(|m| x > m) {
        return Err(RemoteError::OutOfRange(format!(
            "{x} is outside {} for {device}.{point}",
            limits()
        )));
    }
    Ok(())
}

/// The status of a command result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    Refused,
    Expired,
    UnknownOutcome,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Refused => "refused",
            Status::Expired => "expired",
            Status::UnknownOutcome => "unknown_outcome",
        }
    }
}

/// The result JSON of `cmd/res` (the forwarder adds `gw` and `seq`):
/// `{"id","op","status","result","error":{"code","message"}|null,"at"}`.
pub fn result_json(
    id: &str,
    op: &str,
    status: Status,
    result: Option<Value>,
    error: Option<&RemoteError>,
    at_ms: i64,
) -> Value {
    serde_json::json!({
        "id": id,
        "op": op,
        "status": status.as_str(),
        "result": result.unwrap_or(Value::Null),
        "error": error.map(|e| serde_json::json!({"code": e.code(), "message": e.to_string()})),
        "at": crate::time::rfc3339_ms(at_ms),
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
