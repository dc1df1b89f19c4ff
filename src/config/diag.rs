//! Diagnostics of configuration loading: `ConfigError` and `ConfigWarning` (what is wrong,
//! under which key path, at which line and column of which file), the `LoadError` that
//! `load_file` returns, and the collector the validator fills so that every problem is
//! reported at once. No I/O.

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
    f.write_str(origin)?;
    if let Some(l) = line {
        write!(f, ":{l}")?;
        if let Some(c) = column {
            write!(f, ":{c}")?;
        }
    }
    if !path.is_empty() {
        write!(f, ": {path}")?;
    }
    write!(f, ": {message}")
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
    /// Occurs when the configuration file cannot be read (missing, permissions, not UTF-8).
    /// `gasdtu check` exits 2.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Occurs when the file was read but is not a valid configuration; carries every error.
    /// `gasdtu check` exits 1.
    #[error("{}: invalid configuration ({} errors){}", path.display(), errors.len(), first_error(errors))]
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
}

impl<'t> Diags<'t> {
    pub fn new(origin: &str, text: &'t str) -> Self {
        Diags {
            src: Source::new(origin, text),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
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
        self.errors.push(ConfigError {
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
        self.errors.push(ConfigError {
            origin: self.src.origin.clone(),
            path: String::new(),
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
