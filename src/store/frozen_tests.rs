//! Frozen payloads on a real SQLite file: every format seals and rebuilds byte for byte
//! (alarms, events, replies, strings, bad quality, live and backlog, split batches kept as
//! bytes), a config change between seal and resend changes nothing, a reopened store rebuilds
//! the same bytes, an unbuildable row is set aside instead of blocking, a dead letter keeps
//! the rebuilt bytes, and the ingest commit's real sealer freezes too.

use std::sync::Arc;

use super::*;
use crate::config::{Encoding, PayloadFormat};
use crate::model::{BadReason, Quality, Sample, SampleBatch, Value};
use crate::outbox::{EntryBody, EntryKind, IngestSealer, Outbox, ReplyTopic, SealRequest, Sealed};
use crate::store::{ClockStamp, Store, StoreConfig};
use crate::time::from_unix_ms;

const T0: i64 = crate::store::clock::MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

const WIRES: [(Encoding, PayloadFormat); 4] = [
    (Encoding::Json, PayloadFormat::V1),
    (Encoding::Cbor, PayloadFormat::V1),
    (Encoding::Json, PayloadFormat::V2),
    (Encoding::Cbor, PayloadFormat::V2),
];

fn stamp() -> ClockStamp {
    ClockStamp {
        wall_ms: T0 + 10,
        mono_ms: 3_600_000,
        boot_id: "boot".into(),
    }
}

/// Every value kind, units and none, two bad qualities, two read times in one batch.
fn mixed(dev: &str, read_ms: i64, i: i64, unit: &str) -> SampleBatch {
    let s = |point: &str, value: Option<Value>, unit: Option<&str>, dt: i64| Sample {
        point: point.into(),
        quality: match value {
            Some(_) => Quality::Good,
            None if point == "t_bad" => Quality::Bad(BadReason::Timeout),
            None => Quality::Bad(BadReason::Exception {
                code: 2,
                meaning: "illegal data address".into(),
            }),
        },
        value,
        unit: unit.map(Arc::from),
        read_at: from_unix_ms(read_ms + dt),
    };
    SampleBatch {
        device: dev.into(),
        bus: "b".into(),
        slot: from_unix_ms(read_ms),
        samples: vec![
            s(
                "flow",
                Some(Value::Float(21.3f32 as f64 + i as f64)),
                Some(unit),
                0,
            ),
            s("ratio", Some(Value::Float(1.0 / 3.0)), None, 0),
            s("temp", Some(Value::Float(-0.1 * i as f64)), Some("degC"), 0),
            s(
                "vol",
                Some(Value::UInt(1_000_000 + 7 * i as u64)),
                Some("m3"),
                0,
            ),
            s("delta", Some(Value::Int(-5 - i)), None, 0),
            s("open", Some(Value::Bool(i % 2 == 0)), None, 0),
            s(
                "tag",
                Some(Value::Text(format!("zählerstand \"{i}\""))),
                None,
                0,
            ),
            s("t_bad", None, Some("kPa"), 0),
            s("x_bad", None, None, 0),
            s("late", Some(Value::Float(f64::INFINITY)), None, 40),
        ],
        online: true,
        failed_cycles: i as u32 % 3,
    }
}

/// Pack what is pending the forwarder's way and seal it; returns what was sealed.
fn seal_all(
    store: &Store,
    gw: &str,
    wire: (Encoding, PayloadFormat),
    max: usize,
    live_since: i64,
) -> Vec<Sealed> {
    let mut out = Vec::new();
    loop {
        let entries = store.pending(64, live_since).unwrap();
        if entries.is_empty() {
            return out;
        }
        let packed = encode_messages(&entries, gw, max, wire);
        let reqs: Vec<SealRequest<'_>> = packed
            .iter()
            .map(|p| SealRequest {
                topic: "r/data",
                entries: &p.entries,
                readings: p.readings,
                rebuildable: p.rebuildable,
            })
            .collect();
        let (sealed, err) = store.seal_many(&reqs, &mut |i, seq| {
            packed[i].build(gw, seq).map_err(|e| e.to_string())
        });
        assert!(err.is_none(), "{err:?}");
        assert_eq!(sealed.len(), packed.len());
        out.extend(sealed);
    }
}

fn commit_round(store: &Store, base: i64, unit: &str) {
    let batches: Vec<SampleBatch> = (0..6)
        .map(|i| mixed(&format!("dev{}", i % 3), base + i * 1000, i, unit))
        .collect();
    let extra = [
        (
            EntryKind::Alarm,
            serde_json::json!({"alarm": "hi", "value": 4.2, "dev": "dev0"}),
        ),
        (
            EntryKind::Event,
            serde_json::json!({"event": "restart", "note": "ünïcode"}),
        ),
        (
            EntryKind::Reply(ReplyTopic::ConfigState),
            serde_json::json!({"config": "abc", "ok": true}),
        ),
    ];
    store.commit(&batches, &extra, &stamp()).unwrap();
}

