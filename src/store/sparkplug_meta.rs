//! The Sparkplug edge node's birth/death sequence number (bdSeq) across restarts: the bdSeq of
//! the last MQTT connect attempt that registered a will, kept in `meta.sparkplug_bd_seq` (the
//! key/value table of schema v1, so no migration). `claim_bd_seq` steps it with the rule it is
//! given (`uplink::sparkplug::next_bd_seq`: +1, 255 -> 0, 0 the first time; passed in so the
//! store does not depend on the uplink) and commits it durably (synchronous=FULL) BEFORE the caller sends
//! CONNECT, so a process killed at any point never reuses the bdSeq of a will that may still
//! fire: a crash between the claim and the CONNECT only skips a number, which hosts accept (they
//! match NDEATH to NBIRTH by equality). A database moved aside as corrupt starts again at 0
//! (docs/sparkplug.md, "bdSeq across restarts").

use rusqlite::TransactionBehavior;

use super::{get_meta, set_meta, Store, StoreError};

/// The meta key holding the bdSeq of the last connect attempt.
pub const BD_SEQ_KEY: &str = "sparkplug_bd_seq";

/// The bdSeq of one connect attempt: register NDEATH with `bd_seq` as the will, publish NBIRTH
/// with it; `previous` is what the last attempt used (None on a fresh store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BdSeqClaim {
    pub previous: Option<u8>,
    pub bd_seq: u8,
}

/// A stored value is written by us as 0..=255; anything else (a hand edit) counts as its low
/// byte rather than blocking every connect.
fn as_bd_seq(v: i64) -> u8 {
    v.rem_euclid(256) as u8
}

impl Store {
    /// The bdSeq of the last connect attempt, if any (read only; `gasdtu status` and tests).
    pub fn last_bd_seq(&self) -> Result<Option<u8>, StoreError> {
        let g = self.lock();
        Ok(get_meta(&g.conn, BD_SEQ_KEY)
            .map_err(self.sql("read sparkplug bdSeq"))?
            .map(as_bd_seq))
    }

    /// Claim the bdSeq of the next MQTT connect attempt: `step(previous)` (pass
    /// `sparkplug::next_bd_seq`), committed before this returns. Call once per CONNECT that
    /// carries the NDEATH will, and only then send it; a failed claim means: do not connect
    /// (retry later).
    pub fn claim_bd_seq(
        &self,
        step: impl FnOnce(Option<u8>) -> u8,
    ) -> Result<BdSeqClaim, StoreError> {
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin sparkplug bdSeq"))?;
        let previous = get_meta(&tx, BD_SEQ_KEY)
            .map_err(self.sql("read sparkplug bdSeq"))?
            .map(as_bd_seq);
        let bd_seq = step(previous);
        set_meta(&tx, BD_SEQ_KEY, i64::from(bd_seq)).map_err(self.sql("write sparkplug bdSeq"))?;
        tx.commit().map_err(self.sql("commit sparkplug bdSeq"))?;
        Ok(BdSeqClaim { previous, bd_seq })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::StoreConfig;
    use crate::uplink::sparkplug::{next_bd_seq, EdgeNode, EdgeSession, NodeModel, NodeState};

    fn open(dir: &Path) -> Store {
        Store::open(dir, &StoreConfig::default()).unwrap().0
    }

    #[test]
    fn first_claim_is_zero_then_steps_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        assert_eq!(s.last_bd_seq().unwrap(), None);
        assert_eq!(
            s.claim_bd_seq(next_bd_seq).unwrap(),
            BdSeqClaim {
                previous: None,
                bd_seq: 0
            }
        );
        for want in 1..=3u8 {
            let c = s.claim_bd_seq(next_bd_seq).unwrap();
            assert_eq!((c.previous, c.bd_seq), (Some(want - 1), want));
        }
        assert_eq!(s.last_bd_seq().unwrap(), Some(3));
    }

