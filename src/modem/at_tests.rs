//! Tests of the AT demultiplexer: table-driven transcripts in the dialects of
//! docs/dev/modem-dialects.md (echo on/off, URCs between information lines and OK, BC95's
//! missing spaces, both CME spellings, bare CRLF, binary payloads, bounds), every transcript
//! also fed split at every byte boundary and byte by byte, and property tests (fixed seed,
//! bounded cases) that arbitrary bytes in arbitrary chunks never panic and that the result
//! does not depend on how the stream was chunked.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;

pub(super) fn x(command: &str, lines: &[&str], result: Final) -> Event {
    Event::Exchange(Exchange {
        command: command.to_string(),
        lines: lines.iter().map(|s| s.to_string()).collect(),
        data: None,
        result,
        truncated: false,
    })
}

pub(super) fn xd(command: &str, lines: &[&str], data: &[u8], result: Final) -> Event {
    match x(command, lines, result) {
        Event::Exchange(mut e) => {
            e.data = Some(data.to_vec());
            Event::Exchange(e)
        }
        other => other,
    }
}

pub(super) fn urc(line: &str) -> Event {
    Event::Urc(Urc {
        line: line.to_string(),
        kind: urc_kind(line),
        data: None,
    })
}

fn urc_data(line: &str, data: &[u8]) -> Event {
    Event::Urc(Urc {
        line: line.to_string(),
        kind: urc_kind(line),
        data: Some(data.to_vec()),
    })
}

/// Runs `steps` (a request to begin, then bytes) feeding each byte string in one chunk.
fn run(steps: &[(Option<Request>, &[u8])], split: &dyn Fn(&[u8]) -> Vec<Vec<u8>>) -> Vec<Event> {
    let mut p = AtParser::new();
    let mut out = Vec::new();
    for (req, bytes) in steps {
        if let Some(r) = req {
            assert_eq!(p.begin(r.clone()), None, "a command was still in flight");
        }
        for chunk in split(bytes) {
            out.extend(p.feed(&chunk));
        }
    }
    out
}

fn whole(b: &[u8]) -> Vec<Vec<u8>> {
    vec![b.to_vec()]
}

fn bytewise(b: &[u8]) -> Vec<Vec<u8>> {
    b.iter().map(|&c| vec![c]).collect()
}

#[path = "at_tests_bc66_sim7080.rs"]
mod bc66_sim7080;

