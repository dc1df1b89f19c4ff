//! Who is at the other end of a status-socket connection: uid and pid from the kernel
//! (SO_PEERCRED), never from what the client says, and the uid's login name for the journal.

use tokio::net::UnixStream;

use crate::store::access::user_name;

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
