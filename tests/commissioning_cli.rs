//! The commissioning commands (`gasdtu read`, `write`, `scan`) as a field engineer runs them:
//! the real binary against pymodbus (an independent Modbus implementation) over Modbus TCP, RTU
//! on a pseudo-terminal pair, and RTU over TCP through socat. Checks decoded output, JSON
//! lines, one-line errors and the exit codes (0 ok, 1 Modbus error, 2 bad arguments). The
//! same commands also run against the built-in simulator (`gasdtu simulate`) with pinned
//! values and injected faults (exception, CRC, dead unit, garbage).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn pymodbus(args: &[&str]) -> Proc {
    let mut p = Proc::spawn(
        "pymodbus",
        Command::new(python())
            .arg(repo_root().join("tests/py/pymodbus_device.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    p.wait_stdout_line("ready", Duration::from_secs(30));
    p
}

/// pymodbus serving units 1 and 2 over Modbus TCP; returns the process and "127.0.0.1:PORT".
fn tcp_device() -> (Proc, String) {
    let port = free_port();
    let py = pymodbus(&["--tcp", &port.to_string()]);
    wait_port(port, Duration::from_secs(10));
    (py, format!("127.0.0.1:{port}"))
}

/// pymodbus on one end of a pseudo-terminal pair (a silent RS-485 line for other units).
fn serial_device(dir: &std::path::Path) -> (PtyPair, Proc) {
    let pty = PtyPair::new(dir, "rs485");
    let py = pymodbus(&["--serial", pty.b.to_str().unwrap()]);
    (pty, py)
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn read_decodes_every_type_from_an_independent_device() {
    let (_py, ep) = tcp_device();
    // (arguments, expected "text" of each item, expected raw hex of the first item)
    #[rustfmt::skip]
    let rows: &[(&str, &[&str], &str)] = &[
        ("--address 0 --type f32", &["101.325"], "42CA A666"),
        ("--address 2 --type f32 --order CDAB", &["15.5"], "0000 4178"),
        ("--address 4 --type u32", &["3000000000"], "B2D0 5E00"),
        ("--address 6 --type i16", &["-1234"], "FB2E"),
        ("--address 7 --type bcd16", &["1234"], "1234"),
        ("--address 7 --type bcd16 --scale 0.01", &["12.34"], "1234"),
        ("--address 8 --type f64 --order DCBA", &["123456.789"], "C976 BE9F 0C24 FE40"),
        ("--address 12 --type intreal --order DCBA", &["987654.32"], "0612 0F00 0AD7 A33E"),
        ("--address 16 --type bcd48 --scale 0.0001", &["9876.5432"], "0000 9876 5432"),
        ("--address 16 --type bcd48", &["98765432"], "0000 9876 5432"),
        ("--table input --address 0 --count 4", &["42", "43", "44", "45"], "002A"),
        ("--table coil --address 0 --count 8", &["1", "0", "1", "1", "0", "0", "0", "1"], "1"),
        ("--address 7 --type bit --bit 2", &["1"], "1234"),
        ("--unit 2 --address 0", &["7"], "0007"),
    ];
    for (args, texts, hex) in rows {
        let mut argv = vec!["read", "--tcp", &ep, "--json"];
        argv.extend(args.split_whitespace());
        let r = gasdtu_run(&argv);
        assert_eq!(r.code, 0, "{args}: {r:?}");
        let lines = json_lines(&r.stdout);
        let got: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert_eq!(got, *texts, "{args}");
        assert_eq!(lines[0]["hex"], *hex, "{args}");
    }
    // Exact numbers in JSON: u32 above 2^31 stays an exact positive integer.
    let r = gasdtu_run(&[
        "read",
        "--tcp",
        &ep,
        "--json",
        "--address",
        "4",
        "--type",
        "u32",
    ]);
    assert_eq!(
        json_lines(&r.stdout)[0]["value"],
        serde_json::json!(3_000_000_000u64)
    );

    // The human table: heading, address, raw hex and value per item.
    let r = gasdtu_run(&[
        "read",
        "--tcp",
        &ep,
        "--address",
        "0",
        "--type",
        "f32",
        "--count",
        "4",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "unit 1  holding  f32 ABCD");
    assert_eq!(lines[1], "address  raw        value");
    assert_eq!(lines[2], "      0  42CA A666  101.325");
    assert!(lines[3].starts_with("      2  0000 4178  "), "{}", lines[3]);
}

#[test]
fn modbus_errors_are_one_liners_with_exit_1() {
    let (_py, ep) = tcp_device();
    let r = gasdtu_run(&["read", "--tcp", &ep, "--address", "40"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stderr.trim(),
        "gasdtu read: unit 1: exception 2 (illegal data address), reading holding 40 (count 1)"
    );
    assert!(r.stdout.is_empty(), "{r:?}");

    let r = gasdtu_run(&["read", "--tcp", &ep, "--address", "40", "--json"]);
    assert_eq!(r.code, 1);
    let l = &json_lines(&r.stdout)[0];
    assert_eq!(l["error"], "exception 2 (illegal data address)");
    assert_eq!(l["address"], 40);

    // Nobody listening.
    let closed = format!("127.0.0.1:{}", free_port());
    let r = gasdtu_run(&["read", "--tcp", &closed, "--address", "0"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains(&format!("cannot open {closed}")), "{r:?}");

    // A silent unit on a serial line: its timeout, with the attempts counted.
    let dir = tempfile::tempdir().unwrap();
    let (pty, _py2) = serial_device(dir.path());
    let port = pty.a.to_str().unwrap();
    let r = gasdtu_run(&[
        "read",
        "--serial",
        port,
        "--parity",
        "none",
        "--unit",
        "9",
        "--address",
        "0",
        "--timeout",
        "200ms",
        "--retries",
        "1",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("unit 9: timeout after 200ms (2 attempts), reading holding 0"),
        "{r:?}"
    );
    // The line still works for a unit that is there.
    let r = gasdtu_run(&[
        "read",
        "--serial",
        port,
        "--parity",
        "none",
        "--address",
        "6",
        "--type",
        "i16",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_lines(&r.stdout)[0]["value"], -1234);
}

#[test]
fn bad_arguments_exit_2_before_touching_the_bus() {
    // Nothing listens on this port: an argument error must be reported before connecting.
    let ep = format!("127.0.0.1:{}", free_port());
    // (arguments, fragment of stderr)
    #[rustfmt::skip]
    let rows: &[(&[&str], &str)] = &[
        (&["read", "--address", "0"], "no bus named: give --serial PATH"),
        (&["read", "--tcp", &ep, "--address", "0", "--type", "f32", "--count", "3"], "not a whole number of f32"),
        (&["read", "--tcp", &ep, "--address", "0", "--unit", "0"], "invalid value"),
        (&["read", "--tcp", &ep, "--address", "0", "--type", "quad"], "invalid value"),
        (&["read", "--tcp", "localhost", "--address", "0"], "expected HOST:PORT"),
        (&["read", "--serial", "/dev/null", "--tcp", &ep, "--address", "0"], "cannot be used with"),
        (&["write", "--tcp", &ep, "--address", "0", "--value", "70000", "--yes"], "does not fit type u16"),
        (&["write", "--tcp", &ep, "--table", "input", "--address", "0", "--value", "1"], "invalid value"),
        (&["write", "--tcp", &ep, "--table", "coil", "--address", "0", "--value", "2", "--yes"], "is not a bit"),
        (&["scan", "--tcp", &ep, "--from", "9", "--to", "3"], "--from 9 is above --to 3"),
    ];
    for (args, want) in rows {
        let r = gasdtu_run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert!(
            !r.stderr.contains("cannot open"),
            "{args:?} touched the bus: {}",
            r.stderr
        );
    }
}

#[test]
fn write_encodes_writes_and_reads_back() {
    let (_py, ep) = tcp_device();
    let r = gasdtu_run(&[
        "write",
        "--tcp",
        &ep,
        "--address",
        "12",
        "--type",
        "f32",
        "--order",
        "CDAB",
        "--value",
        "21.5",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        "unit 1  holding 12: write 21.5 as f32 CDAB = registers 0000 41AC\n\
         written; read back: 21.5 (raw 0000 41AC)\n"
    );
    // An independent read sees it.
    let r = gasdtu_run(&[
        "read",
        "--tcp",
        &ep,
        "--address",
        "12",
        "--count",
        "2",
        "--json",
    ]);
    let raw: Vec<_> = json_lines(&r.stdout)
        .iter()
        .map(|l| l["raw"][0].clone())
        .collect();
    assert_eq!(raw, [serde_json::json!(0x0000), serde_json::json!(0x41AC)]);

    // Scaled integer: 21.37 kPa at 0.01 kPa per count.
    let r = gasdtu_run(&[
        "write",
        "--tcp",
        &ep,
        "--address",
        "14",
        "--scale",
        "0.01",
        "--value",
        "21.37",
        "-y",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("registers 0859"), "{r:?}");
    assert!(r.stdout.contains("read back: 21.37 (raw 0859)"), "{r:?}");

    // One bit of a live register: the other bits stay.
    gasdtu_run(&[
        "write",
        "--tcp",
        &ep,
        "--address",
        "15",
        "--value",
        "0x00F0",
        "-y",
    ]);
    let r = gasdtu_run(&[
        "write",
        "--tcp",
        &ep,
        "--address",
        "15",
        "--type",
        "bit",
        "--bit",
        "3",
        "--value",
        "on",
        "-y",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("register 00F0 -> 00F8"), "{r:?}");
    assert!(r.stdout.contains("read back: 1 (raw 00F8)"), "{r:?}");

    // A coil.
    let r = gasdtu_run(&[
        "write",
        "--tcp",
        &ep,
        "--table",
        "coil",
        "--address",
        "1",
        "--value",
        "1",
        "-y",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = gasdtu_run(&[
        "read",
        "--tcp",
        &ep,
        "--table",
        "coil",
        "--address",
        "0",
        "--count",
        "2",
        "--json",
    ]);
    let bits: Vec<_> = json_lines(&r.stdout)
        .iter()
        .map(|l| l["value"].clone())
        .collect();
    assert_eq!(bits, [serde_json::json!(true), serde_json::json!(true)]);

    // The device refuses: exit 1 with the exception.
    let r = gasdtu_run(&[
        "write",
        "--tcp",
        &ep,
        "--address",
        "50",
        "--value",
        "5",
        "-y",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("unit 1: exception 2 (illegal data address), writing holding 50"),
        "{r:?}"
    );
}

/// `script` (util-linux) runs a command with a pseudo-terminal as its stdin, so the prompt
/// path can be driven from a test.
fn run_on_a_terminal(args: &[&str], answer: &str) -> Run {
    let mut cmd = gasdtu().display().to_string();
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    run_program(
        std::path::Path::new("script"),
        &["-qec", &cmd, "/dev/null"],
        Some(answer),
    )
}

#[test]
fn write_confirms_on_a_terminal_and_refuses_without_one() {
    let (_py, ep) = tcp_device();
    let read6 = || {
        let r = gasdtu_run(&[
            "read",
            "--tcp",
            &ep,
            "--address",
            "6",
            "--type",
            "i16",
            "--json",
        ]);
        json_lines(&r.stdout)[0]["value"].clone()
    };
    let base = [
        "write",
        "--tcp",
        &ep,
        "--address",
        "6",
        "--type",
        "i16",
        "--value",
    ];

    // No terminal and no --yes: refused, nothing written.
    let mut args = base.to_vec();
    args.push("-77");
    let r = gasdtu_run(&args);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("stdin is not a terminal (pass --yes)"),
        "{r:?}"
    );
    assert_eq!(read6(), -1234);

    // On a terminal, "n" declines.
    let r = run_on_a_terminal(&args, "n\n");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("Write? [y/N]"), "{r:?}");
    assert!(r.stdout.contains("not written"), "{r:?}");
    assert_eq!(read6(), -1234);

    // "y" writes.
    let r = run_on_a_terminal(&args, "y\n");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("registers FFB3"), "{r:?}");
    assert!(r.stdout.contains("read back: -77 (raw FFB3)"), "{r:?}");
    assert_eq!(read6(), -77);
}

#[test]
fn scan_finds_the_units_on_a_serial_line() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _py) = serial_device(dir.path());
    let port = pty.a.to_str().unwrap();
    let line = ["scan", "--serial", port, "--parity", "none"];

    let mut args = line.to_vec();
    args.extend(["--from", "1", "--to", "4"]);
    let r = gasdtu_run(&args);
    assert_eq!(r.code, 0, "{r:?}");
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(out[0], "unit   1  answers  holding 0 = 42CA");
    assert_eq!(out[1], "unit   2  answers  holding 0 = 0007");
    assert!(
        out[2].starts_with(&format!("2 of 4 unit ids answered on {port} in "))
            && out[2].ends_with(": 1 2"),
        "{r:?}"
    );
    // stderr is not a terminal: no progress bar drawn into it.
    assert!(r.stderr.is_empty(), "{r:?}");

    // An exception is an answer too.
    let mut args = line.to_vec();
    args.extend(["--from", "2", "--to", "3", "--address", "40"]);
    let r = gasdtu_run(&args);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("unit   2  answers  with exception 2 (illegal data address)\n1 of 2"),
        "{r:?}"
    );

    // Nobody there: exit 1.
    let mut args = line.to_vec();
    args.extend(["--from", "3", "--to", "5"]);
    let r = gasdtu_run(&args);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("0 of 3 unit ids answered"), "{r:?}");

    // A port that does not exist stops the scan at once.
    let missing = dir.path().join("ttyUSB9");
    let r = gasdtu_run(&["scan", "--serial", missing.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot open"), "{r:?}");
    assert!(r.stderr.contains("scan stopped"), "{r:?}");
}

#[test]
fn rtu_over_tcp_reaches_a_serial_device_server() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _py) = serial_device(dir.path());
    // socat plays the serial device server: one TCP connection bridged to the serial line.
    let port = free_port();
    let _server = Proc::spawn(
        "socat",
        Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
            .arg(format!("FILE:{},raw,echo=0", pty.a.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for("socat to listen", Duration::from_secs(10), || {
        // Probe without connecting (a connection would use up the single-shot listener).
        let l = std::fs::read_to_string("/proc/net/tcp").ok()?;
        let hex_port = format!(":{port:04X} ");
        l.lines()
            .any(|line| line.contains(&hex_port) && line.contains(" 0A "))
            .then_some(())
    });
    let ep = format!("127.0.0.1:{port}");
    let r = gasdtu_run(&[
        "read",
        "--rtu-over-tcp",
        &ep,
        "--address",
        "0",
        "--type",
        "f32",
        "--count",
        "4",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let texts: Vec<_> = json_lines(&r.stdout)
        .iter()
        .map(|l| l["text"].clone())
        .collect();
    assert_eq!(texts[0], "101.325");
}

/// `gasdtu simulate` on two free loopback ports: (process, Modbus TCP endpoint, RTU-over-TCP
/// endpoint).
fn simulator(extra: &[&str]) -> (Proc, String, String) {
    let (tcp, rot) = (free_port(), free_port());
    let tcp_ep = format!("127.0.0.1:{tcp}");
    let rot_ep = format!("127.0.0.1:{rot}");
    let sim = Proc::spawn(
        "gasdtu simulate",
        Command::new(gasdtu())
            .args(["simulate", "--tcp", &tcp_ep, "--rtu-over-tcp", &rot_ep])
            .args(["--seed", "7", "--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_port(tcp, Duration::from_secs(20));
    wait_port(rot, Duration::from_secs(20));
    (sim, tcp_ep, rot_ep)
}

#[test]
fn read_and_write_a_simulated_transmitter_and_corrector() {
    #[rustfmt::skip]
    let (_sim, tcp, rot) = simulator(&[
        "--device", "1:pt-float", "--device", "2:evc-dcba",
        "--set", "1:pressure=450", "--set", "1:temperature=12.5",
        "--set", "2:volume_standard_int=3000000000",
    ]);
    // The pt-float profile: pressure in bar as f32 at 2 (scale 100 to kPa), temperature at 6.
    for ep in [("--tcp", &tcp), ("--rtu-over-tcp", &rot)] {
        let r = gasdtu_run(&[
            "read",
            ep.0,
            ep.1,
            "--address",
            "2",
            "--type",
            "f32",
            "--scale",
            "100",
            "--json",
        ]);
        assert_eq!(r.code, 0, "{ep:?}: {r:?}");
        let l = &json_lines(&r.stdout)[0];
        assert_eq!(l["text"], "450", "{ep:?}");
        assert_eq!(l["hex"], "4090 0000", "{ep:?}");
    }
    let r = gasdtu_run(&["read", "--tcp", &tcp, "--address", "6", "--type", "f32"]);
    assert!(r.stdout.ends_with("      6  4148 0000  12.5\n"), "{r:?}");
    // The corrector's fully reversed u32 above 2^31.
    let r = gasdtu_run(&[
        "read",
        "--tcp",
        &tcp,
        "--unit",
        "2",
        "--address",
        "0",
        "--type",
        "u32",
        "--order",
        "DCBA",
        "--json",
    ]);
    let l = &json_lines(&r.stdout)[0];
    assert_eq!(l["value"], serde_json::json!(3_000_000_000u64), "{r:?}");
    assert_eq!(l["hex"], "005E D0B2");

    // A write in engineering units sticks (the simulator pins what a master wrote).
    let r = gasdtu_run(&[
        "write",
        "--tcp",
        &tcp,
        "--address",
        "2",
        "--type",
        "f32",
        "--scale",
        "100",
        "--value",
        "321.5",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("registers 404D C28F"), "{r:?}");
    assert!(
        r.stdout.contains("read back: 321.5 (raw 404D C28F)"),
        "{r:?}"
    );
    let r = gasdtu_run(&[
        "read",
        "--rtu-over-tcp",
        &rot,
        "--address",
        "2",
        "--type",
        "f32",
        "--scale",
        "100",
        "--json",
    ]);
    assert_eq!(json_lines(&r.stdout)[0]["text"], "321.5");
}

#[test]
fn simulated_faults_become_named_errors() {
    #[rustfmt::skip]
    let (_sim, _tcp, rot) = simulator(&[
        "--device", "3:pt-float", "--device", "4:pt-float", "--device", "5:pt-float",
        "--device", "6:pt-float",
        "--fault", "3:exception:6", "--fault", "4:crc", "--fault", "5:dead",
        "--fault", "6:garbage",
    ]);
    // (unit, extra arguments, fragment of the one-line error)
    #[rustfmt::skip]
    let rows: &[(&str, &[&str], &str)] = &[
        ("3", &[], "unit 3: exception 6 (server device busy), reading holding 2 (count 2)"),
        ("4", &["--retries", "1"], "unit 4: CRC error in reply (2 attempts): expected CRC"),
        ("5", &["--timeout", "300ms"], "unit 5: timeout after 300ms ("),
        ("6", &["--timeout", "300ms"], "unit 6: invalid reply ("),
    ];
    for (unit, extra, want) in rows {
        let mut args = vec![
            "read",
            "--rtu-over-tcp",
            &rot,
            "--unit",
            unit,
            "--address",
            "2",
            "--type",
            "f32",
        ];
        args.extend_from_slice(extra);
        let r = gasdtu_run(&args);
        assert_eq!(r.code, 1, "unit {unit}: {r:?}");
        assert!(r.stderr.contains(want), "unit {unit}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    }
}

#[test]
fn scan_a_simulated_bus_with_faulty_units() {
    #[rustfmt::skip]
    let (_sim, _tcp, rot) = simulator(&[
        "--device", "1:pt-float", "--device", "2:evc-dcba", "--device", "3:pt-float",
        "--device", "4:pt-float", "--device", "5:pt-float", "--device", "6:pt-float",
        "--fault", "3:exception:6", "--fault", "4:crc", "--fault", "5:dead",
        "--fault", "6:garbage",
    ]);
    let r = gasdtu_run(&["scan", "--rtu-over-tcp", &rot, "--from", "1", "--to", "8"]);
    assert_eq!(r.code, 0, "{r:?}");
    let out: Vec<&str> = r.stdout.lines().collect();
    assert!(
        out[0].starts_with("unit   1  answers  holding 0 = "),
        "{r:?}"
    );
    assert!(
        out[1].starts_with("unit   2  answers  holding 0 = "),
        "{r:?}"
    );
    assert_eq!(
        out[2],
        "unit   3  answers  with exception 6 (server device busy)"
    );
    assert!(out[3].starts_with("unit   4  garbled  CRC error"), "{r:?}");
    assert!(
        out[4].starts_with("unit   6  garbled  invalid reply"),
        "{r:?}"
    );
    assert!(
        out[5].starts_with(&format!("3 of 8 unit ids answered on {rot} in "))
            && out[5].ends_with(": 1 2 3"),
        "{r:?}"
    );
    assert_eq!(
        out[6],
        "garbled replies from 4 6 (check baud rate, parity and wiring)"
    );
}
