//! Profiles: limits and device-order overrides, computed points, the shipped profiles and the
//! example config loading clean, profile files in `profile_dirs`, `<state_dir>/profiles` and
//! profiles pushed in memory (every one validated, errors placed).

use super::*;

#[test]
fn profile_limits_and_device_order_override() {
    let text = doc(r#"
[devices.evc_plain]
bus = "a"
unit = 1
profile = "evc-dcba"

[devices.evc_cdab]
bus = "a"
unit = 2
profile = "evc-dcba"
order = "CDAB"
max_registers = 20

[devices.mvt_default]
bus = "a"
unit = 3
profile = "mvt-dpspt"

[devices.mvt_abcd]
bus = "a"
unit = 4
profile = "mvt-dpspt"
order = "ABCD"
# an inline point replaces the profile point of the same name and adds new ones
[devices.mvt_abcd.points.temperature]
table = "input"
address = 410
type = "f32"
unit = "degC"
[devices.mvt_abcd.points.tag]
table = "holding"
address = 0
type = "string"
length = 8

[devices.tm]
bus = "a"
unit = 5
profile = "turbine-bcd"
"#);
    let c = ok(&text).config;
    let dev = |n: &str| c.devices.iter().find(|d| d.name == n).unwrap();
    let order = |d: &DeviceConfig, p: &str| d.points.iter().find(|x| x.name == p).unwrap().order;

    let plain = dev("evc_plain");
    assert_eq!(plain.profile.as_deref(), Some("evc-dcba"));
    assert_eq!(order(plain, "volume_standard_int"), WordOrder::Dcba);
    assert_eq!(order(plain, "status"), WordOrder::Abcd);
    assert_eq!(plain.max_registers, 64, "profile's max_registers");

    let cdab = dev("evc_cdab");
    assert_eq!(order(cdab, "volume_standard_int"), WordOrder::Cdab);
    assert_eq!(order(cdab, "pressure"), WordOrder::Cdab);
    assert_eq!(
        order(cdab, "battery"),
        WordOrder::Abcd,
        "points pinning their own order keep it"
    );
    assert_eq!(
        cdab.max_registers, 20,
        "device limit overrides the profile's"
    );

    assert_eq!(order(dev("mvt_default"), "diff_pressure"), WordOrder::Cdab);
    let mvt = dev("mvt_abcd");
    assert_eq!(order(mvt, "diff_pressure"), WordOrder::Abcd);
    let temp = mvt.points.iter().find(|p| p.name == "temperature").unwrap();
    assert_eq!(temp.address, 410, "inline point replaced the profile's");
    assert_eq!(
        mvt.points
            .iter()
            .filter(|p| p.name == "temperature")
            .count(),
        1
    );
    assert!(mvt
        .points
        .iter()
        .any(|p| p.name == "tag" && p.data_type == DataType::String(8)));

    let tm = dev("tm");
    assert_eq!((tm.max_registers, tm.max_gap), (16, 4));
    let vs = tm
        .computed
        .iter()
        .find(|c| c.name == "volume_standard")
        .unwrap();
    assert_eq!(
        vs.terms,
        vec![
            ("volume_standard_hi".to_string(), 10000.0),
            ("volume_standard_lo".to_string(), 1.0)
        ]
    );
}

#[test]
fn computed_points_resolve() {
    let text = doc(&format!(
        "{DEV}{PT}[devices.d.points.q]\ntable = \"holding\"\naddress = 1\ntype = \"f32\"\n[devices.d.computed.total]\nterms = {{ p = 1, q = 0.5 }}\nunit = \"m3\"\n"
    ));
    let c = ok(&text).config;
    let comp = &c.devices[0].computed[0];
    assert_eq!(comp.name, "total");
    assert_eq!(
        comp.terms,
        vec![("p".to_string(), 1.0), ("q".to_string(), 0.5)]
    );
    assert_eq!(comp.unit.as_deref(), Some("m3"));
}

const CANONICAL: &[(&str, Option<&str>)] = &[
    ("flow_measured", Some("m3/h")),
    ("flow_standard", Some("Sm3/h")),
    ("volume_measured", Some("m3")),
    ("volume_standard", Some("Sm3")),
    ("pressure", Some("kPa")),
    ("temperature", Some("degC")),
    ("diff_pressure", Some("kPa")),
    ("battery", Some("%")),
    ("status", None),
    ("status_low_battery", None),
    ("status_reverse_flow", None),
    ("status_tamper", None),
    ("status_sensor_fault", None),
    ("status_valve_fault", None),
];

fn canonical_unit(name: &str) -> Option<Option<&'static str>> {
    let base = ["_int", "_frac", "_hi", "_lo", "_decimals"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    CANONICAL.iter().find(|(n, _)| *n == base).map(|(_, u)| *u)
}

#[test]
fn builtin_profiles_load_clean_and_use_the_canonical_model() {
    let ids: Vec<&str> = profiles::builtin().iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        [
            "evc-dcba",
            "mvt-dpspt",
            "turbine-bcd",
            "turbine-bcd48",
            "pt-float",
            "pt-int16"
        ]
    );
    for (id, _) in profiles::builtin() {
        let p = profiles::resolve_profile(id, &[]).unwrap_or_else(|e| {
            panic!(
                "{id}: {}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert_eq!(p.id, *id);
        assert!(!p.follows.is_empty() && !p.name.is_empty() && !p.description.is_empty());
        for pt in &p.points {
            let unit = canonical_unit(&pt.name)
                .unwrap_or_else(|| panic!("{id}: {} is not a canonical point name", pt.name));
            if !pt.publish
                || pt.name.ends_with("_hi")
                || pt.name.ends_with("_lo")
                || pt.name.ends_with("_int")
                || pt.name.ends_with("_frac")
            {
                continue;
            }
            assert_eq!(pt.unit.as_deref(), unit, "{id}: unit of {}", pt.name);
            if pt.name.starts_with("status_") {
                assert!(
                    matches!(pt.data_type, DataType::BitOfRegister(_)),
                    "{id}: {}",
                    pt.name
                );
            }
        }
        for c in &p.computed {
            assert_eq!(
                c.unit.as_deref(),
                canonical_unit(&c.name).flatten(),
                "{id}: {}",
                c.name
            );
        }
        // Each profile plans within its own limits.
        let limits = crate::modbus::planner::Limits {
            max_registers: p.max_registers.unwrap_or(125),
            max_gap: p.max_gap.unwrap_or(10),
        };
        assert!(
            crate::modbus::planner::plan(&p.points, limits).is_ok(),
            "{id}"
        );
    }
    // The model-specific shapes the brief asks for.
    let evc = profiles::resolve_profile("evc-dcba", &[]).unwrap();
    assert_eq!(evc.default_order, WordOrder::Dcba);
    let int = evc
        .points
        .iter()
        .find(|p| p.name == "volume_standard_int")
        .unwrap();
    let frac = evc
        .points
        .iter()
        .find(|p| p.name == "volume_standard_frac")
        .unwrap();
    assert_eq!(
        (int.data_type, frac.data_type),
        (DataType::U32, DataType::F32)
    );
    let mvt = profiles::resolve_profile("mvt-dpspt", &[]).unwrap();
    assert_eq!(mvt.default_order, WordOrder::Cdab);
    let tm = profiles::resolve_profile("turbine-bcd", &[]).unwrap();
    assert_eq!(tm.max_registers, Some(16));
    assert!(tm
        .points
        .iter()
        .any(|p| p.name == "volume_measured_hi" && p.data_type == DataType::Bcd16));
    let pt16 = profiles::resolve_profile("pt-int16", &[]).unwrap();
    let pr = pt16.points.iter().find(|p| p.name == "pressure").unwrap();
    assert_eq!(
        (pr.data_type, pr.scale, pr.scale_from.as_deref()),
        (DataType::I16, 1.0, Some("pressure_decimals"))
    );
}

#[test]
fn example_config_loads_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gasdtu.toml");
    let loaded = load_file(&path).unwrap_or_else(|e| match e {
        LoadError::Invalid { errors, .. } => panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
        e => panic!("{e}"),
    });
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.buses.len(), 2);
    assert_eq!(c.devices.len(), 4);
    let on_rtu = c.devices.iter().filter(|d| d.bus == "rs485a").count();
    assert_eq!(on_rtu, 3);
}

#[test]
fn profile_files_in_profile_dirs_come_first_and_their_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let profiles_dir = dir.path().join("profiles");
    std::fs::create_dir(&profiles_dir).unwrap();
    // A local copy of pt-float with a different address shadows the built-in one.
    let local = profiles::builtin()
        .iter()
        .find(|(id, _)| *id == "pt-float")
        .unwrap()
        .1
        .replace("address = 2\n", "address = 40\n");
    std::fs::write(profiles_dir.join("pt-float.toml"), local).unwrap();
    // A broken profile.
    std::fs::write(
        profiles_dir.join("broken.toml"),
        "[profile]\nid = \"broken\"\nname = \"b\"\nfollows = \"f\"\ndescription = \"d\"\ndefault_order = \"ABCD\"\n[points.pressure]\ntable = \"input\"\naddress = 0\ntype = \"f32\"\nwritable = true\n",
    )
    .unwrap();
    let text = r#"[gateway]
id = "gw"
profile_dirs = ["profiles"]
[buses.a]
kind = "rtu"
port = "/dev/ttyS0"
[devices.d]
bus = "a"
unit = 1
profile = "pt-float"
"#;
    // Relative profile_dirs resolve against base_dir.
    let l = parse_str(text, "gw.toml", dir.path()).unwrap();
    assert_eq!(l.config.gateway.profile_dirs, vec![profiles_dir.clone()]);
    let p = l.config.devices[0]
        .points
        .iter()
        .find(|p| p.name == "pressure")
        .unwrap();
    assert_eq!(p.address, 40);

    let broken = format!("{text}[devices.e]\nbus = \"a\"\nunit = 2\nprofile = \"broken\"\n[devices.f]\nbus = \"a\"\nunit = 3\nprofile = \"broken\"\n");
    let errors = parse_str(&broken, "gw.toml", dir.path()).unwrap_err();
    let file = profiles_dir.join("broken.toml").display().to_string();
    let in_profile: Vec<&ConfigError> = errors.iter().filter(|e| e.origin == file).collect();
    assert_eq!(in_profile.len(), 1, "{errors:#?}");
    assert_eq!(in_profile[0].path, "points.pressure.writable");
    assert_eq!(in_profile[0].line, Some(11));
    assert!(errors
        .iter()
        .any(|e| e.path == "devices.e.profile" && e.origin == "gw.toml"));
    assert!(errors
        .iter()
        .any(|e| e.path == "devices.f.profile" && e.origin == "gw.toml"));

    // The same errors through the public resolver.
    let errs =
        profiles::resolve_profile("broken", std::slice::from_ref(&profiles_dir)).unwrap_err();
    assert_eq!(errs[0].origin, file);
    assert!(profiles::resolve_profile("../etc/passwd", &[profiles_dir]).is_err());
}

