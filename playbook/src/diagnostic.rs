//! Positioned problems found while loading and checking a playbook (stages **load** and
//! **spec**). Every problem is collected so that `playbook validate` can list them all at once.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::Mark;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The playbook is refused.
    Error,
    /// The playbook loads, but something looks wrong (e.g. an unknown property).
    Warning,
}

/// One problem at one place in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The playbook file.
    pub file: PathBuf,
    /// Where in the file.
    pub mark: Mark,
    /// Error or warning.
    pub severity: Severity,
    /// The human-readable message (may include a "did you mean" hint).
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {level}: {}",
            self.file.display(),
            self.mark.line,
            self.mark.column,
            self.message
        )
    }
}

/// A list of diagnostics for one file.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    file: PathBuf,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            items: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.push(mark, Severity::Error, message.into());
    }

    pub(crate) fn warning(&mut self, mark: Mark, message: impl Into<String>) {
        self.push(mark, Severity::Warning, message.into());
    }

    fn push(&mut self, mark: Mark, severity: Severity, message: String) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            mark,
            severity,
            message,
        });
    }

    /// True when at least one problem is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// All problems in file order.
    pub fn items(&self) -> Vec<Diagnostic> {
        let mut items = self.items.clone();
        items.sort_by_key(|d| (d.mark.line, d.mark.column));
        items
    }

    /// Only the errors.
    pub fn errors(&self) -> Vec<Diagnostic> {
        self.items()
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.items() {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Returns `" (did you mean `x`?)"` when one of `candidates` is close to `word`.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("descripton", ["description", "type"]),
            " (did you mean `description`?)"
        );
        assert_eq!(did_you_mean("zzz", ["description", "type"]), "");
    }
}
