//! The contract between the store (which owns the outbox in SQLite) and the forwarder (which
//! drains it to MQTT). Pure types and one trait; no I/O here. The store implements `Outbox`;
//! the forwarder is generic over it so its ack bookkeeping can be tested on its own.
//!
//! Life of an outbox entry: `pending` (committed with its batch, not yet in a message) →
//! `sealed` into a message that got the next sequence number (payload persisted, so a resend
//! after a disconnect is byte-identical and carries the same seq) → deleted by `ack` after the
//! broker's PUBACK for that message. Nothing leaves the outbox any other way, except eviction
//! by the size/age caps, which is counted and reported as an event, and as a dead letter: a
//! message the MQTT client refuses (too large, or it cannot be built) is set aside with its
//! sequence number and a `dead_letter` event, so one message can never block the queue.

use thiserror::Error;

use crate::model::SampleBatch;

/// What an entry carries, in priority order (declaration order: earlier sends first; the
/// derived `Ord` follows it). The stored code (`code`) is not the priority: codes 0/1/2 predate
/// replies, which got 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// An alarm transition (issue 4): always first, never evicted before data.
    Alarm,
    /// The answer to a remote request (issue 10): a command result on `<root>/cmd/res` or the
    /// config state on `<root>/config/state` (retained). After alarms, before events and data.
    Reply(ReplyTopic),
    /// A gateway event (restart, data loss, database moved aside, config applied).
    Event,
    /// A batch of readings.
    Data,
}

impl EntryKind {
    /// The code stored in `entry.kind`: 0 alarm, 1 event, 2 data, 3 reply (its topic is stored
    /// beside it, see `ReplyTopic::code`).
    pub fn code(self) -> i64 {
        match self {
            EntryKind::Alarm => 0,
            EntryKind::Event => 1,
            EntryKind::Data => 2,
            EntryKind::Reply(_) => 3,
        }
    }

    /// True when the message carrying this entry is published retained (the config state).
    pub fn retain(self) -> bool {
        matches!(self, EntryKind::Reply(t) if t.retain())
    }
}

/// Where a reply goes (under the gateway's topic root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplyTopic {
    /// `<root>/cmd/res`: one result per command, not retained.
    CmdRes,
    /// `<root>/config/state`: the running config and the last push's outcome, retained.
    ConfigState,
}

impl ReplyTopic {
    /// The topic below the root.
    pub fn suffix(self) -> &'static str {
        match self {
            ReplyTopic::CmdRes => "cmd/res",
            ReplyTopic::ConfigState => "config/state",
        }
    }

    /// Published retained (a new subscriber gets the last one from the broker).
    pub fn retain(self) -> bool {
        matches!(self, ReplyTopic::ConfigState)
    }

    /// The code stored in `entry.reply_topic`.
    pub fn code(self) -> i64 {
        match self {
            ReplyTopic::CmdRes => 0,
            ReplyTopic::ConfigState => 1,
        }
    }

    /// Inverse of `code` (`None` for a code this version does not know).
    pub fn from_code(code: i64) -> Option<ReplyTopic> {
        match code {
            0 => Some(ReplyTopic::CmdRes),
            1 => Some(ReplyTopic::ConfigState),
            _ => None,
        }
    }
}

/// The payload source of an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryBody {
    /// Readings of one device from one poll cycle, read times as read at the device.
    Batch(SampleBatch),
    /// An alarm or event object, already in its documented JSON form (without gateway id
    /// and sequence number, which the message envelope adds).
    Json(serde_json::Value),
}

/// One outbox entry handed to the forwarder.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub kind: EntryKind,
    /// True for data polled before the current uplink session began (backlog).
    pub historical: bool,
    /// When the entry was committed (UTC ms since the epoch).
    pub created_ms: i64,
    pub body: EntryBody,
}

/// A message whose sequence number and payload are persisted, waiting for its PUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    /// Full topic.
    pub topic: String,
    pub payload: Vec<u8>,
    /// Readings the message carries (for statistics).
    pub readings: u64,
    /// Published with the MQTT retain flag (a `config/state` reply); persisted with the
    /// message so a resend keeps it.
    pub retain: bool,
}

/// One message for `Outbox::seal_many`: its topic, the pending entries it carries and how many
/// readings they hold.
#[derive(Debug, Clone, Copy)]
pub struct SealRequest<'a> {
    pub topic: &'a str,
    pub entries: &'a [i64],
    pub readings: u64,
    /// The caller builds the payload from exactly these entries, each whole, nothing cut
    /// (`Packed::rebuildable`): the store may keep a recipe instead of the bytes.
    pub rebuildable: bool,
}

