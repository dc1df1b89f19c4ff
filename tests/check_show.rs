//! `gasdtu check` on profiles and point sets that fit a site, as a field engineer runs it (the
//! real binary): `--show <device>` prints the resolved points and where each field came from,
//! the 16-bit byte-swap warning, diagnostics in line order, one published-count line per
//! device, and configs/point-sets.toml (twenty meters, one point set) resolving to exactly the
//! devices that the same meters written with inline points give, in far fewer lines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gasdtu::config::{self, DeviceConfig};
use gasdtu::model::DataType;

fn check(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gasdtu"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .args(args)
        .output()
        .expect("run gasdtu")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/point-sets.toml")
}

const HEAD: &str = "[gateway]\nid = \"gw\"\nprofile_dirs = []\n\n[buses.a]\nkind = \"rtu\"\nport = \"/dev/ttyS0\"\n\n";

#[test]
fn show_prints_the_resolved_points_of_one_device() {
    let out = check(&example(), &["--show", "m07"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("device m07: bus line1, unit 7, set meter, poll 5m\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  dropped from the set meter: temperature\n"),
        "{stdout}"
    );
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("point").starts_with("point table address type order scale offset unit publish from"),
        "{stdout}"
    );
    assert_eq!(
        row("pressure"),
        "pressure holding 20 f32 CDAB 100 0 kPa yes set meter; override: address; order: set default"
    );
    assert_eq!(
        row("status_tamper"),
        "status_tamper holding 11 bit1 - - - - yes set meter"
    );
    assert!(!stdout.contains("temperature "), "{stdout}");
    assert!(
        stdout.contains(
            "  computed volume_standard = volume_standard_frac + volume_standard_int Sm3 (publish yes; from set meter)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("device m07: 9 points (8 read, 1 computed), 9 published\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("bus line1:"),
        "--show replaces the bus report: {stdout}"
    );

    // A profile device with an override and the device's order.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(
        &path,
        format!("{HEAD}[devices.evc1]\nbus = \"a\"\nunit = 1\nprofile = \"evc-dcba\"\norder = \"CDAB\"\n[devices.evc1.points.pressure]\naddress = 40\n"),
    )
    .unwrap();
    let out = check(&path, &["--show", "evc1"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let pressure = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("pressure "))
        .unwrap_or_default();
    let cols: Vec<&str> = pressure.split_whitespace().collect();
    assert_eq!(
        cols[..8],
        ["pressure", "holding", "40", "f32", "CDAB", "100", "0", "kPa"],
        "{stdout}"
    );
    assert!(
        pressure.ends_with("profile evc-dcba; override: address; order: device"),
        "{pressure}"
    );
    let battery = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("battery "))
        .unwrap_or_default();
    assert!(
        battery.contains(" ABCD ") && battery.ends_with("profile evc-dcba"),
        "a pinned order stays and says nothing more: {battery}"
    );

    // An unknown device: exit 1, naming the devices there are.
    let out = check(&example(), &["--show", "m99"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error: no device named \"m99\"") && stderr.contains("m01, m02"),
        "{stderr}"
    );
}

#[test]
fn check_warns_about_byte_swapped_16_bit_values_and_counts_published_points() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    // status_tamper becomes a u16 and inherits the profile's DCBA; the battery override keeps
    // its pinned ABCD. tb1 (turbine-bcd, ABCD) has computed totals and nothing to warn about.
    std::fs::write(
        &path,
        format!("{HEAD}[devices.evc1]\nbus = \"a\"\nunit = 1\nprofile = \"evc-dcba\"\n[devices.evc1.points.status_tamper]\ntype = \"u16\"\n[devices.evc1.points.battery]\naddress = 30\n\n[devices.tb1]\nbus = \"a\"\nunit = 2\nprofile = \"turbine-bcd\"\n"),
    )
    .unwrap();
    let out = check(&path, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("swaps the two bytes"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("warning: ")
            && warnings[0].contains("gasdtu.toml:13:22: devices.evc1.points.status_tamper: u16 point `status_tamper` decodes with order DCBA (inherited from the default order of profile `evc-dcba`)"),
        "{stderr}"
    );
    // evc-dcba: 16 read points, its four integer/fraction halves `publish = false`.
    assert!(
        stdout
            .lines()
            .any(|l| l == "device evc1: 16 points (16 read, 0 computed), 12 published"),
        "{stdout}"
    );
    // turbine-bcd: every read point and both computed totals published.
    assert!(
        stdout
            .lines()
            .any(|l| l == "device tb1: 16 points (14 read, 2 computed), 16 published"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("1 warning"), "{stdout}");
}

#[test]
fn check_lists_errors_in_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    // Validated in another order than written: store after devices, point sets before them.
    std::fs::write(
        &path,
        format!("{HEAD}[store]\nmax_bytes = 10\n\n[devices.evc1]\nbus = \"a\"\nunit = 1\nprofile = \"evc-dcba\"\ndrop = [\"temp2\"]\n[devices.evc1.points.presure]\naddress = 40\n\n[point_sets.s]\norder = \"XYZW\"\n[point_sets.s.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n"),
    )
    .unwrap();
    let out = check(&path, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<usize> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("error: ")?;
            let after = rest.split_once("gasdtu.toml:")?.1;
            after.split(':').next()?.parse().ok()
        })
        .collect();
    assert_eq!(lines, vec![10, 16, 17, 21], "{stderr}");
    assert!(
        stderr.contains(
            "devices.evc1.drop[0]: device `evc1`: profile `evc-dcba` has no point `temp2` to drop"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("devices.evc1.points.presure: device `evc1`: profile `evc-dcba` has no point `presure` to override"),
        "{stderr}"
    );
}

