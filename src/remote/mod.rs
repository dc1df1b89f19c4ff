//! Remote operations over MQTT (issue 10): commands on `<root>/cmd/req` and config pushes on
//! `<root>/config/set`. This module owns the wire: `sign` (the signed form, Ed25519 keys and
//! key ids) and `request` (envelopes, command and push bodies, the authorization policy of
//! `[remote]`, result JSON, `RemoteError` and its stable codes), both pure cores with no I/O
//! and no clock; and the config install: `install` (the file-system edge: atomic steps,
//! history, pending confirmation, recovery at start, pushed profiles) and `confirm` (the pure
//! confirm/rollback state machine). The formats are documented for platform teams in
//! docs/remote.md, the install rules in docs/remote-config.md.

pub mod confirm;
pub mod install;
pub mod request;
pub mod sign;
