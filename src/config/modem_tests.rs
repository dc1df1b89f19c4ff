//! Table-driven tests of `[modem]`: defaults, everything set, `mode = "none"`, and every
//! error with its key path and line.

use std::path::Path;
use std::time::Duration;

use super::super::{parse_str, ConfigError, Loaded};
use super::*;

fn doc(rest: &str) -> String {
    format!("[gateway]\nid = \"gw-1\"\nprofile_dirs = []\n\n{rest}")
}

fn parse(rest: &str) -> Result<Loaded, Vec<ConfigError>> {
    parse_str(&doc(rest), "test.toml", Path::new("/nonexistent"))
}

fn ok(rest: &str) -> Option<ModemConfig> {
    match parse(rest) {
        Ok(l) => l.config.modem,
        Err(e) => panic!(
            "expected a valid config, got:\n{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn defaults_and_none() {
    assert_eq!(ok(""), None);
    assert_eq!(ok("[modem]\nmode = \"none\"\n"), None);
    // mode = "none" needs no port.
    assert_eq!(ok("[modem]\nmode = \"none\"\nbaud = 115200\n"), None);
    let m = ok("[modem]\nmode = \"os\"\nport = \"/dev/ttyUSB2\"\n").expect("modem");
    assert_eq!(m, ModemConfig::new(ModemMode::Os, "/dev/ttyUSB2"));
    assert_eq!(
        (
            m.baud,
            m.signal_every,
            m.register_within,
            m.max_resets_per_day
        ),
        (9600, Duration::from_secs(300), Duration::from_secs(180), 24)
    );
    assert_eq!(
        ok("[modem]\nmode = \"socket\"\nport = \"/dev/ttyS1\"\nmodel = \"auto\"\n")
            .map(|m| (m.mode, m.model)),
        Some((ModemMode::Socket, None))
    );
    // Every model with socket commands may run in socket mode (issue 11's last two included).
    for id in ["bc95", "bc66", "bg96", "sim7020", "sim7080"] {
        let text = format!("[modem]\nmode = \"socket\"\nport = \"/dev/x\"\nmodel = \"{id}\"\n");
        assert_eq!(
            ok(&text).map(|m| (m.mode, m.model)),
            Some((ModemMode::Socket, Some(id.to_string()))),
            "{id}"
        );
    }
}

#[test]
fn everything_set() {
    let m = ok(r#"[modem]
mode = "socket"
port = "/dev/ttyS1"
baud = 115200
model = "bc95"
apn = "iot.example-1"
signal_every = "1m"
register_within = "5m"
psm_tau = "1h"
psm_active = "30s"
edrx = "81.92s"
max_resets_per_day = 10
set_clock = false

[modem.power]
gpio_chip = "gpiochip1"
gpio_line = 17
active_low = true
off_for = "3s"
max_power_cycles_per_day = 4
"#)
    .expect("modem");
    assert_eq!(
        m,
        ModemConfig {
            mode: ModemMode::Socket,
            port: "/dev/ttyS1".into(),
            baud: 115200,
            model: Some("bc95".into()),
            apn: Some("iot.example-1".into()),
            signal_every: Duration::from_secs(60),
            register_within: Duration::from_secs(300),
            psm: Some(PsmRequest {
                tau: Duration::from_secs(3600),
                active: Duration::from_secs(30)
            }),
            edrx: Some(Duration::from_millis(81_920)),
            power: Some(PowerConfig {
                switch: PowerSwitch::Gpio {
                    chip: "/dev/gpiochip1".into(),
                    line: 17,
                    active_low: true
                },
                off_for: Duration::from_secs(3),
                max_power_cycles_per_day: 4,
            }),
            max_resets_per_day: 10,
            hosts: Vec::new(),
            ladder_gap: Duration::from_secs(30),
            set_clock: false,
        }
    );
    let m = ok(
        "[modem]\nmode = \"os\"\nport = \"/dev/x\"\n[modem.power]\ncommand = [\"/usr/bin/socat\", \"-\", \"UNIX-CONNECT:/run/m.ctl\"]\n",
    )
    .expect("modem");
    assert_eq!(
        m.power,
        Some(PowerConfig {
            switch: PowerSwitch::Command(vec![
                "/usr/bin/socat".into(),
                "-".into(),
                "UNIX-CONNECT:/run/m.ctl".into()
            ]),
            off_for: Duration::from_secs(2),
            max_power_cycles_per_day: 6,
        })
    );
}

#[test]
fn each_error_has_its_key_path_and_line() {
    const M: &str = "[modem]\nmode = \"os\"\nport = \"/dev/x\"\n";
    let pw = |s: &str| format!("{M}[modem.power]\n{s}");
    // (document after [gateway], key path, message fragment, line)
    let cases: Vec<(String, &str, &str, usize)> = vec![
        (
            "[modem]\nport = \"/dev/x\"\n".into(),
            "modem.mode",
            "missing required key `mode`",
            5,
        ),
        (
            "[modem]\nmode = \"ppp\"\nport = \"/dev/x\"\n".into(),
            "modem.mode",
            "unknown modem mode",
            6,
        ),
        (
            "[modem]\nmode = \"os\"\n".into(),
            "modem.port",
            "missing required key `port`",
            5,
        ),
        (
            "[modem]\nmode = \"os\"\nport = \" \"\n".into(),
            "modem.port",
            "must not be empty",
            7,
        ),
        (
            format!("{M}baud = 9601\n"),
            "modem.baud",
            "not a standard rate",
            8,
        ),
        (
            format!("{M}set_clock = \"yes\"\n"),
            "modem.set_clock",
            "true or false",
            8,
        ),
        (
            format!("{M}model = \"bc96\"\n"),
            "modem.model",
            "unknown modem model",
            8,
        ),
        (
            "[modem]\nmode = \"socket\"\nport = \"/dev/x\"\nmodel = \"generic\"\n".into(),
            "modem.model",
            "no AT socket commands",
            8,
        ),
        (
            format!("{M}apn = \"bad apn\"\n"),
            "modem.apn",
            "invalid APN",
            8,
        ),
        (
            format!("{M}apn = \"{}\"\n", "a".repeat(64)),
            "modem.apn",
            "invalid APN",
            8,
        ),
        (
            format!("{M}signal_every = \"5s\"\n"),
            "modem.signal_every",
            "out of range",
            8,
        ),
        (
            format!("{M}register_within = \"2h\"\n"),
            "modem.register_within",
            "out of range",
            8,
        ),
        (
            format!("{M}psm_tau = \"1h\"\n"),
            "modem.psm_active",
            "without psm_active",
            8,
        ),
        (
            format!("{M}psm_active = \"10s\"\n"),
            "modem.psm_tau",
            "without psm_tau",
            8,
        ),
        (
            format!("{M}psm_tau = \"2m\"\npsm_active = \"5m\"\n"),
            "modem.psm_active",
            "shorter than psm_tau",
            9,
        ),
        (
            format!("{M}psm_tau = \"1h\"\npsm_active = \"4h\"\n"),
            "modem.psm_active",
            "out of range",
            9,
        ),
        (
            format!("{M}edrx = \"5s\"\n"),
            "modem.edrx",
            "out of range",
            8,
        ),
        (
            format!("{M}max_resets_per_day = 0\n"),
            "modem.max_resets_per_day",
            "out of range",
            8,
        ),
        (format!("{M}colour = 1\n"), "modem.colour", "unknown key", 8),
        (pw(""), "modem.power", "give gpio_chip + gpio_line", 8),
        (
            pw("gpio_chip = \"gpiochip0\"\n"),
            "modem.power.gpio_line",
            "without gpio_line",
            9,
        ),
        (
            pw("gpio_line = 3\n"),
            "modem.power.gpio_chip",
            "without gpio_chip",
            9,
        ),
        (
            pw("gpio_line = 5000\n"),
            "modem.power.gpio_line",
            "out of range",
            9,
        ),
        (
            pw("gpio_chip = \"c\"\ngpio_line = 1\ncommand = [\"/bin/x\"]\n"),
            "modem.power.command",
            "not both",
            11,
        ),
        (
            pw("command = [\"socat\"]\n"),
            "modem.power.command[0]",
            "absolute program path",
            9,
        ),
        (
            pw("command = []\n"),
            "modem.power.command",
            "the command is empty",
            9,
        ),
        (
            pw("command = [\"/bin/x\"]\nactive_low = true\n"),
            "modem.power.active_low",
            "applies to a GPIO line",
            10,
        ),
        (
            pw("command = [\"/bin/x\"]\noff_for = \"2m\"\n"),
            "modem.power.off_for",
            "out of range",
            10,
        ),
        (
            pw("command = [\"/bin/x\"]\nmax_power_cycles_per_day = 49\n"),
            "modem.power.max_power_cycles_per_day",
            "out of range",
            10,
        ),
    ];
    for (text, path, fragment, line) in cases {
        let errors = match parse(&text) {
            Ok(_) => panic!("{path}: accepted:\n{text}"),
            Err(e) => e,
        };
        let hit = errors
            .iter()
            .find(|e| e.path == path && e.message.contains(fragment));
        let Some(e) = hit else {
            panic!("{path}: no error containing {fragment:?} in {errors:#?}");
        };
        assert_eq!(e.line, Some(line), "{path}: {e}");
    }
}

#[test]
fn socket_mode_hosts_give_the_broker_an_address() {
    const UP: &str = "[uplink]\nhost = \"broker.example.net\"\ntls = false\n";
    const M: &str = "[modem]\nmode = \"socket\"\nport = \"/dev/x\"\n";
    let m = ok(&format!(
        "{UP}{M}hosts = [\"203.0.113.7 broker.example.net\", \"2001:db8::1  other\"]\n"
    ))
    .expect("modem");
    assert_eq!(
        m.hosts,
        vec![
            (
                "broker.example.net".to_string(),
                "203.0.113.7".parse().unwrap()
            ),
            ("other".to_string(), "2001:db8::1".parse().unwrap()),
        ]
    );
    // A name without an address in socket mode: refused, saying what to add.
    let errs = parse(&format!("{UP}{M}")).unwrap_err();
    assert!(
        errs.iter().any(|e| e.path == "modem.hosts"
            && !e.message.contains("203.0.113.7")
            && e.message.contains("broker.example.net")),
        "{errs:?}"
    );
    // An IP literal or localhost needs nothing; os mode needs nothing.
    let lit = "[uplink]\nhost = \"127.0.0.1\"\ntls = false\n";
    assert!(ok(&format!("{lit}{M}")).is_some());
    let os = "[modem]\nmode = \"os\"\nport = \"/dev/x\"\n";
    assert!(ok(&format!("{UP}{os}")).is_some());
    // Malformed entries: key path with the index, and the line.
    for bad in [
        "\"broker.example.net\"",
        "\"nonsense broker\"",
        "\"1.2.3.4 a b\"",
    ] {
        let errs = parse(&format!("{lit}{M}hosts = [{bad}]\n")).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.path == "modem.hosts[0]" && e.line.is_some()),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn psm_with_an_always_on_session_is_warned() {
    const UP: &str = "[uplink]\nhost = \"127.0.0.1\"\ntls = false\n";
    const M: &str =
        "[modem]\nmode = \"os\"\nport = \"/dev/x\"\npsm_tau = \"1h\"\npsm_active = \"1m\"\n";
    let l = parse(&format!("{UP}{M}")).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.path == "modem.psm_tau" && w.message.contains("on_demand")),
        "{:?}",
        l.warnings
    );
    let od = "[uplink]\nhost = \"127.0.0.1\"\ntls = false\nsession = \"on_demand\"\n";
    let l = parse(&format!("{od}{M}")).unwrap();
    assert!(
        l.warnings.iter().all(|w| w.path != "modem.psm_tau"),
        "{:?}",
        l.warnings
    );
}
