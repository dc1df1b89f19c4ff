//! Benchmark (issue 11): on-demand NB-IoT sessions through the simulated module. A station of
//! 6 devices / 50 points reporting every 5 minutes, time compressed: each "report" commits one
//! poll cycle's readings (6 batches, 50 readings: f32 flows, pressures and temperatures that
//! drift a little, 32-bit totals that grow, battery and status words) to a real SQLite store
//! and wakes the real forwarder (`session = "on_demand"`, linger 2 s), which connects through
//! the whole socket-mode stack in this process: AtEngine + ModemSupervisor + SocketBridge
//! (HTTP CONNECT proxy over the module's AT sockets) to `gasdtu simulate --modem <model>` of
//! this build on a socat pty pair, whose sockets are real TCP to 127.0.0.1 paced at the
//! simulator's defaults (12 kbit/s up, 8 kbit/s down, RTT 1.5 s), and TLS 1.3 end to end to a
//! mosquitto on loopback. A plain-TCP subscriber checks that every reading arrives.
//!
//! Per session: connect (wake -> `LinkState::Connected`: the module's socket open, TLS and
//! CONNACK), drain (wake -> store empty: every message acknowledged), session (wake -> Asleep,
//! minus the linger), and bytes up/down on air from the simulator's `stats` counters before and
//! after (the module's socket bytes, i.e. TCP payload: TLS records carrying MQTT; no IP/TCP
//! headers, no radio-layer overhead). Scenarios: BG96 x {JSON, CBOR} x {TLS resumption on,
//! off (`Forwarder::without_tls_resumption`: a fresh session cache per attempt)}, BG96 CBOR in
//! data format 2, then BC95, BC66 (hex data format) and SIM7080 (CA* sockets) with CBOR +
//! resumption. Each scenario starts fresh (simulator, store, forwarder); its start-up session
//! and one warm-up report are shown apart and not counted.
//!
//! Knobs: GASDTU_BENCH_REPORTS (measured reports per scenario, default 10), GASDTU_BENCH_LOG
//! (a tracing filter for the in-process stack, e.g. `gasdtu=debug`; off by default),
//! GASDTU_BENCH_ONLY (run only the scenarios whose label contains one of its comma-separated
//! parts, e.g. `bc95` or `bc66,sim7080`), GASDTU_BENCH_OUT (the result file's name in
//! bench-results/, default `nbiot_sessions`: a partial run can be written beside the full one).
//! Fails (non-zero) only when it cannot measure: socat or mosquitto missing, a child died, a
//! session that does not connect, drain or end within its deadline, or readings missing at the
//! subscriber. Never on a speed. Writes bench-results/nbiot_sessions.txt (or GASDTU_BENCH_OUT).
//! Each session's line also shows the forwarder's own figures (`own:`, the `gasdtu status`
//! line), for comparison with the outside measurements.
//! Run: `cargo bench --bench nbiot_sessions`. The report's text is built in report.rs.

mod report;
#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gasdtu::config::{
    Encoding, ModemConfig, ModemMode, PayloadFormat, SessionMode, StoreConfig, UplinkConfig,
};
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::modem::{
    link_gate, AtEngine, EngineOptions, ModemStatus, ModemSupervisor, SocketBridge,
    SupervisorOptions,
};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::uplink::{Forwarder, LinkState, LinkStatus};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use support::{BrokerTls, Mosquitto, Proc, PtyPair, Res, Subscriber};

const NAME: &str = "nbiot_sessions";
const LINGER: Duration = Duration::from_secs(2);
/// Reports a day at one report every 5 minutes.
const PER_DAY: u64 = 288;
/// Per step of a session (connect, drain, asleep): far above anything a working link needs.
const STEP: Duration = Duration::from_secs(180);
/// Devices of the station and their point counts (50 readings per report).
const DEVICES: [usize; 6] = [9, 9, 8, 8, 8, 8];

#[derive(Clone, Copy)]
struct Scenario {
    model: &'static str,
    encoding: Encoding,
    format: PayloadFormat,
    resume: bool,
}

impl Scenario {
    fn label(&self) -> String {
        format!(
            "{} {}{} resumption {}",
            self.model,
            match self.encoding {
                Encoding::Json => "JSON",
                Encoding::Cbor => "CBOR",
            },
            match self.format {
                PayloadFormat::V1 => "",
                PayloadFormat::V2 => " format 2",
            },
            if self.resume { "on" } else { "off" }
        )
    }
}

