//! `IngestSeal`: the forwarder's half of sealing inside the ingest commit (issue 13,
//! docs/store.md "Flash wear"). It owns the "armed" flag (set by the forwarder when it is
//! connected, not rate-limited and idle: it would seal the next readings right away), packs a
//! look of pending entries with the forwarder's own packer (`encode_messages_hinted`, the guess
//! carried from one commit's seal to the next, with the same
//! gateway id, payload limit, encoding and format, topics from the same root; a payload the
//! client would refuse is not built, so the forwarder sets it aside as before), and keeps
//! what the ingest commit sealed until the forwarder takes it (`Outbox::take_presealed`).
//! The store calls it through `outbox::IngestSealer` under its own lock. No I/O.

use std::sync::Mutex;

use super::forwarder::refusal_reason;
use super::payload::encode_messages_hinted;
use super::{max_packet, Topics};
use crate::config::UplinkConfig;
use crate::outbox::{Entry, IngestSealer, PlannedSeal, Sealed};

#[derive(Debug, Default)]
struct State {
    /// `Some(live_since_ms)` of the session while the forwarder is idle.
    armed: Option<i64>,
    /// Sealed at ingest and committed, not yet taken by the forwarder (seq order).
    handed: Vec<Sealed>,
}

/// Shared by one forwarder (which arms it and takes what was sealed) and the store (which
/// seals with it inside ingest commits).
pub struct IngestSeal {
    gateway_id: String,
    topics: Topics,
    cfg: UplinkConfig,
    state: Mutex<State>,
    /// The packer's guess from the last commit's seal (`encode_messages_hinted`): one poll
    /// cycle is packed like the one before. Apart from `state`, so the forwarder's `take` and
    /// `arm` never wait on a pack.
    hint: Mutex<Option<usize>>,
}

impl IngestSeal {
    /// The sealer of a forwarder built from `cfg` for `gateway_id` (the same arguments).
    pub fn new(cfg: &UplinkConfig, gateway_id: &str) -> IngestSeal {
        IngestSeal {
            gateway_id: gateway_id.to_string(),
            topics: Topics::new(&cfg.topic_root),
            cfg: cfg.clone(),
            state: Mutex::new(State::default()),
            hint: Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The forwarder is connected and idle (session of `live_since_ms`): the next ingest
    /// commit may seal.
    pub fn arm(&self, live_since_ms: i64) {
        self.state().armed = Some(live_since_ms);
    }
}

impl IngestSealer for IngestSeal {
    fn armed(&self) -> Option<i64> {
        self.state().armed
    }

    fn disarm(&self) {
        self.state().armed = None;
    }

    fn pack(&self, entries: &[Entry]) -> Vec<PlannedSeal> {
        let limit = max_packet(self.cfg.max_payload);
        let mut hint = *self.hint.lock().unwrap_or_else(|p| p.into_inner());
        let packed = encode_messages_hinted(
            entries,
            &self.gateway_id,
            self.cfg.max_payload,
            (self.cfg.encoding, self.cfg.format),
            &mut hint,
        );
        *self.hint.lock().unwrap_or_else(|p| p.into_inner()) = hint;
        packed
            .into_iter()
            .map(|p| {
                let topic = self.topics.for_kind(p.kind);
                let gw = self.gateway_id.clone();
                let t = topic.clone();
                let (entries, readings, rebuildable) =
                    (p.entries.clone(), p.readings, p.rebuildable);
                PlannedSeal {
                    topic,
                    entries,
                    readings,
                    rebuildable,
                    build: Box::new(move |seq| {
                        let b = p.build(&gw, seq).map_err(|e| e.to_string())?;
                        match refusal_reason(&t, b.len(), limit) {
                            Some(why) => Err(why),
                            None => Ok(b),
                        }
                    }),
                }
            })
            .collect()
    }

    fn hand_over(&self, sealed: Vec<Sealed>) {
        self.state().handed.extend(sealed);
    }

    fn take(&self) -> Vec<Sealed> {
        std::mem::take(&mut self.state().handed)
    }
}

#[cfg(test)]
mod tests {
    //! The packer is the forwarder's: same messages, same topics, same bytes for a seq.

    use super::*;
    use crate::uplink::payload::encode_messages;
    use std::time::Duration;

    use crate::config::{Encoding, PayloadFormat, SessionMode};
    use crate::model::{Quality, Sample, SampleBatch, Value};
    use crate::outbox::{EntryBody, EntryKind};

    fn cfg(encoding: Encoding, format: PayloadFormat) -> UplinkConfig {
        UplinkConfig {
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
            max_payload: 1024,
            rate_limit: None,
            encoding,
            format,
            inflight: 4,
            session: SessionMode::Always,
            linger: Duration::from_secs(20),
            check_in: Duration::from_secs(3600),
            ack_timeout: Duration::from_secs(30),
        }
    }

    fn batch(dev: &str, ms: i64) -> SampleBatch {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
        SampleBatch {
            device: dev.into(),
            bus: "b".into(),
            slot: at,
            online: true,
            failed_cycles: 0,
            samples: vec![Sample {
                point: "p".into(),
                value: Some(Value::Float(1.5)),
                unit: None,
                quality: Quality::Good,
                read_at: at,
            }],
        }
    }

    fn entries() -> Vec<Entry> {
        let mut v = vec![Entry {
            id: 9,
            kind: EntryKind::Alarm,
            historical: false,
            created_ms: 1,
            body: EntryBody::Json(serde_json::json!({"alarm": "hi"})),
        }];
        for (i, d) in ["a", "b"].iter().enumerate() {
            v.push(Entry {
                id: i as i64 + 1,
                kind: EntryKind::Data,
                historical: false,
                created_ms: 1,
                body: EntryBody::Batch(batch(d, 1_800_000_000_000)),
            });
        }
        v
    }

    #[test]
    fn packs_exactly_what_the_forwarder_builds() {
        use {Encoding::*, PayloadFormat::*};
        for (enc, format) in [(Json, V1), (Cbor, V1), (Json, V2), (Cbor, V2)] {
            let c = cfg(enc, format);
            let seal = IngestSeal::new(&c, "gw");
            let want = encode_messages(&entries(), "gw", c.max_payload, (c.encoding, c.format));
            let got = seal.pack(&entries());
            assert_eq!(got.len(), want.len(), "{enc:?} {format:?}");
            for (i, (g, w)) in got.into_iter().zip(want).enumerate() {
                assert_eq!(g.topic, Topics::new(&c.topic_root).for_kind(w.kind));
                assert_eq!(
                    (g.entries.clone(), g.readings),
                    (w.entries.clone(), w.readings)
                );
                let seq = 40 + i as u64;
                assert_eq!((g.build)(seq).unwrap(), w.build("gw", seq).unwrap());
            }
        }
    }

    #[test]
    fn armed_until_disarmed_and_hands_over_in_order() {
        let seal = IngestSeal::new(&cfg(Encoding::Cbor, PayloadFormat::V2), "gw");
        assert_eq!(seal.armed(), None);
        seal.arm(77);
        assert_eq!(seal.armed(), Some(77));
        seal.disarm();
        assert_eq!(seal.armed(), None);
        let m = |seq| Sealed {
            seq,
            topic: "t".into(),
            payload: vec![1],
            readings: 1,
            retain: false,
        };
        seal.hand_over(vec![m(3), m(4)]);
        seal.hand_over(vec![m(5)]);
        let seqs: Vec<u64> = seal.take().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(seal.take().is_empty());
    }
}
