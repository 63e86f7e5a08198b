//! [`Escaped`]: text from untrusted sources (certificate names, file names, server replies)
//! made safe to print to a terminal or a log line.
//!
//! A hostile certificate can carry ESC, CR, LF or bidirectional-override characters in its
//! subject, issuer or SANs. Printed raw they move the cursor, recolour or clear the
//! terminal, or forge extra table rows and log lines. Every control character (C0, DEL, C1)
//! and every bidirectional formatting character is written as a visible escape instead
//! (`\x1b`, `\r`, `\n`, `\u{202e}`); everything else, backslashes included, is kept as is.
//! JSON output and metrics need none of this: their encoders escape on their own.

use std::fmt::{self, Write};

/// Formats its value with every control and bidirectional formatting character escaped.
///
/// `Escaped(&subject)` in a `format!` or a `tracing` field (`subject = %Escaped(&subject)`)
/// prints the value on one line, without any byte a terminal would act on.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

/// `text` with every control and bidirectional formatting character escaped.
pub fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

/// `text` made safe inside HTML or XML element content and attribute values in either
/// quote: `&`, `<`, `>`, `"` and `'` become character references. (A separate concern
/// from [`Escaped`], which only makes text safe for a terminal.)
pub fn markup(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Whether `text` holds a character [`Escaped`] would rewrite.
pub fn needs_escaping(text: &str) -> bool {
    text.chars().any(is_unsafe)
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter { inner: f }, "{}", self.0)
    }
}

/// Passes text through to `inner`, escaping unsafe characters as they stream by.
struct EscapingWriter<'a, 'b> {
    inner: &'a mut fmt::Formatter<'b>,
}

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut clean_from = 0;
        for (offset, character) in text.char_indices() {
            if !is_unsafe(character) {
                continue;
            }
            self.inner.write_str(&text[clean_from..offset])?;
            write_escape(self.inner, character)?;
            clean_from = offset + character.len_utf8();
        }
        self.inner.write_str(&text[clean_from..])
    }
}

fn write_escape(out: &mut fmt::Formatter<'_>, character: char) -> fmt::Result {
    match character {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        ascii if ascii.is_ascii() => write!(out, "\\x{:02x}", ascii as u32),
        other => write!(out, "\\u{{{:x}}}", other as u32),
    }
}

/// Control characters (C0, DEL, C1) and the characters that reorder text on screen
/// (Unicode bidirectional marks, embeddings, overrides and isolates).
fn is_unsafe(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            escape("evil\x1b[31m\r\nFAKE\tROW\x07\x7f"),
            r"evil\x1b[31m\r\nFAKE\tROW\x07\x7f"
        );
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_escaped_as_code_points() {
        assert_eq!(escape("a\u{9b}b\u{202e}c"), r"a\u{9b}b\u{202e}c");
    }

    #[test]
    fn ordinary_text_and_non_ascii_letters_are_kept() {
        let text = r"CN=Zürich Root, O=Ex\ample, C=CH — ok";
        assert_eq!(escape(text), text);
        assert!(!needs_escaping(text));
        assert!(needs_escaping("a\nb"));
    }

    #[test]
    fn escaped_wraps_any_display_value() {
        let error = std::io::Error::other("bad\x1bname");
        assert_eq!(format!("{}", Escaped(&error)), r"bad\x1bname");
    }
}
