//! Hands the start-up code's pages back after start-up (issue 13, peak RSS).
//!
//! Start-up (config load, clap, the first connections, SQLite's schema work) runs code that a
//! running daemon never needs again, and the kernel maps 64 KiB of the binary around every page
//! fault, so those pages stay resident for the life of the process. `release_clean_pages` drops
//! every read-only, non-writable segment of the executable and its shared libraries from this
//! process's page tables with `madvise(MADV_DONTNEED)`: the pages are clean copies of the files
//! (page cache), so whatever is still used is faulted back in, unchanged, on its next access,
//! and what is not stays out. Writable segments (data, .bss, the relocated RELRO part) are never
//! touched: their pages may differ from the file. With the release binary's function order
//! (build.rs, packaging/link-order.txt) the code of a poll cycle sits together at the start of
//! .text, so what comes back is that compact range, not 64 KiB around each function.
//!
//! `gasdtu run` releases first thing (the dynamic loader's relocation pass and its tables) and
//! once before the gateway starts (config parsing, logging set-up); `AfterStart` right after it
//! started, at 2, 5, 10 and 30 s while the first cycles, connections and commits run (`SETTLE`), then
//! every `EVERY`. Each release also trims the heap (`malloc_trim`). 64-bit Linux only (the amd64 and
//! arm64 builds); elsewhere a no-op.

use std::time::{Duration, Instant};

/// When the releases after start-up run, counted from `started`. The first cycles, the broker
/// session and the first commits and seals bring their one-off code in during the first
/// seconds (W1: +1 MiB by 10 s), so the early ones keep the peak down; by the last one they
/// have all run (W1 and a 5-minute station
/// alike: a station's first poll is aligned, but the code it runs is the code of the first W1
/// cycles; what a late first poll brings back is the steady code anyway).
pub const SETTLE: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// After the settled releases, one every `EVERY`: rare paths (the store's 60 s limits check, the
/// MQTT keepalive, a reconnect, a status query) bring their code back, and a long run would
/// otherwise creep up to all of it (W1: 4.4 MiB at 40 s, 6.6 MiB at 300 s with releases every
/// 5 minutes). A release costs ~100-200 minor faults to bring the steady code back (well under
/// a millisecond), once a minute.
pub const EVERY: Duration = Duration::from_secs(60);

/// The releases of a daemon run after the ones before the gateway starts: `started` right
/// after start-up, `tick` runs one for each `SETTLE` delay once it has passed, then one every
/// `EVERY`.
#[derive(Debug)]
pub struct AfterStart {
    started: Instant,
    done: usize,
    last: Instant,
}

impl AfterStart {
    /// Releases the start-up pages now and schedules the settled releases.
    pub fn started(now: Instant) -> AfterStart {
        release("start-up");
        AfterStart {
            started: now,
            done: 0,
            last: now,
        }
    }

    /// Runs the next release when it is due; cheap otherwise.
    pub fn tick(&mut self, now: Instant) {
        let due = match SETTLE.get(self.done) {
            Some(after) => self.started + *after,
            None => self.last + EVERY,
        };
        if now >= due {
            self.done += 1;
            self.last = now;
            release(if self.done <= SETTLE.len() {
                "settled"
            } else {
                "periodic"
            });
        }
    }
}

/// One release, logged first: a log call site seen for the first time runs tracing's
/// registration code, which would otherwise come straight back after the release.
pub fn release(when: &'static str) {
    tracing::debug!(
        when,
        "releasing clean pages of the binary and its libraries"
    );
    release_clean_pages();
    trim_heap();
}

