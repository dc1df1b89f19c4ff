//! Interlocks (opt-in alarm actions): what to write on which raise, through which bus task. The
//! table is built from the config and REBUILT by every `Gateway::apply`, so a removed or changed
//! `action` never writes its old value and a new one fires on its first raise. A raise is acted
//! on once per (rule, device) within the action's cooldown; the cooldown survives a reload only
//! when the rule's action is unchanged. The write goes through the bus task (one owner per
//! port), is read back, and its result is committed as an `interlock` event. No SQLite call
//! runs on the async workers: the event commit is a blocking task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::BusPorts;
use crate::alarm::rule::Action;
use crate::config::Config;
use crate::modbus::bus::{BusRequest, WriteRequest};
use crate::model::Value;
use crate::store::Store;

/// How long an interlock write (with its read-back) may take before it is reported failed.
const INTERLOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The interlock table of the running config.
#[derive(Default)]
pub struct Interlocks {
    /// rule id -> action
    actions: HashMap<String, Action>,
    /// device -> bus name
    device_bus: HashMap<String, String>,
    /// (rule, device) -> when it last acted (cooldown)
    last: HashMap<(String, String), Instant>,
}

/// One write to perform now, decided under the table's lock and run outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: String,
    pub device: String,
    pub bus: Option<String>,
    pub action: Action,
}

impl Interlocks {
    pub fn new(config: &Config) -> Interlocks {
        let mut i = Interlocks::default();
        i.reconfigure(config);
        i
    }

    /// Rebuild from `config`: actions and device -> bus map follow the new config; a cooldown
    /// is kept only for rules whose action did not change.
    pub fn reconfigure(&mut self, config: &Config) {
        let actions: HashMap<String, Action> = config
            .alarms
            .iter()
            .filter_map(|r| Some((r.id.clone(), r.action.clone()?)))
            .collect();
        let old = std::mem::take(&mut self.actions);
        self.last
            .retain(|(rule, _), _| old.contains_key(rule) && old.get(rule) == actions.get(rule));
        self.actions = actions;
        self.device_bus = config
            .devices
            .iter()
            .map(|d| (d.name.clone(), d.bus.clone()))
            .collect();
    }

    /// The action of `rule`, if it has one.
    pub fn action(&self, rule: &str) -> Option<&Action> {
        self.actions.get(rule)
    }

    /// What to write for these committed raises (rule id, device) at `now`: each rule with an
    /// action fires once per device per cooldown.
    pub fn decide(&mut self, raised: Vec<(String, String)>, now: Instant) -> Vec<Firing> {
        let mut out = Vec::new();
        for (rule, device) in raised {
            let Some(action) = self.actions.get(&rule).cloned() else {
                continue;
            };
            let key = (rule.clone(), device.clone());
            if let Some(t) = self.last.get(&key) {
                if now.saturating_duration_since(*t) < action.cooldown {
                    tracing::warn!(rule, device, "interlock in cooldown: not written again");
                    continue;
                }
            }
            self.last.insert(key, now);
            let bus = self.device_bus.get(&device).cloned();
            out.push(Firing {
                rule,
                device,
                bus,
                action,
            });
        }
        out
    }
}

/// Perform `firing` through the bus task's request channel and commit its `interlock` event.
pub async fn fire(firing: Firing, ports: BusPorts, store: Arc<Store>, wake: Arc<Notify>) {
    let Firing {
        rule,
        device,
        bus,
        action,
    } = firing;
    let writer = bus.as_ref().and_then(|b| {
        ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(b)
            .map(|p| p.tx.clone())
    });
    let value = Value::Float(action.value);
    let result: Result<Value, String> = match writer {
        None => Err(format!("no bus task for device `{device}`")),
        Some(w) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let req = WriteRequest {
                device: device.clone(),
                point: action.point.clone(),
                value,
                reply: tx,
            };
            if w.send(BusRequest::WritePoint(req)).await.is_err() {
                Err("the bus task stopped".into())
            } else {
                match tokio::time::timeout(INTERLOCK_TIMEOUT, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err("the bus task dropped the request".into()),
                    Err(_) => Err(format!("no result within {INTERLOCK_TIMEOUT:?}")),
                }
            }
        }
    };
    let ev = match &result {
        Ok(rb) => serde_json::json!({
            "event": "interlock", "alarm": rule, "dev": device, "point": action.point,
            "value": action.value, "result": "ok", "readback": rb,
        }),
        Err(e) => serde_json::json!({
            "event": "interlock", "alarm": rule, "dev": device, "point": action.point,
            "value": action.value, "result": "failed", "error": e,
        }),
    };
    tracing::warn!(interlock = %ev, "interlock");
    super::record_event(&store, &wake, ev).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        match crate::config::parse_str(text, "t.toml", std::path::Path::new("/")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e:?}"),
        }
    }

    const BASE: &str = r#"
[gateway]
id = "g"
state_dir = "/tmp/x"
[buses.b]
kind = "tcp"
host = "127.0.0.1"
port = 1502
[devices.d]
bus = "b"
unit = 1
poll = "1s"
points.p = { table = "holding", address = 0, type = "f32" }
points.valve = { table = "coil", address = 0, type = "bit", writable = true }
"#;

    fn with_action(rule: &str, value: u8, h: u32) -> String {
        format!(
            "{BASE}\n[alarms.{rule}]\ndevice = \"d\"\npoint = \"p\"\nkind = \"limit\"\nseverity = \"major\"\nh = {h}\naction = {{ point = \"valve\", value = {value}, cooldown = \"1h\" }}\n"
        )
    }

    #[test]
    fn a_reload_replaces_changed_removed_and_new_actions() {
        let t0 = Instant::now();
        let mut il = Interlocks::new(&cfg(&with_action("r1", 1, 100)));
        let f = il.decide(vec![("r1".into(), "d".into())], t0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].action.value, 1.0);
        assert_eq!(f[0].bus.as_deref(), Some("b"));
        // In cooldown: not again.
        assert!(il.decide(vec![("r1".into(), "d".into())], t0).is_empty());

        // Changed action: the new value, and the cooldown of the old action is gone.
        il.reconfigure(&cfg(&with_action("r1", 0, 100)));
        let f = il.decide(vec![("r1".into(), "d".into())], t0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].action.value, 0.0);

        // Unchanged action: the cooldown survives the reload.
        il.reconfigure(&cfg(&with_action("r1", 0, 100)));
        assert!(il.decide(vec![("r1".into(), "d".into())], t0).is_empty());

        // Removed rule, new rule: the old never fires again, the new one does.
        il.reconfigure(&cfg(&with_action("r2", 1, 100)));
        assert!(il.decide(vec![("r1".into(), "d".into())], t0).is_empty());
        let f = il.decide(vec![("r2".into(), "d".into())], t0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "r2");
    }
}