/// (seq, frozen) of every stored message.
fn frozen_flags(store: &Store) -> Vec<(u64, bool)> {
    let g = store.lock();
    let mut st = g
        .conn
        .prepare("SELECT seq, recipe IS NOT NULL AND length(payload) = 0 FROM message ORDER BY seq")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn assert_same(store: &Store, sealed: &[Sealed], what: &str) {
    let got = store.unacked().unwrap();
    assert_eq!(got.len(), sealed.len(), "{what}");
    for (g, w) in got.iter().zip(sealed) {
        assert_eq!(
            (g.seq, &g.topic, g.readings, g.retain),
            (w.seq, &w.topic, w.readings, w.retain),
            "{what}"
        );
        assert!(
            g.payload == w.payload,
            "{what}: message {} rebuilt differently",
            w.seq
        );
    }
}

#[test]
fn every_format_rebuilds_the_sealed_bytes() {
    for wire in WIRES {
        for max in [8192, 120] {
            let what = format!("{wire:?} max {max}");
            let dir = tempfile::tempdir().unwrap();
            let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            // Live (newest first, descending ids), then backlog (hist, ascending ids).
            commit_round(&store, T0, "m3/h");
            let mut sealed = seal_all(&store, "gw-1", wire, max, 0);
            commit_round(&store, T0 + 60_000, "m3/h");
            sealed.extend(seal_all(&store, "gw-1", wire, max, i64::MAX));
            let flags = frozen_flags(&store);
            assert_eq!(flags.len(), sealed.len(), "{what}");
            let frozen = flags.iter().filter(|f| f.1).count();
            if max == 8192 {
                assert_eq!(
                    frozen,
                    sealed.len(),
                    "{what}: every message frozen: {flags:?}"
                );
            } else {
                // Split batches keep their bytes, whole ones are frozen.
                assert!(frozen > 0 && frozen < sealed.len(), "{what}: {flags:?}");
            }
            assert!(
                sealed.iter().any(|m| m.retain),
                "{what}: the config state is retained"
            );
            assert_same(&store, &sealed, &what);
            // A restart rebuilds the same bytes.
            drop(store);
            let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            assert_same(&store, &sealed, &format!("{what}, reopened"));
        }
    }
}

#[test]
fn a_config_change_between_seal_and_resend_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    commit_round(&store, T0, "m3/h");
    let mut sealed = seal_all(&store, "gw-old", WIRES[0], 8192, 0);
    // The reload: another gateway id, encoding, format and a point's unit.
    commit_round(&store, T0 + 60_000, "l/s");
    sealed.extend(seal_all(&store, "gw-new", WIRES[3], 8192, 0));
    assert!(frozen_flags(&store).iter().all(|f| f.1));
    assert_same(&store, &sealed, "after reload");
    let old = crate::uplink::decode(&store.unacked().unwrap()[0].payload).unwrap();
    assert_eq!(old["gw"], "gw-old");
}

#[test]
fn an_unbuildable_frozen_message_is_set_aside_and_the_rest_resent() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    commit_round(&store, T0, "m3/h");
    let sealed = seal_all(&store, "gw", WIRES[1], 8192, 0);
    let data = sealed.iter().find(|m| m.readings > 0).unwrap().seq;
    store
        .lock()
        .conn
        .execute(
            "UPDATE entry SET body = x'ff00' WHERE msg_seq = ?1",
            [data as i64],
        )
        .unwrap();
    let left: Vec<u64> = store.unacked().unwrap().iter().map(|m| m.seq).collect();
    let want: Vec<u64> = sealed
        .iter()
        .map(|m| m.seq)
        .filter(|s| *s != data)
        .collect();
    assert_eq!(left, want);
    assert_eq!(store.dead_letter_count().unwrap(), 1);
    let ev: Vec<serde_json::Value> = store
        .pending(100, 0)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            EntryBody::Json(j) if j["event"] == "dead_letter" => Some(j),
            _ => None,
        })
        .collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["dead_seq"], data);
    assert_eq!(ev[0]["bytes"], 0);
    assert!(
        ev[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be rebuilt"),
        "{ev:?}"
    );
}

