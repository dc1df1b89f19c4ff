//! Executing a remote command once it is opened, parsed and authorized: ping, status,
//! config/get, read and write through the bus task that owns the bus (bounded by
//! `BUS_TIMEOUT`), ack through the `AlarmService`, resend from the store's history; and the
//! bound on what a result may weigh on the wire (`too_large` when it cannot be sent whole).
//! Never touches the inbox or acknowledges anything: `super` decides what is answered.

use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use crate::alarm::engine::AckError;
use crate::config::{Config, RemoteConfig};
use crate::gateway::alarms::AlarmError;
use crate::modbus::bus::{BusRequest, RawOp, RawRequest, WriteRequest};
use crate::model::{DataType, PointSpec, Value};
use crate::remote::request::{self, Op, RemoteError, Status, WriteValue};
use crate::store::StoreError;
use crate::uplink::LinkState;

use super::{
    blocking, RemoteContext, BUS_TIMEOUT, CONFIG_GET_MAX, ENVELOPE_MARGIN, RESEND_MAX_READINGS,
};

/// An execution failure, with a partial result when there is one.
type Failure = (Option<Json>, RemoteError);

fn fail(e: RemoteError) -> Failure {
    (None, e)
}

pub(super) async fn execute(
    ctx: &RemoteContext,
    cfg: &Config,
    _remote: &RemoteConfig,
    op: &Op,
    signer: &str,
) -> Result<Json, Failure> {
    match op {
        Op::Ping => Ok(json!({"pong": true, "version": env!("CARGO_PKG_VERSION")})),
        Op::Status => Ok(status_json(ctx, cfg)),
        Op::ConfigGet => config_get(ctx, cfg).await,
        Op::Read { points } => read_points(ctx, cfg, points).await,
        Op::Write {
            device,
            point,
            value,
        } => write_point(ctx, cfg, device, point, *value).await,
        Op::Ack { occurrence, note } => {
            let by = match note {
                Some(n) => format!(
                    "remote {}, says \"{}\"",
                    signer_by(signer),
                    crate::config::escape(n)
                ),
                None => format!("remote {}", signer_by(signer)),
            };
            let alarms = ctx.alarms.clone();
            let (o, by2) = (*occurrence, by.clone());
            match tokio::task::spawn_blocking(move || alarms.acknowledge(o, &by2)).await {
                Ok(Ok(n)) => {
                    ctx.wake.notify_one();
                    Ok(json!({"acked": occurrence, "by": by, "transitions": n}))
                }
                Ok(Err(AlarmError::Ack(e @ AckError::Unknown(_)))) => {
                    Err(fail(RemoteError::NotFound(e.to_string())))
                }
                Ok(Err(AlarmError::Ack(e @ AckError::AlreadyAcked(_)))) => {
                    Err(fail(RemoteError::NotAllowed(e.to_string())))
                }
                Ok(Err(AlarmError::Store(e))) => Err(fail(RemoteError::Store(e.to_string()))),
                Err(e) => Err(fail(RemoteError::Store(e.to_string()))),
            }
        }
        Op::Resend {
            device,
            from_ms,
            to_ms,
        } => {
            let store = ctx.store.clone();
            let (d, f, t) = (device.clone(), *from_ms, *to_ms);
            // The device's `publish = false` points: their rows were never sent, nor are they now.
            let local: Vec<String> = cfg
                .devices
                .iter()
                .filter(|c| c.name == *device)
                .flat_map(|c| c.points.iter().filter(|p| !p.publish))
                .map(|p| p.name.clone())
                .collect();
            let r = blocking(move || {
                let local: Vec<&str> = local.iter().map(String::as_str).collect();
                store.resend_history(&d, f, t, RESEND_MAX_READINGS, &local)
            })
            .await
            .map_err(|e| match e {
                StoreError::OutOfBounds { what, why } => {
                    fail(RemoteError::BadRequest(format!("{what}: {why}")))
                }
                e => fail(RemoteError::Store(e.to_string())),
            })?;
            if !r.device_known {
                return Err(fail(RemoteError::NotFound(format!(
                    "device {:?} has no history in this gateway's store",
                    crate::config::escape(device)
                ))));
            }
            ctx.wake.notify_one();
            Ok(json!({
                "device": device,
                "entries": r.entries,
                "readings": r.readings,
                "first": r.first_ms.map(crate::time::rfc3339_ms),
                "last": r.last_ms.map(crate::time::rfc3339_ms),
                "more": r.more,
            }))
        }
    }
}

