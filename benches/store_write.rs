//! Benchmark: what the store costs the flash and how fast it commits. Commits the standard
//! workload (20 devices x 10 points per poll cycle) to a temporary database on disk (under
//! cargo's target tmp dir, not tmpfs) and reads /proc/self/io before and after: `write_bytes`
//! (bytes this process caused to be sent to the block layer, i.e. what the flash sees, before
//! any FTL write amplification) and `wchar` (bytes handed to write(2)). Scenarios: one commit
//! per poll cycle (how the daemon commits), one commit per device batch, and the full life of
//! a reading (commit, seal into ~1 KiB messages, ack), and the daemon's pattern since issue 13
//! (ingest commit carrying the deferred acks, one `seal_many` per cycle, deferred `ack_many`)
//! with disk bytes per reading for each kind of call. Then a backlog fill of one million
//! readings (time, size, quick_check and open time), which the drain benchmark reuses.
//! Results go to stdout and bench-results/store_write.txt.
//!
//! Run with `cargo bench --bench store_write`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gasdtu::config::StoreConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::outbox::Outbox;
use gasdtu::store::{ClockStamp, Store, MIN_TRUSTED_UNIX_MS};
use gasdtu::time::from_unix_ms;

const DEVICES: usize = 20;
const POINTS: usize = 10;
const T0: i64 = MIN_TRUSTED_UNIX_MS + 300 * 86_400_000;

#[derive(Clone, Copy, Default)]
struct Io {
    wchar: u64,
    write_bytes: u64,
}

fn io() -> Io {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    Io {
        wchar: field("wchar:"),
        write_bytes: field("write_bytes:"),
    }
}

fn stamp(ms: i64) -> ClockStamp {
    ClockStamp {
        wall_ms: ms,
        mono_ms: ms - T0 + 1_000,
        boot_id: "bench".into(),
    }
}

struct Names {
    devices: Vec<Arc<str>>,
    points: Vec<Arc<str>>,
    unit: Arc<str>,
    bus: Arc<str>,
}

fn names() -> Names {
    let pts = [
        "flow_rate",
        "volume_total",
        "volume_corrected",
        "pressure",
        "temperature",
        "compressibility",
        "conversion_factor",
        "battery",
        "alarm_word",
        "status_word",
    ];
    Names {
        devices: (0..DEVICES)
            .map(|d| Arc::from(format!("corrector-{d:02}")))
            .collect(),
        points: pts.iter().map(|p| Arc::from(*p)).collect(),
        unit: "m3/h".into(),
        bus: "rs485-1".into(),
    }
}

fn cycle(n: &Names, t: i64) -> Vec<SampleBatch> {
    n.devices
        .iter()
        .enumerate()
        .map(|(d, dev)| SampleBatch {
            device: dev.clone(),
            bus: n.bus.clone(),
            slot: from_unix_ms(t),
            online: true,
            failed_cycles: 0,
            samples: (0..POINTS)
                .map(|i| Sample {
                    point: n.points[i].clone(),
                    // Realistic values: scaled registers (not f32-exact), counters, words.
                    value: Some(match i {
                        1 | 2 => Value::UInt(1_000_000 + (t / 1000) as u64 * 3 + d as u64),
                        8 | 9 => Value::UInt(0),
                        _ => Value::Float(
                            ((t / 1000 + d as i64 * 7 + i as i64) % 5000) as f64 / 100.0 + 0.01,
                        ),
                    }),
                    unit: Some(n.unit.clone()),
                    quality: Quality::Good,
                    read_at: from_unix_ms(t + 20 + d as i64 * 15),
                })
                .collect(),
        })
        .collect()
}

fn file_sizes(dir: &Path) -> (u64, u64) {
    let len = |n: &str| std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0);
    (len("gasdtu.db"), len("gasdtu.db-wal"))
}

struct Run {
    label: &'static str,
    readings: u64,
    commits: u64,
    secs: f64,
    io: Io,
    db: u64,
    wal: u64,
}

