//! Tests of the remote wire: table-driven fixtures for `open`, `parse_command`, `parse_push`,
//! the authorization policy and `check_write` (every `RemoteError` code the pure core can
//! produce, each with a fixture; the execution codes through the code table), replays (another
//! gateway, another topic kind, one changed byte), RFC 3339 parsing, and property tests (fixed
//! seed, bounded cases) that nothing panics on arbitrary bytes or mutated valid envelopes.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;
use crate::config::{RemoteConfig, RemoteWrite};
use crate::remote::sign::{key_id, SigningKey};

const GW: &str = "gw-1";

fn now() -> i64 {
    parse_rfc3339("2026-12-02T09:00:00Z").unwrap()
}

fn key_a() -> SigningKey {
    SigningKey::from_seed(&[1u8; 32])
}

fn key_b() -> SigningKey {
    SigningKey::from_seed(&[2u8; 32])
}

/// A command body with `expires` one hour after `now()`.
fn cmd(op: &str, args: &str) -> String {
    format!(
        r#"{{"id":"ops-42","gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"{op}","args":{args}}}"#
    )
}

fn push_body(config: &str, extra: &str) -> String {
    let sha = crate::remote::sign::hex(&crate::remote::sign::sha256(config.as_bytes()));
    format!(
        r#"{{"version":"2026-12-02.1","gw":"gw-1","expires":"2026-12-02T10:00:00Z","sha256":"{sha}","config":{}{extra}}}"#,
        serde_json::to_string(config).unwrap()
    )
}

fn cfg(keys: Vec<[u8; 32]>, allow_unsigned: bool) -> RemoteConfig {
    RemoteConfig {
        keys,
        allow_unsigned,
        writes: vec![
            RemoteWrite {
                device: "valve1".into(),
                point: "close".into(),
                min: None,
                max: None,
            },
            RemoteWrite {
                device: "pcv1".into(),
                point: "setpoint".into(),
                min: Some(0.5),
                max: Some(6.0),
            },
        ],
        ..RemoteConfig::default()
    }
}

// ------------------------------------------------------------------------------------------
// open