/// The status of an error found while executing: `too_large` then means the command ran but
/// its result cannot be sent (`error`); everything else keeps its own status (a type check
/// done at execution is still a refusal: nothing was written).
pub(super) fn executed_status(e: &RemoteError) -> Status {
    match e {
        RemoteError::TooLarge { .. } => Status::Error,
        e => e.status(),
    }
}

/// "by remote key <id>" or "by remote (unsigned)".
fn signer_by(signer: &str) -> String {
    if signer == "unsigned" {
        "(unsigned)".into()
    } else {
        signer.to_string()
    }
}

/// A compact status (fits a 1 KiB `max_payload`): device counts, buffer, link.
fn status_json(ctx: &RemoteContext, cfg: &Config) -> Json {
    let board = ctx.board.snapshot();
    let enabled = cfg.devices.iter().filter(|d| d.enabled).count();
    let online = board.values().filter(|d| d.online).count();
    let offline = board.values().filter(|d| !d.online).count();
    let buffer = match ctx.store.stats() {
        Ok(s) => json!({
            "pending_readings": s.pending_readings,
            "pending_entries": s.pending_entries,
            "unacked": s.sealed_messages,
            "oldest_pending_read_ms": s.oldest_pending_read_ms,
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    let l = ctx.link.borrow().clone();
    let state = match l.state {
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Down { .. } => "down",
        LinkState::Asleep { .. } => "asleep",
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "devices": {"enabled": enabled, "online": online, "offline": offline,
            "not_polled_yet": enabled.saturating_sub(online + offline)},
        "alarms_active": ctx.alarms.active().len(),
        "commands_unanswerable": ctx.unanswerable.load(std::sync::atomic::Ordering::Relaxed),
        "buffer": buffer,
        "link": {"state": state, "last_seq": l.last_seq, "reconnects": l.reconnects,
            "dead_letters": l.dead_letters},
    })
}

/// The running config file: its text when it fits both the store's result bound and the
/// uplink's `max_payload`; otherwise `too_large` with its sha256 and size (never a cut config).
async fn config_get(ctx: &RemoteContext, cfg: &Config) -> Result<Json, Failure> {
    let Some(path) = ctx.config_path.clone() else {
        return Err(fail(RemoteError::NotFound(
            "this gateway runs an embedded config (no config file)".into(),
        )));
    };
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let f = std::fs::File::open(&path)?;
        let mut buf = Vec::new();
        // Bounded: a config is at most 1 MiB (the loader's own bound is lower).
        f.take(1024 * 1024 + 1).read_to_end(&mut buf)?;
        Ok::<_, std::io::Error>((path, buf))
    })
    .await;
    let (path, bytes) = match read {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(fail(RemoteError::NotFound(format!("config file: {e}")))),
        Err(e) => return Err(fail(RemoteError::Store(e.to_string()))),
    };
    let sha = crate::remote::sign::hex(&crate::remote::sign::sha256(&bytes));
    let meta = json!({"path": path.display().to_string(), "sha256": sha, "bytes": bytes.len()});
    let Ok(text) = String::from_utf8(bytes) else {
        return Err((
            Some(meta),
            RemoteError::BadRequest("the config file is not UTF-8".into()),
        ));
    };
    let limit = result_limit(cfg);
    let mut out = meta.clone();
    out["config"] = Json::String(text);
    let sent = sent_size("config/get", &out);
    if out["config"].as_str().map_or(0, str::len) > CONFIG_GET_MAX || sent > limit {
        return Err((
            Some(meta),
            RemoteError::TooLarge {
                size: sent,
                max: limit,
            },
        ));
    }
    Ok(out)
}

