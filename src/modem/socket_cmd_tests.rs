//! Tests of the socket dialects: builders against the sheet's command texts, chunking to each
//! module's maximum, read replies and data URCs taken through the real `AtParser` from
//! transcripts, length checks, and property tests (fixed seed) that hex round-trips and that
//! no URC or read reply panics the parsers.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;
use crate::modem::at::{AtParser, Event, Request};
use crate::modem::profile::{by_id, PROFILES};

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn profile(id: &str) -> &'static Profile {
    by_id(id).expect("known profile")
}

/// The exchange of `command` answered by `reply` bytes.
fn exchange(command: &str, reply: &[u8]) -> Exchange {
    let mut p = AtParser::new();
    p.begin(Request::new(command));
    p.feed(reply)
        .into_iter()
        .find_map(|e| match e {
            Event::Exchange(x) => Some(x),
            _ => None,
        })
        .expect("an exchange")
}

/// The URCs in `bytes` at idle.
fn urcs(bytes: &[u8]) -> Vec<Urc> {
    AtParser::new()
        .feed(bytes)
        .into_iter()
        .filter_map(|e| match e {
            Event::Urc(u) => Some(u),
            _ => None,
        })
        .collect()
}

#[test]
fn builders() {
    assert_eq!(nso_create(0), "AT+NSOCR=STREAM,6,0,1");
    assert_eq!(nso_connect(1, LOCAL, 8883), "AT+NSOCO=1,127.0.0.1,8883");
    assert_eq!(nso_read(1, 4096), "AT+NSORF=1,1500");
    assert_eq!(nso_close(1), "AT+NSOCL=1");
    assert_eq!(
        qi_open(0, LOCAL, 8883, true),
        "AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1"
    );
    assert_eq!(
        qi_open(2, LOCAL, 1883, false),
        "AT+QIOPEN=1,2,\"TCP\",\"127.0.0.1\",1883,0,0"
    );
    assert_eq!(qi_read(0, 1500), "AT+QIRD=0,1500");
    assert_eq!(qi_close(0), "AT+QICLOSE=0");
    assert_eq!(CSO_CREATE, "AT+CSOC=1,1,1");
    assert_eq!(
        cso_connect(0, LOCAL, 8883),
        "AT+CSOCON=0,8883,\"127.0.0.1\""
    );
    assert_eq!(cso_close(0), "AT+CSOCL=0");
}

#[test]
fn sends_are_chunked_to_the_module_maximum() {
    let data: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
    let bc95 = send_steps(profile("bc95"), 1, &data).expect("bc95");
    assert_eq!(bc95.len(), 3);
    let SendStep::Inline(first) = &bc95[0] else {
        panic!("{bc95:?}")
    };
    assert!(first.starts_with("AT+NSOSD=1,512,000102"), "{first}");
    assert_eq!(first.len(), "AT+NSOSD=1,512,".len() + 1024);
    let SendStep::Inline(last) = &bc95[2] else {
        panic!()
    };
    assert!(last.starts_with("AT+NSOSD=1,176,"), "{last}");

    let sim = send_steps(profile("sim7020"), 0, b"Hi").expect("sim7020");
    assert_eq!(sim, vec![SendStep::Inline("AT+CSOSEND=0,4,4869".into())]);

    let big: Vec<u8> = vec![7; 3000];
    let bg96 = send_steps(profile("bg96"), 0, &big).expect("bg96");
    assert_eq!(bg96.len(), 3);
    assert_eq!(
        bg96[0],
        SendStep::Prompt {
            command: "AT+QISEND=0,1460".into(),
            payload: &big[..1460]
        }
    );
    assert_eq!(
        bg96[2],
        SendStep::Prompt {
            command: "AT+QISEND=0,80".into(),
            payload: &big[2920..]
        }
    );
    let bc66 = send_steps(profile("bc66"), 0, b"\x00\xff").expect("bc66");
    assert_eq!(bc66, vec![SendStep::Inline("AT+QISEND=0,2,00FF".into())]);

    assert!(send_steps(profile("bc95"), 0, b"")
        .expect("empty")
        .is_empty());
    assert_eq!(
        send_steps(profile("generic"), 0, b"x"),
        Err(SocketError::Unsupported {
            dialect: SocketDialect::None
        })
    );
    assert_eq!(
        send_one(SocketDialect::NsoHex, 0, &[0; 513], 512),
        Err(SocketError::TooLong { len: 513, max: 512 })
    );
    for p in PROFILES.iter().filter(|p| p.max_send > 0) {
        let steps = send_steps(p, 0, &big).expect("chunks");
        assert_eq!(steps.len(), big.len().div_ceil(p.max_send), "{}", p.id);
    }
}

