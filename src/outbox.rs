//! The contract between the store (which owns the outbox in SQLite) and the forwarder (which
//! drains it to MQTT). Pure types and one trait; no I/O here. The store implements `Outbox`;
//! the forwarder is generic over it so its ack bookkeeping can be tested on its own.
//!
//! Life of an outbox entry: `pending` (committed with its batch, not yet in a message) →
//! `sealed` into a message that got the next sequence number (payload persisted, so a resend
//! after a disconnect is byte-identical and carries the same seq) → deleted by `ack` after the
//! broker's PUBACK for that message. Nothing leaves the outbox any other way, except eviction
//! by the size/age caps, which is counted and reported as an event.

use thiserror::Error;

use crate::model::SampleBatch;

/// What an entry carries, in priority order (lower sends first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// An alarm transition (issue 4): always first, never evicted before data.
    Alarm = 0,
    /// A gateway event (restart, data loss, database moved aside, config applied).
    Event = 1,
    /// A batch of readings.
    Data = 2,
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

/// The outbox as the forwarder sees it. Implementations must be safe to call from a blocking
/// thread (`tokio::task::spawn_blocking`); each method is one short SQLite transaction.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` pending (unsealed) entries in send order: alarms, then events, then data
    /// committed at or after `live_since_ms` newest first, then older data (the backlog,
    /// `historical = true`) oldest first. Entries whose read time is not yet trusted (clock
    /// not set) are held back.
    fn pending(&self, limit: usize, live_since_ms: i64) -> Result<Vec<Entry>, OutboxError>;

    /// In one transaction: take the next sequence number (above the persisted high-water mark,
    /// which never goes back, not even across a database replacement), call `build(seq)` for
    /// the payload, persist the message and bind `entries` to it.
    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Sealed, OutboxError>;

    /// Sealed messages not yet acknowledged, by sequence number (resent after a reconnect).
    fn unacked(&self) -> Result<Vec<Sealed>, OutboxError>;

    /// The broker acknowledged message `seq`: delete it and its entries (their batches stay
    /// as history until the history bound evicts them).
    fn ack(&self, seq: u64) -> Result<(), OutboxError>;

    /// `ack` for several messages at once; the store does it in ONE transaction (one fsync
    /// for all the PUBACKs that arrived together, instead of one each: flash wear).
    fn ack_many(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        for s in seqs {
            self.ack(*s)?;
        }
        Ok(())
    }
}
