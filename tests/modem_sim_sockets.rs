//! `gasdtu simulate --modem <model>` socket round trips, AT spoken from the test through the
//! other end of the pty pair as raw bytes (`common::modem_term`): per model (BG96, BC95,
//! SIM7020, BC66, SIM7080) a round trip through the module to a local TCP echo server (bytes
//! intact, the model's data URC formats, the peer's close URC, and pacing: a 2 KB transfer
//! takes at least its downlink serialization time plus the RTT, a lower bound only), and the
//! BG96's buffer access mode and a refused host.

mod common;

use std::time::{Duration, Instant};

use common::modem_term::{boot_end, echo_server, start, DEADLINE, RTT};

/// 2 KB that include CR, LF and every other byte value.
fn payload() -> Vec<u8> {
    (0..2048u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// The least time 2 KB can take through the module and back: all of it serialized on the
/// 8 kbit/s downlink, plus one RTT of propagation.
fn lower_bound(n: usize) -> Duration {
    Duration::from_secs_f64(n as f64 * 8.0 / 8000.0) + RTT
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn bg96_socket_round_trip_push_mode() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    assert_eq!(s.term.cmd("AT+QIACT=1"), "\r\nOK\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(
        s.term
            .cmd(&format!("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",{port},0,1")),
        "\r\nOK\r\n"
    );
    s.term.until("\r\n+QIOPEN: 0,0\r\n");
    // Over the per-send limit: ERROR.
    assert_eq!(s.term.cmd("AT+QISEND=0,1461"), "\r\nERROR\r\n");
    let t0 = Instant::now();
    for part in data.chunks(1460) {
        s.term
            .send(format!("AT+QISEND=0,{}\r", part.len()).as_bytes());
        s.term.until("\r\n> ");
        s.term.send(part);
        s.term.until("\r\nSEND OK\r\n");
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        s.term.until("+QIURC: \"recv\",0,");
        let n: usize = s.term.until("\r\n").trim().parse().expect("a length");
        got.extend(s.term.take(n));
    }
    let took = t0.elapsed();
    assert_eq!(got, data, "bytes arrive intact");
    assert!(
        took >= lower_bound(data.len()),
        "2 KB round trip in {took:?}, below the link's {:?}",
        lower_bound(data.len())
    );
    eprintln!("bg96: 2 KB echoed in {took:?}");
    s.term.until("\r\n+QIURC: \"closed\",0\r\n");
    assert_eq!(s.term.cmd("AT+QICLOSE=0"), "\r\nOK\r\n");
    let st = s.stats();
    assert_eq!(st["sockets_opened"], 1);
    assert_eq!(st["bytes_up"], 2048);
    assert_eq!(st["bytes_down"], 2048);
}

#[test]
fn bg96_buffer_mode_and_refused_host() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    s.term.cmd("AT+QIACT=1");
    assert_eq!(
        s.term.cmd("AT+QIOPEN=1,1,\"TCP\",\"10.0.0.1\",80,0,0"),
        "\r\nOK\r\n"
    );
    s.term.until("\r\n+QIOPEN: 1,566\r\n");
    let port = echo_server(5);
    s.term
        .cmd(&format!("AT+QIOPEN=1,2,\"TCP\",\"127.0.0.1\",{port},0,0"));
    s.term.until("\r\n+QIOPEN: 2,0\r\n");
    s.term.send(b"AT+QISEND=2,5\r");
    s.term.until("\r\n> ");
    s.term.send(b"he\r\no");
    s.term.until("\r\nSEND OK\r\n");
    s.term.until("\r\n+QIURC: \"recv\",2\r\n");
    assert_eq!(
        s.term.cmd("AT+QIRD=2,1500"),
        "\r\n+QIRD: 5\r\nhe\r\no\r\n\r\nOK\r\n"
    );
}

#[test]
fn bc95_socket_round_trip_hex() {
    let mut s = start("bc95", &[]);
    s.term.until(boot_end("bc95"));
    s.wait_registered("+CEREG:0,1\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+NSOCR=STREAM,6,0,1"), "\r\n0\r\n\r\nOK\r\n");
    assert_eq!(
        s.term.cmd(&format!("AT+NSOCO=0,127.0.0.1,{port}")),
        "\r\nOK\r\n"
    );
    let too_big = format!("AT+NSOSD=0,513,{}", "00".repeat(513));
    assert_eq!(s.term.cmd(&too_big), "\r\n+CME ERROR:50\r\n");
    let t0 = Instant::now();
    for part in data.chunks(512) {
        let r = s
            .term
            .cmd(&format!("AT+NSOSD=0,{},{}", part.len(), hex(part)));
        assert_eq!(r, format!("\r\n0,{}\r\n\r\nOK\r\n", part.len()));
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        s.term.until("+NSONMI:0,");
        s.term.until("\r\n");
        loop {
            let r = s.term.cmd("AT+NSORF=0,512");
            if r == "\r\nOK\r\n" {
                break;
            }
            // "0,127.0.0.1,<port>,<len>,<hex>,<remaining>"
            let line = r
                .trim_start()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 6, "{line}");
            assert_eq!((f[0], f[1]), ("0", "127.0.0.1"));
            assert_eq!(f[2], port.to_string());
            let bytes = unhex(f[4]);
            assert_eq!(bytes.len(), f[3].parse::<usize>().unwrap());
            got.extend(bytes);
            if f[5] == "0" {
                break;
            }
        }
    }
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("bc95: 2 KB echoed in {took:?}");
    s.term.until("\r\n+NSOCLI: 0\r\n");
    assert_eq!(s.term.cmd("AT+NSOCL=0"), "\r\nOK\r\n");
}

#[test]
fn sim7020_socket_round_trip_hex() {
    let mut s = start("sim7020", &[]);
    s.term.until(boot_end("sim7020"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+CSOC=1,1,1"), "\r\n+CSOC: 0\r\n\r\nOK\r\n");
    assert_eq!(
        s.term.cmd(&format!("AT+CSOCON=0,{port},\"127.0.0.1\"")),
        "\r\nOK\r\n"
    );
    let t0 = Instant::now();
    for part in data.chunks(512) {
        let h = hex(part);
        assert_eq!(
            s.term.cmd(&format!("AT+CSOSEND=0,{},{h}", h.len())),
            "\r\nOK\r\n"
        );
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        s.term.until("\r\n+CSONMI: 0,");
        let line = s.term.until("\r\n");
        let (count, h) = line.trim().split_once(',').expect("count,hex");
        assert_eq!(count.parse::<usize>().unwrap(), h.len());
        got.extend(unhex(h));
    }
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("sim7020: 2 KB echoed in {took:?}");
    s.term.until("\r\n+CSOERR: 0,4\r\n");
    assert_eq!(s.term.cmd("AT+CSOCL=0"), "\r\nOK\r\n");
}

#[test]
fn bc66_socket_round_trip_hex_data_format() {
    let mut s = start("bc66", &[]);
    s.term.until(boot_end("bc66"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+QICFG=\"dataformat\",1,1"), "\r\nOK\r\n");
    s.term
        .cmd(&format!("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",{port},0,0"));
    s.term.until("\r\n+QIOPEN: 0,0\r\n");
    let t0 = Instant::now();
    for part in data.chunks(512) {
        let r = s
            .term
            .cmd(&format!("AT+QISEND=0,{},{}", part.len(), hex(part)));
        assert_eq!(r, "\r\nOK\r\n");
        s.term.until("\r\nSEND OK\r\n");
    }
    s.term.until("\r\n+QIURC: \"recv\",0\r\n");
    let mut got = Vec::new();
    let end = Instant::now() + DEADLINE;
    while got.len() < data.len() {
        assert!(
            Instant::now() < end,
            "{} of {} bytes",
            got.len(),
            data.len()
        );
        let r = s.term.cmd("AT+QIRD=0,512");
        let line = r
            .lines()
            .find(|l| l.starts_with("+QIRD: "))
            .unwrap_or_else(|| panic!("{r:?}"));
        let body = &line["+QIRD: ".len()..];
        let (n, h) = body.split_once(',').unwrap_or((body, ""));
        let bytes = unhex(h);
        assert_eq!(bytes.len(), n.parse::<usize>().unwrap(), "{line}");
        assert!(bytes.len() <= 512);
        if bytes.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        got.extend(bytes);
    }
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("bc66: 2 KB echoed in {took:?}");
    s.term.until("\r\n+QIURC: \"closed\",0\r\n");
    s.send_expect("AT+QICLOSE=0", "\r\nCLOSE OK\r\n");
}

#[test]
fn sim7080_ca_socket_round_trip_binary_in_the_line() {
    let mut s = start("sim7080", &[]);
    s.term.until(boot_end("sim7080"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    // 2 KB that start with what would end a reply if it were read as lines.
    let mut data = b"\r\nOK\r\n".to_vec();
    data.extend(&payload()[6..]);
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+CNACT=0,1"), "\r\nOK\r\n");
    s.term.until("\r\n+APP PDP: 0,ACTIVE\r\n");
    assert_eq!(
        s.term
            .cmd(&format!("AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",{port}")),
        "\r\n+CAOPEN: 0,0\r\n\r\nOK\r\n"
    );
    let t0 = Instant::now();
    for part in data.chunks(1460) {
        s.term
            .send(format!("AT+CASEND=0,{}\r", part.len()).as_bytes());
        s.term.until("\r\n>");
        s.term.send(part);
        s.term.until("\r\nOK\r\n");
    }
    s.term.until("\r\n+CADATAIND: 0\r\n");
    let mut got = Vec::new();
    let end = Instant::now() + DEADLINE;
    while got.len() < data.len() {
        assert!(
            Instant::now() < end,
            "{} of {} bytes",
            got.len(),
            data.len()
        );
        s.term.send(b"AT+CARECV=0,1460\r");
        s.term.until("+CARECV: ");
        let head = String::from_utf8_lossy(&s.term.until_any(&[b",", b"\r\n"])).into_owned();
        let n: usize = head.trim_end_matches([',', '\r', '\n']).parse().unwrap();
        assert!(n <= 1460);
        if head.ends_with(',') {
            got.extend(s.term.take(n));
        } else {
            assert_eq!(n, 0);
            std::thread::sleep(Duration::from_millis(50));
        }
        s.term.until("\r\nOK\r\n");
    }
    let took = t0.elapsed();
    assert_eq!(got, data, "bytes arrive intact");
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("sim7080: 2 KB echoed in {took:?}");
    s.term.until("\r\n+CASTATE: 0,0\r\n");
    assert_eq!(s.term.cmd("AT+CACLOSE=0"), "\r\nOK\r\n");
}
