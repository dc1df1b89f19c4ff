//! Frozen payloads (issue 13, docs/store.md "Frozen payloads"): a sealed message whose
//! payload is a pure function of its entries is stored without its bytes. The message row
//! keeps a recipe instead (`message.recipe`, `message.gw`): the encoder version, the wire
//! (encoding and data format), the `hist` flag, the order of its entries and the gateway id
//! the payload was built with; every reader rebuilds the bytes from the entries bound to it
//! (`entry.msg_seq`) with the frozen encoder. A payload is frozen only when, at seal time and
//! inside the sealing transaction, the rebuild from the stored rows gives the very bytes the
//! encoder produced (anything else, e.g. a batch split over several messages or an alarm cut to
//! fit, keeps its payload as before). Sealed entries are never evicted (`limits`: only pending,
//! held and history rows go), so a frozen message stays buildable until it is acknowledged or
//! set aside. What the bytes depend on that a config reload can change (gateway id, encoding,
//! format) is in the row, never read from the running config. Also here: the read of the
//! unacknowledged messages behind `Outbox::unacked` (`Store::unacked_rows`), which rebuilds.

use std::path::Path;

use rusqlite::Connection;
use serde::Deserialize;

use super::dict::Dict;
use super::sealed_entries::{EntryRow, ENTRY_COLS};
use super::{Store, StoreError};
use crate::config::{Encoding, PayloadFormat};
use crate::outbox::{Entry, OutboxError, Sealed};
use crate::uplink::payload::{encode_messages, Wire};

/// The encoder whose bytes `rebuild` reproduces. The payload formats are contracts
/// (docs/mqtt.md, tests/wire_exact.rs): a change of the bytes of an existing format must come
/// with a new version here and keep the old encoder for rows that name it.
pub(super) const ENCODER_VERSION: i64 = 1;

/// Most entries one frozen message may bind (a bound on what a rebuild reads).
const MAX_ENTRIES: usize = 4096;

/// What a message's payload depends on besides its entries and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recipe {
    pub gw: String,
    pub wire: Wire,
    pub hist: bool,
    /// Entries in descending id order (live data is packed newest first).
    pub desc: bool,
}

impl Recipe {
    /// The `message.recipe` code: version << 4 | desc << 3 | hist << 2 | format 2 << 1 | CBOR.
    pub fn code(&self) -> i64 {
        ENCODER_VERSION << 4
            | (self.desc as i64) << 3
            | (self.hist as i64) << 2
            | ((self.wire.format == PayloadFormat::V2) as i64) << 1
            | (self.wire.encoding == Encoding::Cbor) as i64
    }

    /// Inverse of `code` with the stored gateway id; an error names an unknown version.
    pub fn from_code(code: i64, gw: String) -> Result<Recipe, String> {
        let version = code >> 4;
        if version != ENCODER_VERSION {
            return Err(format!(
                "sealed by payload encoder version {version}, this binary rebuilds version \
                 {ENCODER_VERSION}"
            ));
        }
        Ok(Recipe {
            gw,
            wire: Wire {
                encoding: if code & 1 == 1 {
                    Encoding::Cbor
                } else {
                    Encoding::Json
                },
                format: if code & 2 == 2 {
                    PayloadFormat::V2
                } else {
                    PayloadFormat::V1
                },
            },
            hist: code & 4 == 4,
            desc: code & 8 == 8,
        })
    }

    /// The recipe a payload built from `entries` (in this order) claims: gateway id, `hist`
    /// and wire read from the payload's head. `None` when the order is neither ascending nor
    /// descending by id, or the head is not a gasdtu message's (the payload is then stored).
    pub fn guess(payload: &[u8], entries: &[i64]) -> Option<Recipe> {
        if entries.is_empty() || entries.len() > MAX_ENTRIES {
            return None;
        }
        let asc = entries.windows(2).all(|w| w[0] < w[1]);
        let desc = entries.len() > 1 && entries.windows(2).all(|w| w[0] > w[1]);
        if !asc && !desc {
            return None;
        }
        let (gw, hist, wire) = match payload.first()? {
            b'{' => json_head(payload)?,
            _ => cbor_head(payload)?,
        };
        Some(Recipe {
            gw,
            wire,
            hist,
            desc,
        })
    }
}

