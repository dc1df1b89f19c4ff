//! `store::sqlite_heap`: SQLite allocating through the Rust global allocator, as the static
//! (musl) daemon runs it. This test binary has its own process, so it can route SQLite before
//! its first SQLite call; a counting global allocator proves the blocks come from Rust, and a
//! real store file with the daemon's pragmas (WAL, foreign keys, multi-statement transactions
//! with statement journals, growing strings) proves SQLite works on them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::Connection;

/// Counts the allocations of at least 32 KiB (SQLite's 64 KiB statement journal chunks;
/// nothing else in this test allocates that much at once) and the bytes outstanding.
struct Counting;

static BIG: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() >= 32 * 1024 {
            BIG.fetch_add(1, Ordering::Relaxed);
        }
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= 32 * 1024 {
            BIG.fetch_add(1, Ordering::Relaxed);
        }
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn sqlite_allocates_from_the_global_allocator_and_works_on_it() {
    gasdtu::store::sqlite_heap::route_to_global_allocator()
        .expect("SQLite is not initialised yet in this process");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap.db");

    let big_before = BIG.load(Ordering::Relaxed);
    let live_before = LIVE.load(Ordering::Relaxed);
    let mut c = Connection::open(&path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         CREATE TABLE parent (seq INTEGER PRIMARY KEY);
         CREATE TABLE child (id INTEGER PRIMARY KEY, seq INTEGER REFERENCES parent(seq),
                             body BLOB NOT NULL);
         CREATE INDEX child_seq ON child (seq) WHERE seq IS NOT NULL;",
    )
    .unwrap();
    // SQLite's own blocks now come from the counted allocator.
    assert!(
        LIVE.load(Ordering::Relaxed) > live_before + 16 * 1024,
        "opening a database allocated nothing through the global allocator"
    );
    // Once SQLite is initialised the methods cannot be changed: a clear error, no crash.
    let again = gasdtu::store::sqlite_heap::route_to_global_allocator().unwrap_err();
    assert!(again.to_string().contains("already initialised"), "{again}");

    // The daemon's pattern: one transaction of many statements, each with a statement journal
    // (foreign keys), rows bound and unbound.
    for round in 0..20i64 {
        let tx = c.transaction().unwrap();
        tx.execute("INSERT INTO parent (seq) VALUES (?1)", [round])
            .unwrap();
        for i in 0..50i64 {
            tx.execute(
                "INSERT INTO child (id, seq, body) VALUES (?1, NULL, zeroblob(200))",
                [round * 1000 + i],
            )
            .unwrap();
            tx.execute(
                "UPDATE child SET seq = ?1 WHERE id = ?2",
                [round, round * 1000 + i],
            )
            .unwrap();
        }
        tx.execute("UPDATE child SET seq = NULL WHERE seq = ?1", [round])
            .unwrap();
        tx.execute("DELETE FROM parent WHERE seq = ?1", [round])
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(
        BIG.load(Ordering::Relaxed) > big_before,
        "SQLite's statement journals did not come from the global allocator"
    );
    let (rows, bound): (i64, i64) = c
        .query_row("SELECT count(*), count(seq) FROM child", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((rows, bound), (1000, 0));
    // A foreign key violation is still refused (the statement journal rolls it back).
    let err = c
        .execute("UPDATE child SET seq = 999999 WHERE id < 5", [])
        .unwrap_err();
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    assert_eq!(
        c.query_row("SELECT count(seq) FROM child", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );

    // Growing values go through xRealloc: a 1 MiB string grown by group_concat, read back whole.
    let s: String = c
        .query_row(
            "WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i < 131071)
             SELECT group_concat(printf('%08d', i), '') FROM r",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(s.len(), 131072 * 8);
    assert_eq!(&s[..16], "0000000000000001");
    assert_eq!(&s[s.len() - 8..], "00131071");
    assert_eq!(
        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );

    // Closing hands SQLite's blocks back: what it still holds afterwards is small (its
    // global state), not the connection's page cache.
    let live_open = LIVE.load(Ordering::Relaxed);
    drop(c);
    let live_closed = LIVE.load(Ordering::Relaxed);
    assert!(
        live_closed + 64 * 1024 < live_open,
        "closing the connection freed only {} bytes",
        live_open.saturating_sub(live_closed)
    );
}