#[test]
fn nso_replies() {
    let x = exchange("AT+NSOCR=STREAM,6,0,1", b"\r\n1\r\n\r\nOK\r\n");
    assert_eq!(nso_created(&x), Ok(1));
    let x = exchange("AT+NSOCR=STREAM,6,0,1", b"\r\n7\r\n\r\nOK\r\n");
    assert!(nso_created(&x).is_err());
    let x = exchange("AT+NSOSD=1,2,4869", b"\r\n1,2\r\n\r\nOK\r\n");
    assert_eq!(nso_sent(&x), Ok(2));
    let x = exchange(
        "AT+NSORF=1,512",
        b"\r\n1,127.0.0.1,8883,5,48656c6C6F,3\r\n\r\nOK\r\n",
    );
    assert_eq!(
        nso_read_reply(&x),
        Ok(Received {
            data: b"Hello".to_vec(),
            remaining: Some(3)
        })
    );
    let x = exchange("AT+NSORF=1,512", b"\r\nOK\r\n");
    assert_eq!(
        nso_read_reply(&x),
        Ok(Received {
            data: vec![],
            remaining: Some(0)
        })
    );
    let x = exchange(
        "AT+NSORF=1,512",
        b"\r\n1,127.0.0.1,8883,4,4869,0\r\n\r\nOK\r\n",
    );
    assert_eq!(
        nso_read_reply(&x),
        Err(SocketError::LengthMismatch {
            reply: "NSORF",
            said: 4,
            got: 2
        })
    );
    let x = exchange(
        "AT+NSORF=1,512",
        b"\r\n1,127.0.0.1,8883,1,4G,0\r\n\r\nOK\r\n",
    );
    assert!(matches!(nso_read_reply(&x), Err(SocketError::Hex { .. })));
}

#[test]
fn qi_and_cso_replies() {
    let x = exchange("AT+QIRD=0,1500", b"\r\n+QIRD: 5\r\nab\r\nc\r\n\r\nOK\r\n");
    assert_eq!(
        qi_read_reply(&x),
        Ok(Received {
            data: b"ab\r\nc".to_vec(),
            remaining: None
        })
    );
    let x = exchange("AT+QIRD=0,1500", b"\r\n+QIRD: 0\r\n\r\nOK\r\n");
    assert_eq!(qi_read_reply(&x).map(|r| r.data), Ok(vec![]));
    let x = exchange("AT+QIRD=0,1500", b"\r\n+QIRD: 1501\r\n\r\nOK\r\n");
    assert!(matches!(
        qi_read_reply(&x),
        Err(SocketError::LengthMismatch { said: 1501, .. })
    ));
    let x = exchange("AT+CSOC=1,1,1", b"\r\n+CSOC: 2\r\n\r\nOK\r\n");
    assert_eq!(cso_created(&x), Ok(2));
    let x = exchange("AT+CSOC=1,1,1", b"\r\nOK\r\n");
    assert!(cso_created(&x).is_err());
}

