//! Diagnostics of configuration loading: `ConfigError` and `ConfigWarning` (what is wrong,
//! under which key path, at which line and column of which file), the `LoadError` that
//! `load_file` returns, and the collector the validator fills so that every problem is
//! reported at once (the first `MAX_ERRORS`, then one line counting the rest). It also owns
//! `escape`, the one helper that makes text from outside (config keys, client-sent names)
//! safe to echo to a terminal or the journal. No I/O.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;

use thiserror::Error;

/// One thing wrong with a configuration or profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or pushed document) the problem is in: the config file, or the profile file
    /// for errors inside a profile (`builtin:<id>` for the profiles compiled into the binary).
    pub origin: String,
    /// Key path, e.g. `devices.evc1.points.pressure.type`; empty for whole-document problems.
    pub path: String,
    /// 1-based line, when the problem can be placed in the text.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    pub message: String,
}

/// Something legal but probably not what was meant (same shape as `ConfigError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub origin: String,
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

fn fmt_diag(
    f: &mut fmt::Formatter<'_>,
    origin: &str,
    path: &str,
    line: Option<usize>,
    column: Option<usize>,
    message: &str,
) -> fmt::Result {
    // Keys, names and values come from the file: never echo a control character raw.
    f.write_str(&escape(origin))?;
    if let Some(l) = line {
        write!(f, ":{l}")?;
        if let Some(c) = column {
            write!(f, ":{c}")?;
        }
    }
    if !path.is_empty() {
        write!(f, ": {}", escape(path))?;
    }
    write!(f, ": {}", escape(message))
}

/// Text from outside made safe to print on a terminal or send to the journal: every control
/// character (C0 including NUL, TAB, CR, LF and ESC; DEL; C1) and every Unicode direction
/// override or isolate is replaced by an escape (`\0`, `\t`, `\n`, `\r`, `\x1b`,
/// `\u{202e}`); everything else, including backslashes and quotes, is kept as is, so text
/// that was already quoted with `{:?}` is not escaped twice.
pub fn escape(s: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && unsafe_char(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Most errors one document reports; the rest are counted in one last error.
pub const MAX_ERRORS: usize = 100;

/// The message of the last error of a capped list (`N more errors not shown`).
fn omitted_message(n: usize) -> String {
    format!("{n} more errors not shown (only the first {MAX_ERRORS} are listed)")
}

/// How many errors a list stands for: its length, plus what a capped list's last entry counts.
pub fn error_count(errors: &[ConfigError]) -> usize {
    let omitted = errors.last().and_then(|e| {
        let rest = e.message.strip_suffix(&omitted_message(0)[1..])?;
        e.path.is_empty().then_some(())?;
        rest.parse::<usize>().ok()
    });
    match omitted {
        Some(n) => errors.len() - 1 + n,
        None => errors.len(),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_diag(
            f,
            &self.origin,
            &self.path,
            self.line,
            self.column,
            &self.message,
        )
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_diag(
            f,
            &self.origin,
            &self.path,
            self.line,
            self.column,
            &self.message,
        )
    }
}

impl std::error::Error for ConfigError {}

/// Why `load_file` produced no configuration.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Occurs when the configuration file cannot be read (missing, permissions, not a regular
    /// file, larger than `MAX_CONFIG_BYTES`).
    /// `gasdtu check` exits 2.
    #[error("cannot read {}: {}", escape(&path.display().to_string()), escape(&source.to_string()))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Occurs when the file was read but is not a valid configuration; carries every error.
    /// `gasdtu check` exits 1.
    #[error("{}: invalid configuration ({} errors){}", escape(&path.display().to_string()), error_count(errors), first_error(errors))]
    Invalid {
        path: PathBuf,
        errors: Vec<ConfigError>,
    },
}

fn first_error(errors: &[ConfigError]) -> String {
    match errors.first() {
        Some(e) => format!(", first: {e}"),
        None => String::new(),
    }
}

/// Put diagnostics in reading order: grouped by file (files in the order their first
/// diagnostic was found), then by line and column; unplaced ones follow the placed ones of
/// their file in the order they were found (the sort is stable).
pub fn sort_by_place<T>(
    items: &mut [T],
    place: impl Fn(&T) -> (&String, Option<usize>, Option<usize>),
) {
    let mut files: Vec<String> = Vec::new();
    for it in items.iter() {
        let (origin, _, _) = place(it);
        if !files.contains(origin) {
            files.push(origin.clone());
        }
    }
    items.sort_by_key(|it| {
        let (origin, line, column) = place(it);
        let file = files.iter().position(|f| f == origin).unwrap_or(usize::MAX);
        (file, line.is_none(), line, column)
    });
}

/// Byte offset to line/column translation for one text.
#[derive(Debug, Clone)]
pub(crate) struct Source<'t> {
    pub origin: String,
    text: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub fn new(origin: &str, text: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            origin: origin.to_string(),
            text,
            line_starts,
        }
    }

    /// 1-based (line, column) of a byte offset; column counts characters.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, col + 1)
    }
}

