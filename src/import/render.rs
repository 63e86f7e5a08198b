//! The configuration an [`ImportPlan`] needs: `state_dir`, `[acme]` and one
//! `[[certificate]]` per certificate, with the notes as comments. Pure.

use std::fmt::Write;
use std::path::Path;

use crate::import::plan::{ChallengePlan, ImportPlan};

/// How every configuration an import writes begins, so a later import knows it may
/// replace the file.
pub const HEADER: &str = "# Imported from ";

/// The TOML text for `plan` with certinel's state in `state_dir` and, when given, the CA's
/// HTTPS roots in `ca_file`.
pub fn config_toml(plan: &ImportPlan, state_dir: &Path, ca_file: Option<&Path>) -> String {
    let mut out = String::new();
    // Writing to a String never fails, so the results of `writeln!` are ignored below.
    let _ = writeln!(
        out,
        "{HEADER}{} ({}) by `certinel import {}`.",
        plan.tool.as_str(),
        plan.source.display(),
        plan.tool.as_str()
    );
    for note in &plan.notes {
        let _ = writeln!(out, "# CHECK: {note}");
    }
    for (name, error) in &plan.skipped {
        let _ = writeln!(out, "# NOT IMPORTED: {name}: {error}");
    }
    let _ = writeln!(
        out,
        "state_dir = {}",
        quote(&state_dir.display().to_string())
    );
    let _ = writeln!(out, "\n[acme]");
    let _ = writeln!(out, "directory = {}", quote(&plan.directory));
    if let Some(ca_file) = ca_file {
        let _ = writeln!(out, "ca_file = {}", quote(&ca_file.display().to_string()));
    }
    if !plan.contact.is_empty() {
        let _ = writeln!(out, "contact = {}", list(&plan.contact));
    }
    for certificate in &plan.certificates {
        let _ = writeln!(
            out,
            "\n# From {}; expires {}.",
            certificate.described_by.display(),
            certificate
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        for note in &certificate.notes {
            let _ = writeln!(out, "# CHECK: {note}");
        }
        let _ = writeln!(out, "[[certificate]]");
        let _ = writeln!(out, "name = {}", quote(&certificate.name));
        let _ = writeln!(out, "dns_names = {}", list(&certificate.dns_names));
        let _ = writeln!(out, "key = {}", quote(certificate.key.as_str()));
        let challenge = match &certificate.challenge {
            ChallengePlan::HttpListen(listen) => {
                format!("{{ type = \"http-01\", listen = {} }}", quote(listen))
            }
            ChallengePlan::HttpWebroot(root) => {
                format!("{{ type = \"http-01\", webroot = {} }}", quote(root))
            }
            ChallengePlan::Dns01Exec(command) => format!(
                "{{ type = \"dns-01\", provider = \"exec\", command = {} }}",
                quote(command)
            ),
        };
        let _ = writeln!(out, "challenge = {challenge}");
        if let Some(days) = certificate.renew_before_days {
            let _ = writeln!(out, "renew_before = \"{days}d\"");
        }
        if !certificate.deploy.is_empty() {
            let _ = writeln!(out, "deploy = {}", list(&certificate.deploy));
        }
    }
    out
}

/// A TOML basic string with every character escaped as TOML requires.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quote(item)).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests;
