//! Benchmark: `Store::stats()` on a large store, before and after the O(1) counters. Fills a
//! database on disk (cargo's target tmp dir) with one million readings (20 devices x 10 points
//! per commit, as the daemon commits), then times `stats_scan()` (the full scan `stats()` was
//! before: what the watchdog and the status socket paid every few seconds) against `stats()`
//! (live counters, no SQLite call), also while another thread commits, and the cost the
//! counters add to a drain (seal + ack of 1000 messages of 20 batches each).
//! Results go to stdout and bench-results/store_stats.txt.
//!
//! Run with `cargo bench --bench store_stats` (STATS_READINGS=N to change the size).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gasdtu::config::StoreConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::outbox::Outbox;
use gasdtu::store::{ClockStamp, Store, MIN_TRUSTED_UNIX_MS};
use gasdtu::time::from_unix_ms;

const DEVICES: usize = 20;
const POINTS: usize = 10;
const T0: i64 = MIN_TRUSTED_UNIX_MS + 300 * 86_400_000;

fn cycle(t: i64) -> Vec<SampleBatch> {
    (0..DEVICES)
        .map(|d| SampleBatch {
            device: format!("meter{d:02}").into(),
            bus: "bus1".into(),
            slot: from_unix_ms(t),
            samples: (0..POINTS)
                .map(|p| Sample {
                    point: format!("p{p}").into(),
                    value: Some(Value::Float(p as f64 * 1.5 + (t % 1000) as f64)),
                    unit: Some(Arc::from("m3/h")),
                    quality: Quality::Good,
                    read_at: from_unix_ms(t),
                })
                .collect(),
            online: true,
            failed_cycles: 0,
        })
        .collect()
}

fn stamp(t: i64) -> ClockStamp {
    ClockStamp {
        wall_ms: t,
        mono_ms: 1_000_000,
        boot_id: "bench".into(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let readings: usize = std::env::var("STATS_READINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::Builder::new()
        .prefix("store-stats")
        .tempdir_in(base)
        .expect("temp dir");
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).expect("open store");
    let store = Arc::new(store);
    let cycles = readings / (DEVICES * POINTS);
    let start = Instant::now();
    for c in 0..cycles {
        let t = T0 + c as i64 * 1000;
        store.commit(&cycle(t), &[], &stamp(t)).expect("commit");
    }
    let fill = start.elapsed();
    let mut out = String::new();
    let mut line = |s: String| {
        println!("{s}");
        let _ = writeln!(out, "{s}");
    };
    line(format!(
        "store_stats: {readings} readings in {cycles} commits ({:.1} s), {:.1} MiB on disk",
        fill.as_secs_f64(),
        store.stats().expect("stats").bytes_on_disk as f64 / 1048576.0
    ));

    let scans: Vec<Duration> = (0..5)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(store.stats_scan().expect("scan"));
            s.elapsed()
        })
        .collect();
    let lives: Vec<Duration> = (0..10_000)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(store.stats().expect("stats"));
            s.elapsed()
        })
        .collect();
    assert_eq!(
        store.stats().expect("stats"),
        store.stats_scan().expect("scan")
    );
    line(format!(
        "before (full scan, stats_scan): median {:.2} ms, max {:.2} ms (5 calls)",
        median(scans.clone()).as_secs_f64() * 1e3,
        scans
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    ));
    line(format!(
        "after (live counters, stats): median {:.2} us, max {:.2} us (10 000 calls)",
        median(lives.clone()).as_secs_f64() * 1e6,
        lives
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6
    ));

    // stats() while another thread commits (it never waits behind the connection's lock).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = cycles;
            while !stop.load(Ordering::Relaxed) {
                let t = T0 + c as i64 * 1000;
                store.commit(&cycle(t), &[], &stamp(t)).expect("commit");
                c += 1;
            }
            c - cycles
        })
    };
    let mut during = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let s = Instant::now();
        std::hint::black_box(store.stats().expect("stats"));
        during.push(s.elapsed());
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().expect("writer");
    line(format!(
        "stats() during {commits} concurrent commits: median {:.2} us, max {:.2} us ({} calls)",
        median(during.clone()).as_secs_f64() * 1e6,
        during
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6,
        during.len()
    ));

    // Drain cost with the counters: seal + ack 1000 messages of 20 backlog batches each.
    let start = Instant::now();
    let mut acked = 0;
    for _ in 0..1000 {
        let entries = store.pending(DEVICES, 0).expect("pending");
        if entries.is_empty() {
            break;
        }
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        let m = store
            .seal("t", &ids, 0, &mut |_| Ok(vec![0; 64]))
            .expect("seal");
        store.ack(m.seq).expect("ack");
        acked += 1;
    }
    let drain = start.elapsed();
    assert_eq!(
        store.stats().expect("stats"),
        store.stats_scan().expect("scan")
    );
    line(format!(
        "drain oldest first: {acked} x (pending + seal + ack): {:.2} ms per message",
        drain.as_secs_f64() * 1e3 / acked.max(1) as f64
    ));
    let _ = std::fs::create_dir_all("bench-results");
    if let Err(e) = std::fs::write("bench-results/store_stats.txt", &out) {
        eprintln!("cannot write bench-results/store_stats.txt: {e}");
    }
}
