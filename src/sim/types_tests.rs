//! The simulator serves the types of issue 12 with the daemon's own codec: `bcd48` with
//! implied decimals, `intreal` over the old integer/fraction helpers (the widest point wins,
//! pins win over all), and `scale_from` points encoded with the decimals register's value.

use std::time::SystemTime;

use super::frame::{Request, Response};
use super::SimDevice;
use crate::modbus::registers;
use crate::model::{DataType, PointSpec, Table, Value, WordOrder};

fn pt(name: &str, address: u16, data_type: DataType, order: WordOrder) -> PointSpec {
    PointSpec {
        name: name.into(),
        table: Table::HoldingRegister,
        address,
        data_type,
        order,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: false,
        scale_from: None,
        publish: true,
    }
}

fn read(d: &mut SimDevice, address: u16, quantity: u16) -> Vec<u16> {
    match d.answer(
        &Request::ReadHoldingRegisters { address, quantity },
        SystemTime::now(),
    ) {
        Response::Registers { words, .. } => words,
        other => panic!("{other:?}"),
    }
}

fn device() -> SimDevice {
    let dcba = WordOrder::Dcba;
    let abcd = WordOrder::Abcd;
    let mut total = pt("volume_standard", 10, DataType::Bcd48, WordOrder::Cdab);
    total.scale = registers::decimal_scale(4);
    let mut pressure = pt("pressure", 21, DataType::I16, abcd);
    pressure.scale_from = Some("pressure_decimals".into());
    SimDevice::new(
        1,
        "types",
        vec![
            // The helpers first, as the evc profile lists them: the INTREAL still wins.
            pt("vb_int", 0, DataType::U32, dcba),
            pt("vb_frac", 2, DataType::F32, dcba),
            pt("vb", 0, DataType::IntReal, dcba),
            total,
            pt("pressure_decimals", 20, DataType::U16, abcd),
            pressure,
        ],
        vec![],
    )
}

#[test]
fn intreal_bcd48_and_scale_from_are_served_as_the_daemon_decodes_them() {
    let mut d = device();
    d.set("vb", Value::Float(16_777_217.25)).unwrap();
    d.set("volume_standard", Value::Float(9876.5432)).unwrap();
    d.set("pressure", Value::Float(-899.8)).unwrap();
    let r = read(&mut d, 0, 4);
    assert_eq!(r, vec![0x0100, 0x0001, 0x0000, 0x803E], "intreal DCBA");
    let p = |name: &str| d.points().iter().find(|p| p.name == name).unwrap().clone();
    assert_eq!(
        registers::decode_point(&p("vb"), &r),
        Ok(Value::Float(16_777_217.25))
    );
    assert_eq!(
        registers::decode_point(&p("vb_int"), &r[..2]),
        Ok(Value::UInt(16_777_217))
    );
    assert_eq!(
        registers::decode_point(&p("vb_frac"), &r[2..]),
        Ok(Value::Float(0.25))
    );
    // bcd48 CDAB with 4 decimals: 000098765432 with its words reversed.
    assert_eq!(read(&mut d, 10, 3), vec![0x5432, 0x9876, 0x0000]);
    // One decimal unless pinned: -899.8 is -8998 counts.
    assert_eq!(read(&mut d, 20, 2), vec![1, (-8998i16) as u16]);
    d.set("pressure_decimals", Value::UInt(3)).unwrap();
    d.set("pressure", Value::Float(15.02)).unwrap();
    assert_eq!(read(&mut d, 20, 2), vec![3, 15020]);
}

#[test]
fn a_pinned_helper_shows_through_the_intreal() {
    // The INTREAL follows the value model; the pinned integer half is placed over it.
    let mut d = device();
    d.set("vb_int", Value::UInt(3_000_000_000)).unwrap();
    let r = read(&mut d, 0, 4);
    let vb = d.points().iter().find(|p| p.name == "vb").unwrap().clone();
    let Ok(Value::Float(x)) = registers::decode_point(&vb, &r) else {
        panic!("{r:?}");
    };
    assert_eq!(x.trunc(), 3_000_000_000.0);
}

#[test]
fn an_invalid_decimals_register_is_served_as_is() {
    // The value is not re-placed (no scale to encode it with); the daemon reads the 12 and
    // reports the pressure bad.
    let mut d = device();
    d.set("pressure_decimals", Value::UInt(12)).unwrap();
    d.set("pressure", Value::Float(1.0)).unwrap();
    let r = read(&mut d, 20, 2);
    assert_eq!(r[0], 12);
    let dec = registers::decode_raw(DataType::U16, WordOrder::Abcd, &r[..1]).unwrap();
    let raw = registers::decode_raw(DataType::I16, WordOrder::Abcd, &r[1..]).unwrap();
    assert!(registers::apply_decimals(raw, "pressure_decimals", &dec, 1.0, 0.0).is_err());
}
