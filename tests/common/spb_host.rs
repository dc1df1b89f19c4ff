//! The Sparkplug tests' independent host (issue 14): tests/py/sparkplug_host.py (pysparkplug
//! 0.6.1 on paho-mqtt) as a child process connected to the test broker, its stdout JSON lines
//! collected (`SpbHost::messages`, `wait_msgs`), commands sent on its stdin and answered by an
//! ack line (`SpbHost::command`). Every wait has a deadline.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{python, repo_root, Lines, Pki, Proc};

/// The host script, its collected stdout, and its stdin for commands.
pub struct SpbHost {
    proc: Proc,
    stdin: ChildStdin,
    out: Lines,
    /// Acks already handed out (each `command` takes the next one).
    acks_taken: usize,
}

impl SpbHost {
    /// Start the host on `127.0.0.1:port` (mutual TLS with `pki`'s client certificate)
    /// subscribed to `spBv1.0/<group>/#` under client id `id`; returns once the subscription
    /// is in place.
    pub fn start(pki: &Pki, port: u16, group: &str, id: &str) -> SpbHost {
        let script = repo_root().join("tests/py/sparkplug_host.py");
        let mut proc = Proc::spawn(
            "sparkplug host",
            Command::new(python())
                .arg(&script)
                .args(["--port", &port.to_string(), "--group", group])
                .arg("--ca")
                .arg(pki.path("ca.pem"))
                .arg("--cert")
                .arg(pki.path("client.pem"))
                .arg("--key")
                .arg(pki.path("client.key"))
                .args(["--client-id", id])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdin = proc.child.stdin.take().expect("host stdin piped");
        let out = Lines::collect(proc.child.stdout.take().expect("host stdout piped"));
        let host = SpbHost {
            proc,
            stdin,
            out,
            acks_taken: 0,
        };
        host.wait_subscribed(1, Duration::from_secs(20));
        host
    }

    /// Every line so far, parsed (a line that is not JSON fails the test: the host only
    /// prints JSON).
    pub fn lines(&self) -> Vec<Value> {
        self.out
            .snapshot()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("host printed {l:?}: {e}")))
            .collect()
    }

    /// Every Sparkplug message received so far, in arrival order, without the broker's
    /// redeliveries (DUP set, same topic, seq, bdSeq and timestamp as one received before:
    /// mosquitto resends what it had not recorded as acknowledged when it restarts).
    pub fn messages(&self) -> Vec<Value> {
        let key = |v: &Value| {
            (
                v["topic"].clone(),
                v["seq"].clone(),
                v["bd_seq"].clone(),
                v["timestamp"].clone(),
            )
        };
        let mut out: Vec<Value> = Vec::new();
        for v in self.lines() {
            if v.get("topic").is_none() || v.get("ack").is_some() {
                continue;
            }
            if v["dup"] == true && out.iter().any(|o| key(o) == key(&v)) {
                continue;
            }
            out.push(v);
        }
        out
    }

    /// Wait until the subscription was made `n` times in total (1 after the start, +1 per
    /// reconnect).
    pub fn wait_subscribed(&self, n: u64, deadline: Duration) {
        self.wait_line(&format!("host subscribed {n} times"), deadline, |v| {
            v["event"] == "subscribed" && v["n"].as_u64() >= Some(n)
        });
    }

    fn wait_line(&self, what: &str, deadline: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + deadline;
        loop {
            if let Some(v) = self.lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            if Instant::now() > end || self.proc_exited() {
                panic!(
                    "timed out after {deadline:?} waiting for {what}; host lines:\n{}",
                    self.out.snapshot().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn proc_exited(&self) -> bool {
        // Lines stop coming when the host died; try_wait needs &mut, so look at /proc.
        !std::path::Path::new(&format!("/proc/{}", self.proc.child.id())).exists()
    }

    /// Wait until the messages received so far satisfy `pred` (given all of them, in
    /// order); returns its answer.
    pub fn wait_msgs<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let end = Instant::now() + deadline;
        loop {
            let msgs = self.messages();
            if let Some(t) = pred(&msgs) {
                return t;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {deadline:?} waiting for {what}; {} messages:\n{}",
                    msgs.len(),
                    summary(&msgs)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send one command (a JSON object, see the script) and wait (at most 15 s) for its ack;
    /// panics when the ack says `ok: false`.
    pub fn command(&mut self, cmd: Value) -> Value {
        let ack = self.try_command(cmd.clone());
        assert_eq!(ack["ok"], true, "host refused {cmd}: {ack}");
        ack
    }

    /// `command` without judging the ack.
    pub fn try_command(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").expect("write a command to the host");
        self.stdin.flush().expect("flush the host's stdin");
        let n = self.acks_taken;
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let acks: Vec<Value> = self
                .lines()
                .into_iter()
                .filter(|v| v.get("ack").is_some())
                .collect();
            if acks.len() > n {
                self.acks_taken = n + 1;
                return acks[n].clone();
            }
            assert!(
                Instant::now() < end,
                "no ack for {cmd} within 15 s; host lines:\n{}",
                self.out.snapshot().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// NCMD `Node Control/Rebirth` = true to `edge`.
    pub fn rebirth(&mut self, edge: &str) -> Value {
        self.command(json!({"cmd": "rebirth", "edge": edge}))
    }

    /// Retained STATE of host `host`.
    pub fn state(&mut self, host: &str, online: bool) -> Value {
        self.command(json!({"cmd": "state", "host": host, "online": online}))
    }
}

/// One line per message: type, device, seq, bdSeq and the metrics' name/alias=value.
pub fn summary(msgs: &[Value]) -> String {
    msgs.iter()
        .map(|m| {
            let metrics = m["metrics"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|x| {
                            format!(
                                "{}/{}={}{}",
                                x["name"].as_str().unwrap_or("?"),
                                x["alias"],
                                x["value"],
                                if x["is_historical"] == true {
                                    "(h)"
                                } else {
                                    ""
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!(
                "{}{} {} seq={} bd={} {}{}",
                m["type"].as_str().unwrap_or("?"),
                if m["dup"] == true { "(dup)" } else { "" },
                m["device"].as_str().unwrap_or("-"),
                m["seq"],
                m["bd_seq"],
                metrics,
                m.get("error")
                    .map(|e| format!(" ERROR {e}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The metric called `name` of a decoded message, if any.
pub fn metric<'a>(msg: &'a Value, name: &str) -> Option<&'a Value> {
    msg["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
}

/// The message's type ("NBIRTH", "DDATA", ...).
pub fn kind(msg: &Value) -> &str {
    msg["type"].as_str().unwrap_or("")
}
