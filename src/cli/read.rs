//! `gasdtu read`: one-shot read of registers or bits from one unit, decoded with the daemon's
//! own codec and printed as a table (like mbpoll, but showing engineering values) or as JSON
//! lines. Also owns the value options shared with `gasdtu write` (`ValueArgs`: type, bit,
//! length, order, scale, offset) and the way values are shown. The read goes through the
//! running daemon when it owns the bus (see `busargs::BusClient`). Exit 0 ok, 1 when the read
//! fails or an item cannot be decoded, 2 on bad arguments.

use std::time::Duration;

use crate::modbus::registers;
use crate::model::{DataType, Table, Value, WordOrder};

use super::busargs::{BusArgs, BusClient};
use super::Global;

/// The four Modbus tables, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableArg {
    /// Holding registers (function 3).
    Holding,
    /// Input registers (function 4).
    Input,
    /// Coils (function 1).
    Coil,
    /// Discrete inputs (function 2).
    Discrete,
}

impl From<TableArg> for Table {
    fn from(t: TableArg) -> Table {
        match t {
            TableArg::Holding => Table::HoldingRegister,
            TableArg::Input => Table::InputRegister,
            TableArg::Coil => Table::Coil,
            TableArg::Discrete => Table::DiscreteInput,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TypeArg {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    Bcd16,
    Bcd32,
    /// Twelve BCD digits in three registers.
    Bcd48,
    /// u32 integer part + f32 fraction in four registers.
    Intreal,
    String,
    /// A coil or discrete input; on a register table, bit --bit N of each register.
    Bit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderArg {
    #[value(name = "ABCD")]
    Abcd,
    #[value(name = "CDAB")]
    Cdab,
    #[value(name = "BADC")]
    Badc,
    #[value(name = "DCBA")]
    Dcba,
}

impl From<OrderArg> for WordOrder {
    fn from(o: OrderArg) -> WordOrder {
        match o {
            OrderArg::Abcd => WordOrder::Abcd,
            OrderArg::Cdab => WordOrder::Cdab,
            OrderArg::Badc => WordOrder::Badc,
            OrderArg::Dcba => WordOrder::Dcba,
        }
    }
}

/// How registers are turned into a value (shared with `gasdtu write`).
#[derive(Debug, Clone, clap::Args)]
pub struct ValueArgs {
    /// Data type [default: u16 on register tables, bit on coils and discrete inputs].
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub data_type: Option<TypeArg>,
    /// With --type bit on a register table: which bit of the register (0 = least significant).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=15))]
    pub bit: Option<u8>,
    /// With --type string: length in bytes [default: two per register read].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(1..=250))]
    pub length: Option<u16>,
    /// Byte and word order of multi-register values (ABCD = big-endian, CDAB = word swap,
    /// BADC = byte swap, DCBA = fully reversed).
    #[arg(long, value_enum, default_value = "ABCD")]
    pub order: OrderArg,
    /// Engineering value = raw * scale + offset.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub scale: f64,
    /// Added after scaling (engineering value = raw * scale + offset).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub offset: f64,
}

impl ValueArgs {
    /// The codec type for `table`; `count` (registers asked for) sizes a string without
    /// --length. Errors are messages for the user (bad arguments).
    pub fn resolve(&self, table: Table, count: Option<u16>) -> Result<DataType, String> {
        let t = self.data_type.unwrap_or(if table.is_bits() {
            TypeArg::Bit
        } else {
            TypeArg::U16
        });
        if table.is_bits() && t != TypeArg::Bit {
            return Err(format!(
                "the {table} table holds single bits: use --type bit (or leave --type out)"
            ));
        }
        if self.bit.is_some() && (t != TypeArg::Bit || table.is_bits()) {
            return Err("--bit only applies to --type bit on a register table".to_string());
        }
        if self.length.is_some() && t != TypeArg::String {
            return Err("--length only applies to --type string".to_string());
        }
        Ok(match t {
            TypeArg::U16 => DataType::U16,
            TypeArg::I16 => DataType::I16,
            TypeArg::U32 => DataType::U32,
            TypeArg::I32 => DataType::I32,
            TypeArg::U64 => DataType::U64,
            TypeArg::I64 => DataType::I64,
            TypeArg::F32 => DataType::F32,
            TypeArg::F64 => DataType::F64,
            TypeArg::Bcd16 => DataType::Bcd16,
            TypeArg::Bcd32 => DataType::Bcd32,
            TypeArg::Bcd48 => DataType::Bcd48,
            TypeArg::Intreal => DataType::IntReal,
            TypeArg::Bit if table.is_bits() => DataType::Bool,
            TypeArg::Bit => match self.bit {
                Some(n) => DataType::BitOfRegister(n),
                None => {
                    return Err("--type bit on a register table needs --bit N (0-15)".to_string())
                }
            },
            TypeArg::String => match (self.length, count) {
                (Some(n), _) => DataType::String(n),
                (None, Some(c)) if c > 0 && c <= 125 => DataType::String(c * 2),
                _ => {
                    return Err(
                        "--type string needs --length BYTES or --count REGISTERS".to_string()
                    )
                }
            },
        })
    }

    pub fn order(&self) -> WordOrder {
        self.order.into()
    }

    pub fn scaled(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Addresses are 0-based protocol addresses, as sent on the wire: \
    holding register 40001 of a manual is --table holding --address 0, 30011 is \
    --table input --address 10.\n\nExit status: 0 read and decoded, 1 Modbus error or \
    undecodable value, 2 bad arguments."
)]
pub struct ReadArgs {
    #[command(flatten)]
    pub bus: BusArgs,
    /// Modbus unit id (slave address), 1-247 (up to 255 for TCP).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub unit: u8,
    /// Which table to read.
    #[arg(long, value_enum, default_value_t = TableArg::Holding)]
    pub table: TableArg,
    /// First address, 0-based (register 40001 is address 0).
    #[arg(long, value_name = "N")]
    pub address: u16,
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
    pub table: Table,
    pub address: u16,
    pub count: u16,
    pub data_type: DataType,
}

/// Check the arguments of a read of `data_type` items. Pure; errors are user messages.
pub fn plan_read(args: &ReadArgs) -> Result<ReadPlan, String> {
    let table: Table = args.table.into();
    let data_type = args.value.resolve(table, args.count)?;
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
    if args.address as u32 + count as u32 > 65536 {
        return Err(format!(
            "--address {} with --count {count} runs past address 65535",
            args.address
        ));
    }
    Ok(ReadPlan {
        table,
        address: args.address,
        count,
        data_type,
    })
}

/// One decoded item of a read.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub address: u16,
    pub raw: Vec<u16>,
    pub value: Result<Value, registers::DecodeError>,
}

/// Split the registers of a read into items and decode each. Pure.
pub fn decode_items(plan: &ReadPlan, v: &ValueArgs, regs: &[u16]) -> Vec<Item> {
    let width = plan.data_type.width() as usize;
    regs.chunks(width)
        .enumerate()
        .map(|(k, raw)| Item {
            address: plan.address.wrapping_add((k * width) as u16),
            raw: raw.to_vec(),
            value: registers::decode_raw(plan.data_type, v.order(), raw)
                .map(|x| registers::scale(x, v.scale, v.offset)),
        })
        .collect()
}

/// Registers as hex words ("4049 0FDB"), bits as 0/1.
pub fn show_raw(table: Table, raw: &[u16]) -> String {
    raw.iter()
        .map(|r| {
            if table.is_bits() {
                r.to_string()
            } else {
                format!("{r:04X}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value as a person wants to read it: f32 values with f32 precision, scaled values without
/// the binary noise of the multiplication (7 significant digits for f32, 12 for the rest).
/// Very small or very large magnitudes use exponent notation.
pub fn show_value(value: &Value, data_type: DataType, scaled: bool) -> String {
    let Value::Float(x) = value else {
        return value.to_string();
    };
    let x = *x;
    if !x.is_finite() {
        return x.to_string();
    }
    let exp = x != 0.0 && !(1e-4..1e15).contains(&x.abs());
    if scaled {
        // An f32 carries about 7 significant digits; scaling must not invent more.
        let rounded: f64 = if data_type == DataType::F32 {
            format!("{x:.6e}")
        } else {
            format!("{x:.11e}")
        }
        .parse()
        .unwrap_or(x);
        if exp {
            format!("{rounded:e}")
        } else {
            rounded.to_string()
        }
    } else if data_type == DataType::F32 {
        let x = x as f32;
        if exp {
            format!("{x:e}")
        } else {
            x.to_string()
        }
    } else if exp {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// Write to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Float(x) if !x.is_finite() => serde_json::Value::Null,
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

/// JSON lines, one per item; true when an item could not be decoded.
pub fn render_json(unit: u8, plan: &ReadPlan, v: &ValueArgs, items: &[Item]) -> (String, bool) {
    let mut out = String::new();
    let mut failed = false;
    for it in items {
        let mut line = serde_json::json!({
            "unit": unit,
            "table": plan.table.to_string(),
            "address": it.address,
            "type": plan.data_type.to_string(),
            "order": v.order().to_string(),
            "raw": it.raw,
            "hex": show_raw(plan.table, &it.raw),
        });
        match &it.value {
            Ok(x) => {
                line["value"] = json_value(x);
                line["text"] = show_value(x, plan.data_type, v.scaled()).into();
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
pub fn render_table(unit: u8, plan: &ReadPlan, v: &ValueArgs, items: &[Item]) -> (String, bool) {
    let mut failed = false;
    let mut heading = format!("unit {unit}  {}  {}", plan.table, plan.data_type);
    if plan.data_type.width() > 1 {
        heading.push_str(&format!(" {}", v.order()));
    }
    if v.scaled() {
        heading.push_str(&format!("  x {} + {}", v.scale, v.offset));
    }
    let rows: Vec<(String, String, String)> = items
        .iter()
        .map(|it| {
            let value = match &it.value {
                Ok(x) => show_value(x, plan.data_type, v.scaled()),
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
    let plan = match plan_read(&args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("gasdtu read: {msg}");
            return Ok(2);
        }
    };
    let mut client = match BusClient::open(&args.bus, global, Duration::from_secs(1), "read").await
    {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let what = format!("{} {} (count {})", plan.table, plan.address, plan.count);
    let failed = |e: &dyn std::fmt::Display| {
        if args.json {
            let line = serde_json::json!({
                "unit": args.unit, "table": plan.table.to_string(), "address": plan.address,
                "count": plan.count, "error": e.to_string(),
            });
            emit(&format!("{line}\n"));
        }
        eprintln!("gasdtu read: unit {}: {e}, reading {what}", args.unit);
        Ok(1)
    };
    let regs = match client
        .read(args.unit, plan.table, plan.address, plan.count)
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(&e),
        Err(e) => return failed(&e),
    };
    let items = decode_items(&plan, &args.value, &regs);
    let (text, failed) = if args.json {
        render_json(args.unit, &plan, &args.value, &items)
    } else {
        render_table(args.unit, &plan, &args.value, &items)
    };
    emit(&text);
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        read: ReadArgs,
    }

    fn plan(args: &str) -> Result<ReadPlan, String> {
        let argv = format!("t --tcp 127.0.0.1:502 {args}");
        let cmd = Cmd::try_parse_from(argv.split_whitespace()).map_err(|e| e.to_string())?;
        plan_read(&cmd.read)
    }

    #[test]
    fn read_arguments() {
        use DataType as T;
        use Table::*;
        // (arguments, table, address, count, type)
        #[rustfmt::skip]
        let ok: &[(&str, Table, u16, u16, DataType)] = &[
            ("--address 0", HoldingRegister, 0, 1, T::U16),
            ("--address 7 --type f32", HoldingRegister, 7, 2, T::F32),
            ("--address 7 --type f32 --count 10", HoldingRegister, 7, 10, T::F32),
            ("--table input --address 3 --type f64", InputRegister, 3, 4, T::F64),
            ("--table coil --address 0 --count 16", Coil, 0, 16, T::Bool),
            ("--table discrete --address 5 --type bit", DiscreteInput, 5, 1, T::Bool),
            ("--address 0 --type bit --bit 15 --count 3", HoldingRegister, 0, 3, T::BitOfRegister(15)),
            ("--address 10 --type string --count 8", HoldingRegister, 10, 8, T::String(16)),
            ("--address 10 --type string --length 5", HoldingRegister, 10, 3, T::String(5)),
            ("--address 65534 --type u32", HoldingRegister, 65534, 2, T::U32),
            ("--table coil --address 0 --count 2000", Coil, 0, 2000, T::Bool),
        ];
        for (args, table, address, count, data_type) in ok {
            let want = ReadPlan {
                table: *table,
                address: *address,
                count: *count,
                data_type: *data_type,
            };
            assert_eq!(plan(args), Ok(want), "{args}");
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
            ("--type u16", "--address"),
            ("--address 0 --order ABDC", "invalid value"),
        ];
        for (args, want) in bad {
            let e = plan(args).unwrap_err();
            assert!(e.contains(want), "{args}: {e}");
        }
    }

    #[test]
    fn items_are_decoded_one_type_width_at_a_time() {
        let cmd = Cmd::try_parse_from(
            "t --tcp h:1 --address 100 --type i32 --order CDAB --count 4".split_whitespace(),
        )
        .unwrap();
        let p = plan_read(&cmd.read).unwrap();
        let items = decode_items(&p, &cmd.read.value, &[0x32EB, 0xF8A4, 0x0001, 0x0000]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].address, 100);
        assert_eq!(items[0].value, Ok(Value::Int(-123_456_789)));
        assert_eq!(items[1].address, 102);
        assert_eq!(items[1].value, Ok(Value::Int(1)));
        assert_eq!(show_raw(p.table, &items[0].raw), "32EB F8A4");
    }

    #[test]
    fn values_are_shown_without_binary_noise() {
        let f32pi = Value::Float(std::f32::consts::PI as f64);
        assert_eq!(show_value(&f32pi, DataType::F32, false), "3.1415927");
        assert_eq!(
            show_value(&Value::Float(1234.0 * 0.1), DataType::U16, true),
            "123.4"
        );
        assert_eq!(
            show_value(&Value::Float(f64::NAN), DataType::F32, false),
            "NaN"
        );
        assert_eq!(
            show_value(&Value::UInt(u64::MAX), DataType::U64, false),
            "18446744073709551615"
        );
        assert_eq!(show_raw(Table::Coil, &[1, 0, 1]), "1 0 1");
        // 0000 4178 read as ABCD is a denormal: exponent notation, not 40 zeros.
        let tiny = Value::Float(f32::from_bits(0x0000_4178) as f64);
        assert_eq!(show_value(&tiny, DataType::F32, false), "2.3486e-41");
        assert_eq!(
            show_value(&Value::Float(1e20), DataType::F64, false),
            "1e20"
        );
        assert_eq!(
            show_value(&Value::Float(-0.5), DataType::F64, false),
            "-0.5"
        );
        // 3.215 as an f32 is 3.2149999141693115; times 100 it is still 321.5 to a person.
        let f = Value::Float(3.215f32 as f64 * 100.0);
        assert_eq!(show_value(&f, DataType::F32, true), "321.5");
    }

    #[test]
    fn table_and_json_rendering() {
        let cmd = Cmd::try_parse_from(
            "t --tcp h:1 --address 7 --type bcd16 --count 2 --scale 0.1".split_whitespace(),
        )
        .unwrap();
        let p = plan_read(&cmd.read).unwrap();
        let items = decode_items(&p, &cmd.read.value, &[0x1234, 0x12A4]);
        let (text, failed) = render_table(3, &p, &cmd.read.value, &items);
        assert!(failed);
        assert_eq!(
            text,
            "unit 3  holding  bcd16  x 0.1 + 0\n\
             address  raw   value\n\
             \x20     7  1234  123.4\n\
             \x20     8  12A4  error: invalid BCD digit in register value 0x12A4\n"
        );
        let (json, failed) = render_json(3, &p, &cmd.read.value, &items);
        assert!(failed);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["value"], serde_json::json!(123.4));
        assert_eq!(lines[0]["table"], "holding");
        assert_eq!(lines[0]["raw"], serde_json::json!([0x1234]));
        assert_eq!(lines[1]["address"], 8);
        assert!(lines[1]["error"].as_str().unwrap().contains("0x12A4"));
    }
}