/// The largest result that is sent whole: the uplink's `max_payload` and the store's bound.
fn result_limit(cfg: &Config) -> usize {
    cfg.uplink
        .as_ref()
        .map(|u| u.max_payload)
        .unwrap_or(usize::MAX)
        .min(crate::store::COMMAND_JSON_MAX)
}

/// Bytes of a result on the wire: the result envelope (longest id), JSON escaping, `gw`, `seq`.
fn sent_size(op: &str, result: &Json) -> usize {
    let id = "x".repeat(crate::store::COMMAND_ID_MAX);
    request::result_json(&id, op, Status::Ok, Some(result.clone()), None, 0)
        .to_string()
        .len()
        + ENVELOPE_MARGIN
}

/// A `read` or `status` result that would not be sent whole (the forwarder would cut its
/// strings, or set it aside) becomes `too_large`: ask for fewer points. Results of ops with
/// an effect are small and kept (the forwarder's `fit_json` shortens their strings if needed).
pub(super) fn bounded(cfg: &Config, op: &Op, r: Result<Json, Failure>) -> Result<Json, Failure> {
    match (op, r) {
        (Op::Read { .. } | Op::Status, Ok(v)) => {
            let (size, max) = (sent_size(op.name(), &v), result_limit(cfg));
            if size > max {
                Err(fail(RemoteError::TooLarge { size, max }))
            } else {
                Ok(v)
            }
        }
        (_, r) => r,
    }
}

/// The spec of `device.point` in the running config.
fn find_point<'a>(
    cfg: &'a Config,
    device: &str,
    point: &str,
) -> Result<(&'a crate::config::DeviceConfig, &'a PointSpec), RemoteError> {
    let d = cfg
        .devices
        .iter()
        .find(|d| d.name == device)
        .ok_or_else(|| {
            RemoteError::NotFound(format!("no device {device:?} in the running config"))
        })?;
    if !d.enabled {
        return Err(RemoteError::NotFound(format!(
            "device {device:?} is disabled"
        )));
    }
    let p = d.points.iter().find(|p| p.name == point).ok_or_else(|| {
        if d.computed.iter().any(|c| c.name == point) {
            RemoteError::NotFound(format!(
                "{device}.{point} is computed: read the points it is computed from"
            ))
        } else {
            RemoteError::NotFound(format!("device {device:?} has no point {point:?}"))
        }
    })?;
    Ok((d, p))
}

fn bus_sender(ctx: &RemoteContext, bus: &str) -> Option<mpsc::Sender<BusRequest>> {
    ctx.ports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(bus)
        .map(|p| p.tx.clone())
}

/// Live read of each point through its bus task (between poll cycles), with its quality.
/// Every name is checked first: an unknown one fails the command before any bus traffic.
async fn read_points(
    ctx: &RemoteContext,
    cfg: &Config,
    points: &[(String, String)],
) -> Result<Json, Failure> {
    let mut specs = Vec::with_capacity(points.len());
    for (d, p) in points {
        let (dev, spec) = find_point(cfg, d, p).map_err(fail)?;
        specs.push((dev.bus.clone(), dev.unit, d.clone(), spec.clone()));
    }
    let mut values = Vec::with_capacity(specs.len());
    for (bus, unit, device, spec) in specs {
        let name = format!("{device}.{}", spec.name);
        let read = read_one(ctx, &bus, unit, &spec).await;
        let at = crate::time::rfc3339_ms(crate::time::now_ms());
        values.push(match read {
            Ok(v) => json!({"point": name, "value": v, "quality": "good", "read_at": at}),
            Err(e) => {
                json!({"point": name, "value": null, "quality": "bad", "error": e, "read_at": at})
            }
        });
    }
    Ok(json!({ "values": values }))
}

