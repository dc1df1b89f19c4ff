//! `gasdtu simulate`: serve simulated Modbus devices built from profiles over Modbus TCP, RTU
//! over TCP and/or a serial line (a real port or one end of a pty pair), with injectable
//! faults, until SIGINT/SIGTERM or `--duration`. Turns flags into a `sim::Simulator` and
//! starts its transports; all behaviour lives in `crate::sim`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Global;
use crate::config::profiles::resolve_profile;
use crate::config::{Parity, SerialSettings};
use crate::model::{ComputedSpec, PointSpec, Value};
use crate::sim::modem::{
    LinkSpec, Model, ModemFault, ModemServer, ModemSimConfig, Settings as ModemSettings,
};
use crate::sim::{FaultRule, Faults, SimDevice, Simulator};

const DEFAULT_PROFILE_DIRS: [&str; 2] = ["/etc/gasdtu/profiles", "/usr/share/gasdtu/profiles"];

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gasdtu simulate --tcp 127.0.0.1:5020 --device 1:evc-dcba --device 2:pt-float
  gasdtu simulate --serial /tmp/b --baud 9600 --parity even --device 1:evc-dcba \\
      --fault crc=0.1 --fault 2:slow=0.2:800ms --set 1:pressure=450

Faults (--fault, repeatable): [UNIT:]KIND[=PROBABILITY][:ARG]; without UNIT the fault hits
every unit, the probability defaults to 1.
  timeout          no reply to this request
  crc              RTU: reply with a corrupted CRC; TCP: reply with a lying length field
  exception[:N]    exception reply with code N (default 4, server device failure)
  garbage          random bytes instead of, or in front of, the reply
  slow:DURATION    reply after DURATION (e.g. slow=0.2:800ms)
  dead             never answer
  short            read reply one register (or byte of bits) short, byte count consistent
  wrong-tid        TCP: reply with another transaction id (RTU: no effect)
  trailing         read reply with two bytes after its data, inside the frame
  wrong-unit       reply from another unit id
  wrong-function   reply under another function code
  flood[:BYTES]    BYTES random bytes (default 4096, at most 1 MiB) instead of the reply
e.g. --fault crc=0.1 --fault slow=0.2:800ms --fault 3:exception=0.05:6 --fault 4:dead

Values follow the point names of the gas data model (daily flow cycle in UTC, rising
totalizers, pressure noise around 400 kPa, temperature around 10 °C); --set pins one.

NB-IoT modem (--modem bc95|bc66|bg96|sim7020|sim7080 --modem-port PATH, alone or with the
above): speaks AT on PATH, registers after --modem-register-delay, opens real TCP connections
to 127.0.0.1 only behind its socket commands, paced at --modem-up-bps / --modem-down-bps /
--modem-rtt.
  gasdtu simulate --modem bg96 --modem-port /tmp/modem --modem-control /tmp/modem.ctl \\
      --modem-fault urc=0.2 --modem-fault sleep:20s
Modem faults (--modem-fault, repeatable): KIND[=PROBABILITY][:ARG], probability per command.
  urc[:GAP]             a +CEREG URC inside replies, and about every GAP (default 5s)
  slow:DURATION         the reply comes DURATION late
  cme[:N]               the command fails with +CME ERROR N (default 100)
  sleep:IDLE            after IDLE without traffic the first command gets only a bare CRLF
  deregister[:DURATION] registration lost for DURATION (default 30s), sockets closed
  netclose              the network closes an open socket
  reboot                the module restarts after its reply (boot text, sockets gone)
  hang                  nothing at all (no echo, no reply) until a power cycle
Control socket (--modem-control PATH), one line per connection, one reply line:
  hang | power-cycle | reboot | deregister SECS | close-sockets |
  signal RSRP_DBM SINR_DB ECL | deny EMM_CAUSE | register | sim present|absent |
  fault SPEC | fault clear | stats (one JSON line)
  e.g. echo power-cycle | socat - UNIX-CONNECT:/tmp/modem.ctl")]
pub struct SimulateArgs {
    // Boxed: the options are large and live in the binary's subcommand enum.
    #[command(flatten)]
    opts: Box<SimulateOptions>,
}

