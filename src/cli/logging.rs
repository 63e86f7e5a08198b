//! Logging setup shared by the commands: `tracing` to standard error, as text or JSON lines,
//! filtered by `RUST_LOG` (default `info`).
//!
//! Text lines escape every field value and message with [`Escaped`]: fields carry names
//! from certificates, servers and file systems, and a control character in one would act
//! on the terminal or forge a log line. JSON lines need nothing: JSON escapes them itself.

use std::io::IsTerminal;

use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};

use crate::cli::LogFormat;
use crate::escape::Escaped;

/// Installs the global subscriber; a second call (tests) leaves the first in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.fmt_fields(escaped_text_fields()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already installed: keep the first subscriber.
    drop(installed);
}

/// The field formatter of text lines: `message key=value key=value`, every value escaped.
pub fn escaped_text_fields() -> impl for<'writer> format::FormatFields<'writer> + 'static {
    format::debug_fn(write_escaped_field).delimited(" ")
}

fn write_escaped_field(
    writer: &mut Writer<'_>,
    field: &Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    // `%value` fields reach here as a Debug that prints Display, `?value` ones as Debug;
    // both are escaped the same way.
    let value = Escaped(format_args!("{value:?}"));
    match field.name() {
        "message" => write!(writer, "{value}"),
        name => write!(writer, "{}={value}", name.trim_start_matches("r#")),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn text_log_lines_escape_control_characters_in_fields_and_messages() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .fmt_fields(escaped_text_fields())
            .finish();
        let subject = "CN=evil\x1b[2J\r\nINFO forged line";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(subject = %subject, names = ?["a\x1bb"], "seen {subject}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line = text.trim_end_matches('\n');
        assert!(!line.contains(char::is_control), "{line:?}");
        assert!(
            line.contains(r"seen CN=evil\x1b[2J\r\nINFO forged line subject=CN=evil\x1b[2J\r\n"),
            "{line}"
        );
    }
}
