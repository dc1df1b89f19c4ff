//! Lost commits in a write-ahead log, found before SQLite opens it (pure: reads from any
//! `Read`, no file system). SQLite's WAL recovery replays frames from the start and stops at
//! the first frame whose salt or cumulative checksum does not match; every frame after it is
//! silently discarded, committed or not, and `quick_check` still passes. This scanner replays
//! the same checks (https://www.sqlite.org/fileformat.html#the_write_ahead_log) and then keeps
//! reading: frames after the break that carry the *current* salts were written in this WAL
//! generation after the broken frame, so the break is damage, not a torn tail; commit frames
//! among them are committed transactions SQLite is about to drop. What is normal and never
//! reported: a partial frame at the end of the file, frames of an uncommitted transaction at
//! the end of the valid prefix (kill -9 during a commit), and frames of an older generation
//! (other salts) left behind when the WAL was restarted after a checkpoint.
//! If the WAL header itself is damaged SQLite ignores the whole log: the frames that share the
//! first frame's salts are then counted as discarded.

use std::io::{self, Read};

const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;
pub const HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 24;

/// What a scan of a WAL found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalScan {
    /// The header's magic, version and checksum are valid.
    pub header_ok: bool,
    pub page_size: u32,
    /// Complete frames in the file.
    pub frames: u64,
    /// Frames up to and including the last commit frame SQLite will replay.
    pub committed_frames: u64,
    /// Commits SQLite will replay.
    pub commits: u64,
    /// Frames SQLite will discard that belong to committed transactions (or to the
    /// transaction in flight at the break), when `lost_commits > 0`.
    pub lost_frames: u64,
    /// Committed transactions SQLite will discard.
    pub lost_commits: u64,
    /// Index (1-based) of the first frame that fails the checks, if any.
    pub break_at: Option<u64>,
}

impl WalScan {
    /// Committed transactions would be lost.
    pub fn loses_commits(&self) -> bool {
        self.lost_commits > 0
    }
}

fn word(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
pub fn checksum(data: &[u8], big: bool, s: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = s;
    for c in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&c[0..4], big)).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&c[4..8], big)).wrapping_add(s0);
    }
    (s0, s1)
}

fn valid_page_size(p: u32) -> bool {
    (512..=65536).contains(&p) && p.is_power_of_two()
}

