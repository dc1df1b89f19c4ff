//! Tests of the reply parsers (`reply`, `signal`): fixtures from the dialect sheet's
//! transcripts in both spacings, the failures naming their reply and field, and property tests
//! (fixed seed, bounded cases) that no parser panics on arbitrary lines.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;
use crate::modem::signal::{ceng, nuestats, qcsq, qeng_lines, qeng_servingcell};

fn reg(n: Option<u8>, stat: RegStatus) -> Registration {
    Registration {
        n,
        stat,
        tac: None,
        cell_id: None,
        act: None,
        reject: None,
        active_time: None,
        periodic_tau: None,
    }
}

#[test]
fn cereg_reply_forms() {
    let full = Registration {
        tac: Some(0x1A2D),
        cell_id: Some(0x01A2_D001),
        act: Some(9),
        ..reg(Some(2), RegStatus::Home)
    };
    let cases: Vec<(&str, Registration)> = vec![
        ("+CEREG: 0,1", reg(Some(0), RegStatus::Home)),
        ("+CEREG:0,1", reg(Some(0), RegStatus::Home)),
        ("+CEREG:1,2", reg(Some(1), RegStatus::Searching)),
        ("+CEREG: 2,5", reg(Some(2), RegStatus::Roaming)),
        ("+CEREG: 2,1,\"1A2D\",\"01A2D001\",9", full.clone()),
        ("+CEREG:2,1,\"1A2D\",\"01A2D001\",9", full.clone()),
        (
            "+CEREG: 3,3,\"1A2D\",\"01A2D001\",9,0,15",
            Registration {
                n: Some(3),
                stat: RegStatus::Denied,
                reject: Some(Reject {
                    cause_type: 0,
                    cause: 15,
                }),
                ..full.clone()
            },
        ),
        (
            "+CEREG: 4,1,\"1A2D\",\"01A2D001\",9,,,\"00100001\",\"01000011\"",
            Registration {
                n: Some(4),
                active_time: Some(Timer::Seconds(60)),
                periodic_tau: Some(Timer::Seconds(108_000)),
                ..full.clone()
            },
        ),
        (
            "+CEREG: 5,1,\"1A2D\",\"01A2D001\",9,\"00000101\",\"11100000\"",
            Registration {
                n: Some(5),
                active_time: Some(Timer::Seconds(10)),
                periodic_tau: Some(Timer::Deactivated),
                ..full.clone()
            },
        ),
        ("+CEREG: 0,7", reg(Some(0), RegStatus::Other(7))),
    ];
    for (line, want) in cases {
        assert_eq!(cereg_reply(line), Ok(want), "{line}");
    }
    assert!(RegStatus::Home.registered() && RegStatus::Roaming.registered());
    assert!(!RegStatus::Denied.registered() && !RegStatus::Searching.registered());
}

#[test]
fn cereg_reply_among_urcs() {
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let got = cereg_reply_lines(&lines(&[
        "+CEREG: 1",
        "+CEREG: 2,1,\"1A2D\",\"01A2D001\",9",
        "+CEREG: 5,\"1A2D\",\"01A2D001\",9",
        "+CEREG: 1,\"0012\",\"01A2D001\",9",
    ]));
    assert_eq!(got.map(|r| (r.n, r.stat)), Ok((Some(2), RegStatus::Home)));
    assert_eq!(
        cereg_reply_lines(&lines(&["+CEREG: 1"])),
        Err(ReplyError::Missing {
            reply: "CEREG",
            field: "stat"
        })
    );
    assert_eq!(
        cereg_reply_lines(&[]),
        Err(ReplyError::NoLine { reply: "CEREG" })
    );
}

#[test]
fn cereg_urc_forms() {
    assert_eq!(cereg_urc("+CEREG:1"), Ok(reg(None, RegStatus::Home)));
    assert_eq!(cereg_urc("+CEREG: 2"), Ok(reg(None, RegStatus::Searching)));
    assert_eq!(
        cereg_urc("+CEREG: 5,\"00C3\",\"0000ABCD\",9"),
        Ok(Registration {
            tac: Some(0xC3),
            cell_id: Some(0xABCD),
            act: Some(9),
            ..reg(None, RegStatus::Roaming)
        })
    );
}

