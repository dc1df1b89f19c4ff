//! Remote operations over MQTT (issue 10): config install and its confirm/rollback machine.

pub mod confirm;
pub mod install;
