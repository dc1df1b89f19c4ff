//! Inbound MQTT messages for the remote service (issue 10, part C): what the forwarder hands
//! over from `<root>/cmd/req` and `<root>/config/set` (`Inbound`), the token that sends its
//! PUBACK only when the receiver says so (after it persisted what the message asked for),
//! the per-kind size bounds, and the pure routing of an incoming PUBLISH (deliver, refuse as
//! too large, or ignore). No I/O: acknowledging is a send on the session's channel, and the
//! forwarder turns it into the PUBACK on the session the message arrived on.

use bytes::Bytes;
use rumqttc::QoS;
use tokio::sync::mpsc;

use super::Topics;

/// Largest `cmd/req` payload delivered (the whole MQTT payload, envelope included).
pub const MAX_COMMAND_BYTES: usize = 8 * 1024;
/// Largest `config/set` payload delivered (the whole MQTT payload, envelope included).
pub const MAX_PUSH_BYTES: usize = 256 * 1024;
/// The client's incoming packet limit with an inbox: far above both bounds, so a message over
/// its bound is read whole, acknowledged and counted instead of killing the connection.
/// A packet above this still kills it (rumqttc refuses to buffer it); the forwarder then
/// discards the broker's session once (see `Forwarder`), so such a message cannot loop.
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// Which request topic a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    /// `<root>/cmd/req`: a command envelope.
    Command,
    /// `<root>/config/set`: a config push envelope.
    ConfigPush,
    /// A Sparkplug DCMD (`spBv1.0/<group>/DCMD/<edge>/<device>`, `Inbound::device`): remote
    /// writes (`sparkplug::dcmd_commands`), docs/sparkplug.md.
    Dcmd,
}

impl InboundKind {
    /// The largest payload of this kind that is delivered.
    pub fn max_bytes(self) -> usize {
        match self {
            InboundKind::Command => MAX_COMMAND_BYTES,
            InboundKind::ConfigPush => MAX_PUSH_BYTES,
            InboundKind::Dcmd => super::sparkplug::decode::MAX_COMMAND_BYTES,
        }
    }

    /// `cmd/req` or `config/set` (for logs and counters).
    pub fn topic_suffix(self) -> &'static str {
        match self {
            InboundKind::Command => "cmd/req",
            InboundKind::ConfigPush => "config/set",
            InboundKind::Dcmd => "DCMD",
        }
    }
}

/// One request from the broker. Dropping it without `ack` leaves it unacknowledged: the
/// broker redelivers it in the next session (the persistent session keeps it).
pub struct Inbound {
    pub kind: InboundKind,
    /// The whole MQTT payload: at most `kind.max_bytes()` bytes, unless `oversized`.
    pub payload: Bytes,
    /// Over the kind's bound (at most `MAX_INCOMING_PACKET`): handed over only so the receiver
    /// can answer `too_large` to the id it claims; never to be acted on. At most one such
    /// request is held at a time (`permit`), so they cost at most one packet of memory.
    pub oversized: bool,
    /// UTC ms when the forwarder received it.
    pub received_ms: i64,
    /// The retain flag of the PUBLISH (a retained request is treated like any other: its
    /// id and expiry protect it; ops should never retain on these topics).
    pub retained: bool,
    /// The DUP flag: the broker sent it before in an earlier session (a redelivery).
    pub duplicate: bool,
    /// `Dcmd`: the device of its topic.
    pub device: Option<String>,
    ack: AckToken,
    /// The forwarder's single slot for an oversized request, freed when this is dropped.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("kind", &self.kind)
            .field("bytes", &self.payload.len())
            .field("received_ms", &self.received_ms)
            .field("retained", &self.retained)
            .field("duplicate", &self.duplicate)
            .field("oversized", &self.oversized)
            .finish()
    }
}

impl Inbound {
    pub(crate) fn new(
        kind: InboundKind,
        payload: Bytes,
        received_ms: i64,
        retained: bool,
        duplicate: bool,
        ack: AckToken,
    ) -> Inbound {
        Inbound {
            kind,
            payload,
            received_ms,
            retained,
            duplicate,
            ack,
            device: None,
            oversized: false,
            permit: None,
        }
    }

