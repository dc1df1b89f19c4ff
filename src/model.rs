//! The shared vocabulary of the daemon: Modbus tables, data types, byte/word orders, resolved
//! point specifications, decoded values, sample quality and the sample batches that leave
//! acquisition. Plain data only: no I/O, no parsing of files, no policy.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Read/write bits (function codes 1, 5, 15).
    Coil,
    /// Read-only bits (function code 2).
    DiscreteInput,
    /// Read-only 16-bit registers (function code 4).
    InputRegister,
    /// Read/write 16-bit registers (function codes 3, 6, 16).
    HoldingRegister,
}

impl Table {
    /// True for the bit tables (coils, discrete inputs).
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Largest quantity a single read of this table may ask for (Modbus spec limits).
    pub fn max_read(self) -> u16 {
        if self.is_bits() {
            2000
        } else {
            125
        }
    }

    /// Parse the names used in config and on the CLI ("coil", "discrete", "input", "holding",
    /// and the long forms).
    pub fn parse(s: &str) -> Option<Table> {
        match s {
            "coil" | "coils" => Some(Table::Coil),
            "discrete" | "discrete_input" | "discrete_inputs" => Some(Table::DiscreteInput),
            "input" | "input_register" | "input_registers" => Some(Table::InputRegister),
            "holding" | "holding_register" | "holding_registers" => Some(Table::HoldingRegister),
            _ => None,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete",
            Table::InputRegister => "input",
            Table::HoldingRegister => "holding",
        })
    }
}

/// How a point's raw registers are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// One bit of a bit table (coil or discrete input).
    Bool,
    /// Bit `n` (0 = least significant) of one 16-bit register.
    BitOfRegister(u8),
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// Four BCD digits in one register (0..=9999).
    Bcd16,
    /// Eight BCD digits in two registers (0..=99_999_999).
    Bcd32,
    /// Twelve BCD digits in three registers (6 bytes, 0..=999_999_999_999): the totals of
    /// turbine and vortex flow computers, usually with implied decimals (`decimals = 4` on the
    /// point: `000098765432` is 9876.5432).
    Bcd48,
    /// INTREAL: a u32 integer part (first two registers) plus an f32 fraction in [0, 1) (last
    /// two), each half in the point's byte/word order, decoded to one f64 (the fraction at the
    /// decimal digits its f32 carries). Totals of volume correctors.
    IntReal,
    /// ASCII string of `n` bytes (two per register, padded with NUL or space).
    String(u16),
}

impl DataType {
    /// Whole numbers: the types `decimals` and `scale_from` apply to (integers and BCD).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::U16
                | DataType::I16
                | DataType::U32
                | DataType::I32
                | DataType::U64
                | DataType::I64
                | DataType::Bcd16
                | DataType::Bcd32
                | DataType::Bcd48
        )
    }

    /// Registers (or bits, for `Bool`) this type occupies.
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::BitOfRegister(_) => 1,
            DataType::U16 | DataType::I16 | DataType::Bcd16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 | DataType::Bcd32 => 2,
            DataType::Bcd48 => 3,
            DataType::U64 | DataType::I64 | DataType::F64 | DataType::IntReal => 4,
            DataType::String(n) => n.div_ceil(2),
        }
    }

    /// Parse the type names of config and CLI. `bit` is the caller's to refine into
    /// `Bool` (bit table) or `BitOfRegister(n)` (register table); `string` needs a length.
    pub fn parse(s: &str, bit: Option<u8>, length: Option<u16>) -> Option<DataType> {
        Some(match s {
            "bit" | "bool" => match bit {
                Some(b) => DataType::BitOfRegister(b),
                None => DataType::Bool,
            },
            "u16" | "uint16" => DataType::U16,
            "i16" | "int16" => DataType::I16,
            "u32" | "uint32" => DataType::U32,
            "i32" | "int32" => DataType::I32,
            "u64" | "uint64" => DataType::U64,
            "i64" | "int64" => DataType::I64,
            "f32" | "float32" | "float" => DataType::F32,
            "f64" | "float64" | "double" => DataType::F64,
            "bcd16" => DataType::Bcd16,
            "bcd32" => DataType::Bcd32,
            "bcd48" => DataType::Bcd48,
            "intreal" => DataType::IntReal,
            "string" => DataType::String(length?),
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool => f.write_str("bit"),
            DataType::BitOfRegister(n) => write!(f, "bit{n}"),
            DataType::U16 => f.write_str("u16"),
            DataType::I16 => f.write_str("i16"),
            DataType::U32 => f.write_str("u32"),
            DataType::I32 => f.write_str("i32"),
            DataType::U64 => f.write_str("u64"),
            DataType::I64 => f.write_str("i64"),
            DataType::F32 => f.write_str("f32"),
            DataType::F64 => f.write_str("f64"),
            DataType::Bcd16 => f.write_str("bcd16"),
            DataType::Bcd32 => f.write_str("bcd32"),
            DataType::Bcd48 => f.write_str("bcd48"),
            DataType::IntReal => f.write_str("intreal"),
            DataType::String(n) => write!(f, "string({n})"),
        }
    }
}

/// Byte and word order of multi-register values, named by where the bytes of the big-endian
/// value A B C D land on the wire: ABCD is plain big-endian, CDAB swaps the 16-bit words
/// (common "little-endian word" meters), BADC swaps bytes inside each word, DCBA is fully
/// reversed. For 64-bit values the same rule applies to four words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum WordOrder {
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    #[serde(rename = "CDAB")]
    Cdab,
    #[serde(rename = "BADC")]
    Badc,
    #[serde(rename = "DCBA")]
    Dcba,
}

