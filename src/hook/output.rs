//! A hook's standard output and error: read to the end without ever blocking the hook on a
//! full pipe, kept bounded, redacted, and logged line by line.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::hook::HookKind;
use crate::redact::redact_private_keys;

/// How many bytes of each output stream are kept; the rest is read and discarded so the
/// hook never blocks on a full pipe.
pub(crate) const OUTPUT_KEPT_BYTES: usize = 16 * 1024;

/// Reads `pipe` to its end, keeping the first [`OUTPUT_KEPT_BYTES`] in `kept`.
pub(crate) async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, kept: &mut Vec<u8>) {
    let Some(mut pipe) = pipe else { return };
    let mut buffer = [0u8; 4096];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = OUTPUT_KEPT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// Logs both streams line by line, redacted, and hands back the redacted standard error.
pub(crate) fn log_output(kind: HookKind, command: &str, stdout: &[u8], stderr: &[u8]) -> String {
    let stdout = redacted_output(stdout);
    let stderr = redacted_output(stderr);
    for line in stdout.lines() {
        tracing::info!(hook = %kind, command, stream = "stdout", "{line}");
    }
    for line in stderr.lines() {
        tracing::info!(hook = %kind, command, stream = "stderr", "{line}");
    }
    stderr
}

/// A hook's captured output as text fit for the log and the audit trail: private-key PEM
/// blocks redacted (a careless `cat $CERTINEL_KEY` must not leak the key) and at most
/// [`OUTPUT_KEPT_BYTES`] long.
pub(crate) fn redacted_output(bytes: &[u8]) -> String {
    let mut text = redact_private_keys(&String::from_utf8_lossy(bytes));
    if text.len() > OUTPUT_KEPT_BYTES {
        let mut cut = OUTPUT_KEPT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [output truncated]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_is_redacted_and_capped() {
        let key = "x\n-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----\ny";
        assert_eq!(
            redacted_output(key.as_bytes()),
            "x\n[redacted private key]\ny"
        );
        let long = "é".repeat(OUTPUT_KEPT_BYTES);
        let capped = redacted_output(long.as_bytes());
        assert!(capped.len() <= OUTPUT_KEPT_BYTES + " [output truncated]".len());
        assert!(capped.ends_with(" [output truncated]"));
    }
}
