//! Hostile input (issue 9): unreadable, non-regular, large and non-UTF-8 files, bounded
//! packet strings, plaintext credentials, value errors placed at line:column, a state_dir
//! that is a file, the error cap, and the one escaping helper.

use super::*;

#[test]
fn load_file_distinguishes_unreadable_from_invalid() {
    let dir = tempfile::tempdir().unwrap();
    match load_file(&dir.path().join("missing.toml")) {
        Err(LoadError::Read { .. }) => {}
        other => panic!("{other:?}"),
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[gateway]\n").unwrap();
    match load_file(&bad) {
        Err(LoadError::Invalid { errors, path }) => {
            assert_eq!(path, bad);
            assert_eq!(errors[0].origin, bad.display().to_string());
        }
        other => panic!("{other:?}"),
    }
}

// ---- Issue 9: hostile input (items 1, 8, 9 and the fuzzing of the shipped configs) ----

const UP: &str = "[uplink]\nhost = \"h\"\ntls = false\nallow_plaintext_credentials = true\n";

/// Every string of `[uplink]` and `[gateway]` that reaches an MQTT packet is bounded, and the
/// error is placed at the value (line:column), like every other error.
#[test]
fn packet_strings_are_bounded_with_line_and_column() {
    let long = |n: usize| "x".repeat(n);
    // (case, uplink body after UP, key path, message fragment, line of the value)
    let cases: Vec<(&str, String, &str, &str, usize)> = vec![
        (
            "1 MB username",
            format!("username = \"{}\"\n", long(1 << 20)),
            "uplink.username",
            "at most 256 bytes",
            17,
        ),
        (
            "257 B username",
            format!("username = \"{}\"\n", long(257)),
            "uplink.username",
            "at most 256 bytes",
            17,
        ),
        (
            "empty username",
            "username = \"\"\n".into(),
            "uplink.username",
            "must not be empty",
            17,
        ),
        (
            "NUL in username",
            "username = \"a\\u0000b\"\n".into(),
            "uplink.username",
            "control character",
            17,
        ),
        (
            "long password",
            format!("username = \"u\"\npassword = \"{}\"\n", long(257)),
            "uplink.password",
            "at most 256 bytes",
            18,
        ),
        (
            "ESC in password",
            "username = \"u\"\npassword = \"p\\u001b[2J\"\n".into(),
            "uplink.password",
            "control character",
            18,
        ),
        (
            "long client id",
            format!("client_id = \"{}\"\n", long(65)),
            "uplink.client_id",
            "at most 64 bytes",
            17,
        ),
        (
            "CR in client id",
            "client_id = \"a\\rb\"\n".into(),
            "uplink.client_id",
            "control character",
            17,
        ),
        (
            "long topic root",
            format!("topic_root = \"{}\"\n", long(129)),
            "uplink.topic_root",
            "at most 128 bytes",
            17,
        ),
        (
            "LF in topic root",
            "topic_root = \"a\\nb\"\n".into(),
            "uplink.topic_root",
            "control character",
            17,
        ),
        (
            "long server name",
            format!("server_name = \"{}\"\n", long(254)),
            "uplink.server_name",
            "at most 253 bytes",
            17,
        ),
    ];
    for (name, body, path, frag, line) in cases {
        let text = doc(&format!("{UP}{body}"));
        let errs = errors_of(&text);
        let e = errs
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{name}: no error at {path}: {errs:#?}"));
        assert!(e.message.contains(frag), "{name}: {e}");
        assert_eq!(
            (e.line, e.column.is_some()),
            (Some(line), true),
            "{name}: {e}"
        );
        assert!(
            e.message.len() < 200,
            "{name}: the value is not echoed: {e}"
        );
    }
    // The host is bounded too (`tls = true` needs a CA file, so test it without TLS).
    let errs = errors_of(&doc(&format!(
        "[uplink]\nhost = \"{}\"\ntls = false\n",
        long(254)
    )));
    assert!(
        errs.iter()
            .any(|e| e.path == "uplink.host" && e.message.contains("at most 253")),
        "{errs:#?}"
    );
    let errs = errors_of(&doc("[uplink]\nhost = \"a b\"\ntls = false\n"));
    assert!(
        errs.iter()
            .any(|e| e.path == "uplink.host" && e.message.contains("no spaces")),
        "{errs:#?}"
    );
    // A gateway id beyond 64 characters (it is in every topic and the default client id).
    let errs = errors_of(&format!("[gateway]\nid = \"{}\"\n", long(65)));
    assert!(
        errs.iter()
            .any(|e| e.path == "gateway.id" && e.line == Some(2)),
        "{errs:#?}"
    );
    // The limits themselves pass.
    let l = ok(&doc(&format!(
        "{UP}username = \"{}\"\npassword = \"{}\"\nclient_id = \"{}\"\ntopic_root = \"{}\"\n",
        long(256),
        long(256),
        long(64),
        long(128)
    )));
    assert_eq!(l.config.uplink.unwrap().topic_root.len(), 128);
}

/// `tls = false` with credentials is refused unless `allow_plaintext_credentials = true`, which
/// then warns (the warning is logged at every start).
#[test]
fn plaintext_credentials_need_an_explicit_opt_in() {
    let plain = "[uplink]\nhost = \"h\"\ntls = false\n";
    // (case, uplink body, Ok(warning fragment) or Err((key path, fragment)))
    type Want = Result<&'static str, (&'static str, &'static str)>;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "user in clear",
            format!("{plain}username = \"u\"\npassword = \"p\"\n"),
            Err(("uplink.username", "clear text")),
        ),
        (
            "user alone in clear",
            format!("{plain}username = \"u\"\n"),
            Err(("uplink.username", "allow_plaintext_credentials = true")),
        ),
        (
            "opted in",
            format!(
                "{plain}username = \"u\"\npassword = \"p\"\nallow_plaintext_credentials = true\n"
            ),
            Ok("user name and password cross the network in clear text"),
        ),
        (
            "opt-in without credentials",
            format!("{plain}allow_plaintext_credentials = true\n"),
            Ok("has no effect without username"),
        ),
        (
            "opt-in not a bool",
            format!("{plain}username = \"u\"\nallow_plaintext_credentials = \"yes\"\n"),
            Err((
                "uplink.allow_plaintext_credentials",
                "expected true or false",
            )),
        ),
    ];
    for (name, body, want) in cases {
        let r = parse(&doc(&body));
        match (r, want) {
            (Ok(l), Ok(frag)) => assert!(
                l.warnings
                    .iter()
                    .any(|w| w.path == "uplink.allow_plaintext_credentials"
                        && w.message.contains(frag)
                        && w.line.is_some()),
                "{name}: {:#?}",
                l.warnings
            ),
            (Err(errs), Err((path, frag))) => assert!(
                errs.iter()
                    .any(|e| e.path == path && e.message.contains(frag) && e.line.is_some()),
                "{name}: {errs:#?}"
            ),
            (r, _) => panic!("{name}: unexpected {r:#?}"),
        }
    }
}

