//! Finding a configured device and one of its points by name, for the commissioning verbs
//! (`gasdtu read evc1 pressure`, `gasdtu write evc1 setpoint 12.5`): the resolved point
//! (profile and overrides already applied by the loader) or a computed point, and errors
//! that list what the config does have. Pure lookups over a validated `Config`; never loads
//! or changes anything.

use thiserror::Error;

use super::{Config, DeviceConfig};
use crate::model::{ComputedSpec, PointSpec};

/// Names listed in an error before "and N more".
const LISTED: usize = 12;

/// What a point name of a device resolves to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'a> {
    /// A point read from registers or bits.
    Point(&'a PointSpec),
    /// A point computed from other points of the device.
    Computed(&'a ComputedSpec),
}

/// A device or point name the config does not have.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LookupError {
    #[error("no device `{name}` in the config ({})", listing("devices", .known))]
    NoDevice { name: String, known: Vec<String> },
    #[error("device `{device}` has no point `{point}` ({})", listing("points", .known))]
    NoPoint {
        device: String,
        point: String,
        known: Vec<String>,
    },
}

/// "devices: a, b, c" (at most `LISTED` names, then "and N more"), or "it has no devices".
fn listing(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("it has no {what}");
    }
    let shown: Vec<&str> = names.iter().take(LISTED).map(String::as_str).collect();
    let more = names.len().saturating_sub(LISTED);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{what}: {}{tail}", shown.join(", "))
}

/// The device called `name` (disabled ones too: commissioning reads them on purpose).
pub fn find_device<'a>(config: &'a Config, name: &str) -> Result<&'a DeviceConfig, LookupError> {
    config
        .devices
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| LookupError::NoDevice {
            name: name.to_string(),
            known: config.devices.iter().map(|d| d.name.clone()).collect(),
        })
}

/// The point called `name` of `device`: a read point, else a computed one.
pub fn find_point<'a>(device: &'a DeviceConfig, name: &str) -> Result<Found<'a>, LookupError> {
    if let Some(p) = device.points.iter().find(|p| p.name == name) {
        return Ok(Found::Point(p));
    }
    if let Some(c) = device.computed.iter().find(|c| c.name == name) {
        return Ok(Found::Computed(c));
    }
    Err(LookupError::NoPoint {
        device: device.name.clone(),
        point: name.to_string(),
        known: device
            .points
            .iter()
            .map(|p| p.name.clone())
            .chain(device.computed.iter().map(|c| c.name.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = r#"
[gateway]
id = "site"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = 1502

[devices.pt1]
bus = "lan"
unit = 1

[devices.pt1.points.pressure]
table = "holding"
address = 0
type = "i16"
scale = 0.1
unit = "kPa"

[devices.pt1.points.setpoint]
table = "holding"
address = 1
type = "u16"
writable = true

[devices.evc1]
bus = "lan"
unit = 2
profile = "evc-dcba"

[devices.tb1]
bus = "lan"
unit = 3
profile = "turbine-bcd"
"#;

    fn site() -> Config {
        match crate::config::parse_str(SITE, "site.toml", std::path::Path::new("/nonexistent")) {
            Ok(l) => l.config,
            Err(e) => panic!("fixture does not load: {e:?}"),
        }
    }

    #[test]
    fn devices_and_points_by_name() {
        let cfg = site();
        let pt1 = find_device(&cfg, "pt1").unwrap();
        assert_eq!(pt1.unit, 1);
        match find_point(pt1, "pressure").unwrap() {
            Found::Point(p) => {
                assert_eq!((p.address, p.scale), (0, 0.1));
                assert_eq!(p.unit.as_deref(), Some("kPa"));
            }
            other => panic!("{other:?}"),
        }
        // A profile point, resolved by the loader (order and unit from the profile).
        let evc = find_device(&cfg, "evc1").unwrap();
        let Found::Point(p) = find_point(evc, "pressure").unwrap() else {
            panic!("pressure of evc-dcba is a read point");
        };
        assert_eq!(p.order, crate::model::WordOrder::Dcba);
        // evc-dcba reads its totals as one INTREAL point each.
        let Found::Point(p) = find_point(evc, "volume_standard").unwrap() else {
            panic!("volume_standard of evc-dcba is a read point");
        };
        assert_eq!(p.data_type, crate::model::DataType::IntReal);
        // turbine-bcd computes its totals from BCD hi/lo words.
        let tb = find_device(&cfg, "tb1").unwrap();
        match find_point(tb, "volume_standard").unwrap() {
            Found::Computed(c) => {
                assert_eq!(
                    c.terms,
                    vec![
                        ("volume_standard_hi".to_string(), 10000.0),
                        ("volume_standard_lo".to_string(), 1.0)
                    ]
                );
                assert_eq!(c.unit.as_deref(), Some("Sm3"));
            }
            other => panic!("volume_standard of turbine-bcd is computed: {other:?}"),
        }
    }

    #[test]
    fn unknown_names_list_what_there_is() {
        let cfg = site();
        let e = find_device(&cfg, "pt9").unwrap_err().to_string();
        assert_eq!(e, "no device `pt9` in the config (devices: evc1, pt1, tb1)");
        let pt1 = find_device(&cfg, "pt1").unwrap();
        let e = find_point(pt1, "flow").unwrap_err().to_string();
        assert_eq!(
            e,
            "device `pt1` has no point `flow` (points: pressure, setpoint)"
        );
        let many: Vec<String> = (0..15).map(|i| format!("p{i}")).collect();
        assert_eq!(
            listing("points", &many),
            "points: p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 and 3 more"
        );
        assert_eq!(listing("devices", &[]), "it has no devices");
    }
}