#[test]
fn bc66_and_sim7080_commands_and_replies() {
    assert_eq!(QI_HEX_FORMAT, "AT+QICFG=\"dataformat\",1,1");
    assert_eq!(
        ca_open(0, LOCAL, 8883),
        "AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",8883"
    );
    assert_eq!(ca_read(0, 1460), "AT+CARECV=0,1460");
    assert_eq!(ca_read(0, 99_999), "AT+CARECV=0,1500");
    assert_eq!(ca_close(0), "AT+CACLOSE=0");
    let ca = send_steps(profile("sim7080"), 0, b"Hi").expect("sim7080");
    assert_eq!(
        ca,
        vec![SendStep::Prompt {
            command: "AT+CASEND=0,2".into(),
            payload: b"Hi"
        }]
    );

    // BC66 hex reads: data, empty, length checks, bad hex, over the bound.
    let read = |reply: &[u8]| qi_hex_read_reply(&exchange("AT+QIRD=0,512", reply));
    assert_eq!(
        read(b"\r\n+QIRD: 5,48656c6C6F\r\n\r\nOK\r\n").map(|r| r.data),
        Ok(b"Hello".to_vec())
    );
    assert_eq!(
        read(b"\r\n+QIRD: 0\r\n\r\nOK\r\n").map(|r| r.data),
        Ok(vec![])
    );
    assert_eq!(
        read(b"\r\n+QIRD: 3,4869\r\n\r\nOK\r\n"),
        Err(SocketError::LengthMismatch {
            reply: "QIRD",
            said: 3,
            got: 2
        })
    );
    assert!(matches!(
        read(b"\r\n+QIRD: 1,4G\r\n\r\nOK\r\n"),
        Err(SocketError::Hex { .. })
    ));
    assert!(read(b"\r\n+QIRD: 99999999,41\r\n\r\nOK\r\n").is_err());
    assert!(read(b"\r\nOK\r\n").is_err());

    // SIM7080: CAOPEN result line, CARECV's raw bytes taken from inside the line.
    let x = exchange(
        "AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",8883",
        b"\r\n+CAOPEN: 0,0\r\n\r\nOK\r\n",
    );
    assert_eq!(ca_opened(&x), Ok((0, 0)));
    let x = exchange(
        "AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",9",
        b"\r\n+CAOPEN: 0,1\r\n\r\nOK\r\n",
    );
    assert_eq!(ca_opened(&x), Ok((0, 1)));
    assert!(ca_opened(&exchange("AT+CAOPEN=0,0", b"\r\nOK\r\n")).is_err());
    let x = exchange(
        "AT+CARECV=0,1460",
        b"\r\n+CARECV: 6,\r\nOK\r\n\r\n\r\nOK\r\n",
    );
    assert_eq!(
        ca_read_reply(&x).map(|r| r.data),
        Ok(b"\r\nOK\r\n".to_vec())
    );
    let x = exchange("AT+CARECV=0,1460", b"\r\n+CARECV: 0\r\n\r\nOK\r\n");
    assert_eq!(ca_read_reply(&x).map(|r| r.data), Ok(vec![]));
    // Over the bound: the parser read it as a line without data.
    let x = exchange("AT+CARECV=0,1460", b"\r\n+CARECV: 1501,x\r\n\r\nOK\r\n");
    assert!(matches!(
        ca_read_reply(&x),
        Err(SocketError::LengthMismatch { said: 1501, .. })
    ));

    use SocketUrc::*;
    let got: Vec<_> = urcs(
        b"\r\n+APP PDP: 0,ACTIVE\r\n\r\n+CADATAIND: 0\r\n\r\n+CASTATE: 0,1\r\n\
\r\n+CASTATE: 0,0\r\n\r\n+APP PDP: 0,DEACTIVE\r\n\r\n+APP PDP: 0,MAYBE\r\n\r\n+CADATAIND: x\r\n",
    )
    .iter()
    .map(parse_urc)
    .collect();
    assert_eq!(
        got[..5].to_vec(),
        vec![
            Some(Ok(PdpActivated)),
            Some(Ok(DataWaiting { id: 0, len: None })),
            None,
            Some(Ok(Closed { id: 0 })),
            Some(Ok(PdpDeactivated)),
        ]
    );
    assert!(matches!(got[5], Some(Err(SocketError::Reply(_)))));
    assert!(matches!(got[6], Some(Err(SocketError::Reply(_)))));
}

#[test]
fn socket_urcs() {
    let stream = b"\r\n+NSONMI:1,5\r\n\r\n+NSOCLI: 1\r\n\r\n+QIOPEN: 0,0\r\n\r\n+QIOPEN: 1,566\r\n\
\r\n+QIURC: \"recv\",0\r\n\r\n+QIURC: \"recv\",0,3\r\nA\r\n\r\n+QIURC: \"closed\",0\r\n\
\r\n+QIURC: \"pdpdeact\",1\r\n\r\n+CSONMI: 0,4,4869\r\n\r\n+CSOERR: 0,4\r\n\r\n+CSOERR: 0,1\r\n\
\r\n+QIURC: \"incoming full\"\r\n\r\n+CEREG: 1\r\n\r\nhello\r\n";
    let got: Vec<_> = urcs(stream).iter().map(parse_urc).collect();
    use SocketUrc::*;
    let want = vec![
        Some(Ok(DataWaiting {
            id: 1,
            len: Some(5),
        })),
        Some(Ok(Closed { id: 1 })),
        Some(Ok(Opened { id: 0, result: 0 })),
        Some(Ok(Opened { id: 1, result: 566 })),
        Some(Ok(DataWaiting { id: 0, len: None })),
        Some(Ok(Data {
            id: 0,
            data: b"A\r\n".to_vec(),
        })),
        Some(Ok(Closed { id: 0 })),
        Some(Ok(PdpDeactivated)),
        Some(Ok(Data {
            id: 0,
            data: b"Hi".to_vec(),
        })),
        Some(Ok(Closed { id: 0 })),
        Some(Ok(Failed { id: 0, code: 1 })),
        None,
        None,
        None,
    ];
    assert_eq!(got, want);
    let bad = urcs(b"\r\n+CSONMI: 0,6,4869\r\n\r\n+NSONMI:x,1\r\n");
    assert!(matches!(
        parse_urc(&bad[0]),
        Some(Err(SocketError::LengthMismatch { .. }))
    ));
    assert!(matches!(
        parse_urc(&bad[1]),
        Some(Err(SocketError::Reply(_)))
    ));
}

