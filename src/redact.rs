//! Removing secrets from text bound for logs, errors and files: private-key PEM blocks
//! that a hook printed or an error quoted.

/// Replaces every `-----BEGIN ... PRIVATE KEY-----` block (up to its END line, or to the end
/// of the text when the END line is missing) with `[redacted private key]`.
pub fn redact_private_keys(text: &str) -> String {
    const MARKER: &str = "PRIVATE KEY-----";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(begin) = find_private_key_begin(rest) {
        out.push_str(&rest[..begin]);
        out.push_str("[redacted private key]");
        let after_begin = &rest[begin..];
        // Skip the BEGIN line itself, then look for the END line's marker.
        let body_start = after_begin
            .find(MARKER)
            .map_or(after_begin.len(), |i| i + MARKER.len());
        let body = &after_begin[body_start..];
        rest = match body.find("-----END") {
            Some(end) => {
                let tail = &body[end..];
                match tail.find(MARKER) {
                    Some(m) => &tail[m + MARKER.len()..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// The start of the first `-----BEGIN <anything>PRIVATE KEY-----` line in `text`.
fn find_private_key_begin(text: &str) -> Option<usize> {
    let mut offset = 0;
    while let Some(i) = text[offset..].find("-----BEGIN ") {
        let start = offset + i;
        let label_start = start + "-----BEGIN ".len();
        let label_end = text[label_start..].find("-----").map(|j| label_start + j);
        if let Some(label_end) = label_end {
            if text[label_start..label_end].ends_with("PRIVATE KEY") {
                return Some(start);
            }
        }
        offset = label_start;
    }
    None
}
