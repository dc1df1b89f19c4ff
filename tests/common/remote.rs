//! Shared harness of the remote-operations tests (issue 10): the daemon and the ops CLI as
//! real processes, the config of a gateway under test, and a `RemoteGw` that signs commands
//! and pushes for one gateway and reads its answers (`cmd/res`, `config/state`, events, data)
//! out of what a `Subscriber` on `<root>/#` collected. Every wait has a deadline.
//!
//! API in short:
//! - `start_daemon` (fresh log, default socket) and `run_daemon` (appends to the log, its own
//!   socket beside the config: for tests that restart the daemon);
//! - `GwConfig` + `pressure_device` / `valve_device`: the TOML of a gateway with one Modbus TCP
//!   bus, an `[uplink]` over mutual TLS and `[remote]` with one key (and `[remote.writes]`);
//! - `RemoteGw`: id, topic root and signing key of a gateway; `cmd_body`, `signed_cmd`, `push`
//!   build requests; `seen`, `results`, `result`, `ask`, `first_ping`, `states`, `state`,
//!   `push_events`, `data_from` read the answers;
//! - `ops_toml`, `run_gasdtu`, `Ran`: the ops CLI.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gasdtu::remote::request::envelope;
use gasdtu::remote::sign::{self, Kind, SigningKey};
use gasdtu::time::now_ms;
use serde_json::{json, Value};

use super::{gasdtu, wait_until, Pki, Proc, Publisher, Subscriber};

