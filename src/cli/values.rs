//! The value options shared by `gasdtu read` and `gasdtu write` (`ValueArgs`: table, type, bit,
//! length, order, scale, offset), the `Codec` they resolve to (or that a configured point
//! brings), and how registers and values are shown to a person (hex words, engineering values
//! without binary noise) and written to a stdout that may be a closed pipe. Pure apart from
//! `emit`.

use crate::modbus::registers;
use crate::model::{DataType, Table, Value, WordOrder};

/// Most implied decimals `--decimals` takes (as the config's `decimals`: a bcd48 has twelve
/// digits).
pub const MAX_DECIMALS: u8 = 12;

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
    /// BADC = byte swap, DCBA = fully reversed) [default: ABCD].
    #[arg(long, value_enum)]
    pub order: Option<OrderArg>,
    /// Engineering value = raw * scale + offset [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub scale: Option<f64>,
    /// Implied decimals of an integer or BCD value: raw x 10^-N, the config's `decimals = N`
    /// (the same as --scale 10^-N, divided exactly).
    #[arg(long, value_name = "N", conflicts_with = "scale",
          value_parser = clap::value_parser!(u8).range(0..=MAX_DECIMALS as i64))]
    pub decimals: Option<u8>,
    /// Added after scaling (engineering value = raw * scale + offset) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub offset: Option<f64>,
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

    /// The codec of these options for `table` (`count` as in `resolve`).
    pub fn codec(&self, table: Table, count: Option<u16>) -> Result<Codec, String> {
        let data_type = self.resolve(table, count)?;
        let scale = match self.decimals {
            Some(_) if !data_type.is_integer() => {
                let hint = if matches!(data_type, DataType::F32 | DataType::F64 | DataType::IntReal)
                {
                    " (a float carries its own decimals; use --scale)"
                } else {
                    ""
                };
                return Err(format!(
                    "--decimals applies to integer and BCD types only, not {data_type}{hint}"
                ));
            }
            Some(n) => registers::decimal_scale(n),
            None => self.scale.unwrap_or(1.0),
        };
        Ok(Codec {
            data_type,
            order: self.order.map(WordOrder::from).unwrap_or(WordOrder::Abcd),
            scale,
            offset: self.offset.unwrap_or(0.0),
        })
    }

    /// The options given on the command line (a configured point brings its own), for the
    /// message that refuses them.
    pub fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, name) in [
            (self.data_type.is_some(), "--type"),
            (self.bit.is_some(), "--bit"),
            (self.length.is_some(), "--length"),
            (self.order.is_some(), "--order"),
            (self.scale.is_some(), "--scale"),
            (self.decimals.is_some(), "--decimals"),
            (self.offset.is_some(), "--offset"),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// How registers become a value and back: the daemon's codec (`modbus::registers`) with a
/// type, an order and the scaling, from the command line or from a configured point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Codec {
    pub data_type: DataType,
    pub order: WordOrder,
    pub scale: f64,
    pub offset: f64,
}

impl Codec {
    /// A point's codec, as the poller decodes it.
    pub fn of_point(p: &crate::model::PointSpec) -> Codec {
        Codec {
            data_type: p.data_type,
            order: p.order,
            scale: p.scale,
            offset: p.offset,
        }
    }

    pub fn scaled(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }

    /// The engineering value of one item's registers.
    pub fn decode(&self, raw: &[u16]) -> Result<Value, registers::DecodeError> {
        registers::decode_raw(self.data_type, self.order, raw)
            .map(|x| registers::scale(x, self.scale, self.offset))
    }

    /// The engineering value as text, without binary noise.
    pub fn show(&self, value: &Value) -> String {
        show_value(value, self.data_type, self.scaled())
    }

    /// "f32 DCBA x 100 + 0" for headings: the order only for multi-register types, the
    /// scaling only when there is one.
    pub fn describe(&self) -> String {
        let mut s = self.data_type.to_string();
        if self.data_type.width() > 1 {
            s.push_str(&format!(" {}", self.order));
        }
        if self.scaled() {
            s.push_str(&format!("  x {} + {}", self.scale, self.offset));
        }
        s
    }

    /// "f32 DCBA x 100", "i16 x 0.1 + -40", "u16": the compact form for table cells.
    pub fn short(&self) -> String {
        let mut s = self.data_type.to_string();
        if self.data_type.width() > 1 {
            s.push_str(&format!(" {}", self.order));
        }
        if self.scale != 1.0 {
            s.push_str(&format!(" x {}", self.scale));
        }
        if self.offset != 0.0 {
            s.push_str(&format!(" + {}", self.offset));
        }
        s
    }
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

pub fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Float(x) if !x.is_finite() => serde_json::Value::Null,
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn codecs_describe_and_decode() {
        let c = Codec {
            data_type: DataType::F32,
            order: WordOrder::Dcba,
            scale: 100.0,
            offset: 0.0,
        };
        assert_eq!(c.describe(), "f32 DCBA  x 100 + 0");
        assert_eq!(c.short(), "f32 DCBA x 100");
        // 4.5 bar as DCBA registers, shown in kPa.
        let v = c.decode(&[0x0000, 0x9040]).unwrap();
        assert_eq!(c.show(&v), "450");
        let plain = Codec {
            data_type: DataType::U16,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
        };
        assert_eq!(plain.describe(), "u16");
        assert_eq!(plain.decode(&[7]), Ok(Value::UInt(7)));
    }
}
