//! Issue 12, "wrong on the wire": exact values from the registers to the payload bytes and back
//! through `decode`, with hex register fixtures in every word order; and `decode` recognising
//! one real sample of every payload gasdtu publishes (made with the real encoders).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use super::*;
use crate::config::StoreConfig;
use crate::modbus::registers::decode_point;
use crate::model::{DataType, PointSpec, Quality, Sample, SampleBatch, Table, Value, WordOrder};
use crate::outbox::{Entry, EntryBody, EntryKind, ReplyTopic};
use crate::store::{ClockStamp, ExportFilter, Store, MIN_TRUSTED_UNIX_MS};

const T: i64 = MIN_TRUSTED_UNIX_MS + 86_400_000;
const GW: &str = "gw-1";

fn regs(hex: &str) -> Vec<u16> {
    hex.split_whitespace()
        .map(|w| u16::from_str_radix(w, 16).expect("fixture hex"))
        .collect()
}

fn spec(t: DataType, order: WordOrder, scale: f64, offset: f64) -> PointSpec {
    PointSpec {
        name: "p".into(),
        table: Table::HoldingRegister,
        address: 0,
        data_type: t,
        order,
        scale,
        offset,
        unit: None,
        writable: false,
        scale_from: None,
        publish: true,
    }
}

fn sample(point: &str, v: Value) -> Sample {
    Sample {
        point: point.into(),
        value: Some(v),
        unit: Some(Arc::from("m3")),
        quality: Quality::Good,
        read_at: UNIX_EPOCH + Duration::from_millis(T as u64),
    }
}

fn batch(samples: Vec<Sample>) -> SampleBatch {
    SampleBatch {
        device: "evc1".into(),
        bus: "rs485".into(),
        slot: UNIX_EPOCH + Duration::from_millis(T as u64),
        samples,
        online: true,
        failed_cycles: 0,
    }
}

fn entry(id: i64, kind: EntryKind, body: EntryBody) -> Entry {
    Entry {
        id,
        kind,
        historical: false,
        created_ms: T,
        body,
    }
}

/// A decoded JSON number is exactly the double `want` (bit for bit).
fn same_double(v: &Json, want: f64) -> bool {
    v.as_f64().map(f64::to_bits) == Some(want.to_bits())
}

/// The one payload of `entries` in `enc`.
fn one_payload(entries: &[Entry], enc: Encoding) -> Vec<u8> {
    let msgs = encode_messages(entries, GW, 1024, enc);
    assert_eq!(msgs.len(), 1);
    msgs[0].build(GW, 7).expect("builds")
}

/// Value of `point` in the first read of a decoded data message.
fn decoded(bytes: &[u8], point: &str) -> Json {
    let d = decode(bytes).expect("decodes");
    d["data"][0]["reads"][0]["v"][point].clone()
}

