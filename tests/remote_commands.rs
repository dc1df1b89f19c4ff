//! Remote commands end to end (issue 10, part E1) with the real parts: the real binary
//! (`gasdtu run`) with `[uplink]` to a persistent mosquitto over mutual TLS and `[remote]`
//! with a key made by `remote::sign::generate`, a `gasdtu simulate` device behind a Modbus
//! tap that counts the write requests on the wire, an ops publisher and a subscriber.
//!
//! One daemon serves every case in order (each answer is matched by its command id):
//! ping round trip; a signed write executes once and reads back; the same id again returns
//! the stored result and the device sees no second write; expired, bad signature, unsigned,
//! unknown key, wrong gateway, not in `[remote.writes]`, out of range and wrong type are
//! refused with their codes and never written; read, status, config/get, ack and resend
//! answer (a resend never sends the `publish = false` point); every command leaves a `command` event with id, op, status and signer; ~200
//! seeded malformed envelopes never crash it and it still answers a ping; a
//! malformed config push is refused on `config/state`; a command
//! published while the daemon is stopped (its persistent session made by the first run)
//! runs once after it starts again; a reload (SIGHUP) that adds a point to
//! `[remote.writes]` lets it be written; a reload that removes `[remote]` drops the subscription
//! and the broker session (a command sent meanwhile never runs, also after `[remote]` is back).
//! A second daemon is killed while a write is on the
//! wire: the redelivered command is answered `unknown_outcome` and never written again.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::remote::{cmd_body as body, start_daemon, valve_device, GwConfig, RemoteGw};
use common::{mutual_tls_broker, simulate_tcp, wait_until, ModbusTap, Publisher, Subscriber};
use gasdtu::remote::request::envelope;
use gasdtu::remote::sign::{self, Kind, SigningKey};
use gasdtu::time::now_ms;
use serde_json::{json, Value};

const GW: &str = "gw-rc";
const WAIT: Duration = Duration::from_secs(20);

/// The daemon's config: one simulated device behind `modbus_port` with a valve (coil), a
/// spare coil and a setpoint (u16), all writable, and a local point (`publish = false`, stored,
/// never sent, not even by a resend); `[remote]` with `public`, and `[remote.writes]`
/// allowing the valve and the setpoint (1..=100).
fn config_text(
    dir: &Path,
    pki: &common::Pki,
    broker: u16,
    modbus_port: u16,
    public: &[u8; 32],
    timeout: &str,
    poll: &str,
) -> String {
    GwConfig {
        gw: GW,
        dir,
        pki,
        broker_port: broker,
        modbus_port,
        public,
        bus_timeout: timeout,
        devices: &valve_device(poll, true).replacen(
            "\n\n",
            "\npoints.temperature = { table = \"holding\", address = 6, type = \"f32\", \
             publish = false }\n\n",
            1,
        ),
        writes: "\"pcv1.valve\" = {}\n\"pcv1.setpoint\" = { min = 1, max = 100 }\n",
    }
    .text()
}

fn assert_refused(r: &Value, status: &str, code: &str) {
    assert_eq!(r["status"], status, "{r}");
    assert_eq!(r["error"]["code"], code, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a refusal says why: {r}"
    );
}