#[test]
fn open_fixtures() {
    let a = key_a();
    let b = key_b();
    let keys = vec![*a.public()];
    let body = cmd("ping", "{}");
    let signed = |k: &SigningKey, kind: Kind, gw: &str| envelope(&body, Some((k, kind, gw)));
    let sig = a.sign(Kind::Cmd, GW, &body);
    let id = a.id().to_string();
    let raw = |v: serde_json::Value| v.to_string().into_bytes();
    // (name, payload, kind, keys, expected: Ok(signer) or Err(code))
    type Case = (
        &'static str,
        Vec<u8>,
        Kind,
        Vec<[u8; 32]>,
        Result<Option<KeyId>, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "signed, good",
            signed(&a, Kind::Cmd, GW),
            Kind::Cmd,
            keys.clone(),
            Ok(Some(a.id())),
        ),
        (
            "unsigned without keys",
            envelope(&body, None),
            Kind::Cmd,
            vec![],
            Ok(None),
        ),
        (
            "signed push",
            envelope(&body, Some((&a, Kind::Config, GW))),
            Kind::Config,
            keys.clone(),
            Ok(Some(a.id())),
        ),
        (
            "cmd too large",
            vec![b' '; MAX_CMD_PAYLOAD + 1],
            Kind::Cmd,
            vec![],
            Err("too_large"),
        ),
        (
            "push too large",
            vec![b' '; MAX_PUSH_PAYLOAD + 1],
            Kind::Config,
            vec![],
            Err("too_large"),
        ),
        (
            "not json",
            b"hello".to_vec(),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "not utf-8",
            vec![0xff, 0xfe],
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        ("empty", Vec::new(), Kind::Cmd, vec![], Err("bad_request")),
        (
            "array",
            b"[1]".to_vec(),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "version 2",
            raw(serde_json::json!({"v": 2, "body": body})),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "no body",
            raw(serde_json::json!({"v": 1})),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "empty body",
            raw(serde_json::json!({"v": 1, "body": ""})),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "unknown field",
            raw(serde_json::json!({"v": 1, "body": body, "x": 1})),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "duplicate body",
            br#"{"v":1,"body":"a","body":"b"}"#.to_vec(),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "body not a string",
            raw(serde_json::json!({"v": 1, "body": {"id": "x"}})),
            Kind::Cmd,
            vec![],
            Err("bad_request"),
        ),
        (
            "key without sig",
            raw(serde_json::json!({"v": 1, "body": body, "key": id})),
            Kind::Cmd,
            keys.clone(),
            Err("bad_request"),
        ),
        (
            "sig without key",
            raw(serde_json::json!({"v": 1, "body": body, "sig": sig})),
            Kind::Cmd,
            keys.clone(),
            Err("bad_request"),
        ),
        (
            "key id not hex",
            raw(serde_json::json!({"v": 1, "body": body, "key": "ZZZZZZZZZZZZZZZZ", "sig": sig})),
            Kind::Cmd,
            keys.clone(),
            Err("bad_request"),
        ),
        (
            "key id upper case",
            raw(serde_json::json!({"v": 1, "body": body, "key": id.to_uppercase(), "sig": sig})),
            Kind::Cmd,
            keys.clone(),
            Err("bad_request"),
        ),
        (
            "sig short",
            raw(serde_json::json!({"v": 1, "body": body, "key": id, "sig": "AAAA"})),
            Kind::Cmd,
            keys.clone(),
            Err("bad_signature"),
        ),
        (
            "sig not base64",
            raw(serde_json::json!({"v": 1, "body": body, "key": id, "sig": "!".repeat(88)})),
            Kind::Cmd,
            keys.clone(),
            Err("bad_signature"),
        ),
        (
            "unsigned with keys",
            envelope(&body, None),
            Kind::Cmd,
            keys.clone(),
            Err("unsigned"),
        ),
        (
            "signed, no keys here",
            signed(&a, Kind::Cmd, GW),
            Kind::Cmd,
            vec![],
            Err("unknown_key"),
        ),
        (
            "signed by another key",
            signed(&b, Kind::Cmd, GW),
            Kind::Cmd,
            keys.clone(),
            Err("unknown_key"),
        ),
        (
            "another gateway",
            signed(&a, Kind::Cmd, "gw-2"),
            Kind::Cmd,
            keys.clone(),
            Err("bad_signature"),
        ),
        (
            "cmd signature as config",
            signed(&a, Kind::Cmd, GW),
            Kind::Config,
            keys.clone(),
            Err("bad_signature"),
        ),
        (
            "claims a's id, signed by b",
            raw(
                serde_json::json!({"v": 1, "body": body, "key": id, "sig": b.sign(Kind::Cmd, GW, &body)}),
            ),
            Kind::Cmd,
            keys.clone(),
            Err("bad_signature"),
        ),
    ];
    for (name, payload, kind, keys, want) in cases {
        let got = open(&payload, kind, GW, &keys);
        match (&got, want) {
            (Ok(env), Ok(signer)) => {
                assert_eq!(env.signer, signer, "{name}");
                assert_eq!(env.body, body, "{name}");
            }
            (Err(e), Err(code)) => {
                assert_eq!(e.code(), code, "{name}: {e}");
                assert!(!e.to_string().is_empty());
            }
            _ => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn replays_are_refused() {
    let a = key_a();
    let keys = vec![*a.public()];
    let body = cmd("write", r#"{"point":"valve1.close","value":true}"#);
    let env = envelope(&body, Some((&a, Kind::Cmd, "gw-1")));
    assert!(open(&env, Kind::Cmd, "gw-1", &keys).is_ok());
    // Captured for gw-1, replayed on gw-2.
    assert_eq!(
        open(&env, Kind::Cmd, "gw-2", &keys).unwrap_err().code(),
        "bad_signature"
    );
    // A command's signature presented as a config push.
    assert_eq!(
        open(&env, Kind::Config, "gw-1", &keys).unwrap_err().code(),
        "bad_signature"
    );
    // Every single-byte change of the body (that keeps it a JSON string) is refused.
    let parsed: serde_json::Value = serde_json::from_slice(&env).unwrap();
    let sig = parsed["sig"].as_str().unwrap();
    for i in 0..body.len() {
        let mut b = body.clone().into_bytes();
        b[i] = if b[i] == b'x' { b'y' } else { b'x' };
        let changed = String::from_utf8(b).unwrap();
        let p = serde_json::json!({"v": 1, "body": changed, "key": a.id().to_string(), "sig": sig});
        let e = open(p.to_string().as_bytes(), Kind::Cmd, "gw-1", &keys).unwrap_err();
        assert_eq!(e.code(), "bad_signature", "byte {i}");
    }
    // The expiry is inside the signed body: a captured command can't be re-dated, and once its
    // expiry passes it is refused even with its valid signature.
    let opened = open(&env, Kind::Cmd, "gw-1", &keys).unwrap();
    let later = parse_rfc3339("2026-12-02T10:00:00Z").unwrap();
    let r = parse_command(&opened.body, "gw-1", later).unwrap_err();
    assert_eq!(
        (r.id.as_deref(), r.error.code()),
        (Some("ops-42"), "expired")
    );
}

// ------------------------------------------------------------------------------------------
// parse_command

#[test]
fn commands_that_parse() {
    let cases: Vec<(String, Op)> = vec![
        (cmd("ping", "{}"), Op::Ping),
        (
            r#"{"id":"a","gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"ping"}"#.into(),
            Op::Ping,
        ),
        (cmd("status", "{}"), Op::Status),
        (cmd("config/get", "{}"), Op::ConfigGet),
        (
            cmd("read", r#"{"points":["evc1.pressure","pt-2.t.inner"]}"#),
            Op::Read {
                points: vec![
                    ("evc1".into(), "pressure".into()),
                    ("pt-2".into(), "t.inner".into()),
                ],
            },
        ),
        (
            cmd("write", r#"{"point":"valve1.close","value":true}"#),
            Op::Write {
                device: "valve1".into(),
                point: "close".into(),
                value: WriteValue::Bool(true),
            },
        ),
        (
            cmd("write", r#"{"point":"pcv1.setpoint","value":2.5}"#),
            Op::Write {
                device: "pcv1".into(),
                point: "setpoint".into(),
                value: WriteValue::Number(2.5),
            },
        ),
        (
            cmd("ack", r#"{"occurrence":17,"note":"on site"}"#),
            Op::Ack {
                occurrence: 17,
                note: Some("on site".into()),
            },
        ),
        (
            cmd("ack", r#"{"occurrence":0}"#),
            Op::Ack {
                occurrence: 0,
                note: None,
            },
        ),
        (
            cmd(
                "resend",
                r#"{"device":"evc1","from":"2026-12-01T00:00:00Z","to":1796205600000}"#,
            ),
            Op::Resend {
                device: "evc1".into(),
                from_ms: parse_rfc3339("2026-12-01T00:00:00Z").unwrap(),
                to_ms: 1_796_205_600_000,
            },
        ),
    ];
    for (body, op) in cases {
        let c = parse_command(&body, GW, now()).unwrap_or_else(|r| panic!("{body}: {r:?}"));
        assert_eq!(c.op, op, "{body}");
        assert_eq!(c.expires_ms, parse_rfc3339("2026-12-02T10:00:00Z").unwrap());
        assert_eq!(
            c.op.name(),
            body.split("\"op\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        );
    }
    // Expiry as unix milliseconds.
    let body = format!(
        r#"{{"id":"a","gw":"gw-1","expires":{},"op":"ping"}}"#,
        now() + 1000
    );
    assert_eq!(
        parse_command(&body, GW, now()).unwrap().expires_ms,
        now() + 1000
    );
}

#[test]
fn commands_refused() {
    let head = r#"{"id":"ops-42","gw":"gw-1","expires":"2026-12-02T10:00:00Z""#;
    let long_note = format!(r#"{{"occurrence":1,"note":"{}"}}"#, "n".repeat(65));
    let many: Vec<String> = (0..65).map(|i| format!("d.p{i}")).collect();
    let many = serde_json::json!({ "points": many }).to_string();
    // (name, body, now, readable id, code)
    let cases: Vec<(&str, String, i64, Option<&str>, &str)> = vec![
        ("not json", "{".into(), now(), None, "bad_request"),
        ("not an object", "[]".into(), now(), None, "bad_request"),
        (
            "unknown field",
            format!(r#"{head},"op":"ping","x":1}}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "duplicate op",
            format!(r#"{head},"op":"ping","op":"write"}}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "duplicate arg",
            cmd(
                "write",
                r#"{"point":"valve1.close","value":false,"value":true}"#,
            ),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "missing id",
            r#"{"gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"ping"}"#.into(),
            now(),
            None,
            "bad_request",
        ),
        (
            "bad id",
            r#"{"id":"a b","gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"ping"}"#.into(),
            now(),
            None,
            "bad_request",
        ),
        (
            "id too long",
            format!(
                r#"{{"id":"{}","gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"ping"}}"#,
                "a".repeat(65)
            ),
            now(),
            None,
            "bad_request",
        ),
        (
            "id not a string",
            r#"{"id":7,"gw":"gw-1","expires":"2026-12-02T10:00:00Z","op":"ping"}"#.into(),
            now(),
            None,
            "bad_request",
        ),
        (
            "other gateway",
            r#"{"id":"a","gw":"gw-2","expires":"2026-12-02T10:00:00Z","op":"ping"}"#.into(),
            now(),
            Some("a"),
            "wrong_gateway",
        ),
        (
            "expires garbage",
            r#"{"id":"a","gw":"gw-1","expires":"tomorrow","op":"ping"}"#.into(),
            now(),
            Some("a"),
            "bad_request",
        ),
        (
            "expires fractional ms",
            r#"{"id":"a","gw":"gw-1","expires":1.5,"op":"ping"}"#.into(),
            now(),
            Some("a"),
            "bad_request",
        ),
        (
            "expires null",
            r#"{"id":"a","gw":"gw-1","expires":null,"op":"ping"}"#.into(),
            now(),
            Some("a"),
            "bad_request",
        ),
        (
            "expired",
            cmd("ping", "{}"),
            parse_rfc3339("2026-12-02T10:00:00Z").unwrap(),
            Some("ops-42"),
            "expired",
        ),
        (
            "too far ahead",
            cmd("ping", "{}"),
            parse_rfc3339("2026-11-25T09:00:00Z").unwrap(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "unknown op",
            cmd("reboot", "{}"),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "ping with args",
            cmd("ping", r#"{"x":1}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "read without args",
            format!(r#"{head},"op":"read"}}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "read no points",
            cmd("read", r#"{"points":[]}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "read 65 points",
            cmd("read", &many),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "read bad point",
            cmd("read", r#"{"points":["nodot"]}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "read empty point",
            cmd("read", r#"{"points":["dev."]}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "write string value",
            cmd("write", r#"{"point":"valve1.close","value":"1"}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "write null value",
            cmd("write", r#"{"point":"valve1.close","value":null}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "write no value",
            cmd("write", r#"{"point":"valve1.close"}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "write bad device",
            cmd("write", r#"{"point":"va lve.close","value":1}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "write, clock untrusted",
            cmd("write", r#"{"point":"valve1.close","value":true}"#),
            1_000,
            Some("ops-42"),
            "clock_untrusted",
        ),
        (
            "ack negative",
            cmd("ack", r#"{"occurrence":-1}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "ack long note",
            cmd("ack", &long_note),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "ack control note",
            cmd("ack", r#"{"occurrence":1,"note":"a\u001bb"}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "resend backwards",
            cmd(
                "resend",
                r#"{"device":"d","from":"2026-12-02T00:00:00Z","to":"2026-12-01T00:00:00Z"}"#,
            ),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "resend 32 days",
            cmd(
                "resend",
                r#"{"device":"d","from":"2026-10-01T00:00:00Z","to":"2026-11-02T00:00:00Z"}"#,
            ),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
        (
            "resend bad device",
            cmd("resend", r#"{"device":"a.b","from":0,"to":1}"#),
            now(),
            Some("ops-42"),
            "bad_request",
        ),
    ];
    for (name, body, now_ms, id, code) in cases {
        let r = match parse_command(&body, GW, now_ms) {
            Ok(c) => panic!("{name}: parsed {c:?}"),
            Err(r) => r,
        };
        assert_eq!(r.error.code(), code, "{name}: {}", r.error);
        assert_eq!(r.id.as_deref(), id, "{name}");
    }
}

#[test]
fn untrusted_clock_still_answers_reads() {
    // A gateway that booted at 1970 cannot judge expiries: reads pass, writes are refused.
    let c = parse_command(&cmd("read", r#"{"points":["a.b"]}"#), GW, 5_000).unwrap();
    assert!(matches!(c.op, Op::Read { .. }));
    let r = parse_push(&push_body("x", ""), GW, 5_000).unwrap_err();
    assert_eq!(r.error.code(), "clock_untrusted");
}

#[test]
fn error_messages_escape_outside_text() {
    let body = cmd("re\\u001b[2Jboot", "{}");
    let r = parse_command(&body, GW, now()).unwrap_err();
    let msg = r.error.to_string();
    assert!(!msg.contains('\u{1b}'), "{msg:?}");
    assert!(msg.contains("\\x1b"), "{msg:?}");
    let long = cmd(&"x".repeat(5000), "{}");
    assert!(
        parse_command(&long, GW, now())
            .unwrap_err()
            .error
            .to_string()
            .len()
            < 1000
    );
}

// ------------------------------------------------------------------------------------------
// parse_push

#[test]
fn pushes_that_parse() {
    let toml = "[gateway]\nid = \"gw-1\"\n";
    let p = parse_push(&push_body(toml, ""), GW, now()).unwrap();
    assert_eq!(p.version, "2026-12-02.1");
    assert_eq!(p.config, toml);
    assert_eq!(p.sha256, crate::remote::sign::sha256(toml.as_bytes()));
    assert_eq!((p.profiles.len(), p.confirm_within), (0, None));
    let p = parse_push(
        &push_body(
            toml,
            r#","profiles":{"z-meter":"[profile]","a_meter":"x"},"confirm_within":"2m""#,
        ),
        GW,
        now(),
    )
    .unwrap();
    assert_eq!(
        p.profiles,
        vec![
            ("a_meter".into(), "x".into()),
            ("z-meter".into(), "[profile]".into())
        ]
    );
    assert_eq!(p.confirm_within, Some(Duration::from_secs(120)));
}

#[test]
fn pushes_refused() {
    let toml = "[gateway]\nid = \"gw-1\"\n";
    let good = push_body(toml, "");
    let wrong_sha = good.replace(
        &crate::remote::sign::hex(&crate::remote::sign::sha256(toml.as_bytes())),
        &"0".repeat(64),
    );
    let upper_sha = good.replace(
        &crate::remote::sign::hex(&crate::remote::sign::sha256(toml.as_bytes())),
        &crate::remote::sign::hex(&crate::remote::sign::sha256(toml.as_bytes())).to_uppercase(),
    );
    let many: serde_json::Map<String, serde_json::Value> = (0..33)
        .map(|i| (format!("p{i}"), serde_json::Value::from("x")))
        .collect();
    let many = format!(r#","profiles":{}"#, serde_json::Value::Object(many));
    let cases: Vec<(&str, String, i64, Option<&str>, &str)> = vec![
        ("not json", "nope".into(), now(), None, "bad_request"),
        (
            "missing config",
            r#"{"version":"v1","gw":"gw-1","expires":"2026-12-02T10:00:00Z","sha256":"00"}"#.into(),
            now(),
            Some("v1"),
            "bad_request",
        ),
        (
            "bad version",
            good.replace("2026-12-02.1", "v 1"),
            now(),
            None,
            "bad_request",
        ),
        (
            "other gateway",
            good.replace("\"gw-1\"", "\"gw-9\""),
            now(),
            Some("2026-12-02.1"),
            "wrong_gateway",
        ),
        (
            "sha mismatch",
            wrong_sha,
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "sha upper case",
            upper_sha,
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "sha short",
            good.replace("\"sha256\":\"", "\"sha256\":\"0"),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "unknown field",
            push_body(toml, r#","force":true"#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "duplicate profile",
            push_body(toml, r#","profiles":{"a":"x","a":"y"}"#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "33 profiles",
            push_body(toml, &many),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "bad profile name",
            push_body(toml, r#","profiles":{"../etc":"x"}"#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "profile not text",
            push_body(toml, r#","profiles":{"a":1}"#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "confirm too short",
            push_body(toml, r#","confirm_within":"4s""#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "confirm too long",
            push_body(toml, r#","confirm_within":"25h""#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "confirm garbage",
            push_body(toml, r#","confirm_within":"soon""#),
            now(),
            Some("2026-12-02.1"),
            "bad_request",
        ),
        (
            "expired",
            good.clone(),
            parse_rfc3339("2026-12-02T11:00:00Z").unwrap(),
            Some("2026-12-02.1"),
            "expired",
        ),
        (
            "clock untrusted",
            good.clone(),
            0,
            Some("2026-12-02.1"),
            "clock_untrusted",
        ),
    ];
    for (name, body, now_ms, id, code) in cases {
        let r = match parse_push(&body, GW, now_ms) {
            Ok(p) => panic!("{name}: parsed {p:?}"),
            Err(r) => r,
        };
        assert_eq!(r.error.code(), code, "{name}: {}", r.error);
        assert_eq!(r.id.as_deref(), id, "{name}");
    }
}

// ------------------------------------------------------------------------------------------
// authorization and check_write

#[test]
fn authorization_fixtures() {
    let a = key_a().id();
    let b = key_b().id();
    let with_keys = cfg(vec![*key_a().public()], false);
    let no_keys = cfg(vec![], false);
    let opt_in = cfg(vec![], true);
    let write = |p: &str, v: WriteValue| {
        let (device, point) = p.split_once('.').unwrap();
        Op::Write {
            device: device.into(),
            point: point.into(),
            value: v,
        }
    };
    let close = write("valve1.close", WriteValue::Bool(true));
    let read = Op::Read {
        points: vec![("a".into(), "b".into())],
    };
    let unlisted = write("valve2.close", WriteValue::Bool(true));
    let above = write("pcv1.setpoint", WriteValue::Number(6.5));
    // (name, op, signer, config, expected code or "" for allowed)
    let cases: Vec<(&str, &Op, Option<&KeyId>, &RemoteConfig, &str)> = vec![
        ("signed read", &read, Some(&a), &with_keys, ""),
        ("signed write", &close, Some(&a), &with_keys, ""),
        ("unsigned read, keys", &read, None, &with_keys, "unsigned"),
        ("unsigned write, keys", &close, None, &with_keys, "unsigned"),
        ("unknown signer", &read, Some(&b), &with_keys, "unknown_key"),
        ("signer, no keys", &read, Some(&a), &no_keys, "unknown_key"),
        ("unsigned read, no keys", &read, None, &no_keys, ""),
        ("unsigned ping, no keys", &Op::Ping, None, &no_keys, ""),
        (
            "unsigned write, no keys",
            &close,
            None,
            &no_keys,
            "unsigned",
        ),
        ("unsigned write, opt-in", &close, None, &opt_in, ""),
        (
            "write not listed",
            &unlisted,
            Some(&a),
            &with_keys,
            "not_allowed",
        ),
        (
            "write above max",
            &above,
            Some(&a),
            &with_keys,
            "out_of_range",
        ),
    ];
    for (name, op, signer, c, code) in cases {
        match (authorize_command(op, signer, c), code) {
            (Ok(()), "") => {}
            (Err(e), code) if e.code() == code => {}
            (got, _) => panic!("{name}: got {got:?}, want {code:?}"),
        }
    }
    // Pushes.
    assert!(authorize_push(Some(&a), &with_keys).is_ok());
    assert_eq!(
        authorize_push(None, &with_keys).unwrap_err().code(),
        "unsigned"
    );
    assert_eq!(
        authorize_push(Some(&b), &with_keys).unwrap_err().code(),
        "unknown_key"
    );
    assert_eq!(
        authorize_push(None, &no_keys).unwrap_err().code(),
        "unsigned"
    );
    assert!(authorize_push(None, &opt_in).is_ok());
}

#[test]
fn check_write_fixtures() {
    let c = cfg(vec![], false);
    let cases: Vec<(&str, &str, WriteValue, &str)> = vec![
        ("valve1", "close", WriteValue::Bool(false), ""),
        ("valve1", "close", WriteValue::Number(1.0), ""),
        ("pcv1", "setpoint", WriteValue::Number(0.5), ""),
        ("pcv1", "setpoint", WriteValue::Number(6.0), ""),
        ("pcv1", "setpoint", WriteValue::Number(0.49), "out_of_range"),
        ("pcv1", "setpoint", WriteValue::Number(6.01), "out_of_range"),
        ("pcv1", "setpoint", WriteValue::Bool(true), "out_of_range"),
        ("pcv1", "other", WriteValue::Number(1.0), "not_allowed"),
        ("valve1", "open", WriteValue::Bool(true), "not_allowed"),
        ("x", "close", WriteValue::Bool(true), "not_allowed"),
    ];
    for (dev, pt, v, code) in cases {
        match (check_write(dev, pt, &v, &c), code) {
            (Ok(()), "") => {}
            (Err(e), code) if e.code() == code => assert!(e.to_string().contains(pt)),
            (got, _) => panic!("{dev}.{pt} = {v}: got {got:?}, want {code:?}"),
        }
    }
    // Only a max.
    let mut c = cfg(vec![], false);
    c.writes[1].min = None;
    assert!(check_write("pcv1", "setpoint", &WriteValue::Number(-1e9), &c).is_ok());
}

// ------------------------------------------------------------------------------------------
// codes, statuses, result JSON

#[test]
fn every_error_has_its_stable_code_and_status() {
    let cases: Vec<(RemoteError, &str, Status)> = vec![
        (
            RemoteError::BadRequest("x".into()),
            "bad_request",
            Status::Refused,
        ),
        (
            RemoteError::TooLarge { size: 2, max: 1 },
            "too_large",
            Status::Refused,
        ),
        (
            RemoteError::BadSignature("x".into()),
            "bad_signature",
            Status::Refused,
        ),
        (
            RemoteError::UnknownKey("x".into()),
            "unknown_key",
            Status::Refused,
        ),
        (
            RemoteError::Unsigned("x".into()),
            "unsigned",
            Status::Refused,
        ),
        (
            RemoteError::WrongGateway {
                got: "a".into(),
                want: "b".into(),
            },
            "wrong_gateway",
            Status::Refused,
        ),
        (
            RemoteError::Expired {
                expires_ms: 1,
                now_ms: 2,
            },
            "expired",
            Status::Expired,
        ),
        (
            RemoteError::NotAllowed("x".into()),
            "not_allowed",
            Status::Refused,
        ),
        (
            RemoteError::OutOfRange("x".into()),
            "out_of_range",
            Status::Refused,
        ),
        (
            RemoteError::ClockUntrusted,
            "clock_untrusted",
            Status::Refused,
        ),
        (
            RemoteError::NotFound("x".into()),
            "not_found",
            Status::Error,
        ),
        (RemoteError::Bus("x".into()), "bus_error", Status::Error),
        (RemoteError::Store("x".into()), "store_error", Status::Error),
        (
            RemoteError::Interrupted,
            "interrupted",
            Status::UnknownOutcome,
        ),
    ];
    let mut codes: Vec<&str> = cases.iter().map(|c| c.1).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 14, "codes are distinct");
    for (e, code, status) in cases {
        assert_eq!(e.code(), code);
        assert_eq!(e.status(), status, "{code}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn result_json_shape() {
    let at = parse_rfc3339("2026-12-02T09:00:01.250Z").unwrap();
    let ok = result_json(
        "ops-42",
        "write",
        Status::Ok,
        Some(serde_json::json!({"value": true})),
        None,
        at,
    );
    assert_eq!(
        ok,
        serde_json::json!({"id":"ops-42","op":"write","status":"ok","result":{"value":true},"error":null,"at":"2026-12-02T09:00:01.250Z"})
    );
    let e = RemoteError::Expired {
        expires_ms: at - 1000,
        now_ms: at,
    };
    let r = result_json("ops-43", "ping", e.status(), None, Some(&e), at);
    assert_eq!(r["status"], "expired");
    assert_eq!(r["result"], serde_json::Value::Null);
    assert_eq!(r["error"]["code"], "expired");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2026-12-02T09:00:00.250Z"));
    for (s, text) in [
        (Status::Ok, "ok"),
        (Status::Error, "error"),
        (Status::Refused, "refused"),
        (Status::Expired, "expired"),
        (Status::UnknownOutcome, "unknown_outcome"),
    ] {
        assert_eq!(s.as_str(), text);
    }
}

// ------------------------------------------------------------------------------------------
// RFC 3339

#[test]
fn rfc3339_fixtures() {
    let cases: Vec<(&str, Option<i64>)> = vec![
        ("1970-01-01T00:00:00Z", Some(0)),
        ("2026-12-02T10:00:00Z", Some(1_796_205_600_000)),
        ("2026-12-02t10:00:00z", Some(1_796_205_600_000)),
        ("2026-12-02T10:00:00.5Z", Some(1_796_205_600_500)),
        ("2026-12-02T10:00:00.123456789Z", Some(1_796_205_600_123)),
        ("2026-12-02T11:30:00+01:30", Some(1_796_205_600_000)),
        ("2026-12-02T08:00:00-02:00", Some(1_796_205_600_000)),
        ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
        ("1969-12-31T23:59:59.999Z", Some(-1)),
        ("2025-02-29T00:00:00Z", None),
        ("2026-13-01T00:00:00Z", None),
        ("2026-12-02T24:00:00Z", None),
        ("2026-12-02T10:00:60Z", None),
        ("2026-12-02 10:00:00Z", None),
        ("2026-12-02T10:00:00", None),
        ("2026-12-02T10:00:00.Z", None),
        ("2026-12-02T10:00:00.1234567890Z", None),
        ("2026-12-02T10:00:00+0100", None),
        ("2026-12-02T10:00:00Zjunk", None),
        ("+2026-12-02T10:00:00Z", None),
        ("２026-12-02T10:00:00Z", None),
        ("", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_rfc3339(s), want, "{s:?}");
    }
    // Round trip against the formatter for a spread of times.
    for ms in [
        0i64,
        1,
        999,
        86_399_999,
        951_782_400_000,
        1_796_205_600_123,
        253_402_300_799_999,
    ] {
        assert_eq!(parse_rfc3339(&crate::time::rfc3339_ms(ms)), Some(ms));
    }
}

// ------------------------------------------------------------------------------------------
// Property tests: fixed seed, bounded cases.

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x7E40_0A10),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn everything(payload: &[u8]) {
    let keys = [*key_a().public()];
    for kind in [Kind::Cmd, Kind::Config] {
        for k in [&keys[..], &[]] {
            if let Ok(env) = open(payload, kind, GW, k) {
                let _ = parse_command(&env.body, GW, now());
                let _ = parse_push(&env.body, GW, now());
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(payload) {
        for t in [now(), 0, i64::MIN, i64::MAX] {
            if let Ok(c) = parse_command(s, GW, t) {
                let _ = authorize_command(&c.op, None, &cfg(vec![], true));
            }
            let _ = parse_push(s, GW, t);
        }
        let _ = parse_rfc3339(s);
    }
}

fn valid_envelopes() -> Vec<Vec<u8>> {
    let a = key_a();
    let bodies = [
        cmd("write", r#"{"point":"valve1.close","value":true}"#),
        cmd("read", r#"{"points":["a.b","c.d"]}"#),
        cmd(
            "resend",
            r#"{"device":"d","from":"2026-12-01T00:00:00Z","to":1796205600000}"#,
        ),
        cmd("ack", r#"{"occurrence":3,"note":"x"}"#),
        push_body(
            "[gateway]\nid = \"gw-1\"\n",
            r#","profiles":{"p":"[profile]"},"confirm_within":"1m""#,
        ),
    ];
    let mut out = Vec::new();
    for b in &bodies {
        out.push(envelope(b, Some((&a, Kind::Cmd, GW))));
        out.push(envelope(b, Some((&a, Kind::Config, GW))));
        out.push(envelope(b, None));
    }
    out
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..600)) {
        everything(&payload);
    }

    #[test]
    fn arbitrary_json_text_never_panics(s in r#"[\{\}\[\]":,a-z0-9 .\-\\TZ+]{0,200}"#) {
        everything(s.as_bytes());
        let wrapped = serde_json::json!({"v": 1, "body": s}).to_string();
        everything(wrapped.as_bytes());
    }

    #[test]
    fn mutated_valid_envelopes_never_panic(
        which in 0usize..15,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut p = valid_envelopes().swap_remove(which);
        for (at, byte, how) in edits {
            match how {
                0 if !p.is_empty() => { let i = at % p.len(); p[i] = byte; }
                1 => { let i = at % (p.len() + 1); p.insert(i, byte); }
                _ if !p.is_empty() => { let i = at % p.len(); p.remove(i); }
                _ => {}
            }
        }
        everything(&p);
        // A mutated signed envelope is never accepted with a body other than one that was
        // signed: if it opens signed, its body is one of the originals.
        if let Ok(env) = open(&p, Kind::Cmd, GW, &[*key_a().public()]) {
            let originals: Vec<String> = valid_envelopes()
                .iter()
                .filter_map(|e| serde_json::from_slice::<serde_json::Value>(e).ok())
                .filter_map(|v| v["body"].as_str().map(str::to_string))
                .collect();
            prop_assert!(originals.contains(&env.body));
        }
    }
}

#[test]
fn signer_key_id_matches_config_key() {
    let a = key_a();
    assert_eq!(a.id(), key_id(a.public()));
}
