//! The forwarder: one long-lived task that keeps an MQTT 3.1.1 session to the broker and
//! drains the outbox through it (alarms, events, live data, then backlog), deleting an entry
//! only after the PUBACK of the message that carried it.
//!
//! Ack mapping (rumqttc 0.25 has no per-publish acknowledgement): every publish this task
//! requests is pushed onto a FIFO (`Some(seq)` for outbox messages, `None` for the retained
//! status); the event loop reports `Outgoing::Publish(pkid)` in request order, which pops the
//! FIFO and records pkid → seq; `Outgoing::AwaitAck(pkid)` (a packet-id collision: rumqttc
//! holds that publish until `pkid` is acknowledged, then reports `Outgoing::Publish(pkid)`
//! for it) parks the popped seq until then; `Incoming::PubAck(pkid)` acknowledges the mapped
//! seq. Each connection attempt builds a fresh client and event loop, driven by its own
//! task; on any error the session is dropped whole and everything unacknowledged is resent
//! from the outbox in the next one (rumqttc never replays its own state). The outbox is only
//! called from `spawn_blocking`. Acquisition is never touched: the forwarder only reads the
//! store, so a dead link cannot slow polling.
//!
//! One message can never block the queue: a message the client would refuse (its PUBLISH
//! larger than `max_packet`, or a payload that cannot be built) is set aside as a dead letter
//! (`Outbox::dead_letter*`, with a `dead_letter` event) instead of being published, and if the
//! event loop still fails with "outgoing packet too large" the publish it was writing is set
//! aside the same way before the session is renewed. The retained `<root>/health` message
//! (after each connect, every `health_interval`, at most every `health_min_gap` after the
//! highest sequence number moved, and at a clean shutdown) tells consumers the last sequence
//! number, so a loss at the tail is visible too.
//!
//! With an inbox (`with_inbox`, issue 10) the session is persistent (clean session off, the
//! configured client id) with manual acks, and after every CONNACK (also with
//! `session_present`) it subscribes QoS 1 to `<root>/cmd/req` and `<root>/config/set`, so the
//! broker queues requests while the gateway is offline. A request within its bound becomes an
//! `Inbound` (`try_send`; a full inbox leaves it unacknowledged for redelivery after a
//! reconnect); its PUBACK is sent when the receiver calls `Inbound::ack`, on the session it
//! came from (a later session ignores it: packet ids are per session). A request over its
//! bound is counted and handed over marked `oversized` so it can be answered `too_large`
//! (one at a time; while one is held, others are acknowledged and dropped); a publish on
//! another topic is acknowledged and dropped (counted). A packet over
//! the client's incoming limit (`inbox::MAX_INCOMING_PACKET`) ends the session in rumqttc; the
//! broker would redeliver it to every later persistent session, so the next attempt first
//! connects once with a clean session (discarding the broker's session: that packet and
//! whatever was queued with it) and disconnects, then connects persistent again: one purge
//! per such packet, never a loop. Requests refused while the inbox was full are offered again
//! only in a new session: once the inbox is empty again the forwarder ends the session
//! cleanly and reconnects (`SessionError::InboxBacklog`). The data path is the same with or
//! without an inbox.
//!
//! With `with_sparkplug` (issue 14) it is a Sparkplug B edge node: the child module `spb`
//! claims the bdSeq, sets NDEATH as the will, subscribes NCMD/DCMD/STATE, queues the births
//! and translates each sealed message into this session's publishes; this file only calls it
//! at connect, CONNACK, SUBACK, fill, PUBACK, incoming publishes and the goodbye.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, NetworkOptions,
    Outgoing, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use thiserror::Error;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inbox::{route, AckReq, AckToken, Inbound, Route, MAX_INCOMING_PACKET};
use super::ingest_seal::IngestSeal;
use super::payload::{encode_messages, Packed};
use super::session::{ByteCount, HandshakeClock, LinkMeter, Moments, SessionFigures};
use super::tls::{client_config_with, SessionCache, TlsError};
use super::{max_packet, now_ms, publish_packet_len, LinkState, LinkStatus, Topics};
use crate::config::UplinkConfig;
use crate::outbox::{DeadLetter, IngestSealer, Outbox, OutboxError, SealRequest, Sealed};

pub mod spb;
pub use spb::SparkplugLink;

/// Why a session ended (each ends the session the same way; the variants keep the message
/// honest about where the failure was).
#[derive(Debug, Error)]
pub enum SessionError {
    /// The TLS material could not be loaded (names the file and the reason).
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// Connecting, the TLS handshake, CONNECT or the running connection failed.
    #[error("{what} {host}:{port}: {error}")]
    Connection {
        what: &'static str,
        host: String,
        port: u16,
        error: String,
    },
    /// The broker answered CONNECT with a refusal.
    #[error("broker {host}:{port} refused the connection: {code:?}")]
    Refused {
        host: String,
        port: u16,
        code: ConnectReturnCode,
    },
    /// The outbox failed in a way that is not a store error (should not happen: a payload the
    /// builder refuses is set aside as a dead letter, not an error of the session).
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    /// Bookkeeping found an event that does not match a request (should not happen).
    #[error("internal: {0}")]
    Internal(String),
    /// Requests were refused while the inbox was full; it has room again, and only a new
    /// session makes the broker offer them again (a clean DISCONNECT, then a reconnect).
    #[error("renewing the session: {refused} request(s) were refused while the inbox was full, the broker redelivers them")]
    InboxBacklog { refused: u64 },
    /// The broker sent a packet larger than the client's incoming limit (rumqttc ends the
    /// connection). With an inbox, the next attempt discards the broker's session first.
    #[error("broker {host}:{port} sent a packet of {size} bytes, above the client's incoming limit of {limit} bytes")]
    IncomingTooLarge {
        host: String,
        port: u16,
        size: usize,
        limit: usize,
    },
    /// Publishes waited `after` for their PUBACK and nothing at all came from the broker: a
    /// link that died without a reset (NB-IoT bearer lost, radio out of coverage).
    #[error("no packet from the broker for {} while {outstanding} publish(es) awaited PUBACK: link stalled", humantime::format_duration(*after))]
    Stalled { after: Duration, outstanding: usize },
    /// `session = "on_demand"`: the outbox was drained and the session lingered; it ended
    /// cleanly so the radio can sleep (not a failure).
    #[error("session ended on demand (nothing left to send)")]
    Asleep,
    /// Sparkplug: the bdSeq could not be claimed (no connect), or the births could not be
    /// built.
    #[error("sparkplug: {0}")]
    Sparkplug(String),
    /// Sparkplug: the primary host application published STATE offline after our births.
    #[error("sparkplug: primary host {host:?} went offline: ending the session, births again when it is back")]
    PrimaryHostOffline { host: String },
}

/// Most events taken at once before their PUBACKs are acknowledged together.
const ACK_BATCH: usize = 64;
/// Longest a PUBACK waits for the rest of its burst before the outbox records it: PUBACKs
/// are recorded when none is outstanding any more (the burst is complete), `ACK_BATCH` wait,
/// or the oldest is this old. One outbox call (a blocking-pool hand-off and a read
/// transaction) per burst instead of one per message (issue 13, CPU per reading). A crash
/// meanwhile only resends (same seq, same payload).
const ACK_COALESCE: Duration = Duration::from_millis(250);
/// Inbound PUBACKs handed to the client and not yet written by its event loop: bounds what
/// they take of the client's request channel (sized for them), so a burst of acks can never
/// make a data publish request fail.
const ACK_WINDOW: usize = 8;
/// Pending entries fetched per look at the outbox: the ingest seal's look too, so the messages
/// it seals are byte for byte the ones this forwarder would pack.
const FETCH: usize = crate::store::presealed::LOOK;
/// How often the outbox is looked at when nobody wakes the forwarder.
const IDLE_RECHECK: Duration = Duration::from_secs(2);
/// Outbox access held after a store error: 1 s, doubling per consecutive error, up to 30 s.
const STORE_RETRY_MIN: Duration = Duration::from_secs(1);
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for `offline` and DISCONNECT to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// `<root>/health` at least this often, also when nothing moved (NB-IoT budget: ~260 bytes
/// every 15 min, 25 kB a day).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(900);
/// After the highest sequence number moved, `<root>/health` again at most this often (at most
/// 288 a day, ~75 kB: a consumer learns of a loss at the tail within 5 minutes).
pub const HEALTH_MIN_GAP: Duration = Duration::from_secs(300);

/// Extra fields of the health message (the daemon adds the buffer depth), called on the
/// forwarder's task: must be O(1) and must not block.
pub type HealthExtra = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

