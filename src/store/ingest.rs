//! The ingest commit (`Store::commit_all`): one transaction for the deferred acknowledgements,
//! the release of held rows, the batches (history, and pending in the outbox unless their read
//! time is not trusted yet), the alarm and event entries, the alarm states and, while the
//! forwarder's sealer is armed, the seal (`presealed`).
//!
//! Sealed as they are written (issue 13, CPU and flash): when the commit's batches will be
//! all that is pending (nothing else pending, no alarm or event in the commit) and the sealer
//! is armed, the rows get their ids before they are written (the ids SQLite would give them:
//! after the largest), the look is built from the batches in memory (`presealed::Fresh`), the
//! messages are sealed first, and each row is then written once, already bound to its message
//! (status sealed, `msg_seq`), instead of written pending, read back, decoded and updated: no
//! read-back, no row rewritten, the pending index never touched. Debug builds rebuild every
//! frozen payload from the written rows and compare (as `frozen::freeze` does). Otherwise
//! the rows are written pending and the seal (if armed) reads its look back.

use rusqlite::OptionalExtension;

use super::tx::Tx;

use super::blob::{self, RawSample};
use super::clock::{is_trusted, restamp_offset, ClockStamp, ClockState};
use super::presealed::{self, Fresh, FreshRow, Look};
use super::{
    alarm_state, deferred, entry_state, frozen, insert_json, release_held, CommitInfo, Inner,
    Store, StoreError,
};
use crate::alarm::AlarmWrites;
use crate::model::SampleBatch;
use crate::outbox::EntryKind;
use crate::time::unix_ms;

/// One batch's row, computed before it is written.
struct NewRow<'a> {
    batch: &'a SampleBatch,
    status: i64,
    created_ms: i64,
    /// Read time and slot with the clock offset applied.
    read_ms: i64,
    slot_ms: i64,
    offset_ms: i64,
    source: i64,
    clock: ClockState,
    boot: Option<&'a str>,
    base: Option<i64>,
    body: Vec<u8>,
}

/// Largest id the rows may be given from (a table this full lets SQLite choose).
const EXPLICIT_IDS_BELOW: i64 = i64::MAX - (1 << 32);

