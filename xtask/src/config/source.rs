//! Source text of a configuration file and positions inside it.

use std::path::Path;

/// A loaded configuration file: its display name and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(path: impl AsRef<Path>, text: impl Into<String>) -> Source {
        let path = path.as_ref();
        let name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        Source { name, text: text.into() }
    }

    /// The text of the 1-based line `line`, without its line break.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }
}

/// Where a node starts (1-based line and column, counted in characters) and how wide it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Span {
    pub fn new(line: usize, col: usize, len: usize) -> Span {
        Span { line, col, len: len.max(1) }
    }

    /// A span `offset` characters to the right, `len` wide: points into a scalar.
    pub fn shifted(self, offset: usize, len: usize) -> Span {
        Span::new(self.line, self.col + offset, len)
    }
}
