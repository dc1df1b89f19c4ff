//! Packing entries into messages (`encode_messages`): which entries go together, in order, each
//! message at most `max_payload` bytes. The rule is greedy: a data batch joins the message
//! under way while the message with it still fits, else it starts the next one (split by
//! samples when it does not fit alone). Sizes are measured by building the message
//! (`Packed::worst_len`), the costly part: measuring every prefix made a message of n batches
//! cost n + 1 builds of up to n + 1 batches, and each batch that started a message one build
//! per sample (issue 13, bench-results/cpu_round5.txt). Here, for a run of consecutive batches,
//! the number of batches the message takes is guessed (all of them, or as many as the last
//! message took) and only checked: it fits and one more does not. A batch that starts a message
//! is tried whole before it is split by samples. Adding a batch or a sample does not make a
//! message smaller, so the messages are the ones the one-by-one rule makes (pinned by
//! `pack_tests`). The one exception is format 2's schema table: a batch that gives a device the
//! same points as another device merges two schemas and can shrink the message; then a message
//! may keep a batch the one-by-one rule would have moved to the next message, still within the
//! limit (the forwarder and the ingest seal both pack here, so they agree). Each batch of a
//! run is made into its device groups once (`Alone`) and copied into every candidate, so a
//! device object is written once and only measured after (issue 13). Pure: no I/O.

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
    pack(entries, gateway, max_payload, wire.into(), true, &mut None)
}

/// `encode_messages` with a guess carried from one call to the next: `hint` is how many
/// batches a message took the last time a run of batches did not fit in one (`None` at
/// first), and becomes this call's. A caller that packs the same kind of entries again and
/// again (the ingest seal: one poll cycle each time) then measures from where the last call
/// ended instead of from the whole run. The messages are the same with any hint (within the
/// limit either way where format 2's schema exception above applies).
pub fn encode_messages_hinted(
    entries: &[Entry],
    gateway: &str,
    max_payload: usize,
    wire: impl Into<Wire>,
    hint: &mut Option<usize>,
) -> Vec<Packed> {
    pack(entries, gateway, max_payload, wire.into(), true, hint)
}

/// `encode_messages`; `whole_runs` false measures every batch and sample one by one (the
/// reference the tests pin the fast path to).
pub(super) fn pack(
    entries: &[Entry],
    gateway: &str,
    max_payload: usize,
    wire: Wire,
    whole_runs: bool,
    hint: &mut Option<usize>,
) -> Vec<Packed> {
    let mut p = Packer {
        gateway,
        max_payload,
        wire,
        whole_runs,
        out: Vec::new(),
        cur: None,
        last_take: *hint,
    };
    let mut i = 0;
    while i < entries.len() {
        let run = if whole_runs {
            batch_run(&entries[i..])
        } else {
            0
        };
        if run > 0 {
            p.run(&entries[i..i + run]);
            i += run;
        } else {
            p.step(&entries[i]);
            i += 1;
        }
    }
    *hint = p.last_take;
    p.out.extend(p.cur);
    mark_rebuildable(&mut p.out, entries);
    p.out
}

/// A data message is rebuildable when it carries exactly the samples of the entries bound to
/// it: no part of a batch split over several messages (the message holding the first part
/// carries more readings than its bound entries, the one the split entry is bound to fewer).
/// Whole batches in send order pack into the same message again when nothing limits the size.
fn mark_rebuildable(out: &mut [Packed], entries: &[Entry]) {
    let samples: std::collections::HashMap<i64, usize> = entries
        .iter()
        .filter_map(|e| match &e.body {
            EntryBody::Batch(b) => Some((e.id, b.samples.len())),
            EntryBody::Json(_) => None,
        })
        .collect();
    for m in out {
        if m.historical().is_none() {
            continue; // alarm/event/reply: decided when it was cut (or not)
        }
        let bound = m
            .entries
            .iter()
            .map(|id| samples.get(id).copied())
            .sum::<Option<usize>>();
        m.rebuildable = !m.entries.is_empty() && bound == Some(m.readings as usize);
    }
}

/// Of `k` batches that measured `len` bytes on top of a message of `base` bytes, how many fit
/// in `max` if each takes the same share (at most `k - 1`: all `k` did not fit).
fn proportional(base: usize, len: usize, k: usize, max: usize) -> usize {
    let per_batch = len.saturating_sub(base).max(1) as u128;
    let room = max.saturating_sub(base) as u128;
    let est = room * k as u128 / per_batch;
    usize::try_from(est)
        .unwrap_or(usize::MAX)
        .min(k.saturating_sub(1))
}

/// Each batch of a run as the device groups it makes alone (`groups_alone`), made the first
/// time the batch is tried and copied into every candidate message after: a candidate's
/// groups then keep their written JSON instead of being written again per candidate.
struct Alone<'e> {
    run: &'e [Entry],
    wire: Wire,
    groups: Vec<Option<Vec<super::DeviceGroup>>>,
}

impl<'e> Alone<'e> {
    fn new(run: &'e [Entry], wire: Wire) -> Self {
        Alone {
            run,
            wire,
            groups: vec![None; run.len()],
        }
    }