/// The TOML a person would write for `dev` with inline points only (the device's `order` once,
/// a point's own order only where it differs).
fn inline_device(dev: &DeviceConfig, order: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "\n[devices.{}]\nbus = \"{}\"\nunit = {}\norder = \"{order}\"\nmax_registers = {}\n",
        dev.name, dev.bus, dev.unit, dev.max_registers
    );
    for p in &dev.points {
        let _ = write!(
            s,
            "\n[devices.{}.points.{}]\ntable = \"{}\"\naddress = {}\n",
            dev.name, p.name, p.table, p.address
        );
        match p.data_type {
            DataType::BitOfRegister(b) => {
                let _ = writeln!(s, "type = \"bit\"\nbit = {b}");
            }
            t => {
                let _ = writeln!(s, "type = \"{t}\"");
                if p.order.to_string() != order {
                    let _ = writeln!(s, "order = \"{}\"", p.order);
                }
            }
        }
        if p.scale != 1.0 {
            let _ = writeln!(s, "scale = {:?}", p.scale);
        }
        if let Some(u) = &p.unit {
            let _ = writeln!(s, "unit = \"{u}\"");
        }
    }
    for c in &dev.computed {
        let terms: Vec<String> = c
            .terms
            .iter()
            .map(|(t, k)| format!("{t} = {k:?}"))
            .collect();
        let _ = write!(
            s,
            "\n[devices.{}.computed.{}]\nterms = {{ {} }}\n",
            dev.name,
            c.name,
            terms.join(", ")
        );
        if let Some(u) = &c.unit {
            let _ = writeln!(s, "unit = \"{u}\"");
        }
    }
    s
}

#[test]
fn twenty_meters_with_a_point_set_resolve_like_inline_points_in_far_fewer_lines() {
    let with_set = std::fs::read_to_string(example()).unwrap();
    let loaded = config::load_file(&example()).expect("configs/point-sets.toml is valid");
    assert_eq!(loaded.config.devices.len(), 20);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    // The same station written with inline points: everything before the point set, then each
    // meter spelled out.
    let head = &with_set[..with_set.find("[point_sets.meter]").unwrap()];
    let head: String = head
        .lines()
        .filter(|l| !l.starts_with("# The register map") && !l.starts_with("# values)"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut inline = head;
    for dev in &loaded.config.devices {
        inline.push_str(&inline_device(dev, "CDAB"));
    }
    let dir = tempfile::tempdir().unwrap();
    let inline_path = dir.path().join("inline.toml");
    std::fs::write(&inline_path, &inline).unwrap();
    let out = check(&inline_path, &["-q"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let inline_loaded = config::load_file(&inline_path).expect("inline twin is valid");
    assert_eq!(
        inline_loaded.config.devices, loaded.config.devices,
        "the point set resolves to exactly the inline points"
    );

    let (set_lines, inline_lines) = (with_set.lines().count(), inline.lines().count());
    eprintln!("20 meters: {set_lines} lines with a point set, {inline_lines} with inline points");
    assert!(
        set_lines * 4 < inline_lines,
        "{set_lines} vs {inline_lines}"
    );
    // The example's header states both numbers; keep it true.
    assert!(
        with_set.contains(&format!("take {inline_lines} lines")),
        "update the line counts in configs/point-sets.toml: {set_lines} / {inline_lines}"
    );
    assert!(
        with_set.contains(&format!("they take {set_lines}")),
        "update the line counts in configs/point-sets.toml: {set_lines} / {inline_lines}"
    );
}
