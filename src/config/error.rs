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
            Some((key, rest)) => (Some(key.to_string()), rest.to_string()),
            None => (None, message),
        };
        Self {
            file: file.to_path_buf(),
            line_col,
            key,
            message,
        }
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