#[test]
fn a_dead_letter_keeps_the_rebuilt_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    commit_round(&store, T0, "m3/h");
    let sealed = seal_all(&store, "gw", WIRES[2], 8192, 0);
    let m = sealed.iter().find(|m| m.readings > 0).unwrap();
    let d = store.dead_letter(m.seq, "refused").unwrap().unwrap();
    assert_eq!(d.bytes, m.payload.len() as u64);
    let kept: Vec<u8> = store
        .lock()
        .conn
        .query_row(
            "SELECT payload FROM dead_letter WHERE seq = ?1",
            [m.seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert!(kept == m.payload);
}

fn uplink(encoding: Encoding, format: PayloadFormat) -> crate::config::UplinkConfig {
    use std::time::Duration;
    crate::config::UplinkConfig {
        host: "127.0.0.1".into(),
        port: 1883,
        tls: false,
        ca_file: None,
        client_cert: None,
        client_key: None,
        server_name: None,
        username: None,
        password: None,
        client_id: "gasdtu-gw".into(),
        topic_root: "gasdtu/gw".into(),
        keepalive: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_millis(400),
        max_payload: 65_536,
        rate_limit: None,
        encoding,
        format,
        inflight: 4,
        session: crate::config::SessionMode::Always,
        linger: Duration::from_secs(20),
        check_in: Duration::from_secs(3600),
        ack_timeout: Duration::from_secs(30),
    }
}

#[test]
fn the_ingest_commits_real_sealer_freezes_its_messages() {
    for (encoding, format) in WIRES {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let cfg = uplink(encoding, format);
        let seal = Arc::new(crate::uplink::IngestSeal::new(&cfg, "gw"));
        store.set_ingest_sealer(Some(seal.clone()));
        seal.arm(0);
        commit_round(&store, T0, "m3/h");
        let sealed = store.take_presealed().unwrap();
        assert!(
            !sealed.is_empty(),
            "{encoding:?} {format:?}: sealed at ingest"
        );
        assert!(
            frozen_flags(&store).iter().all(|f| f.1),
            "{encoding:?} {format:?}"
        );
        assert_same(&store, &sealed, &format!("{encoding:?} {format:?} ingest"));
        assert!(seal.armed().is_none());
    }
}

#[test]
fn the_recipe_code_round_trips_and_names_an_unknown_encoder() {
    for (encoding, format) in WIRES {
        for (hist, desc) in [(false, false), (true, false), (false, true), (true, true)] {
            let r = Recipe {
                gw: "g".into(),
                wire: Wire { encoding, format },
                hist,
                desc,
            };
            assert_eq!(Recipe::from_code(r.code(), "g".into()).unwrap(), r);
        }
    }
    let e = Recipe::from_code(99 << 4, "g".into()).unwrap_err();
    assert!(e.contains("version 99"), "{e}");
    // Neither ascending nor descending, or a foreign payload: stored as bytes.
    assert_eq!(Recipe::guess(br#"{"gw":"g"}"#, &[3, 1, 2]), None);
    assert_eq!(Recipe::guess(b"\xa1\x00\x00", &[1]), None);
    assert_eq!(Recipe::guess(b"", &[1]), None);
}

#[test]
fn a_message_stored_by_schema_v5_keeps_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut c = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        crate::store::schema::migrate_to(&mut c, 5).unwrap();
        c.execute(
            "INSERT INTO message (seq, topic, payload, readings, created_ms) \
             VALUES (77, 'r/data', x'7b7d', 1, 5)",
            [],
        )
        .unwrap();
        c.execute("INSERT INTO meta (key, value) VALUES ('seq_hwm', 77)", [])
            .unwrap();
    }
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let m = store.unacked().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].seq, m[0].payload.as_slice()), (77, &b"{}"[..]));
}

#[test]
fn the_head_read_from_the_tail_is_the_head_of_the_whole_payload() {
    let full = |p: &[u8]| -> Option<(String, bool, bool)> {
        #[derive(serde::Deserialize)]
        struct Head {
            gw: String,
            #[serde(default)]
            hist: Option<bool>,
            #[serde(default)]
            v: Option<serde_json::Value>,
        }
        let h: Head = serde_json::from_slice(p).ok()?;
        let v2 = h.v.and_then(|v| v.as_u64()) == Some(2);
        Some((h.gw, h.hist.unwrap_or(false), v2))
    };
    let cases: &[(&str, bool)] = &[
        (
            r#"{"data":[{"dev":"m","reads":[]}],"gw":"gw-1","hist":true,"seq":7}"#,
            true,
        ),
        // A point named gw in a nested object, before the top-level key.
        (
            r#"{"data":[{"dev":"m","reads":[{"t":"x","v":{"a":1,"gw":2}}],"unit":{"a":"b","gw":"c"}}],"gw":"real","hist":false,"seq":1}"#,
            true,
        ),
        // A device whose name holds the key's bytes (escaped quotes never match).
        (
            r#"{"data":[{"dev":"x\",\"gw\":\"evil","reads":[]}],"gw":"real","hist":false,"seq":2}"#,
            true,
        ),
        (r#"{"data":[],"gw":"g","hist":false,"seq":3,"v":2}"#, true),
        // Not data first: the whole payload is read.
        (r#"{"alarm":{"gw":"inner"},"gw":"outer","seq":4}"#, false),
        (r#"{"data":[1],"gw":"g""#, false),
    ];
    for (p, tail) in cases {
        let b = p.as_bytes();
        assert_eq!(super::data_tail(b).is_some(), *tail, "{p}");
        let got =
            super::json_head(b).map(|(gw, hist, w)| (gw, hist, w.format == PayloadFormat::V2));
        assert_eq!(got, full(b), "{p}");
    }
}
