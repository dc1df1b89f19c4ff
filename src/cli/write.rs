//! `gasdtu write`: write one coil or one holding-register value (any codec type, scaled),
//! after showing the registers that will go on the wire and asking for confirmation (unless
//! `--yes`; without a terminal on stdin and without `--yes` it refuses). A bit of a register is
//! written read-modify-write. The value is read back and shown afterwards. Raw addressing
//! (`--address` in decimal, hex or with `--modicon` as a 4xxxx / 0xxxx number) or a configured
//! writable point (`gasdtu write evc1 setpoint 12.5`: bus, unit, address, type, order and scale
//! from the config). Every transaction goes through the running daemon when it owns the bus
//! (see `busargs::BusClient`). Exit 0 written, 1 Modbus error or declined, 2 bad arguments or
//! refused.

use std::io::IsTerminal;
use std::time::Duration;

use crate::modbus::registers;
use crate::model::{DataType, Table, Value};

use super::busargs::{BusArgs, BusClient};
use super::values::{emit, show_raw, show_value, Codec, ValueArgs};
use super::Global;

/// The writable tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteTableArg {
    /// Holding registers (function 6 for one register, 16 for several).
    Holding,
    /// Coils (function 5).
    Coil,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Addresses are 0-based protocol addresses, decimal or hex (holding register \
    40001 of a manual is --address 0, 40023 is --address 22 or 0x16); with --modicon the \
    address is the 1-based register number (40023, 400023; 00001 for coil 0).\n\nA \
    configured point: `gasdtu write evc1 setpoint 12.5` (bus, unit, address, type, order and \
    scale from --config; the point must be `writable = true`).\n\nExit status: 0 written, 1 \
    Modbus error or declined at the prompt, 2 bad arguments or no confirmation possible."
)]
pub struct WriteArgs {
    /// A device of the configuration (--config) instead of raw addressing.
    #[arg(value_name = "DEVICE", requires = "point")]
    pub device: Option<String>,
    /// The writable point of DEVICE to write.
    #[arg(value_name = "POINT", requires = "device")]
    pub point: Option<String>,
    /// The engineering value (the same as --value).
    #[arg(
        value_name = "VALUE",
        allow_negative_numbers = true,
        conflicts_with = "value"
    )]
    pub value_pos: Option<String>,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Modbus unit id (slave address), 1-247 (up to 255 for TCP) [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub unit: Option<u8>,
    /// Which table to write [default: holding; with --modicon the number's first digit].
    #[arg(long, value_enum)]
    pub table: Option<WriteTableArg>,
    /// Address: 0-based, decimal or hex (22, 0x16); a 1-based register number such as 40023
    /// with --modicon.
    #[arg(long, value_name = "N")]
    pub address: Option<String>,
    /// Read --address as a Modicon register number (4xxxx / 4xxxxx holding, 0xxxx coil).
    #[arg(long)]
    pub modicon: bool,
    #[command(flatten)]
    pub value_args: ValueArgs,
    /// The engineering value: a number (0x.. for unsigned integers), 0/1/on/off/true/false
    /// for bits, text for strings.
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub value: Option<String>,
    /// Write without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl WriteArgs {
    /// The value text, positional or `--value`.
    fn value_text(&self) -> Result<&str, String> {
        self.value
            .as_deref()
            .or(self.value_pos.as_deref())
            .ok_or_else(|| {
                "the value to write is missing (--value V, or DEVICE POINT VALUE)".into()
            })
    }

    /// The raw options given with a DEVICE (which brings its own), for the refusal.
    fn raw_options(&self) -> Vec<&'static str> {
        let t = &self.bus.transport;
        let mut v: Vec<&'static str> = [
            (t.serial.is_some(), "--serial"),
            (t.tcp.is_some(), "--tcp"),
            (t.rtu_over_tcp.is_some(), "--rtu-over-tcp"),
            (t.bus.is_some(), "--bus"),
            (self.unit.is_some(), "--unit"),
            (self.table.is_some(), "--table"),
            (self.address.is_some(), "--address"),
            (self.modicon, "--modicon"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        v.extend(self.value_args.given());
        v
    }
}

/// A checked write: the registers (or the coil state) that go on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePlan {
    pub unit: u8,
    pub table: Table,
    pub address: u16,
    pub data_type: DataType,
    pub value: Value,
    /// Encoded registers; for a coil one word holding 0 or 1; for a bit of a register the
    /// register with only that bit (merged with the live register before writing).
    pub regs: Vec<u16>,
    pub codec: Codec,
    /// "evc1.setpoint" for a configured point.
    pub label: Option<String>,
    /// The point's engineering unit, shown after values.
    pub eng_unit: Option<String>,
    /// How a Modicon number was read, for stderr.
    pub note: Option<String>,
}