impl WordOrder {
    pub fn parse(s: &str) -> Option<WordOrder> {
        match s.to_ascii_uppercase().as_str() {
            "ABCD" => Some(WordOrder::Abcd),
            "CDAB" => Some(WordOrder::Cdab),
            "BADC" => Some(WordOrder::Badc),
            "DCBA" => Some(WordOrder::Dcba),
            _ => None,
        }
    }

    /// Bytes are swapped inside each 16-bit word.
    pub fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }

    /// The 16-bit words come least significant first.
    pub fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        })
    }
}

/// A fully resolved point to read from a device (profile and inline points end up here).
#[derive(Debug, Clone, PartialEq)]
pub struct PointSpec {
    /// Canonical point name, unique within its device.
    pub name: String,
    pub table: Table,
    /// Zero-based protocol address (what goes on the wire).
    pub address: u16,
    pub data_type: DataType,
    pub order: WordOrder,
    /// Engineering value = raw * scale + offset (numeric types only).
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    pub writable: bool,
    /// The point of the same device holding this point's number of decimals (`scale_from`):
    /// engineering value = raw x 10^-decimals x scale + offset, both read in the same cycle.
    pub scale_from: Option<String>,
    /// Sent upstream (`publish = false`: read, stored, usable by computed points, `scale_from`
    /// and alarms, but kept local).
    pub publish: bool,
}

impl PointSpec {
    /// Registers (or bits) the point occupies starting at `address`.
    pub fn width(&self) -> u16 {
        self.data_type.width()
    }
}

/// A point computed from other points of the same device: the weighted sum of its terms
/// (e.g. a totalizer sent as an integer part plus a float fraction, or two BCD words where the
/// high word counts 10 000). Bad quality of any input makes the computed point bad.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedSpec {
    pub name: String,
    /// (input point name, factor)
    pub terms: Vec<(String, f64)>,
    pub unit: Option<String>,
}

/// A decoded value. Printed and serialized (export, status, command results) as the decimal a
/// float stands for (`decimal::meant`: a raw f32 reading is 4.2, not 4.199999809265137), as the
/// MQTT payloads write it; the store keeps the exact double.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(#[serde(serialize_with = "serialize_meant")] f64),
    Text(String),
}

fn serialize_meant<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(crate::decimal::meant(*x))
}

impl Value {
    /// Numeric view, if the value has one (bools count as 0/1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(x) => Some(*x),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{}", if *b { 1 } else { 0 }),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{}", crate::decimal::meant(*x)),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Why a sample is bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum BadReason {
    /// No (complete) reply within the response timeout, after all retries.
    Timeout,
    /// A reply arrived but its CRC (RTU) or framing was wrong, after all retries.
    Crc,
    /// The device answered with a Modbus exception: code and its meaning.
    Exception { code: u8, meaning: String },
    /// The registers arrived but could not be turned into a value (e.g. invalid BCD digit).
    Decode(String),
    /// The bus could not be used (port missing, connection refused, I/O error).
    Io(String),
    /// A reply that is not a valid answer to the request (wrong unit id, function, length).
    Protocol(String),
    /// A computed point whose inputs were bad.
    Input(String),
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::Timeout => f.write_str("timeout"),
            BadReason::Crc => f.write_str("crc error"),
            BadReason::Exception { code, meaning } => write!(f, "exception {code} ({meaning})"),
            BadReason::Decode(s) => write!(f, "decode error: {s}"),
            BadReason::Io(s) => write!(f, "i/o error: {s}"),
            BadReason::Protocol(s) => write!(f, "protocol error: {s}"),
            BadReason::Input(s) => write!(f, "bad input: {s}"),
        }
    }
}

/// The meaning of a Modbus exception code, as the spec names it.
pub fn exception_meaning(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// Quality of one sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Good,
    Bad(BadReason),
}

impl Quality {
    pub fn is_good(&self) -> bool {
        matches!(self, Quality::Good)
    }
}

/// One reading of one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub point: Arc<str>,
    /// `None` exactly when the quality is bad.
    pub value: Option<Value>,
    pub unit: Option<Arc<str>>,
    pub quality: Quality,
    /// UTC time the block carrying this point was read from the device.
    pub read_at: SystemTime,
}

/// All samples of one device from one poll cycle: the unit that crosses the acquisition
/// boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBatch {
    pub device: Arc<str>,
    pub bus: Arc<str>,
    /// The scheduled (wall-clock aligned) poll slot this batch belongs to.
    pub slot: SystemTime,
    pub samples: Vec<Sample>,
    /// True if the device is considered online after this cycle.
    pub online: bool,
    /// Consecutive failed cycles so far (0 after any good read).
    pub failed_cycles: u32,
}

#[cfg(test)]
mod value_text_tests {
    use super::Value;

    #[test]
    fn floats_print_and_serialize_as_the_decimal_they_stand_for() {
        // (value, text): a raw f32 reading at f32 precision, exact doubles as themselves.
        let cases = [
            (f64::from(4.2f32), "4.2"),
            (f64::from(-899.8f32), "-899.8"),
            (987_654.32, "987654.32"),
            (16_777_217.25, "16777217.25"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (x, want) in cases {
            let v = Value::Float(x);
            assert_eq!(v.to_string(), want, "{x:?}");
            assert_eq!(serde_json::to_string(&v).unwrap(), want, "{x:?}");
        }
    }
}