    /// A DCMD to `device`.
    pub(crate) fn for_device(mut self, device: String) -> Inbound {
        self.device = Some(device);
        self
    }

    /// Mark as over its bound, holding the forwarder's oversized slot until dropped.
    pub(crate) fn oversized(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> Inbound {
        self.oversized = true;
        self.permit = Some(permit);
        self
    }

    /// An inbound not tied to any session (its `ack` does nothing): for tests of consumers.
    #[doc(hidden)]
    pub fn detached(kind: InboundKind, payload: impl Into<Bytes>, received_ms: i64) -> Inbound {
        Inbound::new(
            kind,
            payload.into(),
            received_ms,
            false,
            false,
            AckToken::none(),
        )
    }

    /// Send the PUBACK, after the caller persisted the request (manual acks). Through the
    /// session the message arrived on; if that session is gone this does nothing (the broker
    /// redelivers it to the next session, and the exactly-once command ids absorb it).
    pub fn ack(self) {
        self.ack.send();
    }
}

/// A PUBACK (or nothing, for QoS 0) the forwarder should send in the session that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckReq {
    pub pkid: u16,
    pub qos: QoS,
}

/// The acknowledgement of one received PUBLISH, bound to its session's channel.
#[derive(Debug)]
pub(crate) struct AckToken {
    tx: Option<mpsc::UnboundedSender<AckReq>>,
    req: AckReq,
}

impl AckToken {
    pub(crate) fn new(tx: mpsc::UnboundedSender<AckReq>, pkid: u16, qos: QoS) -> AckToken {
        AckToken {
            tx: Some(tx),
            req: AckReq { pkid, qos },
        }
    }

    fn none() -> AckToken {
        AckToken {
            tx: None,
            req: AckReq {
                pkid: 0,
                qos: QoS::AtMostOnce,
            },
        }
    }

    /// Queue the PUBACK in its session. QoS 0 has none; a closed channel means the session
    /// ended, and its packet ids mean nothing to the next one: nothing is sent.
    fn send(self) {
        if self.req.qos == QoS::AtMostOnce {
            return;
        }
        if let Some(tx) = self.tx {
            let _ = tx.send(self.req);
        }
    }
}

/// What to do with an incoming PUBLISH (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A request within its bound: hand it to the inbox.
    Deliver(InboundKind),
    /// A request over its bound: count it; hand it over for a `too_large` answer when the
    /// forwarder's oversized slot is free, else acknowledge (never redelivered) and drop.
    TooLarge { kind: InboundKind, len: usize },
    /// Not one of our request topics: acknowledge, count, drop.
    Ignore,
}

