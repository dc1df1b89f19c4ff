//! Benchmark (issue 10): remote operations over MQTT with the real parts. A rcgen PKI, a
//! persistent mosquitto whose TLS listener requires client certificates (mutual TLS), one
//! `gasdtu simulate` child (units 1..=40 with the 10-point bench10 profile, unit 41 a
//! pressure transmitter with a writable setpoint), and the real `gasdtu run` of this build
//! with `[remote] keys = [<a key made by remote::sign::generate>]` and
//! `[remote.writes] "pcv1.setpoint"`. The ops side is one long-lived rumqttc client in this
//! process (mutual TLS, persistent session, QoS 1) subscribed to `cmd/res` and
//! `config/state`; every request is a signed envelope (`remote::request::envelope`).
//!
//! Two setups are measured one after the other, each fresh: (1) TCP_NODELAY on the broker
//! (`set_tcp_nodelay true`) and on the ops client, (2) mosquitto's and rumqttc's defaults
//! (Nagle on). The daemon sets TCP_NODELAY itself in both. Per setup:
//! 1. command round trip, publish -> `cmd/res` for that id at the ops client, one command at a
//!    time after a warm-up: `ping` (GASDTU_BENCH_CMDS, default 300), `read` of one point and
//!    `write` of the allowed point (both through the bus task; GASDTU_BENCH_BUS_CMDS, default
//!    50 each); p50/p90/p99/max per op;
//! 2. bursts of pings published back to back, 16 (the daemon's remote inbox) and
//!    GASDTU_BENCH_BURST (default 100): time until every result arrived, commands per second,
//!    each command's latency under that queue, and the daemon's session renewals meanwhile
//!    (`link.reconnects` from `status` commands before and after);
//! 3. setup 1 only: config push to applied for a 40-device config (40 Modbus TCP devices x
//!    10 points, the profile carried in the push): publish -> `config/state`
//!    `pending_confirm` and -> `applied`, GASDTU_BENCH_PUSHES times (default 10) alternating
//!    two versions (poll 5 s / 10 s) so every push changes the running config; payload size;
//!    the daemon's peak RSS (VmHWM).
//!
//! GASDTU_BENCH_KEEP=1 keeps each setup's directory (configs, daemon log) for inspection.
//! Fails (non-zero) only when it cannot measure: a prerequisite missing, a child died, a
//! request without its answer within its deadline, or an answer that is not the success path
//! being measured. Writes bench-results/remote_ops.txt. Run: `cargo bench --bench remote_ops`.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gasdtu::remote::request::envelope;
use gasdtu::remote::sign::{self, Kind, SigningKey};
use serde_json::{json, Value};
use support::ops::Ops;
use support::stats::stats_line;
use support::tls::{make_mutual_pki, MutualPki};
use support::*;

const GW: &str = "gw-bench";
const ROOT: &str = "gasdtu/gw-bench";
const DEVICES: u32 = 40;
const PCV_UNIT: u32 = 41;
/// A command without its result after this long is a failure, not a slow sample.
const CMD_DEADLINE: Duration = Duration::from_secs(30);
const PUSH_DEADLINE: Duration = Duration::from_secs(120);
/// Pause after each applied push before the next (the new bus tasks start polling).
const PUSH_PACE: Duration = Duration::from_secs(2);
/// A burst that fits the daemon's remote inbox (`REMOTE_INBOX` in src/gateway/mod.rs).
const SMALL_BURST: u64 = 16;

fn main() {
    main_with("remote_ops", run);
}

/// A received payload as JSON (results go through the outbox: JSON or CBOR).
fn decode(payload: &[u8]) -> Option<Value> {
    gasdtu::uplink::decode(payload)
        .ok()
        .or_else(|| serde_json::from_slice(payload).ok())
}

fn cmd_body(id: &str, op: &str, args: Value) -> String {
    json!({"id": id, "gw": GW, "expires": now_ms() + 300_000, "op": op, "args": args}).to_string()
}

