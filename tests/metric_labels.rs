//! A certificate with 2,000 SANs, read from a file and served live, scraped from a real
//! `certinel run`: every label value stays under the cap (so Prometheus'
//! `label_value_length_limit` never drops the scrape) and promtool accepts the page.

use std::net::{IpAddr, Ipv4Addr};

use crate::common::pki::{Ca, LeafSpec, Validity, write_pem};
use crate::common::service::{Service, promtool_check};
use crate::common::tls_server::{ServerOptions, bind, spawn_tls};

const NAMES: usize = 2000;

/// Every label value of every sample line in `body`, with the line it is on.
fn label_values(body: &str) -> Vec<(&str, String)> {
    let mut values = Vec::new();
    for line in body.lines().filter(|line| !line.starts_with('#')) {
        let mut rest = line;
        while let Some(start) = rest.find("=\"") {
            let after = &rest[start + 2..];
            let mut end = 0;
            let mut escaped = false;
            for (index, character) in after.char_indices() {
                match character {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = index;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            values.push((line, after[..end].to_owned()));
            rest = &after[end + 1..];
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sans_stay_under_the_label_cap_and_pass_promtool() {
    let names: Vec<String> = (0..NAMES)
        .map(|i| format!("host-{i:04}.example.com"))
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let root = Ca::root("Labels Root", Validity::days(-10, 3650));
    let leaf = root.leaf(&LeafSpec::new(&name_refs));
    let dir = tempfile::tempdir().unwrap();
    let file = write_pem(dir.path(), "many.pem", &leaf.pem);
    let acceptor = ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key()).acceptor();
    let server = spawn_tls(bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).await, acceptor);
    let config = write_pem(
        dir.path(),
        "certinel.toml",
        &format!(
            "[[endpoint]]\ntarget = \"127.0.0.1:{}\"\ninterval = \"1s\"\n\n\
             [[file]]\npath = \"{}\"\ninterval = \"1s\"\n",
            server.addr.port(),
            file.display()
        ),
    );
    let service = Service::start(Some(&config)).await;
    let body = service
        .metrics_until("both info samples", |body| {
            body.contains("certinel_file_cert_info{")
                && body.contains("certinel_endpoint_cert_info{")
        })
        .await;
    let values = label_values(&body);
    let longest = values
        .iter()
        .map(|(_, value)| value.len())
        .max()
        .unwrap_or(0);
    assert!(
        longest <= certinel::metrics::label_values::MAX_LABEL_VALUE_BYTES,
        "a label value of {longest} bytes"
    );
    let summaries = values
        .iter()
        .filter(|(_, value)| value.ends_with(&format!(",+{} more", NAMES - 20)))
        .count();
    assert!(
        summaries >= 2,
        "dns_names summarised for the file and the endpoint:\n{body}"
    );
    let (code, output) = promtool_check(&body);
    assert_eq!(code, 0, "promtool check metrics:\n{output}");
}