/// Read up to `buf.len()` bytes; the count read (short only at end of file).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Scan a WAL. `db_page_size` (from the database header) is used when the WAL header is
/// damaged. Memory: one frame.
pub fn scan(r: &mut impl Read, db_page_size: Option<u32>) -> io::Result<WalScan> {
    let mut out = WalScan::default();
    let mut hdr = [0u8; HEADER_LEN];
    if fill(r, &mut hdr)? < HEADER_LEN {
        return Ok(out);
    }
    let magic = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let be = |i: usize| u32::from_be_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    let big = magic == MAGIC_BE;
    let hdr_page = be(8);
    let hdr_page = if hdr_page == 1 { 65536 } else { hdr_page };
    let header_ok = (magic == MAGIC_LE || magic == MAGIC_BE)
        && be(4) == VERSION
        && valid_page_size(hdr_page)
        && checksum(&hdr[..24], big, (0, 0)) == (be(24), be(28));
    out.header_ok = header_ok;
    let page_size = if header_ok {
        hdr_page
    } else {
        match db_page_size.filter(|p| valid_page_size(*p)) {
            Some(p) => p,
            None if valid_page_size(hdr_page) => hdr_page,
            None => return Ok(out),
        }
    };
    out.page_size = page_size;
    // Salts of this generation: the header's, or (header damaged) the first frame's.
    let mut salts = header_ok.then(|| (be(16), be(20)));
    // Running checksum of the valid prefix, and the checksum stored in the previous frame
    // (a frame after the break is real if it verifies against its predecessor's).
    let mut sum = (be(24), be(28));
    let mut prev_stored = sum;
    let mut frame = vec![0u8; FRAME_HEADER_LEN + page_size as usize];
    let mut broken = !header_ok;
    let mut in_prefix_since_commit = 0u64;
    let mut after_break_frames = 0u64;
    let mut last_lost_commit = 0u64;
    let mut last_real = 0u64;
    loop {
        if fill(r, &mut frame)? < frame.len() {
            break; // a partial frame at the end is a torn write: normal
        }
        out.frames += 1;
        let f = |i: usize| u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
        let (page_no, db_size, salt, stored) = (f(0), f(4), (f(8), f(12)), (f(16), f(20)));
        let salts = *salts.get_or_insert(salt);
        let verifies = |from: (u32, u32)| {
            let s = checksum(&frame[..8], big, from);
            checksum(&frame[FRAME_HEADER_LEN..], big, s) == stored
        };
        if !broken {
            if page_no != 0 && salt == salts && verifies(sum) {
                sum = stored;
                prev_stored = stored;
                in_prefix_since_commit += 1;
                if db_size != 0 {
                    out.commits += 1;
                    out.committed_frames = out.frames;
                    in_prefix_since_commit = 0;
                }
                continue;
            }
            broken = true;
            out.break_at = Some(out.frames);
        }
        // With a valid header, matching salts (64 random bits per WAL generation) prove a
        // frame of this generation; with a damaged header the salts come from the first
        // frame, so a frame must also verify against its predecessor's stored checksum.
        let real = page_no != 0 && salt == salts && (header_ok || verifies(prev_stored));
        prev_stored = stored;
        if real {
            last_real = out.frames;
            after_break_frames += 1;
            if db_size != 0 {
                out.lost_commits += 1;
                last_lost_commit = out.frames;
            }
        }
    }
    if !header_ok && out.frames > 0 {
        out.break_at = Some(1);
    }
    // Only the very last transaction of this generation broken, its commit frame the last
    // frame with this generation's salts: indistinguishable from a commit interrupted by a
    // kill or power loss (it never returned Ok). Not a loss. Frames of an older generation may
    // follow it: SQLite writes a frame's header and its page in two writes, so a kill between
    // them leaves this generation's commit header over the stale page of a restarted WAL.
    if header_ok && out.lost_commits == 1 && last_lost_commit == last_real {
        out.lost_commits = 0;
    }
    if out.lost_commits > 0 {
        out.lost_frames = in_prefix_since_commit + after_break_frames;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u32 = 512;

    /// Build a WAL: frames as (page number, commit?, salts override).
    struct Builder {
        big: bool,
        bytes: Vec<u8>,
        sum: (u32, u32),
        salts: (u32, u32),
    }

    impl Builder {
        fn new(big: bool, salts: (u32, u32)) -> Builder {
            let mut h = Vec::new();
            h.extend((if big { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
            h.extend(VERSION.to_be_bytes());
            h.extend(PAGE.to_be_bytes());
            h.extend(0u32.to_be_bytes());
            h.extend(salts.0.to_be_bytes());
            h.extend(salts.1.to_be_bytes());
            let s = checksum(&h, big, (0, 0));
            h.extend(s.0.to_be_bytes());
            h.extend(s.1.to_be_bytes());
            Builder {
                big,
                bytes: h,
                sum: s,
                salts,
            }
        }

        fn frame(mut self, page: u32, commit: bool) -> Builder {
            let salts = self.salts;
            let mut fr = Vec::new();
            fr.extend(page.to_be_bytes());
            fr.extend((if commit { 10u32 } else { 0 }).to_be_bytes());
            fr.extend(salts.0.to_be_bytes());
            fr.extend(salts.1.to_be_bytes());
            let data: Vec<u8> = (0..PAGE).map(|i| (i as u8) ^ (page as u8)).collect();
            let s = checksum(&fr[..8], self.big, self.sum);
            let s = checksum(&data, self.big, s);
            self.sum = s;
            fr.extend(s.0.to_be_bytes());
            fr.extend(s.1.to_be_bytes());
            fr.extend(data);
            self.bytes.extend(fr);
            self
        }

        /// Frames of another generation (other salts, their own chain) follow.
        fn old_generation(mut self, frames: u32) -> Builder {
            let keep = (self.sum, self.salts);
            self.salts = (self.salts.0.wrapping_sub(1), 0xdead_beef);
            for i in 0..frames {
                self = self.frame(100 + i, i % 2 == 1);
            }
            (self.sum, self.salts) = keep;
            self
        }

        fn smash(mut self, frame: usize, len: usize) -> Builder {
            let at = HEADER_LEN + frame * (FRAME_HEADER_LEN + PAGE as usize) + 100;
            for b in &mut self.bytes[at..at + len] {
                *b ^= 0x5a;
            }
            self
        }

        fn scan(&self) -> WalScan {
            scan(&mut &self.bytes[..], Some(PAGE)).unwrap()
        }
    }

    fn txns(big: bool, n: u32) -> Builder {
        let mut b = Builder::new(big, (7, 0x1234_5678));
        for i in 0..n {
            b = b.frame(2 * i + 1, false).frame(2 * i + 2, true);
        }
        b
    }

    #[test]
    fn table() {
        // (what, wal, commits replayed, lost commits, lost frames, break)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Builder, u64, u64, u64, Option<u64>)> = vec![
            ("clean", txns(false, 5), 5, 0, 0, None),
            ("clean big-endian", txns(true, 5), 5, 0, 0, None),
            (
                "kill -9 mid-commit",
                txns(false, 5).frame(50, false).frame(51, false),
                5,
                0,
                0,
                None,
            ),
            (
                "torn tail (partial frame)",
                {
                    let mut b = txns(false, 5).frame(50, true);
                    let n = b.bytes.len();
                    b.bytes.truncate(n - 300);
                    b
                },
                5,
                0,
                0,
                None,
            ),
            (
                "torn last frame, nothing after",
                txns(false, 5).frame(50, true).smash(10, 4),
                5,
                0,
                0,
                Some(11),
            ),
            (
                "kill -9 between a commit frame's header and page, restarted WAL",
                txns(false, 3).frame(50, true).smash(6, 4).old_generation(6),
                3,
                0,
                0,
                Some(7),
            ),
            (
                "broken commit followed by a real frame of its generation",
                txns(false, 3)
                    .frame(50, true)
                    .smash(6, 4)
                    .frame(51, false)
                    .old_generation(4),
                3,
                1,
                2,
                Some(7),
            ),
            (
                "old generation after a restart",
                txns(false, 3).old_generation(6),
                3,
                0,
                0,
                Some(7),
            ),
            (
                "garbage in the middle",
                txns(false, 10).smash(5, 64),
                2,
                8,
                16,
                Some(6),
            ),
            (
                "garbage in the first frame",
                txns(false, 10).smash(0, 8),
                0,
                10,
                20,
                Some(1),
            ),
            (
                "garbage in the middle, big-endian",
                txns(true, 10).smash(9, 8),
                4,
                6,
                12,
                Some(10),
            ),
            (
                "header damaged",
                {
                    let mut b = txns(false, 4);
                    b.bytes[20] ^= 1;
                    b
                },
                0,
                4,
                8,
                Some(1),
            ),
            (
                "empty",
                Builder {
                    bytes: vec![],
                    ..txns(false, 0)
                },
                0,
                0,
                0,
                None,
            ),
            ("header only", txns(false, 0), 0, 0, 0, None),
            (
                "not a WAL",
                Builder {
                    bytes: vec![0xa5; 5000],
                    ..txns(false, 0)
                },
                0,
                0,
                0,
                Some(1),
            ),
        ];
        for (what, b, commits, lost, lost_frames, brk) in cases {
            let s = b.scan();
            assert_eq!(
                (s.commits, s.lost_commits, s.lost_frames, s.break_at),
                (commits, lost, lost_frames, brk),
                "{what}: {s:?}"
            );
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        for len in [0, 1, 31, 32, 33, 100, 536, 537, 2000] {
            for fill in [0u8, 0xff, 0x37] {
                let bytes = vec![fill; len];
                for ps in [None, Some(512), Some(0), Some(3), Some(65536)] {
                    let _ = scan(&mut &bytes[..], ps).unwrap();
                }
            }
        }
    }
}