async fn read_one(
    ctx: &RemoteContext,
    bus: &str,
    unit: u8,
    p: &PointSpec,
) -> Result<Value, String> {
    let tx = bus_sender(ctx, bus).ok_or_else(|| format!("no running bus task for bus {bus:?}"))?;
    let op = RawOp::Read {
        table: p.table,
        address: p.address,
        count: p.width(),
    };
    let (req, rx) = RawRequest::new(unit, op).map_err(|e| e.to_string())?;
    tx.send(BusRequest::Raw(req))
        .await
        .map_err(|_| "the bus task stopped".to_string())?;
    let regs = match tokio::time::timeout(BUS_TIMEOUT, rx).await {
        Ok(Ok(r)) => r.map_err(|e| e.to_string())?,
        Ok(Err(_)) => return Err("the bus task dropped the request".into()),
        Err(_) => return Err(format!("no answer within {BUS_TIMEOUT:?}")),
    };
    crate::modbus::registers::decode_point(p, &regs).map_err(|e| e.to_string())
}

/// The point's type against the value: a bit takes true/false, a number type takes a number
/// its encoding can hold (checked by encoding it, scale and offset applied).
fn typed_value(p: &PointSpec, v: WriteValue) -> Result<Value, RemoteError> {
    let is_bit = matches!(p.data_type, DataType::Bool | DataType::BitOfRegister(_));
    let value = match (is_bit, v) {
        (true, WriteValue::Bool(b)) => Value::Bool(b),
        (false, WriteValue::Number(x)) => Value::Float(x),
        (true, WriteValue::Number(x)) => {
            return Err(RemoteError::OutOfRange(format!(
                "{} is a bit: write true or false, not {x}",
                p.name
            )))
        }
        (false, WriteValue::Bool(b)) => {
            return Err(RemoteError::OutOfRange(format!(
                "{} is a number: write a number, not {b}",
                p.name
            )))
        }
    };
    if matches!(p.data_type, DataType::String(_)) {
        return Err(RemoteError::NotAllowed(format!(
            "{} is a text point: not writable remotely",
            p.name
        )));
    }
    if p.table == crate::model::Table::HoldingRegister {
        crate::modbus::registers::encode_point(p, &value)
            .map_err(|e| RemoteError::OutOfRange(format!("{} cannot hold {v}: {e}", p.name)))?;
    }
    Ok(value)
}

