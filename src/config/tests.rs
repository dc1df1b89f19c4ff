//! Table-driven tests of the config loader: every kind of error with its key path and
//! position, all errors of a document reported together, defaults, profiles and device order
//! overrides, computed points, the wire-time warning, and that the shipped profiles and
//! example configuration load clean.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::model::{DataType, Table, WordOrder};

/// A document with a gateway, an RTU bus `a` and a TCP bus `t`, plus `rest`.
fn doc(rest: &str) -> String {
    format!(
        r#"[gateway]
id = "gw-1"
profile_dirs = []

[buses.a]
kind = "rtu"
port = "/dev/ttyS0"

[buses.t]
kind = "tcp"
host = "127.0.0.1"

{rest}"#
    )
}

fn parse(text: &str) -> Result<Loaded, Vec<ConfigError>> {
    parse_str(text, "test.toml", Path::new("/nonexistent"))
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(l) => panic!("expected errors, got a valid config: {:#?}", l.config),
        Err(e) => e,
    }
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

const DEV: &str = "[devices.d]\nbus = \"a\"\nunit = 1\n";
const PT: &str = "[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n";

#[test]
fn each_error_is_reported_with_its_key_path() {
    // (case, document, key path, message fragment)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("unknown key in gateway", "[gateway]\nid = \"x\"\ncolour = 1\n".into(), "gateway.colour", "unknown key `colour`"),
        ("missing gateway", "[buses.a]\nkind = \"tcp\"\nhost = \"h\"\n".into(), "gateway", "missing [gateway]"),
        ("bad gateway id", "[gateway]\nid = \"a/b\"\n".into(), "gateway.id", "invalid gateway id"),
        ("missing gateway id", "[gateway]\nstate_dir = \"/x\"\n".into(), "gateway.id", "missing required key `id`"),
        ("bad log level", "[gateway]\nid = \"x\"\nlog_level = \"=nope=\"\n".into(), "gateway.log_level", "invalid log level"),
        ("profile_dirs type", "[gateway]\nid = \"x\"\nprofile_dirs = [1]\n".into(), "gateway.profile_dirs[0]", "expected a string"),
        ("unknown top-level section", doc("[modems]\nx = 1\n"), "modems", "unknown key `modems`"),
        ("unknown bus kind", doc("[buses.z]\nkind = \"udp\"\n"), "buses.z.kind", "unknown bus kind"),
        ("missing bus kind", doc("[buses.z]\nport = \"/dev/x\"\n"), "buses.z.kind", "missing required key `kind`"),
        ("non-standard baud", doc("[buses.z]\nkind = \"rtu\"\nport = \"/dev/x\"\nbaud = 9601\n"), "buses.z.baud", "not a standard rate"),
        ("bad parity", doc("[buses.z]\nkind = \"rtu\"\nport = \"/dev/x\"\nparity = \"mark\"\n"), "buses.z.parity", "unknown parity"),
        ("bad data bits", doc("[buses.z]\nkind = \"rtu\"\nport = \"/dev/x\"\ndata_bits = 9\n"), "buses.z.data_bits", "use 7 or 8"),
        ("bad stop bits", doc("[buses.z]\nkind = \"rtu\"\nport = \"/dev/x\"\nstop_bits = 3\n"), "buses.z.stop_bits", "use 1 or 2"),
        ("rtu without port", doc("[buses.z]\nkind = \"rtu\"\n"), "buses.z.port", "missing required key `port`"),
        ("tcp without host", doc("[buses.z]\nkind = \"tcp\"\n"), "buses.z.host", "missing required key `host`"),
        ("baud on a tcp bus", doc("[buses.z]\nkind = \"tcp\"\nhost = \"h\"\nbaud = 9600\n"), "buses.z.baud", "applies only to kind = \"rtu\""),
        ("tcp port out of range", doc("[buses.z]\nkind = \"tcp\"\nhost = \"h\"\nport = 70000\n"), "buses.z.port", "out of range 1..=65535"),
        ("bad timeout", doc("[buses.z]\nkind = \"tcp\"\nhost = \"h\"\ntimeout = \"soon\"\n"), "buses.z.timeout", "invalid duration"),
        ("timeout too long", doc("[buses.z]\nkind = \"tcp\"\nhost = \"h\"\ntimeout = \"2m\"\n"), "buses.z.timeout", "out of range"),
        ("two rtu buses on one port", doc("[buses.b]\nkind = \"rtu\"\nport = \"/dev/ttyS0\"\n"), "buses.b.port", "already used by bus `a`"),
        ("device on a missing bus", doc("[devices.d]\nbus = \"nope\"\nunit = 1\nprofile = \"pt-float\"\n"), "devices.d.bus", "no bus named `nope`"),
        ("unit as string", doc("[devices.d]\nbus = \"a\"\nunit = \"1\"\nprofile = \"pt-float\"\n"), "devices.d.unit", "expected an integer, found a string"),
        ("unit 0", doc("[devices.d]\nbus = \"a\"\nunit = 0\nprofile = \"pt-float\"\n"), "devices.d.unit", "broadcast"),
        ("unit 255 on rtu", doc("[devices.d]\nbus = \"a\"\nunit = 255\nprofile = \"pt-float\"\n"), "devices.d.unit", "only allowed on kind = \"tcp\""),
        ("unit 250", doc("[devices.d]\nbus = \"t\"\nunit = 250\nprofile = \"pt-float\"\n"), "devices.d.unit", "reserved"),
        ("unit over 255", doc("[devices.d]\nbus = \"a\"\nunit = 300\nprofile = \"pt-float\"\n"), "devices.d.unit", "out of range 0..=255"),
        ("missing unit", doc("[devices.d]\nbus = \"a\"\nprofile = \"pt-float\"\n"), "devices.d.unit", "missing required key `unit`"),
        ("duplicate unit on a bus", doc("[devices.d]\nbus = \"a\"\nunit = 7\nprofile = \"pt-float\"\n[devices.e]\nbus = \"a\"\nunit = 7\nprofile = \"pt-int16\"\n"), "devices.e.unit", "already used by device `d`"),
        ("unknown profile", doc("[devices.d]\nbus = \"a\"\nunit = 1\nprofile = \"nope\"\n"), "devices.d.profile", "unknown profile \"nope\""),
        ("profile id with a path", doc("[devices.d]\nbus = \"a\"\nunit = 1\nprofile = \"../x\"\n"), "devices.d.profile", "invalid profile id"),
        ("poll below 1s", doc("[devices.d]\nbus = \"a\"\nunit = 1\npoll = \"500ms\"\nprofile = \"pt-float\"\n"), "devices.d.poll", "out of range"),
        ("phase not below poll", doc("[devices.d]\nbus = \"a\"\nunit = 1\npoll = \"1m\"\nphase = \"1m\"\nprofile = \"pt-float\"\n"), "devices.d.phase", "must be shorter than poll"),
        ("max_registers 0", doc("[devices.d]\nbus = \"a\"\nunit = 1\nmax_registers = 0\nprofile = \"pt-float\"\n"), "devices.d.max_registers", "out of range 1..=125"),
        ("max_registers 126", doc("[devices.d]\nbus = \"a\"\nunit = 1\nmax_registers = 126\nprofile = \"pt-float\"\n"), "devices.d.max_registers", "out of range 1..=125"),
        ("enabled not a bool", doc("[devices.d]\nbus = \"a\"\nunit = 1\nenabled = \"yes\"\nprofile = \"pt-float\"\n"), "devices.d.enabled", "expected true or false"),
        ("bad device order", doc("[devices.d]\nbus = \"a\"\nunit = 1\norder = \"ACBD\"\nprofile = \"pt-float\"\n"), "devices.d.order", "unknown order"),
        ("device without points", doc("[devices.d]\nbus = \"a\"\nunit = 1\n"), "devices.d", "device has no points"),
        ("unknown key in device", doc(&format!("{DEV}speed = 3\n{PT}")), "devices.d.speed", "unknown key `speed`"),
        ("unknown key in point", doc(&format!("{DEV}{PT}colour = \"red\"\n")), "devices.d.points.p.colour", "unknown key `colour`"),
        ("unknown table", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"memory\"\naddress = 0\ntype = \"u16\"\n")), "devices.d.points.p.table", "unknown table"),
        ("unknown type", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u128\"\n")), "devices.d.points.p.type", "unknown type"),
        ("address out of range", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 65536\ntype = \"u16\"\n")), "devices.d.points.p.address", "out of range 0..=65535"),
        ("negative address", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = -1\ntype = \"u16\"\n")), "devices.d.points.p.address", "out of range"),
        ("point past 65535", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 65534\ntype = \"f64\"\n")), "devices.d.points.p.address", "runs past address 65535"),
        ("register bit without index", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"bit\"\n")), "devices.d.points.p.bit", "missing required key `bit`"),
        ("bit index 16", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"bit\"\nbit = 16\n")), "devices.d.points.p.bit", "out of range 0..=15"),
        ("bit index on a coil", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"coil\"\naddress = 0\ntype = \"bit\"\nbit = 1\n")), "devices.d.points.p.bit", "single bits already"),
        ("bit index with u16", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\nbit = 1\n")), "devices.d.points.p.bit", "only valid with type = \"bit\""),
        ("u16 on discrete", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"discrete\"\naddress = 0\ntype = \"u16\"\n")), "devices.d.points.p.type", "single bits"),
        ("string without length", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"string\"\n")), "devices.d.points.p.length", "missing required key `length`"),
        ("length with f32", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\nlength = 4\n")), "devices.d.points.p.length", "only valid with type = \"string\""),
        ("bad point order", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\norder = \"XYZW\"\n")), "devices.d.points.p.order", "unknown order"),
        ("scale on a bit", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"coil\"\naddress = 0\ntype = \"bit\"\nscale = 2.0\n")), "devices.d.points.p.scale", "only to numeric types"),
        ("scale 0", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\nscale = 0\n")), "devices.d.points.p.scale", "must not be 0"),
        ("scale nan", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\nscale = nan\n")), "devices.d.points.p.scale", "finite"),
        ("writable input register", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nwritable = true\n")), "devices.d.points.p.writable", "read-only"),
        ("writable discrete", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"discrete\"\naddress = 0\ntype = \"bit\"\nwritable = true\n")), "devices.d.points.p.writable", "read-only"),
        ("writable bit of register", doc(&format!("{DEV}[devices.d.points.p]\ntable = \"holding\"\naddress = 0\ntype = \"bit\"\nbit = 2\nwritable = true\n")), "devices.d.points.p.writable", "other 15 bits"),
        ("planner refuses a wide point", doc(&format!("{DEV}max_registers = 8\n[devices.d.points.s]\ntable = \"holding\"\naddress = 0\ntype = \"string\"\nlength = 32\n")), "devices.d.points.s", "max_registers is 8"),
        ("profile limit refuses inline point", doc("[devices.d]\nbus = \"a\"\nunit = 1\nprofile = \"turbine-bcd\"\n[devices.d.points.tag]\ntable = \"holding\"\naddress = 100\ntype = \"string\"\nlength = 40\n"), "devices.d.points.tag", "max_registers is 16"),
        ("computed term names a missing point", doc(&format!("{DEV}{PT}[devices.d.computed.c]\nterms = {{ p = 1.0, q = 2.0 }}\n")), "devices.d.computed.c.terms.q", "no point named `q`"),
        ("computed term names itself", doc(&format!("{DEV}{PT}[devices.d.computed.c]\nterms = {{ p = 1.0, c = 1.0 }}\n")), "devices.d.computed.c.terms.c", "cannot use itself"),
        ("computed term names a computed point", doc(&format!("{DEV}{PT}[devices.d.computed.c]\nterms = {{ p = 1.0 }}\n[devices.d.computed.e]\nterms = {{ c = 1.0 }}\n")), "devices.d.computed.e.terms.c", "is a computed point"),
        ("computed term weight not a number", doc(&format!("{DEV}{PT}[devices.d.computed.c]\nterms = {{ p = \"x\" }}\n")), "devices.d.computed.c.terms.p", "expected a number"),
        ("computed without terms", doc(&format!("{DEV}{PT}[devices.d.computed.c]\nunit = \"m3\"\n")), "devices.d.computed.c.terms", "missing required key `terms`"),
        ("computed empty terms", doc(&format!("{DEV}{PT}[devices.d.computed.c]\nterms = {{}}\n")), "devices.d.computed.c.terms", "at least one term"),
        ("computed shadows a point", doc(&format!("{DEV}{PT}[devices.d.computed.p]\nterms = {{ p = 1.0 }}\n")), "devices.d.computed.p", "both a read point and a computed point"),
        ("computed term is a string", doc(&format!("{DEV}[devices.d.points.s]\ntable = \"holding\"\naddress = 0\ntype = \"string\"\nlength = 4\n[devices.d.computed.c]\nterms = {{ s = 1.0 }}\n")), "devices.d.computed.c.terms.s", "is a string"),
        ("bad point name", doc(&format!("{DEV}[devices.d.points.\"a b\"]\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n")), "devices.d.points.a b", "invalid name"),
        ("points not a table", doc(&format!("{DEV}points = 3\n")), "devices.d.points", "expected a table"),
    ];
    let mut failures = Vec::new();
    for (case, text, path, fragment) in &cases {
        let errors = match parse(text) {
            Ok(_) => {
                failures.push(format!("{case}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        let hit = errors
            .iter()
            .find(|e| e.path == *path && e.message.contains(fragment));
        match hit {
            None => failures.push(format!(
                "{case}: no error at {path} containing {fragment:?}; got:\n  {}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )),
            Some(e) => {
                if e.origin != "test.toml" {
                    failures.push(format!("{case}: origin {:?}", e.origin));
                }
                // Everything written in the file can be placed; only whole-document problems
                // (a missing section) may lack a line.
                if e.line.is_none() && *case != "missing gateway" {
                    failures.push(format!("{case}: no line for {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_errors_of_a_document_are_reported_together() {
    let text = r#"[gateway]
id = "bad id"
extra = 1

[buses.a]
kind = "rtu"
port = "/dev/ttyS0"
baud = 9601

[devices.d]
bus = "missing"
unit = 0
poll = "1s"
phase = "5s"

[devices.d.points.p]
table = "input"
address = 0
type = "f32"
writable = true

[devices.d.computed.c]
terms = { nope = 1.0 }
"#;
    let errors = errors_of(text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "gateway.id",
        "gateway.extra",
        "buses.a.baud",
        "devices.d.bus",
        "devices.d.unit",
        "devices.d.phase",
        "devices.d.points.p.writable",
        "devices.d.computed.c.terms.nope",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    assert_eq!(errors.len(), 8, "{errors:#?}");
    // Positions are exact: `baud = 9601` is line 8, the value starts at column 8.
    let baud = errors.iter().find(|e| e.path == "buses.a.baud").unwrap();
    assert_eq!((baud.line, baud.column), (Some(8), Some(8)));
    assert_eq!(
        baud.to_string(),
        "test.toml:8:8: buses.a.baud: 9601 is not a standard rate: use one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400"
    );
    let extra = errors.iter().find(|e| e.path == "gateway.extra").unwrap();
    assert_eq!((extra.line, extra.column), (Some(3), Some(1)));
}

#[test]
fn toml_syntax_errors_have_line_and_column() {
    // (document, line, column)
    let cases = [
        ("[gateway]\nid = \"x\"\n[buses.a\n", 3, 9),
        ("[gateway]\nid = \"x\nstate_dir = \"/x\"\n", 2, 8),
        ("[gateway]\nid = \"x\"\nid = \"y\"\n", 3, 1),
        ("x = = 1\n", 1, 5),
    ];
    for (text, line, col) in cases {
        let errors = errors_of(text);
        let e = &errors[0];
        assert!(e.message.starts_with("TOML syntax error"), "{e}");
        assert_eq!(e.line, Some(line), "{text:?}: {e}");
        assert_eq!(e.column, Some(col), "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("test.toml:{line}:{col}: ")),
            "{e}"
        );
    }
}

#[test]
fn defaults_are_applied() {
    let text = r#"[gateway]
id = "gw"

[buses.a]
kind = "rtu"
port = "/dev/ttyS0"

[buses.t]
kind = "tcp"
host = "10.0.0.1"

[buses.s]
kind = "rtu_over_tcp"
host = "10.0.0.2"

[devices.d]
bus = "a"
unit = 1
[devices.d.points.p]
table = "holding"
address = 3
type = "f32"

[devices.e]
bus = "t"
unit = 255
profile = "pt-int16"

[devices.f]
bus = "s"
unit = 2
profile = "pt-float"
"#;
    let c = ok(text).config;
    assert_eq!(c.gateway.id, "gw");
    assert_eq!(c.gateway.state_dir, PathBuf::from("/var/lib/gasdtu"));
    assert_eq!(
        c.gateway.profile_dirs,
        vec![
            PathBuf::from("/etc/gasdtu/profiles"),
            PathBuf::from("/usr/share/gasdtu/profiles")
        ]
    );
    assert_eq!(c.gateway.log_level, "info");
    let names: Vec<&str> = c.buses.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "s", "t"]);
    let a = &c.buses[0];
    assert_eq!(
        a.transport,
        Transport::Rtu(SerialSettings {
            port: "/dev/ttyS0".into(),
            baud: 9600,
            parity: Parity::Even,
            data_bits: 8,
            stop_bits: 1
        })
    );
    assert_eq!(
        (a.timeout, a.turnaround, a.retries),
        (Duration::from_secs(1), Duration::from_millis(50), 1)
    );
    let s = &c.buses[1];
    assert_eq!(
        s.transport,
        Transport::RtuOverTcp {
            host: "10.0.0.2".into(),
            port: 502
        }
    );
    assert_eq!(
        (s.timeout, s.turnaround),
        (Duration::from_secs(3), Duration::from_millis(50))
    );
    let t = &c.buses[2];
    assert_eq!(
        t.transport,
        Transport::Tcp {
            host: "10.0.0.1".into(),
            port: 502
        }
    );
    assert_eq!(
        (t.timeout, t.turnaround, t.retries),
        (Duration::from_secs(3), Duration::ZERO, 1)
    );
    let d = &c.devices[0];
    assert_eq!(d.name, "d");
    assert_eq!(d.poll, Duration::from_secs(300));
    assert_eq!(d.phase, Duration::ZERO);
    assert_eq!((d.max_registers, d.max_gap, d.offline_after), (125, 10, 3));
    assert!(d.enabled);
    assert_eq!(d.profile, None);
    let p = &d.points[0];
    assert_eq!(
        (p.table, p.address, p.data_type, p.order),
        (Table::HoldingRegister, 3, DataType::F32, WordOrder::Abcd)
    );
    assert_eq!(
        (p.scale, p.offset, p.unit.clone(), p.writable),
        (1.0, 0.0, None, false)
    );
    // Unit 255 is fine on TCP.
    assert_eq!(c.devices[1].unit, 255);
}

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

#[test]
fn wire_time_warning_when_a_slow_bus_cannot_fit_the_poll() {
    // Ten correctors polled every second on a 9600-baud line: far more than a second of wire.
    let mut rest = String::new();
    for i in 1..=10 {
        rest.push_str(&format!(
            "[devices.evc{i}]\nbus = \"a\"\nunit = {i}\npoll = \"1s\"\nprofile = \"evc-dcba\"\n"
        ));
    }
    let loaded = ok(&doc(&rest));
    let timing = bus_timing(&loaded.config);
    let a = timing.iter().find(|t| t.bus == "a").unwrap();
    assert_eq!(a.verdict, Verdict::Overrun);
    assert_eq!(a.devices, 10);
    assert!(a.wire_time.unwrap() > Duration::from_secs(1));
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.path == "buses.a")
        .expect("a wire-time warning on buses.a");
    assert!(w.message.contains("cycles will overrun"), "{w}");
    assert!(w.line.is_some());
    let report = check_report(&loaded);
    assert!(
        report.iter().any(
            |l| l.starts_with("bus a: 10 devices, 10 reads/cycle, wire time ")
                && l.ends_with("at 9600 baud, shortest poll 1s: OVERRUN")
        ),
        "{report:?}"
    );

    // The same bus at 115200 baud and a 5 s poll fits easily: no warning.
    let fast = doc(&rest)
        .replace(
            "port = \"/dev/ttyS0\"",
            "port = \"/dev/ttyS0\"\nbaud = 115200",
        )
        .replace("poll = \"1s\"", "poll = \"5s\"");
    let loaded = ok(&fast);
    assert!(
        loaded.warnings.iter().all(|w| w.path != "buses.a"),
        "{:?}",
        loaded.warnings
    );
    assert_eq!(bus_timing(&loaded.config)[0].verdict, Verdict::Ok);

    // Six correctors at 1 s (about 0.7 s of wire): over half the poll is "tight".
    let mut six = String::new();
    for i in 1..=6 {
        six.push_str(&format!(
            "[devices.evc{i}]\nbus = \"a\"\nunit = {i}\npoll = \"1s\"\nprofile = \"evc-dcba\"\n"
        ));
    }
    let loaded = ok(&doc(&six));
    let t = bus_timing(&loaded.config);
    assert_eq!(t[0].verdict, Verdict::Tight, "{:?}", t[0]);
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.path == "buses.a" && w.message.contains("tight")));
}

#[test]
fn disabled_devices_may_share_a_unit_and_are_not_timed() {
    let text = doc(
        "[devices.old]\nbus = \"a\"\nunit = 1\nprofile = \"pt-float\"\nenabled = false\n[devices.new]\nbus = \"a\"\nunit = 1\nprofile = \"pt-int16\"\n",
    );
    let l = ok(&text);
    assert_eq!(summary(&l.config).devices, 1);
    assert_eq!(summary(&l.config).disabled_devices, 1);
    assert_eq!(bus_timing(&l.config)[0].devices, 1);
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

mod fuzz {
    //! Random mutations of the shipped configs and profiles never panic the loader, every
    //! error is placed (line:column) and no error echoes a control character raw. Fixed seed,
    //! bounded cases: a few seconds in debug.
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
            (any::<usize>(), 0..NASTY.len())
                .prop_map(|(p, i)| Mutation::Insert(p, NASTY[i].to_vec())),
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
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
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
