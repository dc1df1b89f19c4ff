//! `[remote]`: defaults, keys, the unsigned-commands warning, `[remote.writes]` against the
//! devices' writable points, and every error with its key path and position.

use super::*;

// ------------------------------------------------------------------------------------------
// [remote]

/// Devices for `[remote.writes]`: a valve (coil, writable), a pressure controller (holding f32
/// setpoint, writable; a read-only input; a computed point) and a string register.
const REMOTE_DEVS: &str = r#"
[devices.valve1]
bus = "a"
unit = 1
points.close = { table = "coil", address = 0, type = "bit", writable = true }

[devices.pcv1]
bus = "a"
unit = 2
points.setpoint = { table = "holding", address = 0, type = "f32", writable = true }
points.tag = { table = "holding", address = 4, type = "string", length = 4, writable = true }
points.pressure = { table = "input", address = 0, type = "f32" }
points.lo = { table = "input", address = 2, type = "u16" }
computed.total = { terms = { lo = 1.0 } }
"#;

fn remote_doc(section: &str) -> String {
    doc(&format!("{REMOTE_DEVS}\n{section}"))
}

/// Public keys of fixed seeds (what `gasdtu keygen` prints, in base64).
fn pub_b64(seed: u8) -> String {
    let k = crate::remote::sign::SigningKey::from_seed(&[seed; 32]);
    crate::remote::sign::public_key_base64(k.public())
}

