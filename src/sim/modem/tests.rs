//! Table tests of the modem core: a command line in, the exact reply text out, per model, and
//! the registration, fault and power behaviour driven through `feed` / `on_net` / `tick` with
//! a hand-moved clock; the helpers shared with `tests_sockets`. No I/O.

use std::time::{Duration, Instant};

use super::commands::cclk;
use super::core::{Modem, NetEvent, Out, Settings, MAX_LINE};
use super::fault::ModemFault;
use super::model::Model;
use super::tests_sockets::connects;

pub(super) const WALL: i64 = 1_764_672_000_000; // 2025-12-02T10:40:00Z

pub(super) fn modem_with(model: Model, faults: &[&str]) -> (Modem, Instant) {
    let t0 = Instant::now();
    let faults = faults
        .iter()
        .map(|s| ModemFault::parse(s).unwrap())
        .collect();
    let mut m = Modem::new(
        Settings {
            model,
            register_delay: Duration::from_secs(2),
            faults,
            seed: Some(1),
        },
        t0,
    );
    m.wall_ms = || WALL;
    m.take_out();
    (m, t0)
}

pub(super) fn modem(model: Model) -> (Modem, Instant) {
    modem_with(model, &[])
}

/// Everything written to the serial line.
pub(super) fn serial(outs: &[Out]) -> String {
    outs.iter()
        .filter_map(|o| match o {
            Out::Serial { bytes, .. } => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .collect()
}

pub(super) fn ask(m: &mut Modem, line: &str, now: Instant) -> String {
    m.feed(format!("{line}\r").as_bytes(), now);
    serial(&m.take_out())
}

/// A registered module, echo off.
pub(super) fn registered(model: Model) -> (Modem, Instant) {
    let (mut m, t0) = modem(model);
    let t = t0 + Duration::from_secs(3);
    m.tick(t);
    ask(&mut m, "ATE0", t);
    (m, t)
}

pub(super) fn ok(lines: &[&str]) -> String {
    let mut s: String = lines.iter().map(|l| format!("\r\n{l}\r\n")).collect();
    s += "\r\nOK\r\n";
    s
}

#[test]
fn generic_commands_per_model() {
    let cases: Vec<(Model, &str, String)> = vec![
        (Model::Bc95, "AT", ok(&[])),
        (
            Model::Bc95,
            "ATI",
            ok(&["Quectel", "BC95-B8", "Revision:BC95HBR01A01"]),
        ),
        (
            Model::Bg96,
            "ATI",
            ok(&["Quectel", "BG96", "Revision: BG96MAR02A07M1G"]),
        ),
        (Model::Sim7020, "ATI", ok(&["SIM7020E R1752"])),
        (Model::Sim7020, "AT+CGMM", ok(&["SIMCOM_SIM7020E"])),
        (Model::Bc95, "AT+CGSN=1", ok(&["+CGSN:867723030000011"])),
        (Model::Bg96, "AT+CGSN=1", ok(&["+CGSN: 867723030000011"])),
        (Model::Bg96, "AT+CIMI", ok(&["460001234567890"])),
        (Model::Bc95, "AT+CPIN?", ok(&["+CPIN:READY"])),
        (Model::Bg96, "AT+CFUN?", ok(&["+CFUN: 1"])),
        (Model::Bc95, "AT+CEREG?", ok(&["+CEREG:0,1"])),
        (Model::Sim7020, "AT+CEREG?", ok(&["+CEREG: 0,1"])),
        (Model::Bg96, "AT+CGATT?", ok(&["+CGATT: 1"])),
        (Model::Bg96, "AT+COPS?", ok(&["+COPS: 0,2,\"46000\",9"])),
        (Model::Bc95, "AT+CSQ", ok(&["+CSQ:20,99"])),
        (Model::Bg96, "AT+CESQ", ok(&["+CESQ: 99,99,255,255,18,56"])),
        (
            Model::Bg96,
            "AT+CCLK?",
            ok(&["+CCLK: \"25/12/02,18:40:00+32\""]),
        ),
        (
            Model::Bc95,
            "AT+CPSMS?",
            ok(&["+CPSMS:0,,,\"00100110\",\"00000011\""]),
        ),
        // eDRX off (the default): no line, as 27.007 and real modules answer.
        (Model::Bg96, "AT+CEDRXS?", ok(&[])),
        (Model::Bc95, "AT+CEDRXS?", ok(&[])),
        (Model::Bg96, "AT+CGPADDR", ok(&["+CGPADDR: 0,\"10.1.2.3\""])),
        (Model::Bc95, "AT+NBAND?", ok(&["+NBAND:8"])),
        (
            Model::Bg96,
            "AT+QCSQ",
            ok(&["+QCSQ: \"NBIoT\",-73,-85,150,-11"]),
        ),
        (
            Model::Sim7020,
            "AT+CENG?",
            ok(&["+CENG: 3569,0,98,\"01A2D001\",-85,-11,-73,10,8,\"5504\",0,23"]),
        ),
        (Model::Bg96, "AT+CEREG=?", ok(&[])),
        (Model::Bg96, "AT+NOPE", "\r\nERROR\r\n".into()),
        (Model::Bg96, "hello", "\r\nERROR\r\n".into()),
        (Model::Bc95, "AT+NUESTATS=?", "\r\nERROR\r\n".into()),
        (Model::Bg96, "AT+NUESTATS", "\r\nERROR\r\n".into()),
        (Model::Bc95, "AT+CEREG=6", "\r\n+CME ERROR:50\r\n".into()),
        (Model::Bg96, "AT+CEREG=x", "\r\n+CME ERROR: 50\r\n".into()),
        (
            Model::Bg96,
            "AT+CPSMS=1,,,\"0010\"",
            "\r\n+CME ERROR: 50\r\n".into(),
        ),
        (Model::Bg96, "AT+CEDRXS=1,5,\"0011\"", ok(&[])),
        (
            Model::Bg96,
            "AT+CEDRXS=1,4,\"0011\"",
            "\r\n+CME ERROR: 50\r\n".into(),
        ),
        (
            Model::Bg96,
            "AT+QENG=\"neighbourcell\"",
            "\r\n+CME ERROR: 50\r\n".into(),
        ),
    ];
    for (model, line, want) in cases {
        let (mut m, t) = registered(model);
        assert_eq!(ask(&mut m, line, t), want, "{model} {line}");
    }
}

#[test]
fn nuestats_lines() {
    let (mut m, t) = registered(Model::Bc95);
    let r = ask(&mut m, "AT+NUESTATS", t);
    assert!(
        r.starts_with("\r\nSignal power:-850\r\n\r\nTotal power:-730\r\n"),
        "{r}"
    );
    assert!(
        r.contains("\r\nECL:0\r\n") && r.contains("\r\nSNR:100\r\n"),
        "{r}"
    );
    assert!(r.ends_with("\r\nOPERATOR MODE:4\r\n\r\nOK\r\n"), "{r}");
    m.set_signal(-120, -5, 2);
    let r = ask(&mut m, "AT+NUESTATS", t);
    assert!(r.contains("Signal power:-1200") && r.contains("ECL:2") && r.contains("SNR:-50"));
}

#[test]
fn echo_default_and_toggle() {
    let (mut bg, t) = modem(Model::Bg96);
    assert_eq!(ask(&mut bg, "AT", t), "AT\r\r\nOK\r\n");
    assert_eq!(ask(&mut bg, "ATE0", t), "ATE0\r\r\nOK\r\n");
    assert_eq!(ask(&mut bg, "AT", t), "\r\nOK\r\n");
    let (mut bc, t) = modem(Model::Bc95);
    assert_eq!(ask(&mut bc, "AT", t), "\r\nOK\r\n");
    assert_eq!(ask(&mut bc, "ATE1", t), "\r\nOK\r\n");
    assert_eq!(ask(&mut bc, "at", t), "at\r\r\nOK\r\n");
    // CRLF-terminated commands work too, and split reads are reassembled.
    bc.feed(b"ATE", t);
    bc.feed(b"0\r\nAT\r\n", t);
    assert_eq!(serial(&bc.take_out()), "ATE0\r\r\nOK\r\n\r\nOK\r\n");
}

#[test]
fn registration_machine_and_urcs() {
    let (mut m, t0) = modem(Model::Bc95);
    assert_eq!(ask(&mut m, "AT+CEREG?", t0), ok(&["+CEREG:0,2"]));
    assert_eq!(ask(&mut m, "AT+CEREG=2", t0), ok(&[]));
    assert_eq!(ask(&mut m, "AT+CGATT?", t0), ok(&["+CGATT:0"]));
    // Registered 2 s after boot (plus the boot text's 0.3 s).
    let due = m.next_deadline().unwrap();
    assert!(due > t0 + Duration::from_secs(2) && due <= t0 + Duration::from_millis(2400));
    m.tick(due);
    assert_eq!(
        serial(&m.take_out()),
        "\r\n+CEREG:1,\"5504\",\"01A2D001\",9\r\n"
    );
    let t = due;
    assert_eq!(ask(&mut m, "AT+CFUN=0", t), "\r\n+CEREG:0\r\n\r\nOK\r\n");
    assert_eq!(ask(&mut m, "AT+CFUN?", t), ok(&["+CFUN:0"]));
    assert_eq!(ask(&mut m, "AT+CFUN=1", t), "\r\n+CEREG:2\r\n\r\nOK\r\n");
    // AT+CGATT=1 while searching: the OK waits for registration; input meanwhile waits too.
    assert_eq!(ask(&mut m, "AT+CGATT=1", t), "");
    assert_eq!(ask(&mut m, "AT+CSQ", t), "");
    m.tick(t + Duration::from_secs(2));
    assert_eq!(
        serial(&m.take_out()),
        "\r\n+CEREG:1,\"5504\",\"01A2D001\",9\r\n\r\nOK\r\n\r\n+CSQ:20,99\r\n\r\nOK\r\n"
    );
    let t = t + Duration::from_secs(2);
    assert_eq!(ask(&mut m, "AT+CEREG=4", t), ok(&[]));
    assert_eq!(
        ask(&mut m, "AT+CEREG?", t),
        ok(&["+CEREG:4,1,\"5504\",\"01A2D001\",9,,,\"00000011\",\"00100110\""])
    );
    // Registration loss: URC, back after the time given.
    assert_eq!(ask(&mut m, "AT+CEREG=1", t), ok(&[]));
    m.lose_registration(Duration::from_secs(5), t);
    assert_eq!(serial(&m.take_out()), "\r\n+CEREG:2\r\n");
    assert_eq!(ask(&mut m, "AT+CGATT?", t), ok(&["+CGATT:0"]));
    assert_eq!(m.stats().state, "deregistered");
    m.tick(t + Duration::from_secs(5));
    assert_eq!(serial(&m.take_out()), "\r\n+CEREG:1\r\n");
}

#[test]
fn long_lines_are_refused() {
    let (mut m, t) = registered(Model::Bg96);
    let long = format!("AT+{}", "X".repeat(MAX_LINE + 10));
    assert_eq!(ask(&mut m, &long, t), "\r\nERROR\r\n");
    assert_eq!(ask(&mut m, "AT", t), ok(&[]));
}

#[test]
fn cclk_is_local_time_with_zone() {
    assert_eq!(cclk(WALL), "\"25/12/02,18:40:00+32\"");
    assert_eq!(cclk(0), "\"70/01/01,08:00:00+32\"");
}

#[test]
fn faults_sleep_cme_urc_hang() {
    // Sleep: after 10 s idle the first command gets a bare CRLF.
    let (mut m, t0) = modem_with(Model::Bg96, &["sleep:10s"]);
    let t = t0 + Duration::from_secs(3);
    assert_eq!(ask(&mut m, "AT", t), "AT\r\r\nOK\r\n");
    let t = t + Duration::from_secs(11);
    assert_eq!(ask(&mut m, "AT", t), "\r\n");
    assert_eq!(ask(&mut m, "AT", t), "AT\r\r\nOK\r\n");

    // CME on every command but a bare AT.
    let (mut m, t) = modem_with(Model::Bc95, &["cme:4"]);
    assert_eq!(ask(&mut m, "AT+CSQ", t), "\r\n+CME ERROR:4\r\n");
    assert_eq!(ask(&mut m, "AT", t), "\r\nOK\r\n");

    // URC between the information lines and the final result.
    let (mut m, t0) = modem_with(Model::Bc95, &["urc=1:1h"]);
    let t = t0 + Duration::from_secs(3);
    m.tick(t);
    m.take_out();
    let r = ask(&mut m, "AT+NUESTATS", t);
    assert!(r.contains("\r\n+CEREG:1\r\n"), "{r}");
    assert!(
        !r.starts_with("\r\n+CEREG") && r.ends_with("\r\nOK\r\n"),
        "{r}"
    );

    // Hang: nothing at all until a power cycle; then boot text and registration again.
    let (mut m, t) = modem_with(Model::Bg96, &["hang=1"]);
    assert_eq!(ask(&mut m, "AT+CSQ", t), "");
    assert_eq!(ask(&mut m, "AT", t), "");
    assert_eq!(m.stats().state, "hung");
    m.tick(t + Duration::from_secs(5));
    assert_eq!(serial(&m.take_out()), "");
    m.power_cycle(t);
    let boot = serial(&m.take_out());
    assert!(
        boot.starts_with("\r\nRDY\r\n") && boot.ends_with("\r\nAPP RDY\r\n"),
        "{boot}"
    );
    assert_eq!(m.stats().power_cycles, 1);
    assert_eq!(m.stats().state, "searching");
}

#[test]
fn reboot_commands_print_boot_text() {
    let (mut m, t) = registered(Model::Bc95);
    let r = ask(&mut m, "AT+NRB", t);
    assert!(
        r.starts_with("\r\nREBOOTING\r\n\r\nBoot: Unsigned\r\n"),
        "{r}"
    );
    assert!(r.contains("REBOOT_CAUSE_APPLICATION_AT") && r.ends_with("\r\nNeul \r\n\r\nOK\r\n"));
    assert_eq!(m.stats().reboots, 1);
    let (mut m, t) = registered(Model::Bg96);
    assert_eq!(
        ask(&mut m, "AT+CFUN=1,1", t),
        "\r\nOK\r\n\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n\r\nAPP RDY\r\n"
    );
    assert_eq!(
        ask(&mut m, "AT", t),
        "AT\r\r\nOK\r\n",
        "echo back on after reset"
    );
    let (mut m, t) = registered(Model::Sim7020);
    assert_eq!(
        ask(&mut m, "AT+CRESET", t),
        "\r\nOK\r\n\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n"
    );
    let (mut m, t) = registered(Model::Bg96);
    assert_eq!(ask(&mut m, "AT+QPOWD", t), "\r\nOK\r\n\r\nPOWERED DOWN\r\n");
    assert_eq!(ask(&mut m, "AT", t), "");
    assert_eq!(m.stats().state, "powered-down");
}

#[test]
fn per_command_faults_slow_deregister_netclose_reboot() {
    // slow: the echo at once, the reply late.
    let (mut m, t) = modem_with(Model::Bg96, &["slow:3s"]);
    m.feed(b"AT+CSQ\r", t);
    let outs = m.take_out();
    let delays: Vec<Duration> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Serial { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![Duration::ZERO, Duration::from_secs(3)]);

    // deregister + netclose after the reply: the reply, then the close URC, then +CEREG.
    let (mut m, t0) = modem_with(Model::Sim7020, &[]);
    let t = t0 + Duration::from_secs(3);
    m.tick(t);
    ask(&mut m, "ATE0", t);
    ask(&mut m, "AT+CEREG=1", t);
    ask(&mut m, "AT+CSOC=1,1,1", t);
    m.feed(b"AT+CSOCON=0,9000,\"127.0.0.1\"\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.take_out();
    m.add_fault(ModemFault::parse("netclose").unwrap(), t);
    assert_eq!(
        ask(&mut m, "AT", t),
        "\r\nOK\r\n\r\n+CSOERR: 0,4\r\n",
        "the network closed the socket"
    );
    m.clear_faults();
    m.add_fault(ModemFault::parse("deregister:4s").unwrap(), t);
    assert_eq!(ask(&mut m, "AT", t), "\r\nOK\r\n\r\n+CEREG: 2\r\n");
    m.clear_faults();
    assert_eq!(m.next_deadline(), Some(t + Duration::from_secs(4)));
    // reboot after the reply: boot text, sockets gone.
    m.add_fault(ModemFault::parse("reboot").unwrap(), t);
    let r = ask(&mut m, "AT+CSQ", t);
    assert!(
        r.starts_with("\r\n+CSQ: 99,99\r\n\r\nOK\r\n\r\nRDY\r\n"),
        "{r}"
    );
    m.clear_faults();
    assert_eq!(ask(&mut m, "AT+CSOCL=0", t), "AT+CSOCL=0\r\r\nERROR\r\n");
    assert_eq!(m.stats().reboots, 1);
}

#[test]
fn denied_registration_reports_the_cause() {
    let (mut m, t) = registered(Model::Bg96);
    assert_eq!(ask(&mut m, "AT+CEREG=3", t), ok(&[]));
    m.deny(15, t);
    assert_eq!(
        serial(&m.take_out()),
        "\r\n+CEREG: 3,\"5504\",\"01A2D001\",9,0,15\r\n"
    );
    assert_eq!(
        ask(&mut m, "AT+CEREG?", t),
        ok(&["+CEREG: 3,3,\"5504\",\"01A2D001\",9,0,15"])
    );
    assert_eq!(ask(&mut m, "AT+CGATT?", t), ok(&["+CGATT: 0"]));
    assert_eq!(m.stats().state, "denied");
    m.register_now(t);
    assert_eq!(
        serial(&m.take_out()),
        "\r\n+CEREG: 1,\"5504\",\"01A2D001\",9\r\n"
    );
    assert_eq!(ask(&mut m, "AT+CGATT?", t), ok(&["+CGATT: 1"]));
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = fastrand::Rng::with_seed(11);
    let words: &[&[u8]] = &[
        b"AT",
        b"+",
        b"=",
        b"?",
        b",",
        b"\"",
        b"\r",
        b"\n",
        b"CEREG",
        b"NSOSD",
        b"QISEND",
        b"QIOPEN",
        b"CSOSEND",
        b"NSORF",
        b"QIRD",
        b"1",
        b"0",
        b"512",
        b"65536",
        b"-1",
        b"FF",
        b"127.0.0.1",
        b"9000",
        b"E1",
        b"I",
        b"CFUN",
        b"NRB",
        b"CRESET",
        b"QPOWD",
        b"QICFG",
        b"\"dataformat\"",
        b"QICLOSE",
        b"QRST",
        b"CNACT",
        b"CAOPEN",
        b"CASEND",
        b"CARECV",
        b"CACLOSE",
        b"\"TCP\"",
    ];
    for model in [
        Model::Bc95,
        Model::Bc66,
        Model::Bg96,
        Model::Sim7020,
        Model::Sim7080,
    ] {
        let (mut m, t0) = modem_with(model, &["urc=0.3:1s", "cme=0.05", "reboot=0.01"]);
        let mut t = t0;
        let mut conns = Vec::new();
        for _ in 0..3000 {
            t += Duration::from_millis(rng.u64(0..300));
            let mut input = Vec::new();
            for _ in 0..rng.usize(1..12) {
                if rng.u8(..) < 20 {
                    input.push(rng.u8(..));
                } else {
                    input.extend_from_slice(words[rng.usize(..words.len())]);
                }
            }
            m.feed(&input, t);
            m.tick(t);
            if let Some(&conn) = conns.get(rng.usize(..conns.len().max(1))) {
                let ev = match rng.u8(..4) {
                    0 => NetEvent::Connected { conn, ok: true },
                    1 => NetEvent::Data {
                        conn,
                        bytes: vec![b'z'; rng.usize(1..3000)],
                    },
                    2 => NetEvent::Sent {
                        conn,
                        n: rng.usize(..2000),
                    },
                    _ => NetEvent::Closed { conn },
                };
                m.on_net(ev, t);
            }
            for o in m.take_out() {
                match o {
                    Out::Connect { conn, .. } => conns.push(conn),
                    Out::Serial { bytes, .. } => assert!(bytes.len() < 64 * 1024),
                    _ => {}
                }
            }
        }
        if rng.bool() {
            m.power_cycle(t);
        }
    }
}

#[test]
fn without_a_sim_the_module_does_not_search() {
    let (mut m, t) = registered(Model::Sim7020);
    ask(&mut m, "AT+CEREG=1", t);
    m.set_sim(false, t);
    assert_eq!(serial(&m.take_out()), "\r\n+CEREG: 0\r\n");
    assert_eq!(ask(&mut m, "AT+CPIN?", t), "\r\n+CME ERROR: 10\r\n");
    assert_eq!(ask(&mut m, "AT+CIMI", t), "\r\n+CME ERROR: 10\r\n");
    assert_eq!(ask(&mut m, "AT+CEREG?", t), ok(&["+CEREG: 1,0"]));
    assert_eq!(m.stats().state, "no-sim");
    m.power_cycle(t);
    let boot = serial(&m.take_out());
    assert!(boot.ends_with("\r\n+CPIN: NOT INSERTED\r\n"), "{boot}");
    m.tick(t + Duration::from_secs(10));
    assert_eq!(m.stats().state, "no-sim");
    m.set_sim(true, t);
    m.tick(t + Duration::from_secs(10));
    assert_eq!(m.stats().state, "registered");
}

#[test]
fn edrx_read_dynamic_and_time_zone_urcs() {
    let (mut m, t) = registered(Model::Bg96);
    // eDRX off: nothing to report.
    assert_eq!(
        ask(&mut m, "AT+CEDRXRDP", t),
        "\r\n+CEDRXRDP: 0\r\n\r\nOK\r\n"
    );
    // A request longer than the network's cap is granted the cap.
    assert_eq!(ask(&mut m, "AT+CEDRXS=1,5,\"1001\"", t), "\r\nOK\r\n");
    assert_eq!(
        ask(&mut m, "AT+CEDRXRDP", t),
        "\r\n+CEDRXRDP: 5,\"1001\",\"0101\",\"0011\"\r\n\r\nOK\r\n"
    );
    // A shorter one is granted as asked.
    ask(&mut m, "AT+CEDRXS=1,5,\"0010\"", t);
    assert_eq!(
        ask(&mut m, "AT+CEDRXRDP", t),
        "\r\n+CEDRXRDP: 5,\"0010\",\"0010\",\"0011\"\r\n\r\nOK\r\n"
    );
    // CTZR=2: a +CTZE with the local time at the next registration.
    assert_eq!(ask(&mut m, "AT+CTZR=2", t), "\r\nOK\r\n");
    assert_eq!(ask(&mut m, "AT+CTZR?", t), "\r\n+CTZR: 2\r\n\r\nOK\r\n");
    assert_eq!(ask(&mut m, "AT+CTZR=3", t), "\r\n+CME ERROR: 50\r\n");
    ask(&mut m, "AT+CFUN=0", t);
    ask(&mut m, "AT+CFUN=1", t);
    let t2 = t + Duration::from_secs(3);
    m.tick(t2);
    let out = serial(&m.take_out());
    assert!(
        out.contains("\r\n+CTZE: \"+32\",0,\"2025/12/02,18:40:00\"\r\n"),
        "{out:?}"
    );
    // The daemon's parser reads it back as the wall clock.
    let line = out
        .split("\r\n")
        .find(|l| l.starts_with("+CTZE"))
        .unwrap_or_default();
    assert_eq!(
        crate::modem::reply::ctzv(line).map(|z| z.utc_ms),
        Ok(Some(WALL))
    );
}

#[test]
fn cedrxs_read_lists_only_an_enabled_request() {
    // (commands before, the AT+CEDRXS? answer after them)
    let cases: Vec<(Model, &[&str], String)> = vec![
        (Model::Bg96, &[], ok(&[])),
        (
            Model::Bg96,
            &["AT+CEDRXS=1,5,\"1010\""],
            ok(&["+CEDRXS: 5,\"1010\""]),
        ),
        (
            Model::Bc95,
            &["AT+CEDRXS=2,5,\"0010\""],
            ok(&["+CEDRXS:5,\"0010\""]),
        ),
        // Off again: no line, though the module keeps the value for the next enable.
        (
            Model::Bg96,
            &["AT+CEDRXS=1,5,\"1010\"", "AT+CEDRXS=0"],
            ok(&[]),
        ),
        (
            Model::Bg96,
            &["AT+CEDRXS=1,5,\"1010\"", "AT+CEDRXS=0", "AT+CEDRXS=1"],
            ok(&["+CEDRXS: 5,\"1010\""]),
        ),
        // Mode 3: off and back to the default value.
        (
            Model::Sim7020,
            &["AT+CEDRXS=1,5,\"1010\"", "AT+CEDRXS=3"],
            ok(&[]),
        ),
        (
            Model::Sim7020,
            &["AT+CEDRXS=1,5,\"1010\"", "AT+CEDRXS=3", "AT+CEDRXS=1"],
            ok(&["+CEDRXS: 5,\"0101\""]),
        ),
    ];
    for (model, before, want) in cases {
        let (mut m, t) = registered(model);
        for cmd in before {
            assert_eq!(ask(&mut m, cmd, t), ok(&[]), "{model:?} {cmd}");
        }
        assert_eq!(
            ask(&mut m, "AT+CEDRXS?", t),
            want,
            "{model:?} after {before:?}"
        );
    }
}