#[test]
fn profile_documents_are_validated_like_configs() {
    let cases = [
        ("[profile]\nid = \"x\"\n", "profile.name", "missing required key `name`"),
        ("[profile]\nid = \"x\"\nname = \"n\"\nfollows = \"f\"\ndescription = \"d\"\ndefault_order = \"ABCD\"\n", "points", "at least one"),
        ("[profile]\nid = \"x\"\nname = \"n\"\nfollows = \"f\"\ndescription = \"d\"\ndefault_order = \"ABDC\"\n[points.p]\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n", "profile.default_order", "unknown order"),
        ("[profile]\nid = \"x\"\nname = \"n\"\nfollows = \"f\"\ndescription = \"d\"\ndefault_order = \"ABCD\"\nvendor = \"v\"\n[points.p]\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n", "profile.vendor", "unknown key"),
        ("[profile]\nid = \"x\"\nname = \"n\"\nfollows = \"f\"\ndescription = \"d\"\ndefault_order = \"ABCD\"\n[points.p]\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n[computed.c]\nterms = { q = 1.0 }\n", "computed.c.terms.q", "no point named"),
    ];
    for (text, path, fragment) in cases {
        let errors = profiles::parse_profile(text, "x.toml").unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(fragment) && e.origin == "x.toml"),
            "{path}: {errors:#?}"
        );
    }
}

