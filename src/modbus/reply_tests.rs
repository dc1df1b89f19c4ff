//! Tests of the reply check: table-driven fixtures of every way a reply can lie, and property
//! tests (fixed seed, bounded cases) that it never panics on arbitrary bytes and accepts
//! exactly the well-formed replies.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn hr(count: u16) -> Expect {
    Expect::Read {
        table: Table::HoldingRegister,
        count,
    }
}

fn coils(count: u16) -> Expect {
    Expect::Read {
        table: Table::Coil,
        count,
    }
}

#[test]
fn replies_against_their_requests() {
    use Answer::{Data, Exception};
    let ok = |v: Vec<u16>| Ok(Data(v));
    // (name, expect, reply unit, reply pdu, result); the request always goes to unit 1.
    type Case = (
        &'static str,
        Expect,
        u8,
        &'static str,
        Result<Answer, ReplyError>,
    );
    let cases: Vec<Case> = vec![
        (
            "exact 2 registers",
            hr(2),
            1,
            "03 04 00 2A 01 00",
            ok(vec![42, 256]),
        ),
        (
            "input registers",
            Expect::Read {
                table: Table::InputRegister,
                count: 1,
            },
            1,
            "04 02 FF FF",
            ok(vec![65535]),
        ),
        (
            "short byte count, consistent length (5 of 6)",
            hr(6),
            1,
            "03 0A 00 01 00 02 00 03 00 04 00 05",
            Err(ReplyError::ByteCount {
                count: 6,
                expected: 12,
                got: 10,
            }),
        ),
        (
            "long byte count",
            hr(1),
            1,
            "03 04 00 01 00 02",
            Err(ReplyError::ByteCount {
                count: 1,
                expected: 2,
                got: 4,
            }),
        ),
        (
            "byte count right, data short",
            hr(2),
            1,
            "03 04 00 01 00",
            Err(ReplyError::Length {
                expected: 6,
                got: 5,
            }),
        ),
        (
            "trailing bytes after the data",
            hr(1),
            1,
            "03 02 00 01 00",
            Err(ReplyError::Length {
                expected: 4,
                got: 5,
            }),
        ),
        (
            "no byte count",
            hr(1),
            1,
            "03",
            Err(ReplyError::Length {
                expected: 4,
                got: 1,
            }),
        ),
        (
            "wrong unit",
            hr(1),
            2,
            "03 02 00 01",
            Err(ReplyError::Unit {
                expected: 1,
                got: 2,
            }),
        ),
        (
            "wrong function (input for holding)",
            hr(1),
            1,
            "04 02 00 01",
            Err(ReplyError::Function {
                expected: 3,
                got: 4,
            }),
        ),
        (
            "another function's exception",
            hr(1),
            1,
            "84 02",
            Err(ReplyError::Function {
                expected: 3,
                got: 0x84,
            }),
        ),
        ("empty", hr(1), 1, "", Err(ReplyError::Empty)),
        ("exception 2", hr(1), 1, "83 02", Ok(Exception(2))),
        ("exception 0x0B", hr(1), 1, "83 0B", Ok(Exception(0x0B))),
        (
            "exception 255",
            hr(1),
            1,
            "83 FF",
            Err(ReplyError::ExceptionCode { code: 255 }),
        ),
        (
            "exception 7 (not in the set)",
            hr(1),
            1,
            "83 07",
            Err(ReplyError::ExceptionCode { code: 7 }),
        ),
        (
            "exception 0",
            hr(1),
            1,
            "83 00",
            Err(ReplyError::ExceptionCode { code: 0 }),
        ),
        (
            "exception without a code",
            hr(1),
            1,
            "83",
            Err(ReplyError::Length {
                expected: 2,
                got: 1,
            }),
        ),
        (
            "exception with trailing bytes",
            hr(1),
            1,
            "83 02 00",
            Err(ReplyError::Length {
                expected: 2,
                got: 3,
            }),
        ),
        (
            "10 coils in 2 bytes",
            coils(10),
            1,
            "01 02 05 02",
            ok(vec![1, 0, 1, 0, 0, 0, 0, 0, 0, 1]),
        ),
        (
            "padding bits ignored",
            coils(3),
            1,
            "01 01 FA",
            ok(vec![0, 1, 0]),
        ),
        (
            "10 coils in 1 byte",
            coils(10),
            1,
            "01 01 05",
            Err(ReplyError::ByteCount {
                count: 10,
                expected: 2,
                got: 1,
            }),
        ),
        (
            "3 coils packed in 2 bytes (tokio-modbus takes it)",
            coils(3),
            1,
            "01 02 05 00",
            Err(ReplyError::ByteCount {
                count: 3,
                expected: 1,
                got: 2,
            }),
        ),
        (
            "write register echo",
            Expect::WriteRegister {
                address: 7,
                value: 9,
            },
            1,
            "06 00 07 00 09",
            ok(vec![]),
        ),
        (
            "write register echo of another value",
            Expect::WriteRegister {
                address: 7,
                value: 9,
            },
            1,
            "06 00 07 00 08",
            Err(ReplyError::Echo {
                what: "value",
                expected: 9,
                got: 8,
            }),
        ),
        (
            "write registers echo of another address",
            Expect::WriteRegisters {
                address: 7,
                count: 2,
            },
            1,
            "10 00 08 00 02",
            Err(ReplyError::Echo {
                what: "address",
                expected: 7,
                got: 8,
            }),
        ),
        (
            "write coil on",
            Expect::WriteCoil {
                address: 1,
                value: true,
            },
            1,
            "05 00 01 FF 00",
            ok(vec![]),
        ),
        (
            "write coil echo off for on",
            Expect::WriteCoil {
                address: 1,
                value: true,
            },
            1,
            "05 00 01 00 00",
            Err(ReplyError::Echo {
                what: "value",
                expected: 0xFF00,
                got: 0,
            }),
        ),
        (
            "write echo too short",
            Expect::WriteRegister {
                address: 7,
                value: 9,
            },
            1,
            "06 00 07",
            Err(ReplyError::Length {
                expected: 5,
                got: 3,
            }),
        ),
    ];
    for (name, expect, unit, pdu, want) in cases {
        assert_eq!(check_reply(1, &expect, unit, &hex(pdu)), want, "{name}");
    }
}