pub struct Forwarder<O: Outbox> {
    cfg: UplinkConfig,
    gateway_id: String,
    outbox: Arc<O>,
    wake: Arc<Notify>,
    status: watch::Sender<LinkStatus>,
    topics: Topics,
    /// Called on every turn of the forwarder's loops (the service watchdog's progress beat).
    heartbeat: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The store error last logged (each distinct error is logged once, not per retry).
    store_logged: std::sync::Mutex<Option<String>>,
    health_interval: Duration,
    health_min_gap: Duration,
    health_extra: Option<HealthExtra>,
    /// Check each PUBLISH against the client's limit before sealing and sending (always,
    /// except in the test of the event loop's own refusal).
    size_check: bool,
    /// Where requests from `cmd/req` and `config/set` go (`with_inbox`); `None`: no
    /// subscription, clean session, as before issue 10.
    inbox: Option<mpsc::Sender<Inbound>>,
    /// One slot: at most one oversized request is handed over at a time (memory bound).
    oversized_slot: Arc<tokio::sync::Semaphore>,
    /// TLS sessions kept across reconnects (resumption), for the life of this forwarder.
    tls_sessions: Arc<SessionCache>,
    /// Offer stored TLS sessions on reconnect (`tls_sessions`); false only in the benchmark
    /// that measures what resumption saves (`without_tls_resumption`).
    tls_resume: bool,
    /// The TLS client config, built on the first attempt and kept: rustls resumes a stored
    /// session only under the same certificate verifier instance, so a config rebuilt per
    /// attempt would discard every ticket (`SessionCache` would count it as offered).
    tls_config: std::sync::Mutex<Option<(Arc<rustls::ClientConfig>, PemStamp)>>,
    /// The modem's "link usable" (registered and attached): no attempt while false
    /// (`with_link_gate`); `None`: the OS owns the network, always try.
    link_gate: Option<watch::Receiver<bool>>,
    /// Reach the broker through this HTTP CONNECT proxy (the modem's socket mode bridge).
    proxy: Option<std::net::SocketAddr>,
    /// The bridge's counters (tunnel open, bytes both ways on the module socket): the
    /// session figures then count socket bytes (`with_link_meter`).
    meter: Option<Arc<LinkMeter>>,
    /// When the TLS handshake of the current attempt completed (rustls key-log hook).
    handshake: Arc<HandshakeClock>,
    /// Sealing inside the ingest commit, armed while idle (`with_ingest_seal`).
    ingest: Option<Arc<IngestSeal>>,
    /// Speak Sparkplug B (`with_sparkplug`); `None`: gasdtu's own topics.
    sparkplug: Option<Arc<SparkplugLink>>,
}

/// How long after the link went down retries stay at `reconnect_min`: a broker that is back
/// within this window is reached within about `reconnect_min` (the 2 s reconnect aim); only a
/// longer outage backs off exponentially towards `reconnect_max` (radio wake-ups cost energy).
const FAST_RETRY_WINDOW: Duration = Duration::from_secs(30);

/// Jittered backoff: `min` during the first `FAST_RETRY_WINDOW` of an outage, then exponential
/// up to `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    /// Retries stay at `min` this long into an outage (`FAST_RETRY_WINDOW`; zero with a modem).
    fast: Duration,
    attempt: u32,
    /// When the current outage began (first failure since the last good session).
    since: Option<Instant>,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.next_after(now.saturating_duration_since(since))
    }

    /// The delay before the next attempt, `outage` into the outage (pure but for the jitter).
    fn next_after(&mut self, outage: Duration) -> Duration {
        let exp = if outage < self.fast {
            self.min
        } else {
            let e = self
                .min
                .saturating_mul(1u32 << self.attempt.min(16))
                .min(self.max);
            self.attempt = self.attempt.saturating_add(1);
            e
        };
        // Uniform in [exp/2, exp]: desynchronises a fleet that lost the same broker.
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    fn reset(&mut self) {
        self.attempt = 0;
        self.since = None;
    }
}

/// Token bucket over payload bytes.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    cap: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, max_payload: usize) -> Bucket {
        let cap = (rate as f64).max(max_payload as f64);
        Bucket {
            rate: rate as f64,
            cap,
            tokens: cap,
            at: Instant::now(),
        }
    }

    /// Take `n` bytes now, or say how long to wait. A payload larger than the bucket passes
    /// when the bucket is full (it then runs negative).
    fn take(&mut self, n: usize) -> Result<(), Duration> {
        self.take_at(n, Instant::now())
    }

    fn take_at(&mut self, n: usize, now: Instant) -> Result<(), Duration> {
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.cap);
        self.at = now;
        let need = (n as f64).min(self.cap);
        if self.tokens >= need {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (need - self.tokens) / self.rate.max(1.0),
            ))
        }
    }
}

/// Bookkeeping of one MQTT session.
#[derive(Default)]
struct Session {
    /// Requested publishes not yet reported by the event loop (`None` = status message).
    fifo: VecDeque<Option<u64>>,
    /// Publishes on the wire by packet id.
    pkids: HashMap<u16, Option<u64>>,
    /// The publish rumqttc holds back after `AwaitAck`.
    collided: Option<Option<u64>>,
    /// Requested and not yet acknowledged in this session.
    outstanding: usize,
    /// Sealed but unacknowledged messages from before this session, to resend first.
    resend: VecDeque<Sealed>,
    /// Packed but not yet sealed messages (their entries are still pending in the store).
    staged: VecDeque<Packed>,
    /// The outbox may have pending entries (false after an empty look until woken).
    more: bool,
    /// Rate limit: do not publish before this instant.
    hold_until: Option<Instant>,
    /// PUBACKed sequence numbers not yet acknowledged in the outbox (flushed together), and
    /// when the oldest of them came (`ACK_COALESCE`).
    acked: Vec<u64>,
    acked_since: Option<Instant>,
    /// Sealed messages from before this session still to be read from the outbox.
    need_unacked: bool,
    /// After a store error: no outbox access before this instant.
    store_hold: Option<Instant>,
    /// The next store-error hold (doubles per consecutive error).
    store_delay: Duration,
    /// Highest sequence number sealed (or set aside) as far as this session knows.
    last_seq: u64,
    /// With an inbox: this session's ack channel (cloned into every `Inbound`).
    ack_tx: Option<mpsc::UnboundedSender<AckReq>>,
    /// Inbound PUBACKs to hand to the client, and how many it holds unwritten. At most one
    /// per request the broker has in flight to us (its window, mosquitto: 20 by default):
    /// the broker sends no more until these are acknowledged.
    acks: VecDeque<AckReq>,
    acks_queued: usize,
    /// Requests refused in this session because the inbox was full (or closed).
    busy: u64,
    /// When health was last published, and the `last_seq` it carried.
    health_at: Option<Instant>,
    health_seq: u64,
    /// When the broker last sent anything, and when the oldest unacknowledged publish of
    /// this session went out (from 0 outstanding): the stall clock (`ack_timeout`).
    last_heard: Option<Instant>,
    waiting_since: Option<Instant>,
    /// on_demand: since when nothing is left to send or acknowledge (the linger clock).
    quiet_since: Option<Instant>,
    /// CONNACK of this session, and whether it was drained once since (`drain_ms`).
    connack: Option<Instant>,
    drained: bool,
    /// The ingest sealer is armed by this session (`with_ingest_seal`).
    armed: bool,
    /// Sparkplug mode: this session's edge node (`spb`).
    sp: Option<spb::SpSession>,
}

impl<O: Outbox> Forwarder<O> {
    /// `wake` is notified (`notify_one`) by the store after each commit; the forwarder also
    /// looks at the outbox every couple of seconds on its own. `status` receives every change.
    pub fn new(
        cfg: UplinkConfig,
        gateway_id: &str,
        outbox: Arc<O>,
        wake: Arc<Notify>,
        status: watch::Sender<LinkStatus>,
    ) -> Forwarder<O> {
        let topics = Topics::new(&cfg.topic_root);
        Forwarder {
            cfg,
            gateway_id: gateway_id.to_string(),
            outbox,
            wake,
            status,
            topics,
            heartbeat: None,
            store_logged: std::sync::Mutex::new(None),
            health_interval: HEALTH_INTERVAL,
            health_min_gap: HEALTH_MIN_GAP,
            health_extra: None,
            size_check: true,
            inbox: None,
            oversized_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            tls_sessions: SessionCache::new(),
            tls_resume: true,
            tls_config: std::sync::Mutex::new(None),
            link_gate: None,
            proxy: None,
            meter: None,
            handshake: HandshakeClock::new(),
            ingest: None,
            sparkplug: None,
        }
    }

    /// Arm `seal` (installed in the store, `Store::set_ingest_sealer`) whenever connected, not
    /// rate-limited and idle, so the ingest commit seals the next readings itself; what it
    /// sealed is taken with `Outbox::take_presealed` and published like a resend.
    pub fn with_ingest_seal(mut self, seal: Arc<IngestSeal>) -> Self {
        self.ingest = Some(seal);
        self
    }

    /// Receive requests from `<root>/cmd/req` and `<root>/config/set` on `tx`: persistent
    /// session, manual acks, QoS 1 subscriptions after every CONNACK. The receiver acks each
    /// `Inbound` after persisting it; one it drops unacknowledged is redelivered after a
    /// reconnect.
    /// Attempt connections only while `gate` is true (the modem is registered and attached),
    /// and back off without a fast-retry window (every attempt wakes the radio).
    pub fn with_link_gate(mut self, gate: watch::Receiver<bool>) -> Self {
        self.link_gate = Some(gate);
        self
    }

    /// Connect through the HTTP CONNECT proxy at `addr` (the modem's socket-mode bridge on
    /// loopback); TLS still runs end to end with the broker, under its own name.
    pub fn with_proxy(mut self, addr: std::net::SocketAddr) -> Self {
        self.proxy = Some(addr);
        self
    }

    /// Take the session's open time and byte counts from the transport below (the modem
    /// bridge's `LinkMeter`) instead of counting payload bytes only.
    pub fn with_link_meter(mut self, meter: Arc<LinkMeter>) -> Self {
        self.meter = Some(meter);
        self
    }

    pub fn with_inbox(mut self, tx: mpsc::Sender<Inbound>) -> Self {
        self.inbox = Some(tx);
        self
    }

