//! Table tests of the `Modem/` node metrics: which models have them (only with a `[modem]`),
//! their datatypes, units and stable aliases, the NBIRTH values (null when unknown), NDATA by
//! exception, the snapshot of a `ModemStatus`, and the session's NDATA.

use prost::Message;

use super::modem::*;
use super::proto::{metric, property_value, Metric, Payload};
use super::*;
use crate::config::Config;
use crate::modem::status::{LadderStatus, ModemState, SignalReport};
use crate::modem::ModemStatus;

const BASE: &str = r#"
[gateway]
id = "gw-1"
state_dir = "/tmp/x"
profile_dirs = []
[buses.b]
kind = "tcp"
host = "127.0.0.1"
port = 1502
[devices.fc1]
bus = "b"
unit = 1
points.pressure = { table = "input", address = 0, type = "f32", unit = "bar" }
"#;

const MODEM: &str = r#"
[modem]
mode = "os"
port = "/dev/ttyS2"
"#;

fn cfg(text: &str) -> Config {
    match crate::config::parse_str(text, "t.toml", std::path::Path::new("/")) {
        Ok(l) => l.config,
        Err(e) => panic!("{e:?}"),
    }
}

fn with_modem() -> NodeModel {
    build(&cfg(&format!("{BASE}{MODEM}"))).unwrap()
}

fn figures() -> ModemFigures {
    ModemFigures {
        state: "registered".into(),
        registered: true,
        rsrp_dbm: Some(-97),
        rssi_dbm: None,
        sinr_db: Some(4),
        ecl: Some(1),
        pdp_active: Some(true),
        resets_today: 2,
        inits: 3,
    }
}

fn state(modem: Option<ModemFigures>) -> NodeState {
    NodeState {
        transport: "modem".into(),
        reconnects: 0,
        buffer_depth: 0,
        modem,
    }
}

#[test]
fn modem_metrics_exist_only_with_a_modem_and_keep_the_other_aliases() {
    let without = build(&cfg(BASE)).unwrap();
    assert!(
        without.node.iter().all(|m| !m.name.starts_with("Modem/")),
        "{:?}",
        without.node
    );
    // `mode = "none"` is no modem.
    let none = build(&cfg(&format!("{BASE}[modem]\nmode = \"none\"\n"))).unwrap();
    assert_eq!(none.node, without.node);

    let m = with_modem();
    let want: [(&str, SpType, Option<&str>); 9] = [
        ("Modem/ECL", SpType::Int32, None),
        ("Modem/Inits", SpType::UInt64, None),
        ("Modem/PDP Active", SpType::Boolean, None),
        ("Modem/RSRP", SpType::Int32, Some("dBm")),
        ("Modem/RSSI", SpType::Int32, Some("dBm")),
        ("Modem/Registered", SpType::Boolean, None),
        ("Modem/Resets Today", SpType::UInt64, None),
        ("Modem/SINR", SpType::Int32, Some("dB")),
        ("Modem/State", SpType::String, None),
    ];
    let got: Vec<_> = m
        .node
        .iter()
        .filter(|d| d.name.starts_with("Modem/"))
        .map(|d| (d.name.as_str(), d.datatype, d.unit.as_deref()))
        .collect();
    assert_eq!(got, want);
    // Sorted by name, aliases unique and non-zero.
    assert!(m.node.windows(2).all(|w| w[0].name < w[1].name));
    let mut aliases: Vec<u64> = m.node.iter().map(|d| d.alias).collect();
    aliases.extend(
        m.devices
            .iter()
            .flat_map(|d| d.metrics.iter().map(|x| x.alias)),
    );
    let n = aliases.len();
    aliases.sort_unstable();
    aliases.dedup();
    assert_eq!(aliases.len(), n, "aliases collide");
    assert!(!aliases.contains(&0));
    // Adding the modem renumbers nothing else; building again gives the same aliases.
    for d in &without.node {
        assert_eq!(m.node_metric(&d.name).map(|x| x.alias), Some(d.alias));
    }
    assert_eq!(
        m.devices[0].metrics[0].alias,
        without.devices[0].metrics[0].alias
    );
    assert_eq!(with_modem(), m);
}

fn by_name<'p>(p: &'p Payload, name: &str) -> &'p Metric {
    p.metrics
        .iter()
        .find(|x| x.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {:?}", p.metrics))
}