/// One measured session.
#[derive(Clone, Debug, Default)]
struct Sess {
    connect: Duration,
    drain: Duration,
    session: Duration,
    up: u64,
    down: u64,
    sockets: u64,
    resumptions: u64,
    data_msgs: usize,
    /// MQTT payload bytes published in the session: data messages, and status + health.
    data_bytes: usize,
    other_bytes: usize,
    /// The forwarder's own figures of the session (`uplink::session::summary_line`), shown
    /// next to the outside measurements.
    own: String,
}

struct Outcome {
    scenario: Scenario,
    startup: Sess,
    warmup: Sess,
    sessions: Vec<Sess>,
    downs: Vec<String>,
    readings: usize,
}

/// The module simulator's socket counters (`stats` on its control socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Counters {
    up: u64,
    down: u64,
    sockets: u64,
}

fn sim_stats(ctl: &Path) -> Res<Counters> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(ctl)
        .map_err(|e| format!("modem control socket {}: {e}", ctl.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("control socket timeout: {e}"))?;
    s.write_all(b"stats\n")
        .map_err(|e| format!("modem control socket: write: {e}"))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("modem control socket: read: {e}"))?;
    let j: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("stats {line:?}: {e}"))?;
    let n = |k: &str| {
        j[k].as_u64()
            .ok_or_else(|| format!("stats without {k}: {line}"))
    };
    Ok(Counters {
        up: n("bytes_up")?,
        down: n("bytes_down")?,
        sockets: n("sockets_opened")?,
    })
}

/// The counters once they stopped moving (the last bytes of a closing socket counted).
async fn settled_stats(ctl: &Path) -> Res<Counters> {
    let end = Instant::now() + Duration::from_secs(20);
    let mut last = sim_stats(ctl)?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = sim_stats(ctl)?;
        if now == last {
            return Ok(now);
        }
        if Instant::now() > end {
            return Err(format!("the module's byte counters kept moving: {now:?}"));
        }
        last = now;
    }
}

/// One poll cycle of the station: realistic values (f32 readings that drift, growing 32-bit
/// totals, battery and status words), units as a profile gives them.
struct Station {
    rng: fastrand::Rng,
    totals: Vec<u64>,
}

impl Station {
    fn new() -> Station {
        Station {
            rng: fastrand::Rng::with_seed(11),
            totals: (0..DEVICES.len() as u64)
                .map(|i| 1_200_000 + i * 37_911)
                .collect(),
        }
    }

    fn cycle(&mut self) -> Vec<SampleBatch> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (d, &n) in DEVICES.iter().enumerate() {
            let base = 100.0 + 40.0 * d as f32;
            let flow = base * (1.0 + (self.rng.f32() - 0.5) * 0.04);
            self.totals[d] += (flow / 12.0) as u64;
            let total = self.totals[d];
            let f = |x: f32| Some(Value::Float(f64::from(x)));
            let mut points: Vec<(&str, Option<Value>, Option<&str>)> = vec![
                ("flow_standard", f(flow), Some("Sm3/h")),
                ("flow_measured", f(flow * 0.23), Some("m3/h")),
                (
                    "pressure",
                    f(401.3 + (self.rng.f32() - 0.5) * 1.5),
                    Some("kPa"),
                ),
                (
                    "temperature",
                    f(12.4 + (self.rng.f32() - 0.5) * 0.4),
                    Some("degC"),
                ),
                ("volume_standard", Some(Value::UInt(total)), Some("Sm3")),
                ("volume_measured", Some(Value::UInt(total / 4)), Some("m3")),
                ("battery", Some(Value::UInt(87 - d as u64)), Some("%")),
                ("status", Some(Value::UInt(0)), None),
                ("alarm_count", Some(Value::Int(d as i64 % 2)), None),
            ];
            points.truncate(n);
            out.push(SampleBatch {
                device: format!("fc{}", d + 1).into(),
                bus: "rs485".into(),
                slot: now,
                samples: points
                    .into_iter()
                    .map(|(p, v, u)| Sample {
                        point: p.into(),
                        value: v,
                        unit: u.map(Into::into),
                        quality: Quality::Good,
                        read_at: now,
                    })
                    .collect(),
                online: true,
                failed_cycles: 0,
            });
        }
        out
    }
}