/// The options of `gasdtu simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateOptions {
    /// Serve Modbus TCP on this address (e.g. 127.0.0.1:5020).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Serve RTU framing over TCP on this address (like a serial device server).
    #[arg(long, value_name = "ADDR")]
    rtu_over_tcp: Option<SocketAddr>,
    /// Serve RTU on this serial port (or one end of a pty pair); reopened if it vanishes.
    #[arg(long, value_name = "PATH")]
    serial: Option<String>,
    /// Serial line speed (with --serial).
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Serial parity (with --serial).
    #[arg(long, default_value = "none", value_parser = ["none", "even", "odd"])]
    parity: String,
    /// Serial data bits, 7 or 8 (with --serial).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(7..=8))]
    data_bits: u8,
    /// Serial stop bits, 1 or 2 (with --serial).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    stop_bits: u8,
    /// Answer at once on serial instead of after the frames' wire time at the baud.
    #[arg(long)]
    no_timing: bool,
    /// A device to simulate: UNIT:PROFILE (repeatable).
    #[arg(
        long = "device",
        value_name = "UNIT:PROFILE",
        required_unless_present = "modem"
    )]
    devices: Vec<String>,
    /// Longest register read a unit accepts (longer reads get exception 3): UNIT:N.
    #[arg(long = "max-registers", value_name = "UNIT:N")]
    max_registers: Vec<String>,
    /// Inject a fault (repeatable); see below.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// Pin a point to a value: UNIT:NAME=VALUE (repeatable).
    #[arg(long = "set", value_name = "UNIT:NAME=VALUE")]
    sets: Vec<String>,
    /// Seed for value noise and fault dice (random if absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Extra directory searched for profiles (before the default ones).
    #[arg(long = "profile-dir", value_name = "DIR")]
    profile_dirs: Vec<PathBuf>,
    /// Stop by itself after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Simulate an NB-IoT module on --modem-port: bc95, bc66, bg96, sim7020 or sim7080.
    #[arg(long, value_name = "MODEL", requires = "modem_port")]
    modem: Option<Model>,
    /// The modem's serial port (or one end of a pty pair).
    #[arg(long, value_name = "PATH", requires = "modem")]
    modem_port: Option<String>,
    /// The modem's serial line speed.
    #[arg(
        long,
        value_name = "BAUD",
        default_value_t = 115_200,
        requires = "modem"
    )]
    modem_baud: u32,
    /// Simulated uplink rate, bit/s.
    #[arg(long, value_name = "BPS", default_value_t = 12_000, requires = "modem",
          value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    modem_up_bps: u32,
    /// Simulated downlink rate, bit/s.
    #[arg(long, value_name = "BPS", default_value_t = 8_000, requires = "modem",
          value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    modem_down_bps: u32,
    /// Simulated round-trip time, 0.5s..2s.
    #[arg(long, value_name = "DURATION", default_value = "1.5s", requires = "modem",
          value_parser = parse_rtt)]
    modem_rtt: Duration,
    /// From power-on (or AT+CFUN=1) to registered.
    #[arg(long, value_name = "DUR", default_value = "2s", requires = "modem",
          value_parser = parse_register_delay)]
    modem_register_delay: Duration,
    /// Inject a modem fault (repeatable); see below.
    #[arg(long = "modem-fault", value_name = "SPEC", requires = "modem")]
    modem_faults: Vec<String>,
    /// Unix socket for runtime control of the modem; see below.
    #[arg(long, value_name = "PATH", requires = "modem")]
    modem_control: Option<PathBuf>,
}

fn parse_rtt(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if (Duration::from_millis(500)..=Duration::from_secs(2)).contains(&d) {
        Ok(d)
    } else {
        Err(format!("`{s}` is not between 0.5s and 2s"))
    }
}

fn parse_register_delay(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d <= Duration::from_secs(600) {
        Ok(d)
    } else {
        Err(format!("`{s}` is longer than 10m"))
    }
}

