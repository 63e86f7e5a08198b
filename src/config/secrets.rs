//! Keeps secrets out of configuration errors: which keys hold secrets, and messages about
//! them that name the key and line but never the value or the text around it.
//!
//! Two error paths could quote a secret: serde's wrong-type messages (`found string
//! "..."`) and TOML syntax errors, whose key is recovered from a partial parse and can be
//! made of the text after a broken string (`acme.eab."rest-of-the-secret\""`).

/// Words that mark a key as holding a secret, matched in its lowercased name.
const SECRET_WORDS: [&str; 5] = ["secret", "token", "password", "passwd", "hmac"];

/// Whether a key named `name` (one segment, as written) may hold a secret: EAB HMAC and
/// TSIG keys, `eab` itself, and anything named key, secret, token or password.
pub(crate) fn is_secret_key(name: &str) -> bool {
    let name = name.trim_matches('"').to_ascii_lowercase();
    name == "key"
        || name == "eab"
        || name.ends_with("_key")
        || name.ends_with("-key")
        || SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// Whether the last segment of a dotted key (`acme.eab.hmac_key`, `certificate[0].x`) is
/// a secret key.
pub(crate) fn is_secret_path(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    is_secret_key(last)
}

/// The secret key a syntax error at byte `offset` of `text` belongs to, if any: a secret
/// assigned on the error's line, or on a line above it (within the same table) whose
/// string value is left open or whose statement has not ended by the error's line. A
/// broken string swallows what follows, text that may look like `key = value` included.
pub(crate) fn secret_statement_at(text: &str, offset: usize) -> Option<String> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_end = text[offset..]
        .find('\n')
        .map_or(text.len(), |newline| offset + newline);
    let mut statement_started_below = false;
    for (distance, line) in text[..line_end].lines().rev().enumerate() {
        if let Some((name, value)) = last_secret_assignment(line) {
            if distance == 0 || !statement_started_below || leaves_string_open(value) {
                return Some(name);
            }
            return None;
        }
        if line.trim_start().starts_with('[') {
            return None;
        }
        statement_started_below |= leading_key(line).is_some();
    }
    None
}

/// The syntax-error problem for a statement that assigns a secret key.
pub(crate) fn syntax_problem() -> String {
    "invalid TOML in or after the value of this secret key (the text is not shown); \
     fix the quoting"
        .to_owned()
}

/// The key of a line that begins `key =` (bare, dotted or quoted keys).
fn leading_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plausible = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | ' '));
    plausible.then_some(key)
}

/// The last secret key assigned on `line` (inline tables included: `eab = { kid = "..",
/// hmac_key = ".."`) and the text after its `=`.
fn last_secret_assignment(line: &str) -> Option<(String, &str)> {
    let mut found = None;
    let mut segment_start = 0;
    for (index, character) in line.char_indices() {
        match character {
            '{' | ',' => segment_start = index + 1,
            '=' => {
                let candidate = line[segment_start..index].trim();
                let name = candidate.rsplit('.').next().unwrap_or(candidate).trim();
                let is_key = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"'));
                if is_key && is_secret_key(name) {
                    found = Some((name.trim_matches('"').to_owned(), &line[index + 1..]));
                }
                segment_start = index + 1;
            }
            _ => {}
        }
    }
    found
}

/// Whether `value` opens a string it does not close on the same line.
fn leaves_string_open(value: &str) -> bool {
    let unescaped_double = value
        .char_indices()
        .filter(|&(index, c)| c == '"' && !value[..index].ends_with('\\'))
        .count();
    unescaped_double % 2 == 1 || value.matches('\'').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_by_name() {
        for name in [
            "hmac_key",
            "tsig_key",
            "eab",
            "key",
            "api_token",
            "Password",
            "client_secret",
        ] {
            assert!(is_secret_key(name), "{name}");
        }
        for name in ["kid", "tsig_key_name", "directory", "keys_dir", "zone"] {
            assert!(!is_secret_key(name), "{name}");
        }
        assert!(is_secret_path("acme.eab.hmac_key"));
        assert!(is_secret_path("certificate[0].challenge.tsig_key"));
        assert!(!is_secret_path("certificate[0].challenge.tsig_key_name"));
    }

    /// The statement `secret_statement_at` blames for an error at the first `marker` of
    /// `text` must be `expected`.
    fn check(text: &str, marker: &str, expected: Option<&str>) {
        let offset = text.find(marker).expect("the marker is in the text");
        assert_eq!(
            secret_statement_at(text, offset).as_deref(),
            expected,
            "error at {marker:?} in {text:?}"
        );
    }

    #[test]
    fn a_syntax_error_in_a_secret_running_over_lines_is_traced_to_its_key() {
        check(
            "[acme.eab]\nkid = \"k\"\nhmac_key = \"abc\ndef\"\n",
            "def",
            Some("hmac_key"),
        );
        check(
            "eab = { kid = \"k\", hmac_key = \"abc\ndef\" }\n",
            "def",
            Some("hmac_key"),
        );
    }

    #[test]
    fn an_open_secret_string_swallows_lines_that_look_like_statements() {
        // Base64 padding makes the rest of a broken secret look like `key = value`; the
        // error stands at the quote after it.
        check("hmac_key = \"abc\nYWI=\" }\n", "\" }", Some("hmac_key"));
    }

    #[test]
    fn a_syntax_error_after_a_new_statement_is_not_blamed_on_the_secret() {
        check("hmac_key = \"abc\"\ntimeout = 5x\n", "5x", None);
    }
}
