//! Edge alarms, the pure core: rules from `[alarms.<id>]` (`rule`), the per-condition state
//! machine (`machine`) and the engine that turns batches into transitions and state rows
//! (`engine`). No I/O and no store here: `gateway::alarms::AlarmService` binds the engine to
//! the store. Semantics and message format: docs/alarms.md, docs/mqtt.md.

pub mod engine;
pub mod machine;
pub mod rule;
#[cfg(test)]
mod tests;

pub use engine::{AckError, ActiveAlarm, AlarmEngine, AlarmWrites};
pub use rule::{AlarmRule, Level, RuleKind, Severity};
