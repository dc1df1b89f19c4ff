//! Reading the files a configuration names (the config itself, profiles, PEM files) the safe
//! way: only regular files (a FIFO would hang `gasdtu check`, /dev/zero would grow memory
//! without end), judged on the opened descriptor (no window between a check and the open),
//! opened non-blocking so even opening a FIFO cannot hang, and read up to a size limit. Also
//! the line and column of the first byte that is not UTF-8. The only I/O of `config` besides
//! the state directory check.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest config or profile file read, in bytes (a large site's config is tens of KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Largest PEM file read (CA bundle, certificate, key): a full public CA bundle is ~250 KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// What kind of file system object a non-regular file is, for messages.
fn kind_of(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The bytes of the regular file at `path`, at most `limit` of them. A FIFO, device,
/// directory or socket is refused without reading it, and a larger file is refused (errors
/// of kind `InvalidInput` say which and why; a missing file keeps `NotFound`).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}, not a regular file: refused without reading",
                kind_of(&meta.file_type())
            ),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {limit} bytes, the most gasdtu reads from such a file"),
        )
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after fstat: never read more than the limit.
    Read::take(&file as &File, limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Where the first byte that is not UTF-8 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUtf8 {
    /// 1-based line and column (columns count characters).
    pub line: usize,
    pub column: usize,
    /// The offending byte.
    pub byte: u8,
}

impl BadUtf8 {
    pub fn message(&self) -> String {
        format!(
            "not valid UTF-8: byte 0x{:02x} cannot start or continue a character (the file must be UTF-8 text)",
            self.byte
        )
    }
}

/// The text of `bytes`, or where it stops being UTF-8.
pub fn utf8(bytes: Vec<u8>) -> Result<String, BadUtf8> {
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let good = &bytes[..at];
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            // The prefix up to `at` is valid UTF-8 by construction.
            let column = std::str::from_utf8(&good[line_start..])
                .map_or(at - line_start, |s| s.chars().count())
                + 1;
            Err(BadUtf8 {
                line,
                column,
                byte: bytes[at],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_positions() {
        // (bytes, line, column, byte)
        let cases: &[(&[u8], usize, usize, u8)] = &[
            (b"\xff", 1, 1, 0xff),
            (b"a = 1\n\xfe", 2, 1, 0xfe),
            (b"a = 1\nid = \"\xc3\xa9\xc3\x28\"", 2, 8, 0xc3),
            (b"x\ny\nzz\x80", 3, 3, 0x80),
            (b"\xe2\x82", 1, 1, 0xe2),
        ];
        for &(bytes, line, column, byte) in cases {
            assert_eq!(
                utf8(bytes.to_vec()),
                Err(BadUtf8 { line, column, byte }),
                "{bytes:?}"
            );
        }
        assert_eq!(utf8(b"ok \xc3\xa9".to_vec()).unwrap(), "ok é");
    }

    #[test]
    fn only_regular_files_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.toml");
        std::fs::write(&f, vec![b'#'; 100]).unwrap();
        assert_eq!(read_bounded(&f, 100).unwrap().len(), 100);
        let e = read_bounded(&f, 99).unwrap_err();
        assert!(e.to_string().contains("larger than 99 bytes"), "{e}");
        let e = read_bounded(dir.path(), 100).unwrap_err();
        assert!(
            e.to_string().contains("a directory, not a regular file"),
            "{e}"
        );
        let e = read_bounded(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read_bounded(&dir.path().join("missing"), 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