/// Gateway id, `hist` and wire of a JSON message (`"v": 2` is format 2). Alarm, event and
/// reply messages have no `hist` (false); their wire does not matter to the encoder.
fn json_head(payload: &[u8]) -> Option<(String, bool, Wire)> {
    #[derive(Deserialize)]
    struct Head {
        gw: String,
        #[serde(default)]
        hist: Option<bool>,
        #[serde(default)]
        v: Option<serde_json::Value>,
    }
    let h: Head = match data_tail(payload).and_then(|t| serde_json::from_slice(&t).ok()) {
        Some(h) => h,
        None => serde_json::from_slice(payload).ok()?,
    };
    let format = match h.v.and_then(|v| v.as_u64()) {
        Some(2) => PayloadFormat::V2,
        _ => PayloadFormat::V1,
    };
    let wire = Wire {
        encoding: Encoding::Json,
        format,
    };
    Some((h.gw, h.hist.unwrap_or(false), wire))
}

/// A data message written `data` first (format 1: `{"data":[...],"gw":..,"hist":..,"seq":..}`)
/// as the object of its keys after `data`: what `json_head` needs without scanning the devices
/// (parsing the whole payload was 2 % of W1's instructions, issue 13). The last `,"gw":` is
/// the top-level key: a quote inside a string is escaped, and after the top-level `gw` only
/// scalars follow. `None` (parse the whole payload) for any other shape.
fn data_tail(payload: &[u8]) -> Option<Vec<u8>> {
    const KEY: &[u8] = b",\"gw\":";
    if !payload.starts_with(b"{\"data\":[") || !payload.ends_with(b"}") {
        return None;
    }
    let at = payload.windows(KEY.len()).rposition(|w| w == KEY)?;
    let mut tail = Vec::with_capacity(payload.len() - at);
    tail.push(b'{');
    tail.extend_from_slice(&payload[at + 1..]);
    Some(tail)
}

/// Gateway id, `hist` and wire of a CBOR data message: map keys 0 (gw), 1 (seq), 2 (hist),
/// 3 (base time), then 4 (format 1 devices) or 5 (format 2 schemas). Reads the head only.
fn cbor_head(b: &[u8]) -> Option<(String, bool, Wire)> {
    let mut r = CborHead { b, i: 0 };
    let (major, n) = r.head()?;
    if major != 5 {
        return None;
    }
    let (mut gw, mut hist) = (None, false);
    for _ in 0..n.min(8) {
        let (mk, key) = r.head()?;
        if mk != 0 {
            return None;
        }
        match key {
            0 => {
                let (m, len) = r.head()?;
                if m != 3 {
                    return None;
                }
                gw = Some(std::str::from_utf8(r.take(len)?).ok()?.to_string());
            }
            1 | 3 => {
                let (m, _) = r.head()?;
                if m > 1 {
                    return None;
                }
            }
            2 => {
                hist = match r.take(1)? {
                    [0xf4] => false,
                    [0xf5] => true,
                    _ => return None,
                }
            }
            4 | 5 => {
                let format = if key == 4 {
                    PayloadFormat::V1
                } else {
                    PayloadFormat::V2
                };
                let wire = Wire {
                    encoding: Encoding::Cbor,
                    format,
                };
                return Some((gw?, hist, wire));
            }
            _ => return None,
        }
    }
    None
}

/// A cursor over CBOR item heads.
struct CborHead<'a> {
    b: &'a [u8],
    i: usize,
}

