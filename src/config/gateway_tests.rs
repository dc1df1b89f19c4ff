//! `[gateway]` keys of issue 12: a relative `state_dir` and `socket` resolve against the
//! config file's directory (as `profile_dirs`), never the working directory; `commissioned`
//! defaults to true; each wrong value is an error at its key.

use std::path::{Path, PathBuf};

use super::parse_str;

const DEVICES: &str = "[buses.b]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\n\n[devices.d]\nbus = \"b\"\nunit = 1\n\n[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n";

fn gateway(keys: &str) -> Result<super::GatewayConfig, Vec<String>> {
    let text = format!("[gateway]\nid = \"g\"\nprofile_dirs = []\n{keys}\n{DEVICES}");
    parse_str(&text, "t.toml", Path::new("/etc/site"))
        .map(|l| l.config.gateway)
        .map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

#[test]
fn paths_resolve_against_the_config_directory_and_commissioned_defaults_to_true() {
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        ("", "/var/lib/gasdtu", None, true),
        (
            "state_dir = \"state\"\nsocket = \"run/g.sock\"\ncommissioned = false",
            "/etc/site/state",
            Some("/etc/site/run/g.sock"),
            false,
        ),
        (
            "state_dir = \"../var\"\ncommissioned = true",
            "/etc/site/../var",
            None,
            true,
        ),
        (
            "state_dir = \"/srv/gasdtu\"\nsocket = \"/tmp/x.sock\"",
            "/srv/gasdtu",
            Some("/tmp/x.sock"),
            true,
        ),
    ];
    for (keys, state, socket, commissioned) in cases {
        let g = gateway(keys).unwrap_or_else(|e| panic!("{keys}: {e:?}"));
        assert_eq!(g.state_dir, PathBuf::from(state), "{keys}");
        assert_eq!(g.socket, socket.map(PathBuf::from), "{keys}");
        assert_eq!(g.commissioned, *commissioned, "{keys}");
    }
}

#[test]
fn wrong_values_are_errors_at_their_key() {
    for (keys, want) in [
        ("commissioned = \"no\"", "gateway.commissioned"),
        ("socket = \"\"", "gateway.socket"),
        ("socket = 5", "gateway.socket"),
    ] {
        let errs = gateway(keys).expect_err(keys);
        assert!(errs.iter().any(|e| e.contains(want)), "{keys}: {errs:?}");
    }
}