#[test]
fn valid_exception_codes() {
    let valid: Vec<u8> = (0..=255).filter(|c| valid_exception(*c)).collect();
    assert_eq!(valid, vec![1, 2, 3, 4, 5, 6, 8, 0x0A, 0x0B]);
}

#[test]
fn errors_say_what_and_why() {
    let e = check_reply(1, &hr(6), 1, &hex("03 0A 00 01 00 02 00 03 00 04 00 05")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "byte count 10 does not cover the 6 requested (needs 12)"
    );
    let e = check_reply(1, &hr(1), 1, &hex("83 FF")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "exception code 255 (0xFF) is not a Modbus exception code"
    );
}

// ------------------------------------------------------------------------------------------
// Property tests: fixed seed, bounded cases.

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x6A5D_7E09),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn table() -> impl Strategy<Value = Table> {
    prop_oneof![
        Just(Table::Coil),
        Just(Table::DiscreteInput),
        Just(Table::HoldingRegister),
        Just(Table::InputRegister),
    ]
}

/// Requests within the Modbus limits.
fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        table().prop_flat_map(
            |t| (1..=t.max_read()).prop_map(move |count| Expect::Read { table: t, count })
        ),
        (any::<u16>(), any::<bool>())
            .prop_map(|(address, value)| Expect::WriteCoil { address, value }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(address, value)| Expect::WriteRegister { address, value }),
        (any::<u16>(), 1..=123u16)
            .prop_map(|(address, count)| Expect::WriteRegisters { address, count }),
    ]
}

/// A valid answer to `e`: its data (random values of the right count) or a valid exception.
fn answer(e: &Expect) -> BoxedStrategy<Answer> {
    let exc =
        prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 8, 0x0A, 0x0B]).prop_map(Answer::Exception);
    let data: BoxedStrategy<Answer> = match e {
        Expect::Read { table, count } if table.is_bits() => {
            prop::collection::vec(0..=1u16, *count as usize)
                .prop_map(Answer::Data)
                .boxed()
        }
        Expect::Read { count, .. } => prop::collection::vec(any::<u16>(), *count as usize)
            .prop_map(Answer::Data)
            .boxed(),
        _ => Just(Answer::Data(Vec::new())).boxed(),
    };
    prop_oneof![1 => exc, 3 => data].boxed()
}

