//! Table tests of the modem core's sockets: each model's socket commands in, the exact reply
//! text and the TCP requests out, with the network's events fed back by hand. No I/O.

use std::time::Duration;

use super::core::{NetEvent, Out};
use super::fault::ModemFault;
use super::model::Model;
use super::tests::{ask, modem_with, ok, registered, serial};

pub(super) fn connects(outs: &[Out]) -> Vec<(u64, u16)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Connect { conn, port } => Some((*conn, *port)),
            _ => None,
        })
        .collect()
}

fn sends(outs: &[Out]) -> Vec<Vec<u8>> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn bc95_sockets() {
    let (mut m, t) = registered(Model::Bc95);
    assert_eq!(ask(&mut m, "AT+NSOCR=STREAM,6,0,1", t), ok(&["0"]));
    assert_eq!(
        ask(&mut m, "AT+NSOCR=DGRAM,17,0,1", t),
        "\r\n+CME ERROR:50\r\n"
    );
    assert_eq!(ask(&mut m, "AT+NSOCO=0,10.0.0.1,80", t), "\r\nERROR\r\n");
    m.feed(b"AT+NSOCO=0,127.0.0.1,9000\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), "");
    let (conn, port) = connects(&outs)[0];
    assert_eq!(port, 9000);
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    assert_eq!(serial(&m.take_out()), "\r\nOK\r\n");
    let r = m.take_out();
    assert!(r.is_empty());
    m.feed(b"AT+NSOSD=0,3,414243\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), ok(&["0,3"]));
    assert_eq!(sends(&outs), vec![b"ABC".to_vec()]);
    let big = "00".repeat(513);
    assert_eq!(
        ask(&mut m, &format!("AT+NSOSD=0,513,{big}"), t),
        "\r\n+CME ERROR:50\r\n"
    );
    assert_eq!(
        ask(&mut m, "AT+NSOSD=0,2,414243", t),
        "\r\n+CME ERROR:50\r\n"
    );
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"hello".to_vec(),
        },
        t,
    );
    assert_eq!(serial(&m.take_out()), "\r\n+NSONMI:0,5\r\n");
    assert_eq!(
        ask(&mut m, "AT+NSORF=0,3", t),
        ok(&["0,127.0.0.1,9000,3,68656C,2"])
    );
    assert_eq!(
        ask(&mut m, "AT+NSORF=0,512", t),
        ok(&["0,127.0.0.1,9000,2,6C6F,0"])
    );
    assert_eq!(ask(&mut m, "AT+NSORF=0,512", t), ok(&[]));
    m.on_net(NetEvent::Closed { conn }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+NSOCLI: 0\r\n");
    assert_eq!(ask(&mut m, "AT+NSOSD=0,1,41", t), "\r\nERROR\r\n");
    assert_eq!(ask(&mut m, "AT+NSOCL=0", t), ok(&[]));
    assert_eq!(ask(&mut m, "AT+NSOCL=0", t), "\r\nERROR\r\n");
    // Seven sockets at most.
    for i in 0..7 {
        assert_eq!(
            ask(&mut m, "AT+NSOCR=STREAM,6,0,1", t),
            ok(&[&i.to_string()])
        );
    }
    assert_eq!(ask(&mut m, "AT+NSOCR=STREAM,6,0,1", t), "\r\nERROR\r\n");
}

#[test]
fn bg96_sockets() {
    let (mut m, t) = registered(Model::Bg96);
    // No PDP context yet: the open fails asynchronously.
    assert_eq!(
        ask(&mut m, "AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,0", t),
        "\r\nOK\r\n\r\n+QIOPEN: 0,566\r\n"
    );
    assert_eq!(ask(&mut m, "AT+QIACT=1", t), ok(&[]));
    assert_eq!(
        ask(&mut m, "AT+QIACT?", t),
        ok(&["+QIACT: 1,1,1,\"10.1.2.3\""])
    );
    assert_eq!(
        ask(&mut m, "AT+QIOPEN=1,0,\"TCP\",\"example.com\",80,0,0", t),
        "\r\nOK\r\n\r\n+QIOPEN: 0,566\r\n"
    );
    m.feed(b"AT+QIOPEN=1,0,\"TCP\",\"localhost\",9000,0,0\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), "\r\nOK\r\n");
    let (conn, _) = connects(&outs)[0];
    assert_eq!(
        ask(&mut m, "AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,0", t),
        "\r\n+CME ERROR: 563\r\n"
    );
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+QIOPEN: 0,0\r\n");
    // QISEND: prompt, raw bytes (a CR inside the data is data), SEND OK.
    m.feed(b"AT+QISEND=0,4\r\n", t);
    assert_eq!(serial(&m.take_out()), "\r\n> ");
    m.feed(b"a\rb", t);
    assert_eq!(serial(&m.take_out()), "");
    m.feed(b"\nAT\r", t);
    let outs = m.take_out();
    assert_eq!(sends(&outs), vec![b"a\rb\n".to_vec()]);
    assert_eq!(serial(&outs), "\r\nSEND OK\r\n\r\nOK\r\n");
    assert_eq!(ask(&mut m, "AT+QISEND=0,1461", t), "\r\nERROR\r\n");
    assert_eq!(ask(&mut m, "AT+QISEND=0,0", t), ok(&["+QISEND: 4,4,0"]));
    // Buffer mode: one URC until read, QIRD returns raw bytes.
    for part in [&b"xy"[..], b"z"] {
        m.on_net(
            NetEvent::Data {
                conn,
                bytes: part.to_vec(),
            },
            t,
        );
    }
    assert_eq!(serial(&m.take_out()), "\r\n+QIURC: \"recv\",0\r\n");
    assert_eq!(
        ask(&mut m, "AT+QIRD=0,1500", t),
        "\r\n+QIRD: 3\r\nxyz\r\n\r\nOK\r\n"
    );
    assert_eq!(ask(&mut m, "AT+QIRD=0,1500", t), ok(&["+QIRD: 0"]));
    m.on_net(NetEvent::Closed { conn }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+QIURC: \"closed\",0\r\n");
    assert_eq!(ask(&mut m, "AT+QICLOSE=0", t), ok(&[]));
    // Push mode: data in the URC.
    m.feed(b"AT+QIOPEN=1,3,\"TCP\",\"127.0.0.1\",9000,0,1\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.take_out();
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"hi\r\n".to_vec(),
        },
        t,
    );
    assert_eq!(serial(&m.take_out()), "\r\n+QIURC: \"recv\",3,4\r\nhi\r\n");
    assert_eq!(ask(&mut m, "AT+QIRD=3,1500", t), "\r\nERROR\r\n");
    // A failed connection.
    m.feed(b"AT+QIOPEN=1,4,\"TCP\",\"127.0.0.1\",9001,0,1\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: false }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+QIOPEN: 4,566\r\n");
}

#[test]
fn sim7020_sockets() {
    let (mut m, t) = registered(Model::Sim7020);
    assert_eq!(ask(&mut m, "AT+CSOC=1,1,1", t), ok(&["+CSOC: 0"]));
    assert_eq!(ask(&mut m, "AT+CSOC=1,2,1", t), "\r\n+CME ERROR: 50\r\n");
    assert_eq!(
        ask(&mut m, "AT+CSOCON=0,80,\"192.168.1.1\"", t),
        "\r\nERROR\r\n"
    );
    m.feed(b"AT+CSOCON=0,9000,\"127.0.0.1\"\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    assert_eq!(serial(&m.take_out()), "\r\nOK\r\n");
    m.feed(b"AT+CSOSEND=0,6,414243\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), ok(&[]));
    assert_eq!(sends(&outs), vec![b"ABC".to_vec()]);
    assert_eq!(
        ask(&mut m, "AT+CSOSEND=0,4,414243", t),
        "\r\n+CME ERROR: 50\r\n"
    );
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"ok".to_vec(),
        },
        t,
    );
    assert_eq!(serial(&m.take_out()), "\r\n+CSONMI: 0,4,6F6B\r\n");
    m.on_net(NetEvent::Closed { conn }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+CSOERR: 0,4\r\n");
    assert_eq!(ask(&mut m, "AT+CSOCL=0", t), ok(&[]));
}

#[test]
fn registration_loss_closes_sockets() {
    let (mut m, t) = registered(Model::Bg96);
    ask(&mut m, "AT+QIACT=1", t);
    m.feed(b"AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,0\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.take_out();
    m.lose_registration(Duration::from_secs(10), t);
    let outs = m.take_out();
    assert_eq!(
        serial(&outs),
        "\r\n+QIURC: \"pdpdeact\",1\r\n\r\n+QIURC: \"closed\",0\r\n"
    );
    assert!(outs.contains(&Out::Close {
        conn,
        graceful: false
    }));
}

#[test]
fn bc66_registration_loss_reports_the_context_then_the_socket() {
    let (mut m, t) = registered(Model::Bc66);
    m.feed(b"AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,0\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.take_out();
    m.lose_registration(Duration::from_secs(10), t);
    let text = serial(&m.take_out());
    let pdp = text.find("+QIURC: \"pdpdeact\",1").expect("pdpdeact URC");
    let closed = text.find("+QIURC: \"closed\",0").expect("closed URC");
    assert!(pdp < closed, "{text}");
}

#[test]
fn urc_quirk_never_splits_raw_data_or_prompts() {
    let (mut m, t0) = modem_with(Model::Bg96, &["urc=1:1h"]);
    let t = t0 + Duration::from_secs(3);
    m.tick(t);
    m.take_out();
    let u = "\r\n+CEREG: 1\r\n";
    assert_eq!(ask(&mut m, "ATE0", t), format!("ATE0\r{u}\r\nOK\r\n"));
    ask(&mut m, "AT+QIACT=1", t);
    m.feed(b"AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,0\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"xyz".to_vec(),
        },
        t,
    );
    m.take_out();
    assert_eq!(
        ask(&mut m, "AT+QIRD=0,1500", t),
        format!("\r\n+QIRD: 3\r\nxyz\r\n{u}\r\nOK\r\n")
    );
    assert_eq!(ask(&mut m, "AT+QISEND=0,2", t), "\r\n> ");
    m.feed(b"ab", t);
    assert_eq!(serial(&m.take_out()), "\r\nSEND OK\r\n");
    // Runtime control of the rules.
    m.clear_faults();
    assert_eq!(ask(&mut m, "AT+CSQ", t), ok(&["+CSQ: 20,99"]));
    m.add_fault(ModemFault::parse("cme:4").unwrap(), t);
    assert_eq!(ask(&mut m, "AT+CSQ", t), "\r\n+CME ERROR: 4\r\n");
    assert_eq!(ask(&mut m, "AT", t), ok(&[]));
}

#[test]
fn a_full_transmit_buffer_is_busy_until_the_link_carries_it() {
    let (mut m, t) = registered(Model::Bc95);
    ask(&mut m, "AT+NSOCR=STREAM,6,0,1", t);
    m.feed(b"AT+NSOCO=0,127.0.0.1,9000\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.take_out();
    let line = format!("AT+NSOSD=0,512,{}", "41".repeat(512));
    for _ in 0..super::core::TX_BUFFER_MAX / 512 {
        assert_eq!(ask(&mut m, &line, t), ok(&["0,512"]));
    }
    assert_eq!(ask(&mut m, &line, t), "\r\n+CME ERROR:159\r\n");
    m.on_net(NetEvent::Sent { conn, n: 512 }, t);
    assert_eq!(ask(&mut m, &line, t), ok(&["0,512"]));

    let (mut m, t) = registered(Model::Bg96);
    ask(&mut m, "AT+QIACT=1", t);
    m.feed(b"AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,1\r", t);
    let (conn, _) = connects(&m.take_out())[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    m.take_out();
    let mut results = Vec::new();
    for _ in 0..7 {
        m.feed(b"AT+QISEND=0,1460\r", t);
        m.feed(&[b'x'; 1460], t);
        results.push(serial(&m.take_out()));
    }
    assert_eq!(results[4], "\r\n> \r\nSEND OK\r\n");
    assert_eq!(results[5], "\r\n> \r\nSEND FAIL\r\n", "5 x 1460 > 8 KiB");
}

#[test]
fn bc66_sockets_in_hex_data_format() {
    let (mut m, t) = registered(Model::Bc66);
    assert_eq!(ask(&mut m, "AT+QICFG=\"dataformat\",1,1", t), ok(&[]));
    assert_eq!(
        ask(&mut m, "AT+QICFG=\"bogus\",1,1", t),
        "\r\n+CME ERROR: 50\r\n"
    );
    // Not local: refused asynchronously, as on the BG96.
    assert_eq!(
        ask(&mut m, "AT+QIOPEN=1,0,\"TCP\",\"example.com\",80,0,0", t),
        "\r\nOK\r\n\r\n+QIOPEN: 0,566\r\n"
    );
    m.feed(b"AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",9000,0,0\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), "\r\nOK\r\n");
    let (conn, port) = connects(&outs)[0];
    assert_eq!(port, 9000);
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+QIOPEN: 0,0\r\n");
    // Inline hex send: OK, then SEND OK.
    m.feed(b"AT+QISEND=0,3,41420D\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), "\r\nOK\r\n\r\nSEND OK\r\n");
    assert_eq!(sends(&outs), vec![b"AB\r".to_vec()]);
    assert_eq!(
        ask(&mut m, "AT+QISEND=0,2,414243", t),
        "\r\n+CME ERROR: 50\r\n"
    );
    // Buffer mode: one recv URC, then hex reads until "+QIRD: 0".
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"hello".to_vec(),
        },
        t,
    );
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"!".to_vec(),
        },
        t,
    );
    assert_eq!(serial(&m.take_out()), "\r\n+QIURC: \"recv\",0\r\n");
    assert_eq!(ask(&mut m, "AT+QIRD=0,3", t), ok(&["+QIRD: 3,68656C"]));
    assert_eq!(ask(&mut m, "AT+QIRD=0,512", t), ok(&["+QIRD: 3,6C6F21"]));
    assert_eq!(ask(&mut m, "AT+QIRD=0,512", t), ok(&["+QIRD: 0"]));
    assert_eq!(ask(&mut m, "AT+QIRD=0,513", t), "\r\n+CME ERROR: 50\r\n");
    m.on_net(NetEvent::Closed { conn }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+QIURC: \"closed\",0\r\n");
    assert_eq!(ask(&mut m, "AT+QICLOSE=0", t), "\r\nCLOSE OK\r\n");
    assert_eq!(ask(&mut m, "AT+QICLOSE=0", t), "\r\nCLOSE OK\r\n");
    // A reboot puts the module back in text data format: reads are raw, not hex.
    m.reboot(t);
    let t = t + Duration::from_secs(5);
    m.tick(t);
    ask(&mut m, "ATE0", t);
    m.take_out();
    assert_eq!(m.hex_format, (false, false));
}

#[test]
fn sim7080_ca_sockets() {
    let (mut m, t) = registered(Model::Sim7080);
    // No PDP context: CAOPEN fails with a result code.
    assert_eq!(
        ask(&mut m, "AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",9000", t),
        ok(&["+CAOPEN: 0,1"])
    );
    assert_eq!(
        ask(&mut m, "AT+CNACT?", t),
        ok(&["+CNACT: 0,0,\"0.0.0.0\""])
    );
    assert_eq!(
        ask(&mut m, "AT+CNACT=0,1", t),
        "\r\nOK\r\n\r\n+APP PDP: 0,ACTIVE\r\n"
    );
    assert_eq!(ask(&mut m, "AT+CNACT=0,1", t), "\r\nERROR\r\n");
    assert_eq!(
        ask(&mut m, "AT+CNACT?", t),
        ok(&["+CNACT: 0,1,\"10.1.2.3\""])
    );
    assert_eq!(
        ask(&mut m, "AT+CAOPEN=0,0,\"TCP\",\"example.com\",80", t),
        ok(&["+CAOPEN: 0,1"])
    );
    m.feed(b"AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",9000\r", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), "");
    let (conn, _) = connects(&outs)[0];
    m.on_net(NetEvent::Connected { conn, ok: true }, t);
    assert_eq!(serial(&m.take_out()), ok(&["+CAOPEN: 0,0"]));
    assert_eq!(
        ask(&mut m, "AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",9000", t),
        ok(&["+CAOPEN: 0,4"])
    );
    // CASEND: bare ">" prompt, raw bytes (CR LF OK CR LF inside is data), OK.
    m.feed(b"AT+CASEND=0,6\r\n", t);
    assert_eq!(serial(&m.take_out()), "\r\n>");
    m.feed(b"\r\nOK\r\n", t);
    let outs = m.take_out();
    assert_eq!(serial(&outs), "\r\nOK\r\n");
    assert_eq!(sends(&outs), vec![b"\r\nOK\r\n".to_vec()]);
    assert_eq!(ask(&mut m, "AT+CASEND=0,1461", t), "\r\n+CME ERROR: 50\r\n");
    // Data waiting: one URC, binary inside the +CARECV line.
    m.on_net(
        NetEvent::Data {
            conn,
            bytes: b"a\r\nOK\r\nb".to_vec(),
        },
        t,
    );
    assert_eq!(serial(&m.take_out()), "\r\n+CADATAIND: 0\r\n");
    assert_eq!(
        ask(&mut m, "AT+CARECV=0,1460", t),
        "\r\n+CARECV: 8,a\r\nOK\r\nb\r\n\r\nOK\r\n"
    );
    assert_eq!(ask(&mut m, "AT+CARECV=0,1460", t), ok(&["+CARECV: 0"]));
    m.on_net(NetEvent::Closed { conn }, t);
    assert_eq!(serial(&m.take_out()), "\r\n+CASTATE: 0,0\r\n");
    assert_eq!(ask(&mut m, "AT+CACLOSE=0", t), ok(&[]));
    assert_eq!(ask(&mut m, "AT+CACLOSE=0", t), "\r\nERROR\r\n");
    // Registration lost: the PDP context goes with it.
    m.lose_registration(Duration::from_secs(5), t);
    let text = serial(&m.take_out());
    assert!(text.contains("+APP PDP: 0,DEACTIVE"), "{text}");
}

#[test]
fn denial_and_sim_removal_report_the_pdp_context_lost() {
    let (mut m, t) = registered(Model::Sim7080);
    ask(&mut m, "AT+CNACT=0,1", t);
    m.take_out();
    m.deny(15, t);
    let text = serial(&m.take_out());
    assert!(text.contains("+APP PDP: 0,DEACTIVE"), "{text}");
    let (mut m, t) = registered(Model::Bc66);
    m.set_sim(false, t);
    let text = serial(&m.take_out());
    assert!(text.contains("+QIURC: \"pdpdeact\",1"), "{text}");
}