/// A u32 whole part and an f32 fraction (the evc-dcba profile's totalizers), as registers in
/// each word order, summed by the computed-point arithmetic of the poller, and published.
#[test]
fn int_plus_fraction_totals_are_exact_on_json_cbor_and_decode() {
    // (order, u32 registers, f32 registers, total as JSON text)
    #[rustfmt::skip]
    let cases: &[(WordOrder, &str, &str, &str)] = &[
        // 16_777_217 (above 2^24) + 0.25
        (WordOrder::Abcd, "0100 0001", "3E80 0000", "16777217.25"),
        (WordOrder::Cdab, "0001 0100", "0000 3E80", "16777217.25"),
        (WordOrder::Badc, "0001 0100", "803E 0000", "16777217.25"),
        (WordOrder::Dcba, "0100 0001", "0000 803E", "16777217.25"),
        // 987_654 + 0.32f32 (0x3EA3D70A)
        (WordOrder::Abcd, "000F 1206", "3EA3 D70A", "987654.32"),
        (WordOrder::Cdab, "1206 000F", "D70A 3EA3", "987654.32"),
        (WordOrder::Badc, "0F00 0612", "A33E 0AD7", "987654.32"),
        (WordOrder::Dcba, "0612 0F00", "0AD7 A33E", "987654.32"),
        // 987_654 + 0.3125: the sum is exactly an f32 whose shortest f32 form (987654.3) is
        // not the value; it used to go out at f32 precision.
        (WordOrder::Abcd, "000F 1206", "3EA0 0000", "987654.3125"),
        // 4_294_967_295 + 0.999f32
        (WordOrder::Dcba, "FFFF FFFF", "77BE 7F3F", "4294967295.999"),
    ];
    for &(order, int_hex, frac_hex, text) in cases {
        let int = decode_point(&spec(DataType::U32, order, 1.0, 0.0), &regs(int_hex)).unwrap();
        let frac = decode_point(&spec(DataType::F32, order, 1.0, 0.0), &regs(frac_hex)).unwrap();
        let total = crate::decimal::weighted_sum(&[
            (int.as_f64().unwrap(), 1.0),
            (frac.as_f64().unwrap(), 1.0),
        ]);
        let want: f64 = text.parse().unwrap();
        assert_eq!(
            total.to_bits(),
            want.to_bits(),
            "{order} {int_hex} + {frac_hex}"
        );
        let b = batch(vec![sample("volume_standard", Value::Float(total))]);
        let e = [entry(1, EntryKind::Data, EntryBody::Batch(b))];
        let js = one_payload(&e, Encoding::Json);
        let needle = format!("\"volume_standard\":{text}");
        assert!(
            String::from_utf8_lossy(&js).contains(&needle),
            "{order}: {} lacks {needle}",
            String::from_utf8_lossy(&js)
        );
        for bytes in [js, one_payload(&e, Encoding::Cbor)] {
            let v = decoded(&bytes, "volume_standard");
            assert_eq!(v.to_string(), text, "{order} {int_hex} + {frac_hex}");
            assert!(same_double(&v, want), "{order} {int_hex} + {frac_hex}");
        }
    }
}

/// The same totals through the SQLite store (blob, outbox entry, export) and out again.
#[test]
fn totals_stay_exact_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let totals = [16_777_217.25, 987_654.32, 0.1 + 0.2];
    let b = batch(
        totals
            .iter()
            .enumerate()
            .map(|(i, x)| sample(&format!("v{i}"), Value::Float(*x)))
            .collect(),
    );
    let stamp = ClockStamp {
        wall_ms: T + 1000,
        mono_ms: 3_600_000,
        boot_id: "boot".into(),
    };
    store.commit(&[b], &[], &stamp).unwrap();
    let mut exported = Vec::new();
    store
        .export(&ExportFilter::default(), &mut |b| {
            exported.push(b.clone());
            Ok(())
        })
        .unwrap();
    let pending: Vec<Entry> = crate::outbox::Outbox::pending(&store, 10, 0)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Data)
        .collect();
    let EntryBody::Batch(sent) = &pending[0].body else {
        panic!("a batch entry");
    };
    for (i, x) in totals.iter().enumerate() {
        for got in [&exported[0].batch.samples[i], &sent.samples[i]] {
            assert_eq!(got.value, Some(Value::Float(*x)), "v{i}");
        }
        for enc in [Encoding::Json, Encoding::Cbor] {
            let bytes = one_payload(&pending, enc);
            let v = decoded(&bytes, &format!("v{i}"));
            assert!(same_double(&v, *x), "{enc:?} v{i}");
        }
    }
}