#[test]
fn errors_name_reply_and_field() {
    let cases: Vec<(Result<(), ReplyError>, ReplyError)> = vec![
        (
            cereg_reply("+CEREG: x,1").map(drop),
            ReplyError::bad("CEREG", "n", "x"),
        ),
        (
            cereg_urc("+CEREG: 1,\"XYZ\"").map(drop),
            ReplyError::bad("CEREG", "tac", "XYZ"),
        ),
        (
            cereg_urc("+CEREG: 1,\"12345\"").map(drop),
            ReplyError::bad("CEREG", "tac", "74565"),
        ),
        (
            cereg_reply("+CEREG: 1,\"0012\",\"01A2D001\",9").map(drop),
            ReplyError::bad("CEREG", "stat", "0012"),
        ),
        (
            cereg_reply("+CEREG: 2").map(drop),
            ReplyError::Missing {
                reply: "CEREG",
                field: "stat",
            },
        ),
        (
            cgatt("+CSQ: 1").map(drop),
            ReplyError::NotThisReply {
                reply: "CGATT",
                line: "+CSQ: 1".into(),
            },
        ),
        (
            cgatt("+CGATT: 2").map(drop),
            ReplyError::bad("CGATT", "state", "2"),
        ),
        (
            csq("+CSQ: 32,99").map(drop),
            ReplyError::bad("CSQ", "rssi", "32"),
        ),
        (
            cesq("+CESQ: 99,99,255,255,35,50").map(drop),
            ReplyError::bad("CESQ", "rsrq", "35"),
        ),
        (
            cpsms("+CPSMS: 1,,,\"0100001\",\"00100001\"").map(drop),
            ReplyError::bad("CPSMS", "T3412", "0100001"),
        ),
        (
            cclk("+CCLK: \"26/02/30,10:00:00+32\"").map(drop),
            ReplyError::bad("CCLK", "date", "26/02/30,10:00:00+32"),
        ),
        (
            cclk("+CCLK: \"26/12/02,24:00:00+32\"").map(drop),
            ReplyError::bad("CCLK", "hour", "24"),
        ),
        (
            Fields::split("X", &",".repeat(40)).map(drop),
            ReplyError::TooManyFields { reply: "X" },
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want.clone()), "{want}");
    }
}

#[test]
fn simple_replies() {
    assert_eq!(cgatt("+CGATT: 1"), Ok(true));
    assert_eq!(cgatt("+CGATT:0"), Ok(false));
    assert_eq!(cpin("+CPIN: READY"), Ok(SimState::Ready));
    assert_eq!(
        cpin("+CPIN:SIM PIN"),
        Ok(SimState::Locked("SIM PIN".into()))
    );
    assert_eq!(cfun("+CFUN: 1"), Ok(1));
    assert_eq!(cfun("+CFUN:0"), Ok(0));
    assert_eq!(csq("+CSQ: 22,99"), Ok(Some(-69)));
    assert_eq!(csq("+CSQ:0,99"), Ok(Some(-113)));
    assert_eq!(csq("+CSQ:31,99"), Ok(Some(-51)));
    assert_eq!(csq("+CSQ: 99,99"), Ok(None));
    let s = cesq("+CESQ: 99,99,255,255,20,45").expect("cesq");
    assert_eq!((s.rsrq_db, s.rsrp_dbm), (Some(-10.0), Some(-96.0)));
    let s = cesq("+CESQ:99,99,255,255,255,255").expect("cesq unknown");
    assert_eq!(s, Signal::default());
    assert_eq!(
        cops("+COPS: 0,2,\"46000\",9"),
        Ok(Operator {
            mode: 0,
            format: Some(2),
            oper: Some("46000".into()),
            act: Some(9)
        })
    );
    assert_eq!(
        cops("+COPS:0"),
        Ok(Operator {
            mode: 0,
            format: None,
            oper: None,
            act: None
        })
    );
    assert_eq!(
        cgpaddr("+CGPADDR: 0,\"10.1.2.3\""),
        Ok((0, Some("10.1.2.3".parse().expect("ip"))))
    );
    assert_eq!(cgpaddr("+CGPADDR:1"), Ok((1, None)));
    assert!(cgpaddr("+CGPADDR: 0,\"10.1.2\"").is_err());
}