/// Run one signed command and wait for its result: (round trip, result).
async fn command(
    ops: &mut Ops,
    key: &SigningKey,
    id: &str,
    op: &str,
    args: Value,
) -> Res<(Duration, Value)> {
    let payload = envelope(&cmd_body(id, op, args), Some((key, Kind::Cmd, GW)));
    let t0 = ops.publish("cmd/req", payload).await?;
    let until = t0 + CMD_DEADLINE;
    let res_topic = format!("{ROOT}/cmd/res");
    loop {
        let rx = ops
            .next(until)
            .await
            .ok_or_else(|| format!("command {id} ({op}): no result within {CMD_DEADLINE:?}"))?;
        if rx.topic != res_topic {
            continue;
        }
        let Some(v) = decode(&rx.payload) else {
            return Err(format!(
                "undecodable cmd/res: {}",
                String::from_utf8_lossy(&rx.payload)
            ));
        };
        if v["id"] == id {
            if v["status"] != "ok" {
                return Err(format!("command {id} ({op}) was not ok: {v}"));
            }
            return Ok((rx.at.duration_since(t0), v));
        }
    }
}

/// Ping until one is answered: the daemon's request subscription exists once its first
/// session is up (a request published before that is not queued for it).
async fn first_ping(ops: &mut Ops, key: &SigningKey) -> Res<()> {
    let res_topic = format!("{ROOT}/cmd/res");
    for n in 0..60 {
        let id = format!("hello-{n}");
        let payload = envelope(
            &cmd_body(&id, "ping", json!({})),
            Some((key, Kind::Cmd, GW)),
        );
        let t0 = ops.publish("cmd/req", payload).await?;
        while let Some(rx) = ops.next(t0 + Duration::from_secs(1)).await {
            if rx.topic == res_topic && decode(&rx.payload).is_some_and(|v| v["id"] == id) {
                return Ok(());
            }
        }
    }
    Err("the daemon answered no ping within 60 tries of 1 s".into())
}

/// The gateway config: `devices` bench10 devices `devNN` (one TCP bus each, like one IP per
/// meter) at `poll`, plus `pcv1` (pressure + a writable setpoint allowed for remote writes).
fn config_text(
    state: &Path,
    profiles: &Path,
    pki: &MutualPki,
    broker: u16,
    sim: u16,
    devices: u32,
    poll: &str,
) -> String {
    let mut s = format!(
        "[gateway]\nid = \"{GW}\"\nstate_dir = \"{}\"\nprofile_dirs = [\"{}\"]\n\n{}reconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\n\
         [remote]\nkeys = [\"{{KEY}}\"]\n\n[remote.writes]\n\"pcv1.setpoint\" = {{ min = 1, max = 100 }}\n\n\
         [buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim}\ntimeout = \"1s\"\n\n\
         [devices.pcv1]\nbus = \"lan\"\nunit = {PCV_UNIT}\npoll = \"1s\"\n\
         points.pressure = {{ table = \"holding\", address = 2, type = \"f32\" }}\n\
         points.setpoint = {{ table = \"holding\", address = 20, type = \"u16\", writable = true }}\n",
        state.display(),
        profiles.display(),
        pki.uplink_toml(broker),
    );
    for i in 1..=devices {
        let _ = write!(
            s,
            "\n[buses.bus{i:02}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim}\ntimeout = \"1s\"\n\
             \n[devices.dev{i:02}]\nbus = \"bus{i:02}\"\nunit = {i}\npoll = \"{poll}\"\nprofile = \"bench10\"\n"
        );
    }
    s
}

fn sha_hex(text: &str) -> String {
    sign::hex(&sign::sha256(text.as_bytes()))
}

/// A signed push of `text` (with the bench10 profile) as `version`.
fn push_payload(key: &SigningKey, version: &str, text: &str) -> Vec<u8> {
    let body = json!({
        "version": version,
        "gw": GW,
        "expires": now_ms() + 600_000,
        "sha256": sha_hex(text),
        "config": text,
        "profiles": {"bench10": PROFILE},
    })
    .to_string();
    envelope(&body, Some((key, Kind::Config, GW)))
}

/// Publish a push and wait for `pending_confirm` and `applied` about it: (to pending, to applied).
async fn push(ops: &mut Ops, version: &str, payload: Vec<u8>) -> Res<(Duration, Duration)> {
    let t0 = ops.publish("config/set", payload).await?;
    let until = t0 + PUSH_DEADLINE;
    let state_topic = format!("{ROOT}/config/state");
    let mut pending = None;
    loop {
        let rx = ops.next(until).await.ok_or_else(|| {
            format!(
                "push {version}: no `applied` within {PUSH_DEADLINE:?} (pending_confirm seen: {})",
                pending.is_some()
            )
        })?;
        if rx.topic != state_topic {
            continue;
        }
        let Some(v) = decode(&rx.payload) else {
            continue;
        };
        if v["push"]["version"] != version {
            continue;
        }
        match v["status"].as_str() {
            Some("pending_confirm") => pending = Some(rx.at.duration_since(t0)),
            Some("applied") => {
                let p = pending.ok_or_else(|| {
                    format!("push {version}: applied without pending_confirm before it: {v}")
                })?;
                return Ok((p, rx.at.duration_since(t0)));
            }
            _ => return Err(format!("push {version} not applied: {v}")),
        }
    }
}