/// A pt-float copy named `id` with its pressure register at `address`.
fn pt_float_as(id: &str, address: u16) -> String {
    profiles::builtin()
        .iter()
        .find(|(i, _)| *i == "pt-float")
        .unwrap()
        .1
        .replace("id = \"pt-float\"", &format!("id = \"{id}\""))
        .replace("address = 2\n", &format!("address = {address}\n"))
}

fn pressure_address(l: &Loaded, device: &str) -> u16 {
    let d = l.config.devices.iter().find(|d| d.name == device).unwrap();
    d.points
        .iter()
        .find(|p| p.name == "pressure")
        .unwrap()
        .address
}

/// `<state_dir>/profiles` (pushed profiles) is searched before `profile_dirs` and the
/// built-ins; profiles given in memory shadow both.
#[test]
fn state_dir_profiles_come_first_and_pushed_profiles_shadow_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(state.join("profiles")).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("pt-float.toml"), pt_float_as("pt-float", 30)).unwrap();
    std::fs::write(etc.join("meter.toml"), pt_float_as("meter", 31)).unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\nstate_dir = \"{}\"\nprofile_dirs = [\"{}\"]\n[buses.t]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\n[devices.a]\nbus = \"t\"\nunit = 1\nprofile = \"pt-float\"\n[devices.b]\nbus = \"t\"\nunit = 2\nprofile = \"meter\"\n",
        state.display(),
        etc.display()
    );
    let l = parse_str(&text, "gw.toml", dir.path()).unwrap();
    assert_eq!(
        (pressure_address(&l, "a"), pressure_address(&l, "b")),
        (30, 31)
    );
    // Installed by a push: found before profile_dirs.
    std::fs::write(
        state.join("profiles/pt-float.toml"),
        pt_float_as("pt-float", 40),
    )
    .unwrap();
    let l = parse_str(&text, "gw.toml", dir.path()).unwrap();
    assert_eq!(
        (pressure_address(&l, "a"), pressure_address(&l, "b")),
        (40, 31)
    );
    // Given in memory: shadows every file; `gateway.profile_dirs` stays as configured.
    let extra = vec![("meter".to_string(), pt_float_as("meter", 50))];
    let l = parse_with_profiles(&text, "gw.toml", dir.path(), &extra).unwrap();
    assert_eq!(
        (pressure_address(&l, "a"), pressure_address(&l, "b")),
        (40, 50)
    );
    assert_eq!(l.config.gateway.profile_dirs, vec![etc.clone()]);
    // Not found: the message lists the state directory first.
    let missing = text.replace("profile = \"meter\"", "profile = \"nope\"");
    let errs = parse_str(&missing, "gw.toml", dir.path()).unwrap_err();
    let want = format!(
        "no nope.toml in [{}, {}]",
        state.join("profiles").display(),
        etc.display()
    );
    assert!(errs.iter().any(|e| e.message.contains(&want)), "{errs:#?}");
}

