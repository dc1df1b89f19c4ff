//! The MQTT uplink: payload codecs (`codec`, pure), the rustls client configuration (`tls`),
//! the per-session link figures (`session`: phases, bytes; pure but for two counters), the
//! `Forwarder` task that drains the outbox to the broker (`forwarder`) and, with an
//! inbox, hands requests from `cmd/req` and `config/set` to the remote service (`inbox`). Topics and
//! payloads are documented in docs/mqtt.md. The uplink only ever reads the store through the
//! `Outbox` trait; it never reaches back into acquisition.

pub mod forwarder;
pub mod inbox;
pub mod ingest_seal;
pub mod payload;
pub mod session;
pub mod sparkplug;
pub mod tls;

pub use forwarder::{Forwarder, SparkplugLink};
pub use inbox::{Inbound, InboundKind};
pub use ingest_seal::IngestSeal;
pub use payload::{decode, encode_messages, CodecError, Packed};
pub use session::{ByteCount, HandshakeClock, LinkMeter, SessionFigures};
pub use tls::{client_config, client_config_with, SessionCache, TlsError};

use crate::outbox::{EntryKind, ReplyTopic};

/// Topics of one gateway under its root (default `gasdtu/<gateway id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub root: String,
}

impl Topics {
    pub fn new(root: &str) -> Topics {
        Topics {
            root: root.trim_end_matches('/').to_string(),
        }
    }

    /// `<root>/data`, `<root>/alarm`, `<root>/event`, or a reply's topic (`reply`).
    pub fn for_kind(&self, kind: EntryKind) -> String {
        match kind {
            EntryKind::Data => self.data(),
            EntryKind::Alarm => format!("{}/alarm", self.root),
            EntryKind::Event => format!("{}/event", self.root),
            EntryKind::Reply(t) => self.reply(t),
        }
    }

    /// `<root>/cmd/res` (command results) or `<root>/config/state` (retained config state).
    pub fn reply(&self, topic: ReplyTopic) -> String {
        format!("{}/{}", self.root, topic.suffix())
    }

    pub fn data(&self) -> String {
        format!("{}/data", self.root)
    }

    /// Retained health (`last_seq`, dead letters, buffer depth): how a consumer sees a loss
    /// at the tail. Published by the forwarder; consumes no sequence number.
    pub fn health(&self) -> String {
        format!("{}/health", self.root)
    }

    /// Retained `online`/`offline`; also the last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.root)
    }

    /// Commands from ops (subscribed with an inbox, QoS 1).
    pub fn cmd_req(&self) -> String {
        format!("{}/cmd/req", self.root)
    }

    /// Config pushes from ops (subscribed with an inbox, QoS 1).
    pub fn config_set(&self) -> String {
        format!("{}/config/set", self.root)
    }
}

/// State of the link as the rest of the daemon (status, health, the demo view) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting (TCP, TLS and MQTT CONNECT under way, or waiting to retry).
    Connecting,
    /// CONNACK received; publishing.
    Connected,
    /// The last session or attempt failed; `since` is UTC ms of the failure.
    Down { since_ms: i64, last_error: String },
    /// `session = "on_demand"`: between sessions by design (nothing to send), since UTC ms.
    Asleep { since_ms: i64 },
}

/// Published by the forwarder on a `tokio::sync::watch` channel after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub state: LinkState,
    /// UTC ms of the last publish handed to the connection, and of the last PUBACK.
    pub last_publish_ms: Option<i64>,
    pub last_ack_ms: Option<i64>,
    /// Outbox messages published (resends included) and acknowledged since start.
    pub published: u64,
    pub acked: u64,
    /// Sessions established after the first one.
    pub reconnects: u64,
    /// The last error, kept after a later successful connect (for `gasdtu status`).
    pub last_error: Option<String>,
    /// The store (outbox) is failing: not a link error; the session stays up and the
    /// forwarder retries the outbox with backoff. `None` once an outbox call succeeded again.
    pub store_error: Option<String>,
    /// Highest sequence number sealed so far (dead letters included), as last published in
    /// `<root>/health`; 0 before the first session.
    pub last_seq: u64,
    /// Messages set aside as dead letters (kept in the store), and the last one's reason.
    pub dead_letters: u64,
    pub last_dead_letter: Option<String>,
    /// UTC ms of the last `<root>/health` publish.
    pub last_health_ms: Option<i64>,
    /// With an inbox: both request subscriptions granted in the current session.
    pub inbound_subscribed: bool,
    /// Requests handed to the inbox (redeliveries included).
    pub inbound_received: u64,
    /// PUBACKs sent for requests (acknowledged by the receiver, or refused and dropped).
    pub inbound_acked: u64,
    /// Requests over their size bound (answered `too_large` or dropped), and packets over
    /// the client's incoming limit (which ended a session).
    pub inbound_oversized: u64,
    /// Requests not handed over because the inbox was full (or closed): not acknowledged,
    /// so the broker redelivers them after the next reconnect.
    pub inbound_busy: u64,
    /// Publishes on other topics (acknowledged and dropped).
    pub inbound_ignored: u64,
    /// Times the broker's session was discarded after a packet over the incoming limit.
    pub inbound_purges: u64,
    /// TLS connection attempts that offered a stored session (resumption), since start.
    pub tls_resumptions: u64,
    /// TLS handshakes that verified the broker's certificate (full ones), since start: a
    /// connection the broker let resume adds none.
    pub tls_full_handshakes: u64,
    /// Messages the ingest commit sealed for this forwarder (issue 13: one transaction per
    /// poll cycle) that it took over and published, since start.
    pub sealed_at_ingest: u64,
    /// The current session's figures while connected, else the last session's (phases,
    /// bytes, messages: `session::SessionFigures`); default before the first CONNACK.
    pub session: SessionFigures,
}

impl Default for LinkStatus {
    fn default() -> Self {
        LinkStatus {
            state: LinkState::Connecting,
            last_publish_ms: None,
            last_ack_ms: None,
            published: 0,
            acked: 0,
            reconnects: 0,
            last_error: None,
            store_error: None,
            last_seq: 0,
            dead_letters: 0,
            last_dead_letter: None,
            last_health_ms: None,
            inbound_subscribed: false,
            inbound_received: 0,
            inbound_acked: 0,
            inbound_oversized: 0,
            inbound_busy: 0,
            inbound_ignored: 0,
            inbound_purges: 0,
            tls_resumptions: 0,
            tls_full_handshakes: 0,
            sealed_at_ingest: 0,
            session: SessionFigures::default(),
        }
    }
}

/// The largest MQTT packet the client sends (rumqttc's max outgoing packet size as the
/// forwarder configures it): room for the largest data message plus topic and headers.
/// A PUBLISH larger than this is refused by the client, never sent.
pub fn max_packet(max_payload: usize) -> usize {
    max_payload.max(1024) + 4096
}

/// The size of the QoS 1 MQTT 3.1.1 PUBLISH packet carrying `payload` bytes on `topic`
/// (fixed header with its variable-length remaining length, topic, packet id, payload): what
/// rumqttc compares with its outgoing limit.
pub fn publish_packet_len(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let len_len = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_len + remaining
}

/// Wall-clock UTC milliseconds since the epoch (the daemon's clock seam, `crate::time::now_ms`).
pub(crate) fn now_ms() -> i64 {
    crate::time::now_ms()
}