pub(super) type Case = (
    &'static str,
    Vec<(Option<Request>, &'static [u8])>,
    Vec<Event>,
);

pub(super) fn req(t: &str) -> Option<Request> {
    Some(Request::new(t))
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = vec![
        (
            "echo on, CSQ",
            vec![(req("AT+CSQ"), b"AT+CSQ\r\r\n+CSQ: 22,99\r\n\r\nOK\r\n")],
            vec![x("AT+CSQ", &["+CSQ: 22,99"], Final::Ok)],
        ),
        (
            "echo off, BC95 no space",
            vec![(req("AT+CSQ"), b"\r\n+CSQ:22,99\r\n\r\nOK\r\n")],
            vec![Event::Empty, x("AT+CSQ", &["+CSQ:22,99"], Final::Ok)],
        ),
        (
            "URC between NUESTATS lines and OK",
            vec![(
                req("AT+NUESTATS"),
                b"\r\nSignal power:-767\r\nTotal power:-674\r\n\r\n+CEREG:2\r\nECL:0\r\n\r\nOK\r\n",
            )],
            vec![
                Event::Empty,
                urc("+CEREG:2"),
                x(
                    "AT+NUESTATS",
                    &["Signal power:-767", "Total power:-674", "ECL:0"],
                    Final::Ok,
                ),
            ],
        ),
        (
            "CME error, BC95 spelling",
            vec![(req("AT+NSOCR=STREAM,6,0,1"), b"\r\n+CME ERROR:159\r\n")],
            vec![Event::Empty, x("AT+NSOCR=STREAM,6,0,1", &[], Final::CmeError(159))],
        ),
        (
            "CME error with space, echo on",
            vec![(req("AT+CPIN?"), b"AT+CPIN?\r\r\n+CME ERROR: 10\r\n")],
            vec![x("AT+CPIN?", &[], Final::CmeError(10))],
        ),
        (
            "CMS error and verbose CME text",
            vec![
                (req("AT+CMGS"), b"\r\n+CMS ERROR: 500\r\n"),
                (req("AT+CPIN?"), b"\r\n+CME ERROR: SIM not inserted\r\n"),
            ],
            vec![
                Event::Empty,
                x("AT+CMGS", &[], Final::CmsError(500)),
                Event::Empty,
                x("AT+CPIN?", &[], Final::Error),
            ],
        ),
        (
            "CEREG read is the reply, CEREG URC at idle and during a set",
            vec![
                (req("AT+CEREG?"), b"\r\n+CEREG: 2,1,\"1A2D\",\"01A2D001\",9\r\n\r\nOK\r\n"),
                (None, b"\r\n+CEREG: 2\r\n"),
                (req("AT+CEREG=2"), b"\r\n+CEREG: 1\r\n\r\nOK\r\n"),
            ],
            vec![
                Event::Empty,
                x(
                    "AT+CEREG?",
                    &["+CEREG: 2,1,\"1A2D\",\"01A2D001\",9"],
                    Final::Ok,
                ),
                urc("+CEREG: 2"),
                Event::Empty,
                urc("+CEREG: 1"),
                x("AT+CEREG=2", &[], Final::Ok),
            ],
        ),
        (
            "QIOPEN: OK then the open URC",
            vec![(
                req("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1"),
                b"AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1\r\r\nOK\r\n\r\n+QIOPEN: 0,0\r\n",
            )],
            vec![
                x("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1", &[], Final::Ok),
                urc("+QIOPEN: 0,0"),
            ],
        ),
        (
            "QIRD binary payload containing CRLF and OK",
            vec![(
                req("AT+QIRD=0,1500"),
                b"\r\n+QIRD: 8\r\n\r\nOK\r\nab\r\n\r\nOK\r\n",
            )],
            vec![
                Event::Empty,
                xd("AT+QIRD=0,1500", &["+QIRD: 8"], b"\r\nOK\r\nab", Final::Ok),
            ],
        ),
        (
            "QIRD empty",
            vec![(req("AT+QIRD=0,1500"), b"\r\n+QIRD: 0\r\n\r\nOK\r\n")],
            vec![Event::Empty, x("AT+QIRD=0,1500", &["+QIRD: 0"], Final::Ok)],
        ),
        (
            "QIRD query form and UDP form",
            vec![
                (req("AT+QIRD=0,0"), b"\r\n+QIRD: 5,5,0\r\n\r\nOK\r\n"),
                (
                    req("AT+QIRD=1,1500"),
                    b"\r\n+QIRD: 2,\"127.0.0.1\",8883\r\nhi\r\n\r\nOK\r\n",
                ),
            ],
            vec![
                Event::Empty,
                x("AT+QIRD=0,0", &["+QIRD: 5,5,0"], Final::Ok),
                Event::Empty,
                xd(
                    "AT+QIRD=1,1500",
                    &["+QIRD: 2,\"127.0.0.1\",8883"],
                    b"hi",
                    Final::Ok,
                ),
            ],
        ),
        (
            "push-mode recv URC with data, inside an exchange",
            vec![(
                req("AT+QCSQ"),
                b"\r\n+QIURC: \"recv\",0,4\r\n\x00\r\n\xff\r\n+QCSQ: \"NBIoT\",-60,-80,120,-10\r\n\r\nOK\r\n",
            )],
            vec![
                Event::Empty,
                urc_data("+QIURC: \"recv\",0,4", b"\x00\r\n\xff"),
                x("AT+QCSQ", &["+QCSQ: \"NBIoT\",-60,-80,120,-10"], Final::Ok),
            ],
        ),
        (
            "buffer-mode recv URC has no data",
            vec![(None, b"\r\n+QIURC: \"recv\",3\r\n\r\n+QIURC: \"closed\",3\r\n")],
            vec![urc("+QIURC: \"recv\",3"), urc("+QIURC: \"closed\",3")],
        ),
        (
            "QISEND prompt, payload, SEND OK",
            vec![
                (
                    Some(Request::with_prompt("AT+QISEND=0,5")),
                    b"AT+QISEND=0,5\r\r\n> ",
                ),
                (Some(Request::payload()), b"\r\nSEND OK\r\n"),
            ],
            vec![
                x("AT+QISEND=0,5", &[], Final::Prompt),
                Event::Empty,
                x("", &[], Final::SendOk),
            ],
        ),
        (
            "prompt refused, then SEND FAIL",
            vec![
                (Some(Request::with_prompt("AT+QISEND=0,5")), b"\r\nERROR\r\n"),
                (Some(Request::with_prompt("AT+QISEND=0,5")), b"\r\n> "),
                (Some(Request::payload()), b"\r\nSEND FAIL\r\n"),
            ],
            vec![
                Event::Empty,
                x("AT+QISEND=0,5", &[], Final::Error),
                Event::Empty,
                x("AT+QISEND=0,5", &[], Final::Prompt),
                Event::Empty,
                x("", &[], Final::SendFail),
            ],
        ),
        (
            "\"> \" without a prompt command is a line",
            vec![(req("AT+CGMR"), b"\r\n> x\r\n\r\nOK\r\n")],
            vec![Event::Empty, x("AT+CGMR", &["> x"], Final::Ok)],
        ),
        (
            "BC95 reboot text at idle",
            vec![(
                None,
                b"\r\nREBOOTING\r\n\r\nBoot: Unsigned\r\n\r\nSecurity B.. Verified\r\n\r\nProtocol A.. Verified\r\n\r\nApps A...... Verified\r\n\r\nREBOOT_CAUSE_APPLICATION_AT\r\n\r\nNeul \r\n\r\nOK\r\n",
            )],
            vec![
                urc("REBOOTING"),
                urc("Boot: Unsigned"),
                urc("Security B.. Verified"),
                urc("Protocol A.. Verified"),
                urc("Apps A...... Verified"),
                urc("REBOOT_CAUSE_APPLICATION_AT"),
                urc("Neul "),
                urc("OK"),
            ],
        ),
        (
            "BG96 boot URCs during a command, CFUN=1,1 reset",
            vec![(
                req("AT+CFUN=1,1"),
                b"AT+CFUN=1,1\r\r\nOK\r\n\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n\r\nAPP RDY\r\n",
            )],
            vec![
                x("AT+CFUN=1,1", &[], Final::Ok),
                urc("RDY"),
                urc("+CFUN: 1"),
                urc("+CPIN: READY"),
                urc("+QUSIM: 1"),
                urc("+QIND: SMS DONE"),
                urc("APP RDY"),
            ],
        ),
        (
            "SIM7020 pushed hex data and socket error",
            vec![
                (req("AT+CSOC=1,1,1"), b"AT+CSOC=1,1,1\r\r\n+CSOC: 0\r\n\r\nOK\r\n"),
                (None, b"\r\n+CSONMI: 0,4,4869\r\n\r\n+CSOERR: 0,4\r\n"),
            ],
            vec![
                x("AT+CSOC=1,1,1", &["+CSOC: 0"], Final::Ok),
                urc("+CSONMI: 0,4,4869"),
                urc("+CSOERR: 0,4"),
            ],
        ),
        (
            "NSORF reply lines and NSONMI",
            vec![
                (None, b"\r\n+NSONMI:1,5\r\n"),
                (
                    req("AT+NSORF=1,512"),
                    b"\r\n1,127.0.0.1,8883,5,48656C6C6F,0\r\n\r\nOK\r\n",
                ),
            ],
            vec![
                urc("+NSONMI:1,5"),
                Event::Empty,
                x(
                    "AT+NSORF=1,512",
                    &["1,127.0.0.1,8883,5,48656C6C6F,0"],
                    Final::Ok,
                ),
            ],
        ),
    ];
    v.extend(bc66_sim7080::cases());
    v
}

#[test]
fn transcripts() {
    for (name, steps, want) in cases() {
        assert_eq!(run(&steps, &whole), want, "{name}");
        assert_eq!(run(&steps, &bytewise), want, "{name}: byte by byte");
        // Every single split point of every step.
        for (k, (_, bytes)) in steps.iter().enumerate() {
            for cut in 0..=bytes.len() {
                let split = |b: &[u8]| {
                    if b.as_ptr() == bytes.as_ptr() {
                        vec![b[..cut].to_vec(), b[cut..].to_vec()]
                    } else {
                        vec![b.to_vec()]
                    }
                };
                assert_eq!(run(&steps, &split), want, "{name}: step {k} cut at {cut}");
            }
        }
    }
}

/// A URC inserted at any line boundary of any reply (between the echo, the information lines
/// and the final result) is reported as a URC and leaves the exchange unchanged.
#[test]
fn urc_at_every_line_boundary() {
    let inserted = b"\r\n+CTZV: +32\r\n";
    let strip = |evs: Vec<Event>| -> Vec<Event> {
        evs.into_iter()
            .filter(|e| !matches!(e, Event::Empty))
            .collect()
    };
    let mut checked = 0;
    for (name, steps, want) in cases() {
        let binary = steps.iter().any(|(r, b)| {
            r.as_ref().is_some_and(|r| r.expects_prompt)
                || b.windows(6).any(|w| w == b"+QIRD:" || w == b"\"recv\"")
                || b.windows(8).any(|w| w == b"+CARECV:")
        });
        if binary {
            continue;
        }
        let want = strip(want);
        for (k, (_, bytes)) in steps.iter().enumerate() {
            for cut in (0..=bytes.len()).filter(|&c| c == 0 || bytes[c - 1] == b'\n') {
                let mut p = AtParser::new();
                let mut got = Vec::new();
                for (j, (req, b)) in steps.iter().enumerate() {
                    if let Some(r) = req {
                        p.begin(r.clone());
                    }
                    if j == k {
                        got.extend(p.feed(&b[..cut]));
                        got.extend(p.feed(inserted));
                        got.extend(p.feed(&b[cut..]));
                    } else {
                        got.extend(p.feed(b));
                    }
                }
                let got = strip(got);
                let extra = urc("+CTZV: +32");
                let at = got.iter().position(|e| *e == extra);
                let Some(at) = at else {
                    panic!("{name}: step {k} cut {cut}: no URC in {got:?}")
                };
                let mut rest = got.clone();
                rest.remove(at);
                assert_eq!(rest, want, "{name}: step {k} cut {cut}");
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn bare_crlf_after_sleep_then_abort() {
    let mut p = AtParser::new();
    p.begin(Request::new("AT"));
    assert_eq!(p.feed(b"\r\n"), vec![Event::Empty]);
    let partial = p.abort().expect("in flight");
    assert!(partial.blank_only && !partial.silent);
    assert_eq!(p.in_flight(), None);
    // Retry: the module is awake now.
    p.begin(Request::new("AT"));
    assert_eq!(
        p.feed(b"\r\nOK\r\n"),
        vec![Event::Empty, x("AT", &[], Final::Ok)]
    );
}

#[test]
fn silent_module_and_partial_reply() {
    let mut p = AtParser::new();
    p.begin(Request::new("AT+CGATT=1"));
    let partial = p.abort().expect("in flight");
    assert!(partial.silent && !partial.blank_only);
    p.begin(Request::new("AT+NUESTATS"));
    p.feed(b"\r\nSignal power:-767\r\n");
    let replaced = p.begin(Request::new("AT")).expect("replaced");
    assert_eq!(replaced.lines, vec!["Signal power:-767".to_string()]);
    assert!(!replaced.blank_only && !replaced.silent);
    // A late OK for the abandoned command answers the new one: the engine must not send a
    // new command before the old one's timeout; documented, not hidden.
    assert_eq!(
        p.feed(b"\r\nOK\r\n"),
        vec![Event::Empty, x("AT", &[], Final::Ok)]
    );
}

#[test]
fn aborted_binary_is_skipped() {
    let mut p = AtParser::new();
    p.begin(Request::new("AT+QIRD=0,1500"));
    p.feed(b"\r\n+QIRD: 6\r\nab");
    p.abort();
    // The rest of the payload is skipped, the lines after it parse normally.
    assert_eq!(
        p.feed(b"cd\r\n\r\nOK\r\n\r\nRDY\r\n"),
        vec![urc("OK"), urc("RDY")]
    );
}

#[test]
fn long_line_is_dropped_and_parser_resyncs() {
    let mut p = AtParser::new();
    p.begin(Request::new("ATI"));
    let mut input = b"\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'A', MAX_LINE + 10));
    input.extend_from_slice(b"\r\nQuectel\r\n\r\nOK\r\n");
    assert_eq!(
        p.feed(&input),
        vec![
            Event::Empty,
            Event::Error(StreamError::LineTooLong),
            x("ATI", &["Quectel"], Final::Ok)
        ]
    );
    // Exactly MAX_LINE bytes is kept.
    let line = "B".repeat(MAX_LINE);
    let events = p.feed(format!("\r\n{line}\r\n").as_bytes());
    assert_eq!(events, vec![urc(&line)]);
}

#[test]
fn info_lines_are_capped() {
    let mut p = AtParser::new();
    p.begin(Request::new("AT+X"));
    let mut input = Vec::new();
    for i in 0..MAX_INFO_LINES + 5 {
        input.extend_from_slice(format!("\r\nline {i}\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\nOK\r\n");
    let events = p.feed(&input);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[1],
        Event::Error(StreamError::TooManyLines {
            command: "AT+X".into()
        })
    );
    let Event::Exchange(e) = &events[2] else {
        panic!("{events:?}")
    };
    assert!(e.truncated);
    assert_eq!(e.lines.len(), MAX_INFO_LINES);
}

#[test]
fn oversized_binary_is_refused() {
    let mut p = AtParser::new();
    p.begin(Request::new("AT+QIRD=0,1500"));
    let events = p.feed(b"\r\n+QIRD: 1501\r\n\r\nOK\r\n");
    assert_eq!(
        events,
        vec![
            Event::Empty,
            Event::Error(StreamError::DataTooLong {
                line: "+QIRD: 1501".into(),
                len: 1501
            }),
            x("AT+QIRD=0,1500", &["+QIRD: 1501"], Final::Ok),
        ]
    );
    let events = p.feed(b"\r\n+QIURC: \"recv\",1,99999\r\n");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1], urc("+QIURC: \"recv\",1,99999"));
}

#[test]
fn urc_kinds() {
    use UrcKind::*;
    let table: &[(&str, Option<UrcKind>)] = &[
        ("+CEREG:1", Some(Cereg)),
        ("+CEREG: 5,\"1A2D\",\"01A2D001\",9", Some(Cereg)),
        ("+NSONMI:0,12", Some(Nsonmi)),
        ("+NSOCLI: 0", Some(Nsocli)),
        ("+QIURC: \"pdpdeact\",1", Some(Qiurc)),
        ("+QIOPEN: 1,566", Some(Qiopen)),
        ("+CSONMI: 0,2,41", Some(Csonmi)),
        ("+CSOERR: 0,4", Some(Csoerr)),
        ("+CADATAIND: 0", Some(Cadataind)),
        ("+CASTATE: 0,0", Some(Castate)),
        ("+APP PDP: 0,ACTIVE", Some(AppPdp)),
        ("+CTZV:+32", Some(TimeZone)),
        ("+CTZE: \"+32\",0,\"2026/12/02,11:30:00\"", Some(TimeZone)),
        ("RDY", Some(Boot)),
        ("APP RDY", Some(Boot)),
        ("Neul ", Some(Boot)),
        ("POWERED DOWN", Some(PoweredDown)),
        ("+CSQ: 22,99", None),
        ("OK", None),
        ("Apps A...... Verified", Some(Boot)),
        ("Verified", None),
    ];
    for (line, want) in table {
        assert_eq!(urc_kind(line), *want, "{line}");
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0A7C_0DE5),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes biased towards the interesting ones: line ends, prompts, URC and final prefixes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8),
        Just(b"\r\n".to_vec()),
        Just(b"> ".to_vec()),
        Just(b"OK".to_vec()),
        Just(b"+QIRD: 3".to_vec()),
        Just(b"+QIURC: \"recv\",0,2".to_vec()),
        Just(b"+CEREG:1".to_vec()),
        Just(b"+CME ERROR: 4".to_vec()),
        Just(b"AT+QIRD=0,1500".to_vec()),
        Just(b">".to_vec()),
        Just(b"+CARECV: 3,".to_vec()),
        Just(b"+CARECV: 9999,".to_vec()),
        Just(b"SEND OK".to_vec()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary bytes in arbitrary chunks, with commands begun and aborted anywhere, never
    /// panic, and every exchange respects the bounds.
    #[test]
    fn never_panics(bytes in stream(), cuts in prop::collection::vec(0usize..64, 0..16),
                    ops in prop::collection::vec(0u8..7, 0..16)) {
        let mut p = AtParser::new();
        let mut rest: &[u8] = &bytes;
        let mut ops = ops.into_iter();
        for cut in cuts {
            match ops.next() {
                Some(0) => { p.begin(Request::new("AT+QIRD=0,1500")); }
                Some(1) => { p.begin(Request::with_prompt("AT+QISEND=0,2")); }
                Some(2) => { p.abort(); }
                Some(3) => { p.begin(Request::new("AT+CARECV=0,1500")); }
                Some(4) => { p.begin(Request::with_prompt("AT+CASEND=0,2")); }
                Some(5) => { p.begin(Request::new("AT+QISEND=0,2,4142")); }
                _ => {}
            }
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            for ev in p.feed(head) {
                if let Event::Exchange(e) = ev {
                    prop_assert!(e.lines.len() <= MAX_INFO_LINES);
                    prop_assert!(e.data.map_or(0, |d| d.len()) <= MAX_DATA);
                }
            }
        }
        p.feed(rest);
    }

    /// The events do not depend on how the stream is chunked.
    #[test]
    fn chunking_does_not_matter(bytes in stream(), cuts in prop::collection::vec(0usize..32, 0..12),
                                which in 0u8..5) {
        let request = match which {
            0 => Request::with_prompt("AT+QISEND=0,2"),
            1 => Request::with_prompt("AT+CASEND=0,2"),
            2 => Request::new("AT+CARECV=0,1500"),
            3 => Request::new("AT+QISEND=0,2,4142"),
            _ => Request::new("AT+QIRD=0,1500"),
        };
        let mut one = AtParser::new();
        one.begin(request.clone());
        let want = one.feed(&bytes);
        let mut many = AtParser::new();
        many.begin(request);
        let mut got = Vec::new();
        let mut rest: &[u8] = &bytes;
        for cut in cuts {
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            got.extend(many.feed(head));
            rest = tail;
        }
        got.extend(many.feed(rest));
        prop_assert_eq!(got, want);
    }
}
