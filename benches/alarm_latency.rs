//! Benchmark: latency of an alarm from the device's value change to the alarm message at the
//! broker, with a backlog of 100 000 readings waiting in the outbox. The real `gasdtu run`
//! (this build's binary) polls an in-process simulator every second; the backlog is committed
//! beforehand with the store API (20 devices x 10 points per commit, as in store_write); a
//! plain-TCP mosquitto on loopback and an in-process rumqttc subscriber close the loop. The
//! pressure is flipped 900 kPa <-> 400 kPa (limit 700) `ROUNDS` times; each raise and each
//! clear is one sample. Two latencies per sample:
//! - from the value change at the device to the message at the subscriber (includes waiting
//!   for the next 1 s poll slot, uniform 0..1 s);
//! - from the device read time in the message (`raised_at` / `cleared_at`) to its arrival:
//!   the pipeline alone (commit, outbox, seal, publish, broker).
//!
//! Results go to stdout and bench-results/alarm_latency.txt.
//!
//! Run with `cargo bench --bench alarm_latency` (needs mosquitto on PATH).

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gasdtu::config::StoreConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::sim::{Faults, SimDevice, Simulator};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::time::from_unix_ms;
use tokio_util::sync::CancellationToken;

const BACKLOG: usize = 100_000;
const ROUNDS: usize = 25;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 100 000 readings of 20 other devices, read over the last hours, committed before the
/// daemon starts (so they are backlog, sent oldest first after live data and alarms).
fn build_backlog(state: &std::path::Path) -> f64 {
    let (store, _) = Store::open(state, &StoreConfig::default()).expect("store");
    let start = Instant::now();
    add_backlog(&store, BACKLOG, 0);
    start.elapsed().as_secs_f64()
}

