//! Table tests of the point keys for the types of issue 12: `bcd48` and `intreal`,
//! `decimals = N` (implied decimals), `scale_from = "<point>"` (decimals read from the device)
//! and `publish = false` (local points), and the shipped profiles that use them.

use std::path::Path;

use super::*;
use crate::model::{DataType, Table};

fn doc(points: &str) -> String {
    format!(
        "[gateway]\nid = \"gw-1\"\nprofile_dirs = []\n\n[buses.a]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\n\n[devices.d]\nbus = \"a\"\nunit = 1\n{points}"
    )
}

fn parse(text: &str) -> Result<Loaded, Vec<ConfigError>> {
    parse_str(text, "test.toml", Path::new("/nonexistent"))
}

fn point(l: &Loaded, name: &str) -> crate::model::PointSpec {
    l.config.devices[0]
        .points
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no point {name}"))
        .clone()
}

const DEC: &str =
    "[devices.d.points.dp]\ntable = \"holding\"\naddress = 3\ntype = \"u16\"\npublish = false\n";

#[test]
fn new_keys_load() {
    let l = parse(&doc(&format!(
        "[devices.d.points.total]\ntable = \"holding\"\naddress = 10\ntype = \"bcd48\"\ndecimals = 4\n\
         [devices.d.points.vb]\ntable = \"input\"\naddress = 20\ntype = \"intreal\"\norder = \"DCBA\"\n\
         [devices.d.points.p]\ntable = \"holding\"\naddress = 4\ntype = \"i16\"\nscale_from = \"dp\"\n\
         [devices.d.points.bar]\ntable = \"holding\"\naddress = 5\ntype = \"i16\"\nscale_from = \"dp\"\nscale = 100.0\n\
         [devices.d.points.whole]\ntable = \"holding\"\naddress = 6\ntype = \"u32\"\ndecimals = 0\n{DEC}"
    )))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let t = point(&l, "total");
    assert_eq!(
        (t.data_type, t.scale, t.publish),
        (DataType::Bcd48, 0.0001, true)
    );
    let vb = point(&l, "vb");
    assert_eq!(
        (vb.data_type, vb.table, vb.width()),
        (DataType::IntReal, Table::InputRegister, 4)
    );
    let p = point(&l, "p");
    assert_eq!((p.scale_from.as_deref(), p.scale), (Some("dp"), 1.0));
    assert_eq!(point(&l, "bar").scale, 100.0);
    assert_eq!(point(&l, "whole").scale, 1.0);
    assert!(!point(&l, "dp").publish);
}

