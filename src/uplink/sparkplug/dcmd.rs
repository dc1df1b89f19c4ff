//! A Sparkplug DCMD as remote write commands, pure: the bytes of a DCMD to one device become
//! the `remote::request::Command`s (`Op::Write`) that the gateway's remote service runs like a
//! `cmd/req` write (allow-list and min/max of `[remote.writes]`, the point's type and register
//! range at execution, bus write and read back, audit event, exactly once by command id), or
//! one `Rejected` naming why nothing may run. The id is derived from the device and the exact
//! bytes (a redelivered DCMD is the same command, answered from the store, never run twice);
//! the expiry from the payload timestamp (a DCMD queued at the broker for minutes is refused,
//! not run late). Sparkplug has no signatures, so a DCMD is an unsigned write: refused unless
//! `[remote] allow_unsigned = true` and no keys. All or nothing: one refused metric refuses the
//! whole DCMD. No I/O, no clock (`now_ms` is an argument); run by `gateway::remote::dcmd`
//! (docs/sparkplug.md).

use prost::Message;

use super::decode::{decode_dcmd, CommandError, MAX_COMMAND_BYTES};
use super::metrics::NodeModel;
use super::proto::Payload;
use crate::config::RemoteConfig;
use crate::model::Value;
use crate::remote::request::{authorize_command, Command, Op, Rejected, RemoteError, WriteValue};

/// A DCMD older than this (payload timestamp against the gateway's clock) is expired.
pub const DCMD_MAX_AGE_MS: i64 = 5 * 60_000;
/// A DCMD stamped further ahead of the gateway's clock than this is refused.
pub const DCMD_MAX_AHEAD_MS: i64 = 60_000;
/// Largest integer a write carries exactly (`WriteValue::Number` is an f64).
const MAX_EXACT: u64 = 1 << 53;

/// The command id of a DCMD: `spb:` and 16 hex digits of FNV-1a 64 over the device, a NUL and
/// the payload bytes; write `i` of it is `<id>:<i>`. Valid as a command id (1-64 of
/// `[A-Za-z0-9._:-]`).
pub fn dcmd_id(device: &str, bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes().chain([0]).chain(bytes.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("spb:{h:016x}")
}

/// How a decoder refusal is answered on the command path (its stable error code).
fn refusal(e: CommandError) -> RemoteError {
    let text = e.to_string();
    match e {
        CommandError::TooLarge(size) => RemoteError::TooLarge {
            size,
            max: MAX_COMMAND_BYTES,
        },
        CommandError::UnknownDevice(_)
        | CommandError::UnknownMetric(_)
        | CommandError::NameAliasMismatch { .. } => RemoteError::NotFound(text),
        CommandError::NotWritable(_) => RemoteError::NotAllowed(text),
        CommandError::DataType { .. } | CommandError::Value { .. } => RemoteError::OutOfRange(text),
        CommandError::Protobuf(_)
        | CommandError::TooManyMetrics(_)
        | CommandError::NoMetrics
        | CommandError::Unnamed
        | CommandError::NoValue(_)
        | CommandError::RebirthFalse
        | CommandError::Repeated(_) => RemoteError::BadRequest(text),
    }
}

/// A decoded metric value as the value of a remote write.
fn write_value(device: &str, point: &str, v: Value) -> Result<WriteValue, RemoteError> {
    let exact = |neg: bool, mag: u64| {
        if mag > MAX_EXACT {
            return Err(RemoteError::OutOfRange(format!(
                "{device}.{point}: {}{mag} is beyond what a write carries exactly (2^53)",
                if neg { "-" } else { "" }
            )));
        }
        let x = mag as f64;
        Ok(WriteValue::Number(if neg { -x } else { x }))
    };
    match v {
        Value::Bool(b) => Ok(WriteValue::Bool(b)),
        Value::Int(i) => exact(i < 0, i.unsigned_abs()),
        Value::UInt(u) => exact(false, u),
        Value::Float(x) if x.is_finite() => Ok(WriteValue::Number(x)),
        Value::Float(x) => Err(RemoteError::OutOfRange(format!(
            "{device}.{point}: {x} is not a finite number"
        ))),
        Value::Text(_) => Err(RemoteError::NotAllowed(format!(
            "{device}.{point} is a text point: not writable remotely"
        ))),
    }
}

/// The payload timestamp as the command's expiry, judged at `now_ms`.
fn expiry(bytes: &[u8], now_ms: i64) -> Result<i64, RemoteError> {
    // Already decoded once by `decode_dcmd`: bounded and well-formed.
    let p = Payload::decode(bytes).map_err(|e| RemoteError::BadRequest(e.to_string()))?;
    let Some(ts) = p.timestamp else {
        return Err(RemoteError::BadRequest(
            "DCMD without a payload timestamp (Sparkplug requires one; it bounds how late the \
             write may run)"
                .into(),
        ));
    };
    if now_ms < crate::time::MIN_TRUSTED_UNIX_MS {
        return Err(RemoteError::ClockUntrusted);
    }
    let ts = i64::try_from(ts)
        .ok()
        .filter(|t| *t <= now_ms.saturating_add(DCMD_MAX_AHEAD_MS))
        .ok_or_else(|| {
            RemoteError::BadRequest(format!(
                "DCMD timestamp {ts} is more than {} s ahead of the gateway's clock ({})",
                DCMD_MAX_AHEAD_MS / 1000,
                crate::time::rfc3339_ms(now_ms)
            ))
        })?;
    let expires_ms = ts.saturating_add(DCMD_MAX_AGE_MS);
    if now_ms > expires_ms {
        return Err(RemoteError::Expired { expires_ms, now_ms });
    }
    Ok(expires_ms)
}

/// The remote write commands of a DCMD to `device` (the device of its topic), or why none may
/// run. `remote` is the running `[remote]` section (None: remote writes are off).
pub fn dcmd_commands(
    model: &NodeModel,
    remote: Option<&RemoteConfig>,
    device: &str,
    bytes: &[u8],
    now_ms: i64,
) -> Result<Vec<Command>, Rejected> {
    let id = dcmd_id(device, bytes);
    let reject = |error: RemoteError| Rejected {
        id: Some(id.clone()),
        error,
    };
    let Some(remote) = remote else {
        return Err(reject(RemoteError::NotAllowed(
            "no [remote] section: remote writes are off".into(),
        )));
    };
    let writes = decode_dcmd(model, device, bytes).map_err(|e| reject(refusal(e)))?;
    let expires_ms = expiry(bytes, now_ms).map_err(reject)?;
    let mut out = Vec::with_capacity(writes.len());
    for (i, w) in writes.into_iter().enumerate() {
        let value = write_value(&w.device, &w.point, w.value).map_err(reject)?;
        let op = Op::Write {
            device: w.device,
            point: w.point,
            value,
        };
        authorize_command(&op, None, remote).map_err(|e| match e {
            RemoteError::Unsigned(_) => reject(RemoteError::Unsigned(
                "a Sparkplug DCMD carries no signature: DCMD writes need [remote] \
                 allow_unsigned = true and no [remote] keys"
                    .into(),
            )),
            e => reject(e),
        })?;
        out.push(Command {
            id: format!("{id}:{i}"),
            expires_ms,
            op,
        });
    }
    Ok(out)
}
