//! Packing entries into messages (`encode_messages`): which entries go together, in order, each
//! message at most `max_payload` bytes. The rule is greedy: a data batch joins the message
//! under way while the message with it still fits, else it starts the next one (split by
//! samples when it does not fit alone). Sizes are measured by building the message
//! (`Packed::worst_len`), the costly part: measuring every prefix made a message of n batches
//! cost n builds of up to n batches (issue 13, bench-results/cpu_round5.txt). Here a run of
//! consecutive batches is first packed whole and measured once; only when that does not fit is
//! the run packed batch by batch as before. Adding a batch does not make a message smaller, so
//! when the whole run fits every prefix fits and the messages are the ones the batch-by-batch
//! rule makes (pinned by `pack_tests`). The one exception is format 2's schema table: a batch
//! that gives a device the same points as another device merges two schemas and can shrink the
//! message; then the whole run may keep a batch the batch-by-batch rule would have moved to the
//! next message, still within the limit (the forwarder and the ingest seal both pack here, so
//! they agree). Pure: no I/O.

use super::{fit_json, Body, Packed, Wire};
use crate::config::{Encoding, PayloadFormat};
use crate::outbox::{Entry, EntryBody};

/// Pack entries (in send order) into messages of at most `max_payload` bytes. Data batches
/// are combined while they fit; a batch larger than the limit is split by samples (never
/// dropped); a single sample that alone exceeds the limit still gets its own message. An
/// alarm/event that exceeds the limit is cut to fit (`fit_json`). Live and historical data
/// never share a message. Order is preserved. `wire`: an `Encoding` (format 1) or
/// `(Encoding, PayloadFormat)`.
pub fn encode_messages(
    entries: &[Entry],
    gateway: &str,
    max_payload: usize,
    wire: impl Into<Wire>,
) -> Vec<Packed> {
    pack(entries, gateway, max_payload, wire.into(), true)
}

/// `encode_messages`; `whole_runs` false measures every batch (the reference the tests pin
/// the fast path to).
pub(super) fn pack(
    entries: &[Entry],
    gateway: &str,
    max_payload: usize,
    wire: Wire,
    whole_runs: bool,
) -> Vec<Packed> {
    let mut p = Packer {
        gateway,
        max_payload,
        wire,
        out: Vec::new(),
        cur: None,
    };
    let mut i = 0;
    while i < entries.len() {
        let run = if whole_runs {
            batch_run(&entries[i..])
        } else {
            0
        };
        if run > 1 && p.whole_run(&entries[i..i + run]) {
            i += run;
            continue;
        }
        // One entry at a time; a run that did not fit whole goes batch by batch.
        for e in &entries[i..i + run.max(1)] {
            p.step(e);
        }
        i += run.max(1);
    }
    p.out.extend(p.cur);
    p.out
}

/// How many entries from the first are data batches of the same kind (live or backlog).
fn batch_run(entries: &[Entry]) -> usize {
    let Some(first) = entries.first() else {
        return 0;
    };
    if !matches!(first.body, EntryBody::Batch(_)) {
        return 0;
    }
    entries
        .iter()
        .take_while(|e| matches!(e.body, EntryBody::Batch(_)) && e.historical == first.historical)
        .count()
}

struct Packer<'a> {
    gateway: &'a str,
    max_payload: usize,
    wire: Wire,
    out: Vec<Packed>,
    cur: Option<Packed>,
}

impl Packer<'_> {
    /// Add a run of batches (same `historical`) to the message under way in one go when the
    /// result fits, measured once. False (nothing changed) when it does not.
    fn whole_run(&mut self, run: &[Entry]) -> bool {
        let Some(historical) = run.first().map(|e| e.historical) else {
            return true;
        };
        let mut m = match &self.cur {
            Some(c) if c.historical() == Some(historical) => c.clone(),
            _ => Packed::data(historical, self.wire),
        };
        for e in run {
            if let EntryBody::Batch(b) = &e.body {
                m.add_batch(b);
                m.entries.push(e.id);
            }
        }
        if m.worst_len(self.gateway) > self.max_payload {
            return false;
        }
        if self.cur.as_ref().and_then(Packed::historical) != Some(historical) {
            self.out.extend(self.cur.take());
        }
        self.cur = Some(m);
        true
    }

    /// The batch-by-batch rule for one entry.
    fn step(&mut self, e: &Entry) {
        let (gateway, max_payload, wire) = (self.gateway, self.max_payload, self.wire);
        match &e.body {
            EntryBody::Json(v) => {
                self.out.extend(self.cur.take());
                self.out.push(Packed {
                    kind: e.kind,
                    entries: vec![e.id],
                    readings: 0,
                    encoding: Encoding::Json,
                    format: PayloadFormat::V1,
                    body: Body::Json(fit_json(v, gateway, max_payload)),
                });
            }
            EntryBody::Batch(b) => {
                if self.cur.as_ref().and_then(Packed::historical) != Some(e.historical) {
                    self.out.extend(self.cur.take());
                }
                let base = self
                    .cur
                    .take()
                    .unwrap_or_else(|| Packed::data(e.historical, wire));
                let mut whole = base.clone();
                whole.add_batch(b);
                if whole.worst_len(gateway) <= max_payload {
                    whole.entries.push(e.id);
                    self.cur = Some(whole);
                    return;
                }
                // Does not fit with what is there: start afresh, splitting if needed.
                let mut m = if base.is_empty() {
                    base
                } else {
                    self.out.push(base);
                    Packed::data(e.historical, wire)
                };
                for s in &b.samples {
                    let mut next = m.clone();
                    next.add_sample(&b.device, s);
                    if next.worst_len(gateway) <= max_payload || m.is_empty() {
                        m = next;
                    } else {
                        self.out.push(m);
                        m = Packed::data(e.historical, wire);
                        m.add_sample(&b.device, s);
                    }
                }
                m.entries.push(e.id);
                self.cur = Some(m);
            }
        }
    }
}