/// Write through the bus task (`BusRequest::WritePoint`, read back), as the interlocks do.
async fn write_point(
    ctx: &RemoteContext,
    cfg: &Config,
    device: &str,
    point: &str,
    v: WriteValue,
) -> Result<Json, Failure> {
    let (dev, spec) = find_point(cfg, device, point).map_err(fail)?;
    if !spec.writable {
        return Err(fail(RemoteError::NotAllowed(format!(
            "{device}.{point} is not writable in its point spec"
        ))));
    }
    let value = typed_value(spec, v).map_err(fail)?;
    let name = format!("{device}.{point}");
    let Some(tx) = bus_sender(ctx, &dev.bus) else {
        return Err(fail(RemoteError::Bus(format!(
            "no running bus task for bus {:?}",
            dev.bus
        ))));
    };
    let (rtx, rrx) = tokio::sync::oneshot::channel();
    let req = WriteRequest {
        device: device.to_string(),
        point: point.to_string(),
        value,
        reply: rtx,
    };
    tracing::warn!(point = %name, value = %v, "remote write");
    if tx.send(BusRequest::WritePoint(req)).await.is_err() {
        return Err(fail(RemoteError::Bus("the bus task stopped".into())));
    }
    let written = json!(match v {
        WriteValue::Bool(b) => json!(b),
        WriteValue::Number(x) => json!(x),
    });
    match tokio::time::timeout(BUS_TIMEOUT, rrx).await {
        Ok(Ok(Ok(rb))) => Ok(json!({"point": name, "written": written, "readback": rb})),
        Ok(Ok(Err(e))) => Err((
            Some(json!({"point": name, "written": written})),
            RemoteError::Bus(e),
        )),
        Ok(Err(_)) => Err(fail(RemoteError::Bus(
            "the bus task dropped the request".into(),
        ))),
        Err(_) => Err(fail(RemoteError::Bus(format!(
            "no result within {BUS_TIMEOUT:?} (the write may have happened)"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Table, WordOrder};

    fn spec(dt: DataType, table: Table) -> PointSpec {
        PointSpec {
            name: "p".into(),
            table,
            address: 0,
            data_type: dt,
            order: WordOrder::default(),
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: true,
            scale_from: None,
            publish: true,
        }
    }

    #[test]
    fn write_values_are_checked_against_the_point_type() {
        use WriteValue::*;
        let coil = spec(DataType::Bool, Table::Coil);
        let u16r = spec(DataType::U16, Table::HoldingRegister);
        let f32r = spec(DataType::F32, Table::HoldingRegister);
        let text = spec(DataType::String(4), Table::HoldingRegister);
        let cases: [(&PointSpec, WriteValue, Result<(), &str>); 8] = [
            (&coil, Bool(true), Ok(())),
            (&coil, Number(1.0), Err("out_of_range")),
            (&u16r, Bool(true), Err("out_of_range")),
            (&u16r, Number(65535.0), Ok(())),
            (&u16r, Number(-1.0), Err("out_of_range")),
            (&u16r, Number(70000.0), Err("out_of_range")),
            (&f32r, Number(2.5), Ok(())),
            (&text, Number(1.0), Err("not_allowed")),
        ];
        for (p, v, want) in cases {
            let got = typed_value(p, v).map(|_| ()).map_err(|e| e.code());
            assert_eq!(got, want, "{:?} {v:?}", p.data_type);
        }
    }

    fn cfg() -> Config {
        let text = "[gateway]\nid = \"g\"\nstate_dir = \"/tmp/x\"\n";
        match crate::config::parse_str(text, "t.toml", std::path::Path::new("/")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn read_and_status_results_that_cannot_be_sent_whole_become_too_large() {
        let cfg = cfg();
        let read = Op::Read { points: vec![] };
        let values = |n: usize, len: usize| {
            let v: Vec<Json> = (0..n)
                .map(|i| json!({"point": format!("d.p{i}"), "value": "v".repeat(len)}))
                .collect();
            json!({ "values": v })
        };
        let write = Op::Write {
            device: "d".into(),
            point: "p".into(),
            value: WriteValue::Bool(true),
        };
        // (op, result, expected error code or None for kept)
        let cases: [(&Op, Json, Option<&str>); 5] = [
            (&read, values(2, 10), None),
            (&read, values(64, 300), Some("too_large")),
            (&Op::Status, json!({"x": "y".repeat(100)}), None),
            (
                &Op::Status,
                json!({"x": "y".repeat(20_000)}),
                Some("too_large"),
            ),
            // An op with an effect keeps its result (the forwarder shortens strings).
            (&write, json!({"x": "y".repeat(20_000)}), None),
        ];
        for (op, v, want) in cases {
            let got = bounded(&cfg, op, Ok(v)).err().map(|(_, e)| e.code());
            assert_eq!(got, want, "{}", op.name());
        }
        assert_eq!(
            executed_status(&RemoteError::TooLarge { size: 2, max: 1 }),
            Status::Error
        );
        assert_eq!(
            executed_status(&RemoteError::OutOfRange("x".into())),
            Status::Refused
        );
    }

    mod props {
        //! Fixed seed, bounded cases: the write type check never panics on any number or
        //! scaling, and a value it accepts for a register point is one the bus task can encode.
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 2000,
                rng_seed: RngSeed::Fixed(0x0C0D_5E12),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn accepted_register_writes_always_encode(
                dt in prop_oneof![
                    Just(DataType::U16), Just(DataType::I16), Just(DataType::U32),
                    Just(DataType::I32), Just(DataType::F32), Just(DataType::F64),
                    Just(DataType::Bcd16), Just(DataType::Bcd32), Just(DataType::U64),
                ],
                x in prop_oneof![any::<f64>(), -1e6..1e6f64],
                scale in prop_oneof![Just(1.0), Just(0.1), any::<f64>()],
                as_bool in any::<bool>(),
            ) {
                let mut p = spec(dt, Table::HoldingRegister);
                p.scale = scale;
                let v = if as_bool { WriteValue::Bool(x > 0.0) } else { WriteValue::Number(x) };
                if let Ok(value) = typed_value(&p, v) {
                    prop_assert!(crate::modbus::registers::encode_point(&p, &value).is_ok());
                }
            }
        }
    }
}