fn uplink(
    ca: &Path,
    port: u16,
    root: &str,
    encoding: Encoding,
    format: PayloadFormat,
) -> UplinkConfig {
    UplinkConfig {
        host: "localhost".into(),
        port,
        tls: true,
        ca_file: Some(ca.to_path_buf()),
        client_cert: None,
        client_key: None,
        server_name: None,
        username: None,
        password: None,
        client_id: format!("gasdtu-{}", root.replace('/', "-")),
        topic_root: root.into(),
        keepalive: Duration::from_secs(240),
        connect_timeout: Duration::from_secs(60),
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(60),
        max_payload: 1024,
        rate_limit: None,
        encoding,
        format,
        inflight: 8,
        session: SessionMode::OnDemand,
        linger: LINGER,
        check_in: Duration::from_secs(3600),
        ack_timeout: Duration::from_secs(30),
    }
}

/// Readings and data messages the subscriber has under `root`.
/// What the subscriber holds under one topic root.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    readings: usize,
    data_msgs: usize,
    /// MQTT payload bytes of the data messages, and of everything else (status, health).
    data_bytes: usize,
    other_bytes: usize,
}

fn delivered(sub: &Subscriber, root: &str) -> Res<Seen> {
    let mut seen = Seen::default();
    let prefix = format!("{root}/");
    for m in sub.snapshot() {
        if !m.topic.starts_with(&prefix) {
            continue;
        }
        if m.topic.ends_with("/data") {
            seen.readings += support::decode_data(&m.payload)?.readings.len();
            seen.data_msgs += 1;
            seen.data_bytes += m.payload.len();
        } else {
            seen.other_bytes += m.payload.len();
        }
    }
    Ok(seen)
}

/// Wait until the link status satisfies `pred`; the instant it was seen.
async fn wait_link(
    link: &mut watch::Receiver<LinkStatus>,
    what: &str,
    pred: impl Fn(&LinkStatus) -> bool,
) -> Res<(Instant, LinkStatus)> {
    let end = tokio::time::Instant::now() + STEP;
    loop {
        {
            let s = link.borrow_and_update();
            if pred(&s) {
                return Ok((Instant::now(), s.clone()));
            }
        }
        match tokio::time::timeout_at(end, link.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(format!("{what}: the forwarder is gone")),
            Err(_) => {
                return Err(format!(
                    "{what}: not within {STEP:?}; link {:?}",
                    link.borrow()
                ))
            }
        }
    }
}

/// Wait until the store holds nothing pending or unacknowledged.
async fn wait_drained(store: &Store, link: &mut watch::Receiver<LinkStatus>) -> Res<Instant> {
    let end = Instant::now() + STEP;
    loop {
        let s = store.stats().map_err(|e| format!("store stats: {e}"))?;
        if s.pending_entries == 0 && s.sealed_messages == 0 {
            return Ok(Instant::now());
        }
        if Instant::now() > end {
            return Err(format!(
                "not drained within {STEP:?}: {s:?}; link {:?}",
                link.borrow()
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), link.changed()).await;
    }
}

struct Rig<'a> {
    store: Arc<Store>,
    wake: Arc<Notify>,
    link: watch::Receiver<LinkStatus>,
    ctl: PathBuf,
    sub: &'a Subscriber,
    root: String,
    sim: &'a Mutex<Proc>,
    /// The counters and instant taken just before the forwarder started (its start-up
    /// session begins right away, before the first `report`).
    start: Option<(Counters, Instant)>,
}

