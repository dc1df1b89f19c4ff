//! `[uplink] protocol` and `[uplink.sparkplug]`: the default protocol, the ids with their
//! defaults, every error with its key path and line:column, and the not-wired warning.

use super::*;

fn parse_up(rest: &str) -> Result<Loaded, Vec<ConfigError>> {
    let text = format!(
        "[gateway]\nid = \"gw-7\"\nprofile_dirs = []\n\n[uplink]\nhost = \"127.0.0.1\"\ntls = false\n{rest}"
    );
    parse_str(&text, "t.toml", Path::new("/nonexistent"))
}

#[test]
fn gasdtu_is_the_default_and_sparkplug_reads_its_ids() {
    for rest in ["", "protocol = \"gasdtu\"\n"] {
        assert_eq!(parse_up(rest).unwrap().config.sparkplug, None, "{rest:?}");
    }
    let l = parse_up("protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"gas\"\n").unwrap();
    assert_eq!(
        l.config.sparkplug,
        Some(SparkplugConfig {
            group_id: "gas".into(),
            edge_node_id: "gw-7".into(),
            primary_host_id: None,
        })
    );
    // The forwarder speaks it: no warning about the protocol.
    assert!(
        !l.warnings.iter().any(|w| w.path == "uplink.protocol"),
        "{:?}",
        l.warnings
    );
    let l = parse_up(
        "protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"Gas Net\"\nedge_node_id = \"station-4\"\nprimary_host_id = \"scada\"\n",
    )
    .unwrap();
    assert_eq!(
        l.config.sparkplug,
        Some(SparkplugConfig {
            group_id: "Gas Net".into(),
            edge_node_id: "station-4".into(),
            primary_host_id: Some("scada".into()),
        })
    );
    // A table without the protocol is unused: a warning, not an error.
    let l = parse_up("[uplink.sparkplug]\ngroup_id = \"gas\"\n").unwrap();
    assert_eq!(l.config.sparkplug, None);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.path == "uplink.sparkplug" && w.message.contains("only used with")));
}

#[test]
fn errors_name_the_key_and_place() {
    // (rest after [uplink]'s host/tls lines (line 7 on), path, line, message part)
    let cases = [
        ("protocol = \"opcua\"\n", "uplink.protocol", 8, "unknown protocol"),
        ("protocol = 3\n", "uplink.protocol", 8, "expected a string"),
        ("protocol = \"sparkplug\"\n", "uplink.sparkplug", 8, "needs an [uplink.sparkplug]"),
        ("protocol = \"sparkplug\"\n[uplink.sparkplug]\nedge_node_id = \"e\"\n", "uplink.sparkplug.group_id", 9, "missing"),
        ("protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"a/b\"\n", "uplink.sparkplug.group_id", 10, "'/', '+' or '#'"),
        ("protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"g\"\nedge_node_id = \"e+\"\n", "uplink.sparkplug.edge_node_id", 11, "'/', '+' or '#'"),
        ("protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"g\"\nprimary_host_id = \"\"\n", "uplink.sparkplug.primary_host_id", 11, "must not be empty"),
        ("protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"g\"\nedge_node_id = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n", "uplink.sparkplug.edge_node_id", 11, "at most 64 bytes"),
        ("protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"g\"\ngroup = \"h\"\n", "uplink.sparkplug.group", 11, "unknown key"),
        ("protocol = \"sparkplug\"\nsparkplug = 1\n", "uplink.sparkplug", 9, "expected a table"),
    ];
    for (rest, path, line, part) in cases {
        let errs = match parse_up(rest) {
            Ok(_) => panic!("accepted: {rest}"),
            Err(e) => e,
        };
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.line == Some(line) && e.message.contains(part)),
            "{rest}\n{errs:#?}"
        );
    }
}