#[test]
fn value_errors_have_line_and_column() {
    // (document, key path, message fragment, line, column)
    let cases: Vec<(String, &str, &str, usize, usize)> = vec![
        (
            doc("[store]\nmax_bytes = -5\n"),
            "store.max_bytes",
            "-5 is out of range",
            14,
            13,
        ),
        (
            doc("[store]\nmax_bytes = true\n"),
            "store.max_bytes",
            "expected a size",
            14,
            13,
        ),
        (
            doc("[store]\nmax_bytes = 99999999999999999999\n"),
            "store.max_bytes",
            "",
            14,
            13,
        ),
        (
            "[buses.a]\nkind = \"tcp\"\nhost = \"h\"\n".into(),
            "gateway",
            "missing [gateway]",
            1,
            1,
        ),
    ];
    for (text, path, frag, line, column) in cases {
        let errs = errors_of(&text);
        assert!(
            errs.iter().any(|e| e.path == path
                && e.message.contains(frag)
                && e.line == Some(line)
                && e.column == Some(column)),
            "{path}: want {line}:{column} {frag:?}, got {errs:#?}"
        );
    }
}

#[test]
fn a_state_dir_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state");
    std::fs::write(&file, "").unwrap();
    let text = format!(
        "[gateway]\nid = \"g\"\nstate_dir = {:?}\n",
        file.display().to_string()
    );
    let errs = errors_of(&text);
    assert!(
        errs.iter().any(|e| e.path == "gateway.state_dir"
            && e.message.contains("is not a directory")
            && e.line == Some(3)),
        "{errs:#?}"
    );
    // A directory, or one that does not exist yet (the daemon creates it), passes.
    for ok_dir in [dir.path().to_path_buf(), dir.path().join("new")] {
        let text = format!(
            "[gateway]\nid = \"g\"\nstate_dir = {:?}\n",
            ok_dir.display().to_string()
        );
        assert!(parse(&text).is_ok(), "{}", ok_dir.display());
    }
}