fn scenario(label: &'static str, dir: &Path, cycles: usize, per_batch: bool, deliver: bool) -> Run {
    let (store, _) = Store::open(dir, &StoreConfig::default()).expect("open store");
    let n = names();
    // Warm up the dictionaries and the file so growth of an empty file is not measured.
    store
        .commit(&cycle(&n, T0 - 1000), &[], &stamp(T0 - 1000))
        .expect("commit");
    let before = io();
    let start = Instant::now();
    let mut commits = 0;
    for c in 0..cycles {
        let t = T0 + c as i64 * 1000;
        let batches = cycle(&n, t);
        if per_batch {
            for b in &batches {
                store
                    .commit(std::slice::from_ref(b), &[], &stamp(t))
                    .expect("commit");
                commits += 1;
            }
        } else {
            store.commit(&batches, &[], &stamp(t)).expect("commit");
            commits += 1;
        }
        if deliver {
            // The forwarder's part: ~1 KiB messages of 5 batches (50 readings), then PUBACK.
            loop {
                let p = store.pending(5, 0).expect("pending");
                if p.is_empty() {
                    break;
                }
                let ids: Vec<i64> = p.iter().map(|e| e.id).collect();
                let m = store
                    .seal("gasdtu/gw/data", &ids, 50, &mut |_| Ok(vec![0x5a; 1000]))
                    .expect("seal");
                store.ack(m.seq).expect("ack");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = io();
    let (db, wal) = file_sizes(dir);
    Run {
        label,
        readings: (cycles * DEVICES * POINTS) as u64,
        commits,
        secs,
        io: Io {
            wchar: after.wchar - before.wchar,
            write_bytes: after.write_bytes - before.write_bytes,
        },
        db,
        wal,
    }
}

/// The daemon's pattern since issue 13: per cycle one ingest commit (which also writes the
/// acknowledgements deferred since the last write), then ONE `seal_many` of the cycle's
/// batches into 4 messages of 5 batches (~600 B payloads), then `ack_many` (deferred: no
/// write). Returns disk bytes per reading for each kind of call (a checkpoint is counted in
/// the call that triggered it).
fn daemon_pattern(dir: &Path, cycles: usize) -> (f64, f64, f64, u64) {
    use gasdtu::outbox::SealRequest;
    let (store, _) = Store::open(dir, &StoreConfig::default()).expect("open store");
    let n = names();
    store
        .commit(&cycle(&n, T0 - 1000), &[], &stamp(T0 - 1000))
        .expect("commit");
    let (mut ingest, mut seal, mut ack) = (0u64, 0u64, 0u64);
    for c in 0..cycles {
        let t = T0 + c as i64 * 1000;
        let a = io();
        let info = store.commit(&cycle(&n, t), &[], &stamp(t)).expect("commit");
        let b = io();
        let groups: Vec<&[i64]> = info.entry_ids.chunks(5).collect();
        let reqs: Vec<SealRequest<'_>> = groups
            .iter()
            .map(|g| SealRequest {
                topic: "gasdtu/gw/data",
                entries: g,
                readings: 50,
                rebuildable: false,
            })
            .collect();
        let (sealed, err) = store.seal_many(&reqs, &mut |_, _| Ok(vec![0x5a; 600]));
        assert!(err.is_none(), "seal: {err:?}");
        let c2 = io();
        let seqs: Vec<u64> = sealed.iter().map(|m| m.seq).collect();
        store.ack_many(&seqs).expect("ack");
        let d = io();
        ingest += b.write_bytes - a.write_bytes;
        seal += c2.write_bytes - b.write_bytes;
        ack += d.write_bytes - c2.write_bytes;
    }
    let readings = (cycles * DEVICES * POINTS) as f64;
    let (db, wal) = file_sizes(dir);
    (
        ingest as f64 / readings,
        seal as f64 / readings,
        ack as f64 / readings,
        db + wal,
    )
}

fn main() {
    let base = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "target".into());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "store_write: {DEVICES} devices x {POINTS} points per poll cycle, SQLite WAL, synchronous=FULL"
    );
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "run {} on {} CPUs ({}), load average {}, state under {base}\n",
        sh("date -u '+%Y-%m-%d %H:%M:%SZ'"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("cut -d' ' -f1-3 /proc/loadavg"),
    );
    let _ = writeln!(
        out,
        "{:<44} {:>9} {:>8} {:>10} {:>12} {:>10} {:>10} {:>9}",
        "scenario",
        "readings",
        "commits",
        "commits/s",
        "readings/s",
        "disk B/rd",
        "write B/rd",
        "db+wal"
    );
    let runs = [
        ("one commit per cycle (20 batches)", 600, false, false),
        ("one commit per device batch", 150, true, false),
        ("per cycle + seal 1 KiB messages + ack", 600, false, true),
    ];
    for (label, cycles, per_batch, deliver) in runs {
        let dir = tempfile::Builder::new()
            .prefix("store-write")
            .tempdir_in(&base)
            .expect("temp dir");
        let r = scenario(label, dir.path(), cycles, per_batch, deliver);
        let line = format!(
            "{:<44} {:>9} {:>8} {:>10.0} {:>12.0} {:>10.1} {:>10.1} {:>9}",
            r.label,
            r.readings,
            r.commits,
            r.commits as f64 / r.secs,
            r.readings as f64 / r.secs,
            r.io.write_bytes as f64 / r.readings as f64,
            r.io.wchar as f64 / r.readings as f64,
            format!("{}K", (r.db + r.wal) / 1024),
        );
        println!("{line}");
        let _ = writeln!(out, "{line}");
    }
    let dir = tempfile::Builder::new()
        .prefix("store-daemon")
        .tempdir_in(&base)
        .expect("temp dir");
    let (i, se, a, size) = daemon_pattern(dir.path(), 600);
    let line = format!(
        "daemon pattern (issue 13), 600 cycles: ingest+deferred acks {i:.1} + seal_many {se:.1} + ack_many {a:.1} = {:.1} disk B/reading; db+wal {}K",
        i + se + a,
        size / 1024
    );
    println!("{line}");
    let _ = writeln!(out, "{line}");
    let _ = writeln!(
        out,
        "\ndisk B/rd = /proc/self/io write_bytes per reading (what reaches the block device);\n\
         write B/rd = wchar per reading (bytes given to write(2): WAL frames, checkpoints, side file)."
    );

    // Backlog fill: one million readings.
    let dir = tempfile::Builder::new()
        .prefix("store-fill")
        .tempdir_in(&base)
        .expect("temp dir");
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).expect("open store");
    let n = names();
    let cycles = 1_000_000 / (DEVICES * POINTS);
    let before = io();
    let start = Instant::now();
    for c in 0..cycles {
        let t = T0 + c as i64 * 1000;
        store.commit(&cycle(&n, t), &[], &stamp(t)).expect("commit");
    }
    let fill = start.elapsed();
    let after = io();
    drop(store);
    let (db, wal) = file_sizes(dir.path());
    let start = Instant::now();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).expect("reopen store");
    let open_time = start.elapsed();
    let start = Instant::now();
    let stats = store.stats().expect("stats");
    let stats_time = start.elapsed();
    let start = Instant::now();
    let page = store.pending(100, i64::MAX).expect("pending");
    let pending_time = start.elapsed();
    let line = format!(
        "\nbacklog fill: 1,000,000 readings in {cycles} commits: {:.1} s ({:.0} readings/s), \
         database {:.1} MiB + WAL {:.1} MiB = {:.1} B/reading stored, {:.1} B/reading written to disk\n\
         reopen with quick_check: {:.2} s; stats: {:.2} s; first 100 backlog entries: {:.1} ms; \
         pending readings {}",
        fill.as_secs_f64(),
        1e6 / fill.as_secs_f64(),
        db as f64 / 1048576.0,
        wal as f64 / 1048576.0,
        db as f64 / 1e6,
        (after.write_bytes - before.write_bytes) as f64 / 1e6,
        open_time.as_secs_f64(),
        stats_time.as_secs_f64(),
        pending_time.as_secs_f64() * 1000.0,
        stats.pending_readings,
    );
    assert_eq!(page.len(), 100);
    println!("{line}");
    let _ = writeln!(out, "{line}");
    let keep = std::env::var("STORE_BENCH_KEEP").is_ok();
    if keep {
        let kept = dir.keep();
        let _ = writeln!(out, "kept the 1M-reading store in {}", kept.display());
        println!("kept the 1M-reading store in {}", kept.display());
    }
    let _ = std::fs::create_dir_all("bench-results");
    if let Err(e) = std::fs::write("bench-results/store_write.txt", &out) {
        eprintln!("cannot write bench-results/store_write.txt: {e}");
    }
}