impl Rig<'_> {
    fn alive(&self) -> Res<()> {
        self.sim
            .lock()
            .map_err(|_| "simulator guard poisoned".to_string())?
            .alive()
    }

    /// Wait until the subscriber holds at least `expect` readings under this root.
    async fn wait_delivered(&self, expect: usize) -> Res<Seen> {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = delivered(self.sub, &self.root)?;
            let n = seen.readings;
            if n >= expect {
                return Ok(seen);
            }
            if Instant::now() > end {
                return Err(format!(
                    "{n} readings at the subscriber under {} after 30 s, {expect} committed",
                    self.root
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Commit one report's readings (none for the start-up session), wake the forwarder and
    /// follow the session until it is asleep again.
    async fn report(&mut self, batches: Option<Vec<SampleBatch>>, expect: usize) -> Res<Sess> {
        self.alive()?;
        let (before, t0) = match self.start.take() {
            Some(b) => b,
            None => (settled_stats(&self.ctl).await?, Instant::now()),
        };
        let seen0 = delivered(self.sub, &self.root)?;
        let res0 = self.link.borrow().tls_resumptions;
        if let Some(b) = batches {
            self.store
                .commit(&b, &[], &ClockStamp::now())
                .map_err(|e| format!("store commit: {e}"))?;
            self.wake.notify_one();
        }
        let (tc, st) = wait_link(&mut self.link, "connected", |s| {
            s.state == LinkState::Connected
        })
        .await?;
        let td = wait_drained(&self.store, &mut self.link).await?;
        let (ta, asleep) = wait_link(&mut self.link, "asleep", |s| {
            matches!(s.state, LinkState::Asleep { .. })
        })
        .await?;
        let own = gasdtu::uplink::session::summary_line(&asleep.session.to_json())
            .unwrap_or_else(|| "-".into());
        let after = settled_stats(&self.ctl).await?;
        let seen = self.wait_delivered(expect).await?;
        let n = seen.readings;
        if n != expect {
            return Err(format!(
                "{}: {n} readings at the subscriber, {expect} committed",
                self.root
            ));
        }
        self.alive()?;
        Ok(Sess {
            connect: tc - t0,
            drain: td.max(tc) - t0,
            session: (ta - t0).saturating_sub(LINGER),
            up: after.up - before.up,
            down: after.down - before.down,
            sockets: after.sockets - before.sockets,
            resumptions: st.tls_resumptions - res0,
            data_msgs: seen.data_msgs - seen0.data_msgs,
            data_bytes: seen.data_bytes - seen0.data_bytes,
            other_bytes: seen.other_bytes - seen0.other_bytes,
            own,
        })
    }
}

async fn scenario(
    dir: &Path,
    idx: usize,
    sc: Scenario,
    ca: &Path,
    tls_port: u16,
    sub: &Subscriber,
    reports: usize,
) -> Res<Outcome> {
    let bin = support::gasdtu()?;
    let tag = format!("s{idx}-{}", sc.model);
    let pty = PtyPair::new(dir, &tag)?;
    let ctl = dir.join(format!("{tag}.ctl"));
    let log = dir.join(format!("{tag}.sim.log"));
    let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let sim = Mutex::new(Proc::spawn(
        "modem simulator",
        Command::new(&bin)
            .args(["simulate", "--modem", sc.model, "--modem-port"])
            .arg(&pty.a)
            .arg("--modem-control")
            .arg(&ctl)
            .args(["--modem-register-delay", "1s", "--seed", "11"])
            .stdout(Stdio::null())
            .stderr(logf),
    )?);
    support::wait_for("the modem control socket", Duration::from_secs(10), || {
        ctl.exists().then_some(())
    })?;

    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut mc = ModemConfig::new(ModemMode::Socket, pty.b.display().to_string());
    mc.baud = 115_200;
    let (engine, at) = AtEngine::new(mc.port.clone(), mc.baud, EngineOptions::default());
    let (status_tx, status) = watch::channel(ModemStatus::default());
    let sup = ModemSupervisor::new(
        mc,
        at.clone(),
        SupervisorOptions::default(),
        Arc::new(status_tx),
        None,
    );
    tokio::spawn(engine.run(stop.clone()));
    tokio::spawn(sup.run(stop.clone()));
    let bridge = SocketBridge::bind(at.clone(), status.clone(), Vec::new())
        .map_err(|e| format!("modem bridge: {e}"))?;
    let proxy = bridge
        .local_addr()
        .map_err(|e| format!("modem bridge address: {e}"))?;
    let meter = bridge.meter();
    tokio::spawn(bridge.run(stop.clone()));

    let state = dir.join(format!("{tag}-state"));
    let (store, _) =
        Store::open(&state, &StoreConfig::default()).map_err(|e| format!("store: {e}"))?;
    let store = Arc::new(store);
    let wake = Arc::new(Notify::new());
    let (ltx, link) = watch::channel(LinkStatus::default());
    let root = format!("gasdtu/nb{idx}");
    let extra_store = store.clone();
    let mut fwd = Forwarder::new(
        uplink(ca, tls_port, &root, sc.encoding, sc.format),
        &format!("gw-nb{idx}"),
        store.clone(),
        wake.clone(),
        ltx,
    )
    .with_link_meter(meter)
    .with_proxy(proxy)
    .with_link_gate(link_gate(status.clone()))
    // As the daemon does (src/gateway): the buffer depth in every health message.
    .with_health_extra(Arc::new(move || match extra_store.stats() {
        Ok(b) => serde_json::json!({"buffer": {
            "unacked": b.sealed_messages,
            "pending_entries": b.pending_entries,
            "pending_readings": b.pending_readings,
            "held_entries": b.held_entries,
            "oldest_pending_read_ms": b.oldest_pending_read_ms,
            "dropped_unsent": b.dropped_unsent,
        }}),
        Err(e) => serde_json::json!({"buffer": {"error": e.to_string()}}),
    }));
    if !sc.resume {
        fwd = fwd.without_tls_resumption();
    }
    // Every session failure the forwarder reports (there should be none).
    let downs: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (downs, mut rx) = (downs.clone(), link.clone());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update().clone();
                if let LinkState::Down { last_error, .. } = s.state {
                    // The gate's wait for registration at start-up is not a failure.
                    if last_error.starts_with("waiting for the modem") || last_error == "shut down"
                    {
                        continue;
                    }
                    if let Ok(mut d) = downs.lock() {
                        if d.last() != Some(&last_error) {
                            d.push(last_error);
                        }
                    }
                }
            }
        });
    }
    let fwd_stop = CancellationToken::new();
    let _fwd_guard = fwd_stop.clone().drop_guard();
    let start = Some((settled_stats(&ctl).await?, Instant::now()));
    let task = tokio::spawn(fwd.run(fwd_stop.clone()));

    let mut rig = Rig {
        store,
        wake,
        link,
        ctl,
        sub,
        root,
        sim: &sim,
        start,
    };
    let mut station = Station::new();
    let res = async {
        // On start the forwarder connects once (online status), finds nothing, lingers, sleeps.
        let startup = rig.report(None, 0).await?;
        let per = DEVICES.iter().sum::<usize>();
        let warmup = rig.report(Some(station.cycle()), per).await?;
        let mut sessions = Vec::new();
        for i in 0..reports {
            let s = rig.report(Some(station.cycle()), per * (i + 2)).await?;
            eprintln!("{}: report {}/{reports}: {s:?}", sc.label(), i + 1);
            sessions.push(s);
        }
        Ok::<_, String>((startup, warmup, sessions, per * (reports + 1)))
    }
    .await;
    fwd_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    stop.cancel();
    let (startup, warmup, sessions, readings) = res.map_err(|e| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        format!(
            "{}: {e}\nsimulator log (last lines, newest first):\n{}",
            sc.label(),
            tail.join("\n")
        )
    })?;
    let downs = downs.lock().map(|d| d.clone()).unwrap_or_default();
    Ok(Outcome {
        scenario: sc,
        startup,
        warmup,
        sessions,
        downs,
        readings,
    })
}