/// Collects errors and warnings while a document is validated.
#[derive(Debug)]
pub(crate) struct Diags<'t> {
    pub src: Source<'t>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
    /// Errors past `MAX_ERRORS`, counted but not kept (a file of 100 000 unknown keys must not
    /// cost 100 000 messages of memory and output).
    omitted: usize,
}

impl<'t> Diags<'t> {
    pub fn new(origin: &str, text: &'t str) -> Self {
        Diags {
            src: Source::new(origin, text),
            errors: Vec::new(),
            warnings: Vec::new(),
            omitted: 0,
        }
    }

    /// The errors, capped: the first `MAX_ERRORS` and, if there were more, one last error
    /// counting them (`error_count` reads it back).
    pub fn take_errors(&mut self) -> Vec<ConfigError> {
        let mut errors = std::mem::take(&mut self.errors);
        sort_by_place(&mut errors, |e| (&e.origin, e.line, e.column));
        if self.omitted > 0 {
            errors.push(ConfigError {
                origin: self.src.origin.clone(),
                path: String::new(),
                line: None,
                column: None,
                message: omitted_message(self.omitted),
            });
            self.omitted = 0;
        }
        errors
    }

    /// The warnings, in line order.
    pub fn take_warnings(&mut self) -> Vec<ConfigWarning> {
        let mut warnings = std::mem::take(&mut self.warnings);
        sort_by_place(&mut warnings, |w| (&w.origin, w.line, w.column));
        warnings
    }

    fn push(&mut self, e: ConfigError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        } else {
            self.omitted += 1;
        }
    }

    /// Errors found elsewhere (a profile's), under the same cap.
    pub fn extend(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        for e in errors {
            self.push(e);
        }
    }

    /// How many errors were recorded (kept or counted).
    pub fn count(&self) -> usize {
        self.errors.len() + self.omitted
    }

    /// Whether any error was recorded (kept or counted).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.omitted > 0
    }

    fn place(&self, span: Option<Range<usize>>) -> (Option<usize>, Option<usize>) {
        match span {
            // Implicit tables (e.g. `devices` when only `[devices.x]` is written) carry an
            // empty span at 0 that would point at the top of the file: leave those unplaced.
            Some(r) if !(r.start == 0 && r.end == 0) => {
                let (l, c) = self.src.position(r.start);
                (Some(l), Some(c))
            }
            _ => (None, None),
        }
    }

    pub fn error(&mut self, path: &str, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = self.place(span);
        self.push(ConfigError {
            origin: self.src.origin.clone(),
            path: path.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// An error at an exact offset (syntax errors: always placed, even at offset 0).
    pub fn error_at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = self.src.position(offset);
        self.push(ConfigError {
            origin: self.src.origin.clone(),
            path: String::new(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        });
    }

    /// An error about something missing from the whole document, placed at its end (where
    /// it would be added).
    pub fn error_at_end(&mut self, path: &str, message: impl Into<String>) {
        let (line, column) = self.src.position(usize::MAX);
        self.push(ConfigError {
            origin: self.src.origin.clone(),
            path: path.to_string(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &str, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = self.place(span);
        self.warnings.push(ConfigWarning {
            origin: self.src.origin.clone(),
            path: path.to_string(),
            line,
            column,
            message: message.into(),
        });
    }
}