/// Parse the text of `--value` for `data_type`. Integers stay exact when there is no
/// scaling; with scaling the engineering value is a float the codec converts back to counts.
pub fn parse_value(text: &str, data_type: DataType, scaled: bool) -> Result<Value, String> {
    let t = text.trim();
    let bad = |what: &str| format!("--value {text:?} is not {what}");
    match data_type {
        DataType::Bool | DataType::BitOfRegister(_) => match t.to_ascii_lowercase().as_str() {
            "1" | "on" | "true" => Ok(Value::Bool(true)),
            "0" | "off" | "false" => Ok(Value::Bool(false)),
            _ => Err(bad("a bit (0, 1, on, off, true, false)")),
        },
        DataType::String(_) => Ok(Value::Text(text.to_string())),
        DataType::F32 | DataType::F64 => t
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| bad("a number")),
        _ if scaled => t
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::Float)
            .ok_or_else(|| bad("a number")),
        _ => {
            if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                u64::from_str_radix(h, 16)
                    .map(Value::UInt)
                    .map_err(|_| bad("a hexadecimal integer"))
            } else if let Ok(i) = t.parse::<i64>() {
                Ok(Value::Int(i))
            } else if let Ok(u) = t.parse::<u64>() {
                Ok(Value::UInt(u))
            } else {
                Err(bad(&format!(
                    "an integer ({data_type} without --scale takes whole numbers)"
                )))
            }
        }
    }
}

/// Check the raw arguments and encode the value. Pure; errors are user messages.
pub fn plan_write(args: &WriteArgs) -> Result<WritePlan, String> {
    let text = args
        .address
        .as_deref()
        .ok_or("--address is required (or name a configured DEVICE POINT VALUE)")?;
    let at = super::address::resolve(
        text,
        args.modicon,
        args.table.map(|t| match t {
            WriteTableArg::Holding => Table::HoldingRegister,
            WriteTableArg::Coil => Table::Coil,
        }),
        Table::HoldingRegister,
    )?;
    if !matches!(at.table, Table::HoldingRegister | Table::Coil) {
        return Err(format!(
            "--address {text} is {}, which is read-only: only holding registers (4xxxx) and \
             coils (0xxxx) can be written",
            super::address::long_name(at.table)
        ));
    }
    let codec = args.value_args.codec(at.table, None)?;
    let mut plan = encode(at.table, at.address, codec, args.value_text()?)?;
    plan.unit = args.unit.unwrap_or(1);
    plan.note = at.note;
    Ok(plan)
}

/// Encode `value` for a write of `codec` at `table` `address`. Pure; errors are user
/// messages.
pub fn encode(table: Table, address: u16, codec: Codec, value: &str) -> Result<WritePlan, String> {
    let data_type = codec.data_type;
    if data_type.width() > 123 {
        return Err(format!(
            "{data_type} needs {} registers; one write carries at most 123",
            data_type.width()
        ));
    }
    if address as u32 + data_type.width() as u32 > 65536 {
        return Err(format!(
            "--address {address} with {data_type} runs past address 65535"
        ));
    }
    let parsed = parse_value(value, data_type, codec.scaled())?;
    let regs = registers::encode(data_type, codec.order, codec.scale, codec.offset, &parsed)
        .map_err(|e| format!("--value {value:?}: {e}"))?;
    Ok(WritePlan {
        unit: 1,
        table,
        address,
        data_type,
        value: parsed,
        regs,
        codec,
        label: None,
        eng_unit: None,
        note: None,
    })
}

/// The write of a configured point: it must be a writable holding register or coil.
pub fn plan_named(n: &super::named::Named, value: &str) -> Result<WritePlan, String> {
    let [super::named::Row::Point(p)] = n.rows.as_slice() else {
        return Err(format!(
            "{}.{} is computed: write the points it is computed from",
            n.device,
            n.rows.first().map(|r| r.name()).unwrap_or("?")
        ));
    };
    if !matches!(p.table, Table::HoldingRegister | Table::Coil) {
        return Err(format!(
            "{}.{} is {} {}, which is read-only",
            n.device,
            p.name,
            super::address::long_name(p.table),
            p.address
        ));
    }
    if !p.writable {
        return Err(format!(
            "{}.{} is not writable in the config (set `writable = true` on the point, or write \
             it with raw addressing: --bus {} --unit {} --address {})",
            n.device, p.name, n.bus, n.unit, p.address
        ));
    }
    let mut plan = encode(p.table, p.address, Codec::of_point(p), value)?;
    plan.unit = n.unit;
    plan.label = Some(format!("{}.{}", n.device, p.name));
    plan.eng_unit = p.unit.clone();
    Ok(plan)
}

