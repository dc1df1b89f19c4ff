//! Transactions and savepoints begun and ended with cached statements. rusqlite's
//! `Transaction` and `Savepoint` run BEGIN / COMMIT / SAVEPOINT / RELEASE through
//! `execute_batch`, which parses and compiles the text at every call; the daemon's hot paths
//! (the ingest commit with its seal savepoint, the ack lookup, sealing, deferred acks) run
//! several a cycle, about 3 % of its CPU on W1 (issue 13, bench-results/cpu_round13.txt).
//! These keep the statements in the connection's statement cache. Same semantics as
//! rusqlite's defaults: a `Tx` dropped while its transaction is still open rolls it back, a
//! `Sp` dropped without `release` rolls back to its start and releases it (errors on those
//! paths are ignored, as there is nothing left to report them to). No I/O of its own.

use std::ops::Deref;

use rusqlite::Connection;

/// An open transaction on `conn`: commit it with `commit`, or drop it to roll back.
pub(crate) struct Tx<'c> {
    conn: &'c Connection,
}

/// A savepoint inside a `Tx`: keep what was done since with `release`, or drop it to undo it.
pub(crate) struct Sp<'t> {
    conn: &'t Connection,
    released: bool,
}

fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl<'c> Tx<'c> {
    /// BEGIN IMMEDIATE: the write lock now (a writer never upgrades halfway).
    pub fn immediate(conn: &'c Connection) -> rusqlite::Result<Tx<'c>> {
        run(conn, "BEGIN IMMEDIATE")?;
        Ok(Tx { conn })
    }

    /// BEGIN (deferred): a read transaction until the first write.
    pub fn deferred(conn: &'c Connection) -> rusqlite::Result<Tx<'c>> {
        run(conn, "BEGIN")?;
        Ok(Tx { conn })
    }

    pub fn commit(self) -> rusqlite::Result<()> {
        run(self.conn, "COMMIT")
        // A failed COMMIT leaves the transaction open: `drop` rolls it back.
    }

    /// A savepoint (one at a time: `&mut self` while it lives).
    pub fn savepoint(&mut self) -> rusqlite::Result<Sp<'_>> {
        run(self.conn, "SAVEPOINT seal")?;
        Ok(Sp {
            conn: self.conn,
            released: false,
        })
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = run(self.conn, "ROLLBACK");
        }
    }
}

impl Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Sp<'_> {
    /// Keep everything done since the savepoint (it commits with its transaction).
    pub fn release(mut self) -> rusqlite::Result<()> {
        run(self.conn, "RELEASE seal")?;
        self.released = true;
        Ok(())
    }
}

impl Drop for Sp<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = run(self.conn, "ROLLBACK TO seal");
            let _ = run(self.conn, "RELEASE seal");
        }
    }
}

impl Deref for Sp<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        c
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commit_keeps_and_drop_rolls_back() {
        let c = conn();
        let tx = Tx::immediate(&c).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(count(&c), 1);
        assert!(c.is_autocommit());

        let tx = Tx::deferred(&c).unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(tx);
        assert_eq!(count(&c), 1, "a dropped transaction rolls back");
        assert!(c.is_autocommit());
    }

    #[test]
    fn savepoint_release_keeps_and_drop_undoes_only_itself() {
        let c = conn();
        let mut tx = Tx::immediate(&c).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        {
            let sp = tx.savepoint().unwrap();
            sp.execute("INSERT INTO t VALUES (2)", []).unwrap();
            // Dropped: undone, the transaction goes on.
        }
        assert!(!c.is_autocommit());
        {
            let sp = tx.savepoint().unwrap();
            sp.execute("INSERT INTO t VALUES (3)", []).unwrap();
            sp.release().unwrap();
        }
        tx.commit().unwrap();
        let xs: Vec<i64> = c
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(xs, vec![1, 3]);
    }

    #[test]
    fn failed_commit_rolls_back_at_drop() {
        let c = conn();
        c.execute_batch("CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE q (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED); PRAGMA foreign_keys = ON").unwrap();
        let tx = Tx::immediate(&c).unwrap();
        tx.execute("INSERT INTO q VALUES (7)", []).unwrap();
        assert!(
            tx.commit().is_err(),
            "a deferred foreign key fails the COMMIT"
        );
        assert!(
            c.is_autocommit(),
            "the failed transaction was rolled back at drop"
        );
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM q", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
