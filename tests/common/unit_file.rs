//! The systemd unit as the package tests read it: its text, and its entries as systemd
//! parses them (sections, `key = value`, continuation lines).

use super::repo_root;

pub fn unit_text() -> String {
    std::fs::read_to_string(repo_root().join("systemd/gasdtu.service")).unwrap()
}

/// The unit as systemd reads it: (section, key, value) in order; comments and blank lines
/// skipped, `key = value` spacing trimmed, `\` continuation lines joined.
pub fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not `key=value` in [{section}]: {raw:?}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    assert!(pending.is_empty(), "the unit ends in a continuation line");
    out
}

/// Values of `key=` in `[section]` of the unit, in order.
pub fn unit_values_in(text: &str, section: &str, key: &str) -> Vec<String> {
    unit_entries(text)
        .into_iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

/// Values of `key=` in the unit's `[Service]` section.
pub fn unit_values(text: &str, key: &str) -> Vec<String> {
    unit_values_in(text, "Service", key)
}
