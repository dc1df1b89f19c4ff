//! Commissioning friction of issue 12, with the real binary as a field engineer runs it against
//! `gasdtu simulate` over Modbus TCP: addresses in hex and as Modicon 4xxxx/3xxxx numbers (read,
//! write, scan), a configured device and point by name (`gasdtu read pt1 pressure`, `gasdtu
//! write pt3 setpoint 321.5`), a reply short of registers failing like the daemon ("expected 2
//! registers, got 0", through a stand-in daemon socket that answers with no values), and a scan
//! of a TCP bus with lying units that prints readable lines, goes on after a dropped
//! connection and gives advice that fits TCP, and raw reads with implied `--decimals`. Every
//! wait is on a condition with a deadline.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Run `gasdtu args` with stdin from /dev/null (fails the test after 60 s).
fn cli(args: &[&str]) -> Run {
    gasdtu_run(args)
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// `gasdtu simulate --tcp` (seed 3) on a fresh loopback port with these extra arguments.
fn simulator(extra: &[&str]) -> (Proc, u16) {
    simulate_tcp_args(&[&["--seed", "3", "--log-level", "warn"], extra].concat())
}

/// pt1 (unit 1) and pt3 (unit 3) are pt-float transmitters: pt1 by its profile, pt3 with an
/// inline writable setpoint on the transmitter's pressure registers.
fn site(dir: &Path, port: u16) -> String {
    let config = dir.join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "friction"
state_dir = "{state}"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "500ms"

[devices.pt1]
bus = "lan"
unit = 1
profile = "pt-float"

[devices.pt3]
bus = "lan"
unit = 3

[devices.pt3.points.setpoint]
table = "holding"
address = 2
type = "f32"
scale = 100.0
unit = "kPa"
writable = true

[devices.pt3.points.temperature]
table = "holding"
address = 6
type = "f32"
unit = "degC"
"#,
            state = dir.display()
        ),
    )
    .expect("write the config");
    config.display().to_string()
}

