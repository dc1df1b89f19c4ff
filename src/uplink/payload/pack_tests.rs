//! The packer's fast path (a run of batches measured once, `pack::pack` with `whole_runs`)
//! makes the same messages as the batch-by-batch rule: every wire, limits from "one sample
//! per message" to "everything in one", live and backlog batches, alarms and events between
//! them, devices with and without bad readings.

use serde_json::json;

use super::pack::pack;
use super::tests::{badq, batch, device, T0, WIRES};
use super::*;
use crate::model::BadReason;
use crate::outbox::{Entry, EntryBody};

/// A W1-like cycle stream: `cycles` x `devices` batches of 10 points (the device's read times
/// a second apart per cycle), an alarm after the first cycle, the second half backlog.
fn stream(cycles: usize, devices: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut id = 0;
    for c in 0..cycles {
        for d in 0..devices {
            id += 1;
            let t = T0 + c as u64 * 1000 + d as u64 * 3;
            let mut e = device(id, &format!("dev{d:02}"), 10, t);
            e.historical = c >= cycles / 2;
            out.push(e);
        }
        if c == 0 {
            id += 1;
            out.push(Entry {
                id,
                kind: EntryKind::Alarm,
                historical: false,
                created_ms: T0 as i64,
                body: EntryBody::Json(json!({"alarm": "hi", "value": 5.5})),
            });
        }
        if c == 1 {
            id += 1;
            out.push(batch(
                id,
                "dev00",
                vec![badq("pressure", BadReason::Timeout, Some("kPa"), T0 + 1500)],
                false,
            ));
        }
    }
    out
}

#[test]
fn whole_runs_pack_exactly_as_batch_by_batch() {
    let entries = stream(4, 20);
    for wire in WIRES {
        let mut limits = vec![1, 120, 300, 600, 1000, 1500, 2500, 4000, 6000, 9000];
        limits.push(1 << 20);
        for limit in limits {
            let fast = pack(&entries, "gw-1", limit, wire, true, &mut None);
            let each = pack(&entries, "gw-1", limit, wire, false, &mut None);
            assert_eq!(fast, each, "{wire:?} limit {limit}");
            // A guess carried over from an earlier call, right or far off, changes nothing;
            // the hint becomes what this call's messages took.
            for start in [Some(1), Some(3), Some(17), Some(1000)] {
                let mut hint = start;
                let hinted = pack(&entries, "gw-1", limit, wire, true, &mut hint);
                assert_eq!(hinted, fast, "{wire:?} limit {limit} hint {start:?}");
                let mut fresh = None;
                pack(&entries, "gw-1", limit, wire, true, &mut fresh);
                if fresh.is_some() {
                    assert_eq!(hint, fresh, "{wire:?} limit {limit} hint {start:?}");
                }
            }
            // Groups copied between candidates keep JSON that is still theirs.
            for m in &fast {
                if let Some((historical, devices)) = m.json1_data() {
                    let want = json1::whole("gw-1", 9, historical, devices).unwrap();
                    assert_eq!(m.build("gw-1", 9).unwrap(), want, "{wire:?} limit {limit}");
                }
            }
            // And they are real messages within the limit (or a lone sample over it).
            let bound: Vec<i64> = fast.iter().flat_map(|m| m.entries.clone()).collect();
            let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
            assert_eq!(bound, ids, "{wire:?} limit {limit}");
        }
    }
}

#[test]
fn a_live_cycle_is_one_message_when_it_fits() {
    // The W1 case the fast path is for: one cycle of 20 devices, all live, one message.
    let entries = stream(1, 20)
        .into_iter()
        .filter(|e| matches!(e.body, EntryBody::Batch(_)))
        .collect::<Vec<_>>();
    for wire in WIRES {
        let msgs = encode_messages(&entries, "gw-1", 1 << 20, wire);
        assert_eq!(msgs.len(), 1, "{wire:?}");
        assert_eq!(msgs[0].readings, 200, "{wire:?}");
        assert_eq!(
            msgs,
            pack(&entries, "gw-1", 1 << 20, wire, false, &mut None)
        );
    }
}

#[test]
fn a_message_is_rebuildable_exactly_when_its_entries_alone_pack_into_it_again() {
    // What the store relies on to keep a recipe instead of the bytes (store::frozen): packing
    // the entries bound to a message, with no limit, gives that message back. Split batches
    // (small limits) and alarms cut to fit are not rebuildable; whole ones are.
    let entries = stream(3, 20);
    for wire in WIRES {
        let (mut yes, mut no) = (0, 0);
        for limit in [1, 120, 300, 1000, 4000, 1 << 20] {
            for m in pack(&entries, "gw-1", limit, wire, true, &mut None) {
                let own: Vec<Entry> = m
                    .entries
                    .iter()
                    .filter_map(|id| entries.iter().find(|e| e.id == *id).cloned())
                    .collect();
                let again = pack(&own, "gw-1", usize::MAX, wire, true, &mut None);
                let same = again.len() == 1 && again[0] == m;
                assert_eq!(
                    m.rebuildable, same,
                    "{wire:?} limit {limit}: {:?}",
                    m.entries
                );
                if m.rebuildable {
                    yes += 1;
                } else {
                    no += 1;
                }
            }
        }
        assert!(yes > 0 && no > 0, "{wire:?}: {yes} rebuildable, {no} not");
    }
}