/// Returns the heap's free pages to the kernel (glibc keeps up to M_TRIM_THRESHOLD at the top
/// and never returns free pages below it on its own): what start-up parsing freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Drops the pages of every non-writable loaded segment (executable and shared libraries) from
/// this process and returns how many bytes of address space it covered. Safe at any time: the
/// pages are clean file pages and come back on their next access.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn release_clean_pages() -> usize {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `collect` synchronously with pointers valid for the call;
    // `data` is the &mut Vec above, alive for the whole call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect),
            (&mut ranges as *mut Vec<(usize, usize)>).cast(),
        );
    }
    let page = page_size();
    let mut total = 0;
    for (start, len) in ranges {
        // Only whole pages inside the segment: a page shared with a writable neighbour is kept.
        let first = start.div_ceil(page) * page;
        let end = (start + len) / page * page;
        if end <= first {
            continue;
        }
        // SAFETY: [first, end) lies inside a loaded, non-writable (never written) segment of
        // a mapped object; MADV_DONTNEED on such a private file mapping only drops page-table
        // entries, the next access reads the same bytes back from the page cache.
        let rc =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
        if rc == 0 {
            total += end - first;
        }
    }
    total
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn release_clean_pages() -> usize {
    0
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// dl_iterate_phdr callback: the loadable segments without write permission of one object.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the caller (release_clean_pages) passes its Vec as `data`; `info` and its
    // program headers are valid for this call (dl_iterate_phdr's contract).
    let (ranges, info) = unsafe { (&mut *data.cast::<Vec<(usize, usize)>>(), &*info) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // The vDSO is the kernel's, not a file: nothing to gain, left alone.
    if !info.dlpi_name.is_null() {
        // SAFETY: a non-null dlpi_name is a NUL-terminated string valid for this call.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
        if name.to_bytes().starts_with(b"linux-") {
            return 0;
        }
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    // An object with text relocations had its "read-only" segments written by the loader.
    if has_textrel(info, phdrs) {
        return 0;
    }
    for p in phdrs {
        if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0 && p.p_memsz > 0 {
            let start = (info.dlpi_addr as usize).wrapping_add(p.p_vaddr as usize);
            ranges.push((start, p.p_memsz as usize));
        }
    }
    0
}

/// One entry of a 64-bit dynamic section (Elf64_Dyn; the libc crate does not declare it).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

/// Whether the object's dynamic section asks for text relocations (DT_TEXTREL or DF_TEXTREL).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn has_textrel(info: &libc::dl_phdr_info, phdrs: &[libc::Elf64_Phdr]) -> bool {
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        return false;
    };
    let start = (info.dlpi_addr as usize).wrapping_add(dynamic.p_vaddr as usize) as *const Dyn;
    let count = dynamic.p_memsz as usize / std::mem::size_of::<Dyn>();
    for i in 0..count {
        // SAFETY: entry i lies inside the loaded PT_DYNAMIC segment of a mapped object.
        let d = unsafe { &*start.add(i) };
        match d.tag {
            DT_NULL => break,
            DT_TEXTREL => return true,
            DT_FLAGS if d.val & DF_TEXTREL != 0 => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn answer(x: u64) -> u64 {
        x.wrapping_mul(6).wrapping_add(std::hint::black_box(0))
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn code_and_constants_still_work_after_their_pages_are_released() {
        static TABLE: [u64; 4] = [7, 11, 13, 17];
        let before: u64 = TABLE.iter().map(|v| answer(*v)).sum();
        let released = release_clean_pages();
        // The test binary's text alone is far more than a page.
        assert!(released > 1 << 20, "released {released} bytes");
        let after: u64 = TABLE.iter().map(|v| answer(*v)).sum();
        assert_eq!(before, after);
        assert_eq!(after, 6 * 48);
    }

    #[test]
    fn the_settled_releases_run_once_each_then_one_every_period() {
        let t0 = Instant::now();
        let mut a = AfterStart::started(t0);
        a.tick(t0 + SETTLE[0] / 2);
        assert_eq!(a.done, 0);
        for (i, after) in SETTLE.iter().enumerate() {
            a.tick(t0 + *after);
            assert_eq!(a.done, i + 1);
            a.tick(t0 + *after);
            assert_eq!(a.done, i + 1, "one release per delay");
        }
        let last = t0 + SETTLE[SETTLE.len() - 1];
        a.tick(last + EVERY / 2);
        assert_eq!(a.done, SETTLE.len());
        a.tick(last + EVERY);
        assert_eq!(a.done, SETTLE.len() + 1);
        a.tick(last + EVERY + EVERY / 2);
        assert_eq!(a.done, SETTLE.len() + 1);
        a.tick(last + EVERY * 2);
        assert_eq!(a.done, SETTLE.len() + 2);
    }
}
