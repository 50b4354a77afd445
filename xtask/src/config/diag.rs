//! Located diagnostics: `pipeline.yaml:12:5`, the source line, a caret, what was expected.

use std::fmt;

use super::source::{Source, Span};

/// One problem found in a configuration file, with everything needed to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Option<Span>,
    pub message: String,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub help: Option<String>,
    /// Extra lines shown after the source excerpt (e.g. the members of a cycle).
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic { span: None, message: message.into(), expected: None, found: None, help: None, notes: Vec::new() }
    }

    pub fn at(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Diagnostic {
        self.expected = Some(expected.into());
        self
    }

    pub fn found(mut self, found: impl Into<String>) -> Diagnostic {
        self.found = Some(found.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Adds "did you mean `x`?" when one of `candidates` is close to `found`.
    pub fn suggest<'a>(self, found: &str, candidates: impl IntoIterator<Item = &'a str>) -> Diagnostic {
        match nearest(found, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    pub fn render(&self, source: &Source) -> String {
        Rendered { diag: self, source }.to_string()
    }
}

/// The candidate closest to `found`, if any is close enough to be a plausible typo.
pub fn nearest<'a>(found: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = found.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.chars().count().max(found.chars().count()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

struct Rendered<'a> {
    diag: &'a Diagnostic,
    source: &'a Source,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.diag;
        match d.span {
            Some(span) => writeln!(f, "{}:{}:{}: error: {}", self.source.name, span.line, span.col, d.message)?,
            None => writeln!(f, "{}: error: {}", self.source.name, d.message)?,
        }
        if let Some(span) = d.span
            && let Some(line) = self.source.line(span.line)
        {
            let gutter = span.line.to_string().len();
            let line = line.replace('\t', " ");
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", span.line, printable(&line))?;
            let width = span.len.min(line.chars().count().saturating_sub(span.col - 1).max(1));
            writeln!(f, "{:gutter$} | {}{}", "", " ".repeat(span.col - 1), "^".repeat(width))?;
        }
        if let Some(expected) = &d.expected {
            writeln!(f, "  expected: {expected}")?;
        }
        if let Some(found) = &d.found {
            writeln!(f, "     found: {found}")?;
        }
        for note in &d.notes {
            writeln!(f, "      note: {note}")?;
        }
        if let Some(help) = &d.help {
            writeln!(f, "      help: {help}")?;
        }
        Ok(())
    }
}

/// Control characters would garble the terminal; show them escaped.
fn printable(line: &str) -> String {
    line.chars().map(|c| if c.is_control() { char::REPLACEMENT_CHARACTER } else { c }).collect()
}

/// All problems of one load, rendered together.
#[derive(Debug)]
pub struct Diagnostics {
    pub source: Source,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.render(&self.source))?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_line_and_caret() {
        let source = Source::new("pipeline.yaml", "version: 1\nstages:\n  - nmae: x\n");
        let d = Diagnostic::new("unknown key `nmae` in stage")
            .at(Span::new(3, 5, 4))
            .expected("one of `name`, `kind`")
            .suggest("nmae", ["name", "kind"]);
        assert_eq!(
            d.render(&source),
            "pipeline.yaml:3:5: error: unknown key `nmae` in stage\n  |\n3 |   - nmae: x\n  |     ^^^^\n  expected: one of `name`, `kind`\n      help: did you mean `name`?\n"
        );
    }

    #[test]
    fn nearest_ignores_far_names() {
        assert_eq!(nearest("biuld", ["build", "bench"]), Some("build"));
        assert_eq!(nearest("zzz", ["build", "bench"]), None);
    }
}