fn unit_of(m: &Metric) -> Option<String> {
    let ps = m.properties.as_ref()?;
    let i = ps.keys.iter().position(|k| k == "engUnit")?;
    match &ps.values[i].value {
        Some(property_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[test]
fn nbirth_carries_the_modem_figures_with_nulls_for_the_unknown() {
    let m = with_modem();
    let mut s = Seq::new();
    let b =
        Payload::decode(&nbirth(&m, 1, &state(Some(figures())), 7, &mut s).unwrap()[..]).unwrap();
    assert_eq!(b.metrics.len(), 1 + 4 + 9);
    let table: [(&str, Option<metric::Value>, Option<&str>); 9] = [
        (
            "Modem/State",
            Some(metric::Value::StringValue("registered".into())),
            None,
        ),
        (
            "Modem/Registered",
            Some(metric::Value::BooleanValue(true)),
            None,
        ),
        (
            "Modem/RSRP",
            Some(metric::Value::IntValue(-97i32 as u32)),
            Some("dBm"),
        ),
        ("Modem/RSSI", None, Some("dBm")),
        ("Modem/SINR", Some(metric::Value::IntValue(4)), Some("dB")),
        ("Modem/ECL", Some(metric::Value::IntValue(1)), None),
        (
            "Modem/PDP Active",
            Some(metric::Value::BooleanValue(true)),
            None,
        ),
        (
            "Modem/Resets Today",
            Some(metric::Value::LongValue(2)),
            None,
        ),
        ("Modem/Inits", Some(metric::Value::LongValue(3)), None),
    ];
    for (name, value, unit) in table {
        let got = by_name(&b, name);
        let def = m.node_metric(name).unwrap();
        assert_eq!(got.alias, Some(def.alias), "{name}");
        assert_eq!(got.datatype, Some(def.datatype.code()), "{name}");
        assert_eq!(got.value, value, "{name}");
        assert_eq!(got.is_null, value.is_none().then_some(true), "{name}");
        assert_eq!(unit_of(got).as_deref(), unit, "{name}");
        assert_eq!(got.timestamp, Some(7));
    }
    // Before the supervisor said anything (no figures): every modem metric is null.
    let b = Payload::decode(&nbirth(&m, 1, &state(None), 7, &mut s).unwrap()[..]).unwrap();
    for (name, _, _) in MODEM_METRICS {
        let got = by_name(&b, name);
        assert_eq!(
            (got.value.as_ref(), got.is_null),
            (None, Some(true)),
            "{name}"
        );
    }
}

#[test]
fn ndata_sends_only_the_modem_figures_that_changed() {
    let m = with_modem();
    type Change = fn(&mut ModemFigures);
    type Want = Vec<(&'static str, Option<metric::Value>)>;
    // (what changes, the metrics NDATA carries with their values; None = null)
    let table: Vec<(Change, Want)> = vec![
        (|_| {}, vec![]),
        (
            |f| f.rsrp_dbm = Some(-110),
            vec![("Modem/RSRP", Some(metric::Value::IntValue(-110i32 as u32)))],
        ),
        (|f| f.rsrp_dbm = None, vec![("Modem/RSRP", None)]),
        (
            |f| f.rssi_dbm = Some(-71),
            vec![("Modem/RSSI", Some(metric::Value::IntValue(-71i32 as u32)))],
        ),
        (
            |f| {
                f.state = "searching".into();
                f.registered = false;
            },
            vec![
                ("Modem/Registered", Some(metric::Value::BooleanValue(false))),
                (
                    "Modem/State",
                    Some(metric::Value::StringValue("searching".into())),
                ),
            ],
        ),
        (
            |f| f.pdp_active = Some(false),
            vec![("Modem/PDP Active", Some(metric::Value::BooleanValue(false)))],
        ),
        (
            |f| f.resets_today = 3,
            vec![("Modem/Resets Today", Some(metric::Value::LongValue(3)))],
        ),
        (
            |f| f.ecl = Some(2),
            vec![("Modem/ECL", Some(metric::Value::IntValue(2)))],
        ),
    ];
    for (i, (change, want)) in table.into_iter().enumerate() {
        let before = state(Some(figures()));
        let mut f = figures();
        change(&mut f);
        let after = state(Some(f));
        let mut s = Seq::new();
        let got = ndata(&m, &before, &after, 9, &mut s).unwrap();
        let Some(bytes) = got else {
            assert!(want.is_empty(), "case {i}: no NDATA, want {want:?}");
            continue;
        };
        let p = Payload::decode(&bytes[..]).unwrap();
        let mut got: Vec<(u64, Option<metric::Value>, Option<bool>)> = p
            .metrics
            .iter()
            .map(|x| (x.alias.unwrap(), x.value.clone(), x.is_null))
            .collect();
        got.sort_by_key(|g| g.0);
        let mut want: Vec<(u64, Option<metric::Value>, Option<bool>)> = want
            .into_iter()
            .map(|(n, v)| {
                let null = v.is_none().then_some(true);
                (m.node_metric(n).unwrap().alias, v, null)
            })
            .collect();
        want.sort_by_key(|w| w.0);
        assert_eq!(got, want, "case {i}");
        assert!(p
            .metrics
            .iter()
            .all(|x| x.name.is_none() && x.datatype.is_none()));
    }
}

#[test]
fn figures_from_status_round_signal_and_mark_the_unknown() {
    let status = |state, signal: Option<SignalReport>| ModemStatus {
        state,
        signal,
        pdp_active: None,
        ladder: LadderStatus {
            resets_today: 1,
            power_cycles_today: 2,
            ..LadderStatus::default()
        },
        inits: 4,
        ..ModemStatus::default()
    };
    let sig = SignalReport {
        rsrp_dbm: Some(-97.6),
        rssi_dbm: Some(f32::NAN),
        sinr_db: Some(3.4),
        ecl: Some(2),
        ..SignalReport::default()
    };
    let f = ModemFigures::from_status(&status(ModemState::Registered, Some(sig)));
    assert_eq!(
        f,
        ModemFigures {
            state: "registered".into(),
            registered: true,
            rsrp_dbm: Some(-98),
            rssi_dbm: None,
            sinr_db: Some(3),
            ecl: Some(2),
            pdp_active: None,
            resets_today: 3,
            inits: 4,
        }
    );
    for (st, name, registered) in [
        (ModemState::Starting, "starting", false),
        (ModemState::Searching, "searching", false),
        (ModemState::Denied, "denied", false),
        (ModemState::Unresponsive, "unresponsive", false),
        (ModemState::Recovering, "recovering", false),
        (ModemState::Registered, "registered", true),
    ] {
        let f = ModemFigures::from_status(&status(st, None));
        assert_eq!((f.state.as_str(), f.registered), (name, registered));
        assert_eq!(
            (f.rsrp_dbm, f.rssi_dbm, f.sinr_db, f.ecl),
            (None, None, None, None)
        );
    }
    // A tenth of a dB of jitter is no change (no NDATA for it).
    let a = ModemFigures::from_status(&status(ModemState::Registered, Some(sig)));
    let b = ModemFigures::from_status(&status(
        ModemState::Registered,
        Some(SignalReport {
            rsrp_dbm: Some(-97.9),
            sinr_db: Some(3.1),
            ..sig
        }),
    ));
    assert_eq!(a, b);
}

#[test]
fn the_session_publishes_ndata_when_the_modem_changes() {
    let edge = EdgeNode::new("g", "e").unwrap();
    let (mut s, _) =
        EdgeSession::connect(edge, with_modem(), None, state(Some(figures())), 64_000, 1).unwrap();
    let births = s.births(2).unwrap();
    assert_eq!(births[0].topic, "spBv1.0/g/NBIRTH/e");
    assert!(s.node_state(state(Some(figures())), 3).unwrap().is_none());
    let mut f = figures();
    f.sinr_db = Some(-2);
    let p = s.node_state(state(Some(f)), 4).unwrap().expect("NDATA");
    assert_eq!(p.topic, "spBv1.0/g/NDATA/e");
    let d = Payload::decode(&p.payload[..]).unwrap();
    assert_eq!(d.metrics.len(), 1);
    assert_eq!(
        d.metrics[0].alias,
        Some(with_modem().node_metric(MODEM_SINR).unwrap().alias)
    );
    assert_eq!(
        d.metrics[0].value,
        Some(metric::Value::IntValue(-2i32 as u32))
    );
}

#[test]
fn the_nbirth_size_bound_holds_and_grows_with_the_modem() {
    let without = super::size::nbirth_max_size(&build(&cfg(BASE)).unwrap());
    let m = with_modem();
    let with = super::size::nbirth_max_size(&m);
    assert!(with > without, "{with} <= {without}");
    // A real NBIRTH with wide figures stays within the bound.
    let wide = ModemFigures {
        state: "unresponsive".into(),
        registered: false,
        rsrp_dbm: Some(-140),
        rssi_dbm: Some(-113),
        sinr_db: Some(-20),
        ecl: Some(2),
        pdp_active: Some(false),
        resets_today: 40,
        inits: 1_000_000,
    };
    let real = NodeState {
        transport: "modem-socket".into(),
        reconnects: 1 << 40,
        buffer_depth: 1 << 40,
        modem: Some(wide),
    };
    let mut s = Seq::new();
    let n = nbirth(&m, 255, &real, 253_402_300_799_999, &mut s)
        .unwrap()
        .len();
    assert!(n <= with, "{n} > {with}");
    println!("NBIRTH bound: {without} B without modem, {with} B with");
}
