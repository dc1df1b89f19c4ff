//! One simulated Modbus device: a unit id, a sparse register bank per table (unmapped addresses
//! read as 0), the points of its profile placed in those banks with `registers::encode_point`, the
//! value model that drives them, pinned values for tests, and the request handler that turns a
//! request PDU into a response PDU at a given instant. Pure: time comes in as an argument.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use thiserror::Error;
use tracing::debug;

use crate::modbus::registers;
use crate::model::{ComputedSpec, DataType, PointSpec, Table, Value};

use super::frame::{decode_request, encode_response, Request, Response};
use super::values::{split, ValueModel};

/// Why a simulator operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SimError {
    /// Occurs when an operation names a unit id the simulator does not serve.
    #[error("no simulated device has unit id {0}")]
    UnknownUnit(u8),
    /// Occurs when `set` names a point the device does not have.
    #[error("unit {unit} has no point `{point}`")]
    UnknownPoint { unit: u8, point: String },
}

/// What a simulated decimals register (the target of a `scale_from`) holds unless pinned.
pub const SIM_DECIMALS: u64 = 1;

/// Seconds since the epoch of a `SystemTime` (negative before 1970).
pub fn epoch_secs(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A simulated device.
#[derive(Debug, Clone)]
pub struct SimDevice {
    unit: u8,
    label: String,
    max_registers: u16,
    points: Vec<PointSpec>,
    computed: Vec<ComputedSpec>,
    model: ValueModel,
    pins: HashMap<String, Value>,
    coils: BTreeMap<u16, bool>,
    discrete: BTreeMap<u16, bool>,
    input: BTreeMap<u16, u16>,
    holding: BTreeMap<u16, u16>,
    /// Requests answered so far (tests: "is the master still polling?").
    requests: u64,
}

impl SimDevice {
    /// A device serving `points` (and the `computed` points split over them) under `unit`.
    /// `label` names it in logs (usually the profile id). Reads up to 125 registers; values
    /// start at `SystemTime::now()` with seed `unit`.
    pub fn new(
        unit: u8,
        label: impl Into<String>,
        points: Vec<PointSpec>,
        computed: Vec<ComputedSpec>,
    ) -> Self {
        let mut d = SimDevice {
            unit,
            label: label.into(),
            max_registers: 125,
            points,
            computed,
            model: ValueModel::new(unit as u64, epoch_secs(SystemTime::now())),
            pins: HashMap::new(),
            requests: 0,
            coils: BTreeMap::new(),
            discrete: BTreeMap::new(),
            input: BTreeMap::new(),
            holding: BTreeMap::new(),
        };
        d.refresh(SystemTime::now());
        d
    }

    /// Longest register read the device accepts (longer reads get exception 3), 1..=125.
    pub fn with_max_registers(mut self, n: u16) -> Self {
        self.max_registers = n.clamp(1, 125);
        self
    }

    /// Seed of the value noise (each device should get its own).
    pub fn with_seed(mut self, seed: u64) -> Self {
        let start = self.model.start;
        self.model = ValueModel::new(seed, start);
        self
    }

    /// When the totalizers show their start value.
    pub fn with_start(mut self, start: SystemTime) -> Self {
        self.model.start = epoch_secs(start);
        self
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn max_registers(&self) -> u16 {
        self.max_registers
    }

    pub fn points(&self) -> &[PointSpec] {
        &self.points
    }

    pub fn model(&self) -> &ValueModel {
        &self.model
    }

    fn has_name(&self, name: &str) -> bool {
        self.points.iter().any(|p| p.name == name) || self.computed.iter().any(|c| c.name == name)
    }

    /// Pin a point (or a computed point, which then drives its terms) to a value until
    /// `unset`.
    pub fn set(&mut self, point: &str, value: Value) -> Result<(), SimError> {
        if !self.has_name(point) {
            return Err(SimError::UnknownPoint {
                unit: self.unit,
                point: point.to_string(),
            });
        }
        self.pins.insert(point.to_string(), value);
        Ok(())
    }

    /// Let the value model drive a pinned point again.
    pub fn unset(&mut self, point: &str) {
        self.pins.remove(point);
    }

    /// The engineering value every point and computed point has at `now` (pins applied).
    pub fn values_at(&self, now: SystemTime) -> Vec<(String, Value)> {
        let t = epoch_secs(now);
        let mut out: HashMap<String, Value> = HashMap::new();
        for c in &self.computed {
            let canonical = match self.pins.get(&c.name) {
                Some(v) => v.as_f64().unwrap_or(0.0),
                None => self.model.value(&c.name, t),
            };
            out.insert(c.name.clone(), Value::Float(canonical));
            // Among terms of equal weight the integer-typed one takes the whole part and the
            // float one the fraction (an integer + fraction totalizer).
            let mut terms = c.terms.clone();
            terms.sort_by_key(|(name, _)| {
                self.points.iter().any(|p| {
                    &p.name == name
                        && matches!(
                            p.data_type,
                            crate::model::DataType::F32 | crate::model::DataType::F64
                        )
                })
            });
            for (term, part) in split(canonical, &terms) {
                out.insert(term, Value::Float(part));
            }
        }
        let mut list: Vec<(String, Value)> = Vec::new();
        for p in &self.points {
            let v = if let Some(v) = self.pins.get(&p.name) {
                v.clone()
            } else if let Some(v) = out.get(&p.name) {
                v.clone()
            } else if self
                .points
                .iter()
                .any(|o| o.scale_from.as_deref() == Some(p.name.as_str()))
            {
                // A decimals register: one decimal unless a test pins another.
                Value::UInt(SIM_DECIMALS)
            } else {
                self.model_value(p, t)
            };
            list.push((p.name.clone(), v));
        }
        for c in &self.computed {
            if let Some(v) = out.remove(&c.name) {
                list.push((c.name.clone(), v));
            }
        }
        list
    }

    fn model_value(&self, p: &PointSpec, t: f64) -> Value {
        match p.data_type {
            DataType::Bool | DataType::BitOfRegister(_) => {
                Value::Bool(self.model.value(&p.name, t) >= 0.5)
            }
            DataType::String(_) => Value::Text(String::new()),
            _ => Value::Float(self.model.value(&p.name, t)),
        }
    }

    /// Place every point's value at `now` into the banks. Where points overlap (an INTREAL
    /// total and the old integer/fraction helpers on the same registers), narrower points are
    /// placed first and wider ones over them, pinned points last, so the registers agree with
    /// the widest value and a pin always shows.
    pub fn refresh(&mut self, now: SystemTime) {
        let values = self.values_at(now);
        let by_name: HashMap<&str, &Value> = values.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let points = std::mem::take(&mut self.points);
        let mut placing: Vec<&PointSpec> = points.iter().collect();
        placing.sort_by_key(|p| (self.pins.contains_key(&p.name), p.width()));
        for p in placing {
            let Some(v) = by_name.get(p.name.as_str()) else {
                continue;
            };
            // A `scale_from` point is encoded with the decimals its device shows right now.
            let shifted;
            let p = match p.scale_from.as_deref() {
                Some(from) => {
                    let Some(k) = by_name
                        .get(from)
                        .and_then(|v| v.as_f64())
                        .filter(|k| k.fract() == 0.0 && (0.0..=9.0).contains(k))
                    else {
                        debug!(unit = self.unit, point = %p.name, "decimals point `{from}` holds no valid decimals: not placed");
                        continue;
                    };
                    shifted = PointSpec {
                        scale: if k == 0.0 {
                            p.scale
                        } else if p.scale == 1.0 {
                            registers::decimal_scale(k as u8)
                        } else {
                            registers::decimal_scale(k as u8) * p.scale
                        },
                        scale_from: None,
                        ..p.clone()
                    };
                    &shifted
                }
                None => p,
            };
            let is_term = !self.pins.contains_key(&p.name)
                && self
                    .computed
                    .iter()
                    .any(|c| c.terms.iter().any(|(t, _)| *t == p.name));
            let v = fit(p, v, is_term);
            match registers::encode_point(p, &v) {
                Ok(regs) => self.place(p, &regs),
                Err(e) => {
                    debug!(unit = self.unit, point = %p.name, "simulated value not encodable: {e}")
                }
            }
        }
        self.points = points;
    }

    fn place(&mut self, p: &PointSpec, regs: &[u16]) {
        match (p.table, p.data_type) {
            (Table::Coil | Table::DiscreteInput, _) => {
                let bank = if p.table == Table::Coil {
                    &mut self.coils
                } else {
                    &mut self.discrete
                };
                bank.insert(p.address, regs.first().is_some_and(|&r| r != 0));
            }
            (table, DataType::BitOfRegister(b)) => {
                let bank = self.reg_bank(table);
                let mask = 1u16.checked_shl(b as u32).unwrap_or(0);
                let old = bank.get(&p.address).copied().unwrap_or(0);
                let bit = regs.first().copied().unwrap_or(0) & mask;
                bank.insert(p.address, (old & !mask) | bit);
            }
            (table, _) => {
                let bank = self.reg_bank(table);
                for (i, &r) in regs.iter().enumerate() {
                    bank.insert(p.address.wrapping_add(i as u16), r);
                }
            }
        }
    }

    fn reg_bank(&mut self, table: Table) -> &mut BTreeMap<u16, u16> {
        if table == Table::InputRegister {
            &mut self.input
        } else {
            &mut self.holding
        }
    }

    /// Raw contents of a table (unmapped addresses read 0; bits as 0/1).
    pub fn read_raw(&self, table: Table, address: u16, count: u16) -> Vec<u16> {
        (0..count)
            .map(|i| {
                let a = address.wrapping_add(i);
                match table {
                    Table::Coil => self.coils.get(&a).copied().unwrap_or(false) as u16,
                    Table::DiscreteInput => self.discrete.get(&a).copied().unwrap_or(false) as u16,
                    Table::InputRegister => self.input.get(&a).copied().unwrap_or(0),
                    Table::HoldingRegister => self.holding.get(&a).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// Answer one request PDU at `now`: the response PDU (data or exception).
    pub fn handle(&mut self, pdu: &[u8], now: SystemTime) -> Vec<u8> {
        let resp = match decode_request(pdu) {
            Err(e) => {
                debug!(unit = self.unit, "refused request: {e}");
                Response::Exception {
                    function: e.function(),
                    code: e.exception_code(),
                }
            }
            Ok(req) => self.answer(&req, now),
        };
        encode_response(&resp)
    }

    /// Answer a decoded request at `now`.
    /// How many requests this device has answered.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn answer(&mut self, req: &Request, now: SystemTime) -> Response {
        self.requests += 1;
        let function = req.function();
        let exception = |code| Response::Exception { function, code };
        let past_end = |address: u16, n: usize| address as usize + n > 65_536;
        match req {
            Request::ReadCoils { address, quantity }
            | Request::ReadDiscreteInputs { address, quantity }
            | Request::ReadHoldingRegisters { address, quantity }
            | Request::ReadInputRegisters { address, quantity } => {
                let table = match function {
                    1 => Table::Coil,
                    2 => Table::DiscreteInput,
                    3 => Table::HoldingRegister,
                    _ => Table::InputRegister,
                };
                if !table.is_bits() && *quantity > self.max_registers {
                    debug!(
                        unit = self.unit,
                        "read of {quantity} registers exceeds the device's {}", self.max_registers
                    );
                    return exception(3);
                }
                if past_end(*address, *quantity as usize) {
                    return exception(2);
                }
                self.refresh(now);
                let raw = self.read_raw(table, *address, *quantity);
                if table.is_bits() {
                    Response::Bits {
                        function,
                        bits: raw.into_iter().map(|b| b != 0).collect(),
                    }
                } else {
                    Response::Registers {
                        function,
                        words: raw,
                    }
                }
            }
            Request::WriteSingleCoil { address, value } => {
                self.coils.insert(*address, *value);
                self.pin_written(Table::Coil, *address, 1);
                Response::WriteSingle {
                    function,
                    address: *address,
                    value: if *value { 0xFF00 } else { 0 },
                }
            }
            Request::WriteSingleRegister { address, value } => {
                self.holding.insert(*address, *value);
                self.pin_written(Table::HoldingRegister, *address, 1);
                Response::WriteSingle {
                    function,
                    address: *address,
                    value: *value,
                }
            }
            Request::WriteMultipleCoils { address, values } => {
                if past_end(*address, values.len()) {
                    return exception(2);
                }
                for (i, v) in values.iter().enumerate() {
                    self.coils.insert(address + i as u16, *v);
                }
                self.pin_written(Table::Coil, *address, values.len() as u16);
                Response::WriteMultiple {
                    function,
                    address: *address,
                    quantity: values.len() as u16,
                }
            }
            Request::WriteMultipleRegisters { address, values } => {
                if past_end(*address, values.len()) {
                    return exception(2);
                }
                for (i, v) in values.iter().enumerate() {
                    self.holding.insert(address + i as u16, *v);
                }
                self.pin_written(Table::HoldingRegister, *address, values.len() as u16);
                Response::WriteMultiple {
                    function,
                    address: *address,
                    quantity: values.len() as u16,
                }
            }
        }
    }

    /// A write touched `count` addresses of `table` from `address`: every point overlapping
    /// them is pinned to what its registers now decode to, so the value model does not
    /// overwrite what the master wrote.
    fn pin_written(&mut self, table: Table, address: u16, count: u16) {
        let end = address as u32 + count as u32;
        let touched: Vec<PointSpec> = self
            .points
            .iter()
            .filter(|p| {
                p.table == table
                    && (p.address as u32) < end
                    && p.address as u32 + p.width() as u32 > address as u32
            })
            .cloned()
            .collect();
        for p in touched {
            let regs = self.read_raw(table, p.address, p.width());
            match registers::decode_point(&p, &regs) {
                Ok(v) => {
                    debug!(unit = self.unit, point = %p.name, value = %v, "written");
                    self.pins.insert(p.name.clone(), v);
                }
                Err(e) => {
                    debug!(unit = self.unit, point = %p.name, "written registers do not decode: {e}")
                }
            }
        }
    }
}

/// Bring a value into the range the point's integer type can hold (clamped at the type's
/// bounds). Terms of a computed split are floored, so the last term never rounds up into the
/// next unit (9999.6 in a BCD word stays 9999); other values are left to the encoder, which
/// rounds.
fn fit(p: &PointSpec, v: &Value, floor: bool) -> Value {
    let Value::Float(x) = v else {
        return v.clone();
    };
    let bounds = match p.data_type {
        DataType::U16 => Some((0.0, u16::MAX as f64)),
        DataType::I16 => Some((i16::MIN as f64, i16::MAX as f64)),
        DataType::U32 => Some((0.0, u32::MAX as f64)),
        DataType::I32 => Some((i32::MIN as f64, i32::MAX as f64)),
        DataType::U64 => Some((0.0, u64::MAX as f64)),
        DataType::I64 => Some((i64::MIN as f64, i64::MAX as f64)),
        DataType::Bcd16 => Some((0.0, 9999.0)),
        DataType::Bcd32 => Some((0.0, 99_999_999.0)),
        DataType::Bcd48 => Some((0.0, 999_999_999_999.0)),
        _ => None,
    };
    let Some((lo, hi)) = bounds else {
        return v.clone();
    };
    let scale = if p.scale == 0.0 { 1.0 } else { p.scale };
    let raw = (x - p.offset) / scale;
    let raw = if floor {
        (raw + 1e-6).floor()
    } else {
        raw.round()
    };
    let raw = raw.clamp(lo, hi);
    Value::Float(raw * scale + p.offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WordOrder;
    use std::time::Duration;

    fn pt(name: &str, table: Table, address: u16, data_type: DataType) -> PointSpec {
        PointSpec {
            name: name.into(),
            table,
            address,
            data_type,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: true,
            scale_from: None,
            publish: true,
        }
    }

    fn device() -> SimDevice {
        let h = Table::HoldingRegister;
        SimDevice::new(
            1,
            "test",
            vec![
                pt("pressure", h, 0, DataType::F32),
                pt("volume_standard_int", h, 4, DataType::U32),
                pt("volume_standard_frac", h, 6, DataType::F32),
                pt(
                    "volume_measured_hi",
                    Table::InputRegister,
                    10,
                    DataType::Bcd16,
                ),
                pt(
                    "volume_measured_lo",
                    Table::InputRegister,
                    11,
                    DataType::Bcd16,
                ),
                pt("status", h, 8, DataType::U16),
                pt("status_low_battery", h, 8, DataType::BitOfRegister(3)),
                pt("valve", Table::Coil, 2, DataType::Bool),
            ],
            vec![
                ComputedSpec {
                    name: "volume_standard".into(),
                    terms: vec![
                        ("volume_standard_int".into(), 1.0),
                        ("volume_standard_frac".into(), 1.0),
                    ],
                    unit: None,
                },
                ComputedSpec {
                    name: "volume_measured".into(),
                    terms: vec![
                        ("volume_measured_lo".into(), 1.0),
                        ("volume_measured_hi".into(), 10_000.0),
                    ],
                    unit: None,
                },
            ],
        )
        .with_max_registers(16)
    }

    fn regs(d: &mut SimDevice, function: u8, address: u16, quantity: u16) -> Vec<u16> {
        let req = match function {
            3 => Request::ReadHoldingRegisters { address, quantity },
            _ => Request::ReadInputRegisters { address, quantity },
        };
        match d.answer(&req, SystemTime::now()) {
            Response::Registers { words, .. } => words,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn places_values_and_splits_computed_points() {
        let mut d = device();
        d.set("volume_standard", Value::Float(123_456.75)).unwrap();
        d.set("volume_measured", Value::Float(12_345_678.0))
            .unwrap();
        d.set("status_low_battery", Value::Bool(true)).unwrap();
        let r = regs(&mut d, 3, 0, 10);
        let p = f32::from_bits((r[0] as u32) << 16 | r[1] as u32);
        assert!((398.0..=402.0).contains(&p), "pressure {p}");
        assert_eq!([r[2], r[3]], [0, 0], "unmapped reads 0");
        assert_eq!((r[4] as u32) << 16 | r[5] as u32, 123_456);
        assert_eq!(f32::from_bits((r[6] as u32) << 16 | r[7] as u32), 0.75);
        assert_eq!(r[8], 1 << 3, "status 0 with bit 3 set");
        assert_eq!(regs(&mut d, 4, 10, 2), vec![0x1234, 0x5678]);
    }

    #[test]
    fn totalizer_split_rises_with_time() {
        let mut d = device();
        let t0 = SystemTime::now();
        d.refresh(t0);
        let int0 = d.read_raw(Table::HoldingRegister, 4, 2);
        d.refresh(t0 + Duration::from_secs(86_400));
        let int1 = d.read_raw(Table::HoldingRegister, 4, 2);
        let v = |r: &[u16]| (r[0] as u32) << 16 | r[1] as u32;
        assert!(
            v(&int0) >= 123_456 * 4,
            "standard volume starts large: {}",
            v(&int0)
        );
        assert!(v(&int1) > v(&int0));
    }

    #[test]
    fn exceptions_for_long_reads_and_bad_addresses() {
        let mut d = device();
        let now = SystemTime::now();
        let cases: Vec<(Request, u8)> = vec![
            (
                Request::ReadHoldingRegisters {
                    address: 0,
                    quantity: 17,
                },
                3,
            ),
            (
                Request::ReadHoldingRegisters {
                    address: 65_530,
                    quantity: 10,
                },
                2,
            ),
            (
                Request::ReadCoils {
                    address: 65_535,
                    quantity: 2,
                },
                2,
            ),
            (
                Request::WriteMultipleRegisters {
                    address: 65_535,
                    values: vec![1, 2],
                },
                2,
            ),
        ];
        for (req, code) in cases {
            let function = req.function();
            assert_eq!(
                d.answer(&req, now),
                Response::Exception { function, code },
                "{req:?}"
            );
        }
        assert_eq!(regs(&mut d, 3, 65_520, 16).len(), 16);
        assert_eq!(d.handle(&[0x07], now), vec![0x87, 0x01]);
    }

    #[test]
    fn writes_stick_and_pin_the_points_they_touch() {
        let mut d = device();
        let now = SystemTime::now();
        let bits = 450.5f32.to_bits();
        let req = Request::WriteMultipleRegisters {
            address: 0,
            values: vec![(bits >> 16) as u16, bits as u16],
        };
        assert_eq!(
            d.answer(&req, now),
            Response::WriteMultiple {
                function: 16,
                address: 0,
                quantity: 2
            }
        );
        d.answer(
            &Request::WriteSingleRegister {
                address: 100,
                value: 7,
            },
            now,
        );
        d.answer(
            &Request::WriteSingleCoil {
                address: 2,
                value: true,
            },
            now,
        );
        let later = now + Duration::from_secs(3600);
        let r = d.values_at(later);
        assert!(
            r.contains(&("pressure".into(), Value::Float(450.5))),
            "{r:?}"
        );
        d.refresh(later);
        assert_eq!(d.read_raw(Table::HoldingRegister, 100, 1), vec![7]);
        assert_eq!(d.read_raw(Table::Coil, 2, 1), vec![1]);
    }

    #[test]
    fn set_refuses_unknown_points() {
        assert!(device().set("nope", Value::Int(1)).is_err());
    }
}