    /// `<root>/health` every `interval`, and `min_gap` after the last one when the highest
    /// sequence number moved (defaults `HEALTH_INTERVAL`, `HEALTH_MIN_GAP`).
    pub fn with_health_timing(mut self, interval: Duration, min_gap: Duration) -> Self {
        self.health_interval = interval.max(Duration::from_secs(1));
        self.health_min_gap = min_gap.min(self.health_interval);
        self
    }

    /// Test seam: skip the forwarder's own packet-size check, so that a message the client
    /// refuses reaches rumqttc and the event loop's "outgoing packet too large" path runs
    /// (tests/uplink_integrity.rs proves that path with a real broker). Never used by the
    /// daemon.
    #[doc(hidden)]
    pub fn without_size_check(mut self) -> Self {
        self.size_check = false;
        self
    }

    /// Benchmark seam: a fresh TLS session cache for every connection attempt, so every
    /// reconnect is a full handshake (the behaviour before resumption; benches/nbiot_sessions.rs
    /// measures the difference). Never used by the daemon.
    #[doc(hidden)]
    pub fn without_tls_resumption(mut self) -> Self {
        self.tls_resume = false;
        self
    }

    /// Fields added to every health message (an object's members are merged in).
    pub fn with_health_extra(mut self, extra: HealthExtra) -> Self {
        self.health_extra = Some(extra);
        self
    }

    /// Call `beat` on every turn of the loops, so a hung forwarder can be told from a slow link.
    pub fn with_heartbeat(mut self, beat: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.heartbeat = Some(beat);
        self
    }

    fn beat(&self) {
        if let Some(b) = &self.heartbeat {
            b();
        }
    }

