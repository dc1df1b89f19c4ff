//! A typed reader over a parsed TOML document that keeps every key's position: the validator
//! asks a `Section` for the keys it knows (typed, with ranges), the section remembers which keys
//! were asked for, and `finish` reports every other key as unknown. Type errors are recorded in
//! `Diags` with the key path and line/column, never returned early, so one pass finds every
//! problem. No I/O.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::Diags;

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Field<T> {
    /// The key is not there.
    Absent,
    /// The key is there but its value was wrong; the error is already recorded.
    Invalid,
    /// The value and the span of the value.
    Value(T, Range<usize>),
}

impl<T> Field<T> {
    /// The value, or `default` when absent; `None` when invalid (already reported).
    pub fn or(self, default: T) -> Option<T> {
        match self {
            Field::Absent => Some(default),
            Field::Invalid => None,
            Field::Value(v, _) => Some(v),
        }
    }

    /// The value if present and valid.
    pub fn opt(self) -> Result<Option<T>, ()> {
        match self {
            Field::Absent => Ok(None),
            Field::Invalid => Err(()),
            Field::Value(v, _) => Ok(Some(v)),
        }
    }

    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            Field::Value(_, s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Name of a TOML value's type, for messages.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn int_of(v: &DeValue<'_>) -> Option<i128> {
    match v {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

/// Join a key path.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// One TOML table being validated.
pub(crate) struct Section<'a, 'i> {
    pub path: String,
    /// Where the table's own key is written (for "missing key" errors).
    pub span: Option<Range<usize>>,
    table: &'a DeTable<'i>,
    used: BTreeSet<String>,
}

impl<'a, 'i> Section<'a, 'i> {
    pub fn new(path: String, span: Option<Range<usize>>, table: &'a DeTable<'i>) -> Self {
        Section {
            path,
            span,
            table,
            used: BTreeSet::new(),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The table as written (for merging a device's point entries onto a profile's).
    pub fn as_table(&self) -> &'a DeTable<'i> {
        self.table
    }

    fn raw(&mut self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.used.insert(key.to_string());
        self.table.get(key)
    }

    fn wrong(&self, d: &mut Diags<'_>, key: &str, v: &Spanned<DeValue<'_>>, want: &str) {
        d.error(
            &self.key_path(key),
            Some(v.span()),
            format!("expected {want}, found {}", type_name(v.get_ref())),
        );
    }

    pub fn string(&mut self, d: &mut Diags<'_>, key: &str) -> Field<String> {
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match v.get_ref() {
                DeValue::String(s) => Field::Value(s.to_string(), v.span()),
                _ => {
                    self.wrong(d, key, v, "a string");
                    Field::Invalid
                }
            },
        }
    }

    /// An integer within `lo..=hi`.
    pub fn int(&mut self, d: &mut Diags<'_>, key: &str, lo: i64, hi: i64) -> Field<i64> {
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match int_of(v.get_ref()) {
                Some(n) if n >= lo as i128 && n <= hi as i128 => Field::Value(n as i64, v.span()),
                Some(n) => {
                    d.error(
                        &self.key_path(key),
                        Some(v.span()),
                        format!("{n} is out of range {lo}..={hi}"),
                    );
                    Field::Invalid
                }
                None => {
                    self.wrong(d, key, v, "an integer");
                    Field::Invalid
                }
            },
        }
    }

    /// A finite number (integers are accepted).
    pub fn float(&mut self, d: &mut Diags<'_>, key: &str) -> Field<f64> {
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match float_of(v.get_ref()) {
                Some(x) if x.is_finite() => Field::Value(x, v.span()),
                Some(_) => {
                    d.error(
                        &self.key_path(key),
                        Some(v.span()),
                        "must be a finite number",
                    );
                    Field::Invalid
                }
                None => {
                    self.wrong(d, key, v, "a number");
                    Field::Invalid
                }
            },
        }
    }

    pub fn boolean(&mut self, d: &mut Diags<'_>, key: &str) -> Field<bool> {
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => Field::Value(*b, v.span()),
                _ => {
                    self.wrong(d, key, v, "true or false");
                    Field::Invalid
                }
            },
        }
    }