impl Store {
    pub(super) fn commit_locked(
        &self,
        g: &mut Inner,
        history: &[SampleBatch],
        batches: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        alarms: &AlarmWrites,
        stamp: &ClockStamp,
    ) -> Result<CommitInfo, StoreError> {
        let Inner {
            conn,
            dict,
            untrusted_base,
            held_rows,
            deferred,
            seq_hwm,
            reserved,
            sealer,
            ..
        } = g;
        let mut tx = Tx::immediate(conn).map_err(self.sql("begin commit"))?;
        let mut info = CommitInfo::default();
        let mut next = self.next_stats();
        // Acknowledgements ride along (one fsync for both) once enough wait (`RIPE_COUNT`).
        let acks = deferred.ripe(std::time::Instant::now());
        if acks {
            deferred::apply(&tx, deferred, &mut next).map_err(self.sql("deferred acks"))?;
        }

        // Base of the untrusted clock of this boot, for batches read before the clock was set
        // but committed after.
        let mut this_boot_untrusted = match untrusted_base {
            Some((b, base)) if *b == stamp.boot_id => Some(*base),
            _ => None,
        };
        if stamp.trusted() {
            if *held_rows {
                if this_boot_untrusted.is_none() {
                    this_boot_untrusted = tx
                        .query_row(
                            "SELECT clock_base FROM entry WHERE status = 3 AND boot_id = ?1 \
                             ORDER BY id DESC LIMIT 1",
                            [&*stamp.boot_id],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(self.sql("held clock base"))?;
                }
                info.released =
                    release_held(&tx, stamp, &mut next).map_err(self.sql("release held"))?;
                *held_rows = false;
            }
        } else {
            *untrusted_base = Some((stamp.boot_id.clone(), stamp.base()));
        }

        let all = batches
            .iter()
            .map(|b| (b, false))
            .chain(history.iter().map(|b| (b, true)));
        let mut rows = Vec::with_capacity(batches.len() + history.len());
        for (b, history_only) in all {
            let row = self.new_row(&tx, dict, b, history_only, stamp, this_boot_untrusted)?;
            if row.status == entry_state::HELD {
                info.held += 1;
                *held_rows = true;
            }
            rows.push(row);
        }

        // Sealed as they are written when they will be all that is pending (module doc).
        let armed = sealer.as_deref().filter(|s| s.armed().is_some());
        let fresh_ids = match armed {
            Some(_)
                if extra.is_empty()
                    && next.s.pending_entries == 0
                    && rows.iter().any(|r| r.status == entry_state::PENDING)
                    && !presealed::read_back_forced() =>
            {
                // Cached: parsing and compiling it every cycle was ~2 % of the daemon's CPU
                // on W1 (issue 13, perf).
                let max: i64 = tx
                    .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM entry")
                    .and_then(|mut st| st.query_row([], |r| r.get(0)))
                    .map_err(self.sql("largest entry id"))?;
                (0..=EXPLICIT_IDS_BELOW).contains(&max).then_some(max + 1)
            }
            _ => None,
        };
        let mut bound: Vec<Option<u64>> = vec![None; rows.len()];
        let mut fresh_sealed = Vec::new();
        if let (Some(first), Some(s)) = (fresh_ids, armed) {
            info.fresh_look = true;
            let fresh_rows: Vec<FreshRow> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == entry_state::PENDING)
                .map(|(i, r)| FreshRow {
                    id: first + i as i64,
                    created_ms: r.created_ms,
                    batch: i,
                    offset_ms: r.offset_ms,
                })
                .collect();
            let look = Look::Fresh(Fresh {
                batches,
                rows: &fresh_rows,
            });
            let pre = self.preseal(&mut tx, dict, *seq_hwm, reserved, s, look, &mut next);
            for (m, ids) in &pre.bound {
                for id in ids {
                    if let Some(slot) = usize::try_from(id - first)
                        .ok()
                        .and_then(|i| bound.get_mut(i))
                    {
                        *slot = Some(m.seq);
                    }
                }
            }
            fresh_sealed = pre.bound;
        }

        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO entry (id, kind, status, created_ms, read_ms, source, slot_ms, \
                     online, failed_cycles, readings, clock, boot_id, clock_base, msg_seq, body) \
                     VALUES (?1, 2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(self.sql("prepare insert"))?;
            for (i, (r, seq)) in rows.iter().zip(&bound).enumerate() {
                let id = fresh_ids.map(|first| first + i as i64);
                let status = match seq {
                    Some(_) => entry_state::SEALED,
                    None => r.status,
                };
                ins.execute(rusqlite::params![
                    id,
                    status,
                    r.created_ms,
                    r.read_ms,
                    r.source,
                    r.slot_ms,
                    r.batch.online,
                    r.batch.failed_cycles,
                    r.batch.samples.len() as i64,
                    r.clock as i64,
                    r.boot,
                    r.base,
                    seq.map(|q| q as i64),
                    r.body,
                ])
                .map_err(self.sql("insert batch"))?;
                // Counted as written pending, then sealed (as a seal after the write counts).
                next.insert_data(r.status, r.batch.samples.len() as u64, r.read_ms);
                info.entry_ids.push(tx.last_insert_rowid());
                info.readings += r.batch.samples.len() as u64;
            }
        }
        for (m, ids) in &fresh_sealed {
            next.seal(ids.len() as u64, m.seq);
        }
        if cfg!(debug_assertions) {
            for (m, _) in &fresh_sealed {
                self.check_rebuilt(&tx, dict, m);
            }
        }
        for (kind, json) in extra {
            let id =
                insert_json(&tx, *kind, json, stamp.wall_ms).map_err(self.sql("insert entry"))?;
            next.insert_json();
            info.entry_ids.push(id);
        }
        alarm_state::write(&tx, alarms).map_err(self.sql("alarm state"))?;
        // Not sealed as written: the forwarder waits, connected and idle: seal what it would
        // seal now, in this transaction (one fsync per cycle instead of two; a failed seal
        // keeps the readings).
        let presealed: Vec<_> = match (fresh_ids, sealer.as_deref()) {
            (Some(_), _) => fresh_sealed.into_iter().map(|(m, _)| m).collect(),
            (None, Some(s)) => {
                let pre = self.preseal(
                    &mut tx,
                    dict,
                    *seq_hwm,
                    reserved,
                    s,
                    Look::ReadBack,
                    &mut next,
                );
                pre.bound.into_iter().map(|(m, _)| m).collect()
            }
            (None, None) => Vec::new(),
        };
        tx.commit().map_err(self.sql("commit"))?;
        self.publish_stats(next);
        if acks {
            *deferred = Default::default();
        }
        if let (Some(s), Some(last)) = (sealer.as_deref(), presealed.last()) {
            *seq_hwm = last.seq;
            info.presealed = presealed.len();
            s.disarm();
            s.hand_over(presealed);
        }
        Ok(info)
    }

