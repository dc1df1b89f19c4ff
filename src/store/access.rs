//! Who may open the store: the checks made before SQLite touches `<state_dir>`. Two mistakes
//! made in the field are caught here, each with the file, its owner and the command that
//! fixes it:
//! - store files this process cannot write (typically a `gasdtu run` started once by hand as
//!   root left a root-owned `gasdtu.db`, `-wal` or `-shm` behind; SQLite would then open the
//!   database read-only and every commit of the service, user gasdtu, would fail forever);
//! - root about to open (and so create files in) a state directory owned by another user (the
//!   service's): refused unless the caller was told to (`gasdtu run --allow-root-store`).
//!
//! Only metadata and access(2) checks on a handful of known paths; nothing is created here.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{seq, space, StoreError, DB_FILE};

/// The files of a store in `state_dir`, database first. Not all of them need to exist.
pub fn store_files(state_dir: &Path) -> Vec<PathBuf> {
    let db = state_dir.join(DB_FILE);
    let mut files = vec![db.clone()];
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files.push(state_dir.join(seq::FILE_NAME));
    files.push(state_dir.join(space::BALLAST_FILE));
    files
}

/// False only when permissions deny this process (effective uid and groups) reading or
/// writing `path` (EACCES/EPERM): an ownership problem `chown` fixes. Any other failure (a
/// read-only file system, an I/O error) is left to the open, which reports it with its reason.
fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call; faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::R_OK | libc::W_OK,
            libc::AT_EACCESS,
        )
    };
    rc == 0
        || !matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EACCES | libc::EPERM)
        )
}

/// Every existing store file in `state_dir` that this process cannot read and write, as one
/// error naming each file and its owner, and the `chown` that fixes it.
pub fn check_files_writable(state_dir: &Path) -> Result<(), StoreError> {
    let mut bad = Vec::new();
    for f in store_files(state_dir) {
        // symlink_metadata: a missing file is fine (it is created later, by us).
        let Ok(m) = std::fs::symlink_metadata(&f) else {
            continue;
        };
        if !writable(&f) {
            bad.push((f, m.uid(), m.gid()));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let me = id_name(uid, user_name(uid));
    let owners: Vec<String> = bad
        .iter()
        .map(|(f, u, g)| {
            format!(
                "{} (owner {}, group {})",
                f.display(),
                id_name(*u, user_name(*u)),
                id_name(*g, group_name(*g))
            )
        })
        .collect();
    let fix = format!(
        "chown {}:{} {}",
        user_name(uid).unwrap_or_else(|| uid.to_string()),
        group_name(gid).unwrap_or_else(|| gid.to_string()),
        bad.iter()
            .map(|(f, _, _)| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Err(StoreError::NotWritableByUs {
        files: owners.join(", "),
        user: me,
        fix,
    })
}

/// Refuse root in a state directory owned by another user (the service's), unless `allow`:
/// every file root creates there (the database, its `-wal`/`-shm`, the sequence side file)
/// would be root-owned and unwritable for the service afterwards. A directory that does not
/// exist yet, or one root owns, is fine.
pub fn check_root_in_foreign_dir(state_dir: &Path, allow: bool) -> Result<(), StoreError> {
    // SAFETY: geteuid cannot fail.
    if allow || unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(m) = std::fs::metadata(state_dir) else {
        return Ok(());
    };
    if m.uid() == 0 {
        return Ok(());
    }
    let owner = user_name(m.uid()).unwrap_or_else(|| m.uid().to_string());
    Err(StoreError::RootInForeignDir {
        dir: state_dir.to_path_buf(),
        owner: id_name(m.uid(), user_name(m.uid())),
        run_as: owner,
    })
}

/// `name (uid N)` or just `uid N`.
fn id_name(id: u32, name: Option<String>) -> String {
    match name {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    }
}

/// Grow-and-retry for the reentrant passwd/group lookups: `call(buf)` returns the C error
/// code and, on success, the name found (None: no such entry).
fn lookup(mut call: impl FnMut(&mut Vec<u8>) -> (i32, Option<String>)) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        let (rc, name) = call(&mut buf);
        if rc == libc::ERANGE && buf.len() < 64 * 1024 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return if rc == 0 { name } else { None };
    }
}

/// A C string owned by a passwd/group entry, as UTF-8 (lossy).
///
/// SAFETY: `p` is null or points to a NUL-terminated string that lives as long as the buffer
/// the lookup filled.
unsafe fn c_name(p: *const libc::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
}

/// The login name of `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    lookup(|buf| {
        // SAFETY: `pwd`, `result` and `buf` outlive the call; getpwuid_r writes only within
        // `buf.len()` bytes of `buf` and into `pwd`/`result`.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            let name = if result.is_null() {
                None
            } else {
                c_name(pwd.pw_name)
            };
            (rc, name)
        }
    })
}

/// The name of group `gid`, if it has one.
pub fn group_name(gid: u32) -> Option<String> {
    lookup(|buf| {
        // SAFETY: as in `user_name`, with getgrgid_r.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            let name = if result.is_null() {
                None
            } else {
                c_name(grp.gr_name)
            };
            (rc, name)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_files_are_the_database_its_wal_and_shm_and_the_side_files() {
        let names: Vec<String> = store_files(Path::new("/s"))
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "/s/gasdtu.db",
                "/s/gasdtu.db-wal",
                "/s/gasdtu.db-shm",
                "/s/seq.reserve",
                "/s/gasdtu.ballast"
            ]
        );
    }

    #[test]
    fn missing_and_writable_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_files_writable(dir.path()).is_ok());
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        assert!(check_files_writable(dir.path()).is_ok());
        // Unwritable files and root in a foreign directory: tests/run_by_hand.rs, which runs
        // the real binary as another user.
        assert!(check_root_in_foreign_dir(dir.path(), true).is_ok());
        assert!(check_root_in_foreign_dir(&dir.path().join("new"), false).is_ok());
        assert!(check_root_in_foreign_dir(dir.path(), false).is_ok());
    }

    #[test]
    fn ids_without_names_print_as_numbers() {
        assert_eq!(id_name(4242, None), "4242");
        assert_eq!(id_name(0, Some("root".into())), "root (0)");
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
