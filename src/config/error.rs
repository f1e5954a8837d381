//! Config errors that say where (file, line/column or key path) and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// An error in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: PathBuf,
    line_col: Option<(usize, usize)>,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    /// An error about the file as a whole.
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line_col: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error about one key, e.g. `upstreams.app.servers[1].addr`; the file is set later
    /// by [`ConfigError::in_file`].
    pub fn at_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: PathBuf::new(),
            line_col: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// Sets the file the error belongs to.
    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = file.to_path_buf();
        self
    }

    /// Converts a serde_yaml error, which carries a key path and a position.
    pub fn from_yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        let line_col = err.location().map(|l| (l.line(), l.column()));
        let mut message = err.to_string();
        // serde_yaml appends " at line L column C"; the position is printed up front instead.
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        // serde_yaml prefixes the key path as "a.b[1].c: "; keep it as the key.
        let (key, message) = match split_key_prefix(&message) {
            Some((key, rest)) => (Some(key.to_string()), plain_words(rest)),
            None => (None, plain_words(&message)),
        };
        Self {
            file: file.to_path_buf(),
            line_col,
            key,
            message,
        }
    }

    /// Adds how to fix the YAML syntax errors that do not say it themselves, looking at the
    /// line of `text` the error points at.
    pub fn with_syntax_hint(mut self, text: &str) -> Self {
        let line = self
            .line_col
            .and_then(|(line, _)| text.lines().nth(line.saturating_sub(1)));
        if line.is_some_and(|l| l.contains('\t')) {
            self.message
                .push_str("; this line holds a tab: YAML indents with spaces only");
        }
        self
    }

    /// The key path the error is about, if known.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Says in the config's words what serde says in Rust's: `expected usize` and
/// `expected struct FileServer` mean nothing to someone writing YAML.
fn plain_words(message: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("usize", "a whole number"),
        ("u64", "a whole number"),
        ("u32", "a whole number"),
        ("u16", "a whole number"),
        ("u8", "a whole number"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("f64", "a number"),
        ("a boolean", "true or false"),
        (
            "a sequence",
            "a list, such as [a, b] or one `- item` per line",
        ),
        ("a map", "a block of `key: value` settings"),
    ];
    let Some((before, expected)) = message.split_once("expected ") else {
        return message.to_string();
    };
    let (what, after) = expected
        .find([',', ';'])
        .map_or((expected, ""), |end| expected.split_at(end));
    let plain = if what.starts_with("struct ") {
        "a block of `key: value` settings"
    } else if let Some((_, words)) = TYPES.iter().find(|(rust, _)| *rust == what) {
        words
    } else {
        return message.to_string();
    };
    format!("{before}expected {plain}{after}")
}

/// Splits `servers[1].weight: invalid ...` into the key path and the rest, if the text
/// starts with something shaped like a key path.
fn split_key_prefix(message: &str) -> Option<(&str, &str)> {
    let (key, rest) = message.split_once(": ")?;
    let key_like = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
    key_like.then_some((key, rest))
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.line_col {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}
