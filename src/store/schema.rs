//! The database schema as a list of migration steps, applied in order by `PRAGMA user_version`,
//! each in its own transaction (so a crash mid-migration leaves the previous version intact).
//! docs/store.md describes every table and column. Never edit a released step: add one.

use rusqlite::Connection;

/// Step `i` takes the database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1: dictionaries, the entry table (batches + events/alarms, history + outbox state),
    // sealed messages, meta.
    r#"
    CREATE TABLE source (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        bus TEXT NOT NULL,
        UNIQUE (device, bus)
    );
    CREATE TABLE point (
        id INTEGER PRIMARY KEY,
        source INTEGER NOT NULL REFERENCES source(id),
        name TEXT NOT NULL,
        unit TEXT NOT NULL,             -- '' when the point has no unit
        kind INTEGER NOT NULL,          -- blob::ValueKind
        UNIQUE (source, name, unit, kind)
    );
    CREATE TABLE message (
        seq INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        readings INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE entry (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,          -- 0 alarm, 1 event, 2 data
        status INTEGER NOT NULL,        -- 0 pending, 1 sealed, 2 delivered (history), 3 held
        msg_seq INTEGER REFERENCES message(seq),
        created_ms INTEGER NOT NULL,
        read_ms INTEGER NOT NULL,
        source INTEGER REFERENCES source(id),
        slot_ms INTEGER,
        online INTEGER,
        failed_cycles INTEGER,
        readings INTEGER NOT NULL,
        clock INTEGER NOT NULL,         -- ClockState
        boot_id TEXT,                   -- held rows only
        clock_base INTEGER,             -- held rows only
        body BLOB NOT NULL              -- CBOR samples (data) or JSON text (alarm/event)
    );
    CREATE INDEX entry_pending ON entry (kind, created_ms) WHERE status = 0;
    CREATE INDEX entry_sealed ON entry (msg_seq) WHERE msg_seq IS NOT NULL;
    CREATE INDEX entry_held ON entry (boot_id) WHERE status = 3;
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // v2: read-time index for export, age eviction and the time range of a loss report.
    r#"
    CREATE INDEX entry_read ON entry (read_ms) WHERE kind = 2;
    "#,
    // v3: alarm condition states (active alarms, occurrence ids, ack state, delay timers,
    // stuck trackers), written in the same transaction as the batch that changed them.
    r#"
    CREATE TABLE alarm_state (
        key TEXT PRIMARY KEY,           -- <rule>/<device>/<level|kind>
        state TEXT NOT NULL             -- JSON alarm::machine::CondState
    ) WITHOUT ROWID;
    "#,
    // v4: dead letters: messages the MQTT client refused (too large, unbuildable), set aside
    // with their sequence number so one message can never block the outbox (docs/mqtt.md).
    r#"
    CREATE TABLE dead_letter (
        seq INTEGER PRIMARY KEY,        -- the sequence number the message was given
        topic TEXT NOT NULL,
        bytes INTEGER NOT NULL,         -- payload size (0 when it could not be built)
        reason TEXT NOT NULL,
        readings INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        payload BLOB                    -- the sealed payload, NULL when it could not be built
    );
    "#,
    // v5: remote commands (issue 10): one row per command id, so a redelivered command is
    // answered from here and never executed twice; replies are entries of kind 3 whose
    // topic is `reply_topic`; a message remembers whether it is published retained.
    r#"
    CREATE TABLE command (
        id TEXT PRIMARY KEY,            -- the request's id (at most 64 bytes)
        op TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done')),
        generation INTEGER NOT NULL,    -- the store opening that began it (see commands.rs)
        received_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        finished_ms INTEGER,            -- NULL while running
        result TEXT                     -- JSON result once done (at most 16 KiB)
    ) WITHOUT ROWID;
    CREATE INDEX command_received ON command (received_ms);   -- the row cap, oldest first
    CREATE INDEX command_expires ON command (expires_ms);     -- the purge by expiry
    ALTER TABLE entry ADD COLUMN reply_topic INTEGER;   -- kind 3 only: 0 cmd/res, 1 config/state
    ALTER TABLE message ADD COLUMN retain INTEGER NOT NULL DEFAULT 0;
    "#,
    // v6: frozen payloads (issue 13, store/frozen.rs): a message whose payload the entries
    // bound to it rebuild byte for byte stores an empty payload and its recipe (encoder
    // version, wire, hist, entry order) and the gateway id it was built with; NULL recipe:
    // the payload is stored as before.
    r#"
    ALTER TABLE message ADD COLUMN recipe INTEGER;
    ALTER TABLE message ADD COLUMN gw TEXT;
    "#,
];

/// The version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Apply the steps from the current version up to `target` (<= VERSION). Returns the version
/// found before migrating.
pub fn migrate_to(conn: &mut Connection, target: i64) -> rusqlite::Result<i64> {
    let found = user_version(conn)?;
    for v in found..target {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[v as usize])?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
    }
    Ok(found)
}