#[test]
fn remote_defaults_and_everything_set() {
    assert_eq!(ok(&remote_doc("")).config.remote, None);
    let l = ok(&remote_doc("[remote]\n"));
    assert_eq!(l.config.remote, Some(RemoteConfig::default()));
    let r = RemoteConfig::default();
    assert_eq!(
        (r.confirm_within, r.keep_configs, r.allow_unsigned),
        (Duration::from_secs(600), 5, false)
    );
    let text = remote_doc(&format!(
        "[remote]\nkeys = [\"{}\", \"{}\"]\nconfirm_within = \"30s\"\nkeep_configs = 50\n\
         [remote.writes]\n\"valve1.close\" = {{}}\n\"pcv1.setpoint\" = {{ min = 0.5, max = 6 }}\n",
        pub_b64(1),
        pub_b64(2)
    ));
    let l = ok(&text);
    let r = l.config.remote.unwrap();
    let k1 = crate::remote::sign::SigningKey::from_seed(&[1; 32]);
    assert_eq!(r.keys.len(), 2);
    assert_eq!(&r.keys[0], k1.public());
    assert_eq!(
        (r.confirm_within, r.keep_configs),
        (Duration::from_secs(30), 50)
    );
    assert_eq!(
        r.writes,
        vec![
            RemoteWrite {
                device: "pcv1".into(),
                point: "setpoint".into(),
                min: Some(0.5),
                max: Some(6.0)
            },
            RemoteWrite {
                device: "valve1".into(),
                point: "close".into(),
                min: None,
                max: None
            },
        ]
    );
    assert!(
        l.warnings.iter().all(|w| !w.path.starts_with("remote")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn remote_allow_unsigned_warns() {
    let l = ok(&remote_doc("[remote]\nallow_unsigned = true\n"));
    let w: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.path == "remote.allow_unsigned")
        .collect();
    assert_eq!(w.len(), 1, "{:?}", l.warnings);
    assert!(w[0]
        .message
        .contains("unsigned writes and config pushes are accepted"));
    assert!(w[0].line.is_some() && w[0].column.is_some());
    assert!(l.config.remote.unwrap().allow_unsigned);
    // With keys it has no effect, and says so.
    let l = ok(&remote_doc(&format!(
        "[remote]\nkeys = [\"{}\"]\nallow_unsigned = true\n",
        pub_b64(1)
    )));
    assert!(l
        .warnings
        .iter()
        .any(|w| w.path == "remote.allow_unsigned" && w.message.contains("no effect")));
}

#[test]
fn remote_errors_have_key_path_and_position() {
    let k = pub_b64(1);
    let seventeen: Vec<String> = (1..=17u8).map(|s| format!("\"{}\"", pub_b64(s))).collect();
    // (case, section, key path, message fragment)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "bad base64",
            "[remote]\nkeys = [\"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=\"]\n".into(),
            "remote.keys[0]",
            "base64",
        ),
        (
            "short key",
            format!("[remote]\nkeys = [\"{k}\", \"AAAA\"]\n"),
            "remote.keys[1]",
            "44 characters",
        ),
        (
            "33-byte key",
            "[remote]\nkeys = [\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB\"]\n".into(),
            "remote.keys[0]",
            "33 bytes",
        ),
        (
            "key twice",
            format!("[remote]\nkeys = [\"{k}\", \"{k}\"]\n"),
            "remote.keys[1]",
            "listed twice",
        ),
        (
            "key not a string",
            "[remote]\nkeys = [1]\n".into(),
            "remote.keys[0]",
            "expected a string",
        ),
        (
            "17 keys",
            format!("[remote]\nkeys = [{}]\n", seventeen.join(", ")),
            "remote.keys",
            "at most 16",
        ),
        (
            "confirm short",
            "[remote]\nconfirm_within = \"4s\"\n".into(),
            "remote.confirm_within",
            "out of range",
        ),
        (
            "confirm long",
            "[remote]\nconfirm_within = \"2d\"\n".into(),
            "remote.confirm_within",
            "out of range",
        ),
        (
            "keep 0",
            "[remote]\nkeep_configs = 0\n".into(),
            "remote.keep_configs",
            "out of range",
        ),
        (
            "keep 51",
            "[remote]\nkeep_configs = 51\n".into(),
            "remote.keep_configs",
            "out of range",
        ),
        (
            "unsigned not bool",
            "[remote]\nallow_unsigned = \"yes\"\n".into(),
            "remote.allow_unsigned",
            "true or false",
        ),
        (
            "unknown key",
            "[remote]\nkey = []\n".into(),
            "remote.key",
            "unknown key",
        ),
        (
            "no such device",
            "[remote.writes]\n\"valve9.close\" = {}\n".into(),
            "remote.writes.valve9.close",
            "no device `valve9`",
        ),
        (
            "no such point",
            "[remote.writes]\n\"valve1.open\" = {}\n".into(),
            "remote.writes.valve1.open",
            "has no point `open`",
        ),
        (
            "not writable",
            "[remote.writes]\n\"pcv1.pressure\" = {}\n".into(),
            "remote.writes.pcv1.pressure",
            "not writable",
        ),
        (
            "computed",
            "[remote.writes]\n\"pcv1.total\" = {}\n".into(),
            "remote.writes.pcv1.total",
            "computed point",
        ),
        (
            "no dot",
            "[remote.writes]\nvalve1 = {}\n".into(),
            "remote.writes.valve1",
            "not \"device.point\"",
        ),
        (
            "min above max",
            "[remote.writes]\n\"pcv1.setpoint\" = { min = 7, max = 6 }\n".into(),
            "remote.writes.pcv1.setpoint.min",
            "above max",
        ),
        (
            "min on bool",
            "[remote.writes]\n\"valve1.close\" = { min = 0 }\n".into(),
            "remote.writes.valve1.close",
            "not numeric",
        ),
        (
            "max on string",
            "[remote.writes]\n\"pcv1.tag\" = { max = 1 }\n".into(),
            "remote.writes.pcv1.tag",
            "not numeric",
        ),
        (
            "min not a number",
            "[remote.writes]\n\"pcv1.setpoint\" = { min = \"1\" }\n".into(),
            "remote.writes.pcv1.setpoint.min",
            "expected a number",
        ),
        (
            "unknown limit",
            "[remote.writes]\n\"pcv1.setpoint\" = { step = 1 }\n".into(),
            "remote.writes.pcv1.setpoint.step",
            "unknown key",
        ),
        (
            "entry not a table",
            "[remote.writes]\n\"pcv1.setpoint\" = 1\n".into(),
            "remote.writes.pcv1.setpoint",
            "expected a table",
        ),
        (
            "writes not a table",
            "[remote]\nwrites = 1\n".into(),
            "remote.writes",
            "expected a table",
        ),
    ];
    for (name, section, path, frag) in cases {
        let errs = errors_of(&remote_doc(&section));
        let e = errs
            .iter()
            .find(|e| e.path == path && e.message.contains(frag))
            .unwrap_or_else(|| {
                panic!(
                    "{name}: want {path}: {frag}, got {:#?}",
                    errs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
                )
            });
        assert!(
            e.line.is_some() && e.column.is_some(),
            "{name}: unplaced {e}"
        );
    }
    // The position is the offending item's: the second key of line N.
    let text = remote_doc(&format!("[remote]\nkeys = [\"{k}\", \"AAAA\"]\n"));
    let line = text.lines().position(|l| l.starts_with("keys =")).unwrap() + 1;
    let e = errors_of(&text)
        .into_iter()
        .find(|e| e.path == "remote.keys[1]")
        .unwrap();
    assert_eq!(
        (e.line, e.column),
        (
            Some(line),
            Some("keys = [\"".len() + k.len() + "\", ".len() + 1)
        )
    );
}
