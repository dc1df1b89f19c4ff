//! The device and point dictionaries: `(device, bus)` → source id and `(source, point name,
//! unit, value kind)` → point id, cached in memory both ways, so batch rows carry small
//! integers instead of repeating names and units in every reading. Rows are added the first
//! time a point is seen (inside the commit's transaction) and never change.

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

use super::blob::{PointDef, ValueKind};
use crate::model::Value;

type PointKey = (i64, Arc<str>, Arc<str>, ValueKind);

/// foldhash instead of SipHash: every reading of a commit and of a seal looks a point up here,
/// and SipHash was ~3 % of the daemon's instructions on W1 (issue 13). The keys are the
/// configuration's names and the store's own ids, not network input; foldhash still seeds
/// each map at random.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct Dict {
    sources: HashMap<(Arc<str>, Arc<str>), i64>,
    source_names: HashMap<i64, (Arc<str>, Arc<str>)>,
    points: HashMap<PointKey, i64>,
    point_defs: HashMap<i64, PointDef>,
    /// The unit of a point without one, shared (a lookup per reading must not allocate).
    no_unit: Arc<str>,
}

impl Dict {
    /// Forget everything (after a rolled-back transaction that may have added rows).
    pub fn clear(&mut self) {
        *self = Dict::default();
    }

    pub fn source_id(
        &mut self,
        conn: &Connection,
        device: &Arc<str>,
        bus: &Arc<str>,
    ) -> rusqlite::Result<i64> {
        if let Some(id) = self.sources.get(&(device.clone(), bus.clone())) {
            return Ok(*id);
        }
        let found: Option<i64> = conn
            .prepare_cached("SELECT id FROM source WHERE device = ?1 AND bus = ?2")?
            .query_row([&**device, &**bus], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO source (device, bus) VALUES (?1, ?2)")?
                    .execute([&**device, &**bus])?;
                conn.last_insert_rowid()
            }
        };
        self.sources.insert((device.clone(), bus.clone()), id);
        self.source_names.insert(id, (device.clone(), bus.clone()));
        Ok(id)
    }

    pub fn point_id(
        &mut self,
        conn: &Connection,
        source: i64,
        name: &Arc<str>,
        unit: Option<&Arc<str>>,
        value: Option<&Value>,
    ) -> rusqlite::Result<i64> {
        let kind = ValueKind::of(value);
        let unit: Arc<str> = unit.unwrap_or(&self.no_unit).clone();
        let key = (source, name.clone(), unit.clone(), kind);
        if let Some(id) = self.points.get(&key) {
            return Ok(*id);
        }
        let found: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM point WHERE source = ?1 AND name = ?2 AND unit = ?3 AND kind = ?4",
            )?
            .query_row(
                rusqlite::params![source, &**name, &*unit, kind as i64],
                |r| r.get(0),
            )
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached(
                    "INSERT INTO point (source, name, unit, kind) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(rusqlite::params![
                    source,
                    &**name,
                    &*unit,
                    kind as i64
                ])?;
                conn.last_insert_rowid()
            }
        };
        self.point_defs.insert(
            id,
            PointDef {
                name: name.clone(),
                unit: (!unit.is_empty()).then(|| unit.clone()),
                kind,
            },
        );
        self.points.insert(key, id);
        Ok(id)
    }

    /// (device, bus) of a source id.
    pub fn source(&mut self, conn: &Connection, id: i64) -> rusqlite::Result<(Arc<str>, Arc<str>)> {
        if let Some(s) = self.source_names.get(&id) {
            return Ok(s.clone());
        }
        let (d, b): (String, String) = conn
            .prepare_cached("SELECT device, bus FROM source WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let v: (Arc<str>, Arc<str>) = (d.into(), b.into());
        self.source_names.insert(id, v.clone());
        self.sources.insert(v.clone(), id);
        Ok(v)
    }

    /// What a point id means; `None` if the id is unknown.
    pub fn point(&mut self, conn: &Connection, id: i64) -> rusqlite::Result<Option<PointDef>> {
        if let Some(p) = self.point_defs.get(&id) {
            return Ok(Some(p.clone()));
        }
        let row: Option<(String, String, i64)> = conn
            .prepare_cached("SELECT name, unit, kind FROM point WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((name, unit, kind)) = row else {
            return Ok(None);
        };
        let Some(kind) = ValueKind::from_code(kind) else {
            return Ok(None);
        };
        let def = PointDef {
            name: name.into(),
            unit: (!unit.is_empty()).then(|| unit.into()),
            kind,
        };
        self.point_defs.insert(id, def.clone());
        Ok(Some(def))
    }

    /// Source ids of a device (on any bus).
    pub fn sources_of(conn: &Connection, device: &str) -> rusqlite::Result<Vec<i64>> {
        conn.prepare("SELECT id FROM source WHERE device = ?1")?
            .query_map([device], |r| r.get(0))?
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};
    use rusqlite::types::Value as Sql;

    fn sql_value() -> impl Strategy<Value = Sql> {
        prop_oneof![
            Just(Sql::Null),
            any::<i64>().prop_map(Sql::Integer),
            any::<f64>().prop_map(Sql::Real),
            ".{0,6}".prop_map(Sql::Text),
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(Sql::Blob),
        ]
    }

    proptest! {
        #![proptest_config(Config {
            cases: 256,
            rng_seed: RngSeed::Fixed(0x0009_d1c7),
            failure_persistence: None,
            ..Config::default()
        })]

        /// Dictionary rows as a damaged or hostile database may hold them (any type in any
        /// column, unknown kind codes): looking a point up is a value or an error, never a panic.
        #[test]
        fn hostile_dictionary_rows_never_panic(
            name in sql_value(),
            unit in sql_value(),
            kind in prop_oneof![any::<i64>(), 0..8i64],
        ) {
            let mut conn = Connection::open_in_memory().unwrap();
            super::super::schema::migrate_to(&mut conn, super::super::schema::VERSION).unwrap();
            conn.execute("INSERT INTO source (id, device, bus) VALUES (1, 'd', 'b')", []).unwrap();
            // SQLite's flexible typing lets any value into any column (NOT NULL aside).
            let inserted = conn.execute(
                "INSERT INTO point (id, source, name, unit, kind) VALUES (7, 1, ?1, ?2, ?3)",
                rusqlite::params![name, unit, kind],
            );
            let mut d = Dict::default();
            let got = d.point(&conn, 7);
            if inserted.is_ok() {
                if let Ok(Some(p)) = &got {
                    prop_assert_eq!(Some(p.kind), ValueKind::from_code(kind));
                }
            } else {
                prop_assert!(matches!(got, Ok(None)));
            }
            let _ = d.source(&conn, 1);
            let _ = d.source(&conn, 2);
        }
    }
}
