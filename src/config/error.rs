//! [`ConfigError`]: one line, `FILE:LINE:COL: KEY: problem; what to do`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::config::{locate, secrets};

/// A configuration that could not be loaded.
///
/// Its message is one line, `FILE:LINE:COL: KEY: problem; what to do`; FILE is the path as
/// given to [`load`](crate::config::load) (`<config>` for text without a file) and KEY is the
/// dotted path with 0-based array indices, e.g. `endpoint[1].timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: Option<PathBuf>,
    position: Option<Position>,
    key: Option<String>,
    problem: String,
}

/// A 1-based line and column (in characters) in the configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    line: usize,
    column: usize,
}

impl ConfigError {
    /// The file the error is in; `None` for text parsed without a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The 1-based line of the offending value; `None` when the file could not be read.
    pub fn line(&self) -> Option<usize> {
        self.position.map(|position| position.line)
    }

    /// The 1-based column (in characters) of the offending value.
    pub fn column(&self) -> Option<usize> {
        self.position.map(|position| position.column)
    }

    /// The dotted key of the offending value, e.g. `endpoint[1].timeout`.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong and what to do, without the location.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The file at `path` could not be read.
    pub(crate) fn unreadable(path: &Path, error: &std::io::Error) -> ConfigError {
        let problem = if error.kind() == std::io::ErrorKind::InvalidData {
            "cannot read: not valid UTF-8; save the file as UTF-8".to_owned()
        } else {
            format!("cannot read: {error}; check the path")
        };
        ConfigError {
            path: Some(path.to_owned()),
            position: None,
            key: None,
            problem,
        }
    }

    /// An error toml could not place; rare, but a wrong position would mislead more.
    fn unplaced(source: Option<&Path>, problem: &str) -> ConfigError {
        ConfigError {
            path: source.map(Path::to_owned),
            position: None,
            key: None,
            problem: one_line(problem),
        }
    }

    /// An error at byte range `span` of `text`.
    pub(crate) fn at(
        source: Option<&Path>,
        text: &str,
        span: Range<usize>,
        key: Option<String>,
        problem: String,
    ) -> ConfigError {
        ConfigError {
            path: source.map(Path::to_owned),
            position: Some(position_of(text, span.start)),
            key,
            problem: one_line(&problem),
        }
    }

    /// A TOML syntax error. The key is found in what could be parsed around it, except in
    /// the statement of a secret key: what was parsed there may be made of the secret
    /// (text after a broken string reads as a key), so the key is named as written and
    /// nothing of the text is quoted.
    pub(crate) fn syntax(source: Option<&Path>, text: &str, error: &toml::de::Error) -> Self {
        let problem = format!("invalid TOML: {}; fix the syntax", error.message());
        let Some(span) = error.span() else {
            return ConfigError::unplaced(source, &problem);
        };
        let (partial, _) = DeTable::parse_recoverable(text);
        let key = locate::key_at(partial.get_ref(), &span);
        if let Some(secret) = secrets::secret_statement_at(text, span.start) {
            let key = key
                .filter(|key| secrets::is_secret_path(key))
                .unwrap_or(secret);
            return ConfigError::at(source, text, span, Some(key), secrets::syntax_problem());
        }
        ConfigError::at(source, text, span, key, problem)
    }

    /// An error from deserialising the parsed document `root` into the raw structs.
    pub(crate) fn from_serde(
        source: Option<&Path>,
        text: &str,
        root: &DeTable<'_>,
        error: &toml::de::Error,
    ) -> Self {
        let message = error.message();
        let Some(span) = error.span() else {
            return ConfigError::unplaced(source, message);
        };
        let mut key = locate::key_at(root, &span);
        let problem = if let Some(field) = between(message, "missing field `", "`") {
            key = Some(locate::join(key.as_deref(), field));
            missing_key(field)
        } else if let Some(rest) = message.strip_prefix("unknown field `") {
            let expected = rest.split_once(", ").map_or("", |(_, expected)| expected);
            unknown_key(expected)
        } else if key.as_deref().is_some_and(secrets::is_secret_path) {
            // serde quotes what it found: for a secret key, that is the secret.
            redacted(message)
        } else if let Some(rest) = message.strip_prefix("invalid type: ") {
            wrong_type(rest)
        } else if let Some(rest) = message.strip_prefix("invalid value: ") {
            format!("invalid value: {}", found_expected(rest))
        } else {
            message.to_owned()
        };
        ConfigError::at(source, text, span, key, problem)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}", path.display())?,
            None => f.write_str("<config>")?,
        }
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    position_of(text, offset).line
}