/// Scaled registers go out with the decimals the raw value and the scale carry, in JSON, in
/// CBOR (the exact double, narrowed by the CBOR writer only where that is lossless) and
/// through `decode`.
#[test]
fn scaled_values_carry_no_float_noise() {
    use DataType as D;
    use WordOrder as O;
    // (type, order, registers, scale, offset, JSON text, CBOR float width in bytes)
    #[rustfmt::skip]
    let cases: &[(DataType, WordOrder, &str, f64, f64, &str, usize)] = &[
        (D::I16, O::Abcd, "DCDA", 0.1, 0.0, "-899.8", 9),
        (D::I16, O::Abcd, "05DE", 0.1, 0.0, "150.2", 9),
        (D::U32, O::Abcd, "0006 1A99", 0.01, 0.0, "4000.25", 5),
        (D::U16, O::Abcd, "0FA2", 0.1, 0.0, "400.2", 9),
        (D::I16, O::Abcd, "8000", 0.01, 0.0, "-327.68", 9),
        (D::U16, O::Abcd, "0000", 0.1, 0.0, "0.0", 3),
        (D::U16, O::Abcd, "0AAB", 0.1, -273.15, "-0.05", 9),
        (D::U16, O::Abcd, "0AAC", 0.1, -273.15, "0.05", 9),
        (D::I32, O::Abcd, "FFFE 1DC0", 0.001, 0.0, "-123.456", 9),
        (D::I32, O::Cdab, "1DC0 FFFE", 0.001, 0.0, "-123.456", 9),
        (D::I32, O::Badc, "FEFF C01D", 0.001, 0.0, "-123.456", 9),
        (D::I32, O::Dcba, "C01D FEFF", 0.001, 0.0, "-123.456", 9),
        // 3_735_928_559 x 0.001: more digits than an f32 carries, so a double.
        (D::U32, O::Abcd, "DEAD BEEF", 0.001, 0.0, "3735928.559", 9),
        (D::Bcd32, O::Abcd, "9876 5432", 0.0001, 0.0, "9876.5432", 9),
        // An f32 of 1.01325 bar at scale 100: 101.325 kPa, not 101.32499933242798.
        (D::F32, O::Abcd, "3F81 B22D", 100.0, 0.0, "101.325", 9),
        (D::F32, O::Cdab, "B22D 3F81", 100.0, 0.0, "101.325", 9),
        (D::F32, O::Badc, "813F 2DB2", 100.0, 0.0, "101.325", 9),
        (D::F32, O::Dcba, "2DB2 813F", 100.0, 0.0, "101.325", 9),
    ];
    for &(t, order, hex, scale, offset, text, width) in cases {
        let name = format!("{t} {order} [{hex}] x{scale}+{offset}");
        let v = decode_point(&spec(t, order, scale, offset), &regs(hex)).unwrap();
        let b = batch(vec![sample("p", v)]);
        let e = [entry(1, EntryKind::Data, EntryBody::Batch(b))];
        let js = one_payload(&e, Encoding::Json);
        let needle = format!("\"p\":{text}");
        assert!(
            String::from_utf8_lossy(&js).contains(&needle),
            "{name}: {}",
            String::from_utf8_lossy(&js)
        );
        let cbor = one_payload(&e, Encoding::Cbor);
        for bytes in [&js, &cbor] {
            assert_eq!(decoded(bytes, "p").to_string(), text, "{name}");
        }
        // The float's width on the CBOR wire: its initial byte follows the read's header, its
        // time delta (0) and the one-slot values array.
        let at = cbor
            .windows(3)
            .position(|w| w == [0x82, 0x00, 0x81])
            .expect("the read [0, [value]]");
        let head = cbor[at + 3];
        let got = match head {
            0xf9 => 3,
            0xfa => 5,
            0xfb => 9,
            other => panic!("{name}: not a float: {other:#x}"),
        };
        assert_eq!(got, width, "{name}");
    }
}

/// Decoding a JSON payload never moves a number (serde_json with `float_roundtrip`): the
/// noisy values older versions published come back as they were written.
#[test]
fn decoding_json_never_changes_a_value() {
    let cases = [
        "400.20000000000005",
        "-899.8000000000001",
        "150.20000000000002",
        "987654.3199999928",
        "1.7976931348623157e308",
        "5e-324",
        "0.1",
    ];
    for text in cases {
        let payload = format!(
            r#"{{"gw":"gw-1","seq":1,"hist":false,"data":[{{"dev":"d","reads":[{{"t":"2026-01-02T00:00:00.000Z","v":{{"p":{text}}}}}]}}]}}"#
        );
        let v = decoded(payload.as_bytes(), "p");
        let want: f64 = text.parse().unwrap();
        assert!(same_double(&v, want), "{text}");
        // And what `gasdtu decode` prints reads back to the same double.
        let out = serde_json::to_string(&decode(payload.as_bytes()).unwrap()).unwrap();
        let again = decoded(out.as_bytes(), "p");
        assert!(same_double(&again, want), "{text}");
    }
}

