//! `gasdtu read`: one-shot read from one unit, decoded with the daemon's own codec and printed
//! as a table (like mbpoll, but showing engineering values) or as JSON lines. Two ways to name
//! what to read: raw addressing (`--bus/--tcp/--serial/--rtu-over-tcp`, `--unit`, `--table`,
//! `--address` in decimal, hex or, with `--modicon`, as a 4xxxx/3xxxx register number, and the
//! value options of `values::ValueArgs`), or a configured device and point (`gasdtu read evc1
//! pressure`; without a point every point of the device), which take bus, unit, address, type,
//! order and scale from the config (`named`). The read goes through the running daemon when
//! it owns the bus (see `busargs::BusClient`). A reply with fewer registers than asked for is
//! an error, as in the daemon. Exit 0 ok, 1 when a read fails or an item cannot be decoded, 2
//! on bad arguments.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::modbus::scale_from::{self, Decimals};
use crate::model::{Table, Value};

use super::busargs::{BusArgs, BusClient};
use super::named::{self, Named, Reading};
use super::values::{emit, json_value, show_raw, Codec, TableArg, ValueArgs};
use super::Global;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Addresses are 0-based protocol addresses as sent on the wire, in decimal or \
    hex (--address 22 or 0x16). With --modicon the address is a 1-based register number whose \
    first digit names the table: 40023 (or 400023) is holding register address 22, 30011 is \
    input register address 10.\n\nA configured point: `gasdtu read evc1 pressure` (bus, unit, \
    address, type, order and scale from --config); `gasdtu read evc1` reads every point of \
    the device.\n\nExit status: 0 read and decoded, 1 Modbus error, short reply or \
    undecodable value, 2 bad arguments."
)]
pub struct ReadArgs {
    /// A device of the configuration (--config) instead of raw addressing.
    #[arg(value_name = "DEVICE")]
    pub device: Option<String>,
    /// One point of DEVICE [default: every point of the device].
    #[arg(value_name = "POINT", requires = "device")]
    pub point: Option<String>,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Modbus unit id (slave address), 1-247 (up to 255 for TCP) [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub unit: Option<u8>,
    /// Which table to read [default: holding; with --modicon the number's first digit].
    #[arg(long, value_enum)]
    pub table: Option<TableArg>,
    /// First address: 0-based, decimal or hex (22, 0x16); a 1-based register number such as
    /// 40023 with --modicon.
    #[arg(long, value_name = "N")]
    pub address: Option<String>,
    /// Read --address as a Modicon register number (4xxxx / 4xxxxx holding, 3xxxx input,
    /// 1xxxx discrete input, 0xxxx coil).
    #[arg(long)]
    pub modicon: bool,
    /// Registers (or bits) to read [default: one item of the type].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub count: Option<u16>,
    #[command(flatten)]
    pub value: ValueArgs,
    /// One JSON object per item on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A resolved read request: what the arguments mean once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPlan {
    pub unit: u8,
    pub table: Table,
    pub address: u16,
    pub count: u16,
    pub codec: Codec,
    /// How a Modicon number was read, for stderr.
    pub note: Option<String>,
}

/// Check the arguments of a raw read. Pure; errors are user messages.
pub fn plan_read(args: &ReadArgs) -> Result<ReadPlan, String> {
    let text = args
        .address
        .as_deref()
        .ok_or("--address is required (or name a configured DEVICE [POINT])")?;
    let at = super::address::resolve(
        text,
        args.modicon,
        args.table.map(Table::from),
        Table::HoldingRegister,
    )?;
    let table = at.table;
    let codec = args.value.codec(table, args.count)?;
    let data_type = codec.data_type;
    let width = data_type.width();
    let count = args.count.unwrap_or(width);
    if count > table.max_read() {
        return Err(format!(
            "--count {count}: a single read of the {table} table is limited to {} {}",
            table.max_read(),
            if table.is_bits() { "bits" } else { "registers" }
        ));
    }
    if count % width != 0 {
        return Err(format!(
            "--count {count} is not a whole number of {data_type} items ({width} registers each)"
        ));
    }
    if at.address as u32 + count as u32 > 65536 {
        return Err(format!(
            "--address {text} with --count {count} runs past address 65535",
        ));
    }
    Ok(ReadPlan {
        unit: args.unit.unwrap_or(1),
        table,
        address: at.address,
        count,
        codec,
        note: at.note,
    })
}

/// The raw options given with a DEVICE (which brings its own), for the refusal.
fn raw_options(args: &ReadArgs) -> Vec<&'static str> {
    let t = &args.bus.transport;
    let mut v: Vec<&'static str> = [
        (t.serial.is_some(), "--serial"),
        (t.tcp.is_some(), "--tcp"),
        (t.rtu_over_tcp.is_some(), "--rtu-over-tcp"),
        (t.bus.is_some(), "--bus"),
        (args.unit.is_some(), "--unit"),
        (args.table.is_some(), "--table"),
        (args.address.is_some(), "--address"),
        (args.modicon, "--modicon"),
        (args.count.is_some(), "--count"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    v.extend(args.value.given());
    v
}

/// A reply must carry what was asked for: fewer registers (or bits) is an error, as in the
/// daemon's decoder ("expected 2 registers, got 0").
pub fn check_count(table: Table, asked: u16, got: usize) -> Result<(), String> {
    if got == asked as usize {
        return Ok(());
    }
    let what = if table.is_bits() { "bits" } else { "registers" };
    Err(format!("expected {asked} {what}, got {got}"))
}

/// One decoded item of a read.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub address: u16,
    pub raw: Vec<u16>,
    pub value: Result<Value, crate::modbus::registers::DecodeError>,
}

