//! The error of the configuration's string parsers (durations, targets, allow rules): the
//! input as written and what exactly is wrong with it.

/// A string that could not be parsed as a `what`. The message quotes the input, and its
/// `problem` says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {problem}")]
pub struct InvalidInput<P> {
    what: &'static str,
    input: String,
    problem: P,
}

impl<P> InvalidInput<P> {
    /// `input`, which is not a valid `what` because of `problem`.
    pub(crate) fn new(what: &'static str, input: &str, problem: P) -> Self {
        InvalidInput {
            what,
            input: input.to_owned(),
            problem,
        }
    }

    /// What is wrong with the input.
    pub fn problem(&self) -> &P {
        &self.problem
    }
}

/// What `parse` makes of `s`; panics, naming `s`, when it is refused.
#[cfg(test)]
pub(crate) fn parsed<T, E: std::fmt::Display>(
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> T {
    parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// The message `parse` refuses `s` with; panics, naming `s`, when it is accepted.
#[cfg(test)]
pub(crate) fn refusal<T: std::fmt::Debug, E: std::fmt::Display>(
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> String {
    parse(s)
        .expect_err(&format!("{s:?} should be rejected"))
        .to_string()
}
