//! Table tests of the merge rules (`merge`, `point_sets`): overrides keep every key they do
//! not write, `drop` removes base points, config-level point sets follow the same rules, every
//! misuse is an error naming device, base and point, the 16-bit byte-swap warning, where each
//! field came from, and errors in line order.

use std::path::Path;

use super::merge::{BaseKind, OrderFrom, Written};
use super::*;
use crate::model::{DataType, Table, WordOrder};

fn doc(rest: &str) -> String {
    format!(
        "[gateway]\nid = \"gw-1\"\nprofile_dirs = []\n\n[buses.a]\nkind = \"rtu\"\nport = \"/dev/ttyS0\"\n\n{rest}"
    )
}

fn parse(text: &str) -> Result<Loaded, Vec<ConfigError>> {
    parse_str(text, "test.toml", Path::new("/nonexistent"))
}

fn ok(text: &str) -> Loaded {
    match parse(text) {
        Ok(l) => l,
        Err(e) => panic!(
            "expected a valid config, got:\n{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A config-level point set `s`: CDAB by default, one pinned ABCD u16, a computed total.
const SET: &str = r#"[point_sets.s]
order = "CDAB"
[point_sets.s.points.total_int]
table = "holding"
address = 0
type = "u32"
unit = "m3"
[point_sets.s.points.total_frac]
table = "holding"
address = 2
type = "f32"
unit = "m3"
[point_sets.s.points.pressure]
table = "input"
address = 10
type = "i16"
scale = 0.1
unit = "kPa"
[point_sets.s.points.battery]
table = "holding"
address = 4
type = "u16"
order = "ABCD"
unit = "%"
[point_sets.s.computed.total]
terms = { total_int = 1.0, total_frac = 1.0 }
unit = "m3"
"#;

fn dev(base: &str, extra: &str) -> String {
    format!("[devices.d]\nbus = \"a\"\nunit = 1\n{base}\n{extra}")
}

type Want = (Table, u16, DataType, WordOrder, f64, Option<&'static str>);

#[test]
fn overrides_keep_every_key_they_do_not_write() {
    use DataType as T;
    use Table::*;
    use WordOrder as O;
    // (case, document, point, (table, address, type, order, scale, unit))
    let cases: Vec<(&str, String, &str, Want)> = vec![
        (
            "address only: type, DCBA default order, scale and unit stay",
            dev("profile = \"evc-dcba\"", "[devices.d.points.pressure]\naddress = 40\n"),
            "pressure",
            (HoldingRegister, 40, T::F32, O::Dcba, 100.0, Some("kPa")),
        ),
        (
            "address of a 16-bit point: its pinned ABCD and unit stay",
            dev("profile = \"evc-dcba\"", "[devices.d.points.battery]\naddress = 30\n"),
            "battery",
            (HoldingRegister, 30, T::U16, O::Abcd, 1.0, Some("%")),
        ),
        (
            "a replacement that omits order and unit keeps the pinned ABCD and %",
            dev("profile = \"evc-dcba\"", "[devices.d.points.battery]\ntable = \"holding\"\naddress = 30\ntype = \"u16\"\n"),
            "battery",
            (HoldingRegister, 30, T::U16, O::Abcd, 1.0, Some("%")),
        ),
        (
            "pinned order survives the device's order",
            dev("profile = \"evc-dcba\"\norder = \"CDAB\"", "[devices.d.points.battery]\naddress = 30\n"),
            "battery",
            (HoldingRegister, 30, T::U16, O::Abcd, 1.0, Some("%")),
        ),
        (
            "device order reaches an overridden point that pins none",
            dev("profile = \"evc-dcba\"\norder = \"CDAB\"", "[devices.d.points.pressure]\naddress = 40\n"),
            "pressure",
            (HoldingRegister, 40, T::F32, O::Cdab, 100.0, Some("kPa")),
        ),
        (
            "order only",
            dev("profile = \"evc-dcba\"", "[devices.d.points.temperature]\norder = \"ABCD\"\n"),
            "temperature",
            (HoldingRegister, 14, T::F32, O::Abcd, 1.0, Some("degC")),
        ),
        (
            "scale only",
            dev("profile = \"pt-int16\"", "[devices.d.points.pressure]\nscale = 0.01\n"),
            "pressure",
            (HoldingRegister, 4, T::I16, O::Abcd, 0.01, Some("kPa")),
        ),
        (
            "unit only",
            dev("profile = \"pt-int16\"", "[devices.d.points.temperature]\nunit = \"K\"\noffset = 273.15\n"),
            "temperature",
            (HoldingRegister, 8, T::I16, O::Abcd, 0.1, Some("K")),
        ),
        (
            "type replaces the bit it qualified, the address stays",
            dev("profile = \"evc-dcba\"", "[devices.d.points.status_tamper]\ntype = \"u16\"\norder = \"ABCD\"\n"),
            "status_tamper",
            (HoldingRegister, 17, T::U16, O::Abcd, 1.0, None),
        ),
        (
            "a bit number alone keeps the type bit",
            dev("profile = \"evc-dcba\"", "[devices.d.points.status_tamper]\nbit = 9\n"),
            "status_tamper",
            (HoldingRegister, 17, T::BitOfRegister(9), O::Dcba, 1.0, None),
        ),
        (
            "a full entry is a full replacement",
            dev("profile = \"mvt-dpspt\"", "[devices.d.points.temperature]\ntable = \"holding\"\naddress = 410\ntype = \"f32\"\norder = \"ABCD\"\nunit = \"degF\"\n"),
            "temperature",
            (HoldingRegister, 410, T::F32, O::Abcd, 1.0, Some("degF")),
        ),
        (
            "a new name with table, address and type is added",
            dev("profile = \"pt-int16\"", "[devices.d.points.decimals]\ntable = \"holding\"\naddress = 3\ntype = \"u16\"\n"),
            "decimals",
            (HoldingRegister, 3, T::U16, O::Abcd, 1.0, None),
        ),
        (
            "point set: the set's order",
            doc(&format!("{SET}\n{}", dev("point_set = \"s\"", ""))),
            "total_int",
            (HoldingRegister, 0, T::U32, O::Cdab, 1.0, Some("m3")),
        ),
        (
            "point set: address override keeps scale and unit",
            doc(&format!("{SET}\n{}", dev("point_set = \"s\"", "[devices.d.points.pressure]\naddress = 12\n"))),
            "pressure",
            (InputRegister, 12, T::I16, O::Cdab, 0.1, Some("kPa")),
        ),
        (
            "point set: device order replaces the set's for points that pin none",
            doc(&format!("{SET}\n{}", dev("point_set = \"s\"\norder = \"DCBA\"", ""))),
            "total_frac",
            (HoldingRegister, 2, T::F32, O::Dcba, 1.0, Some("m3")),
        ),
        (
            "point set: a pinned order stays",
            doc(&format!("{SET}\n{}", dev("point_set = \"s\"\norder = \"DCBA\"", ""))),
            "battery",
            (HoldingRegister, 4, T::U16, O::Abcd, 1.0, Some("%")),
        ),
    ];
    for (case, text, point, want) in cases {
        let text = if text.starts_with("[gateway]") {
            text
        } else {
            doc(&text)
        };
        let l = ok(&text);
        let d = &l.config.devices[0];
        let p = d
            .points
            .iter()
            .find(|p| p.name == point)
            .unwrap_or_else(|| panic!("{case}: no point {point}"));
        let got = (
            p.table,
            p.address,
            p.data_type,
            p.order,
            p.scale,
            p.unit.as_deref(),
        );
        assert_eq!(got, want, "{case}");
        assert_eq!(
            d.points.iter().filter(|p| p.name == point).count(),
            1,
            "{case}: one point of that name"
        );
    }
}

#[test]
fn drop_removes_points_and_computed_points() {
    // turbine-bcd: 14 read points, the totals computed from BCD hi/lo words.
    let l = ok(&doc(&dev(
        "profile = \"turbine-bcd\"",
        "drop = [\"temperature\", \"volume_measured\", \"volume_measured_hi\", \"volume_measured_lo\"]\n",
    )));
    let d = &l.config.devices[0];
    let names: Vec<&str> = d.points.iter().map(|p| p.name.as_str()).collect();
    assert!(!names.contains(&"temperature"), "{names:?}");
    assert!(!names.contains(&"volume_measured_hi"), "{names:?}");
    assert!(!names.contains(&"volume_measured_lo"), "{names:?}");
    assert!(names.contains(&"pressure"), "{names:?}");
    assert!(names.contains(&"volume_standard_hi"), "{names:?}");
    assert_eq!(d.points.len(), 14 - 3);
    let computed: Vec<&str> = d.computed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(computed, vec!["volume_standard"]);
    let o = &l.origins["d"];
    assert_eq!(
        o.dropped,
        vec![
            "temperature",
            "volume_measured",
            "volume_measured_hi",
            "volume_measured_lo"
        ]
    );
    // evc-dcba reads its totals as INTREAL points: dropping one is dropping a read point.
    let l = ok(&doc(&dev(
        "profile = \"evc-dcba\"",
        "drop = [\"volume_measured\", \"volume_measured_int\", \"volume_measured_frac\"]\n",
    )));
    let d = &l.config.devices[0];
    assert!(d
        .points
        .iter()
        .all(|p| !p.name.starts_with("volume_measured")));
    assert_eq!(d.points.len(), 16 - 3);
    assert!(d.computed.is_empty());
    // The same with a point set.
    let l = ok(&doc(&format!(
        "{SET}\n{}",
        dev("point_set = \"s\"", "drop = [\"pressure\"]\n")
    )));
    assert!(l.config.devices[0]
        .points
        .iter()
        .all(|p| p.name != "pressure"));
}

#[test]
fn misuse_is_an_error_naming_device_base_and_point() {
    // (case, document, key path, message fragment)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "drop of an unknown point",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "drop = [\"pressure\", \"temp2\"]\n",
            )),
            "devices.d.drop[1]",
            "device `d`: profile `evc-dcba` has no point `temp2` to drop",
        ),
        (
            "override of an unknown point (a typo)",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "[devices.d.points.presure]\naddress = 40\n",
            )),
            "devices.d.points.presure",
            "device `d`: profile `evc-dcba` has no point `presure` to override",
        ),
        (
            "override of an unknown computed point",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "[devices.d.computed.volume]\nunit = \"m3\"\n",
            )),
            "devices.d.computed.volume",
            "has no computed point `volume` to override",
        ),
        (
            "a computed point overridden as a read point",
            doc(&dev(
                "profile = \"turbine-bcd\"",
                "[devices.d.points.volume_standard]\naddress = 3\n",
            )),
            "devices.d.points.volume_standard",
            "device `d`: `volume_standard` is a computed point of profile `turbine-bcd`",
        ),
        (
            "a read point overridden as a computed point",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "[devices.d.computed.volume_standard]\nunit = \"m3\"\n",
            )),
            "devices.d.computed.volume_standard",
            "device `d`: profile `evc-dcba` has no computed point `volume_standard` to override",
        ),
        (
            "dropped and overridden",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "drop = [\"pressure\"]\n[devices.d.points.pressure]\naddress = 40\n",
            )),
            "devices.d.points.pressure",
            "both dropped and overridden",
        ),
        (
            "dropping what a computed point reads",
            doc(&dev(
                "profile = \"turbine-bcd\"",
                "drop = [\"volume_standard_lo\"]\n",
            )),
            "devices.d.drop",
            "device `d`: computed point `volume_standard` reads `volume_standard_lo`",
        ),
        (
            "drop without a base",
            doc(&dev(
                "drop = [\"x\"]",
                "[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n",
            )),
            "devices.d.drop",
            "no profile or point_set",
        ),
        (
            "a bad value in an override",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "[devices.d.points.pressure]\naddress = -1\n",
            )),
            "devices.d.points.pressure.address",
            "out of range",
        ),
        (
            "an unknown key in an override",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "[devices.d.points.pressure]\nadress = 40\n",
            )),
            "devices.d.points.pressure.adress",
            "unknown key",
        ),
        (
            "an override that makes an inherited key wrong",
            doc(&dev(
                "profile = \"evc-dcba\"",
                "[devices.d.points.pressure]\ntype = \"bit\"\nbit = 0\n",
            )),
            "devices.d.points.pressure.scale",
            "scale applies only to numeric types",
        ),
        (
            "unknown point set",
            doc(&format!("{SET}\n{}", dev("point_set = \"t\"", ""))),
            "devices.d.point_set",
            "no point set named `t` (point sets: s)",
        ),
        (
            "profile and point set",
            doc(&format!(
                "{SET}\n{}",
                dev("point_set = \"s\"\nprofile = \"pt-int16\"", "")
            )),
            "devices.d.point_set",
            "either `profile` or `point_set`",
        ),
        (
            "a broken point set is reported where it is written",
            doc(&format!(
                "{}\n{}",
                SET.replace("type = \"f32\"", "type = \"f33\""),
                dev("point_set = \"s\"", "")
            )),
            "point_sets.s.points.total_frac.type",
            "unknown type",
        ),
        (
            "and the device using it says so once",
            doc(&format!(
                "{}\n{}",
                SET.replace("type = \"f32\"", "type = \"f33\""),
                dev("point_set = \"s\"", "")
            )),
            "devices.d.point_set",
            "point set `s` is invalid",
        ),
        (
            "an empty point set",
            doc(&format!(
                "[point_sets.e]\norder = \"ABCD\"\n\n{}",
                dev("point_set = \"e\"", "")
            )),
            "point_sets.e",
            "has no points",
        ),
        (
            "a point set's computed term names no point",
            doc(&format!(
                "{}\n{}",
                SET.replace("total_frac = 1.0", "total_fraction = 1.0"),
                dev("point_set = \"s\"", "")
            )),
            "point_sets.s.computed.total.terms.total_fraction",
            "no point named",
        ),
        (
            "an unknown key in a point set",
            doc(&format!(
                "{}\n{}",
                SET.replacen(
                    "order = \"CDAB\"\n",
                    "order = \"CDAB\"\nvendor = \"x\"\n",
                    1
                ),
                dev("point_set = \"s\"", "")
            )),
            "point_sets.s.vendor",
            "unknown key",
        ),
    ];
    for (case, text, path, frag) in cases {
        let errs = match parse(&text) {
            Ok(_) => panic!("{case}: expected an error"),
            Err(e) => e,
        };
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(frag) && e.line.is_some()),
            "{case}: want {path}: {frag}, got {:#?}",
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_16_bit_value_with_a_byte_swapping_order_is_warned_about() {
    let inline_u16 = "[devices.d.points.level]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n";
    // (case, document, Some((path, fragments)) or None for no warning)
    type Want<'a> = Option<(&'a str, Vec<&'a str>)>;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "the shipped evc-dcba as it is: 16-bit values pin ABCD, bits ignore the order",
            doc(&dev("profile = \"evc-dcba\"", "")),
            None,
        ),
        (
            "an override of a pinned 16-bit point keeps ABCD: no warning",
            doc(&dev("profile = \"evc-dcba\"", "[devices.d.points.battery]\naddress = 30\n")),
            None,
        ),
        (
            "inherited from the device's order",
            doc(&dev("order = \"DCBA\"", inline_u16)),
            Some(("devices.d.order", vec!["u16 point `level`", "order DCBA", "inherited from the device's `order`", "swaps the two bytes"])),
        ),
        (
            "inherited from the profile's default order",
            doc(&dev("profile = \"evc-dcba\"", "[devices.d.points.status_tamper]\ntype = \"u16\"\n")),
            Some(("devices.d.points.status_tamper", vec!["u16 point `status_tamper`", "order DCBA", "default order of profile `evc-dcba`"])),
        ),
        (
            "set on the point",
            doc(&dev("", &format!("{inline_u16}order = \"BADC\"\n"))),
            Some(("devices.d.points.level.order", vec!["order BADC", "set on the point"])),
        ),
        (
            "set on an override",
            doc(&dev("profile = \"pt-int16\"", "[devices.d.points.pressure]\norder = \"DCBA\"\n")),
            Some(("devices.d.points.pressure.order", vec!["i16 point `pressure`", "order DCBA"])),
        ),
        (
            "a word swap alone changes nothing in one register",
            doc(&dev("order = \"CDAB\"", inline_u16)),
            None,
        ),
        (
            "a point set's order",
            doc(&format!("[point_sets.b]\norder = \"BADC\"\n[point_sets.b.points.level]\ntable = \"holding\"\naddress = 0\ntype = \"bcd16\"\n\n{}", dev("point_set = \"b\"", ""))),
            Some(("devices.d.points.level", vec!["bcd16 point `level`", "default order of point set `b`"])),
        ),
    ];
    for (case, text, want) in cases {
        let l = ok(&text);
        let swaps: Vec<&ConfigWarning> = l
            .warnings
            .iter()
            .filter(|w| w.message.contains("swaps the two bytes"))
            .collect();
        match want {
            None => assert!(swaps.is_empty(), "{case}: {swaps:#?}"),
            Some((path, frags)) => {
                assert_eq!(swaps.len(), 1, "{case}: {swaps:#?}");
                let w = swaps[0];
                assert_eq!(w.path, path, "{case}");
                assert!(w.line.is_some(), "{case}: placed");
                for f in frags {
                    assert!(w.message.contains(f), "{case}: want {f:?} in {}", w.message);
                }
            }
        }
    }
}

