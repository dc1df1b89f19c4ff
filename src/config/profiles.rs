//! TEMPORARY stand-in for the profile resolver (the real module is being written on another
//! branch): returns one hard-coded test profile for any id so that `gasdtu simulate` builds.
//! Drop this file on merge.

use std::fmt;
use std::path::PathBuf;

use crate::model::{ComputedSpec, DataType, PointSpec, Table, WordOrder};

/// A resolved device profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub follows: String,
    pub description: String,
    pub default_order: WordOrder,
    pub max_registers: Option<u16>,
    pub max_gap: Option<u16>,
    pub points: Vec<PointSpec>,
    pub computed: Vec<ComputedSpec>,
}

/// Stand-in error (the real module defines its own).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn point(name: &str, address: u16, data_type: DataType) -> PointSpec {
    PointSpec {
        name: name.to_string(),
        table: Table::HoldingRegister,
        address,
        data_type,
        order: WordOrder::Abcd,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: false,
    }
}

/// Resolve a profile id. Stand-in: the same test profile for every id.
pub fn resolve_profile(id: &str, _dirs: &[PathBuf]) -> Result<Profile, Vec<ConfigError>> {
    Ok(Profile {
        id: id.to_string(),
        name: format!("test profile ({id})"),
        follows: "nothing (stand-in)".to_string(),
        description: "temporary stand-in profile".to_string(),
        default_order: WordOrder::Abcd,
        max_registers: None,
        max_gap: None,
        points: vec![
            point("pressure", 0, DataType::F32),
            point("temperature", 2, DataType::F32),
            point("volume_standard_int", 4, DataType::U32),
            point("volume_standard_frac", 6, DataType::F32),
            point("status", 8, DataType::U16),
            point("status_low_battery", 8, DataType::BitOfRegister(0)),
        ],
        computed: vec![ComputedSpec {
            name: "volume_standard".to_string(),
            terms: vec![
                ("volume_standard_int".to_string(), 1.0),
                ("volume_standard_frac".to_string(), 1.0),
            ],
            unit: Some("m3".to_string()),
        }],
    })
}