/// The register a bit write leaves: `live` with bit `n` set to what `encoded` holds.
pub fn merge_bit(live: u16, n: u8, encoded: u16) -> u16 {
    let mask = 1u16 << n;
    (live & !mask) | (encoded & mask)
}

fn ask(question: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The plan and the bus options of a write: raw, or a configured point with its bus.
fn plan_and_bus(args: &WriteArgs, global: &Global) -> Result<(WritePlan, BusArgs), String> {
    let Some(device) = &args.device else {
        let plan = plan_write(args)?;
        if args.bus.transport.bus.is_none() {
            args.bus
                .to_bus_config(Duration::from_secs(1))
                .map_err(|e| e.to_string())?;
        }
        return Ok((plan, args.bus.clone()));
    };
    super::named::refuse_raw_options("write", &args.raw_options())?;
    let value = args.value_text()?;
    let loaded = crate::config::load_file(&global.config).map_err(|e| e.to_string())?;
    let n = super::named::resolve(&loaded.config, device, args.point.as_deref())?;
    let plan = plan_named(&n, value)?;
    let mut bus = args.bus.clone();
    bus.transport.bus = Some(n.bus);
    Ok((plan, bus))
}

pub async fn run(args: WriteArgs, global: &Global) -> anyhow::Result<u8> {
    super::init_logging(global.log_level.as_deref().unwrap_or("error"));
    let (plan, bus) = match plan_and_bus(&args, global) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("gasdtu write: {msg}");
            return Ok(2);
        }
    };
    if let Some(note) = &plan.note {
        eprintln!("gasdtu write: {note}");
    }
    if !args.yes && !std::io::stdin().is_terminal() {
        eprintln!("gasdtu write: refusing to write without confirmation: stdin is not a terminal (pass --yes)");
        return Ok(2);
    }
    let unit = plan.unit;
    let codec = plan.codec;
    let mut link = match BusClient::open(&bus, global, Duration::from_secs(1), "write").await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!(
            "gasdtu write: unit {unit}: {e}, {what} {} {}",
            plan.table, plan.address
        );
        Ok(1)
    };

    // What goes on the wire; a bit of a register merges into the live register.
    let mut regs = plan.regs.clone();
    let with_unit = |text: String| match &plan.eng_unit {
        Some(u) => format!("{text} {}", crate::config::escape(u)),
        None => text,
    };
    let shown_value = with_unit(show_value(&plan.value, plan.data_type, false));
    let summary = match plan.data_type {
        DataType::Bool => format!(
            "unit {unit}  coil {}: write {}",
            plan.address,
            if regs[0] != 0 { "1 (on)" } else { "0 (off)" }
        ),
        DataType::BitOfRegister(n) => {
            let live = match link.read(unit, plan.table, plan.address, 1).await {
                Ok(Ok(r)) if !r.is_empty() => r[0],
                Ok(Ok(_)) => return fail("empty reply reading", &"no register"),
                Ok(Err(e)) => return fail("reading", &e),
                Err(e) => return fail("reading", &e),
            };
            regs = vec![merge_bit(live, n, plan.regs[0])];
            format!(
                "unit {unit}  holding {}: set bit {n} to {shown_value}: register {live:04X} -> {:04X}",
                plan.address, regs[0]
            )
        }
        dt => format!(
            "unit {unit}  holding {}: write {shown_value} as {dt}{} = registers {}",
            plan.address,
            if dt.width() > 1 {
                format!(" {}", codec.order)
            } else {
                String::new()
            },
            show_raw(plan.table, &regs)
        ),
    };
    let summary = match &plan.label {
        Some(l) => format!("{}  {summary}", crate::config::escape(l)),
        None => summary,
    };
    emit(&format!("{summary}\n"));
    if !args.yes {
        let confirmed = tokio::task::spawn_blocking(|| ask("Write?"))
            .await
            .map_err(|e| anyhow::anyhow!("prompt task failed: {e}"))?;
        match confirmed {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("gasdtu write: not written");
                return Ok(1);
            }
            Err(e) => {
                eprintln!("gasdtu write: cannot read the answer from stdin: {e}");
                return Ok(2);
            }
        }
    }

    let written = if plan.table == Table::Coil {
        link.write_coil(unit, plan.address, regs[0] != 0).await
    } else {
        link.write_registers(unit, plan.address, &regs).await
    };
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return fail("writing", &e),
        Err(e) => return fail("writing", &e),
    }

    // Read back what the device now holds (it may clamp, round or refuse silently).
    let width = plan.data_type.width();
    match link.read(unit, plan.table, plan.address, width).await {
        Ok(Ok(back)) => {
            let shown = match codec.decode(&back) {
                Ok(x) => with_unit(codec.show(&x)),
                Err(e) => format!("undecodable ({e})"),
            };
            emit(&format!(
                "written; read back: {shown} (raw {})\n",
                show_raw(plan.table, &back)
            ));
            let same = match plan.data_type {
                DataType::BitOfRegister(n) => {
                    back.first().map(|r| r >> n & 1) == Some(regs[0] >> n & 1)
                }
                DataType::Bool => back.first().map(|&b| b != 0) == Some(regs[0] != 0),
                _ => back == regs,
            };
            if !same {
                eprintln!(
                    "gasdtu write: warning: the device holds {} after the write, not {}",
                    show_raw(plan.table, &back),
                    show_raw(plan.table, &regs)
                );
            }
        }
        Ok(Err(e)) => eprintln!("gasdtu write: written, but reading it back failed: {e}"),
        Err(e) => eprintln!("gasdtu write: written, but reading it back failed: {e}"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        write: WriteArgs,
    }

    fn plan(args: &str) -> Result<WritePlan, String> {
        let argv = format!("t --tcp 127.0.0.1:502 {args}");
        let cmd = Cmd::try_parse_from(argv.split_whitespace()).map_err(|e| e.to_string())?;
        plan_write(&cmd.write)
    }

    fn hex(p: &WritePlan) -> String {
        show_raw(Table::HoldingRegister, &p.regs)
    }

    #[test]
    fn write_arguments_encode_to_registers() {
        // (arguments, table, encoded registers)
        #[rustfmt::skip]
        let ok: &[(&str, Table, &str)] = &[
            ("--address 0 --value 1234", Table::HoldingRegister, "04D2"),
            ("--address 0 --value 0xBEEF", Table::HoldingRegister, "BEEF"),
            ("--address 0 --type i16 --value -2", Table::HoldingRegister, "FFFE"),
            ("--address 0 --type u32 --value 3735928559 --order CDAB", Table::HoldingRegister, "BEEF DEAD"),
            ("--address 0 --type f32 --value 3.1415927", Table::HoldingRegister, "4049 0FDB"),
            ("--address 0 --type f32 --order DCBA --value -1.5", Table::HoldingRegister, "0000 C0BF"),
            ("--address 0 --type u16 --scale 0.01 --value 21.37", Table::HoldingRegister, "0859"),
            ("--address 0 --type u16 --decimals 2 --value 21.37", Table::HoldingRegister, "0859"),
            ("--address 0 --type i16 --scale 0.1 --offset -40 --value -50", Table::HoldingRegister, "FF9C"),
            ("--address 0 --type bcd16 --value 1234", Table::HoldingRegister, "1234"),
            ("--address 0 --type string --length 4 --value OK", Table::HoldingRegister, "4F4B 0000"),
            ("--address 0 --type bit --bit 15 --value on", Table::HoldingRegister, "8000"),
            ("--table coil --address 3 --value 1", Table::Coil, "0001"),
            ("--table coil --address 3 --value off", Table::Coil, "0000"),
        ];
        for (args, table, regs) in ok {
            let p = plan(args).unwrap_or_else(|e| panic!("{args}: {e}"));
            assert_eq!(p.table, *table, "{args}");
            assert_eq!(hex(&p), *regs, "{args}");
        }
        // (arguments, fragment of the error)
        #[rustfmt::skip]
        let bad: &[(&str, &str)] = &[
            ("--address 0 --value 70000", "does not fit type u16"),
            ("--address 0 --type i16 --value 40000", "does not fit type i16"),
            ("--address 0 --value 12.5", "is not an integer"),
            ("--address 0 --value abc", "is not an integer"),
            ("--address 0 --type f32 --value fast", "is not a number"),
            ("--address 0 --type u16 --scale 0.1 --value x", "is not a number"),
            ("--address 0 --type bcd16 --value 10000", "does not fit type bcd16"),
            ("--table coil --address 0 --value 2", "is not a bit"),
            ("--table coil --address 0 --type u16 --value 1", "holds single bits"),
            ("--address 0 --type bit --value 1", "needs --bit N"),
            ("--address 0 --type string --value x", "needs --length"),
            ("--address 0 --type string --length 2 --value long", "does not fit"),
            ("--address 65535 --type u32 --value 1", "runs past address 65535"),
            ("--table input --address 0 --value 1", "invalid value"),
            ("--address 0", "--value"),
        ];
        for (args, want) in bad {
            let e = plan(args).unwrap_err();
            assert!(e.contains(want), "{args}: {e}");
        }
    }

    #[test]
    fn a_bit_write_keeps_the_other_bits() {
        assert_eq!(merge_bit(0x00F0, 3, 0x0008), 0x00F8);
        assert_eq!(merge_bit(0x00F8, 3, 0x0000), 0x00F0);
        assert_eq!(merge_bit(0xFFFF, 15, 0x0000), 0x7FFF);
        assert_eq!(merge_bit(0x0000, 0, 0x0001), 0x0001);
    }
}