/// Split the registers of a read into items and decode each. Pure.
pub fn decode_items(plan: &ReadPlan, regs: &[u16]) -> Vec<Item> {
    let width = plan.codec.data_type.width() as usize;
    regs.chunks(width)
        .enumerate()
        .map(|(k, raw)| Item {
            address: plan.address.wrapping_add((k * width) as u16),
            raw: raw.to_vec(),
            value: plan.codec.decode(raw),
        })
        .collect()
}

/// JSON lines, one per item; true when an item could not be decoded.
pub fn render_json(plan: &ReadPlan, items: &[Item]) -> (String, bool) {
    let mut out = String::new();
    let mut failed = false;
    for it in items {
        let mut line = serde_json::json!({
            "unit": plan.unit,
            "table": plan.table.to_string(),
            "address": it.address,
            "type": plan.codec.data_type.to_string(),
            "order": plan.codec.order.to_string(),
            "raw": it.raw,
            "hex": show_raw(plan.table, &it.raw),
        });
        match &it.value {
            Ok(x) => {
                line["value"] = json_value(x);
                line["text"] = plan.codec.show(x).into();
            }
            Err(e) => {
                failed = true;
                line["error"] = e.to_string().into();
            }
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
    (out, failed)
}

/// The human table: a heading naming unit, table and type, then address, raw, value per
/// item; true when an item could not be decoded.
pub fn render_table(plan: &ReadPlan, items: &[Item]) -> (String, bool) {
    let mut failed = false;
    let heading = format!(
        "unit {}  {}  {}",
        plan.unit,
        plan.table,
        plan.codec.describe()
    );
    let rows: Vec<(String, String, String)> = items
        .iter()
        .map(|it| {
            let value = match &it.value {
                Ok(x) => plan.codec.show(x),
                Err(e) => {
                    failed = true;
                    format!("error: {e}")
                }
            };
            (it.address.to_string(), show_raw(plan.table, &it.raw), value)
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(7);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(3);
    let mut out = format!("{heading}\n{:>w0$}  {:<w1$}  value\n", "address", "raw");
    for (a, r, x) in rows {
        out.push_str(&format!("{a:>w0$}  {r:<w1$}  {x}\n"));
    }
    (out, failed)
}

pub async fn run(args: ReadArgs, global: &Global) -> anyhow::Result<u8> {
    super::init_logging(global.log_level.as_deref().unwrap_or("error"));
    match args.device.clone() {
        Some(device) => run_named(&args, &device, global).await,
        None => run_raw(&args, global).await,
    }
}

async fn run_raw(args: &ReadArgs, global: &Global) -> anyhow::Result<u8> {
    let plan = match plan_read(args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("gasdtu read: {msg}");
            return Ok(2);
        }
    };
    if let Some(note) = &plan.note {
        eprintln!("gasdtu read: {note}");
    }
    let mut client = match BusClient::open(&args.bus, global, Duration::from_secs(1), "read").await
    {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let what = format!("{} {} (count {})", plan.table, plan.address, plan.count);
    let failed = |e: &dyn std::fmt::Display| {
        if args.json {
            let line = serde_json::json!({
                "unit": plan.unit, "table": plan.table.to_string(), "address": plan.address,
                "count": plan.count, "error": e.to_string(),
            });
            emit(&format!("{line}\n"));
        }
        eprintln!("gasdtu read: unit {}: {e}, reading {what}", plan.unit);
        Ok(1)
    };
    let regs = match client
        .read(plan.unit, plan.table, plan.address, plan.count)
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(&e),
        Err(e) => return failed(&e),
    };
    if let Err(e) = check_count(plan.table, plan.count, regs.len()) {
        return failed(&e);
    }
    let items = decode_items(&plan, &regs);
    let (text, failed) = if args.json {
        render_json(&plan, &items)
    } else {
        render_table(&plan, &items)
    };
    emit(&text);
    Ok(if failed { 1 } else { 0 })
}

/// `gasdtu read DEVICE [POINT]`: the points from the config, each read on its own.
async fn run_named(args: &ReadArgs, device: &str, global: &Global) -> anyhow::Result<u8> {
    if let Err(msg) = named::refuse_raw_options("read", &raw_options(args)) {
        eprintln!("gasdtu read: {msg}");
        return Ok(2);
    }
    let n: Named = match crate::config::load_file(&global.config)
        .map_err(|e| e.to_string())
        .and_then(|l| named::resolve(&l.config, device, args.point.as_deref()))
    {
        Ok(n) => n,
        Err(msg) => {
            eprintln!("gasdtu read: {msg}");
            return Ok(2);
        }
    };
    let mut bus = args.bus.clone();
    bus.transport.bus = Some(n.bus.clone());
    let mut client = match BusClient::open(&bus, global, Duration::from_secs(1), "read").await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut readings: BTreeMap<String, Reading> = BTreeMap::new();
    for p in &n.reads {
        let width = p.width();
        let reading = match client.read(n.unit, p.table, p.address, width).await {
            Ok(Ok(regs)) => {
                // Decoded exactly as the poller decodes this point.
                // (a `scale_from` point raw for now: its decimals are applied below).
                let value = check_count(p.table, width, regs.len()).and_then(|()| {
                    if p.scale_from.is_some() {
                        crate::modbus::registers::decode_raw(p.data_type, p.order, &regs)
                    } else {
                        crate::modbus::registers::decode_point(p, &regs)
                    }
                    .map_err(|e| e.to_string())
                });
                Reading { raw: regs, value }
            }
            Ok(Err(e)) => Reading {
                raw: Vec::new(),
                value: Err(e.to_string()),
            },
            Err(e) => {
                // The daemon refused or the conversation broke: nothing more will work.
                eprintln!("gasdtu read: {e}");
                return Ok(1);
            }
        };
        if let Err(e) = &reading.value {
            eprintln!(
                "gasdtu read: {}.{}: unit {}: {e}, reading {} {}",
                n.device, p.name, n.unit, p.table, p.address
            );
        }
        readings.insert(p.name.clone(), reading);
    }
    // `scale_from`: raw x 10^-decimals, then scale and offset, as the poller does.
    for p in n.reads.iter().filter(|p| p.scale_from.is_some()) {
        let decimals = match p.scale_from.as_deref().and_then(|f| readings.get(f)) {
            Some(Reading { value: Ok(k), .. }) => Decimals::Read(k.clone()),
            Some(Reading { value: Err(e), .. }) => Decimals::Bad(e.clone()),
            None => Decimals::Missing,
        };
        if let Some(r) = readings.get_mut(&p.name) {
            if let Ok(raw) = &r.value {
                r.value = scale_from::finish(p, raw.clone(), decimals).map_err(|e| e.to_string());
            }
        }
    }
    let (text, failed) = if args.json {
        named::render_json(&n, &readings)
    } else {
        named::render_table(&n, &readings)
    };
    emit(&text);
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DataType;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        read: ReadArgs,
    }

    fn parse(args: &str) -> Result<ReadArgs, String> {
        let argv = format!("t {args}");
        Cmd::try_parse_from(argv.split_whitespace())
            .map(|c| c.read)
            .map_err(|e| e.to_string())
    }

    fn plan(args: &str) -> Result<ReadPlan, String> {
        plan_read(&parse(&format!("--tcp 127.0.0.1:502 {args}"))?)
    }

    #[test]
    fn read_arguments() {
        use DataType as T;
        use Table::*;
        // (arguments, table, address, count, type)
        #[rustfmt::skip]
        let ok: &[(&str, Table, u16, u16, DataType)] = &[
            ("--address 0", HoldingRegister, 0, 1, T::U16),
            ("--address 0x16", HoldingRegister, 22, 1, T::U16),
            ("--address 7 --type f32", HoldingRegister, 7, 2, T::F32),
            ("--address 7 --type f32 --count 10", HoldingRegister, 7, 10, T::F32),
            ("--table input --address 3 --type f64", InputRegister, 3, 4, T::F64),
            ("--table coil --address 0 --count 16", Coil, 0, 16, T::Bool),
            ("--table discrete --address 5 --type bit", DiscreteInput, 5, 1, T::Bool),
            ("--address 0 --type bit --bit 15 --count 3", HoldingRegister, 0, 3, T::BitOfRegister(15)),
            ("--address 10 --type string --count 8", HoldingRegister, 10, 8, T::String(16)),
            ("--address 10 --type string --length 5", HoldingRegister, 10, 3, T::String(5)),
            ("--address 65534 --type u32", HoldingRegister, 65534, 2, T::U32),
            ("--address 0xFFFE --type u32", HoldingRegister, 65534, 2, T::U32),
            ("--table coil --address 0 --count 2000", Coil, 0, 2000, T::Bool),
            ("--modicon --address 40023 --type f32", HoldingRegister, 22, 2, T::F32),
            ("--modicon --address 400023", HoldingRegister, 22, 1, T::U16),
            ("--modicon --address 30011", InputRegister, 10, 1, T::U16),
            ("--modicon --address 10001", DiscreteInput, 0, 1, T::Bool),
            ("--modicon --address 00017 --count 8", Coil, 16, 8, T::Bool),
        ];
        for (args, table, address, count, data_type) in ok {
            let p = plan(args).unwrap_or_else(|e| panic!("{args}: {e}"));
            assert_eq!(
                (p.table, p.address, p.count, p.codec.data_type),
                (*table, *address, *count, *data_type),
                "{args}"
            );
            assert_eq!(p.note.is_some(), args.contains("--modicon"), "{args}");
        }
        // (arguments, fragment of the error)
        let bad: &[(&str, &str)] = &[
            (
                "--address 0 --type f32 --count 3",
                "not a whole number of f32",
            ),
            ("--address 0 --count 126", "limited to 125 registers"),
            ("--address 65535 --type u32", "runs past address 65535"),
            ("--table coil --address 0 --type u16", "holds single bits"),
            ("--address 0 --type bit", "needs --bit N"),
            ("--address 0 --type u16 --bit 3", "--bit only applies"),
            ("--address 0 --type string", "needs --length"),
            ("--address 0 --length 4", "--length only applies"),
            ("--address 0 --type bit --bit 16", "invalid value"),
            ("--address 0 --unit 0", "invalid value"),
            ("--address -1", "unexpected argument"),
            ("--address 0x1G", "decimal (22) or hex (0x16)"),
            ("--address 70000", "decimal (22) or hex (0x16)"),
            ("--type u16", "--address is required"),
            ("--address 0 --order ABDC", "invalid value"),
            (
                "--address 0 --decimals 2 --scale 0.01",
                "cannot be used with",
            ),
            (
                "--address 0 --scale 0.01 --decimals 2",
                "cannot be used with",
            ),
            ("--address 0 --decimals 13", "invalid value"),
            (
                "--address 0 --type f32 --decimals 1",
                "integer and BCD types only, not f32 (a float",
            ),
            (
                "--address 0 --type bit --bit 1 --decimals 1",
                "integer and BCD types only",
            ),
            ("--modicon --address 0x16", "not a decimal register number"),
            (
                "--modicon --address 30011 --table holding",
                "names an input register",
            ),
        ];
        for (args, want) in bad {
            let e = plan(args).unwrap_err();
            assert!(e.contains(want), "{args}: {e}");
        }
    }

    #[test]
    fn decimals_are_an_exact_decimal_scale() {
        let p = plan("--address 4 --type i16 --decimals 2").unwrap();
        assert_eq!(p.codec.scale, 0.01);
        let items = decode_items(&p, &[(-1234i16) as u16]);
        assert_eq!(items[0].value, Ok(Value::Float(-12.34)));
        assert_eq!(p.codec.show(items[0].value.as_ref().unwrap()), "-12.34");
        let p = plan("--address 0 --type bcd48 --decimals 4").unwrap();
        let items = decode_items(&p, &[0x0000, 0x9876, 0x5432]);
        assert_eq!(items[0].value, Ok(Value::Float(9876.5432)));
        assert_eq!(plan("--address 0 --decimals 0").unwrap().codec.scale, 1.0);
    }

    #[test]
    fn a_configured_device_refuses_raw_options() {
        let a = parse("evc1 pressure --json --timeout 2s --direct").unwrap();
        assert_eq!(a.device.as_deref(), Some("evc1"));
        assert_eq!(a.point.as_deref(), Some("pressure"));
        assert!(raw_options(&a).is_empty());
        let a = parse("evc1 --tcp h:1 --address 3 --scale 0.1 --unit 2").unwrap();
        assert_eq!(raw_options(&a), ["--tcp", "--unit", "--address", "--scale"]);
        let a = parse("evc1 pressure --decimals 1").unwrap();
        assert_eq!(raw_options(&a), ["--decimals"]);
    }

    #[test]
    fn a_short_reply_is_an_error() {
        assert_eq!(check_count(Table::HoldingRegister, 2, 2), Ok(()));
        assert_eq!(
            check_count(Table::HoldingRegister, 2, 0),
            Err("expected 2 registers, got 0".into())
        );
        assert_eq!(
            check_count(Table::Coil, 8, 3),
            Err("expected 8 bits, got 3".into())
        );
    }

    #[test]
    fn items_are_decoded_one_type_width_at_a_time() {
        let p = plan("--address 100 --type i32 --order CDAB --count 4").unwrap();
        let items = decode_items(&p, &[0x32EB, 0xF8A4, 0x0001, 0x0000]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].address, 100);
        assert_eq!(items[0].value, Ok(Value::Int(-123_456_789)));
        assert_eq!(items[1].address, 102);
        assert_eq!(items[1].value, Ok(Value::Int(1)));
        assert_eq!(show_raw(p.table, &items[0].raw), "32EB F8A4");
    }

    #[test]
    fn table_and_json_rendering() {
        let mut p = plan("--address 7 --type bcd16 --count 2 --scale 0.1").unwrap();
        p.unit = 3;
        let items = decode_items(&p, &[0x1234, 0x12A4]);
        let (text, failed) = render_table(&p, &items);
        assert!(failed);
        assert_eq!(
            text,
            "unit 3  holding  bcd16  x 0.1 + 0\n\
             address  raw   value\n\
             \x20     7  1234  123.4\n\
             \x20     8  12A4  error: invalid BCD digit in register value 0x12A4\n"
        );
        let (json, failed) = render_json(&p, &items);
        assert!(failed);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["value"], serde_json::json!(123.4));
        assert_eq!(lines[0]["table"], "holding");
        assert_eq!(lines[0]["unit"], 3);
        assert_eq!(lines[0]["raw"], serde_json::json!([0x1234]));
        assert_eq!(lines[1]["address"], 8);
        assert!(lines[1]["error"].as_str().unwrap().contains("0x12A4"));
    }
}