#[derive(Debug, Error)]
pub enum OutboxError {
    /// SQLite failed (disk full, I/O error, corruption found at run time).
    #[error("store: {0}")]
    Store(String),
    /// `seal` was given entries that are gone or already sealed.
    #[error("outbox entries not pending: {0:?}")]
    NotPending(Vec<i64>),
    /// The payload builder refused (e.g. a single entry larger than the payload limit).
    #[error("cannot build payload: {0}")]
    Build(String),
}

/// A message set aside because the MQTT client refused it (docs/mqtt.md, "Dead letters").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The sequence number the message had (or was given when it could not be built): a
    /// consumer sees a gap there, explained by the `dead_letter` event naming it.
    pub seq: u64,
    pub topic: String,
    /// Payload size in bytes (0 when it could not be built).
    pub bytes: u64,
    pub reason: String,
}

impl DeadLetter {
    /// The `dead_letter` event's JSON (the envelope adds gateway id and sequence number).
    pub fn event_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "dead_letter",
            "dead_seq": self.seq,
            "topic": self.topic,
            "bytes": self.bytes,
            "reason": self.reason,
        })
    }
}

/// Longest reason kept with a dead letter (characters).
pub const DEAD_LETTER_REASON_MAX: usize = 200;

/// The outbox as the forwarder sees it. Implementations must be safe to call from a blocking
/// thread (`tokio::task::spawn_blocking`); each method is one short SQLite transaction.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` pending (unsealed) entries in send order: alarms, then replies, then
    /// events, then data
    /// committed at or after `live_since_ms` newest first, then older data (the backlog,
    /// `historical = true`) oldest first. Entries whose read time is not yet trusted (clock
    /// not set) are held back.
    fn pending(&self, limit: usize, live_since_ms: i64) -> Result<Vec<Entry>, OutboxError>;

    /// In one transaction: take the next sequence number (above the persisted high-water mark,
    /// which never goes back, not even across a database replacement), call `build(seq)` for
    /// the payload, persist the message and bind `entries` to it. The message is retained when
    /// one of its entries is a retained reply (`EntryKind::retain`).
    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Sealed, OutboxError>;

    /// `seal` for several messages in ONE transaction (one fsync for all of them: flash
    /// wear), in order; `build(i, seq)` builds the payload of `reqs[i]`. Returns the messages
    /// sealed (a prefix of `reqs`, committed) and the error that stopped at the next one:
    /// `NotPending` or `Build` for that request (nothing of it sealed, no number consumed;
    /// the earlier ones stand), or `Store` (nothing sealed at all).
    fn seal_many(
        &self,
        reqs: &[SealRequest<'_>],
        build: &mut dyn FnMut(usize, u64) -> Result<Vec<u8>, String>,
    ) -> (Vec<Sealed>, Option<OutboxError>) {
        let mut out = Vec::with_capacity(reqs.len());
        for (i, q) in reqs.iter().enumerate() {
            match self.seal(q.topic, q.entries, q.readings, &mut |seq| build(i, seq)) {
                Ok(m) => out.push(m),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Sealed messages not yet acknowledged, by sequence number (resent after a reconnect).
    fn unacked(&self) -> Result<Vec<Sealed>, OutboxError>;

    /// The entries sealed message `seq` carries, in id order (empty once it was acknowledged
    /// or set aside): the Sparkplug forwarder derives its publishes from them at publish
    /// time. `historical` is false; the caller knows whether the message is backlog.
    fn entries_of(&self, seq: u64) -> Result<Vec<Entry>, OutboxError> {
        let _ = seq;
        Err(OutboxError::Store(
            "this outbox cannot read the entries of a sealed message".into(),
        ))
    }

    /// The broker acknowledged message `seq`: delete it and its entries (their batches stay
    /// as history until the history bound evicts them).
    fn ack(&self, seq: u64) -> Result<(), OutboxError>;

    /// `ack` for several messages at once. The store defers the write (flash wear): the
    /// messages leave `unacked()` and the live counters at once, and their rows are updated
    /// inside its next write transaction (a commit, a seal) or by `settle` after a bounded
    /// delay; after a crash they are resent with the same seq and payload (at least once).
    fn ack_many(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        for s in seqs {
            self.ack(*s)?;
        }
        Ok(())
    }

    /// `ack_many` without waiting (callable from an async task): the acknowledgements are
    /// noted in memory and recorded as `ack_many` would by the outbox's next use of its
    /// database (the next ingest commit, `unacked`, a seal, `settle` when the forwarder idles)
    /// or by `absorb_noted`; until then only its counters lag. `false` when this outbox cannot (or holds too many already):
    /// the caller then calls `ack_many` on a blocking thread. One blocking-pool hand-off and
    /// two wake-ups fewer per poll cycle (issue 13).
    fn note_acks(&self, seqs: &[u64]) -> bool {
        let _ = seqs;
        false
    }

    /// Record what `note_acks` kept now (a blocking call, like `ack_many`).
    fn absorb_noted(&self) -> Result<(), OutboxError> {
        Ok(())
    }

    /// Write acknowledgements the store deferred once they are old enough (the forwarder
    /// calls this when idle). Cheap when there is nothing to do.
    fn settle(&self) -> Result<(), OutboxError> {
        Ok(())
    }

    /// The client refused sealed message `seq`: in one transaction, set it aside as a dead
    /// letter (it keeps its seq; its entries leave the outbox as if acknowledged) and commit a
    /// `dead_letter` event. `Ok(None)` if `seq` is not an unacknowledged message (any more).
    fn dead_letter(&self, seq: u64, reason: &str) -> Result<Option<DeadLetter>, OutboxError> {
        let _ = (seq, reason);
        Err(OutboxError::Store(
            "this outbox cannot set dead letters aside".into(),
        ))
    }

    /// Pending `entries` could not become a message the client accepts (`build` failed or the
    /// result is too large): in one transaction, take the next sequence number for them, set
    /// them aside as a dead letter of `bytes` bytes and commit a `dead_letter` event.
    fn dead_letter_entries(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        bytes: u64,
        reason: &str,
    ) -> Result<DeadLetter, OutboxError> {
        let _ = (topic, entries, readings, bytes, reason);
        Err(OutboxError::Store(
            "this outbox cannot set dead letters aside".into(),
        ))
    }

    /// How many messages were set aside as dead letters (kept in the store).
    fn dead_letter_count(&self) -> Result<u64, OutboxError> {
        Ok(0)
    }

    /// The highest sequence number sealed so far (dead letters included).
    fn last_seq(&self) -> Result<u64, OutboxError> {
        Ok(0)
    }

    /// Stop sealing at ingest (`IngestSealer::disarm`) and hand over the messages the ingest
    /// commits sealed since the last call, in seq order. Under the outbox's own lock, so no
    /// ingest seal is under way when it returns: the caller may seal and publish itself.
    /// (`unacked` also empties the hand-over: it returns those messages too.)
    fn take_presealed(&self) -> Result<Vec<Sealed>, OutboxError> {
        Ok(Vec::new())
    }

    /// `take_presealed` without waiting (callable from an async task): `None` when the
    /// outbox's lock is busy (the caller then takes them on a blocking thread), else the
    /// messages and whether nothing is pending any more (the caller need not look: every
    /// commit wakes it again). One blocking-pool hand-off and one look less per poll cycle
    /// (issue 13).
    fn try_take_presealed(&self) -> Option<Result<(Vec<Sealed>, bool), OutboxError>> {
        None
    }
}

/// One message an ingest commit may seal (`IngestSealer::pack`): what a `SealRequest` says,
/// and the builder of its payload for the sequence number it gets.
pub struct PlannedSeal {
    pub topic: String,
    pub entries: Vec<i64>,
    pub readings: u64,
    /// `SealRequest::rebuildable`.
    pub rebuildable: bool,
    /// The payload for `seq`, or why the message cannot be sent as is (the ingest then seals
    /// nothing; the forwarder deals with it the old way).
    pub build: Box<dyn FnOnce(u64) -> Result<Vec<u8>, String> + Send>,
}

/// The forwarder's side of sealing inside the ingest commit (issue 13, docs/store.md "Flash
/// wear"): while the forwarder is connected and idle it arms the sealer; an ingest commit that
/// finds it armed packs one look of pending entries exactly as the forwarder would, seals them
/// in the same transaction and hands the sealed messages over. Every method is called under
/// the store's lock (`armed`/`pack`/`hand_over` from the commit, `disarm`/`take` from
/// `Outbox::take_presealed` and `unacked`) except `arm`, which the forwarder calls itself.
pub trait IngestSealer: Send + Sync {
    /// `Some(live_since_ms)` of the forwarder's session while armed.
    fn armed(&self) -> Option<i64>;
    /// No sealing at ingest until armed again.
    fn disarm(&self);
    /// The messages the forwarder would make of this look of `Outbox::pending`, in seal order.
    fn pack(&self, entries: &[Entry]) -> Vec<PlannedSeal>;
    /// Messages sealed by a committed ingest transaction (appended, in seq order).
    fn hand_over(&self, sealed: Vec<Sealed>);
    /// Take what was handed over.
    fn take(&self) -> Vec<Sealed>;
}