/// Canonical form of an accepted reply: padding bits of a bit read cleared.
fn without_padding(e: &Expect, pdu: &[u8]) -> Vec<u8> {
    let mut p = pdu.to_vec();
    if let Expect::Read { table, count } = e {
        if table.is_bits() && p.len() > 2 && p[0] & 0x80 == 0 && count % 8 != 0 {
            let last = p.len() - 1;
            p[last] &= (1u8 << (count % 8)) - 1;
        }
    }
    p
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary bytes from an arbitrary unit never panic the check; whatever it accepts is
    /// exactly the canonical reply of what it returned (up to padding bits): nothing else gets
    /// through.
    #[test]
    fn arbitrary_bytes_never_panic_and_only_well_formed_pass(
        e in expect(),
        unit in any::<u8>(),
        pdu in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(a) = check_reply(1, &e, unit, &pdu) {
            prop_assert_eq!(unit, 1);
            prop_assert_eq!(encode_reply(&e, &a), without_padding(&e, &pdu));
        }
    }

    /// Every well-formed reply is accepted with exactly its data; any single byte changed in
    /// it (outside the padding bits) is refused or reads as exactly the changed data.
    #[test]
    fn well_formed_replies_pass_and_single_byte_lies_do_not_slip(
        (e, a) in expect().prop_flat_map(|e| { let a = answer(&e); (Just(e), a) }),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let pdu = encode_reply(&e, &a);
        prop_assert_eq!(check_reply(1, &e, 1, &pdu), Ok(a.clone()));
        let mut bad = pdu.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        match check_reply(1, &e, 1, &bad) {
            Err(_) => {}
            Ok(b) => {
                // A changed data byte (or exception code) reads as exactly the changed
                // answer; only a changed padding bit reads as the same answer.
                prop_assert_eq!(encode_reply(&e, &b), without_padding(&e, &bad));
                let same = without_padding(&e, &bad) == without_padding(&e, &pdu);
                prop_assert_eq!(same, b == a);
            }
        }
        // Truncated or extended by one byte: never accepted.
        prop_assert!(check_reply(1, &e, 1, &pdu[..pdu.len() - 1]).is_err());
        let mut long = pdu.clone();
        long.push(0);
        prop_assert!(check_reply(1, &e, 1, &long).is_err());
    }

    /// The right reply from another unit is refused.
    #[test]
    fn a_well_formed_reply_from_another_unit_is_refused(
        (e, a) in expect().prop_flat_map(|e| { let a = answer(&e); (Just(e), a) }),
        unit in 2..=255u8,
    ) {
        let pdu = encode_reply(&e, &a);
        let refused = matches!(check_reply(1, &e, unit, &pdu), Err(ReplyError::Unit { .. }));
        prop_assert!(refused);
    }
}

/// tokio-modbus 0.17's header messages (TCP: transaction and unit id; RTU: slave id) become
/// one clause of numbers; anything else is the plain sentence, never a dump.
#[test]
fn header_mismatches_read_as_one_clause() {
    let tcp = |w: (u16, u8), g: (u16, u8)| {
        format!(
            "expected/request = Header {{ transaction_id: {}, unit_id: {} }}, \
             actual/response = Header {{ transaction_id: {}, unit_id: {} }}",
            w.0, w.1, g.0, g.1
        )
    };
    let rtu = |w: u8, g: u8| {
        format!(
            "expected/request = Header {{ slave_id: {w} }}, actual/response = Header {{ slave_id: {g} }}"
        )
    };
    let plain = "reply header does not match the request";
    #[rustfmt::skip]
    let cases: Vec<(String, u8, bool, &str)> = vec![
        (tcp((8, 3), (7, 3)), 3, false, "reply for unit 3 function 3 has transaction id 7, expected 8"),
        (tcp((8, 3), (8, 4)), 4, false, "reply for function 4 has unit 4, expected 3"),
        (tcp((8, 3), (7, 4)), 3, false, "reply for function 3 has transaction id 7 and unit 4, expected transaction id 8 and unit 3"),
        (tcp((1, 1), (65535, 1)), 16, true, "reply for unit 1 function 16 (an exception) has transaction id 65535, expected 1"),
        (rtu(3, 4), 3, false, "reply for function 3 has unit 4, expected 3"),
        (rtu(3, 3), 3, false, plain),
        ("".into(), 3, false, plain),
        ("expected/request = Header { transaction_id: 8, unit_id: 3 }".into(), 3, false, plain),
        ("expected/request = Header { transaction_id: 8 }, actual/response = Header { transaction_id: x }".into(), 3, false, plain),
        ("expected/request = Header { slave_id: 3 }, actual/response = Header { unit_id: 4 }".into(), 3, false, plain),
        ("expected/request = Header { a: 1 }, actual/response = Header { a: 1, b: 2 }".into(), 3, false, plain),
        ("expected/request = Header { Id: 1 }, actual/response = Header { Id: 2 }".into(), 3, false, plain),
        ("expected/request = Frame { a: 1 }, actual/response = Frame { a: 2 }".into(), 3, false, plain),
    ];
    for (message, function, exception, want) in cases {
        assert_eq!(
            header_mismatch(&message, function, exception),
            want,
            "{message:?}"
        );
    }
}