/// Every pushed profile is validated, referenced or not; errors name `push:<name>.toml`, and
/// a device naming a broken one is told it is unavailable (never a file of that name).
#[test]
fn pushed_profiles_are_all_validated_with_placed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = doc("[devices.d]\nbus = \"t\"\nunit = 1\nprofile = \"pt-float\"\n");
    let broken = pt_float_as("pt-float", 2).replace("type = \"f32\"", "type = \"f33\"");
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    // (extra, origin, key path, message fragment)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Vec<(String, String)>, &str, &str, &str)> = vec![
        (
            vec![s("pt-float", &broken)],
            "push:pt-float.toml",
            "points.pressure.type",
            "f33",
        ),
        (vec![s("unused", "[profile\n")], "push:unused.toml", "", ""),
        (
            vec![s("other", &pt_float_as("pt-float", 2))],
            "push:other.toml",
            "profile.id",
            "does not match",
        ),
        (
            vec![s("../x", "")],
            "push:../x.toml",
            "",
            "invalid pushed profile name",
        ),
        (
            vec![
                s("pt-int16", &pt_float_as("pt-int16", 2)),
                s("pt-int16", &pt_float_as("pt-int16", 2)),
            ],
            "push:pt-int16.toml",
            "",
            "pushed twice",
        ),
        (
            (0..33).map(|n| (format!("p{n}"), String::new())).collect(),
            "push",
            "",
            "at most 32",
        ),
    ];
    for (extra, origin, path, frag) in cases {
        let errs = parse_with_profiles(&text, "test.toml", dir.path(), &extra).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.origin == origin && e.path == path && e.message.contains(frag)),
            "{origin} {path} {frag}: {errs:#?}"
        );
    }
    // A broken pushed profile named by a device: the device's key says so.
    let errs =
        parse_with_profiles(&text, "test.toml", dir.path(), &[s("pt-float", &broken)]).unwrap_err();
    assert!(errs.iter().any(|e| e.path == "devices.d.profile"
        && e.origin == "test.toml"
        && e.message.contains("unavailable")));
    // Valid extras that nothing uses are fine.
    parse_with_profiles(
        &text,
        "test.toml",
        dir.path(),
        &[s("spare", &pt_float_as("spare", 9))],
    )
    .unwrap();
}
