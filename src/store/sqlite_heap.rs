//! SQLite's memory from the Rust global allocator: `route_to_global_allocator` installs
//! `SQLITE_CONFIG_MALLOC` methods that take every SQLite allocation from
//! `std::alloc` (one allocator for the whole process), with SQLite's own 8-byte size header.
//! Called by the static (musl) daemon before any connection is opened: musl's malloc gives a
//! size class's pages back to the kernel as soon as its last block is freed, and SQLite frees
//! its 64 KiB statement journals and ephemeral tables after every statement, so each
//! transaction re-faulted them (issue 13: 180 page faults a second on W1, a third of the
//! daemon's kernel time). Owns no state; does no I/O.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::ffi::{c_int, c_void};

use rusqlite::ffi;

/// The header before each block: the block's size in bytes (SQLite asks `xSize` for it),
/// 8 bytes so that the block keeps SQLite's 8-byte alignment.
const HEADER: usize = 8;
const ALIGN: usize = 8;

/// Why the methods could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("SQLite refused its memory methods (sqlite3_config returned {0}): SQLite was already initialised")]
pub struct AlreadyInitialised(c_int);

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, ALIGN).ok()
}

/// # Safety
/// Called by SQLite only, as `xMalloc`.
unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Ok(size) = usize::try_from(n) else {
        return std::ptr::null_mut();
    };
    let Some(l) = layout(size) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout's size is at least HEADER (non-zero).
    let p = unsafe { alloc(l) };
    if p.is_null() {
        return p.cast();
    }
    // SAFETY: p is valid for HEADER + size bytes and 8-aligned.
    unsafe {
        p.cast::<u64>().write(size as u64);
        p.add(HEADER).cast()
    }
}

/// # Safety
/// `p` is a block from `x_malloc`/`x_realloc` (SQLite never passes NULL here).
unsafe fn block(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: per the contract the header sits HEADER bytes before p.
    unsafe {
        let base = p.cast::<u8>().sub(HEADER);
        (base, base.cast::<u64>().read() as usize)
    }
}

/// # Safety
/// Called by SQLite only, as `xFree`, with a block of ours.
unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: a block of ours; its layout is the one it was allocated with.
    unsafe {
        let (base, size) = block(p);
        if let Some(l) = layout(size) {
            dealloc(base, l);
        }
    }
}

/// # Safety
/// Called by SQLite only, as `xRealloc`, with a block of ours and a positive size.
unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as xMalloc.
        return unsafe { x_malloc(n) };
    }
    let Ok(new_size) = usize::try_from(n) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a block of ours, allocated with layout(size).
    unsafe {
        let (base, size) = block(p);
        let (Some(old), Some(new)) = (layout(size), layout(new_size)) else {
            return std::ptr::null_mut();
        };
        let q = realloc(base, old, new.size());
        if q.is_null() {
            return q.cast();
        }
        q.cast::<u64>().write(new_size as u64);
        q.add(HEADER).cast()
    }
}

/// # Safety
/// Called by SQLite only, as `xSize`.
unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a block of ours.
    let (_, size) = unsafe { block(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Make SQLite allocate through the Rust global allocator. Must run before the process's
/// first SQLite call (it fails, harmlessly, once SQLite is initialised).
pub fn route_to_global_allocator() -> Result<(), AlreadyInitialised> {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to the methods and copies them; the
    // functions above honour SQLite's contract (8-aligned blocks, xSize of a live block).
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const ffi::sqlite3_mem_methods,
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(AlreadyInitialised(rc))
    }
}