    /// Entry `i` of the run into `m`: its batch and its id.
    fn add(&mut self, m: &mut Packed, i: usize) {
        let (Some(e), Some(slot)) = (self.run.get(i), self.groups.get_mut(i)) else {
            return;
        };
        if let EntryBody::Batch(b) = &e.body {
            let alone = slot.get_or_insert_with(|| super::groups_alone(b, self.wire));
            m.add_batch_alone(b, alone);
            m.entries.push(e.id);
        }
    }
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
    /// Batches and samples tried whole first (false: one by one, the reference).
    whole_runs: bool,
    out: Vec<Packed>,
    cur: Option<Packed>,
    /// Entries the last message closed in a run held: the next guess.
    last_take: Option<usize>,
}

impl Packer<'_> {
    fn fits(&self, m: &Packed) -> bool {
        m.worst_len(self.gateway) <= self.max_payload
    }

    /// A run of batches of the same kind (live or backlog), as the one-by-one rule packs them.
    fn run(&mut self, run: &[Entry]) {
        let Some(historical) = run.first().map(|e| e.historical) else {
            return;
        };
        if self.cur.as_ref().and_then(Packed::historical) != Some(historical) {
            self.out.extend(self.cur.take());
        }
        let mut alone = Alone::new(run, self.wire);
        let mut i = 0;
        while i < run.len() {
            let base = self
                .cur
                .take()
                .unwrap_or_else(|| Packed::data(historical, self.wire));
            let rest = &run[i..];
            let with = |k: usize, alone: &mut Alone| {
                let mut m = base.clone();
                for j in i..i + k {
                    alone.add(&mut m, j);
                }
                m
            };
            // The most batches of `rest` that fit with `base` (none: nothing to check), from a
            // guess (all of them, or what the last message of this run took): up while one
            // more fits, down while it does not.
            let had = base.entries.len();
            let guess = match self.last_take {
                Some(t) if t > had => t - had,
                _ => rest.len(),
            };
            let mut k = guess.clamp(1, rest.len());
            let mut m = with(k, &mut alone);
            let len = m.worst_len(self.gateway);
            let mut fits = len <= self.max_payload;
            if !fits {
                // Too many (the whole run, or the guess): as many batches as the room left
                // would hold if each took the same share of what the `k` measured (batches of
                // one poll cycle are alike), then walk from there. A guess carried over from
                // another call can be far off; this keeps the walk short either way.
                k = proportional(base.worst_len(self.gateway), len, k, self.max_payload);
                m = with(k, &mut alone);
                fits = k == 0 || self.fits(&m);
            }
            if fits {
                while k < rest.len() {
                    // One batch more on top of what fits (not all of them again from `base`).
                    let mut more = m.clone();
                    alone.add(&mut more, i + k);
                    if !self.fits(&more) {
                        break;
                    }
                    k += 1;
                    m = more;
                }
            } else {
                loop {
                    k -= 1;
                    m = with(k, &mut alone);
                    if k == 0 || self.fits(&m) {
                        break;
                    }
                }
            }
            i += k;
            if i == run.len() {
                self.cur = Some(m);
                break;
            }
            // `run[i]` does not fit with what is there: it starts the next message.
            self.last_take = Some(m.entries.len());
            if let EntryBody::Batch(b) = &run[i].body {
                self.start_afresh(m, &run[i], b);
            }
            i += 1;
        }
    }

    /// The one-by-one rule for one entry.
    fn step(&mut self, e: &Entry) {
        match &e.body {
            EntryBody::Json(v) => {
                self.out.extend(self.cur.take());
                let fitted = fit_json(v, self.gateway, self.max_payload);
                self.out.push(Packed {
                    kind: e.kind,
                    entries: vec![e.id],
                    readings: 0,
                    // Cut to fit: no longer what the entry rebuilds.
                    rebuildable: fitted == *v,
                    encoding: Encoding::Json,
                    format: PayloadFormat::V1,
                    body: Body::Json(fitted),
                });
            }
            EntryBody::Batch(b) => {
                if self.cur.as_ref().and_then(Packed::historical) != Some(e.historical) {
                    self.out.extend(self.cur.take());
                }
                let base = self
                    .cur
                    .take()
                    .unwrap_or_else(|| Packed::data(e.historical, self.wire));
                let mut whole = base.clone();
                whole.add_batch(b);
                if self.fits(&whole) {
                    whole.entries.push(e.id);
                    self.cur = Some(whole);
                    return;
                }
                self.start_afresh(base, e, b);
            }
        }
    }

    /// Batch `b` of entry `e` does not fit with `base` (the message under way, of the same
    /// kind): `base` goes out unless empty, `b` starts the next message, split by samples if
    /// it does not fit alone.
    fn start_afresh(&mut self, base: Packed, e: &Entry, b: &crate::model::SampleBatch) {
        let mut m = if base.is_empty() {
            base
        } else {
            self.out.push(base);
            Packed::data(e.historical, self.wire)
        };
        let mut alone = None;
        if self.whole_runs && m.is_empty() {
            let mut whole = m.clone();
            whole.add_batch(b);
            if self.fits(&whole) {
                alone = Some(whole);
            }
        }
        match alone {
            Some(whole) => m = whole,
            None => {
                for s in &b.samples {
                    let mut next = m.clone();
                    next.add_sample(&b.device, s);
                    if self.fits(&next) || m.is_empty() {
                        m = next;
                    } else {
                        self.out.push(m);
                        m = Packed::data(e.historical, self.wire);
                        m.add_sample(&b.device, s);
                    }
                }
            }
        }
        m.entries.push(e.id);
        self.cur = Some(m);
    }
}