    /// A human duration string ("5m", "250ms") within `lo..=hi`.
    pub fn duration(
        &mut self,
        d: &mut Diags<'_>,
        key: &str,
        lo: Duration,
        hi: Duration,
    ) -> Field<Duration> {
        let path = self.key_path(key);
        match self.string(d, key) {
            Field::Value(s, span) => {
                match humantime::parse_duration(s.trim()) {
                    Ok(t) if t >= lo && t <= hi => Field::Value(t, span),
                    Ok(_) => {
                        d.error(
                            &path,
                            Some(span),
                            format!(
                                "duration {s:?} is out of range {}..={}",
                                humantime::format_duration(lo),
                                humantime::format_duration(hi)
                            ),
                        );
                        Field::Invalid
                    }
                    Err(e) => {
                        d.error(
                        &path,
                        Some(span),
                        format!("invalid duration {s:?}: {e} (write e.g. \"5m\", \"30s\", \"250ms\")"),
                    );
                        Field::Invalid
                    }
                }
            }
            Field::Absent => Field::Absent,
            Field::Invalid => Field::Invalid,
        }
    }

    /// An array of strings.
    pub fn strings(&mut self, d: &mut Diags<'_>, key: &str) -> Field<Vec<String>> {
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match v.get_ref() {
                DeValue::Array(items) => {
                    let mut out = Vec::new();
                    let mut ok = true;
                    for (i, item) in items.iter().enumerate() {
                        match item.get_ref() {
                            DeValue::String(s) => out.push(s.to_string()),
                            other => {
                                ok = false;
                                d.error(
                                    &format!("{}[{i}]", self.key_path(key)),
                                    Some(item.span()),
                                    format!("expected a string, found {}", type_name(other)),
                                );
                            }
                        }
                    }
                    if ok {
                        Field::Value(out, v.span())
                    } else {
                        Field::Invalid
                    }
                }
                _ => {
                    self.wrong(d, key, v, "an array of strings");
                    Field::Invalid
                }
            },
        }
    }

    /// An array of strings, each with the span of its own value (for errors about one item).
    pub fn strings_spanned(
        &mut self,
        d: &mut Diags<'_>,
        key: &str,
    ) -> Field<Vec<(String, Range<usize>)>> {
        let path = self.key_path(key);
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match v.get_ref() {
                DeValue::Array(items) => {
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match item.get_ref() {
                            DeValue::String(s) => out.push((s.to_string(), item.span())),
                            other => d.error(
                                &format!("{path}[{i}]"),
                                Some(item.span()),
                                format!("expected a string, found {}", type_name(other)),
                            ),
                        }
                    }
                    if out.len() == items.len() {
                        Field::Value(out, v.span())
                    } else {
                        Field::Invalid
                    }
                }
                _ => {
                    self.wrong(d, key, v, "an array of strings");
                    Field::Invalid
                }
            },
        }
    }

    /// A sub-table as its own section.
    pub fn table(&mut self, d: &mut Diags<'_>, key: &str) -> Field<Section<'a, 'i>> {
        let path = self.key_path(key);
        let key_span = self.table.get_key_value(key).map(|(k, _)| k.span());
        match self.raw(key) {
            None => Field::Absent,
            Some(v) => match v.get_ref() {
                DeValue::Table(t) => {
                    let span = key_span.unwrap_or_else(|| v.span());
                    Field::Value(Section::new(path, Some(span.clone()), t), span)
                }
                _ => {
                    self.wrong(d, key, v, "a table");
                    Field::Invalid
                }
            },
        }
    }

    /// Every entry of this table, in key order, each a sub-table (a map of named things such
    /// as `[buses.<name>]`). Entries that are not tables are reported and skipped.
    pub fn named_tables(&mut self, d: &mut Diags<'_>) -> Vec<(String, Section<'a, 'i>)> {
        let mut out = Vec::new();
        for (k, v) in self.table.iter() {
            let name = k.get_ref().to_string();
            self.used.insert(name.clone());
            let path = self.key_path(&name);
            match v.get_ref() {
                DeValue::Table(t) => {
                    out.push((name, Section::new(path, Some(k.span()), t)));
                }
                other => d.error(
                    &path,
                    Some(v.span()),
                    format!("expected a table, found {}", type_name(other)),
                ),
            }
        }
        out
    }

    /// Every entry of this table as (key, key span, number): for maps of weights.
    pub fn numbers(&mut self, d: &mut Diags<'_>) -> Vec<(String, Range<usize>, Option<f64>)> {
        let mut out = Vec::new();
        for (k, v) in self.table.iter() {
            let name = k.get_ref().to_string();
            self.used.insert(name.clone());
            let x = match float_of(v.get_ref()) {
                Some(x) if x.is_finite() => Some(x),
                Some(_) => {
                    d.error(
                        &self.key_path(&name),
                        Some(v.span()),
                        "must be a finite number",
                    );
                    None
                }
                None => {
                    d.error(
                        &self.key_path(&name),
                        Some(v.span()),
                        format!("expected a number, found {}", type_name(v.get_ref())),
                    );
                    None
                }
            };
            out.push((name, k.span(), x));
        }
        out
    }

    /// Where the value of `key` is written, if it is there (for errors about a value that
    /// was read in another form).
    pub fn value_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get(key).map(|v| v.span())
    }

    /// Mark keys as seen without reading them (when they cannot be judged).
    pub fn skip(&mut self, keys: &[&str]) {
        for k in keys {
            self.used.insert(k.to_string());
        }
    }

    /// Record a missing required key.
    pub fn missing(&self, d: &mut Diags<'_>, key: &str, what: &str) {
        d.error(
            &self.key_path(key),
            self.span.clone(),
            format!("missing required key `{key}` ({what})"),
        );
    }

    /// A required value: reports a missing key, passes invalid through as `None`.
    pub fn required<T>(&self, d: &mut Diags<'_>, key: &str, what: &str, f: Field<T>) -> Field<T> {
        if let Field::Absent = f {
            self.missing(d, key, what);
            return Field::Invalid;
        }
        f
    }

    /// Report every key that was not asked for. `hint` may explain a key that is known
    /// elsewhere but not valid here (e.g. `baud` on a TCP bus).
    pub fn finish(self, d: &mut Diags<'_>, hint: impl Fn(&str) -> Option<String>) {
        for (k, _) in self.table.iter() {
            let key = k.get_ref();
            if !self.used.contains(key.as_ref()) {
                let msg = match hint(key) {
                    Some(h) => format!("key `{key}` is not allowed here: {h}"),
                    None => format!("unknown key `{key}`"),
                };
                d.error(&self.key_path(key), Some(k.span()), msg);
            }
        }
    }
}

fn float_of(v: &DeValue<'_>) -> Option<f64> {
    match v {
        DeValue::Float(f) => {
            let s = f.as_str();
            match s {
                "inf" | "+inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                "nan" | "+nan" | "-nan" => Some(f64::NAN),
                _ => s.parse().ok(),
            }
        }
        DeValue::Integer(_) => int_of(v).map(|n| n as f64),
        _ => None,
    }
}

/// Parse a TOML document, reporting every syntax error with line and column.
pub(crate) fn parse_document<'i>(d: &mut Diags<'_>, text: &'i str) -> Option<Spanned<DeTable<'i>>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Some(doc);
    }
    for e in errors {
        let at = e.span().map(|r| r.start).unwrap_or(0);
        d.error_at(at, format!("TOML syntax error: {}", e.message()));
    }
    None
}