    #[test]
    fn survives_a_clean_reopen_and_a_forgotten_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.claim_bd_seq(next_bd_seq).unwrap();
        s.claim_bd_seq(next_bd_seq).unwrap();
        drop(s);
        // Clean close: the next attempt continues from 1.
        let s = open(dir.path());
        assert_eq!(s.last_bd_seq().unwrap(), Some(1));
        assert_eq!(s.claim_bd_seq(next_bd_seq).unwrap().bd_seq, 2);
        // No Drop (no checkpoint, no close), as after kill -9: the claim was committed, so a
        // new process sees it and does not reuse 2 for its will.
        std::mem::forget(s);
        let s = open(dir.path());
        assert_eq!(
            s.claim_bd_seq(next_bd_seq).unwrap(),
            BdSeqClaim {
                previous: Some(2),
                bd_seq: 3
            }
        );
    }

    /// Where the child half of `a_claim_survives_kill_9` opens the store.
    const CHILD_DIR: &str = "GASDTU_TEST_BD_SEQ_CHILD_DIR";

    /// The child half of `a_claim_survives_kill_9`, run by it in a separate process: claims,
    /// says so, and waits to be killed. Run on its own (no `CHILD_DIR`), it has nothing to do.
    #[test]
    fn kill_9_child() {
        let Some(dir) = std::env::var_os(CHILD_DIR) else {
            return;
        };
        let s = open(Path::new(&dir));
        let c = s.claim_bd_seq(next_bd_seq).unwrap();
        println!("claimed {}", c.bd_seq);
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn a_claim_survives_kill_9() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.claim_bd_seq(next_bd_seq).unwrap();
        s.claim_bd_seq(next_bd_seq).unwrap();
        drop(s);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::sparkplug_meta::tests::kill_9_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                // libtest prints "test <name> ... " on the same line first.
                if let Some((_, n)) = line.rsplit_once("claimed ") {
                    let _ = tx.send(n.trim().to_string());
                    return;
                }
            }
        });
        let claimed = rx.recv_timeout(std::time::Duration::from_secs(60));
        // SIGKILL: no Drop, no checkpoint, no close.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(claimed.as_deref(), Ok("2"), "the child's claim");
        assert_eq!(
            open(dir.path()).claim_bd_seq(next_bd_seq).unwrap(),
            BdSeqClaim {
                previous: Some(2),
                bd_seq: 3
            }
        );
    }

    #[test]
    fn wraps_after_255_and_reads_a_hand_edited_value_as_its_low_byte() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for (stored, want) in [(254, 255u8), (255, 0), (256 + 7, 8), (-1, 0)] {
            set_meta(&s.lock().conn, BD_SEQ_KEY, stored).unwrap();
            assert_eq!(
                s.claim_bd_seq(next_bd_seq).unwrap().bd_seq,
                want,
                "stored {stored}"
            );
        }
        drop(s);
        assert_eq!(open(dir.path()).last_bd_seq().unwrap(), Some(0));
    }

    #[test]
    fn the_session_uses_the_claimed_bd_seq_in_will_and_birth() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.claim_bd_seq(next_bd_seq).unwrap();
        let c = s.claim_bd_seq(next_bd_seq).unwrap();
        let edge = EdgeNode::new("g", "e").unwrap();
        let model = NodeModel {
            node: Vec::new(),
            devices: Vec::new(),
        };
        let state = NodeState {
            transport: "tcp".into(),
            reconnects: 0,
            buffer_depth: 0,
            modem: None,
        };
        let (session, will) =
            EdgeSession::connect(edge, model, c.previous, state, 65_536, 1_000).unwrap();
        assert_eq!(session.bd_seq(), c.bd_seq);
        assert_eq!(
            will.payload,
            crate::uplink::sparkplug::ndeath(c.bd_seq, 1_000)
        );
    }

    #[test]
    fn a_read_only_store_cannot_claim() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.claim_bd_seq(next_bd_seq).unwrap();
        let r = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(r.last_bd_seq().unwrap(), Some(0));
        assert!(r.claim_bd_seq(next_bd_seq).is_err());
        assert_eq!(s.last_bd_seq().unwrap(), Some(0));
    }
}