/// Route a PUBLISH on `topic` with `len` payload bytes.
pub(crate) fn route(topics: &Topics, topic: &str, len: usize) -> Route {
    let kind = if topic == topics.cmd_req() {
        InboundKind::Command
    } else if topic == topics.config_set() {
        InboundKind::ConfigPush
    } else {
        return Route::Ignore;
    };
    if len > kind.max_bytes() {
        Route::TooLarge { kind, len }
    } else {
        Route::Deliver(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_exact_topic_and_bound() {
        let t = Topics::new("gasdtu/gw-1/");
        let cmd = InboundKind::Command;
        let push = InboundKind::ConfigPush;
        let table: &[(&str, usize, Route)] = &[
            ("gasdtu/gw-1/cmd/req", 0, Route::Deliver(cmd)),
            ("gasdtu/gw-1/cmd/req", 8192, Route::Deliver(cmd)),
            (
                "gasdtu/gw-1/cmd/req",
                8193,
                Route::TooLarge {
                    kind: cmd,
                    len: 8193,
                },
            ),
            ("gasdtu/gw-1/config/set", 8193, Route::Deliver(push)),
            ("gasdtu/gw-1/config/set", 262_144, Route::Deliver(push)),
            (
                "gasdtu/gw-1/config/set",
                262_145,
                Route::TooLarge {
                    kind: push,
                    len: 262_145,
                },
            ),
            // Near misses are not ours.
            ("gasdtu/gw-1/cmd/res", 10, Route::Ignore),
            ("gasdtu/gw-1/cmd/req/", 10, Route::Ignore),
            ("gasdtu/gw-2/cmd/req", 10, Route::Ignore),
            ("gasdtu/gw-1//cmd/req", 10, Route::Ignore),
            ("gasdtu/gw-1/config/state", 10, Route::Ignore),
            ("GASDTU/gw-1/cmd/req", 10, Route::Ignore),
            ("", 0, Route::Ignore),
        ];
        for (topic, len, want) in table {
            assert_eq!(&route(&t, topic, *len), want, "{topic} {len}");
        }
    }

    #[test]
    fn bounds_fit_in_the_incoming_packet_limit() {
        for kind in [InboundKind::Command, InboundKind::ConfigPush] {
            let topic = format!("{}/{}", "r".repeat(200), kind.topic_suffix());
            assert!(
                super::super::publish_packet_len(&topic, kind.max_bytes() + 1)
                    < MAX_INCOMING_PACKET,
                "a message just over the {kind:?} bound must be read, not kill the link"
            );
        }
    }

    #[test]
    fn ack_sends_once_on_its_session_and_nothing_when_it_is_gone() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let i = Inbound::new(
            InboundKind::Command,
            Bytes::from_static(b"{}"),
            1,
            false,
            false,
            AckToken::new(tx.clone(), 7, QoS::AtLeastOnce),
        );
        i.ack();
        assert_eq!(
            rx.try_recv().ok(),
            Some(AckReq {
                pkid: 7,
                qos: QoS::AtLeastOnce
            })
        );
        assert!(rx.try_recv().is_err(), "one PUBACK per inbound");

        // QoS 0: nothing to acknowledge.
        Inbound::new(
            InboundKind::Command,
            Bytes::new(),
            1,
            false,
            false,
            AckToken::new(tx.clone(), 0, QoS::AtMostOnce),
        )
        .ack();
        assert!(rx.try_recv().is_err());

        // Dropped without ack: nothing sent (the broker redelivers).
        drop(Inbound::new(
            InboundKind::ConfigPush,
            Bytes::new(),
            1,
            false,
            false,
            AckToken::new(tx.clone(), 8, QoS::AtLeastOnce),
        ));
        assert!(rx.try_recv().is_err());

        // The session ended: its receiver is gone, the ack does nothing (and never panics).
        let late = Inbound::new(
            InboundKind::Command,
            Bytes::new(),
            1,
            false,
            false,
            AckToken::new(tx, 9, QoS::AtLeastOnce),
        );
        drop(rx);
        late.ack();
        Inbound::detached(InboundKind::Command, &b"x"[..], 0).ack();
    }

    #[test]
    fn routing_never_delivers_above_the_bound() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngSeed, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 512,
            rng_seed: RngSeed::Fixed(0x1B0C_5E55),
            failure_persistence: None,
            ..Config::default()
        });
        let t = Topics::new("gasdtu/gw-1");
        let topics = prop_oneof![
            Just("gasdtu/gw-1/cmd/req".to_string()),
            Just("gasdtu/gw-1/config/set".to_string()),
            "[a-z/]{0,24}",
        ];
        runner
            .run(
                &(topics, 0usize..2 * MAX_INCOMING_PACKET),
                |(topic, len)| {
                    match route(&t, &topic, len) {
                        Route::Deliver(k) => prop_assert!(len <= k.max_bytes()),
                        Route::TooLarge { kind, len: l } => {
                            prop_assert!(l == len && len > kind.max_bytes())
                        }
                        Route::Ignore => prop_assert!(
                            topic != t.cmd_req() && topic != t.config_set(),
                            "{topic} ignored"
                        ),
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}