/// The modem simulator the flags describe, if any.
fn modem_config(args: &SimulateOptions) -> anyhow::Result<Option<ModemSimConfig>> {
    let (Some(model), Some(port)) = (args.modem, &args.modem_port) else {
        return Ok(None);
    };
    let faults = args
        .modem_faults
        .iter()
        .map(|s| ModemFault::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ModemSimConfig {
        settings: ModemSettings {
            model,
            register_delay: args.modem_register_delay,
            faults,
            seed: args.seed,
        },
        port: port.clone(),
        baud: args.modem_baud,
        link: LinkSpec {
            up_bps: args.modem_up_bps,
            down_bps: args.modem_down_bps,
            rtt: args.modem_rtt,
        },
        control: args.modem_control.clone(),
    }))
}

fn split_unit<'a>(flag: &str, s: &'a str) -> anyhow::Result<(u8, &'a str)> {
    let (u, rest) = s
        .split_once(':')
        .with_context(|| format!("--{flag} `{s}`: expected UNIT:..."))?;
    let unit = u
        .parse::<u8>()
        .ok()
        .filter(|&u| u >= 1)
        .with_context(|| format!("--{flag} `{s}`: unit `{u}` is not a number in 1..=255"))?;
    Ok((unit, rest))
}

/// Parse a --set value: bool, integer, float, else text.
fn parse_value(s: &str) -> Value {
    match s {
        "true" | "on" => Value::Bool(true),
        "false" | "off" => Value::Bool(false),
        _ => {
            if let Ok(i) = s.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(x) = s.parse::<f64>() {
                Value::Float(x)
            } else {
                Value::Text(s.to_string())
            }
        }
    }
}

/// What the simulator needs from a profile.
struct ProfileParts {
    id: String,
    max_registers: Option<u16>,
    points: Vec<PointSpec>,
    computed: Vec<ComputedSpec>,
}

/// The simulator the flags describe (profiles from the profile directories), and a one-line
/// description of its units.
fn build(args: &SimulateOptions) -> anyhow::Result<(Simulator, String)> {
    let mut dirs = args.profile_dirs.clone();
    dirs.extend(DEFAULT_PROFILE_DIRS.iter().map(PathBuf::from));
    build_with(args, |id| {
        let p = resolve_profile(id, &dirs).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            list.join("; ")
        })?;
        Ok(ProfileParts {
            id: p.id,
            max_registers: p.max_registers,
            points: p.points,
            computed: p.computed,
        })
    })
}