/// The last `n` lines of the daemon's log, for an error message.
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

struct Knobs {
    cmds: u64,
    bus_cmds: u64,
    burst: u64,
    pushes: u64,
}

fn knob(name: &str, default: u64) -> Res<u64> {
    let v = env_u64(name, default)?;
    if !(1..=100_000).contains(&v) {
        return Err(format!("{name}={v}: must be 1..=100000"));
    }
    Ok(v)
}

fn run() -> Res<()> {
    let k = Knobs {
        cmds: knob("GASDTU_BENCH_CMDS", 300)?,
        bus_cmds: knob("GASDTU_BENCH_BUS_CMDS", 50)?,
        burst: knob("GASDTU_BENCH_BURST", 100)?,
        pushes: knob("GASDTU_BENCH_PUSHES", 10)?,
    };
    let machine = machine();
    let started = utc_now();
    let bin = gasdtu()?;
    require_mosquitto()?;
    let fast = scenario(&bin, &k, true)?;
    let nagle = scenario(&bin, &k, false)?;
    publish("remote_ops", &report(&k, &machine, &started, &fast, &nagle))
}

/// One complete setup (PKI, broker, simulator, daemon, ops client) and its measurements.
/// `nodelay`: TCP_NODELAY on the broker's sockets (`set_tcp_nodelay true`) and the ops
/// client's; otherwise both keep their defaults (Nagle on). The daemon always sets it. The
/// pushes run only in the `nodelay` scenario.
fn scenario(bin: &Path, k: &Knobs, nodelay: bool) -> Res<Measured> {
    // On the disk cargo uses for targets (not a tmpfs /tmp): each commit pays a real fsync.
    let dir =
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| format!("temp dir: {e}"))?;
    let d = dir.path();
    let pki = make_mutual_pki(d)?;
    let extra = if nodelay {
        "set_tcp_nodelay true\n"
    } else {
        ""
    };
    let tls = Some(pki.broker_tls(free_port()?));
    let mut broker = Mosquitto::with_client_auth(d, true, tls, true, extra)?;
    let tls_port = broker
        .tls
        .as_ref()
        .map(|t| t.port)
        .ok_or("no TLS listener")?;
    let profiles = d.join("profiles");
    std::fs::create_dir_all(&profiles).map_err(|e| format!("mkdir {profiles:?}: {e}"))?;
    std::fs::write(profiles.join("bench10.toml"), PROFILE).map_err(|e| format!("profile: {e}"))?;

    let sim_port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["simulate", "--seed", "1", "--log-level", "warn", "--tcp"])
        .arg(format!("127.0.0.1:{sim_port}"))
        .arg("--profile-dir")
        .arg(&profiles);
    for u in 1..=DEVICES {
        cmd.arg("--device").arg(format!("{u}:bench10"));
    }
    cmd.arg("--device").arg(format!("{PCV_UNIT}:pt-float"));
    let mut sim = Proc::spawn(
        "gasdtu simulate",
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    wait_port(sim_port, Duration::from_secs(10))?;

    let (pem, public) = sign::generate().map_err(|e| format!("key generation: {e}"))?;
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("signing key: {e}"))?;
    let public = sign::public_key_base64(&public);
    let state = d.join("state");
    let cfg = |devices: u32, poll: &str| {
        config_text(&state, &profiles, &pki, tls_port, sim_port, devices, poll)
            .replace("{KEY}", &public)
    };
    let config = d.join("gasdtu.toml");
    std::fs::write(&config, cfg(3, "1s")).map_err(|e| format!("write {config:?}: {e}"))?;
    check_config(bin, &config)?;
    let pushes = [cfg(DEVICES, "5s"), cfg(DEVICES, "10s")];
    for (n, text) in pushes.iter().enumerate() {
        let p = d.join(format!("push-{n}.toml"));
        std::fs::write(&p, text).map_err(|e| format!("write {p:?}: {e}"))?;
        check_config(bin, &p)?;
    }

    let log = d.join("daemon.log");
    let logf = std::fs::File::create(&log).map_err(|e| format!("create {log:?}: {e}"))?;
    let mut daemon = Proc::spawn(
        "gasdtu run",
        Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(d.join("gasdtu.sock"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf),
    )?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let pid = daemon.pid();
    let pushes = nodelay.then_some(&pushes);
    let measured = rt.block_on(async {
        let mut ops = Ops::connect(&pki, tls_port, "bench-ops", ROOT, nodelay).await?;
        measure(&mut ops, &key, k, pushes, pid).await
    });
    // A failure is explained by whichever child died, else by the daemon's log.
    let tail = || format!("\ndaemon log tail:\n{}", log_tail(&log, 30));
    daemon.alive().map_err(|e| format!("{e}{}", tail()))?;
    sim.alive()?;
    broker.alive()?;
    if std::env::var_os("GASDTU_BENCH_KEEP").is_some() {
        eprintln!("remote_ops: keeping {} (GASDTU_BENCH_KEEP)", d.display());
        let _ = dir.keep();
    }
    measured.map_err(|e| format!("{e}{}", tail()))
}

