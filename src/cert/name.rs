//! Certificate names: one rule for the configuration and every store, so a name the
//! configuration accepts can always be stored.

/// Whether `name` can name a certificate: a single path component of letters, digits, `.`,
/// `_` and `-`, not starting with `.`, at most 200 bytes.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_path_component_that_does_not_start_with_a_dot() {
        for name in ["www", "api.example.com", "a_b-c", "x.", &"a".repeat(200)] {
            assert!(is_safe_name(name), "{name:?} is refused");
        }
        let too_long = "a".repeat(201);
        for name in ["", ".hidden", "..", "a/b", "a b", "ä", too_long.as_str()] {
            assert!(!is_safe_name(name), "{name:?} is accepted");
        }
    }
}
