//! `gasdtu simulate --modem <model>` end to end: the real binary on a pty pair made by socat,
//! AT spoken from the test through the other pty end as raw bytes (`common::modem_term`). Per
//! model a transcript (ATI, registration within a deadline, the model's signal command, BC95's
//! missing spaces), hang and power cycle through the control socket, the sleep quirk (a bare
//! CRLF), URCs inside replies, network-closed sockets, runtime faults, and the serial line
//! vanishing and coming back. The socket round trips are in tests/modem_sim_sockets.rs.

mod common;

use std::time::{Duration, Instant};

use common::modem_term::{boot_end, echo_server, start, Term, DEADLINE};
use common::{wait_for, PtyPair};

#[test]
fn bg96_transcript() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    assert_eq!(s.term.cmd("AT"), "AT\r\r\nOK\r\n", "echo on by default");
    assert_eq!(
        s.term.cmd("ATI"),
        "ATI\r\r\nQuectel\r\n\r\nBG96\r\n\r\nRevision: BG96MAR02A07M1G\r\n\r\nOK\r\n"
    );
    assert_eq!(s.term.cmd("ATE0"), "ATE0\r\r\nOK\r\n");
    s.wait_registered("+CEREG: 0,1\r\n");
    let q = s.term.cmd("AT+QCSQ");
    assert_eq!(q, "\r\n+QCSQ: \"NBIoT\",-73,-85,150,-11\r\n\r\nOK\r\n");
    assert_eq!(s.control("signal -110 -2 2").trim(), "ok");
    let q = s.term.cmd("AT+QENG=\"servingcell\"");
    assert!(
        q.starts_with("\r\n+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,")
            && q.contains(",-110,-11,-98,-2,-\r\n"),
        "{q}"
    );
    assert_eq!(s.term.cmd("AT+CEREG=9"), "\r\n+CME ERROR: 50\r\n");
    assert_eq!(s.term.cmd("AT+WHAT"), "\r\nERROR\r\n");
}

#[test]
fn bc95_transcript_has_no_spaces() {
    let mut s = start("bc95", &[]);
    let boot = s.term.until(boot_end("bc95"));
    assert!(boot.contains("REBOOT_CAUSE_SECURITY_RESET_PIN"), "{boot:?}");
    assert_eq!(s.term.cmd("AT"), "\r\nOK\r\n", "echo off by default");
    assert_eq!(
        s.term.cmd("ATI"),
        "\r\nQuectel\r\n\r\nBC95-B8\r\n\r\nRevision:BC95HBR01A01\r\n\r\nOK\r\n"
    );
    s.wait_registered("+CEREG:0,1\r\n");
    assert_eq!(s.term.cmd("AT+CSQ"), "\r\n+CSQ:20,99\r\n\r\nOK\r\n");
    assert_eq!(s.term.cmd("AT+CGATT?"), "\r\n+CGATT:1\r\n\r\nOK\r\n");
    assert_eq!(s.term.cmd("AT+CEREG=9"), "\r\n+CME ERROR:50\r\n");
    let n = s.term.cmd("AT+NUESTATS");
    assert!(
        n.starts_with("\r\nSignal power:-850\r\n") && n.contains("\r\nECL:0\r\n"),
        "{n}"
    );
    // Registration loss from the control socket: "+CEREG:2" then back to 1.
    assert_eq!(s.term.cmd("AT+CEREG=1"), "\r\nOK\r\n");
    assert_eq!(s.control("deregister 1").trim(), "ok");
    s.term.until("\r\n+CEREG:2\r\n");
    s.term.until("\r\n+CEREG:1\r\n");
}

#[test]
fn sim7020_transcript() {
    let mut s = start("sim7020", &[]);
    s.term.until(boot_end("sim7020"));
    assert_eq!(s.term.cmd("ATI"), "ATI\r\r\nSIM7020E R1752\r\n\r\nOK\r\n");
    assert_eq!(
        s.term.cmd("AT+CGMM"),
        "AT+CGMM\r\r\nSIMCOM_SIM7020E\r\n\r\nOK\r\n"
    );
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    assert_eq!(
        s.term.cmd("AT+CENG?"),
        "\r\n+CENG: 3569,0,98,\"01A2D001\",-85,-11,-73,10,8,\"5504\",0,23\r\n\r\nOK\r\n"
    );
}