fn build_with(
    args: &SimulateOptions,
    resolve: impl Fn(&str) -> Result<ProfileParts, String>,
) -> anyhow::Result<(Simulator, String)> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut devices: Vec<SimDevice> = Vec::new();
    let mut summary = Vec::new();
    for spec in &args.devices {
        let (unit, profile_id) = split_unit("device", spec)?;
        if devices.iter().any(|d| d.unit() == unit) {
            bail!("--device `{spec}`: unit {unit} is given twice");
        }
        let profile = resolve(profile_id)
            .map_err(|e| anyhow::anyhow!("--device `{spec}`: profile `{profile_id}`: {e}"))?;
        let mut d = SimDevice::new(unit, &profile.id, profile.points, profile.computed)
            .with_seed(seed.wrapping_add(unit as u64));
        if let Some(n) = profile.max_registers {
            d = d.with_max_registers(n);
        }
        summary.push(format!(
            "unit {unit} = {} ({} points)",
            profile.id,
            d.points().len()
        ));
        devices.push(d);
    }
    for spec in &args.max_registers {
        let (unit, n) = split_unit("max-registers", spec)?;
        let n: u16 = n
            .parse()
            .ok()
            .filter(|n| (1..=125).contains(n))
            .with_context(|| format!("--max-registers `{spec}`: `{n}` is not in 1..=125"))?;
        let Some(d) = devices.iter_mut().find(|d| d.unit() == unit) else {
            bail!("--max-registers `{spec}`: no --device has unit {unit}");
        };
        *d = d.clone().with_max_registers(n);
    }
    let rules = args
        .faults
        .iter()
        .map(|s| FaultRule::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let fault_text: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    let sim = Simulator::new(devices, Faults::new(rules, args.seed));
    for spec in &args.sets {
        let (unit, rest) = split_unit("set", spec)?;
        let (name, value) = rest
            .split_once('=')
            .with_context(|| format!("--set `{spec}`: expected UNIT:NAME=VALUE"))?;
        sim.set(unit, name, parse_value(value))
            .with_context(|| format!("--set `{spec}`"))?;
    }
    let mut text = summary.join(", ");
    if !fault_text.is_empty() {
        text.push_str(&format!("; faults: {}", fault_text.join(", ")));
    }
    Ok((sim, text))
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: SimulateArgs, global: &Global) -> anyhow::Result<u8> {
    let args = args.opts;
    super::init_logging(global.log_level.as_deref().unwrap_or("info"));
    let modbus = args.tcp.is_some() || args.rtu_over_tcp.is_some() || args.serial.is_some();
    let modem = modem_config(&args)?;
    if !modbus && modem.is_none() {
        bail!("nothing to serve on: give --tcp ADDR, --rtu-over-tcp ADDR and/or --serial PATH (or --modem MODEL --modem-port PATH)");
    }
    if modbus && args.devices.is_empty() {
        bail!("--device UNIT:PROFILE is required with --tcp, --rtu-over-tcp or --serial");
    }
    if !modbus && !args.devices.is_empty() {
        bail!("--device needs a Modbus transport: give --tcp ADDR, --rtu-over-tcp ADDR and/or --serial PATH");
    }
    let (sim, mut units) = if modbus {
        build(&args)?
    } else {
        (Simulator::new(Vec::new(), Faults::none()), String::new())
    };
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut listening = Vec::new();
    if let Some(cfg) = modem {
        let what = format!(
            "modem {} on {} (up {} bit/s, down {} bit/s, rtt {}, registers after {}{}{})",
            cfg.settings.model,
            cfg.port,
            cfg.link.up_bps,
            cfg.link.down_bps,
            humantime::format_duration(cfg.link.rtt),
            humantime::format_duration(cfg.settings.register_delay),
            if cfg.settings.faults.is_empty() {
                String::new()
            } else {
                format!("; faults: {}", args.modem_faults.join(", "))
            },
            cfg.control
                .as_ref()
                .map(|p| format!("; control {}", p.display()))
                .unwrap_or_default()
        );
        let server = ModemServer::new(cfg, shutdown.clone())
            .context("cannot bind the modem control socket")?;
        listening.push(what);
        tasks.spawn(server.run());
    }
    if units.is_empty() {
        units = "no Modbus devices".into();
    }
    if let Some(addr) = args.tcp {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on tcp {addr}"))?;
        listening.push(format!("tcp {}", l.local_addr().unwrap_or(addr)));
        let (s, t) = (sim.clone(), shutdown.clone());
        tasks.spawn(async move { s.serve_tcp(l, t).await });
    }
    if let Some(addr) = args.rtu_over_tcp {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on rtu-over-tcp {addr}"))?;
        listening.push(format!("rtu-over-tcp {}", l.local_addr().unwrap_or(addr)));
        let (s, t) = (sim.clone(), shutdown.clone());
        tasks.spawn(async move { s.serve_rtu_over_tcp(l, t).await });
    }
    if let Some(port) = &args.serial {
        let settings = SerialSettings {
            port: port.clone(),
            baud: args.baud,
            parity: match args.parity.as_str() {
                "even" => Parity::Even,
                "odd" => Parity::Odd,
                _ => Parity::None,
            },
            data_bits: args.data_bits,
            stop_bits: args.stop_bits,
        };
        listening.push(format!(
            "serial {port} {} {}{}{}{}",
            settings.baud,
            settings.data_bits,
            &args.parity[..1].to_uppercase(),
            settings.stop_bits,
            if args.no_timing { " (no timing)" } else { "" }
        ));
        let (s, t, timing) = (sim.clone(), shutdown.clone(), !args.no_timing);
        tasks.spawn(async move { s.serve_serial(settings, timing, t).await });
    }
    tasks.close();
    eprintln!(
        "gasdtu simulate: serving on {}; {}",
        listening.join(", "),
        units
    );
    match args.duration {
        Some(d) => {
            tokio::select! {
                _ = terminated() => {}
                _ = tokio::time::sleep(d) => {}
            }
        }
        None => terminated().await,
    }
    shutdown.cancel();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        eprintln!("gasdtu simulate: transports did not stop within 5 s; exiting anyway");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataType, Table, WordOrder};
    use clap::Parser;

    /// Every profile id resolves to one `pressure` u16 point, except `missing`.
    fn fake(id: &str) -> Result<ProfileParts, String> {
        if id == "missing" {
            return Err("not found in /nowhere".into());
        }
        Ok(ProfileParts {
            id: id.into(),
            max_registers: None,
            points: vec![PointSpec {
                name: "pressure".into(),
                table: Table::HoldingRegister,
                address: 0,
                data_type: DataType::U16,
                order: WordOrder::Abcd,
                scale: 1.0,
                offset: 0.0,
                unit: None,
                writable: false,
                scale_from: None,
                publish: true,
            }],
            computed: vec![],
        })
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn args(argv: &[&str]) -> SimulateOptions {
        *Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))
            .unwrap()
            .args
            .opts
    }

    #[test]
    fn builds_devices_limits_faults_and_pins() {
        let a = args(&[
            "--tcp",
            "127.0.0.1:0",
            "--device",
            "1:any",
            "--device",
            "7:other",
            "--max-registers",
            "7:4",
            "--fault",
            "7:exception=0.5:6",
            "--set",
            "1:pressure=450",
            "--seed",
            "3",
        ]);
        let (sim, text) = build_with(&a, fake).unwrap();
        assert_eq!(sim.units(), vec![1, 7]);
        assert_eq!(sim.with_device(7, |d| d.max_registers()).unwrap(), 4);
        assert!(text.contains("unit 7 = other"), "{text}");
        assert!(text.contains("exception:6"), "{text}");
        let pinned = sim
            .with_device(1, |d| d.values_at(std::time::SystemTime::now()))
            .unwrap();
        assert!(pinned.contains(&("pressure".into(), Value::Int(450))));
    }

    #[test]
    fn modem_flags() {
        let a = args(&[
            "--modem",
            "bc95",
            "--modem-port",
            "/tmp/x",
            "--modem-rtt",
            "0.5s",
            "--modem-fault",
            "sleep:10s",
            "--modem-control",
            "/tmp/x.ctl",
        ]);
        let cfg = modem_config(&a).unwrap().unwrap();
        assert_eq!(cfg.settings.model, Model::Bc95);
        assert_eq!(cfg.link.rtt, Duration::from_millis(500));
        assert_eq!(cfg.link.up_bps, 12_000);
        assert_eq!(cfg.link.down_bps, 8_000);
        assert_eq!(cfg.settings.register_delay, Duration::from_secs(2));
        assert_eq!(cfg.settings.faults.len(), 1);
        assert!(
            modem_config(&args(&["--device", "1:a", "--tcp", "127.0.0.1:0"]))
                .unwrap()
                .is_none()
        );
        let bad_fault = args(&["--modem", "bg96", "--modem-port", "p", "--modem-fault", "x"]);
        assert!(modem_config(&bad_fault).is_err());
        for argv in [
            &["--modem", "bg96"][..],
            &["--modem", "nokia", "--modem-port", "p"],
            &["--modem", "bg96", "--modem-port", "p", "--modem-rtt", "3s"],
            &[
                "--modem",
                "bg96",
                "--modem-port",
                "p",
                "--modem-rtt",
                "100ms",
            ],
            &["--modem-port", "p", "--device", "1:a"],
        ] {
            let parsed =
                Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()));
            assert!(parsed.is_err(), "{argv:?} accepted");
        }
    }

    #[test]
    fn refuses_bad_flags() {
        for argv in [
            &["--device", "x:evc"][..],
            &["--device", "0:evc"],
            &["--device", "1:a", "--device", "1:b"],
            &["--device", "1:a", "--max-registers", "2:10"],
            &["--device", "1:a", "--max-registers", "1:200"],
            &["--device", "1:a", "--fault", "boom"],
            &["--device", "1:a", "--set", "1:nope=3"],
            &["--device", "1:a", "--set", "1:pressure"],
            &["--device", "1:missing"],
        ] {
            assert!(build_with(&args(argv), fake).is_err(), "{argv:?} accepted");
        }
    }
}