#[test]
fn clock_and_zone() {
    // 2026-12-02 11:30:00 local at UTC+8 (32 quarter hours) = 03:30:00 UTC.
    let utc = 1_796_182_200_000; // 2026-12-02T03:30:00Z
    assert_eq!(
        crate::time::rfc3339_s(utc),
        "2026-12-02T03:30:00Z",
        "fixture"
    );
    let want = Clock {
        utc_ms: utc,
        tz_quarter_hours: 32,
    };
    assert_eq!(cclk("+CCLK: \"26/12/02,11:30:00+32\""), Ok(want));
    assert_eq!(cclk("+CCLK:26/12/02,11:30:00+32"), Ok(want));
    assert_eq!(cclk("+CCLK: \"2026/12/02,11:30:00+32\""), Ok(want));
    let west = cclk("+CCLK: \"26/12/01,23:30:00-16\"").expect("west");
    assert_eq!(west.utc_ms, utc);
    assert_eq!(west.tz_quarter_hours, -16);
    assert_eq!(
        cclk("+CCLK: \"24/02/29,00:00:00+00\"").map(|c| crate::time::rfc3339_s(c.utc_ms)),
        Ok("2024-02-29T00:00:00Z".into())
    );
    assert_eq!(
        cclk("+CCLK: \"70/01/01,00:00:00\"").map(|c| c.utc_ms),
        Ok(3_155_760_000_000)
    );
    assert_eq!(
        ctzv("+CTZV: +32"),
        Ok(TimeZone {
            tz_quarter_hours: 32,
            dst: None,
            utc_ms: None
        })
    );
    assert_eq!(
        ctzv("+CTZV:\"-20\""),
        Ok(TimeZone {
            tz_quarter_hours: -20,
            dst: None,
            utc_ms: None
        })
    );
    assert_eq!(
        ctzv("+CTZE: \"+32\",0,\"2026/12/02,11:30:00\""),
        Ok(TimeZone {
            tz_quarter_hours: 32,
            dst: Some(0),
            utc_ms: Some(utc)
        })
    );
    assert!(ctzv("+CTZV: +120").is_err());
    assert!(ctzv("+CTZE: \"+32\",0,\"2026/13/02,11:30:00\"").is_err());
    assert!(cclk("+CCLK: \"26/+1/02,11:30:00\"").is_err());
}

#[test]
fn psm_and_edrx() {
    assert_eq!(
        cpsms("+CPSMS: 1,,,\"01000011\",\"00100001\""),
        Ok(Psm {
            enabled: true,
            t3412: Some(Timer::Seconds(108_000)),
            t3324: Some(Timer::Seconds(60)),
        })
    );
    assert_eq!(
        cpsms("+CPSMS:0,,,\"11100000\",\"11100000\""),
        Ok(Psm {
            enabled: false,
            t3412: Some(Timer::Deactivated),
            t3324: Some(Timer::Deactivated),
        })
    );
    assert_eq!(
        cpsms("+CPSMS: 0"),
        Ok(Psm {
            enabled: false,
            t3412: None,
            t3324: None
        })
    );
    assert_eq!(cedrxs("+CEDRXS: 5,\"0101\""), Ok(Some((5, 81_920))));
    assert_eq!(cedrxs("+CEDRXS:5,\"1001\""), Ok(Some((5, 163_840))));
    assert_eq!(cedrxs("+CEDRXS:"), Ok(None));
    assert!(cedrxs("+CEDRXS: 5,\"0100\"").is_err());
}