/// Publish -> `pending_confirm` and -> `applied` of the pushes.
struct Pushes {
    first: (Duration, Duration),
    each: Vec<(Duration, Duration)>,
    bytes: [usize; 2],
    hwm_kib: u64,
    rss_kib: u64,
}

/// `n` pings published back to back, then every result awaited.
struct Burst {
    n: u64,
    /// From the first publish to the last result.
    total: Duration,
    /// Each ping's publish -> result.
    each: Vec<Duration>,
    /// Session renewals of the daemon's uplink meanwhile (`link.reconnects` in `status`).
    reconnects: u64,
}

/// The daemon's `link.reconnects`, from a `status` command.
async fn reconnects(ops: &mut Ops, key: &SigningKey, id: &str) -> Res<u64> {
    let (_, v) = command(ops, key, id, "status", json!({})).await?;
    v["result"]["link"]["reconnects"]
        .as_u64()
        .ok_or_else(|| format!("status without link.reconnects: {v}"))
}

async fn burst(ops: &mut Ops, key: &SigningKey, tag: &str, n: u64) -> Res<Burst> {
    let before = reconnects(ops, key, &format!("st-{tag}-before")).await?;
    let payloads: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let id = format!("burst-{tag}-{i}");
            let p = envelope(
                &cmd_body(&id, "ping", json!({})),
                Some((key, Kind::Cmd, GW)),
            );
            (id, p)
        })
        .collect();
    let mut sent = std::collections::HashMap::new();
    let start = Instant::now();
    for (id, p) in payloads {
        sent.insert(id, ops.publish("cmd/req", p).await?);
    }
    let until = Instant::now() + CMD_DEADLINE;
    let (mut each, mut last) = (Vec::new(), start);
    while !sent.is_empty() {
        let rx = ops.next(until).await.ok_or_else(|| {
            format!(
                "burst: {} of {n} pings without a result within {CMD_DEADLINE:?}",
                sent.len()
            )
        })?;
        let Some(v) = decode(&rx.payload) else {
            continue;
        };
        let Some(t0) = v["id"].as_str().and_then(|id| sent.remove(id)) else {
            continue;
        };
        if v["status"] != "ok" {
            return Err(format!("a burst ping was not ok: {v}"));
        }
        each.push(rx.at.duration_since(t0));
        last = rx.at;
    }
    let after = reconnects(ops, key, &format!("st-{tag}-after")).await?;
    Ok(Burst {
        n,
        total: last.duration_since(start),
        each,
        reconnects: after.saturating_sub(before),
    })
}

/// Everything measured in one scenario.
struct Measured {
    ping: Vec<Duration>,
    read: Vec<Duration>,
    write: Vec<Duration>,
    bad_reads: usize,
    /// Session renewals (`link.reconnects`) during the one-at-a-time commands.
    reconnects_one_at_a_time: u64,
    bursts: Vec<Burst>,
    hwm_kib: u64,
    pushes: Option<Pushes>,
}