impl CborHead<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let n = usize::try_from(n).ok()?;
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    /// (major type, argument) of the next item head.
    fn head(&mut self) -> Option<(u8, u64)> {
        let first = *self.take(1)?.first()?;
        let (major, info) = (first >> 5, first & 31);
        let arg = match info {
            0..=23 => info as u64,
            24..=27 => {
                let len = 1u64 << (info - 24);
                self.take(len)?
                    .iter()
                    .fold(0u64, |a, x| (a << 8) | *x as u64)
            }
            _ => return None,
        };
        Some((major, arg))
    }
}

/// The entries `ids` (in this order) as the packer saw them, `historical` as given.
pub(super) fn load_entries(
    conn: &Connection,
    dict: &mut Dict,
    path: &Path,
    ids: &[i64],
    historical: bool,
) -> Result<Vec<Entry>, StoreError> {
    let sql = |source| StoreError::Sqlite {
        what: "rebuild entries",
        path: path.to_path_buf(),
        source,
    };
    let mut st = conn
        .prepare_cached(&format!("SELECT {ENTRY_COLS} FROM entry WHERE id = ?1"))
        .map_err(sql)?;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let row = st.query_row([id], EntryRow::from_row).map_err(sql)?;
        out.push(row.decode(conn, dict, path, historical)?);
    }
    Ok(out)
}

/// The payload of message `seq` built from `ids` (in this order) by `recipe`'s encoder.
pub(super) fn build(
    conn: &Connection,
    dict: &mut Dict,
    path: &Path,
    seq: u64,
    ids: &[i64],
    recipe: &Recipe,
) -> Result<Vec<u8>, StoreError> {
    let unbuildable = |why: String| StoreError::Unbuildable {
        path: path.to_path_buf(),
        seq,
        why,
    };
    let entries = load_entries(conn, dict, path, ids, recipe.hist)?;
    let mut packed = encode_messages(&entries, &recipe.gw, usize::MAX, recipe.wire);
    let Some(p) = packed.pop() else {
        return Err(unbuildable("no entries".into()));
    };
    if !packed.is_empty() || p.entries != ids {
        return Err(unbuildable(format!(
            "its {} entries do not pack into one message",
            ids.len()
        )));
    }
    p.build(&recipe.gw, seq)
        .map_err(|e| unbuildable(e.to_string()))
}