/// One real sample of each payload gasdtu publishes, made by the code that makes it.
#[test]
fn decode_recognises_every_payload_gasdtu_publishes() {
    use crate::alarm::{AlarmEngine, AlarmRule, Level, RuleKind, Severity};
    let data = [entry(
        1,
        EntryKind::Data,
        EntryBody::Batch(batch(vec![sample("pressure", Value::Float(450.5))])),
    )];
    let rule = AlarmRule {
        id: "p_high".into(),
        devices: vec!["evc1".into()],
        point: Some("pressure".into()),
        kind: RuleKind::Limit {
            levels: vec![(Level::High, 400.0)],
            deadband: 0.0,
        },
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        severity: Severity::Major,
        message: None,
        latched: false,
        action: None,
    };
    let mut engine = AlarmEngine::new(vec![rule], 1);
    let EntryBody::Batch(b) = &data[0].body else {
        unreachable!()
    };
    let alarm = engine.evaluate(std::slice::from_ref(b));
    assert_eq!(alarm.len(), 1, "the rule raises");
    let dead = crate::outbox::DeadLetter {
        seq: 5,
        topic: "gasdtu/gw-1/event".into(),
        bytes: 9000,
        reason: "too large".into(),
    };
    let res = crate::remote::request::result_json(
        "ops-1",
        "ping",
        crate::remote::request::Status::Ok,
        Some(json!({"pong": true})),
        None,
        T,
    );
    let state = crate::gateway::push::state_json(
        "v2",
        "ab12",
        "applied",
        T,
        Some(("v2", "ab12")),
        &[],
        None,
    );
    let json_msg =
        |kind, body: Json| one_payload(&[entry(2, kind, EntryBody::Json(body))], Encoding::Json);
    let health = serde_json::to_vec(&crate::uplink::forwarder::health_json(
        GW,
        T,
        41,
        0,
        0,
        &crate::uplink::LinkStatus::default(),
    ))
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, PayloadKind)> = vec![
        (
            "data JSON",
            one_payload(&data, Encoding::Json),
            PayloadKind::DataJson,
        ),
        (
            "data CBOR",
            one_payload(&data, Encoding::Cbor),
            PayloadKind::DataCbor,
        ),
        (
            "alarm",
            json_msg(EntryKind::Alarm, alarm[0].clone()),
            PayloadKind::Alarm,
        ),
        (
            "event",
            json_msg(EntryKind::Event, dead.event_json()),
            PayloadKind::Event,
        ),
        (
            "wrapped body",
            json_msg(EntryKind::Event, json!("text")),
            PayloadKind::Event,
        ),
        (
            "cmd/res",
            json_msg(EntryKind::Reply(ReplyTopic::CmdRes), res),
            PayloadKind::CommandResult,
        ),
        (
            "config/state",
            json_msg(EntryKind::Reply(ReplyTopic::ConfigState), state),
            PayloadKind::ConfigState,
        ),
        ("health", health, PayloadKind::Health),
        ("status online", b"online".to_vec(), PayloadKind::Status),
        (
            "status offline (will)",
            b"offline".to_vec(),
            PayloadKind::Status,
        ),
        ("status asleep", b"asleep\n".to_vec(), PayloadKind::Status),
    ];
    for (name, bytes, kind) in cases {
        let (got, v) = decode_kind(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, kind, "{name}");
        match kind {
            // JSON passes through unchanged.
            PayloadKind::DataCbor => {
                assert_eq!(v, decode(&one_payload(&data, Encoding::Json)).unwrap())
            }
            PayloadKind::Status => {
                let word = String::from_utf8_lossy(&bytes).trim().to_string();
                assert_eq!(v, json!({ "status": word }), "{name}");
            }
            _ => assert_eq!(v, serde_json::from_slice::<Json>(&bytes).unwrap(), "{name}"),
        }
    }
}