#[test]
fn origins_say_where_each_field_came_from() {
    let l = ok(&doc(&dev(
        "profile = \"evc-dcba\"\norder = \"CDAB\"",
        "[devices.d.points.pressure]\naddress = 40\nunit = \"bar\"\nscale = 1\n[devices.d.points.extra]\ntable = \"input\"\naddress = 100\ntype = \"f32\"\n",
    )));
    let o = &l.origins["d"];
    assert_eq!(o.base, Some(BaseKind::Profile("evc-dcba".into())));
    let p = |n: &str| o.points.iter().find(|p| p.name == n).unwrap();
    let pressure = p("pressure");
    assert_eq!(pressure.written("address"), Some(Written::Override));
    assert_eq!(pressure.written("unit"), Some(Written::Override));
    assert_eq!(pressure.written("type"), Some(Written::Base));
    assert_eq!(pressure.written("offset"), None);
    assert_eq!(pressure.order_from, Some(OrderFrom::Device));
    assert_eq!(
        p("battery").order_from,
        Some(OrderFrom::Point(Written::Base))
    );
    let extra = p("extra");
    assert_eq!(extra.base, None);
    assert_eq!(extra.written("table"), Some(Written::Inline));
    // evc-dcba's totals are read points (INTREAL) now, not computed ones.
    let total = o
        .points
        .iter()
        .find(|p| p.name == "volume_standard")
        .unwrap();
    assert!(!total.computed);
    assert_eq!(total.written("type"), Some(Written::Base));
    // And the --show text says it.
    let shown = show_device(&l, "d").unwrap().join("\n");
    assert!(
        shown.contains("profile evc-dcba; override: address, scale, unit; order: device"),
        "{shown}"
    );
    assert!(shown.contains("extra"), "{shown}");
    // 16 profile points + extra; the four integer/fraction halves are `publish = false`.
    assert!(
        shown.ends_with("\ndevice d: 17 points (17 read, 0 computed), 13 published"),
        "{shown}"
    );
    assert!(show_device(&l, "nope").is_none());

    // Computed points: turbine-bcd's totals, one with its unit overridden.
    let l = ok(&doc(&dev(
        "profile = \"turbine-bcd\"",
        "[devices.d.computed.volume_standard]\nunit = \"m3\"\n",
    )));
    let o = &l.origins["d"];
    let c = |n: &str| o.points.iter().find(|p| p.name == n && p.computed).unwrap();
    let standard = c("volume_standard");
    assert_eq!(standard.base, Some(BaseKind::Profile("turbine-bcd".into())));
    assert_eq!(standard.written("terms"), Some(Written::Base));
    assert_eq!(standard.written("unit"), Some(Written::Override));
    let measured = c("volume_measured");
    assert_eq!(measured.written("terms"), Some(Written::Base));
    assert_eq!(measured.written("unit"), Some(Written::Base));
    let shown = show_device(&l, "d").unwrap().join("\n");
    assert!(
        shown.contains("  computed volume_standard = volume_standard_hi x 10000 + volume_standard_lo m3 (publish yes; from profile turbine-bcd; override: unit)"),
        "{shown}"
    );
    assert!(
        shown.contains("  computed volume_measured = volume_measured_hi x 10000 + volume_measured_lo m3 (publish yes; from profile turbine-bcd)"),
        "{shown}"
    );
    assert!(
        shown.ends_with("\ndevice d: 16 points (14 read, 2 computed), 16 published"),
        "{shown}"
    );
}