    /// Batch `b`'s row: dictionary ids, blob, status and clock (held while the read time is
    /// not trusted; re-stamped or estimated once it is; history-only rows delivered).
    fn new_row<'a>(
        &self,
        tx: &rusqlite::Connection,
        dict: &mut super::dict::Dict,
        b: &'a SampleBatch,
        history_only: bool,
        stamp: &'a ClockStamp,
        this_boot_untrusted: Option<i64>,
    ) -> Result<NewRow<'a>, StoreError> {
        let slot_ms = unix_ms(b.slot);
        let raw_read = b
            .samples
            .iter()
            .map(|s| unix_ms(s.read_at))
            .min()
            .unwrap_or(slot_ms);
        let src = dict
            .source_id(tx, &b.device, &b.bus)
            .map_err(self.sql("source dictionary"))?;
        let mut raw = Vec::with_capacity(b.samples.len());
        for s in &b.samples {
            let pid = dict
                .point_id(tx, src, &s.point, s.unit.as_ref(), s.value.as_ref())
                .map_err(self.sql("point dictionary"))?;
            raw.push(RawSample {
                point_id: pid,
                value: s.value.clone(),
                dt_ms: unix_ms(s.read_at) - raw_read,
                quality: s.quality.clone(),
            });
        }
        let body = blob::encode(&raw);
        // (status, clock, offset, boot, base, created)
        let (st, clock, off, boot, base, created): (i64, ClockState, i64, _, _, i64) =
            if is_trusted(raw_read) {
                let created = if stamp.trusted() {
                    stamp.wall_ms
                } else {
                    raw_read
                };
                (
                    entry_state::PENDING,
                    ClockState::Trusted,
                    0,
                    None,
                    None,
                    created,
                )
            } else if stamp.trusted() {
                match this_boot_untrusted {
                    Some(ub) => (
                        entry_state::PENDING,
                        ClockState::Restamped,
                        restamp_offset(ub, stamp.base()),
                        None,
                        None,
                        stamp.wall_ms,
                    ),
                    // No untrusted stamp of this boot known: place it at the commit.
                    None => (
                        entry_state::PENDING,
                        ClockState::Estimated,
                        stamp.wall_ms - raw_read,
                        None,
                        None,
                        stamp.wall_ms,
                    ),
                }
            } else {
                (
                    entry_state::HELD,
                    ClockState::Held,
                    0,
                    Some(&*stamp.boot_id),
                    Some(stamp.base()),
                    stamp.wall_ms,
                )
            };
        // History-only rows are never sent (held ones are the documented edge).
        let status = if history_only && st == entry_state::PENDING {
            entry_state::DELIVERED
        } else {
            st
        };
        Ok(NewRow {
            batch: b,
            status,
            created_ms: created,
            read_ms: raw_read + off,
            slot_ms: slot_ms + off,
            offset_ms: off,
            source: src,
            clock,
            boot,
            base,
            body,
        })
    }

    /// Debug builds: a message sealed before its rows were written, frozen, rebuilds from
    /// them byte for byte (what `frozen::freeze` checks for a message sealed after).
    fn check_rebuilt(
        &self,
        tx: &rusqlite::Connection,
        dict: &mut super::dict::Dict,
        m: &crate::outbox::Sealed,
    ) {
        let recipe: Option<(i64, Option<String>)> = match tx
            .query_row(
                "SELECT recipe, gw FROM message WHERE seq = ?1",
                [m.seq as i64],
                |r| {
                    Ok(r.get::<_, Option<i64>>(0)?
                        .map(|c| (c, r.get(1).ok().flatten())))
                },
            )
            .optional()
        {
            Ok(r) => r.flatten(),
            Err(e) => {
                tracing::debug!(seq = m.seq, error = %e, "rebuild not checked");
                return;
            }
        };
        if recipe.is_none() {
            return;
        }
        match frozen::payload_of(tx, dict, &self.path, m.seq, Vec::new(), recipe) {
            Ok(b) => assert!(
                b == m.payload,
                "message {}: sealed before its rows, its rows rebuild other bytes",
                m.seq
            ),
            Err(e @ StoreError::Sqlite { .. }) => {
                tracing::debug!(seq = m.seq, error = %e, "rebuild not checked");
            }
            Err(e) => panic!("message {}: sealed before its rows, but {e}", m.seq),
        }
    }
}