/// 10 000 unknown keys: the first `MAX_ERRORS` are listed and one more error counts the rest.
#[test]
fn errors_are_capped_and_counted() {
    let mut text = String::from("[gateway]\nid = \"g\"\n");
    for i in 0..10_000 {
        text.push_str(&format!("k{i} = 1\n"));
    }
    let errs = errors_of(&text);
    assert_eq!(errs.len(), MAX_ERRORS + 1);
    assert_eq!(error_count(&errs), 10_000);
    assert!(
        errs[MAX_ERRORS]
            .message
            .starts_with("9900 more errors not shown"),
        "{}",
        errs[MAX_ERRORS]
    );
    // A short list is counted as is.
    assert_eq!(error_count(&errs[..3]), 3);
}

/// The one escaping helper: control characters, NUL, ESC, DEL, C1 and direction overrides
/// become visible escapes; everything else (quotes, backslashes, accents) stays.
#[test]
fn escape_table() {
    let cases = [
        ("plain-name_1", "plain-name_1"),
        ("a\0b", "a\\0b"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("tab\there", "tab\\there"),
        ("cr\rlf\n", "cr\\rlf\\n"),
        ("del\x7f", "del\\x7f"),
        ("c1\u{9b}", "c1\\u{9b}"),
        ("rlo\u{202e}txt", "rlo\\u{202e}txt"),
        ("quote\"back\\slash", "quote\"back\\slash"),
        ("accent é 気", "accent é 気"),
    ];
    for (raw, shown) in cases {
        assert_eq!(escape(raw), shown, "{raw:?}");
    }
    // Errors echo keys through it.
    let errs = errors_of("[gateway]\nid = \"g\"\n\"k\\u001b[2J\" = 1\n");
    let line = errs[0].to_string();
    assert!(
        line.contains("k\\x1b[2J") && !line.contains('\x1b'),
        "{line:?}"
    );
}

#[test]
fn load_file_refuses_non_regular_large_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
    // (path, fragment of the read error)
    let unreadable: Vec<(PathBuf, &str)> = vec![
        (fifo, "FIFO"),
        (PathBuf::from("/dev/zero"), "character device"),
        (dir.path().to_path_buf(), "a directory"),
        (big, "larger than 1048576 bytes"),
    ];
    for (path, frag) in unreadable {
        match load_file(&path) {
            Err(LoadError::Read { source, .. }) => {
                assert!(
                    source.to_string().contains(frag),
                    "{}: {source}",
                    path.display()
                )
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    let bad = dir.path().join("latin1.toml");
    std::fs::write(&bad, b"[gateway]\nid = \"g\"\n# caf\xe9\n").unwrap();
    match load_file(&bad) {
        Err(LoadError::Invalid { errors, .. }) => {
            assert_eq!(
                (errors[0].line, errors[0].column),
                (Some(3), Some(6)),
                "{errors:?}"
            );
            assert!(
                errors[0].message.contains("not valid UTF-8: byte 0xe9"),
                "{errors:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A profile that is a FIFO is refused too (and named).
    let pdir = dir.path().join("profiles");
    std::fs::create_dir(&pdir).unwrap();
    let c = std::ffi::CString::new(pdir.join("p.toml").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let errs = profiles::resolve_profile("p", &[pdir]).unwrap_err();
    assert!(errs[0].message.contains("FIFO"), "{errs:?}");
}
