//! Random mutations of the shipped configs and profiles never panic the loader, every
//! error is placed (line:column) and no error echoes a control character raw. Fixed seed,
//! bounded cases: a few seconds in debug.
//!
//! Also the proptest of `escape` and the regression fixtures the fuzzer found.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    Truncate(usize),
    DuplicateLine(usize),
    DeleteLine(usize),
    Insert(usize, Vec<u8>),
}

const NASTY: &[&[u8]] = &[
    b"\0",
    b"\x1b[2J",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\r",
    b"\t",
    b"\"",
    b"[",
    b"]",
    b"=",
    b"\n",
    b"'''",
    b"\"\"\"",
    b"\\",
    b"{",
    b"}",
    b"-",
    b"99999999999999999999",
    b"\xe2\x80\xae",
    b"[[a]]\n",
    b"= \"x\"\n",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(p, i)| Mutation::Insert(p, NASTY[i].to_vec())),
    ]
}

fn apply(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = b.len().max(1);
    match m {
        Mutation::FlipBit(p, bit) => {
            if !b.is_empty() {
                b[p % n] ^= 1 << bit;
            }
        }
        Mutation::Truncate(p) => b.truncate(p % n),
        Mutation::DuplicateLine(i) | Mutation::DeleteLine(i) => {
            let mut lines: Vec<Vec<u8>> = b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
            let i = i % lines.len();
            if matches!(m, Mutation::DuplicateLine(_)) {
                lines.insert(i, lines[i].clone());
            } else {
                lines.remove(i);
            }
            b = lines.join(&b'\n');
        }
        Mutation::Insert(p, bytes) => {
            let at = p % (b.len() + 1);
            b.splice(at..at, bytes.iter().copied());
        }
    }
    b
}

/// The shipped documents, with the demo's placeholders filled in.
fn corpus() -> Vec<(String, bool, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut out = Vec::new();
    for (dir, is_profile) in [(root.clone(), false), (root.join("profiles"), true)] {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("@STATE_DIR@", "/nonexistent/state")
                .replace("@MQTT_PORT@", "1883")
                .replace("@TCP_PORT@", "1502")
                .replace("@RTU_PORT@", "1503");
            out.push((p.display().to_string(), is_profile, text.into_bytes()));
        }
    }
    assert!(out.len() >= 7, "{out:?}");
    out
}

/// Load the mutated bytes as `load_file` does; the errors, if any.
fn check(bytes: Vec<u8>, is_profile: bool) -> Result<(), String> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let errors = match file::utf8(bytes) {
        Err(bad) => {
            return if bad.line >= 1 && bad.column >= 1 {
                Ok(())
            } else {
                Err(format!("bad UTF-8 position {bad:?}"))
            }
        }
        Ok(text) if is_profile => match profiles::parse_profile(&text, "p.toml") {
            Ok(_) => return Ok(()),
            Err(e) => e,
        },
        Ok(text) => match parse_str(&text, "c.toml", &base) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        },
    };
    if errors.is_empty() {
        return Err("refused without an error".into());
    }
    let total = error_count(&errors);
    for (i, e) in errors.iter().enumerate() {
        let is_count = i == MAX_ERRORS && total > errors.len();
        // Profile errors met while loading a config come from the built-in profiles here.
        if e.line.is_none() && !is_count {
            return Err(format!("error without a position: {e:?}"));
        }
        if e.to_string().chars().any(|c| c.is_control()) {
            return Err(format!("raw control character in {:?}", e.to_string()));
        }
    }
    Ok(())
}

#[test]
fn mutated_shipped_configs_never_panic_and_errors_are_placed() {
    let corpus = corpus();
    let config = PtConfig {
        cases: 3000,
        failure_persistence: None,
        ..PtConfig::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[9; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = (0..corpus.len(), proptest::collection::vec(mutation(), 1..6));
    let result = runner.run(&strategy, |(i, muts)| {
        let (_, is_profile, base) = &corpus[i];
        let bytes = muts.iter().fold(base.clone(), apply);
        check(bytes, *is_profile).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `escape` on any text: no control character survives, text without one is unchanged, and
/// escaping twice changes nothing more (fixed seed, bounded cases).
#[test]
fn escape_never_lets_a_control_character_through() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};
    let config = PtConfig {
        cases: 2000,
        failure_persistence: None,
        ..PtConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let result = runner.run(&any::<String>(), |s| {
        let e = escape(&s);
        prop_assert!(!e.chars().any(char::is_control), "{e:?}");
        let shown = |c: char| {
            !c.is_control()
                && !('\u{202a}'..='\u{202e}').contains(&c)
                && !('\u{2066}'..='\u{2069}').contains(&c)
        };
        if s.chars().all(shown) {
            prop_assert_eq!(e.as_ref(), s.as_str());
        }
        let twice = escape(&e).into_owned();
        prop_assert_eq!(twice.as_str(), e.as_ref());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Regression fixtures found by the fuzzer above (seed 9): a profile truncated before its
/// `[profile]` header, and one truncated before its first point, gave errors with no position.
#[test]
fn fuzz_found_truncated_profiles_are_placed() {
    let pt = profiles::builtin()
        .iter()
        .find(|(id, _)| *id == "pt-float")
        .unwrap()
        .1;
    let header_end = pt.find("[points.").unwrap();
    // (document, key path, message fragment)
    let cases = [
        ("", "profile", "missing [profile] section"),
        ("# nothing\n", "profile", "missing [profile] section"),
        (
            &pt[..header_end],
            "points",
            "at least one [points.<name>] entry",
        ),
    ];
    for (text, path, frag) in cases {
        let errs = profiles::parse_profile(text, "p.toml").unwrap_err();
        let e = errs
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{errs:#?}"));
        assert!(
            e.message.contains(frag) && e.line.is_some() && e.column.is_some(),
            "{e:?}"
        );
    }
}

/// Regression fixture of the same kind for configs: a document without `[gateway]` (the
/// fuzzer's line deletions) is placed at 1:1.
#[test]
fn fuzz_found_missing_gateway_is_placed() {
    for text in ["", "\n\n", "[store]\nmax_age = \"2d\"\n"] {
        let errs = errors_of(text);
        let e = errs.iter().find(|e| e.path == "gateway").unwrap();
        assert_eq!((e.line, e.column), (Some(1), Some(1)), "{text:?}: {e}");
    }
}