/// Tiny deterministic generator for the malformed batch (fixed seed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// ~200 malformed or hostile payloads: byte flips, truncations and insertions of a valid
/// signed envelope (returned first, to be run before the batch), wrong JSON types, bodies that are not commands, oversized payloads.
fn malformed(gw: &RemoteGw, seed: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut rng = XorShift(seed);
    let exp = now_ms() + 60_000;
    let good = gw.signed_cmd(&body(
        "fz",
        GW,
        exp,
        "write",
        json!({"point": "pcv1.valve", "value": false}),
    ));
    let mut out: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        vec![0xff, 0xfe, 0x00],
        br#"{"v":1}"#.to_vec(),
        br#"{"v":2,"body":"{}"}"#.to_vec(),
        br#"{"v":1,"body":""}"#.to_vec(),
        br#"{"v":1,"body":"x","key":"0011223344556677"}"#.to_vec(),
        br#"{"v":1,"body":"x","key":"zz","sig":"AAAA"}"#.to_vec(),
        br#"{"v":1,"body":"x","v":1}"#.to_vec(),
        vec![b'{'; 9000],
        gw.signed_cmd("not json"),
        gw.signed_cmd(r#"{"id":"fz-a","gw":"gw-rc","expires":1,"op":"write"}"#),
        gw.signed_cmd(&body("fz-b", GW, exp, "reboot", json!({}))),
        gw.signed_cmd(&body(
            "fz-c",
            GW,
            exp,
            "write",
            json!({"point": "pcv1.valve"}),
        )),
        gw.signed_cmd(&body("fz-d", GW, exp, "read", json!({"points": []}))),
        gw.signed_cmd(&body("fz-e", GW, exp, "read", json!({"points": ["nodot"]}))),
        gw.signed_cmd(&body("fz-f", GW, exp, "ack", json!({"occurrence": -1}))),
        gw.signed_cmd(&body(
            "fz-g",
            GW,
            exp,
            "resend",
            json!({"device": "pcv1", "from": 0, "to": 1}),
        )),
        gw.signed_cmd(&body(&"x".repeat(65), GW, exp, "ping", json!({}))),
        gw.signed_cmd(&body("fz-h", GW, i64::MAX, "ping", json!({}))),
        gw.signed_cmd(&body("fz-i", GW, exp, "ping", json!({"extra": 1}))),
    ];
    while out.len() < 200 {
        let mut p = good.clone();
        match rng.below(4) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(p.len());
                    p[i] ^= 1 << rng.below(8);
                }
            }
            1 => p.truncate(rng.below(p.len())),
            2 => {
                let i = rng.below(p.len());
                let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                p.splice(i..i, junk);
            }
            _ => {
                let i = rng.below(p.len());
                const BYTES: &[u8] = b"{}[]\",:\\0\x00";
                p[i] = BYTES[rng.below(BYTES.len())];
            }
        }
        out.push(p);
    }
    (good, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_commands_run_exactly_once_and_refusals_never_execute() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float"], &[]);
    let tap = ModbusTap::start(sim_port);
    let gw = RemoteGw::new(GW, WAIT);
    let key = &gw.key;
    let (other_pem, _) = sign::generate().unwrap();
    let other = SigningKey::from_pkcs8_pem(&other_pem).unwrap();

    let config = dir.path().join("gasdtu.toml");
    let text = config_text(
        dir.path(),
        &pki,
        broker.port,
        tap.port,
        &gw.public,
        "500ms",
        "1s",
    );
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = start_daemon(&config, &log);

    let sub = Subscriber::start(
        &pki,
        broker.port,
        &format!("{}/#", gw.root),
        "rc-sub",
        false,
    );
    sub.wait_subscribed(1, WAIT).await;
    let ops = Publisher::start(&pki, broker.port, "rc-ops");
    let cmd_req = gw.topic("cmd/req");
    let exp = || now_ms() + 60_000;

    // The daemon's subscription exists once its first session is up: ping until answered.
    let pong = gw.first_ping(&ops, &sub, "p", &log).await;
    // -- ping round trip
    assert_eq!(pong["status"], "ok", "{pong}");
    assert_eq!(pong["result"]["pong"], true, "{pong}");
    assert_eq!(pong["result"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(pong["gw"], GW);
    assert!(pong["seq"].is_u64(), "results carry seq: {pong}");

    // -- a signed write executes once and reads back
    let w1 = gw.signed_cmd(&body(
        "w1",
        GW,
        exp(),
        "write",
        json!({"point": "pcv1.valve", "value": true}),
    ));
    let before = tap.writes();
    let r = gw.ask(&ops, &sub, "w1", w1.clone()).await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["readback"], true, "{r}");
    assert_eq!(tap.writes(), before + 1, "one write on the wire");

    // -- the same id again: the stored result, and no second write
    ops.publish(&cmd_req, w1, false).await;
    let again = wait_until("the repeated w1 answered", WAIT, || {
        let rs = gw.results(&sub, "w1");
        (rs.len() >= 2).then(|| rs[1].clone())
    })
    .await;
    assert_eq!(again["status"], "ok");
    assert_eq!(
        again["at"], r["at"],
        "the stored result, not a new execution"
    );
    assert_eq!(tap.writes(), before + 1, "a repeated id never writes again");

    // -- refusals: never executed
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "x-expired",
            gw.signed_cmd(&body(
                "x-expired",
                GW,
                now_ms() - 1_000,
                "write",
                json!({"point": "pcv1.valve", "value": false}),
            )),
            "expired",
            "expired",
        ),
        (
            "x-badsig",
            envelope(
                &body(
                    "x-badsig",
                    GW,
                    exp(),
                    "write",
                    json!({"point": "pcv1.valve", "value": false}),
                ),
                Some((key, Kind::Cmd, "gw-other")),
            ),
            "refused",
            "bad_signature",
        ),
        (
            "x-unsigned",
            envelope(&body("x-unsigned", GW, exp(), "ping", json!({})), None),
            "refused",
            "unsigned",
        ),
        (
            "x-unknown-key",
            envelope(
                &body(
                    "x-unknown-key",
                    GW,
                    exp(),
                    "write",
                    json!({"point": "pcv1.valve", "value": false}),
                ),
                Some((&other, Kind::Cmd, GW)),
            ),
            "refused",
            "unknown_key",
        ),
        (
            "x-wronggw",
            gw.signed_cmd(&body(
                "x-wronggw",
                "gw-other",
                exp(),
                "write",
                json!({"point": "pcv1.valve", "value": false}),
            )),
            "refused",
            "wrong_gateway",
        ),
        (
            "x-notallowed",
            gw.signed_cmd(&body(
                "x-notallowed",
                GW,
                exp(),
                "write",
                json!({"point": "pcv1.spare", "value": true}),
            )),
            "refused",
            "not_allowed",
        ),
        (
            "x-range",
            gw.signed_cmd(&body(
                "x-range",
                GW,
                exp(),
                "write",
                json!({"point": "pcv1.setpoint", "value": 500}),
            )),
            "refused",
            "out_of_range",
        ),
        (
            "x-type",
            gw.signed_cmd(&body(
                "x-type",
                GW,
                exp(),
                "write",
                json!({"point": "pcv1.valve", "value": 1}),
            )),
            "refused",
            "out_of_range",
        ),
    ];
    let before = tap.writes();
    for (id, payload, status, code) in cases {
        let r = gw.ask(&ops, &sub, id, payload).await;
        assert_refused(&r, status, code);
    }
    assert_eq!(
        tap.writes(),
        before,
        "no refused command reached the device"
    );

    // -- a number write, then a live read of it with quality
    let r = gw
        .ask(
            &ops,
            &sub,
            "w2",
            gw.signed_cmd(&body(
                "w2",
                GW,
                exp(),
                "write",
                json!({"point": "pcv1.setpoint", "value": 42}),
            )),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["readback"].as_f64(), Some(42.0), "{r}");
    let r = gw
        .ask(
            &ops,
            &sub,
            "r1",
            gw.signed_cmd(&body(
                "r1",
                GW,
                exp(),
                "read",
                json!({"points": ["pcv1.setpoint", "pcv1.valve"]}),
            )),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    let v = &r["result"]["values"];
    assert_eq!(v[0]["point"], "pcv1.setpoint");
    assert_eq!(v[0]["value"].as_f64(), Some(42.0), "{r}");
    assert_eq!(v[0]["quality"], "good");
    assert_eq!(v[1]["value"], true, "{r}");
    let r = gw
        .ask(
            &ops,
            &sub,
            "r2",
            gw.signed_cmd(&body(
                "r2",
                GW,
                exp(),
                "read",
                json!({"points": ["pcv1.nope"]}),
            )),
        )
        .await;
    assert_refused(&r, "error", "not_found");

    // -- status, config/get, ack, resend
    let r = gw
        .ask(
            &ops,
            &sub,
            "s1",
            gw.signed_cmd(&body("s1", GW, exp(), "status", json!({}))),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["devices"]["enabled"], 1, "{r}");
    assert_eq!(r["result"]["link"]["state"], "connected", "{r}");
    let r = gw
        .ask(
            &ops,
            &sub,
            "c1",
            gw.signed_cmd(&body("c1", GW, exp(), "config/get", json!({}))),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["config"], text.as_str());
    assert_eq!(
        r["result"]["sha256"],
        sign::hex(&sign::sha256(text.as_bytes()))
    );
    let r = gw
        .ask(
            &ops,
            &sub,
            "a1",
            gw.signed_cmd(&body("a1", GW, exp(), "ack", json!({"occurrence": 999}))),
        )
        .await;
    assert_refused(&r, "error", "not_found");
    let hist = |sub: &Subscriber| {
        gw.seen(sub)
            .into_iter()
            .filter(|(_, v, _)| v["hist"] == true && v["data"][0]["dev"] == "pcv1")
            .count()
    };
    let hist_before = hist(&sub);
    // Only readings the broker has acknowledged (and the store has marked delivered) can be
    // resent; the first of them may still be on its way: ask again until one is there (each
    // ask is a new command id; an empty resend changes nothing).
    let resend_end = Instant::now() + WAIT;
    let mut attempt = 0;
    let r = loop {
        attempt += 1;
        let id = format!("h{attempt}");
        let r = gw
            .ask(
                &ops,
                &sub,
                &id,
                gw.signed_cmd(&body(
                    &id,
                    GW,
                    exp(),
                    "resend",
                    json!({"device": "pcv1", "from": now_ms() - 3_600_000, "to": now_ms()}),
                )),
            )
            .await;
        // Before the first commit the device has no history yet: `not_found`, asked again.
        let early = r["status"] == "error" && r["error"]["code"] == "not_found";
        if !early {
            assert_eq!(r["status"], "ok", "{r}");
        }
        if r["result"]["readings"].as_u64().is_some_and(|n| n >= 1) || Instant::now() > resend_end {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        r["result"]["readings"].as_u64().is_some_and(|n| n >= 1),
        "the delivered readings of the last hour are resent: {r}"
    );
    wait_until("a resent hist message", WAIT, || {
        (hist(&sub) > hist_before).then_some(())
    })
    .await;
    // Every resent reading arrives, and none of the local point's (stored, never sent).
    let pcv1_reads = |sub: &Subscriber, hist: bool, skip: usize| {
        gw.seen(sub)
            .into_iter()
            .filter(|(_, v, _)| v["hist"] == hist && v["data"][0]["dev"] == "pcv1")
            .skip(skip)
            .flat_map(|(_, v, _)| {
                v["data"][0]["reads"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|r| {
                r["v"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .keys()
                    .cloned()
                    .collect::<Vec<String>>()
            })
            .collect::<Vec<String>>()
    };
    let resent = r["result"]["readings"].as_u64().unwrap_or(0) as usize;
    let seen = wait_until("every resent reading", WAIT, || {
        let v = pcv1_reads(&sub, true, hist_before);
        (v.len() >= resent).then_some(v)
    })
    .await;
    assert!(!seen.contains(&"temperature".to_string()), "{seen:?}");
    assert!(seen.contains(&"pressure".to_string()), "{seen:?}");
    let live = pcv1_reads(&sub, false, 0);
    assert!(live.contains(&"pressure".to_string()) && !live.contains(&"temperature".to_string()));

    // -- the audit trail: one command event per answer, with id, op, status and signer
    let signer = format!("key {}", key.id());
    wait_until("the command events of w1", WAIT, || {
        let evs: Vec<Value> = gw
            .seen(&sub)
            .into_iter()
            .filter(|(_, v, _)| v["event"] == "command" && v["id"] == "w1")
            .map(|(_, v, _)| v)
            .collect();
        (evs.len() >= 2).then_some(evs)
    })
    .await
    .iter()
    .for_each(|e| {
        assert_eq!(e["op"], "write", "{e}");
        assert_eq!(e["status"], "ok", "{e}");
        assert_eq!(e["signer"], signer.as_str(), "{e}");
    });
    wait_until("the command event of x-notallowed", WAIT, || {
        gw.seen(&sub).into_iter().find(|(_, v, _)| {
            v["event"] == "command"
                && v["id"] == "x-notallowed"
                && v["status"] == "refused"
                && v["error"] == "not_allowed"
        })
    })
    .await;

    // -- malformed and hostile payloads never crash it; it still answers afterwards
    // The batch mutates the envelope of `fz`, which ran first: a mutant that is still valid
    // (e.g. whitespace inserted between tokens) is a repeat of `fz` and never writes again.
    let (fz, batch) = malformed(&gw, 0x5eed_1234_abcd_0001);
    let r = gw.ask(&ops, &sub, "fz", fz).await;
    assert_eq!(r["status"], "ok", "{r}");
    let before = tap.writes();
    for p in batch {
        ops.publish(&cmd_req, p, false).await;
    }
    let r = gw
        .ask(
            &ops,
            &sub,
            "p-after",
            gw.signed_cmd(&body("p-after", GW, exp(), "ping", json!({}))),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );
    assert_eq!(tap.writes(), before, "no malformed request wrote anything");
    let r = gw.result(&sub, "fz-b").await;
    assert_refused(&r, "refused", "bad_request");
    // Those without a readable id are not answered (nobody could match it) but counted.
    let r = gw
        .ask(
            &ops,
            &sub,
            "s2",
            gw.signed_cmd(&body("s2", GW, exp(), "status", json!({}))),
        )
        .await;
    assert!(
        r["result"]["commands_unanswerable"]
            .as_u64()
            .is_some_and(|n| n >= 10),
        "{r}"
    );
    assert!(
        gw.results(&sub, "").is_empty()
            && gw
                .seen(&sub)
                .iter()
                .all(|(t, v, _)| t != "cmd/res" || v["id"].is_string()),
        "no answer without an id"
    );

    // -- a malformed config push is refused on config/state, nothing stalls (tests/remote_push.rs
    // covers pushes)
    ops.publish(&gw.topic("config/set"), b"{}".to_vec(), false)
        .await;
    let (_, state, _) = wait_until("config/state", WAIT, || {
        gw.seen(&sub)
            .into_iter()
            .find(|(t, _, _)| t == "config/state")
    })
    .await;
    assert_eq!(state["status"], "rejected", "{state}");
    assert!(
        state["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{state}"
    );

    // -- offline: published while the daemon is stopped, run once after it starts again
    common::sigterm(&daemon.child);
    common::wait_exit(&mut daemon.child, Duration::from_secs(20)).expect("daemon exits on SIGTERM");
    let before = tap.writes();
    ops.publish(
        &cmd_req,
        gw.signed_cmd(&body(
            "off1",
            GW,
            exp(),
            "write",
            json!({"point": "pcv1.setpoint", "value": 7}),
        )),
        false,
    )
    .await;
    let _daemon = start_daemon(&config, &dir.path().join("daemon2.log"));
    let r = gw.result(&sub, "off1").await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["readback"].as_f64(), Some(7.0), "{r}");
    assert_eq!(tap.writes(), before + 1, "the queued command wrote once");

    // -- a reload (SIGHUP) changes what may be written: the service follows the running config
    let daemon = _daemon;
    let text2 = text.replace(
        "\"pcv1.valve\" = {}",
        "\"pcv1.valve\" = {}\n\"pcv1.spare\" = {}",
    );
    assert_ne!(text2, text);
    std::fs::write(&config, &text2).unwrap();
    common::signal(daemon.child.id(), "HUP");
    wait_until("the reload applied", WAIT, || {
        gw.seen(&sub)
            .into_iter()
            .find(|(_, v, _)| v["event"] == "config_applied")
    })
    .await;
    let r = gw
        .ask(
            &ops,
            &sub,
            "w-spare",
            gw.signed_cmd(&body(
                "w-spare",
                GW,
                exp(),
                "write",
                json!({"point": "pcv1.spare", "value": true}),
            )),
        )
        .await;
    assert_eq!(r["status"], "ok", "allowed after the reload: {r}");
    assert_eq!(r["result"]["readback"], true, "{r}");
    let r = gw
        .ask(
            &ops,
            &sub,
            "c2",
            gw.signed_cmd(&body("c2", GW, exp(), "config/get", json!({}))),
        )
        .await;
    assert_eq!(
        r["result"]["sha256"],
        sign::hex(&sign::sha256(text2.as_bytes())),
        "{r}"
    );

    // -- [remote] removed by a reload: no subscription, and the broker's session is dropped,
    // so a command published meanwhile never runs, also after [remote] comes back.
    let applied = |sub: &Subscriber| {
        gw.seen(sub)
            .iter()
            .filter(|(_, v, _)| v["event"] == "config_applied")
            .count()
    };
    let n_applied = applied(&sub);
    let cut = text2.find("[remote]").unwrap();
    std::fs::write(&config, &text2[..cut]).unwrap();
    common::signal(daemon.child.id(), "HUP");
    wait_until("the reload without [remote]", WAIT, || {
        (applied(&sub) > n_applied).then_some(())
    })
    .await;
    let before = tap.writes();
    ops.publish(
        &cmd_req,
        gw.signed_cmd(&body(
            "gone1",
            GW,
            exp(),
            "write",
            json!({"point": "pcv1.setpoint", "value": 9}),
        )),
        false,
    )
    .await;
    std::fs::write(&config, &text2).unwrap();
    common::signal(daemon.child.id(), "HUP");
    // Requests are delivered in order: once a later ping is answered, gone1 would have been.
    gw.first_ping(&ops, &sub, "back", &dir.path().join("daemon2.log"))
        .await;
    assert!(
        gw.results(&sub, "gone1").is_empty(),
        "a command sent while [remote] was off never runs"
    );
    assert_eq!(tap.writes(), before);
}

/// A daemon killed (SIGKILL) while a write is on the wire: the broker redelivers the command
/// (it was never acknowledged) and the next run answers it `unknown_outcome` / `interrupted`
/// without writing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_interrupted_by_a_kill_is_never_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    // Every reply of the device comes 3 s late: the write stays on the wire long enough.
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float"], &["1:slow:3s"]);
    let tap = ModbusTap::start(sim_port);
    let gw = RemoteGw::new(GW, WAIT);
    let config = dir.path().join("gasdtu.toml");
    let text = config_text(
        dir.path(),
        &pki,
        broker.port,
        tap.port,
        &gw.public,
        "10s",
        "1h",
    );
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = start_daemon(&config, &log);
    let sub = Subscriber::start(
        &pki,
        broker.port,
        &format!("{}/#", gw.root),
        "ri-sub",
        false,
    );
    sub.wait_subscribed(1, WAIT).await;
    let ops = Publisher::start(&pki, broker.port, "ri-ops");
    gw.first_ping(&ops, &sub, "ip", &log).await;

    let before = tap.writes();
    ops.publish(
        &gw.topic("cmd/req"),
        gw.signed_cmd(&body(
            "int1",
            GW,
            now_ms() + 60_000,
            "write",
            json!({"point": "pcv1.valve", "value": true}),
        )),
        false,
    )
    .await;
    wait_until("the write on the wire", WAIT, || {
        (tap.writes() > before).then_some(())
    })
    .await;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(
        gw.results(&sub, "int1").is_empty(),
        "no result before the kill"
    );

    let _daemon = start_daemon(&config, &dir.path().join("daemon2.log"));
    let r = gw.result(&sub, "int1").await;
    assert_refused(&r, "unknown_outcome", "interrupted");
    assert_eq!(tap.writes(), before + 1, "never written again");
}
