//! Remote operations over MQTT (issue 10): commands on `<root>/cmd/req` and config pushes on
//! `<root>/config/set`. This module owns the wire: `sign` (the signed form, Ed25519 keys and
//! key ids) and `request` (envelopes, command and push bodies, the authorization policy of
//! `[remote]`, result JSON, `RemoteError` and its stable codes). Both are pure cores: no I/O,
//! no clock. The formats are documented for platform teams in docs/remote.md.

pub mod request;
pub mod sign;
// Config install and the confirm/rollback state machine (part D) go here:
// pub mod install;
// pub mod confirm;