async fn measure(
    ops: &mut Ops,
    key: &SigningKey,
    k: &Knobs,
    pushes: Option<&[String; 2]>,
    pid: u32,
) -> Res<Measured> {
    first_ping(ops, key).await?;
    let read_args = || json!({"points": ["pcv1.pressure"]});
    let write_args = |v: u64| json!({"point": "pcv1.setpoint", "value": v});

    // Warm-up: every op's path a few times (TLS sessions, SQLite pages, bus connections).
    for i in 0..20 {
        command(ops, key, &format!("wu-ping-{i}"), "ping", json!({})).await?;
    }
    for i in 0..5 {
        command(ops, key, &format!("wu-read-{i}"), "read", read_args()).await?;
        command(
            ops,
            key,
            &format!("wu-write-{i}"),
            "write",
            write_args(50 + i),
        )
        .await?;
    }

    // 1. One at a time.
    let reconnects0 = reconnects(ops, key, "st-0").await?;
    let mut ping = Vec::new();
    for i in 0..k.cmds {
        let (d, v) = command(ops, key, &format!("ping-{i}"), "ping", json!({})).await?;
        if v["result"]["pong"] != true {
            return Err(format!("ping-{i}: unexpected result {v}"));
        }
        ping.push(d);
    }
    let (mut read, mut write, mut bad_reads) = (Vec::new(), Vec::new(), 0);
    for i in 0..k.bus_cmds {
        let (d, v) = command(ops, key, &format!("read-{i}"), "read", read_args()).await?;
        if v["result"]["values"][0]["quality"] != "good" {
            bad_reads += 1;
        }
        read.push(d);
        let value = 1 + i % 100;
        let (d, v) = command(ops, key, &format!("write-{i}"), "write", write_args(value)).await?;
        if v["result"]["readback"].as_f64() != Some(value as f64) {
            return Err(format!("write-{i}: read back is not {value}: {v}"));
        }
        write.push(d);
    }

    let reconnects_one_at_a_time = reconnects(ops, key, "st-1").await? - reconnects0;

    // 2. Bursts: one that fits the daemon's inbox, then the asked size.
    let mut bursts = Vec::new();
    for (tag, n) in [("small", SMALL_BURST), ("big", k.burst)] {
        bursts.push(burst(ops, key, tag, n).await?);
    }
    let hwm_kib = status_kib(pid, "VmHWM")?;

    // 3. Pushes: first from the small config to 40 devices (reported apart), then alternating
    // between the two 40-device versions; every version label is new.
    let pushes = match pushes {
        None => None,
        Some(texts) => {
            let bytes = [
                push_payload(key, "bench-00", &texts[0]).len(),
                push_payload(key, "bench-00", &texts[1]).len(),
            ];
            let first = push(ops, "bench-0", push_payload(key, "bench-0", &texts[0])).await?;
            let mut each = Vec::new();
            for i in 1..=k.pushes {
                tokio::time::sleep(PUSH_PACE).await;
                let version = format!("bench-{i}");
                let text = &texts[(i % 2) as usize];
                each.push(push(ops, &version, push_payload(key, &version, text)).await?);
            }
            // The daemon still answers after the last apply.
            command(ops, key, "after-pushes", "ping", json!({})).await?;
            Some(Pushes {
                first,
                each,
                bytes,
                hwm_kib: status_kib(pid, "VmHWM")?,
                rss_kib: status_kib(pid, "VmRSS")?,
            })
        }
    };
    Ok(Measured {
        ping,
        read,
        write,
        bad_reads,
        reconnects_one_at_a_time,
        bursts,
        hwm_kib,
        pushes,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn commands_section(o: &mut String, m: &Measured) {
    let _ = writeln!(o, "{}", stats_line("ping", &m.ping));
    let _ = writeln!(o, "{}", stats_line("read pcv1.pressure (bus)", &m.read));
    let _ = writeln!(o, "{}", stats_line("write pcv1.setpoint (bus)", &m.write));
    let _ = writeln!(
        o,
        "   reads with a quality other than good: {}; every write read back its value",
        m.bad_reads
    );
    let _ = writeln!(
        o,
        "   session renewals of the daemon's uplink during the one-at-a-time commands: {}",
        m.reconnects_one_at_a_time
    );
    for b in &m.bursts {
        let total = b.total.as_secs_f64();
        let _ = writeln!(
            o,
            "   burst: {} pings published back to back, the last result after {:.1} ms = {:.0} commands/s; session renewals meanwhile: {}",
            b.n,
            total * 1000.0,
            b.n as f64 / total.max(1e-9),
            b.reconnects
        );
        let _ = writeln!(
            o,
            "{}",
            stats_line(&format!("ping in the burst of {}", b.n), &b.each)
        );
    }
    let _ = writeln!(
        o,
        "   daemon peak RSS (VmHWM) after the commands: {:.1} MiB",
        m.hwm_kib as f64 / 1024.0
    );
}

fn report(k: &Knobs, machine: &str, started: &str, fast: &Measured, nagle: &Measured) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "remote_ops (cargo bench --bench remote_ops), started {started}"
    );
    let _ = writeln!(o, "{machine}");
    let _ = writeln!(
        o,
        "knobs: GASDTU_BENCH_CMDS={} GASDTU_BENCH_BUS_CMDS={} GASDTU_BENCH_BURST={} GASDTU_BENCH_PUSHES={}",
        k.cmds, k.bus_cmds, k.burst, k.pushes
    );
    let _ = writeln!(
        o,
        "setup: the real `gasdtu run` (bench profile = release, log level info to a file), mosquitto on loopback with \
         mutual TLS (require_certificate; persistence on) for the daemon and the ops client, `gasdtu simulate` over \
         Modbus TCP, state dir on the target directory's disk (real fsync); config: pcv1 (pressure + a setpoint in \
         [remote.writes]) + 3 bench10 devices polled every 1 s"
    );
    let _ = writeln!(
        o,
        "ops client: one rumqttc connection (TLS with a client certificate, persistent session) subscribed to \
         cmd/res and config/state, QoS 1; every request an Ed25519-signed envelope checked against [remote] keys"
    );
    let _ = writeln!(
        o,
        "round trip: from handing the PUBLISH to the ops client to the arrival of the matching message in its \
         event loop (same process, monotonic clock); one command at a time after 20 pings + 5 reads + 5 writes of warm-up"
    );
    let _ = writeln!(
        o,
        "per command the daemon commits two fsynced SQLite transactions of its own (begin: the id recorded as \
         running; finish: result + the cmd/res reply in the outbox + the command event), then the outbox seals the \
         reply (a third) before publishing it; the request's PUBACK follows the finish; the reply's PUBACK costs a \
         fourth (ack) after the answer left"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "1. commands, TCP_NODELAY on the broker (`set_tcp_nodelay true`) and the ops client (the daemon always sets it)"
    );
    commands_section(&mut o, fast);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "2. commands, mosquitto and rumqttc defaults (Nagle on in the broker and the ops client), a fresh setup"
    );
    commands_section(&mut o, nagle);
    let _ = writeln!(o);
    if let Some(p) = &fast.pushes {
        let mut pend: Vec<Duration> = p.each.iter().map(|p| p.0).collect();
        let mut appl: Vec<Duration> = p.each.iter().map(|p| p.1).collect();
        pend.sort();
        appl.sort();
        let med = |v: &[Duration]| ms(v[(v.len() - 1) / 2]);
        let max = |v: &[Duration]| ms(v[v.len() - 1]);
        let _ = writeln!(
            o,
            "3. config push -> applied (setup 1), 40-device config: 40 Modbus TCP devices x 10 points (one bus each) + \
             pcv1, the bench10 profile carried in the push; signed, sha256 checked, validated as by `gasdtu check`, \
             installed atomically (fsyncs), applied (every bus task restarted), confirmed once a PUBACK arrives after \
             the apply"
        );
        let _ = writeln!(
            o,
            "   push payload: {} bytes (poll 5 s version) / {} bytes (poll 10 s version)",
            p.bytes[0], p.bytes[1]
        );
        let _ = writeln!(
            o,
            "   first push (4 -> 41 devices, not in the figures below): pending_confirm after {:.1} ms, applied after {:.1} ms",
            ms(p.first.0),
            ms(p.first.1)
        );
        let _ = writeln!(
            o,
            "   {} pushes alternating poll 10 s / 5 s for the 40 devices, {} s after the previous `applied`:",
            p.each.len(),
            PUSH_PACE.as_secs()
        );
        let _ = writeln!(
            o,
            "   publish -> config/state pending_confirm: median {:>7.1} ms  max {:>7.1} ms",
            med(&pend),
            max(&pend)
        );
        let _ = writeln!(
            o,
            "   publish -> config/state applied:         median {:>7.1} ms  max {:>7.1} ms",
            med(&appl),
            max(&appl)
        );
        let each: Vec<String> = p
            .each
            .iter()
            .map(|p| format!("{:.0}/{:.0}", ms(p.0), ms(p.1)))
            .collect();
        let _ = writeln!(
            o,
            "   each (pending_confirm/applied ms): {}",
            each.join(" ")
        );
        let _ = writeln!(
            o,
            "   daemon peak RSS (VmHWM) after the pushes: {:.1} MiB (VmRSS then {:.1} MiB)",
            p.hwm_kib as f64 / 1024.0,
            p.rss_kib as f64 / 1024.0
        );
    }
    o
}
