//! Table-driven tests of the config loader: every kind of error with its key path and
//! position, all errors of a document reported together, defaults and the wire-time warning
//! here; by section in the submodules: `profile_cases` (profiles, device order overrides, computed
//! points, the shipped profiles and example config), `store_uplink`, `remote_section`, `hostile`
//! (issue 9's hostile input) and `fuzz`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::model::{DataType, Table, WordOrder};

mod fuzz;
mod hostile;
mod profile_cases;
mod remote_section;
mod sparkplug_section;
mod store_uplink;

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
