//! How much of its file system the store may use. The configured `max_bytes` (512 MiB by
//! default) is an upper bound; on a small or shared flash partition the *effective* cap is
//!
//! ```text
//! effective = min(max_bytes, store bytes now (db + WAL) + free bytes - floor)
//! floor     = min(16 MiB, 10 % of the file system)
//! ```
//!
//! so the store stops growing while the file system still has `floor` free (for the WAL's
//! growth within a transaction, the eviction transaction itself, logs and the rest of the
//! system) instead of filling it and failing every commit with "disk full". It is recomputed
//! at open and at every `enforce_limits`: when something else fills the disk the cap drops and
//! the store evicts to make room; when space comes back the cap grows again. Free bytes are
//! `f_bavail` (what an unprivileged writer may use).
//!
//! Half of the floor is held by a *ballast* file (`gasdtu.ballast`, at most 8 MiB) written at
//! open: when something else fills the disk to the last byte, even an eviction cannot commit
//! (deleting rows writes pages to the WAL). Then `enforce_limits` deletes the ballast, which
//! gives the eviction its room, and writes it again once the space is back. The ballast counts
//! as the store's own space in the formula above.
//!
//! The only `unsafe` of the store is the one `statvfs(3)` call below (libc is already linked
//! through tokio).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest free-space floor kept.
pub const FLOOR_MAX: u64 = 16 * 1024 * 1024;

/// File name of the ballast inside the state directory.
pub const BALLAST_FILE: &str = "gasdtu.ballast";

/// Size of the ballast: half the floor, at most 8 MiB.
pub fn ballast_size(total: u64) -> u64 {
    (floor(total) / 2).min(8 * 1024 * 1024)
}

/// Write the ballast in `dir` if it is missing and the file system has room for it and the
/// rest of the floor. `Ok(true)` if it was written.
pub fn ensure_ballast(dir: &Path) -> io::Result<bool> {
    use std::io::Write;
    let path = dir.join(BALLAST_FILE);
    let sp = fs_space(dir)?;
    let size = ballast_size(sp.total);
    let have = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if have >= size || sp.avail < floor(sp.total) + size - have {
        return Ok(false);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(super::FILE_MODE)
        .open(&path)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = size;
    let r = (|| {
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    if let Err(e) = r {
        drop(f);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(true)
}

/// Delete the ballast (on a full disk). `Ok(bytes freed)`.
pub fn release_ballast(dir: &Path) -> io::Result<u64> {
    let path = dir.join(BALLAST_FILE);
    match std::fs::metadata(&path) {
        Ok(m) => {
            std::fs::remove_file(&path)?;
            Ok(m.len())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Bytes the ballast in `dir` holds now.
pub fn ballast_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(BALLAST_FILE))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Size and free space of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Size of the file system in bytes.
    pub total: u64,
    /// Bytes an unprivileged process may still write.
    pub avail: u64,
}

/// `statvfs(3)` of the file system holding `path`.
pub fn fs_space(path: &Path) -> io::Result<FsSpace> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated C string that outlives the call; `st` points to
    // writable memory of the right type, which statvfs fills completely when it returns 0
    // (we read it only then).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    // The field types are c_ulong/fsblkcnt_t: u64 here, u32 on armhf.
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bavail) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok(FsSpace {
        total: blocks.saturating_mul(frsize),
        avail: bavail.saturating_mul(frsize),
    })
}

/// Free space the store leaves on its file system.
pub fn floor(total: u64) -> u64 {
    FLOOR_MAX.min(total / 10)
}

/// The cap the store applies: see the module doc.
pub fn effective_cap(configured: u64, store_bytes: u64, space: FsSpace) -> u64 {
    configured.min(
        store_bytes
            .saturating_add(space.avail)
            .saturating_sub(floor(space.total)),
    )
}

/// What `gasdtu check` reports about a state directory's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// The directory whose file system was measured (the state directory, or its nearest
    /// existing ancestor if it does not exist yet).
    pub measured: PathBuf,
    pub space: FsSpace,
    /// Bytes an existing store in the directory already uses (db + WAL).
    pub store_bytes: u64,
    /// What the store could use there: `effective_cap(u64::MAX, ..)`.
    pub holds: u64,
}

/// The capacity of the file system `state_dir` is (or will be) on.
pub fn capacity(state_dir: &Path) -> io::Result<Capacity> {
    let mut measured = state_dir.to_path_buf();
    while !measured.exists() {
        match measured.parent() {
            Some(p) if !p.as_os_str().is_empty() => measured = p.to_path_buf(),
            _ => {
                measured = PathBuf::from(".");
                break;
            }
        }
    }
    let space = fs_space(&measured)?;
    let db = state_dir.join(super::DB_FILE);
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let store_bytes = len(&db) + len(Path::new(&wal)) + ballast_bytes(state_dir);
    Ok(Capacity {
        measured,
        space,
        store_bytes,
        holds: effective_cap(u64::MAX, store_bytes, space),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn effective_cap_is_clamped_to_what_the_file_system_holds() {
        let fs = |total: u64, avail: u64| FsSpace { total, avail };
        // (configured, store bytes, fs, want)
        let cases = [
            // Plenty of room: the configured cap.
            (
                512 * MIB,
                0,
                fs(64 * 1024 * MIB, 32 * 1024 * MIB),
                512 * MIB,
            ),
            // 3 MiB disk, empty store: all but 10 % of it.
            (512 * MIB, 0, fs(3 * MIB, 3 * MIB), 3 * MIB - 3 * MIB / 10),
            // The store's own bytes count as usable (it may reuse them).
            (512 * MIB, 2 * MIB, fs(4 * MIB, MIB), 3 * MIB - 4 * MIB / 10),
            // Large disk: the floor is 16 MiB, not 10 %.
            (
                512 * MIB,
                100 * MIB,
                fs(10_240 * MIB, 300 * MIB),
                400 * MIB - 16 * MIB,
            ),
            // Disk full by someone else: below the store's size (it must shrink).
            (512 * MIB, 2 * MIB, fs(4 * MIB, 0), 2 * MIB - 4 * MIB / 10),
            // Nothing at all: zero, no underflow.
            (512 * MIB, 0, fs(4 * MIB, 0), 0),
        ];
        for (configured, store, space, want) in cases {
            assert_eq!(
                effective_cap(configured, store, space),
                want,
                "{configured} {store} {space:?}"
            );
        }
    }

    #[test]
    fn statvfs_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = fs_space(dir.path()).unwrap();
        assert!(s.total > 0 && s.avail <= s.total, "{s:?}");
        let c = capacity(&dir.path().join("not/yet/there")).unwrap();
        assert_eq!(c.measured, dir.path());
        assert_eq!(c.store_bytes, 0);
        assert!(fs_space(&dir.path().join("missing")).is_err());
    }
}