#[test]
fn hex() {
    assert_eq!(encode_hex(b"\x00\x7f\xff"), "007FFF");
    assert_eq!(decode_hex("x", "007fFF"), Ok(vec![0, 0x7f, 0xff]));
    assert!(decode_hex("x", "0").is_err());
    assert!(decode_hex("x", "zz").is_err());
    assert!(decode_hex("x", "é0").is_err());
    assert!(decode_hex("x", &"00".repeat(MAX_DATA + 1)).is_err());
    assert_eq!(
        decode_hex("x", &"00".repeat(MAX_DATA)).map(|v| v.len()),
        Ok(MAX_DATA)
    );
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x50C4_E7ED),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn urc_line() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just("+NSONMI:"),
        Just("+NSOCLI:"),
        Just("+QIOPEN:"),
        Just("+QIURC:"),
        Just("+CSONMI:"),
        Just("+CSOERR:"),
        Just("+CADATAIND:"),
        Just("+CASTATE:"),
        Just("+APP PDP:"),
        Just("+CAOPEN:"),
        Just("+CARECV:"),
    ];
    let field = prop_oneof![
        "-?[0-9]{0,6}",
        "\"(recv|closed|pdpdeact)\"",
        "(ACTIVE|DEACTIVE)",
        "[0-9A-Fa-f]{0,12}",
        ".{0,4}"
    ];
    (prefix, prop::collection::vec(field, 0..6)).prop_map(|(p, f)| format!("{p} {}", f.join(",")))
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn hex_round_trips(data in prop::collection::vec(any::<u8>(), 0..=MAX_DATA)) {
        prop_assert_eq!(decode_hex("x", &encode_hex(&data)), Ok(data));
    }

    /// No URC, with or without attached data, and no read reply panics its parser.
    #[test]
    fn parsers_never_panic(line in urc_line(), data in prop::option::of(prop::collection::vec(any::<u8>(), 0..8))) {
        let urc = Urc { kind: crate::modem::at::urc_kind(&line), line: line.clone(), data: data.clone() };
        let _ = parse_urc(&urc);
        let x = Exchange {
            command: String::new(),
            lines: vec![line.clone(), line.replace('+', "")],
            data,
            result: crate::modem::at::Final::Ok,
            truncated: false,
        };
        let _ = nso_created(&x);
        let _ = nso_sent(&x);
        let _ = nso_read_reply(&x);
        let _ = qi_read_reply(&x);
        let _ = cso_created(&x);
        let _ = qi_hex_read_reply(&x);
        let _ = ca_opened(&x);
        let _ = ca_read_reply(&x);
    }
}

#[test]
fn the_largest_send_of_every_profile_fits_the_engines_command_limit() {
    for p in PROFILES.iter().filter(|p| p.max_send > 0) {
        let data = vec![0xA5u8; p.max_send];
        for step in send_steps(p, 6, &data).expect("sendable") {
            let command = match step {
                SendStep::Inline(c) => c,
                SendStep::Prompt { command, .. } => command,
            };
            assert!(
                command.len() <= crate::modem::engine::MAX_COMMAND,
                "{}: {} characters",
                p.id,
                command.len()
            );
        }
    }
}

#[test]
fn bc66_hex_push_urcs_are_parsed_and_bounded() {
    use SocketUrc::*;
    let big = format!("+QIURC: \"recv\",0,1501,{}", "41".repeat(1501));
    let cases: Vec<(String, Result<SocketUrc, &str>)> = vec![
        (
            "+QIURC: \"recv\",0,4,41420D0A".into(),
            Ok(Data {
                id: 0,
                data: b"AB\r\n".to_vec(),
            }),
        ),
        (
            "+QIURC: \"recv\",2,2,\"6f6B\"".into(),
            Ok(Data {
                id: 2,
                data: b"ok".to_vec(),
            }),
        ),
        (
            "+QIURC: \"recv\",0,3,4142".into(),
            Err("length 3 does not match the 2 bytes"),
        ),
        ("+QIURC: \"recv\",0,2,41G2".into(), Err("hex")),
        ("+QIURC: \"recv\",0,2,414".into(), Err("hex")),
        ("+QIURC: \"recv\",0,x,4142".into(), Err("length")),
        ("+QIURC: \"recv\",z,2,4142".into(), Err("id")),
        (big, Err("1500")),
    ];
    for (line, want) in cases {
        let u = Urc {
            kind: Some(UrcKind::Qiurc),
            line: line.clone(),
            data: None,
        };
        match (parse_urc(&u), want) {
            (Some(Ok(got)), Ok(want)) => assert_eq!(got, want, "{line}"),
            (Some(Err(e)), Err(names)) => {
                let text = e.to_string();
                assert!(text.contains(names), "{line}: {text}");
            }
            (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
        }
    }
}