fn position_of(text: &str, offset: usize) -> Position {
    // Clamp to a character boundary so a span from a newer toml never panics here.
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Folds a multi-line message (toml's syntax errors have several) into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(start)?;
    rest.split_once(end).map(|(inner, _)| inner)
}

fn missing_key(field: &str) -> String {
    let example = match field {
        "target" => r#"target = "example.com:443""#,
        "path" => r#"path = "/etc/ssl/certs/example.pem""#,
        "name" => r#"name = "api""#,
        "dns_names" => r#"dns_names = ["api.example.com"]"#,
        "challenge" => r#"challenge = { type = "http-01", listen = "0.0.0.0:80" }"#,
        "type" => r#"type = "http-01""#,
        "kid" | "hmac_key" => r#"eab = { kid = "...", hmac_key = "..." }"#,
        _ => return "required key is missing; add it".to_owned(),
    };
    format!("required key is missing; add it, e.g. {example}")
}

/// serde's `expected one of `a`, `b`` (or `expected `a` or `b``) as a plain list.
fn unknown_key(expected: &str) -> String {
    let list = expected
        .trim_start_matches("expected ")
        .trim_start_matches("one of ")
        .replace('`', "")
        .replace(" or ", ", ");
    if list.is_empty() || expected.starts_with("there are no fields") {
        "unknown key; this table takes no keys".to_owned()
    } else {
        format!("unknown key; valid keys here: {list}")
    }
}

fn wrong_type(rest: &str) -> String {
    format!("wrong type: {}", found_expected(rest))
}

/// serde's message about the value of a secret key without the value: the expected type
/// is kept, what was found is not.
fn redacted(message: &str) -> String {
    const NOT_SHOWN: &str = "(the value is not shown: it may be a secret)";
    let kind = if message.starts_with("invalid type: ") {
        "wrong type"
    } else {
        "invalid value"
    };
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("{kind}: expected {} {NOT_SHOWN}", plain(expected)),
        None => format!("{kind} {NOT_SHOWN}"),
    }
}

/// serde's `FOUND, expected EXPECTED` rephrased as `expected EXPECTED', found FOUND'`.
fn found_expected(rest: &str) -> String {
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return rest.to_owned();
    };
    format!(
        "expected {}, found {}",
        plain(expected),
        found.replace('`', "")
    )
}

/// A serde type name (`u64`, `struct RawEab`) in the words of the configuration file.
fn plain(expected: &str) -> &str {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer",
        "i64" | "i32" => "an integer",
        "a sequence" => "an array",
        "a map" => "a table",
        table if table.starts_with("struct ") => "a table",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(position_of(text, 0), Position { line: 1, column: 1 });
        let offset = text.find('"').unwrap();
        assert_eq!(position_of(text, offset), Position { line: 2, column: 6 });
    }

    #[test]
    fn message_names_file_line_column_and_key() {
        let error = ConfigError::at(
            Some(Path::new("c.toml")),
            "x\ny = 1\n",
            2..3,
            Some("y".into()),
            "bad\nvery bad".into(),
        );
        assert_eq!(error.to_string(), "c.toml:2:1: y: bad; very bad");
        assert_eq!(error.line(), Some(2));
        assert_eq!(error.key(), Some("y"));
    }

    #[test]
    fn messages_about_secret_values_keep_the_expected_type_only() {
        assert_eq!(
            redacted("invalid type: string \"s3cr3t\", expected struct RawEab"),
            "wrong type: expected a table (the value is not shown: it may be a secret)"
        );
        assert!(!redacted("invalid value: string \"s3cr3t\", expected x").contains("s3cr3t"));
    }

    #[test]
    fn serde_messages_are_rephrased() {
        assert_eq!(
            unknown_key("expected one of `a`, `b`, `c`"),
            "unknown key; valid keys here: a, b, c"
        );
        assert_eq!(
            unknown_key("expected `a` or `b`"),
            "unknown key; valid keys here: a, b"
        );
        assert_eq!(
            wrong_type("string \"abc\", expected usize"),
            "wrong type: expected a non-negative integer, found string \"abc\""
        );
        assert_eq!(
            wrong_type("integer `3`, expected struct RawScanner"),
            "wrong type: expected a table, found integer 3"
        );
    }
}