/// Commit `readings` (rounded up to 200) of backlog, read and committed an hour ago (so it is
/// historical to the running daemon, like data polled during an outage). `round` varies the
/// read times.
fn add_backlog(store: &Store, readings: usize, round: usize) {
    let now = ms(SystemTime::now()) - round as i64 * 7;
    let old = ClockStamp {
        wall_ms: now - 3_000_000,
        mono_ms: 1_000,
        boot_id: "bench-backlog".into(),
    };
    let points: Vec<Arc<str>> = (0..10).map(|i| Arc::from(format!("p{i}"))).collect();
    let devices: Vec<Arc<str>> = (0..20)
        .map(|d| Arc::from(format!("backlog-{d:02}")))
        .collect();
    let unit: Arc<str> = "kPa".into();
    let bus: Arc<str> = "rs485".into();
    let cycles = readings.div_ceil(200);
    for c in 0..cycles {
        let t = now - 3_600_000 + c as i64 * 5_000;
        let batches: Vec<SampleBatch> = devices
            .iter()
            .map(|d| SampleBatch {
                device: d.clone(),
                bus: bus.clone(),
                slot: from_unix_ms(t),
                online: true,
                failed_cycles: 0,
                samples: points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Sample {
                        point: p.clone(),
                        value: Some(Value::Float(((c * 7 + i) % 5000) as f64 / 100.0)),
                        unit: Some(unit.clone()),
                        quality: Quality::Good,
                        read_at: from_unix_ms(t + 20),
                    })
                    .collect(),
            })
            .collect();
        store.commit(&batches, &[], &old).expect("commit");
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn pending(bin: &str, socket: &std::path::Path) -> Option<u64> {
    let out = Command::new(bin)
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["buffer"]["pending_readings"].as_u64()
}

fn main() {
    let mut out = String::new();
    let _ = writeln!(out, "alarm latency (cargo bench --bench alarm_latency)");
    out.push_str(&scenario("uplink without rate limit", None));
    out.push_str(&scenario(
        "uplink rate_limit = 2000 B/s (NB-IoT class)",
        Some(2000),
    ));
    print!("{out}");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results/alarm_latency.txt");
    if let Err(e) = std::fs::write(&path, &out) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn scenario(label: &str, rate_limit: Option<u64>) -> String {
    let bin = env!("CARGO_BIN_EXE_gasdtu");
    // On the disk cargo uses for targets (not a tmpfs /tmp): commits pay a real fsync.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let state = dir.path().join("state");
    let fill_s = build_backlog(&state);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stop = CancellationToken::new();
    // The device.
    let profile = gasdtu::config::profiles::resolve_profile("pt-float", &[]).expect("profile");
    let sim = Simulator::new(
        vec![SimDevice::new(1, "pt1", profile.points, profile.computed)],
        Faults::default(),
    );
    sim.set(1, "pressure", Value::Float(400.0)).expect("pin");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let sim_port = listener.local_addr().expect("addr").port();
    {
        let (sim, stop) = (sim.clone(), stop.clone());
        rt.spawn(async move { sim.serve_tcp(listener, stop).await });
    }
    // The broker.
    let mq_port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {mq_port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"),
    )
    .expect("conf");
    let _mq = Kill(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto on PATH"),
    );
    wait("mosquitto", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", mq_port)).ok()
    });
    // The subscriber: (arrival time, alarm JSON).
    let got: Arc<Mutex<Vec<(SystemTime, Instant, serde_json::Value)>>> = Arc::default();
    let data_msgs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut o = MqttOptions::new("bench-sub", "127.0.0.1", mq_port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(o, 100);
        let (got, data_msgs) = (got.clone(), data_msgs.clone());
        rt.spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.subscribe("gasdtu/bench/#", QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let (wall, mono) = (SystemTime::now(), Instant::now());
                        if p.topic.ends_with("/alarm") {
                            if let Ok(v) = serde_json::from_slice(&p.payload) {
                                got.lock().unwrap().push((wall, mono, v));
                            }
                        } else if p.topic.ends_with("/data") {
                            data_msgs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "bench"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {sim_port}
timeout = "500ms"

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"
profile = "pt-float"

[alarms.p_high]
device = "pt1"
point = "pressure"
kind = "limit"
h = 700
deadband = 20
severity = "critical"

[uplink]
host = "127.0.0.1"
port = {mq_port}
tls = false
{rate}
"#,
            state = state.display(),
            rate = rate_limit
                .map(|r| format!("rate_limit = {r}"))
                .unwrap_or_default(),
        ),
    )
    .expect("config");
    let socket = dir.path().join("gasdtu.sock");
    let _daemon = Kill(
        Command::new(bin)
            .args(["run", "--poll-now", "--log-level", "error"])
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gasdtu run"),
    );
    wait(
        "the daemon's first messages",
        Duration::from_secs(30),
        || (data_msgs.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(()),
    );
    let backlog_start = wait("status", Duration::from_secs(10), || pending(bin, &socket));
    // A second writer on the daemon's database (WAL): keeps the backlog at BACKLOG readings
    // before every round when the uplink drains it faster than the rounds take.
    let (topup, _) = Store::open(&state, &StoreConfig::default()).expect("second store handle");
    let mut topped = 0usize;

    let mut end_to_end = Vec::new();
    let mut pipeline = Vec::new();
    let mut backlog_min = u64::MAX;
    let mut value = 400.0;
    for round in 0..ROUNDS * 2 {
        if let Some(p) = pending(bin, &socket) {
            let missing = BACKLOG.saturating_sub(p as usize);
            if missing > 0 {
                add_backlog(&topup, missing, round + 1);
                topped += missing;
            }
        }
        // A random phase against the 1 s poll grid.
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..1000)));
        value = if value < 700.0 { 900.0 } else { 400.0 };
        let want = if value > 700.0 { "raised" } else { "cleared" };
        let seen = got.lock().unwrap().len();
        let changed = Instant::now();
        sim.set(1, "pressure", Value::Float(value)).expect("pin");
        let (wall, mono, v) = wait("the alarm at the broker", Duration::from_secs(30), || {
            got.lock().unwrap()[seen..]
                .iter()
                .find(|(_, _, v)| v["state"] == want)
                .cloned()
        });
        end_to_end.push(mono.duration_since(changed).as_secs_f64() * 1000.0);
        let read = v[if want == "raised" {
            "raised_at"
        } else {
            "cleared_at"
        }]
        .as_str()
        .and_then(|s| humantime::parse_rfc3339(s).ok())
        .expect("read time in the alarm");
        pipeline.push(wall.duration_since(read).unwrap_or_default().as_secs_f64() * 1000.0);
        let left = pending(bin, &socket).unwrap_or(0);
        backlog_min = backlog_min.min(left);
        eprintln!(
            "{label}: round {round}: {want} after {:.0} ms, {left} readings pending",
            end_to_end.last().unwrap()
        );
    }
    let backlog_end = pending(bin, &socket).unwrap_or(0);
    stop.cancel();

    let n = end_to_end.len();
    let mut out = String::new();
    let _ = writeln!(out, "\n{label}");
    let _ = writeln!(
        out,
        "backlog: {BACKLOG} readings committed in {fill_s:.1} s before the start, {topped} more added between rounds to keep it at {BACKLOG}; pending at the first alarm {backlog_start}, lowest seen after an alarm {backlog_min}, at the end {backlog_end}"
    );
    let _ = writeln!(out, "device polled every 1 s; {n} transitions ({ROUNDS} raises + {ROUNDS} clears); mosquitto on loopback, plain TCP");
    let _ = writeln!(
        out,
        "value change -> broker:  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  (includes the wait for the next poll slot, 0..1000 ms)",
        pct(&mut end_to_end, 0.5),
        pct(&mut end_to_end, 0.99),
        pct(&mut end_to_end, 1.0)
    );
    let _ = writeln!(
        out,
        "device read -> broker:   p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  (commit + outbox + seal + publish + broker)",
        pct(&mut pipeline, 0.5),
        pct(&mut pipeline, 0.99),
        pct(&mut pipeline, 1.0)
    );
    eprint!("{out}");
    out
}