/// `gasdtu run --config <config>` with stderr (info logs) into a fresh `log`.
pub fn start_daemon(config: &Path, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// `gasdtu run --config <config> --socket <config>.sock`, logging (info) appended to `log`:
/// one log across restarts, and a status socket of its own.
pub fn run_daemon(config: &Path, log: &Path) -> Proc {
    run_daemon_with(config, log, &mut Command::new(gasdtu()))
}

/// `run_daemon` through a prepared command: `cmd` is the program to start (the binary itself,
/// or a wrapper such as `faketime` with the binary as its first argument) with its
/// environment; the daemon's arguments are appended.
pub fn run_daemon_with(config: &Path, log: &Path, cmd: &mut Command) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc::spawn(
        "gasdtu run",
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--socket")
            .arg(config.with_extension("sock"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// The parts of a gateway config for the remote tests (see `GwConfig::text`).
pub struct GwConfig<'a> {
    pub gw: &'a str,
    /// The state directory is `<dir>/state`.
    pub dir: &'a Path,
    pub pki: &'a Pki,
    pub broker_port: u16,
    pub modbus_port: u16,
    pub public: &'a [u8; 32],
    /// `[buses.lan] timeout`.
    pub bus_timeout: &'a str,
    /// The `[devices.*]` tables, each ending with a blank line (`pressure_device`,
    /// `valve_device`).
    pub devices: &'a str,
    /// The lines of `[remote.writes]`; empty: no such table.
    pub writes: &'a str,
}

impl GwConfig<'_> {
    /// `[gateway]` (id, state_dir), one TCP bus `lan` to 127.0.0.1:`modbus_port`, the devices,
    /// `[uplink]` to `localhost:broker_port` with the PKI's CA and client certificate (fast
    /// reconnects, 16 KiB payloads), and `[remote]` with `public` as its one key, last in the
    /// file (then `[remote.writes]` when `writes` is not empty).
    pub fn text(&self) -> String {
        let writes = if self.writes.is_empty() {
            String::new()
        } else {
            format!("\n[remote.writes]\n{}", self.writes)
        };
        format!(
            r#"[gateway]
id = "{gw}"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {modbus_port}
timeout = "{timeout}"

{devs}{uplink}reconnect_min = "200ms"
reconnect_max = "1s"
max_payload = 16384

[remote]
keys = ["{public}"]
{writes}"#,
            gw = self.gw,
            state = self.dir.join("state").display(),
            modbus_port = self.modbus_port,
            timeout = self.bus_timeout,
            devs = self.devices,
            uplink = self.pki.uplink_toml(self.broker_port),
            public = sign::public_key_base64(self.public),
        )
    }
}

/// A device `name` at `unit` with one point `pressure` (holding register 2, `ty`, scale 100).
pub fn pressure_device(name: &str, unit: u32, poll: &str, ty: &str) -> String {
    format!(
        "[devices.{name}]\nbus = \"lan\"\nunit = {unit}\npoll = \"{poll}\"\n\
         points.pressure = {{ table = \"holding\", address = 2, type = \"{ty}\", scale = 100.0 }}\n\n"
    )
}

/// Device `pcv1` at unit 1: `pressure` (f32), writable coils `valve` (10) and `spare` (11),
/// and with `setpoint` a writable u16 holding register 20.
pub fn valve_device(poll: &str, setpoint: bool) -> String {
    let mut d = format!(
        "[devices.pcv1]\nbus = \"lan\"\nunit = 1\npoll = \"{poll}\"\n\
         points.pressure = {{ table = \"holding\", address = 2, type = \"f32\", scale = 100.0 }}\n\
         points.valve = {{ table = \"coil\", address = 10, type = \"bit\", writable = true }}\n\
         points.spare = {{ table = \"coil\", address = 11, type = \"bit\", writable = true }}\n"
    );
    if setpoint {
        d.push_str(
            "points.setpoint = { table = \"holding\", address = 20, type = \"u16\", writable = true }\n",
        );
    }
    d.push('\n');
    d
}

/// A command body (see docs/remote.md).
pub fn cmd_body(id: &str, gw: &str, expires_ms: i64, op: &str, args: Value) -> String {
    json!({"id": id, "gw": gw, "expires": expires_ms, "op": op, "args": args}).to_string()
}

/// Lowercase hex SHA-256 of `text` (a push's `sha256`).
pub fn sha_hex(text: &str) -> String {
    sign::hex(&sign::sha256(text.as_bytes()))
}

/// One gateway as ops sees it: its id, topic root, the signing key its `[remote]` trusts
/// (`public`; `pem` is the PKCS#8 file text for the ops CLI), and how long to wait for an
/// answer.
pub struct RemoteGw {
    pub id: &'static str,
    pub root: String,
    pub key: SigningKey,
    pub pem: String,
    pub public: [u8; 32],
    pub wait: Duration,
}

impl RemoteGw {
    /// Gateway `id` (root `gasdtu/<id>`) with a fresh key pair.
    pub fn new(id: &'static str, wait: Duration) -> RemoteGw {
        let (pem, public) = sign::generate().unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        RemoteGw {
            id,
            root: format!("gasdtu/{id}"),
            key,
            pem,
            public,
            wait,
        }
    }

    /// `<root>/<leaf>`.
    pub fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.root)
    }

    /// `body` in an envelope signed by this gateway's key for `cmd/req`.
    pub fn signed_cmd(&self, body: &str) -> Vec<u8> {
        envelope(body, Some((&self.key, Kind::Cmd, self.id)))
    }

    /// A signed `config/set` envelope pushing `text` as `version` (expires in 2 minutes).
    pub fn push(&self, version: &str, text: &str, confirm_within: &str) -> Vec<u8> {
        let body = json!({
            "version": version,
            "gw": self.id,
            "expires": now_ms() + 120_000,
            "sha256": sha_hex(text),
            "config": text,
            "confirm_within": confirm_within,
        })
        .to_string();
        envelope(&body, Some((&self.key, Kind::Config, self.id)))
    }

    /// Every message `sub` saw under `<root>/`, decoded as JSON (others skipped): topic suffix,
    /// value, retain flag.
    pub fn seen(&self, sub: &Subscriber) -> Vec<(String, Value, bool)> {
        let prefix = format!("{}/", self.root);
        sub.snapshot()
            .into_iter()
            .filter_map(|m| {
                let suffix = m.topic.strip_prefix(&prefix)?.to_string();
                Some((suffix, serde_json::from_slice(&m.payload).ok()?, m.retain))
            })
            .collect()
    }

    /// The `cmd/res` results of command `id` so far.
    pub fn results(&self, sub: &Subscriber, id: &str) -> Vec<Value> {
        self.seen(sub)
            .into_iter()
            .filter(|(t, v, _)| t == "cmd/res" && v["id"] == id)
            .map(|(_, v, _)| v)
            .collect()
    }

    /// Wait for the first result of command `id`.
    pub async fn result(&self, sub: &Subscriber, id: &str) -> Value {
        wait_until(&format!("the result of {id}"), self.wait, || {
            self.results(sub, id).into_iter().next()
        })
        .await
    }

    /// Publish `payload` on `cmd/req` and wait for the result of `id`.
    pub async fn ask(
        &self,
        ops: &Publisher,
        sub: &Subscriber,
        id: &str,
        payload: Vec<u8>,
    ) -> Value {
        ops.publish(&self.topic("cmd/req"), payload, false).await;
        self.result(sub, id).await
    }

    /// Ping (ids `<prefix>0`, `<prefix>1`, ...) until one is answered: the daemon's
    /// subscriptions exist once its first session is up (both request subscriptions are
    /// granted together, so `config/set` is subscribed too). Panics with the daemon's `log`
    /// after 30 tries of 1 s.
    pub async fn first_ping(
        &self,
        ops: &Publisher,
        sub: &Subscriber,
        prefix: &str,
        log: &Path,
    ) -> Value {
        for n in 0..30 {
            let id = format!("{prefix}{n}");
            let body = cmd_body(&id, self.id, now_ms() + 60_000, "ping", json!({}));
            ops.publish(&self.topic("cmd/req"), self.signed_cmd(&body), false)
                .await;
            let got = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    if let Some(r) = self.results(sub, &id).into_iter().next() {
                        return r;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            if let Ok(r) = got {
                return r;
            }
        }
        panic!(
            "no ping answered within 30 tries; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// `config/state` reports about push `version` with `status`, with their retain flags.
    pub fn states(&self, sub: &Subscriber, version: &str, status: &str) -> Vec<(Value, bool)> {
        self.seen(sub)
            .into_iter()
            .filter(|(t, v, _)| {
                t == "config/state" && v["push"]["version"] == version && v["status"] == status
            })
            .map(|(_, v, r)| (v, r))
            .collect()
    }

    /// Wait for a `config/state` about push `version` with `status`; panics with every
    /// `config/state` seen and the daemon's `log`.
    pub async fn state(
        &self,
        sub: &Subscriber,
        version: &str,
        status: &str,
        log: &Path,
    ) -> (Value, bool) {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(s) = self.states(sub, version, status).into_iter().next() {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "no config/state {status} for {version}; seen: {:?}\nlog:\n{}",
                    self.seen(sub)
                        .into_iter()
                        .filter(|(t, _, _)| t == "config/state")
                        .collect::<Vec<_>>(),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Events `config_push` with `status` for push `version`.
    pub fn push_events(&self, sub: &Subscriber, version: &str, status: &str) -> usize {
        self.seen(sub)
            .into_iter()
            .filter(|(t, v, _)| {
                t == "event"
                    && v["event"] == "config_push"
                    && v["version"] == version
                    && v["status"] == status
            })
            .count()
    }

    /// `data` messages with a reading of device `dev`.
    pub fn data_from(&self, sub: &Subscriber, dev: &str) -> usize {
        self.seen(sub)
            .into_iter()
            .filter(|(t, v, _)| {
                t == "data"
                    && v["data"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|d| d["dev"] == dev))
            })
            .count()
    }
}

/// The `[ops]` file of `gasdtu cmd`/`gasdtu push` reaching `localhost:port` with this PKI's CA
/// and client certificate, signing with `key_file`.
pub fn ops_toml(pki: &Pki, port: u16, key_file: &Path, timeout: &str) -> String {
    format!(
        "[ops]\nhost = \"localhost\"\nport = {port}\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nkey_file = \"{}\"\ntimeout = \"{timeout}\"\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display(),
        key_file.display(),
    )
}

/// What a finished CLI run printed.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Run the real binary with `args` to completion (off the async runtime's threads).
pub async fn run_gasdtu(args: Vec<String>) -> Ran {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = Command::new(gasdtu())
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run gasdtu {args:?}: {e}"));
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: start.elapsed(),
        }
    })
    .await
    .unwrap()
}