/// What is none of them says what it saw.
#[test]
fn decode_names_what_it_saw_when_it_is_no_gasdtu_payload() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty payload"),
        (b" \n", "empty payload"),
        (&[0xff, 0x00], "binary payload starting ff 00 is not CBOR"),
        (&[0x83, 0x01, 0x02, 0x03], "CBOR message: top level is not a map"),
        (b"hello", "text \"hello\" is neither JSON nor a status word (online, offline, asleep)"),
        (b"[1,2]", "JSON array is not a gasdtu message"),
        (b"42", "JSON number is not a gasdtu message"),
        (b"{\"a\":1", "invalid JSON"),
        (b"{\"foo\":1,\"bar\":2}", "JSON object with keys [bar, foo] is none of gasdtu's messages"),
        (
            b"{\"gw\":\"g\",\"seq\":1,\"alarm\":5,\"state\":\"raised\"}",
            "alarm message: `alarm` is number, not a string",
        ),
        (b"{\"alarm\":\"a\",\"state\":\"raised\",\"seq\":1}", "alarm message: no `gw`"),
        (b"{\"gw\":\"g\",\"event\":\"x\"}", "event message: no `seq`"),
        (
            b"{\"gw\":\"g\",\"seq\":1,\"hist\":false,\"data\":[{\"dev\":\"d\",\"reads\":[{\"v\":{}}]}]}",
            "data (JSON) message: data[0].reads[0] is not",
        ),
        (
            b"{\"gw\":\"g\",\"seq\":-1,\"hist\":false,\"data\":[]}",
            "`seq` is number, not an unsigned integer",
        ),
    ];
    for (bytes, want) in cases {
        let e = decode_kind(bytes).expect_err("refused").to_string();
        assert!(
            e.contains(want),
            "{:?}: {e}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// What the decimal rule saves on a W1-like workload (the peer benchmark's map: 20 devices,
/// 4 f32, 2 u32 and 4 int16 x 0.1 points, polled every second, each cycle's 20 batches packed
/// into 1024-byte messages). "Before" scales the way gasdtu did until issue 12 (raw as f64
/// times the scale); "after" through the decoder. Byte counts, not timing: deterministic.
#[test]
fn w1_payload_bytes_before_and_after_the_decimal_rule() {
    let cycles = 60u64;
    let f32_point = |name: &str, x: f64| sample(name, Value::Float(f64::from(x as f32)));
    let mut totals = [[0usize; 2]; 2]; // [before, after] x [json, cbor]
    let mut noisy = [0usize; 2];
    for k in 0..cycles {
        for (which, total) in totals.iter_mut().enumerate() {
            let entries: Vec<Entry> = (1..=20u64)
                .map(|dev| {
                    let base = (dev * 10_000 + k) as f64;
                    let mut s = vec![
                        f32_point("f0", base + 0.5),
                        f32_point("f1", -(base + 0.25)),
                        f32_point("f2", base + 0.75),
                        f32_point("f3", base / 8.0 + 1000.0),
                        sample("t0", Value::UInt(3_000_000_000 + dev * 100_000 + k)),
                        sample("t1", Value::UInt(dev * 100_000 + 3 * k)),
                    ];
                    for j in 0..4u64 {
                        let raw = ((dev * 1000 + j * 250 + k) % 20_000) as i64 - 10_000;
                        let v = if which == 0 {
                            Value::Float(raw as f64 * 0.1)
                        } else {
                            let p = spec(DataType::I16, WordOrder::Abcd, 0.1, 0.0);
                            decode_point(&p, &[raw as i16 as u16]).unwrap()
                        };
                        if Value::Float(raw as f64 / 10.0) != v {
                            noisy[which] += 1;
                        }
                        s.push(sample(&format!("i{j}"), v));
                    }
                    let mut b = batch(s);
                    b.device = format!("dev{dev:02}").into();
                    entry(dev as i64, EntryKind::Data, EntryBody::Batch(b))
                })
                .collect();
            for (ei, enc) in [Encoding::Json, Encoding::Cbor].into_iter().enumerate() {
                total[ei] += encode_messages(&entries, GW, 1024, enc)
                    .iter()
                    .map(|m| m.build(GW, 1_764_000_000_000_000 + k).unwrap().len())
                    .sum::<usize>();
            }
        }
    }
    let readings = (cycles * 20 * 10) as f64;
    for (ei, enc) in ["JSON", "CBOR"].iter().enumerate() {
        let (b, a) = (totals[0][ei], totals[1][ei]);
        println!(
            "W1-like {enc}: before {b} B ({:.1} B/reading), after {a} B ({:.1} B/reading): {:.1} % less",
            b as f64 / readings,
            a as f64 / readings,
            (b - a) as f64 * 100.0 / b as f64
        );
        // JSON drops the noise digits; CBOR carried a double before and still does.
        if ei == 0 {
            assert!(a < b, "{enc}: {a} >= {b}");
        } else {
            assert_eq!(a, b, "{enc}");
        }
    }
    println!(
        "int16 x 0.1 readings off the decimal: before {}, after {}",
        noisy[0], noisy[1]
    );
    assert_eq!(noisy[1], 0);
}