fn run() -> Res<()> {
    support::require_mosquitto()?;
    support::require_socat()?;
    let reports = support::env_u64("GASDTU_BENCH_REPORTS", 10)?.clamp(1, 1000) as usize;
    if let Ok(f) = std::env::var("GASDTU_BENCH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(f)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let machine = support::machine();
    let started = support::utc_now();
    let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let dir = tmp.path();
    let (ca, cert, key) = support::make_pki(dir)?;
    let tls = BrokerTls {
        port: support::free_port()?,
        ca: ca.clone(),
        cert,
        key,
    };
    let tls_port = tls.port;
    // TLS 1.3 only on the broker's TLS listener (the last listener in the generated config).
    let broker = Mosquitto::with_client_auth(dir, false, Some(tls), false, "tls_version tlsv1.3")?;
    let plain = broker.port;
    let sub = Subscriber::start(plain, "gasdtu/#", "nb-bench-sub", false)?;
    sub.wait_subscribed(1, Duration::from_secs(20))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut scenarios = Vec::new();
    for encoding in [Encoding::Json, Encoding::Cbor] {
        for resume in [true, false] {
            scenarios.push(Scenario {
                model: "bg96",
                encoding,
                format: PayloadFormat::V1,
                resume,
            });
        }
    }
    // Data format 2 (schema once per message, positional values, decimal mantissas).
    scenarios.push(Scenario {
        model: "bg96",
        encoding: Encoding::Cbor,
        format: PayloadFormat::V2,
        resume: true,
    });
    for model in ["bc95", "bc66", "sim7080"] {
        scenarios.push(Scenario {
            model,
            encoding: Encoding::Cbor,
            format: PayloadFormat::V1,
            resume: true,
        });
    }
    let only = std::env::var("GASDTU_BENCH_ONLY").unwrap_or_default();
    let mut outs = Vec::new();
    for (i, sc) in scenarios.into_iter().enumerate() {
        let label = sc.label();
        if !only.split(',').any(|part| label.contains(part.trim())) {
            continue;
        }
        eprintln!("scenario {}: {}", i + 1, sc.label());
        let o = rt.block_on(scenario(dir, i, sc, &ca, tls_port, &sub, reports))?;
        outs.push(o);
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    let name = std::env::var("GASDTU_BENCH_OUT")
        .ok()
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .unwrap_or_else(|| NAME.to_string());
    support::publish(&name, &report::render(&outs, reports, &machine, &started))
}

fn main() {
    support::main_with(NAME, run);
}