    /// Connect, forward, reconnect with backoff, until `shutdown`; then publish `offline`
    /// (retained) and disconnect cleanly.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff {
            min: self.cfg.reconnect_min,
            max: self.cfg.reconnect_max.max(self.cfg.reconnect_min),
            fast: if self.link_gate.is_some() {
                Duration::ZERO
            } else {
                FAST_RETRY_WINDOW
            },
            attempt: 0,
            since: None,
        };
        let mut gate = self.link_gate.clone();
        let mut sessions: u64 = 0;
        // A packet over the incoming limit ended the last session: discard the broker's
        // session before the next persistent one, or it is redelivered forever.
        let mut purge = false;
        loop {
            self.beat();
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(g) = gate.as_mut() {
                if !*g.borrow_and_update() {
                    self.status.send_modify(|s| {
                        s.state = LinkState::Down {
                            since_ms: now_ms(),
                            last_error: "waiting for the modem: not registered or not attached"
                                .into(),
                        };
                    });
                    tracing::info!("uplink waits for the modem link");
                    let gone = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = g.wait_for(|up| *up) => r.is_err(),
                    };
                    if gone {
                        // The modem supervisor is gone: try anyway.
                        gate = None;
                    }
                    continue;
                }
            }
            self.status.send_modify(|s| s.state = LinkState::Connecting);
            let r = if purge {
                self.purge_session(&shutdown).await
            } else {
                Ok(())
            };
            let r = match r {
                // Purged (or nothing to purge): connect persistent right away.
                Ok(()) => {
                    purge = false;
                    let mut connected = false;
                    let began = Instant::now();
                    let r = self.session(&shutdown, &mut connected, sessions).await;
                    if let Some(i) = &self.ingest {
                        // What it sealed meanwhile is read by the next session's `unacked`.
                        i.disarm();
                    }
                    if connected {
                        let ms = began.elapsed().as_millis() as u64;
                        self.update_figures(Some(ms));
                        let f = self.status.borrow().session.to_json();
                        tracing::info!(session = %f, "uplink session figures");
                        sessions += 1;
                        backoff.reset();
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => break,
                Err(SessionError::Asleep) => {
                    backoff.reset();
                    self.status
                        .send_modify(|s| s.state = LinkState::Asleep { since_ms: now_ms() });
                    tracing::info!(check_in = ?self.cfg.check_in, "uplink asleep until there is something to send");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.cfg.check_in) => {}
                    }
                }
                Err(e) => {
                    if let SessionError::IncomingTooLarge { .. } = e {
                        // A Sparkplug session is clean: nothing to purge.
                        if self.inbox.is_some() && self.sparkplug.is_none() {
                            purge = true;
                        }
                        self.status.send_modify(|s| s.inbound_oversized += 1);
                    }
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, "uplink down");
                    self.status.send_modify(|s| {
                        s.state = LinkState::Down {
                            since_ms: now_ms(),
                            last_error: msg.clone(),
                        };
                        s.last_error = Some(msg.clone());
                        s.inbound_subscribed = false;
                    });
                    let wait = backoff.next();
                    tracing::debug!(?wait, "uplink reconnect delay");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.status.send_modify(|s| {
            s.state = LinkState::Down {
                since_ms: now_ms(),
                last_error: "shut down".into(),
            }
        });
    }

    fn options(&self) -> Result<MqttOptions, SessionError> {
        let c = &self.cfg;
        if c.client_id.is_empty() || c.client_id.starts_with(' ') {
            return Err(SessionError::Internal(format!(
                "invalid MQTT client id {:?}",
                c.client_id
            )));
        }
        let mut o = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        let keepalive = if c.keepalive.is_zero() {
            Duration::ZERO
        } else {
            c.keepalive.max(Duration::from_secs(1))
        };
        o.set_keep_alive(keepalive);
        o.set_inflight(c.inflight.max(1));
        // Large enough for any message we build (alarms may exceed the data limit a little).
        let max = c.max_payload.max(1024) + 4096;
        if self.inbox.is_some() {
            // Persistent: the broker keeps the subscriptions and queues requests while we are
            // offline; PUBACKs only when the receiver persisted the request.
            o.set_clean_session(false);
            o.set_manual_acks(true);
            o.set_max_packet_size(MAX_INCOMING_PACKET.max(max), max);
        } else {
            o.set_clean_session(true);
            o.set_max_packet_size(max.max(16 * 1024), max);
        }
        if self.sparkplug.is_none() {
            // Sparkplug: NDEATH is the will (`spb_connect`), one will per connection.
            o.set_last_will(LastWill::new(
                self.topics.status(),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        }
        if let Some(u) = &c.username {
            o.set_credentials(u.clone(), c.password.clone().unwrap_or_default());
        }
        if let Some(p) = self.proxy {
            o.set_proxy(rumqttc::Proxy {
                ty: rumqttc::ProxyType::Http,
                auth: rumqttc::ProxyAuth::None,
                addr: p.ip().to_string(),
                port: p.port(),
            });
        }
        if c.tls {
            let tls = self.tls_config()?;
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        Ok(o)
    }

    /// The TLS client config of every attempt: one for the life of this forwarder (built on
    /// first use, so a CA file error is retried), or a fresh one with its own empty session
    /// cache per attempt `without_tls_resumption`.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, SessionError> {
        if !self.tls_resume {
            let c = client_config_with(&self.cfg, SessionCache::new())?;
            return Ok(self.with_handshake_clock(c));
        }
        // A renewed CA bundle or client certificate (same paths, new files) is picked up at
        // the next attempt: the kept config is rebuilt when the files' size or mtime changed
        // (its tickets are then dropped once: they belong to the old verifier).
        let stamp = pem_stamp(&self.cfg);
        let mut kept = self
            .tls_config
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((c, s)) = kept.as_ref() {
            if *s == stamp {
                return Ok(c.clone());
            }
            tracing::info!("uplink TLS files changed: new TLS configuration");
        }
        let c = client_config_with(&self.cfg, self.tls_sessions.clone())?;
        let c = self.with_handshake_clock(c);
        *kept = Some((c.clone(), stamp));
        Ok(c)
    }

    /// `c` with the key-log hook that notes when each handshake completed (the session
    /// figures' `tls_ms`; it drops every secret). The verifier and session store stay the
    /// same instances, so resumption is unaffected.
    fn with_handshake_clock(&self, c: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
        let mut c = Arc::unwrap_or_clone(c);
        c.key_log = self.handshake.clone();
        Arc::new(c)
    }

    /// Bring the status's session figures up to date: socket bytes from the meter, and the
    /// length (`total_ms`: at the end, or so far while the session is up).
    fn update_figures(&self, total_ms: Option<u64>) {
        let reading = self.meter.as_ref().map(|m| m.reading());
        self.status.send_modify(|st| {
            if let Some(r) = reading {
                st.session.bytes_up = r.up;
                st.session.bytes_down = Some(r.down);
            }
            if total_ms.is_some() {
                st.session.total_ms = total_ms;
            }
        });
    }

    fn conn_err(&self, what: &'static str, error: impl ToString) -> SessionError {
        SessionError::Connection {
            what,
            host: self.cfg.host.clone(),
            port: self.cfg.port,
            error: error.to_string(),
        }
    }

    /// The session's end for an error of the event loop (a packet over the incoming limit
    /// has its own variant: with an inbox the next attempt purges the broker's session).
    fn ended(&self, e: rumqttc::ConnectionError) -> SessionError {
        match incoming_too_large(&e) {
            Some(size) => SessionError::IncomingTooLarge {
                host: self.cfg.host.clone(),
                port: self.cfg.port,
                size,
                limit: self.incoming_limit(),
            },
            None => self.conn_err("connection to", e),
        }
    }

    /// The client's incoming packet limit (as `options` sets it).
    fn incoming_limit(&self) -> usize {
        let max = max_packet(self.cfg.max_payload);
        if self.inbox.is_some() {
            MAX_INCOMING_PACKET.max(max)
        } else {
            max.max(16 * 1024)
        }
    }

    fn net_options(&self) -> NetworkOptions {
        let mut net = NetworkOptions::new();
        net.set_connection_timeout(self.cfg.connect_timeout.as_secs_f64().ceil().max(1.0) as u64);
        net.set_tcp_nodelay(true);
        net
    }

    /// Discard the broker's session of our client id: CONNECT with a clean session, then
    /// DISCONNECT. Run once after a packet over the incoming limit ended a persistent
    /// session; the broker drops that packet with everything else it queued for us (those
    /// requests are lost: ops see no result and retry). `Ok` also at shutdown.
    async fn purge_session(&self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        let mut opts = self.options()?;
        opts.set_clean_session(true);
        opts.set_manual_acks(false);
        let (client, mut el) = AsyncClient::new(opts, 4);
        el.set_network_options(self.net_options());
        let connack = {
            let wait = async {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(a))) => break Ok(a),
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = wait => r,
            }
        };
        match connack {
            Ok(a) if a.code == ConnectReturnCode::Success => {}
            Ok(a) => {
                return Err(SessionError::Refused {
                    host: self.cfg.host.clone(),
                    port: self.cfg.port,
                    code: a.code,
                })
            }
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                return Err(SessionError::Refused {
                    host: self.cfg.host.clone(),
                    port: self.cfg.port,
                    code,
                })
            }
            Err(e) => return Err(self.conn_err("cannot connect to", e)),
        }
        // The clean CONNECT already discarded the old session; DISCONNECT ends this one
        // (and suppresses the last will).
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            loop {
                match el.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        tracing::warn!(client_id = %self.cfg.client_id,
            "discarded the broker's session after a packet over the incoming limit \
             (requests queued with it are lost); subscribing again");
        self.status.send_modify(|st| st.inbound_purges += 1);
        Ok(())
    }

    /// Requests were refused in this session because the inbox was full, and it is empty
    /// now: time for a new session, in which the broker offers them again.
    fn inbox_drained_after_busy(&self, s: &Session) -> bool {
        match &self.inbox {
            Some(inbox) => {
                s.busy > 0 && !inbox.is_closed() && inbox.capacity() == inbox.max_capacity()
            }
            None => false,
        }
    }

    /// End the session cleanly (DISCONNECT after the requests already handed to the client,
    /// such as PUBACKs) without `offline`: the next one starts right after the backoff.
    async fn renew(
        &self,
        client: &AsyncClient,
        rx: &mut mpsc::UnboundedReceiver<Result<Event, rumqttc::ConnectionError>>,
    ) {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(Ok(ev)) = rx.recv().await {
                if ev == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        })
        .await;
    }

    /// Hand waiting inbound PUBACKs to the client, at most `ACK_WINDOW` unwritten at once
    /// (the rest wait for `Outgoing::PubAck` events).
    fn send_acks(&self, client: &AsyncClient, s: &mut Session) {
        while s.acks_queued < ACK_WINDOW {
            let Some(a) = s.acks.front().copied() else {
                break;
            };
            if a.qos != QoS::AtMostOnce {
                let mut p = Publish::new("", a.qos, Vec::<u8>::new());
                p.pkid = a.pkid;
                if client.try_ack(&p).is_err() {
                    // Channel full or the event loop gone: retried after the next event.
                    break;
                }
                s.acks_queued += 1;
            }
            s.acks.pop_front();
        }
    }

    /// An incoming PUBLISH. Without an inbox rumqttc acknowledged it (nothing subscribes, so
    /// only a broker's stray message gets here); with one it is routed (`inbox::route`).
    fn on_publish(&self, p: Publish, s: &mut Session) {
        let (Some(inbox), Some(ack_tx)) = (&self.inbox, &s.ack_tx) else {
            return;
        };
        let req = AckReq {
            pkid: p.pkid,
            qos: p.qos,
        };
        match route(&self.topics, &p.topic, p.payload.len()) {
            Route::Deliver(kind) => {
                // Counted before the receiver can see it, so the status never lags behind.
                match inbox.try_reserve() {
                    Ok(permit) => {
                        self.status.send_modify(|st| st.inbound_received += 1);
                        permit.send(Inbound::new(
                            kind,
                            p.payload,
                            now_ms(),
                            p.retain,
                            p.dup,
                            AckToken::new(ack_tx.clone(), p.pkid, p.qos),
                        ));
                    }
                    Err(e) => {
                        let why = match e {
                            mpsc::error::TrySendError::Full(()) => "the inbox is full",
                            mpsc::error::TrySendError::Closed(()) => "the inbox is closed",
                        };
                        tracing::warn!(topic = kind.topic_suffix(), reason = why,
                            "request not taken: left unacknowledged, the broker redelivers it in a new session");
                        s.busy += 1;
                        self.status.send_modify(|st| st.inbound_busy += 1);
                    }
                }
            }
            Route::TooLarge { kind, len } => {
                self.status.send_modify(|st| st.inbound_oversized += 1);
                // Handed over (one at a time) so the service can answer `too_large` to the
                // id it claims; it acknowledges once the answer is queued.
                let slot = self.oversized_slot.clone().try_acquire_owned().ok();
                match (slot, inbox.try_reserve()) {
                    (Some(permit), Ok(tx)) => {
                        tracing::warn!(
                            topic = kind.topic_suffix(),
                            bytes = len,
                            limit = kind.max_bytes(),
                            "request over its size bound: handed over to be answered too_large"
                        );
                        tx.send(
                            Inbound::new(
                                kind,
                                p.payload,
                                now_ms(),
                                p.retain,
                                p.dup,
                                AckToken::new(ack_tx.clone(), p.pkid, p.qos),
                            )
                            .oversized(permit),
                        );
                    }
                    _ => {
                        tracing::warn!(
                            topic = kind.topic_suffix(),
                            bytes = len,
                            limit = kind.max_bytes(),
                            "request over its size bound: acknowledged and dropped unanswered \
                             (another one is being answered, or the inbox is full)"
                        );
                        s.acks.push_back(req);
                    }
                }
            }
            Route::Ignore => {
                tracing::warn!(topic = %shown_topic(&p.topic), bytes = p.payload.len(),
                    "publish on a topic we do not serve: acknowledged and dropped");
                s.acks.push_back(req);
                self.status.send_modify(|st| st.inbound_ignored += 1);
            }
        }
    }

    /// Run an outbox call on a blocking thread. The outer error is the task's own failure.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&O) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<Result<T, OutboxError>, SessionError> {
        let o = self.outbox.clone();
        tokio::task::spawn_blocking(move || f(&o))
            .await
            .map_err(|e| SessionError::Internal(format!("outbox task failed: {e}")))
    }

    /// True while outbox access is held after a store error.
    fn store_held(s: &Session) -> bool {
        s.store_hold.is_some_and(|t| Instant::now() < t)
    }

    /// A store error: not the link's fault. Hold outbox access (1 s doubling to 30 s), log
    /// each distinct error once, report it in the link status.
    fn store_failed(&self, s: &mut Session, e: &OutboxError) {
        let msg = e.to_string();
        let delay = s.store_delay.clamp(STORE_RETRY_MIN, STORE_RETRY_MAX);
        s.store_hold = Some(Instant::now() + delay);
        s.store_delay = (delay * 2).min(STORE_RETRY_MAX);
        let mut logged = self.store_logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.as_deref() != Some(msg.as_str()) {
            tracing::error!(error = %msg, retry_in = ?delay,
                "outbox failed (store error, not an uplink error): the session stays up, retrying with backoff");
            *logged = Some(msg.clone());
        }
        drop(logged);
        self.status.send_modify(|st| st.store_error = Some(msg));
    }

    /// An outbox call succeeded: forget a store error.
    fn store_ok(&self, s: &mut Session) {
        s.store_delay = STORE_RETRY_MIN;
        s.store_hold = None;
        let mut logged = self.store_logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.take().is_some() {
            tracing::info!("outbox works again");
            self.status.send_modify(|st| st.store_error = None);
        }
    }

    /// One session: fresh client and event loop, CONNECT, then forward until an error or
    /// shutdown (`Ok`).
    async fn session(
        &self,
        shutdown: &CancellationToken,
        connected: &mut bool,
        sessions: u64,
    ) -> Result<(), SessionError> {
        let attempt = Instant::now();
        self.handshake.reset();
        let mut opts = self.options()?;
        let sp = self.spb_connect(&mut opts).await?;
        // Publishes within the window, status and health; with an inbox also the SUBSCRIBE
        // and at most ACK_WINDOW inbound PUBACKs.
        let mut cap = usize::from(self.cfg.inflight.max(1)) + 2;
        if self.inbox.is_some() {
            cap += ACK_WINDOW + 1;
        }
        let (client, mut el): (AsyncClient, EventLoop) = AsyncClient::new(opts, cap);
        el.set_network_options(self.net_options());

        // The event loop runs in its own task so that it is never cancelled mid-packet; it
        // stops at the first error (no rumqttc-internal reconnect) and dies with the session.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                let ev = el.poll().await;
                let end = ev.is_err();
                if tx.send(ev).is_err() || end {
                    break;
                }
            }
        });
        let _guard = AbortOnDrop(driver);

        // CONNECT / CONNACK (bounded by rumqttc's connection timeout, set from config).
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ev = rx.recv() => match ev {
                    Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                        if ack.code != ConnectReturnCode::Success {
                            return Err(SessionError::Refused {
                                host: self.cfg.host.clone(),
                                port: self.cfg.port,
                                code: ack.code,
                            });
                        }
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
                        return Err(SessionError::Refused {
                            host: self.cfg.host.clone(),
                            port: self.cfg.port,
                            code,
                        });
                    }
                    Some(Err(e)) => return Err(self.conn_err("cannot connect to", e)),
                    None => return Err(self.conn_err("cannot connect to", "event loop ended")),
                }
            }
        }
        *connected = true;
        let connack = Instant::now();
        let figures = SessionFigures::at_connack(
            &Moments {
                start: attempt.into_std(),
                opened: self.meter.as_ref().and_then(|m| m.reading().opened),
                tls_done: self.handshake.done(),
                connack: connack.into_std(),
            },
            if self.meter.is_some() {
                ByteCount::Socket
            } else {
                ByteCount::Payload
            },
        );
        let live_since = now_ms();
        tracing::info!(host = %self.cfg.host, port = self.cfg.port, "uplink connected");
        let resumptions = self.tls_sessions.offered();
        let full = self.tls_sessions.full_handshakes();
        self.status.send_modify(|s| {
            s.tls_full_handshakes = full;
            s.session = figures;
            s.state = LinkState::Connected;
            s.inbound_subscribed = false;
            s.tls_resumptions = resumptions;
            if sessions > 0 {
                s.reconnects += 1;
            }
        });

        let mut s = Session {
            connack: Some(connack),
            more: true,
            need_unacked: true,
            store_delay: STORE_RETRY_MIN,
            sp,
            ..Session::default()
        };
        // With an inbox: this session's ack channel, and the subscriptions (again after every
        // CONNACK: re-subscribing is idempotent and repairs a session the broker lost).
        let mut ack_rx = None;
        let mut filters = Vec::new();
        if self.inbox.is_some() {
            let (tx, rx) = mpsc::unbounded_channel();
            s.ack_tx = Some(tx);
            ack_rx = Some(rx);
            filters.extend([self.topics.cmd_req(), self.topics.config_set()]);
        }
        // Sparkplug: NCMD, DCMD (and STATE) in the same SUBSCRIBE, after the requests'.
        filters.extend(self.spb_filters(&s));
        if !filters.is_empty() {
            client
                .try_subscribe_many(
                    filters
                        .into_iter()
                        .map(|t| SubscribeFilter::new(t, QoS::AtLeastOnce)),
                )
                .map_err(|e| SessionError::Internal(format!("subscribe request refused: {e}")))?;
        }
        if s.sp.is_none() {
            self.publish(
                &client,
                &mut s,
                None,
                self.topics.status(),
                b"online".to_vec(),
                true,
            )?;
        }
        // on_demand sessions publish health once, at their end (with the session's figures):
        // one at the connect too would cost ~330 B per report on NB-IoT for nothing new.
        if self.cfg.session != crate::config::SessionMode::OnDemand {
            self.publish_health(&client, &mut s).await?;
        }
        let mut bucket = self
            .cfg
            .rate_limit
            .map(|r| Bucket::new(r, self.cfg.max_payload));

        // The session's loop; whichever way it ends, PUBACKs waiting for their burst are
        // recorded first (`ACK_COALESCE`: else only resent, same seq, same payload).
        let r: Result<(), SessionError> = async {
            loop {
                self.beat();
                if let Err(e) = self.fill(&client, &mut s, &mut bucket, live_since).await {
                    return Err(self.why_ended(e, &mut rx, &mut s).await);
                }
                if let Some(i) = &self.ingest {
                    if !s.armed && bucket.is_none() && self.idle_for_ingest(&s) {
                        i.arm(live_since);
                        s.armed = true;
                    }
                }
                if self.inbox_drained_after_busy(&s) {
                    // The broker redelivers what we left unacknowledged only in a new session.
                    self.send_acks(&client, &mut s);
                    let refused = s.busy;
                    if self.spb_farewell(&client, &s) {
                        self.renew(&client, &mut rx).await;
                    }
                    return Err(SessionError::InboxBacklog { refused });
                }
                let hold = s.hold_until;
                let store_hold = s.store_hold;
                let health_due = self.health_due(&s);
                let stall_at = self.stall_at(&s);
                let linger_end = self.linger_end(&mut s);
                let ack_due = s.acked_since.map(|t| t + ACK_COALESCE);
                self.note_drained(&mut s);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        // PUBACKs already granted leave before DISCONNECT (best effort).
                        if let Some(rx) = ack_rx.as_mut() {
                            while let Ok(a) = rx.try_recv() {
                                s.acks.push_back(a);
                            }
                            self.send_acks(&client, &mut s);
                        }
                        // PUBACKs still waiting for their burst are recorded (else only resent).
                        let _ = self.flush_acks(&mut s).await;
                        // The last word on the tail: the highest seq sealed, retained, so a
                        // consumer can tell what it should have received from this run.
                        let _ = self.publish_health(&client, &mut s).await;
                        if self.spb_farewell(&client, &s) {
                            self.goodbye(&client, &mut rx).await;
                        }
                        return Ok(());
                    }
                    Some(a) = next_ack(&mut ack_rx) => {
                        s.acks.push_back(a);
                        if let Some(rx) = ack_rx.as_mut() {
                            while let Ok(a) = rx.try_recv() {
                                s.acks.push_back(a);
                            }
                        }
                        self.send_acks(&client, &mut s);
                    }
                    ev = rx.recv() => {
                        match ev {
                            Some(Ok(ev)) => self.on_event(ev, &mut s).await?,
                            Some(Err(e)) => {
                                self.flush_acks(&mut s).await?;
                                self.on_connection_error(&e, &mut s).await?;
                                return Err(self.ended(e));
                            }
                            None => return Err(self.conn_err("connection to", "event loop ended")),
                        }
                        // Take every event already waiting, then acknowledge their PUBACKs in one
                        // outbox transaction (one fsync instead of one per message).
                        for _ in 0..ACK_BATCH {
                            match rx.try_recv() {
                                Ok(Ok(ev)) => self.on_event(ev, &mut s).await?,
                                Ok(Err(e)) => {
                                    self.flush_acks(&mut s).await?;
                                    self.on_connection_error(&e, &mut s).await?;
                                    return Err(self.ended(e));
                                }
                                Err(_) => break,
                            }
                        }
                        self.send_acks(&client, &mut s);
                        if s.outstanding == 0 || s.acked.len() >= ACK_BATCH {
                            self.flush_acks(&mut s).await?;
                        }
                    },
                    _ = tokio::time::sleep_until(ack_due.unwrap_or_else(Instant::now)), if ack_due.is_some() => {
                        self.flush_acks(&mut s).await?;
                    }
                    _ = tokio::time::sleep_until(health_due) => {
                        self.publish_health(&client, &mut s).await?;
                    }
                    _ = self.wake.notified() => {
                        s.more = true;
                        // A commit may have brought alarms: drop what is packed but not sealed
                        // (still pending in the store) so the next look sends them first. Without
                        // this, a rate-limited link sent up to FETCH staged entries ahead of an
                        // alarm (seconds at NB-IoT rates; benches/alarm_latency.rs).
                        s.staged.clear();
                    }
                    _ = tokio::time::sleep_until(hold.unwrap_or_else(Instant::now)), if hold.is_some() => {
                        s.hold_until = None;
                    }
                    _ = tokio::time::sleep_until(store_hold.unwrap_or_else(Instant::now)), if store_hold.is_some() => {
                        // Retry the outbox: acknowledgements kept meanwhile first, then the fill.
                        s.store_hold = None;
                        s.more = true;
                        self.flush_acks(&mut s).await?;
                    }
                    _ = tokio::time::sleep_until(stall_at.unwrap_or_else(Instant::now)), if stall_at.is_some() => {
                        self.flush_acks(&mut s).await?;
                        return Err(SessionError::Stalled {
                            after: self.cfg.ack_timeout,
                            outstanding: s.outstanding,
                        });
                    }
                    _ = tokio::time::sleep_until(linger_end.unwrap_or_else(Instant::now)), if linger_end.is_some() => {
                        // Drained and lingered: the last word on health, then a clean DISCONNECT
                        // (no will) so the module can sleep; the broker keeps the persistent
                        // session and queues commands until the next one.
                        if let Some(rx) = ack_rx.as_mut() {
                            while let Ok(a) = rx.try_recv() {
                                s.acks.push_back(a);
                            }
                            self.send_acks(&client, &mut s);
                        }
                        self.flush_acks(&mut s).await?;
                        let _ = self.publish_health(&client, &mut s).await;
                        if s.sp.is_none() {
                            let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "asleep");
                        }
                        if self.spb_farewell(&client, &s) {
                            let _ = client.try_disconnect();
                        }
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                            while let Some(Ok(ev)) = rx.recv().await {
                                if ev == Event::Outgoing(Outgoing::Disconnect) {
                                    break;
                                }
                            }
                        })
                        .await;
                        return Err(SessionError::Asleep);
                    }
                    _ = tokio::time::sleep(IDLE_RECHECK) => {
                        s.more = true;
                        // PUBACKs noted in the outbox are recorded (no ingest commit came to do
                        // it: a slow schedule), deferred ones written once old enough.
                        if let Ok(Err(e)) = self.blocking(|o| o.settle()).await {
                            tracing::debug!(error = %e, "cannot write deferred acknowledgements yet");
                        }
                    }
                }
            }
        }
        .await;
        if r.is_err() && !s.acked.is_empty() {
            let _ = self.flush_acks(&mut s).await;
        }
        r
    }

    /// When the session counts as stalled: publishes await PUBACK and the broker has sent
    /// nothing for `ack_timeout` since the oldest of them went out.
    fn stall_at(&self, s: &Session) -> Option<Instant> {
        if s.outstanding == 0 {
            return None;
        }
        let since = match (s.waiting_since, s.last_heard) {
            (Some(w), Some(h)) => w.max(h),
            (Some(w), None) => w,
            (None, h) => h?,
        };
        Some(since + self.cfg.ack_timeout)
    }

    /// on_demand: when the session ends, `linger` after nothing was left to send or
    /// acknowledge (any activity restarts the clock). None in `always` mode or while busy.
    fn linger_end(&self, s: &mut Session) -> Option<Instant> {
        if self.cfg.session != crate::config::SessionMode::OnDemand {
            return None;
        }
        if !Self::quiet(s) {
            s.quiet_since = None;
            return None;
        }
        let since = *s.quiet_since.get_or_insert_with(Instant::now);
        Some(since + self.cfg.linger)
    }

    /// The session's first moment with nothing left to send or acknowledge: `drain_ms`.
    fn note_drained(&self, s: &mut Session) {
        let Some(connack) = s.connack else { return };
        if s.drained || !Self::quiet(s) {
            return;
        }
        s.drained = true;
        let ms = connack.elapsed().as_millis() as u64;
        self.status.send_modify(|st| st.session.drain_ms = Some(ms));
    }

    /// Would seal new entries right away: nothing waiting its turn, window not full, no hold.
    fn idle_for_ingest(&self, s: &Session) -> bool {
        s.outstanding < usize::from(self.cfg.inflight.max(1))
            && !s.more
            && s.staged.is_empty()
            && s.resend.is_empty()
            && !s.need_unacked
            && s.store_hold.is_none()
            && s.hold_until.is_none()
            && s.sp.as_ref().is_none_or(|sp| sp.born() && sp.queue_empty())
    }

    /// Nothing to send, resend, seal or acknowledge, no PUBACK awaited, no hold.
    fn quiet(s: &Session) -> bool {
        s.outstanding == 0
            && !s.more
            && s.staged.is_empty()
            && s.resend.is_empty()
            && !s.need_unacked
            && s.acked.is_empty()
            && s.acks.is_empty()
            && s.acks_queued == 0
            && s.store_hold.is_none()
            && s.hold_until.is_none()
            && spb::idle(s)
    }

    /// Request one QoS 1 publish, recording it in the FIFO first.
    fn publish(
        &self,
        client: &AsyncClient,
        s: &mut Session,
        seq: Option<u64>,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), SessionError> {
        s.fifo.push_back(seq);
        if s.outstanding == 0 {
            s.waiting_since = Some(Instant::now());
        }
        let bytes = payload.len() as u64;
        if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            s.fifo.pop_back();
            return Err(SessionError::Internal(format!(
                "publish request refused: {e}"
            )));
        }
        s.outstanding += 1;
        let socket = self.meter.is_some();
        self.status.send_modify(|st| {
            st.session.payload_up += bytes;
            if !socket {
                st.session.bytes_up += bytes;
            }
        });
        Ok(())
    }

    /// Fill the inflight window: resends first, then new messages from the outbox.
    async fn fill(
        &self,
        client: &AsyncClient,
        s: &mut Session,
        bucket: &mut Option<Bucket>,
        live_since: i64,
    ) -> Result<(), SessionError> {
        let window = usize::from(self.cfg.inflight.max(1));
        // Sparkplug: births first, and what is derived already before anything new.
        if !self.spb_drain(client, s, window)? {
            return Ok(());
        }
        if Self::store_held(s) {
            return Ok(());
        }
        if s.armed && s.more {
            // Disarmed under the store's lock: from here on only this task seals. Taken at
            // once when the lock is free (and told whether anything is left to look for),
            // else on a blocking thread.
            s.armed = false;
            let taken = match self.outbox.try_take_presealed() {
                Some(r) => r,
                None => self
                    .blocking(|o| o.take_presealed())
                    .await?
                    .map(|v| (v, false)),
            };
            match taken {
                Ok((v, drained)) => {
                    let n = v.len() as u64;
                    if n > 0 {
                        self.status.send_modify(|st| st.sealed_at_ingest += n);
                    }
                    for m in v {
                        s.last_seq = s.last_seq.max(m.seq);
                        s.resend.push_back(m);
                    }
                    if drained && s.staged.is_empty() {
                        // Nothing pending: what an empty look would say (a commit wakes us).
                        s.more = false;
                    }
                }
                Err(e @ OutboxError::Store(_)) => {
                    self.store_failed(s, &e);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        if s.need_unacked {
            match self.blocking(|o| o.unacked()).await? {
                Ok(v) => {
                    s.resend = v.into();
                    self.spb_resumed(s);
                    s.need_unacked = false;
                    self.store_ok(s);
                }
                Err(e @ OutboxError::Store(_)) => {
                    self.store_failed(s, &e);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        while s.outstanding < window && s.hold_until.is_none() && spb::idle(s) {
            if let Some(m) = s.resend.front() {
                if let Some(reason) = self.refusal(&m.topic, m.payload.len()) {
                    // Sealed with a larger limit (an older config or version): set aside.
                    let seq = m.seq;
                    if !self.set_aside(s, seq, reason).await? {
                        return Ok(());
                    }
                    s.resend.pop_front();
                    continue;
                }
                if let Some(b) = bucket.as_mut() {
                    if let Err(wait) = b.take(m.payload.len()) {
                        s.hold_until = Some(Instant::now() + wait);
                        break;
                    }
                }
                let Some(m) = s.resend.pop_front() else { break };
                self.send_sealed(client, s, m, window, live_since).await?;
                continue;
            }
            if s.staged.is_empty() {
                if !s.more {
                    break;
                }
                let entries = match self.blocking(move |o| o.pending(FETCH, live_since)).await? {
                    Ok(v) => {
                        // A read working says little about writes (full disk, read-only
                        // file system): only a successful write, or nothing left to write,
                        // ends the backoff.
                        if v.is_empty() {
                            self.store_ok(s);
                        }
                        v
                    }
                    Err(e @ OutboxError::Store(_)) => {
                        self.store_failed(s, &e);
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                if entries.is_empty() {
                    s.more = false;
                    break;
                }
                let full = entries.len() >= FETCH;
                let mut packed = encode_messages(
                    &entries,
                    &self.gateway_id,
                    self.cfg.max_payload,
                    (self.cfg.encoding, self.cfg.format),
                );
                if full && packed.len() > 1 {
                    // The last message may be completed by entries beyond this look: leave it
                    // (and the earlier parts of a split batch it ends) pending for the next.
                    let mut keep = packed.len() - 1;
                    while keep > 0 && packed[keep - 1].entries.is_empty() {
                        keep -= 1;
                    }
                    if keep > 0 {
                        packed.truncate(keep);
                    }
                }
                s.staged = packed.into();
            }
            let Some(p) = s.staged.front() else { break };
            if let Some(b) = bucket.as_mut() {
                let len = p
                    .build(&self.gateway_id, u64::MAX)
                    .map(|v| v.len())
                    .unwrap_or(0);
                if let Err(wait) = b.take(len) {
                    s.hold_until = Some(Instant::now() + wait);
                    break;
                }
            }
            // Seal everything staged (at most one look, FETCH entries) in ONE outbox
            // transaction (one fsync for all of them: flash wear) and publish them as the
            // window allows (sealed, they wait in `resend`); one at a time under a rate limit
            // (the bucket decides each, and an alarm committed meanwhile goes first).
            let n = if bucket.is_some() {
                1
            } else {
                s.staged.len().max(1)
            };
            let packs: Vec<Packed> = s.staged.drain(..n).collect();
            let topics: Vec<String> = packs.iter().map(|p| self.topics.for_kind(p.kind)).collect();
            let gw = self.gateway_id.clone();
            let limit = if self.size_check {
                max_packet(self.cfg.max_payload)
            } else {
                usize::MAX
            };
            let (sealed, stop, bytes, packs, topics) = self
                .blocking(move |o| {
                    let mut bytes = 0usize;
                    let reqs: Vec<SealRequest<'_>> = packs
                        .iter()
                        .zip(&topics)
                        .map(|(p, t)| SealRequest {
                            topic: t,
                            entries: &p.entries,
                            readings: p.readings,
                            rebuildable: p.rebuildable,
                        })
                        .collect();
                    // A payload the client would refuse is never sealed as is: the build
                    // fails, and the entries are set aside below (the seq is not consumed).
                    let (sealed, stop) = o.seal_many(&reqs, &mut |i, seq| {
                        let b = packs[i].build(&gw, seq).map_err(|e| e.to_string())?;
                        bytes = b.len();
                        match refusal_reason(&topics[i], b.len(), limit) {
                            Some(why) => Err(why),
                            None => Ok(b),
                        }
                    });
                    drop(reqs);
                    Ok((sealed, stop, bytes, packs, topics))
                })
                .await?
                .map_err(SessionError::from)?;
            let done = sealed.len();
            if done > 0 {
                self.store_ok(s);
            }
            for m in sealed {
                s.last_seq = s.last_seq.max(m.seq);
                if s.outstanding < window && s.resend.is_empty() && spb::idle(s) {
                    self.send_sealed(client, s, m, window, live_since).await?;
                } else {
                    s.resend.push_back(m);
                }
            }
            let Some(err) = stop else { continue };
            let mut rest = packs.into_iter().skip(done);
            let Some(p) = rest.next() else { continue };
            let topic = topics.get(done).cloned().unwrap_or_default();
            // Not tried yet: still pending, ahead of what was staged after them.
            for q in rest.rev() {
                s.staged.push_front(q);
            }
            match err {
                OutboxError::Build(reason) => {
                    // One entry that cannot become an acceptable message must not block the
                    // rest: set it aside with a sequence number of its own.
                    let (entries, readings) = (p.entries.clone(), p.readings);
                    let t = topic.clone();
                    let r = self
                        .blocking(move |o| {
                            Ok(
                                o.dead_letter_entries(
                                    &t,
                                    &entries,
                                    readings,
                                    bytes as u64,
                                    &reason,
                                ),
                            )
                        })
                        .await?
                        .map_err(SessionError::from)?;
                    match r {
                        Ok(d) => {
                            self.store_ok(s);
                            s.last_seq = s.last_seq.max(d.seq);
                            self.dead_lettered(s, &d);
                        }
                        Err(OutboxError::NotPending(_)) => s.staged.clear(),
                        Err(e @ OutboxError::Store(_)) => {
                            s.staged.clear();
                            s.more = true;
                            self.store_failed(s, &e);
                            return Ok(());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                OutboxError::NotPending(ids) => {
                    // Evicted meanwhile: drop what was staged and look again.
                    tracing::warn!(?ids, "outbox entries vanished before sealing");
                    s.staged.clear();
                }
                e @ OutboxError::Store(_) => {
                    // Nothing was sealed: the entries are still pending; look again later.
                    s.staged.clear();
                    s.more = true;
                    self.store_failed(s, &e);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Why the client would refuse a PUBLISH of `len` payload bytes on `topic`, if it would.
    fn refusal(&self, topic: &str, len: usize) -> Option<String> {
        if !self.size_check {
            return None;
        }
        refusal_reason(topic, len, max_packet(self.cfg.max_payload))
    }

    /// Set sealed message `seq` aside as a dead letter. `Ok(false)` when the store failed
    /// (held with backoff; the caller stops filling).
    async fn set_aside(
        &self,
        s: &mut Session,
        seq: u64,
        reason: String,
    ) -> Result<bool, SessionError> {
        match self.blocking(move |o| o.dead_letter(seq, &reason)).await? {
            Ok(Some(d)) => {
                self.store_ok(s);
                self.dead_lettered(s, &d);
                Ok(true)
            }
            Ok(None) => Ok(true),
            Err(e @ OutboxError::Store(_)) => {
                self.store_failed(s, &e);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A dead letter was recorded: log it, count it, send its event soon.
    fn dead_lettered(&self, s: &mut Session, d: &DeadLetter) {
        tracing::warn!(seq = d.seq, topic = %d.topic, bytes = d.bytes, reason = %d.reason,
            "message set aside as a dead letter (dead_letter event follows)");
        s.more = true;
        let why = format!("seq {} on {}: {}", d.seq, d.topic, d.reason);
        self.status.send_modify(|st| {
            st.dead_letters += 1;
            st.last_dead_letter = Some(why);
        });
    }

    /// The event loop failed. If it refused an outgoing packet as too large, the publish it
    /// was writing (the oldest request not yet reported, or the one held after a packet-id
    /// collision) is set aside, so the next session does not meet it again.
    async fn on_connection_error(
        &self,
        e: &rumqttc::ConnectionError,
        s: &mut Session,
    ) -> Result<(), SessionError> {
        let Some((size, max)) = packet_too_large(e) else {
            return Ok(());
        };
        let culprit = match s.collided {
            Some(c) => c,
            None => s.fifo.front().copied().flatten(),
        };
        if let Some(seq) = culprit {
            let reason = format!(
                "the MQTT client refused the PUBLISH packet of {size} bytes (limit {max} bytes)"
            );
            self.set_aside(s, seq, reason).await?;
        }
        Ok(())
    }

    /// A publish request failed because the event loop had already stopped: its own error,
    /// still in the channel behind the events before it, says why (e.g. a packet too large,
    /// whose publish is then set aside). Takes the waiting events in order so the culprit
    /// is found; any other error is returned as it is.
    async fn why_ended(
        &self,
        e: SessionError,
        rx: &mut mpsc::UnboundedReceiver<Result<Event, rumqttc::ConnectionError>>,
        s: &mut Session,
    ) -> SessionError {
        if !matches!(&e, SessionError::Internal(m) if m.starts_with("publish request refused")) {
            return e;
        }
        let drain = async {
            while let Some(ev) = rx.recv().await {
                match ev {
                    Ok(ev) => {
                        if self.on_event(ev, s).await.is_err() {
                            return None;
                        }
                    }
                    Err(ce) => return Some(ce),
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(1), drain).await {
            Ok(Some(ce)) => {
                let _ = self.flush_acks(s).await;
                if let Err(e2) = self.on_connection_error(&ce, s).await {
                    return e2;
                }
                self.ended(ce)
            }
            _ => e,
        }
    }

    /// When the next health message is due.
    fn health_due(&self, s: &Session) -> Instant {
        let last = s.health_at.unwrap_or_else(Instant::now);
        if s.last_seq > s.health_seq {
            last + self.health_min_gap
        } else {
            last + self.health_interval
        }
    }

    /// Publish the retained `<root>/health` message (no sequence number).
    async fn publish_health(
        &self,
        client: &AsyncClient,
        s: &mut Session,
    ) -> Result<(), SessionError> {
        let known = self.status.borrow().dead_letters;
        let (last_seq, dead) = match self
            .blocking(|o| {
                // What the health reports follows every PUBACK seen so far.
                o.absorb_noted()?;
                Ok((o.last_seq()?, o.dead_letter_count()?))
            })
            .await?
        {
            Ok((l, d)) => (l.max(s.last_seq), d),
            // The store is failing: report what this task knows.
            Err(_) => (s.last_seq, known),
        };
        s.last_seq = last_seq;
        let now = now_ms();
        let so_far = s.connack.map(|c| {
            let connect = self.status.borrow().session.connect_ms.unwrap_or(0);
            connect + c.elapsed().as_millis() as u64
        });
        self.update_figures(so_far);
        let mut h = {
            let st = self.status.borrow();
            health_json(&self.gateway_id, now, last_seq, dead, s.outstanding, &st)
        };
        if let (Some(extra), serde_json::Value::Object(m)) = (&self.health_extra, &mut h) {
            match extra() {
                serde_json::Value::Object(x) => m.extend(x),
                serde_json::Value::Null => {}
                other => {
                    m.insert("extra".into(), other);
                }
            }
        }
        let payload = serde_json::to_vec(&h).unwrap_or_default();
        self.publish(client, s, None, self.topics.health(), payload, true)?;
        self.spb_node_state(s);
        s.health_at = Some(Instant::now());
        s.health_seq = last_seq;
        self.status.send_modify(|st| {
            st.last_seq = last_seq;
            st.dead_letters = dead;
            st.last_health_ms = Some(now);
        });
        Ok(())
    }

    /// Acknowledge the collected PUBACKs in the outbox (one transaction).
    /// While the store fails, PUBACKs are kept here and recorded once it works again (if the
    /// session ends first, the messages are resent: at least once).
    async fn flush_acks(&self, s: &mut Session) -> Result<(), SessionError> {
        if s.acked.is_empty() || Self::store_held(s) {
            return Ok(());
        }
        let seqs = std::mem::take(&mut s.acked);
        s.acked_since = None;
        let n = seqs.len() as u64;
        // Noted in memory and recorded by the outbox's next transaction (no hand-off), unless
        // it cannot: then recorded now on a blocking thread.
        if !self.outbox.note_acks(&seqs) {
            let kept = seqs.clone();
            match self.blocking(move |o| o.ack_many(&seqs)).await? {
                Ok(()) => self.store_ok(s),
                Err(e @ OutboxError::Store(_)) => {
                    let mut later = std::mem::take(&mut s.acked);
                    s.acked = kept;
                    s.acked.append(&mut later);
                    self.store_failed(s, &e);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.status.send_modify(|st| {
            st.acked += n;
            st.last_ack_ms = Some(now_ms());
        });
        Ok(())
    }

    async fn on_event(&self, ev: Event, s: &mut Session) -> Result<(), SessionError> {
        if let Event::Incoming(_) = ev {
            s.last_heard = Some(Instant::now());
        }
        match ev {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let seq = match s.collided.take() {
                    Some(seq) => seq,
                    None => s.fifo.pop_front().ok_or_else(|| {
                        SessionError::Internal(format!("publish {pkid} without a request"))
                    })?,
                };
                s.pkids.insert(pkid, seq);
                if seq.is_some() {
                    self.status.send_modify(|st| {
                        st.published += 1;
                        st.session.messages += 1;
                        st.last_publish_ms = Some(now_ms());
                    });
                }
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                let seq = s.fifo.pop_front().ok_or_else(|| {
                    SessionError::Internal(format!("collision on {pkid} without a request"))
                })?;
                tracing::debug!(pkid, "packet id collision: waiting for its ack");
                s.collided = Some(seq);
            }
            Event::Incoming(Packet::PubAck(ack)) => match s.pkids.remove(&ack.pkid) {
                Some(seq) => {
                    s.outstanding = s.outstanding.saturating_sub(1);
                    if let Some(seq) = seq {
                        // Acknowledged in the outbox by `flush_acks`, together with every
                        // other PUBACK that is already waiting (Sparkplug: once every
                        // publish derived from it was acknowledged).
                        if spb::part_acked(s, seq) {
                            s.acked.push(seq);
                            s.acked_since.get_or_insert_with(Instant::now);
                        }
                    }
                }
                None => tracing::warn!(pkid = ack.pkid, "PUBACK for an unknown packet id"),
            },
            Event::Incoming(Packet::Publish(p)) => {
                if !self.spb_on_publish(&p, s) {
                    self.on_publish(p, s);
                }
                if let Some(e) = self.spb_host_gone(s) {
                    return Err(e);
                }
            }
            Event::Incoming(Packet::SubAck(a)) if self.inbox.is_some() || s.sp.is_some() => {
                // The requests' filters come first in the one SUBSCRIBE, Sparkplug's after.
                let n = if self.inbox.is_some() { 2 } else { 0 };
                let (req, sp) = a.return_codes.split_at(n.min(a.return_codes.len()));
                self.spb_subscribed(s, sp)?;
                if self.inbox.is_none() {
                    return Ok(());
                }
                if req
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                {
                    tracing::info!(topics = ?[self.topics.cmd_req(), self.topics.config_set()],
                        "subscribed to requests");
                    self.status.send_modify(|st| st.inbound_subscribed = true);
                } else {
                    // Most likely the broker's ACL: the data path goes on; logged per session.
                    tracing::error!(codes = ?a.return_codes,
                        "the broker refused the request subscriptions (ACL?): no remote operations");
                }
            }
            Event::Outgoing(Outgoing::PubAck(_)) if self.inbox.is_some() => {
                s.acks_queued = s.acks_queued.saturating_sub(1);
                self.status.send_modify(|st| st.inbound_acked += 1);
            }
            Event::Incoming(Packet::Disconnect) => {
                return Err(self.conn_err("connection to", "broker sent DISCONNECT"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Graceful end: retained `offline` (Sparkplug: NDEATH was queued by `spb_farewell`),
    /// then DISCONNECT (which suppresses the last will).
    async fn goodbye(
        &self,
        client: &AsyncClient,
        rx: &mut mpsc::UnboundedReceiver<Result<Event, rumqttc::ConnectionError>>,
    ) {
        if self.sparkplug.is_none() {
            let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(Ok(ev)) = rx.recv().await {
                if ev == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Size and modification time of the uplink's PEM files (CA, client certificate, key): the
/// kept TLS configuration is rebuilt when they change.
type PemStamp = Vec<Option<(u64, std::time::SystemTime)>>;

fn pem_stamp(c: &UplinkConfig) -> PemStamp {
    [&c.ca_file, &c.client_cert, &c.client_key]
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p.as_ref()?).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Why the client would refuse a QoS 1 PUBLISH of `len` payload bytes on `topic` with an
/// outgoing limit of `limit` bytes (pure; `None` when it fits).
pub(super) fn refusal_reason(topic: &str, len: usize, limit: usize) -> Option<String> {
    let packet = publish_packet_len(topic, len);
    (packet > limit).then(|| {
        format!(
            "payload of {len} bytes makes a PUBLISH packet of {packet} bytes, above the client's \
             limit of {limit} bytes (max_payload + 4096)"
        )
    })
}

/// The packet size and limit when the event loop failed because rumqttc refused to write an
/// outgoing packet larger than its limit (`mqttbytes::Error::OutgoingPacketTooLarge`, wrapped
/// in `StateError::Deserialization` by the framed writer).
fn packet_too_large(e: &rumqttc::ConnectionError) -> Option<(usize, usize)> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::OutgoingPacketTooLarge { pkt_size, max },
        )) => Some((*pkt_size, *max)),
        _ => None,
    }
}

/// The size the broker claimed when rumqttc refused an incoming packet over its limit
/// (`mqttbytes::Error::PayloadSizeLimitExceeded`: it stops reading, the connection ends).
fn incoming_too_large(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// A topic from the broker as logs show it: escaped, at most 128 characters.
fn shown_topic(topic: &str) -> String {
    let cut: String = topic.chars().take(128).collect();
    let mut shown = crate::config::escape(&cut).into_owned();
    if cut.len() < topic.len() {
        shown.push('…');
    }
    shown
}

/// The next inbound PUBACK granted on this session (pending forever without an inbox).
async fn next_ack(rx: &mut Option<mpsc::UnboundedReceiver<AckReq>>) -> Option<AckReq> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The documented health message (docs/mqtt.md): no `seq`, retained.
pub(crate) fn health_json(
    gw: &str,
    now_ms: i64,
    last_seq: u64,
    dead_letters: u64,
    inflight: usize,
    link: &LinkStatus,
) -> serde_json::Value {
    serde_json::json!({
        "gw": gw,
        "t": crate::time::rfc3339_ms(now_ms),
        "last_seq": last_seq,
        "dead_letters": dead_letters,
        "inflight": inflight,
        "reconnects": link.reconnects,
        "session": link.session.to_json(),
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let mut b = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(8),
            fast: FAST_RETRY_WINDOW,
            attempt: 0,
            since: None,
        };
        // Within the first 30 s of an outage: every retry at `min` (jittered).
        for s in [0u64, 5, 29] {
            let d = b.next_after(Duration::from_secs(s)).as_millis();
            assert!((500..=1000).contains(&d), "{d} ms at {s} s into the outage");
        }
        // Then exponential towards `max`.
        let bounds = [
            (500, 1000),
            (1000, 2000),
            (2000, 4000),
            (4000, 8000),
            (4000, 8000),
        ];
        for (lo, hi) in bounds {
            let d = b.next_after(Duration::from_secs(60)).as_millis();
            assert!(d >= lo && d <= hi, "{d} not in {lo}..={hi}");
        }
        b.reset();
        assert!(b.next() <= Duration::from_secs(1));
        // With a modem (no fast window): exponential from the first retry, so an outage of
        // a minute costs a handful of radio wake-ups, not one per second.
        let mut m = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
            fast: Duration::ZERO,
            attempt: 0,
            since: None,
        };
        let mut t = Duration::ZERO;
        let mut attempts = 0;
        while t < Duration::from_secs(60) {
            t += m.next_after(t);
            attempts += 1;
        }
        assert!(attempts <= 12, "{attempts} attempts in a minute");
    }

    /// (topic, payload bytes, limit, refused?) around the client's limit.
    #[test]
    fn refusal_is_exactly_the_clients_limit() {
        let limit = max_packet(1024);
        assert_eq!(limit, 5120);
        let topic = "gasdtu/gw-1/alarm";
        // 1 + 2 (remaining length) + 2 + topic + 2 (packet id) + payload
        let fits = limit - (1 + 2 + 2 + topic.len() + 2);
        for (len, refused) in [
            (0, false),
            (1024, false),
            (fits, false),
            (fits + 1, true),
            (9_600, true),
        ] {
            let r = refusal_reason(topic, len, limit);
            assert_eq!(r.is_some(), refused, "{len}: {r:?}");
            if let Some(why) = r {
                assert!(why.contains(&format!("payload of {len} bytes")), "{why}");
                assert!(why.contains("limit of 5120 bytes"), "{why}");
            }
        }
    }

    #[test]
    fn packet_too_large_is_recognised_among_connection_errors() {
        use rumqttc::{mqttbytes, ConnectionError, StateError};
        let big = ConnectionError::MqttState(StateError::Deserialization(
            mqttbytes::Error::OutgoingPacketTooLarge {
                pkt_size: 9731,
                max: 5120,
            },
        ));
        assert_eq!(packet_too_large(&big), Some((9731, 5120)));
        for other in [
            ConnectionError::MqttState(StateError::Deserialization(
                mqttbytes::Error::PayloadSizeLimitExceeded(99),
            )),
            ConnectionError::MqttState(StateError::AwaitPingResp),
            ConnectionError::RequestsDone,
            ConnectionError::FlushTimeout,
        ] {
            assert_eq!(packet_too_large(&other), None, "{other}");
        }
    }

    #[test]
    fn health_carries_the_documented_fields_and_no_seq() {
        let h = health_json("gw-1", 1_764_000_000_123, 42, 2, 3, &LinkStatus::default());
        assert_eq!(h["gw"], "gw-1");
        assert_eq!(h["last_seq"], 42);
        assert_eq!(h["dead_letters"], 2);
        assert_eq!(h["inflight"], 3);
        assert_eq!(h["t"], "2025-11-24T16:00:00.123Z");
        assert!(h.get("seq").is_none(), "health consumes no sequence number");
    }

    #[test]
    fn bucket_limits_bytes_per_second() {
        let mut b = Bucket::new(100, 50);
        let t0 = b.at;
        assert!(b.take_at(100, t0).is_ok());
        let wait = b.take_at(50, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take_at(50, t0 + Duration::from_millis(499)).is_err());
        assert!(b.take_at(50, t0 + Duration::from_millis(500)).is_ok());
        // Larger than the bucket: passes when full, then the debt is paid.
        let t1 = t0 + Duration::from_secs(3);
        assert!(b.take_at(250, t1).is_ok());
        assert!(b.take_at(1, t1 + Duration::from_secs(1)).is_err());
        assert!(b.take_at(1, t1 + Duration::from_millis(1510)).is_ok());
    }
}