#[test]
fn hex_and_modicon_addresses_say_what_they_used() {
    let (_sim, port) = simulator(&[
        "--device",
        "1:pt-float",
        "--set",
        "1:pressure=450.2",
        "--set",
        "1:temperature=12.5",
    ]);
    let ep = format!("127.0.0.1:{port}");
    let scaled = ["--type", "f32", "--scale", "100", "--json"];
    // (address arguments, stderr note)
    #[rustfmt::skip]
    let rows: &[(&[&str], &str)] = &[
        (&["--address", "2"], ""),
        (&["--address", "0x2"], ""),
        (&["--address", "0X0002"], ""),
        (&["--modicon", "--address", "40003"], "gasdtu read: Modicon 40003 = a holding register at address 2 (0x0002)\n"),
        (&["--modicon", "--address", "400003"], "gasdtu read: Modicon 400003 = a holding register at address 2 (0x0002)\n"),
    ];
    for (at, note) in rows {
        let mut args = vec!["read", "--tcp", &ep];
        args.extend_from_slice(at);
        args.extend_from_slice(&scaled);
        let r = cli(&args);
        assert_eq!(r.code, 0, "{at:?}: {r:?}");
        let l = &json_lines(&r.stdout)[0];
        assert_eq!(
            (l["address"].as_u64(), l["text"].as_str()),
            (Some(2), Some("450.2")),
            "{at:?}"
        );
        assert_eq!(r.stderr, *note, "{at:?}");
    }
    // A 3xxxx number reads the input table (the transmitter has none: the simulator's zeros).
    let r = cli(&[
        "read",
        "--tcp",
        &ep,
        "--modicon",
        "--address",
        "30003",
        "--type",
        "f32",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("= an input register at address 2"),
        "{r:?}"
    );
    let l = &json_lines(&r.stdout)[0];
    assert_eq!(
        (l["table"].as_str(), l["address"].as_u64()),
        (Some("input"), Some(2))
    );

    // Bad forms are refused before the bus is touched.
    #[rustfmt::skip]
    let bad: &[(&[&str], &str)] = &[
        (&["read", "--tcp", &ep, "--address", "0x1G"], "is not an address: 0-based, decimal (22) or hex (0x16)"),
        (&["read", "--tcp", &ep, "--address", "65536"], "is not an address"),
        (&["read", "--tcp", &ep, "--modicon", "--address", "0x16"], "not a decimal register number"),
        (&["read", "--tcp", &ep, "--modicon", "--address", "20001"], "no table starts with 2"),
        (&["read", "--tcp", &ep, "--modicon", "--address", "30011", "--table", "holding"], "names an input register, but --table holding was given"),
        (&["write", "--tcp", &ep, "--modicon", "--address", "30003", "--value", "1", "--yes"], "is an input register, which is read-only"),
        (&["scan", "--tcp", &ep, "--modicon", "--address", "4x"], "not a decimal register number"),
    ];
    for (args, want) in bad {
        let r = cli(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }

    // write and scan take the same forms.
    let r = cli(&[
        "write",
        "--tcp",
        &ep,
        "--modicon",
        "--address",
        "40003",
        "--type",
        "f32",
        "--scale",
        "100",
        "--value",
        "321.5",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        "gasdtu write: Modicon 40003 = a holding register at address 2 (0x0002)\n"
    );
    assert!(
        r.stdout.contains("read back: 321.5 (raw 404D C28F)"),
        "{r:?}"
    );
    // (probe address arguments, stderr)
    #[rustfmt::skip]
    let probes: &[(&[&str], &str)] = &[
        (&["--address", "0x6"], ""),
        (&["--modicon", "--address", "40007"],
            "gasdtu scan: probing Modicon 40007 = a holding register at address 6 (0x0006)\n"),
    ];
    for (at, note) in probes {
        let mut args = vec!["scan", "--tcp", &ep, "--from", "1", "--to", "1"];
        args.extend_from_slice(at);
        let r = cli(&args);
        assert_eq!(r.code, 0, "{at:?}: {r:?}");
        assert!(
            r.stdout
                .starts_with("unit   1  answers  holding 6 = 4148\n"),
            "{at:?}: {r:?}"
        );
        assert_eq!(r.stderr, *note, "{at:?}");
    }
}

#[test]
fn configured_devices_and_points_by_name() {
    let (_sim, port) = simulator(&[
        "--device",
        "1:pt-float",
        "--device",
        "3:pt-float",
        "--set",
        "1:pressure=450.2",
        "--set",
        "1:temperature=12.5",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), port);
    let c = ["--config", config.as_str()];
    let run = |args: &[&str]| {
        let mut all = c.to_vec();
        all.extend_from_slice(args);
        cli(&all)
    };

    // One point: the decoded, scaled value with its unit and where it came from.
    let r = run(&["read", "pt1", "pressure"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "pt1  unit 1  bus lan");
    assert!(
        lines[2].starts_with("pressure  450.2 kPa  holding 2 f32 ABCD x 100  4090 "),
        "{r:?}"
    );
    let r = run(&["read", "pt1", "pressure", "--json"]);
    let l = &json_lines(&r.stdout)[0];
    assert_eq!(l["device"], "pt1");
    assert_eq!(l["point"], "pressure");
    assert_eq!(l["text"], "450.2");
    assert_eq!(l["engineering_unit"], "kPa");
    assert_eq!(l["unit"], 1);
    // The whole device.
    let r = run(&["read", "pt1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\npressure     450.2 kPa "), "{r:?}");
    assert!(r.stdout.contains("\ntemperature  12.5 degC "), "{r:?}");

    // A writable point: engineering units in, read back with the unit.
    let r = run(&["write", "pt3", "setpoint", "321.5", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        "pt3.setpoint  unit 3  holding 2: write 321.5 kPa as f32 ABCD = registers 404D C28F\n\
         written; read back: 321.5 kPa (raw 404D C28F)\n"
    );
    let r = run(&["read", "pt3", "setpoint", "--json"]);
    assert_eq!(json_lines(&r.stdout)[0]["text"], "321.5");
    // Negative values as a positional VALUE.
    let r = run(&["write", "pt3", "setpoint", "-12.5", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("read back: -12.5 kPa"), "{r:?}");

    // Refusals, before the bus is touched (exit 2).
    #[rustfmt::skip]
    let bad: &[(&[&str], &str)] = &[
        (&["read", "pt9"], "no device `pt9` in the config (devices: pt1, pt3)"),
        (&["read", "pt1", "flow"], "device `pt1` has no point `flow` (points: pressure, temperature)"),
        (&["read", "pt1", "pressure", "--address", "3"], "--address cannot be used with a configured DEVICE and POINT"),
        (&["read", "pt1", "pressure", "--tcp", "127.0.0.1:1", "--scale", "2"], "--tcp, --scale cannot be used"),
        (&["write", "pt1", "pressure", "5", "--yes"], "pt1.pressure is not writable in the config (set `writable = true` on the point, or write it with raw addressing: --bus lan --unit 1 --address 2)"),
        (&["write", "pt3", "setpoint", "--yes"], "the value to write is missing"),
        (&["write", "pt3", "setpoint", "fast", "--yes"], "is not a number"),
    ];
    for (args, want) in bad {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
    // Raw addressing stays available, with the config's bus by name.
    let r = run(&[
        "read",
        "--bus",
        "lan",
        "--unit",
        "3",
        "--address",
        "6",
        "--type",
        "f32",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// A stand-in for the daemon's status socket that owns a TCP bus at `port` and answers every
/// read with `values` (a daemon of another version, or a bug, must not make `read` succeed on
/// nothing).
fn fake_daemon(socket: &Path, port: u16, values: serde_json::Value) {
    let listener = UnixListener::bind(socket).expect("bind the stand-in socket");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_err() {
                continue;
            }
            let req: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let reply = if req["op"] == "buses" {
                serde_json::json!({"ok": true, "buses": [{"name": "lan",
                    "target": {"transport": "tcp", "host": "127.0.0.1", "port": port}}]})
            } else {
                serde_json::json!({"ok": true, "bus": "lan", "values": values})
            };
            let _ = writeln!(conn, "{reply}");
        }
    });
}

#[test]
fn a_reply_without_the_registers_asked_for_fails() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gasdtu.sock");
    let port = free_port(); // nothing listens: the read must go through the stand-in daemon
    fake_daemon(&socket, port, serde_json::json!([]));
    let ep = format!("127.0.0.1:{port}");
    let sock = socket.to_str().unwrap();
    let args = [
        "read",
        "--tcp",
        &ep,
        "--socket",
        sock,
        "--address",
        "0",
        "--type",
        "f32",
    ];
    let r = cli(&args);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(
        r.stderr.ends_with(
            "gasdtu read: unit 1: expected 2 registers, got 0, reading holding 0 (count 2)\n"
        ),
        "{r:?}"
    );
    let mut json = args.to_vec();
    json.push("--json");
    let r = cli(&json);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        json_lines(&r.stdout)[0]["error"],
        "expected 2 registers, got 0"
    );

    // A device that answers one register short is refused by the link's reply check.
    let (_sim, port) = simulator(&["--device", "2:pt-float", "--fault", "2:short"]);
    let ep = format!("127.0.0.1:{port}");
    let r = cli(&[
        "read",
        "--tcp",
        &ep,
        "--unit",
        "2",
        "--address",
        "2",
        "--type",
        "f32",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("does not cover the 2 requested"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
}

#[test]
fn scan_on_tcp_prints_readable_lines_and_tcp_advice() {
    #[rustfmt::skip]
    let (_sim, port) = simulator(&[
        "--device", "1:pt-float", "--device", "2:pt-float", "--device", "3:pt-float",
        "--device", "4:pt-float", "--device", "5:pt-float", "--device", "6:pt-float",
        "--fault", "2:wrong-unit", "--fault", "3:garbage", "--fault", "4:crc",
        "--fault", "5:exception:11", "--fault", "6:exception:2",
    ]);
    let ep = format!("127.0.0.1:{port}");
    let r = cli(&[
        "scan",
        "--tcp",
        &ep,
        "--from",
        "1",
        "--to",
        "8",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let out: Vec<&str> = r.stdout.lines().collect();
    assert!(
        out[0].starts_with("unit   1  answers  holding 0 = "),
        "{r:?}"
    );
    assert_eq!(
        out[1],
        "unit   2  garbled  invalid reply: reply for function 3 has unit 3, expected 2"
    );
    assert!(
        out[2].starts_with("unit   3  garbled  invalid reply: "),
        "{r:?}"
    );
    // Unit 4's lying MBAP length breaks the connection or its frame: either way one short
    // line at most, and the scan goes on to unit 8.
    let rest: Vec<&str> = out[3..]
        .iter()
        .copied()
        .filter(|l| !l.starts_with("unit   4  garbled  "))
        .collect();
    assert_eq!(
        rest[0],
        "unit   6  answers  with exception 2 (illegal data address)"
    );
    assert!(
        rest[1].starts_with(&format!("2 of 8 unit ids answered on {ep} in "))
            && rest[1].ends_with(": 1 6"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("the gateway reported no device (exception 10/11) at 5\n"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("(the device does not answer in Modbus TCP framing there: a serial device server in transparent mode needs --rtu-over-tcp"),
        "{r:?}"
    );
    // No internal dumps, no serial-line advice, nothing on stderr.
    for never in ["Header {", "baud", "parity", "3D ", "scan stopped"] {
        assert!(!r.stdout.contains(never), "{never:?} in {r:?}");
    }
    assert!(r.stderr.is_empty(), "{r:?}");
    assert!(
        r.stdout.lines().all(|l| l.chars().count() < 240),
        "a line too long to read: {r:?}"
    );

    // Nobody at these ids: advice for TCP, exit 1.
    let r = cli(&[
        "scan",
        "--tcp",
        &ep,
        "--from",
        "9",
        "--to",
        "10",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("nothing answered although the connection opened"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("baud"), "{r:?}");
}

#[test]
fn scan_on_tcp_says_when_every_unit_id_answers() {
    // pymodbus (an independent implementation) answers every unit id: its devices 1 and 2 with
    // data, any other with exception 4.
    let port = free_port();
    let mut py = Proc::spawn(
        "pymodbus",
        Command::new(python())
            .arg(repo_root().join("tests/py/pymodbus_device.py"))
            .args(["--tcp", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    py.wait_stdout_line("ready", Duration::from_secs(30));
    wait_port(port, Duration::from_secs(10));
    let ep = format!("127.0.0.1:{port}");
    let r = cli(&["scan", "--tcp", &ep, "--from", "1", "--to", "12"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(": 1-12\n"), "{r:?}");
    assert!(
        r.stdout.ends_with(
            "every unit id answered: this Modbus TCP device ignores the unit id (use the one \
             its manual gives, often 1 or 255)\n"
        ),
        "{r:?}"
    );
}

#[test]
fn a_named_read_goes_through_the_running_daemon() {
    let (_sim, port) = simulator(&["--device", "1:pt-float", "--set", "1:pressure=450.2"]);
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), port);
    let socket = dir.path().join("run/gasdtu.sock");
    let _daemon = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .args(["run", "--config", &config, "--socket"])
            .arg(&socket)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for(
        "the daemon's status socket",
        Duration::from_secs(20),
        || {
            socket_request(&socket, b"status\n", Duration::from_secs(2))
                .ok()
                .filter(|r| r.contains("\"gateway\""))
        },
    );
    let sock = socket.to_str().unwrap();
    let r = cli(&[
        "--config", &config, "read", "pt1", "pressure", "--socket", sock, "--json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        "gasdtu read: through the running daemon (bus lan)\n"
    );
    assert_eq!(json_lines(&r.stdout)[0]["text"], "450.2");
}

#[test]
fn a_serial_bus_by_name_named_points_and_serial_advice() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path(), "rs485");
    let _sim = Proc::spawn(
        "gasdtu simulate",
        Command::new(gasdtu())
            .args(["simulate", "--seed", "3", "--log-level", "warn", "--serial"])
            .arg(&pty.b)
            .args([
                "--parity",
                "none",
                "--device",
                "1:pt-float",
                "--device",
                "2:pt-float",
            ])
            .args(["--fault", "2:crc", "--set", "1:pressure=450.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "serial"
state_dir = "{state}"
profile_dirs = []

[buses.rs485]
kind = "rtu"
port = "{port}"
parity = "none"
timeout = "300ms"

[devices.pt1]
bus = "rs485"
unit = 1
profile = "pt-float"
"#,
            state = dir.path().display(),
            port = pty.a.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // The simulator opens its end of the line when it starts: wait until pt1 answers.
    let r = wait_for("pt1 on the serial line", Duration::from_secs(20), || {
        let r = cli(&["--config", config, "read", "pt1", "pressure", "--json"]);
        (r.code == 0).then_some(r)
    });
    assert_eq!(json_lines(&r.stdout)[0]["text"], "450.2");
    assert_eq!(json_lines(&r.stdout)[0]["engineering_unit"], "kPa");

    let r = cli(&[
        "--config",
        config,
        "scan",
        "--bus",
        "rs485",
        "--from",
        "1",
        "--to",
        "3",
        "--modicon",
        "--address",
        "40003",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let out: Vec<&str> = r.stdout.lines().collect();
    assert!(
        out[0].starts_with("unit   1  answers  holding 2 = 4090"),
        "{r:?}"
    );
    assert_eq!(out[1], "unit   2  garbled  CRC error in reply");
    assert!(
        out[2].starts_with(&format!(
            "1 of 3 unit ids answered on {} in ",
            pty.a.display()
        )),
        "{r:?}"
    );
    assert_eq!(
        out[3],
        "garbled replies from 2 (check baud rate, parity and wiring)"
    );
}

/// A named read of a `scale_from` point reads its decimals register too and scales as the
/// poller does (the pt-int16 profile: pressure's decimals live in holding 3).
#[test]
fn a_named_read_applies_the_decimals_read_from_the_device() {
    let (_sim, port) = simulator(&[
        "--device",
        "2:pt-int16",
        "--set",
        "2:pressure_decimals=2",
        "--set",
        "2:pressure=-12.34",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"decimals\"\nstate_dir = \"{}\"\nprofile_dirs = []\n\n\
             [buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = \"500ms\"\n\n\
             [devices.pt2]\nbus = \"lan\"\nunit = 2\nprofile = \"pt-int16\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let r = cli(&["--config", &config, "read", "pt2", "pressure", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let l = &json_lines(&r.stdout)[0];
    assert_eq!(l["point"], "pressure");
    assert_eq!(l["text"], "-12.34", "{r:?}");
    assert_eq!(l["engineering_unit"], "kPa");
}

/// Raw addressing with implied decimals: `--decimals N` is the config's `decimals = N` (raw x
/// 10^-N, exact), refused with `--scale` and on a float.
#[test]
fn a_raw_read_takes_implied_decimals() {
    // The transmitter set to 2 decimals holds -12.34 kPa as the register -1234.
    let (_sim, port) = simulator(&[
        "--device",
        "2:pt-int16",
        "--set",
        "2:pressure_decimals=2",
        "--set",
        "2:pressure=-12.34",
    ]);
    let ep = format!("127.0.0.1:{port}");
    let raw = [
        "read",
        "--tcp",
        &ep,
        "--unit",
        "2",
        "--address",
        "4",
        "--json",
    ];
    for (decimals, text) in [("2", "-12.34"), ("3", "-1.234"), ("0", "-1234")] {
        let r = cli(&[&raw[..], &["--type", "i16", "--decimals", decimals]].concat());
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(json_lines(&r.stdout)[0]["text"], text, "{r:?}");
    }
    for (extra, want) in [
        (
            &["--type", "i16", "--decimals", "2", "--scale", "0.01"][..],
            "cannot be used with",
        ),
        (
            &["--type", "f32", "--decimals", "1"][..],
            "integer and BCD types only",
        ),
    ] {
        let r = cli(&[&raw[..], extra].concat());
        assert_ne!(r.code, 0, "{extra:?}: {r:?}");
        assert!(
            r.stdout.is_empty() && r.stderr.contains(want),
            "{extra:?}: {r:?}"
        );
    }
}