#[test]
fn errors_and_warnings_come_in_line_order() {
    // [store] is validated after the devices, the point set before them, and a profile's
    // errors come from another file: the list is still sorted by file, line, column.
    let text = doc(
        "[store]\nmax_bytes = 10\n\n[devices.d]\nbus = \"nope\"\nunit = 1\nprofile = \"pt-int16\"\ndrop = [\"x\"]\n\n[point_sets.z]\norder = \"XYZW\"\n[point_sets.z.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n\n[gateway2]\n",
    );
    let errs = parse(&text).expect_err("invalid");
    assert!(errs.len() >= 4, "{errs:#?}");
    let lines: Vec<usize> = errs.iter().map(|e| e.line.unwrap_or(usize::MAX)).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{errs:#?}");
    // Warnings too.
    let text = doc("[point_sets.unused]\n[point_sets.unused.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n\n[devices.d]\nbus = \"a\"\nunit = 1\norder = \"DCBA\"\nprofile = \"pt-int16\"\n[devices.d.points.x]\ntable = \"holding\"\naddress = 9\ntype = \"u16\"\n[buses.b]\nkind = \"rtu\"\nport = \"/dev/ttyS1\"\n");
    let w = ok(&text).warnings;
    assert!(w.len() >= 3, "{w:#?}");
    let lines: Vec<usize> = w.iter().map(|w| w.line.unwrap_or(usize::MAX)).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{w:#?}");
    assert!(w
        .iter()
        .any(|w| w.path == "point_sets.unused" && w.message.contains("used by no device")));
}

#[test]
fn overrides_merge_onto_pushed_profiles_too() {
    let pushed = "[profile]\nid = \"site\"\nname = \"n\"\nfollows = \"f\"\ndescription = \"d\"\ndefault_order = \"DCBA\"\n[points.level]\ntable = \"input\"\naddress = 3\ntype = \"u16\"\norder = \"ABCD\"\nunit = \"%\"\n[points.flow]\ntable = \"input\"\naddress = 4\ntype = \"f32\"\nunit = \"m3/h\"\n";
    let text = doc(&dev(
        "profile = \"site\"\ndrop = [\"flow\"]",
        "[devices.d.points.level]\naddress = 7\n",
    ));
    let l = parse_with_profiles(
        &text,
        "push.toml",
        Path::new("/nonexistent"),
        &[("site".to_string(), pushed.to_string())],
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let d = &l.config.devices[0];
    assert_eq!(d.points.len(), 1);
    let p = &d.points[0];
    assert_eq!(
        (p.name.as_str(), p.address, p.order, p.unit.as_deref()),
        ("level", 7, WordOrder::Abcd, Some("%"))
    );
    assert!(l.warnings.iter().all(|w| !w.message.contains("swaps")));
}

#[test]
fn a_computed_override_keeps_the_terms_it_does_not_write() {
    let l = ok(&doc(&dev(
        "profile = \"turbine-bcd\"",
        "[devices.d.computed.volume_standard]\nunit = \"m3\"\n[devices.d.computed.volume_measured]\nterms = { volume_measured_lo = 1.0 }\n",
    )));
    let d = &l.config.devices[0];
    let c = |n: &str| d.computed.iter().find(|c| c.name == n).unwrap();
    assert_eq!(c("volume_standard").unit.as_deref(), Some("m3"));
    assert_eq!(
        c("volume_standard").terms,
        vec![
            ("volume_standard_hi".to_string(), 10000.0),
            ("volume_standard_lo".to_string(), 1.0)
        ]
    );
    assert_eq!(
        c("volume_measured").terms,
        vec![("volume_measured_lo".to_string(), 1.0)]
    );
    assert_eq!(c("volume_measured").unit.as_deref(), Some("m3"));
    let o = l.origins["d"]
        .points
        .iter()
        .find(|p| p.name == "volume_standard" && p.computed)
        .unwrap();
    assert_eq!(o.written("unit"), Some(Written::Override));
    assert_eq!(o.written("terms"), Some(Written::Base));
}

#[test]
fn a_missing_base_is_one_error_not_a_pile() {
    let errs = parse(&doc(&dev(
        "profile = \"evc-dcbx\"",
        "drop = [\"temperature\"]\n[devices.d.points.pressure]\naddress = 40\n",
    )))
    .expect_err("invalid");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, "devices.d.profile");
    let errs = parse(&doc(&dev(
        "point_set = \"nope\"",
        "drop = [\"temperature\"]\n[devices.d.points.pressure]\naddress = 40\n",
    )))
    .expect_err("invalid");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, "devices.d.point_set");
}
