//! Who is at the other end of a status-socket connection: uid and pid from the kernel
//! (SO_PEERCRED), never from what the client says, and the uid's login name for the journal.

use tokio::net::UnixStream;

/// Who is at the other end of a connection, from the kernel (SO_PEERCRED), never from what
/// the client says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Peer {
    /// The peer of a connected stream (unknown fields stay `None`).
    pub fn of(stream: &UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(c) => Peer {
                uid: Some(c.uid()),
                pid: c.pid(),
            },
            Err(_) => Peer::default(),
        }
    }

    /// "uid 1000 (alice)", "uid 1000" when the uid has no name, "unknown peer" without
    /// credentials. Looks the name up in the user database: may block (NSS).
    pub fn describe(&self) -> String {
        match self.uid {
            Some(uid) => match user_name(uid) {
                Some(name) => format!("uid {uid} ({})", crate::config::escape(&name)),
                None => format!("uid {uid}"),
            },
            None => "unknown peer".to_string(),
        }
    }
}

/// The login name of `uid` (getpwuid_r), if it has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `pwd` and `buf` outlive the call; getpwuid_r writes only within `buf.len()`
        // bytes of `buf` and into `pwd`/`result`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 64 * 1024 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_described_by_uid_and_name() {
        // (peer, description)
        let cases = [
            (
                Peer {
                    uid: Some(0),
                    pid: Some(1),
                },
                "uid 0 (root)",
            ),
            (
                Peer {
                    uid: Some(3_999_999),
                    pid: None,
                },
                "uid 3999999",
            ),
            (Peer::default(), "unknown peer"),
        ];
        for (peer, want) in cases {
            assert_eq!(peer.describe(), want, "{peer:?}");
        }
    }
}