/// The payload of stored message `seq` (frozen by `recipe`): its bound entries in their
/// sealed order, encoded again.
pub(super) fn rebuild(
    conn: &Connection,
    dict: &mut Dict,
    path: &Path,
    seq: u64,
    recipe: &Recipe,
) -> Result<Vec<u8>, StoreError> {
    let order = if recipe.desc { "DESC" } else { "ASC" };
    let ids = conn
        .prepare_cached(&format!(
            "SELECT id FROM entry WHERE msg_seq = ?1 ORDER BY id {order} LIMIT {}",
            MAX_ENTRIES + 1
        ))
        .and_then(|mut st| {
            st.query_map([seq as i64], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()
        })
        .map_err(|source| StoreError::Sqlite {
            what: "rebuild message",
            path: path.to_path_buf(),
            source,
        })?;
    if ids.len() > MAX_ENTRIES {
        return Err(StoreError::Unbuildable {
            path: path.to_path_buf(),
            seq,
            why: format!("more than {MAX_ENTRIES} entries"),
        });
    }
    build(conn, dict, path, seq, &ids, recipe)
}

/// At seal time, inside the sealing transaction: the recipe that rebuilds `payload` of
/// message `seq` from `entries` (not bound yet), or `None` (store the bytes). The caller
/// vouches that it built `payload` from exactly these entries, whole and uncut
/// (`SealRequest::rebuildable`, `Packed::rebuildable`), decoded from these very rows; the
/// recipe is then read off the payload's head. Debug builds (every test, the crash and
/// wire tests included) also rebuild the bytes from the stored rows and stop on a
/// difference: a packer that vouches wrongly fails the tests instead of sending other bytes
/// under a seq after a restart. Release builds skip that second encode (issue 13: it was a
/// third of the seal's CPU, bench-results/cpu_round7.txt).
pub(super) fn freeze(
    conn: &Connection,
    dict: &mut Dict,
    path: &Path,
    seq: u64,
    entries: &[i64],
    payload: &[u8],
) -> Option<Recipe> {
    let recipe = Recipe::guess(payload, entries)?;
    if cfg!(debug_assertions) {
        match build(conn, dict, path, seq, entries, &recipe) {
            Ok(b) => assert!(
                b == payload,
                "message {seq}: the packer called it rebuildable but its entries rebuild \
                 other bytes"
            ),
            // The disk failing under a debug build: store the bytes, as before.
            Err(e @ StoreError::Sqlite { .. }) => {
                tracing::debug!(seq, error = %e, "payload kept: rows not readable");
                return None;
            }
            Err(e) => panic!("message {seq}: called rebuildable, but {e}"),
        }
    }
    Some(recipe)
}

/// The payload of a stored message row: the stored bytes, or with a recipe (`recipe` code and
/// `gw`) the bytes rebuilt from its entries.
pub(super) fn payload_of(
    conn: &Connection,
    dict: &mut Dict,
    path: &Path,
    seq: u64,
    stored: Vec<u8>,
    recipe: Option<(i64, Option<String>)>,
) -> Result<Vec<u8>, StoreError> {
    let Some((code, gw)) = recipe else {
        return Ok(stored);
    };
    let unbuildable = |why: String| StoreError::Unbuildable {
        path: path.to_path_buf(),
        seq,
        why,
    };
    let gw = gw.ok_or_else(|| unbuildable("no gateway id stored with its recipe".into()))?;
    let recipe = Recipe::from_code(code, gw).map_err(unbuildable)?;
    rebuild(conn, dict, path, seq, &recipe)
}

/// Messages whose frozen payload could not be rebuilt: (seq, why).
pub(super) type Unbuilt = Vec<(u64, String)>;

impl Store {
    /// Unacknowledged messages in seq order with their payloads (frozen ones rebuilt), and
    /// the seqs whose payload could not be rebuilt (with why).
    pub(super) fn unacked_rows(&self) -> Result<(Vec<Sealed>, Unbuilt), OutboxError> {
        let mut g = self.lock();
        let inner = &mut *g;
        // Noted PUBACKs first: an acknowledged message is not resent.
        self.absorb_noted_in(inner);
        // Everything sealed is read here, what the ingest handed over too (not twice).
        inner.take_handed_over();
        type Row = (Sealed, Option<(i64, Option<String>)>);
        let rows = inner
            .conn
            .prepare_cached(
                "SELECT seq, topic, payload, readings, retain, recipe, gw FROM message \
                 ORDER BY seq",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    let recipe: Option<i64> = r.get(5)?;
                    let sealed = Sealed {
                        seq: r.get::<_, i64>(0)? as u64,
                        topic: r.get(1)?,
                        payload: r.get(2)?,
                        readings: r.get::<_, i64>(3)? as u64,
                        retain: r.get(4)?,
                    };
                    let gw: Option<String> = r.get(6)?;
                    Ok((sealed, recipe.map(|c| (c, gw))))
                })?
                .collect::<rusqlite::Result<Vec<Row>>>()
            })
            .map_err(self.sql("unacked"))?;
        let (mut out, mut broken) = (Vec::with_capacity(rows.len()), Vec::new());
        for (mut m, recipe) in rows {
            // Acknowledged but not written yet: not to be resent.
            if inner.deferred.contains(m.seq) {
                continue;
            }
            if recipe.is_some() {
                let stored = std::mem::take(&mut m.payload);
                match payload_of(
                    &inner.conn,
                    &mut inner.dict,
                    &self.path,
                    m.seq,
                    stored,
                    recipe,
                ) {
                    Ok(p) => m.payload = p,
                    Err(StoreError::Unbuildable { why, .. })
                    | Err(StoreError::Decode { why, .. }) => {
                        broken.push((m.seq, why));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            out.push(m);
        }
        Ok((out, broken))
    }
}

#[cfg(test)]
#[path = "frozen_tests.rs"]
mod tests;