#[test]
fn bad_uses_of_the_new_keys_are_errors_naming_the_key() {
    // (case, points, key path, message fragment)
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("decimals on a float", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\ndecimals = 2\n".into(),
            "devices.d.points.x.decimals", "integer and BCD types only, not f32"),
        ("decimals on an intreal", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"intreal\"\ndecimals = 2\n".into(),
            "devices.d.points.x.decimals", "not intreal"),
        ("decimals and scale", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"bcd48\"\ndecimals = 2\nscale = 0.1\n".into(),
            "devices.d.points.x.decimals", "either `decimals` or `scale`"),
        ("decimals out of range", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"bcd48\"\ndecimals = 13\n".into(),
            "devices.d.points.x.decimals", "out of range"),
        ("negative decimals", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\ndecimals = -1\n".into(),
            "devices.d.points.x.decimals", "out of range"),
        ("scale_from on a float", format!("[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\nscale_from = \"dp\"\n{DEC}"),
            "devices.d.points.x.scale_from", "integer and BCD types only"),
        ("scale_from and decimals", format!("[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"dp\"\ndecimals = 1\n{DEC}"),
            "devices.d.points.x.scale_from", "either `decimals` or `scale_from`"),
        ("scale_from missing point", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"nope\"\n".into(),
            "devices.d.points.x.scale_from", "point `x` takes its decimals from `nope`, but this device has no point `nope`"),
        ("scale_from itself", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"x\"\n".into(),
            "devices.d.points.x.scale_from", "from itself"),
        ("scale_from a float point", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"f\"\n[devices.d.points.f]\ntable = \"holding\"\naddress = 2\ntype = \"f32\"\n".into(),
            "devices.d.points.x.scale_from", "a f32 point: decimals are a whole number"),
        ("scale_from a computed point", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"c\"\n[devices.d.points.y]\ntable = \"holding\"\naddress = 1\ntype = \"u16\"\n[devices.d.computed.c]\nterms = { y = 1.0 }\n".into(),
            "devices.d.points.x.scale_from", "a computed point"),
        ("scale_from chain", format!("[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"y\"\n[devices.d.points.y]\ntable = \"holding\"\naddress = 1\ntype = \"u16\"\nscale_from = \"dp\"\n{DEC}"),
            "devices.d.points.x.scale_from", "one level only"),
        ("scale_from writable", format!("[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"dp\"\nwritable = true\n{DEC}"),
            "devices.d.points.x.writable", "cannot be writable"),
        ("scale_from bad name", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"i16\"\nscale_from = \"a b\"\n".into(),
            "devices.d.points.x.scale_from", "invalid point name"),
        ("publish not a bool", "[devices.d.points.x]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\npublish = \"no\"\n".into(),
            "devices.d.points.x.publish", "expected true or false"),
        ("bcd48 past the end", "[devices.d.points.x]\ntable = \"holding\"\naddress = 65534\ntype = \"bcd48\"\n".into(),
            "devices.d.points.x.address", "needs 3 registers"),
        ("intreal on coils", "[devices.d.points.x]\ntable = \"coil\"\naddress = 0\ntype = \"intreal\"\n".into(),
            "devices.d.points.x.type", "single bits"),
    ];
    let mut failures = Vec::new();
    for (case, points, path, fragment) in cases {
        match parse(&doc(&points)) {
            Ok(_) => failures.push(format!("{case}: loaded")),
            Err(errors) => {
                if !errors
                    .iter()
                    .any(|e| e.path == path && e.message.contains(fragment))
                {
                    failures.push(format!("{case}: want {path}: {fragment}, got {errors:#?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_profile_scale_from_needs_its_decimals_point_after_overrides() {
    // pt-int16 reads its decimals register; an inline override of `pressure` keeps working
    // when it names the profile's decimals point, and is an error naming both otherwise.
    let base = "[devices.d]\nbus = \"a\"\nunit = 1\nprofile = \"pt-int16\"\n";
    let text = |rest: &str| {
        format!("[gateway]\nid = \"gw-1\"\nprofile_dirs = []\n\n[buses.a]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\n\n{base}{rest}")
    };
    let l = parse(&text("")).unwrap_or_else(|e| panic!("{e:?}"));
    let p = point(&l, "pressure");
    assert_eq!(p.scale_from.as_deref(), Some("pressure_decimals"));
    assert!(!point(&l, "pressure_decimals").publish);
    let e = parse(&text(
        "[devices.d.points.pressure]\ntable = \"holding\"\naddress = 4\ntype = \"i16\"\nscale_from = \"decimals\"\n",
    ))
    .unwrap_err();
    assert!(
        e.iter().any(|e| e
            .message
            .contains("`pressure` takes its decimals from `decimals`")),
        "{e:#?}"
    );
}

#[test]
fn shipped_profiles_use_the_new_types() {
    let evc = profiles::resolve_profile("evc-dcba", &[]).unwrap();
    let find = |p: &profiles::Profile, n: &str| p.points.iter().find(|x| x.name == n).cloned();
    let vb = find(&evc, "volume_standard").unwrap();
    assert_eq!(
        (vb.data_type, vb.order, vb.publish),
        (DataType::IntReal, crate::model::WordOrder::Dcba, true)
    );
    assert_eq!(
        find(&evc, "volume_measured").unwrap().data_type,
        DataType::IntReal
    );
    // The old halves still load (configs naming them keep working) but stay local.
    for old in [
        "volume_standard_int",
        "volume_standard_frac",
        "volume_measured_int",
        "volume_measured_frac",
    ] {
        assert!(!find(&evc, old).unwrap().publish, "{old}");
    }
    assert!(evc.computed.is_empty());
    let tb = profiles::resolve_profile("turbine-bcd48", &[]).unwrap();
    let v = find(&tb, "volume_standard").unwrap();
    assert_eq!((v.data_type, v.scale), (DataType::Bcd48, 0.0001));
    let pt = profiles::resolve_profile("pt-int16", &[]).unwrap();
    assert_eq!(
        find(&pt, "pressure").unwrap().scale_from.as_deref(),
        Some("pressure_decimals")
    );
}