#[test]
fn edrx_granted() {
    let some = |requested_ms, granted_ms, paging_window_ms| -> Result<_, ()> {
        Ok(Some(EdrxDynamic {
            act: 5,
            requested_ms,
            granted_ms,
            paging_window_ms,
        }))
    };
    let cases: &[(&str, Result<Option<EdrxDynamic>, ()>)] = &[
        // Requested 81.92 s, granted 40.96 s, window (3 + 1) x 2.56 s.
        (
            "+CEDRXRDP: 5,\"0101\",\"0011\",\"0011\"",
            some(Some(81_920), Some(40_960), Some(10_240)),
        ),
        (
            "+CEDRXRDP:5,\"1001\",\"1001\",\"0000\"",
            some(Some(163_840), Some(163_840), Some(2_560)),
        ),
        // Requested only (the network has not answered the request yet).
        ("+CEDRXRDP: 5,\"0101\"", some(Some(81_920), None, None)),
        // eDRX not used.
        ("+CEDRXRDP: 0", Ok(None)),
        // LTE-M's window unit is 1.28 s.
        (
            "+CEDRXRDP: 4,\"0010\",\"0010\",\"0001\"",
            Ok(Some(EdrxDynamic {
                act: 4,
                requested_ms: Some(20_480),
                granted_ms: Some(20_480),
                paging_window_ms: Some(2_560),
            })),
        ),
        ("+CEDRXRDP: 5,\"0101\",\"0100\",\"0011\"", Err(())),
        ("+CEDRXRDP: 5,\"0101\",\"0011\",\"10000\"", Err(())),
        ("+CEDRXRDP: 5,\"0101\",\"0011\",\"00x1\"", Err(())),
        ("+CEDRXRDP: x", Err(())),
        ("+CEDRXRDP:", Err(())),
        ("+CEDRXS: 5,\"0101\"", Err(())),
    ];
    for (line, want) in cases {
        assert_eq!(&cedrxrdp(line).map_err(|_| ()), want, "{line}");
    }
    let e = cedrxrdp("+CEDRXRDP: 5,\"0101\",\"0100\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("granted eDRX") && e.contains("0100"), "{e}");
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn vendor_signal() {
    let bc95 = lines(&[
        "Signal power:-767",
        "Total power:-674",
        "TX power:230",
        "TX time:1026",
        "RX time:9122",
        "Cell ID:108155522",
        "ECL:0",
        "SNR:155",
        "EARFCN:2506",
        "PCI:1",
        "RSRQ:-108",
        "OPERATOR MODE:4",
    ]);
    assert_eq!(
        nuestats(&bc95),
        Ok(Signal {
            rsrp_dbm: Some(-76.7),
            rssi_dbm: Some(-67.4),
            tx_power_dbm: Some(23.0),
            cell_id: Some(108_155_522),
            ecl: Some(0),
            sinr_db: Some(15.5),
            earfcn: Some(2506),
            pci: Some(1),
            rsrq_db: Some(-10.8),
            ..Signal::default()
        })
    );
    let idle = nuestats(&lines(&["TX power:-32768", "ECL:2"])).expect("idle");
    assert_eq!((idle.tx_power_dbm, idle.ecl), (None, Some(2)));
    assert_eq!(
        nuestats(&lines(&["hello", "OPERATOR MODE:4"])),
        Err(ReplyError::NoLine { reply: "NUESTATS" })
    );
    assert!(nuestats(&lines(&["ECL:x"])).is_err());

    assert_eq!(
        qcsq("+QCSQ: \"NBIoT\",-60,-80,120,-10"),
        Ok(Signal {
            rssi_dbm: Some(-60.0),
            rsrp_dbm: Some(-80.0),
            sinr_db: Some(4.0),
            rsrq_db: Some(-10.0),
            ..Signal::default()
        })
    );
    assert_eq!(qcsq("+QCSQ: \"NOSERVICE\""), Ok(Signal::default()));

    let qeng = "+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,1A2D001,98,3569,8,3,3,5504,-103,-11,-73,10,-";
    let want = Signal {
        cell_id: Some(0x1A2_D001),
        pci: Some(98),
        earfcn: Some(3569),
        band: Some(8),
        tac: Some(0x5504),
        rsrp_dbm: Some(-103.0),
        rsrq_db: Some(-11.0),
        rssi_dbm: Some(-73.0),
        sinr_db: Some(-18.0),
        ..Signal::default()
    };
    assert_eq!(qeng_servingcell(qeng), Ok(want));
    assert_eq!(qeng_lines(&lines(&["x", qeng])), Ok(want));
    assert_eq!(
        qeng_servingcell("+QENG: \"servingcell\",\"SEARCH\""),
        Ok(Signal::default())
    );
    assert!(qeng_servingcell("+QENG: \"neighbourcell\",1").is_err());

    assert_eq!(
        ceng("+CENG: 2506,0,1,\"0672F182\",-77,-11,-67,15,8,\"5504\",0,23"),
        Ok(Signal {
            earfcn: Some(2506),
            pci: Some(1),
            cell_id: Some(0x0672_F182),
            rsrp_dbm: Some(-77.0),
            rsrq_db: Some(-11.0),
            rssi_dbm: Some(-67.0),
            sinr_db: Some(15.0),
            band: Some(8),
            tac: Some(0x5504),
            ecl: Some(0),
            tx_power_dbm: Some(23.0),
        })
    );
    let merged = Signal {
        rsrp_dbm: Some(-90.0),
        ..Signal::default()
    }
    .merge(Signal {
        rsrp_dbm: Some(-1.0),
        rssi_dbm: Some(-70.0),
        ..Signal::default()
    });
    assert_eq!(
        (merged.rsrp_dbm, merged.rssi_dbm),
        (Some(-90.0), Some(-70.0))
    );
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5E91_A1ED),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A reply-looking line: a known prefix, then fields of digits, quotes, signs and noise.
fn line() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just("+CEREG:"),
        Just("+CGATT:"),
        Just("+CPIN:"),
        Just("+CFUN:"),
        Just("+CSQ:"),
        Just("+CESQ:"),
        Just("+COPS:"),
        Just("+CGPADDR:"),
        Just("+CCLK:"),
        Just("+CTZV:"),
        Just("+CPSMS:"),
        Just("+CEDRXS:"),
        Just("+QCSQ:"),
        Just("+QENG:"),
        Just("+CENG:"),
        Just("Signal power:"),
        Just(""),
    ];
    let field = prop_oneof![
        "-?[0-9]{0,12}",
        "\"[0-9A-F]{0,10}\"",
        "\"[01]{0,9}\"",
        "[0-9]{1,4}/[0-9]{1,3}/[0-9]{1,3},[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}[+-][0-9]{1,3}",
        "\"servingcell\"",
        ".{0,6}",
    ];
    (prefix, prop::collection::vec(field, 0..40)).prop_map(|(p, f)| format!("{p} {}", f.join(",")))
}

proptest! {
    #![proptest_config(config(3000))]

    /// No reply parser panics on any line; whatever they return is within its ranges.
    #[test]
    fn parsers_never_panic(l in line(), noise in ".{0,40}") {
        for l in [l.as_str(), noise.as_str()] {
            if let Ok(r) = cereg_reply(l) { prop_assert!(r.n.is_some()); }
            let _ = cereg_urc(l);
            let _ = cgatt(l);
            let _ = cpin(l);
            let _ = cfun(l);
            if let Ok(Some(dbm)) = csq(l) { prop_assert!((-113..=-51).contains(&dbm)); }
            let _ = cesq(l);
            let _ = cops(l);
            let _ = cgpaddr(l);
            if let Ok(c) = cclk(l) { prop_assert!((-96..=96).contains(&c.tz_quarter_hours)); }
            let _ = ctzv(l);
            let _ = cpsms(l);
            let _ = cedrxs(l);
            let _ = cedrxrdp(l);
            let _ = qcsq(l);
            let _ = qeng_servingcell(l);
            let _ = ceng(l);
            let _ = nuestats(&[l.to_string()]);
        }
    }
}
