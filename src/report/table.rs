//! A fixed-width table for people: target, address, days left, notAfter, issuer, status.
//!
//! Every cell is escaped ([`Escaped`](crate::escape::Escaped)): names and reasons come from certificates and
//! servers, and a control character in one must not reach the terminal.

use crate::escape::escape;
use crate::report::{Row, Subject, rfc3339};

const HEADERS: [&str; 6] = ["TARGET", "ADDRESS", "DAYS", "NOT AFTER", "ISSUER", "STATUS"];

/// Renders `rows` as a table, one line per row, columns padded to their widest cell.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows.iter().map(row_cells).collect();
    let mut widths = HEADERS.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_line(&mut out, &HEADERS.map(str::to_owned), &widths);
    for line in &cells {
        push_line(&mut out, line, &widths);
    }
    out
}

fn row_cells(row: &Row) -> [String; 6] {
    let (target, address) = match &row.subject {
        Subject::Endpoint {
            target, ip, sni, ..
        } => {
            let target = match sni {
                Some(sni) => format!("{target} (sni {sni})"),
                None => target.clone(),
            };
            (
                target,
                ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            )
        }
        Subject::File { path } => (path.clone(), "file".to_owned()),
    };
    let days = row
        .days_left
        .map_or_else(|| "-".to_owned(), |days| format!("{days:.1}"));
    let (not_after, issuer) = match &row.chain {
        Some(chain) => (
            rfc3339(chain.earliest_not_after),
            short_name(&chain.leaf().issuer),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    let status = if row.reason == "ok" {
        row.status.label().to_owned()
    } else {
        format!("{} {}: {}", row.status.label(), row.reason, row.detail)
    };
    [target, address, days, not_after, issuer, status].map(|cell| escape(&cell))
}

/// The CN of a distinguished name when it has one, else the whole name.
fn short_name(dn: &str) -> String {
    dn.split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or(dn)
        .to_owned()
}

fn push_line(out: &mut String, cells: &[String; 6], widths: &[usize; 6]) {
    let last = cells.len() - 1;
    for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if index == last {
            out.push_str(cell);
        } else {
            out.push_str(&format!("{cell:<width$}  "));
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn control_characters_in_cells_are_escaped_so_no_row_is_forged() {
        let row = Row {
            subject: Subject::File {
                path: "certs/evil\x1b[2J.pem".to_owned(),
            },
            status: Status::Critical,
            reason: "file",
            detail: "bad\r\nOK  fake row".to_owned(),
            days_left: None,
            chain: None,
            handshake: None,
            duration_ms: None,
        };
        let table = render(&[row]);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.lines().all(|line| !line.contains(char::is_control)));
        assert!(table.contains(r"certs/evil\x1b[2J.pem"), "{table}");
        assert!(table.contains(r"bad\r\nOK  fake row"), "{table}");
    }
}