#[test]
fn hang_until_power_cycle() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    assert_eq!(s.term.cmd("AT"), "AT\r\r\nOK\r\n");
    assert_eq!(s.control("hang").trim(), "ok");
    let before = s.stats()["bytes_in"].as_u64().unwrap();
    s.term.send(b"AT\r");
    wait_for("the hung module to take the bytes", DEADLINE, || {
        (s.stats()["bytes_in"].as_u64().unwrap() >= before + 3).then_some(())
    });
    assert_eq!(s.stats()["state"], "hung");
    assert_eq!(s.control("power-cycle").trim(), "ok");
    let boot = s.term.until(boot_end("bg96"));
    assert!(
        boot.starts_with("\r\nRDY\r\n"),
        "a hung module said something before its boot text: {boot:?}"
    );
    assert_eq!(s.term.cmd("AT"), "AT\r\r\nOK\r\n");
    let st = s.stats();
    assert_eq!(st["power_cycles"], 1);
    assert_ne!(st["state"], "hung");
    // And a reboot through the control socket: boot text again.
    assert_eq!(s.control("reboot").trim(), "ok");
    s.term.until(boot_end("bg96"));
    assert!(s.control("bogus").starts_with("error:"));
}

#[test]
fn sleep_quirk_answers_a_bare_crlf() {
    let mut s = start("bc95", &["--modem-fault", "sleep:1s"]);
    s.term.until(boot_end("bc95"));
    // The quirk needs the module idle for its sleep timer: that wait is the condition itself.
    std::thread::sleep(Duration::from_millis(1200));
    s.term.send(b"AT\rAT\r");
    let r = s.term.until("\r\nOK\r\n");
    assert_eq!(r, "\r\n\r\nOK\r\n", "first reply lost, the retry answered");
    assert!(s.term.unread().is_empty());
}

#[test]
fn urcs_inside_replies_and_network_closed_sockets() {
    let mut s = start("bc95", &["--modem-fault", "urc=1:1h"]);
    s.term.until(boot_end("bc95"));
    s.wait_registered("+CEREG:0,1\r\n");
    let n = s.term.cmd("AT+NUESTATS");
    let urc = n.find("\r\n+CEREG:1\r\n").expect("a URC inside the reply");
    assert!(
        urc > n.find("Signal power:").unwrap() && n.ends_with("\r\nOK\r\n"),
        "{n}"
    );
    // The network closes the socket: +NSOCLI, and sending fails.
    let port = echo_server(1 << 20);
    assert!(s.term.cmd("AT+NSOCR=STREAM,6,0,1").contains("\r\n0\r\n"));
    assert!(s
        .term
        .cmd(&format!("AT+NSOCO=0,127.0.0.1,{port}"))
        .ends_with("\r\nOK\r\n"));
    assert_eq!(s.control("close-sockets").trim(), "ok");
    s.term.until("\r\n+NSOCLI: 0\r\n");
    assert!(s.term.cmd("AT+NSOSD=0,1,41").ends_with("\r\nERROR\r\n"));
    // Faults at runtime.
    assert_eq!(s.control("fault clear").trim(), "ok");
    assert_eq!(s.control("fault cme:159").trim(), "ok");
    assert_eq!(s.term.cmd("AT+CSQ"), "\r\n+CME ERROR:159\r\n");
}

#[test]
fn survives_its_serial_line_vanishing() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    assert_eq!(s.term.cmd("ATE0"), "ATE0\r\r\nOK\r\n");
    s.wait_registered("+CEREG: 0,1\r\n");
    let pty = s.pty.take().expect("the pty pair");
    let (a, b) = (pty.a.clone(), pty.b.clone());
    pty.unplug();
    // The module lives on without its line: the control socket still answers.
    assert_eq!(s.control("signal -100 3 1").trim(), "ok");
    let st = s.stats();
    assert_eq!(st["power_cycles"], 0);
    // The line comes back at the same path: the simulator reopens it, state kept (echo off).
    s.pty = Some(PtyPair::at(a, b.clone()));
    s.term = Term::open(&b);
    let end = Instant::now() + DEADLINE;
    loop {
        s.term.send(b"AT\r");
        if s.term.arrives("\r\nOK\r\n", Duration::from_millis(500)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the simulator did not reopen its line"
        );
    }
    assert_eq!(
        s.term.cmd("AT+QCSQ"),
        "\r\n+QCSQ: \"NBIoT\",-88,-100,115,-11\r\n\r\nOK\r\n"
    );
}
