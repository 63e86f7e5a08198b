//! `certinel config check FILE`: validate a configuration and summarise it, with the
//! files of its `[[endpoint_source]]` tables.

use std::path::Path;

use crate::cli::ExitCode;
use crate::cluster;
use crate::config;
use crate::config::model::ClusterConfig;
use crate::service::endpoint_sources::{EndpointSources, Settings};

/// Validates `file` and prints what it configures; a bad file is an error (exit code 2),
/// and so is an endpoint source file that `certinel run` would reject. With `[cluster]`,
/// the key-encryption keys are loaded too (their mode is checked), but etcd is not
/// contacted.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(file)?;
    println!(
        "{}: OK ({} endpoints, {} file sources, exporter on {})",
        file.display(),
        config.endpoints.len(),
        config.files.len(),
        config.exporter.listen
    );
    if let Some(cluster) = &config.cluster {
        let keyring = cluster::keyring(cluster)?;
        println!("{}", cluster_summary(cluster, &keyring.current_id()));
    }
    if config.endpoint_sources.is_empty() {
        return Ok(ExitCode(0));
    }
    let mut sources = EndpointSources::default();
    sources.refresh(&Settings::of(&config));
    let mut rejected = 0;
    for (path, targets, error) in sources.files() {
        match error {
            None => println!("{}: {targets} targets", path.display()),
            Some(error) => {
                rejected += 1;
                println!("{}: rejected: {error}", path.display());
            }
        }
    }
    Ok(ExitCode(if rejected == 0 { 0 } else { 2 }))
}

/// One line about `[cluster]`: who this replica is, where etcd is and how it authenticates.
/// Never the password.
fn cluster_summary(cluster: &ClusterConfig, key_id: &str) -> String {
    let mut authentication = Vec::new();
    if cluster.client_cert.is_some() {
        authentication.push("client certificate".to_owned());
    }
    if let Some(username) = &cluster.username {
        authentication.push(format!("user {username}"));
    }
    if authentication.is_empty() {
        authentication.push("no authentication".to_owned());
    }
    let previous = match cluster.key_encryption_key_previous.len() {
        0 => String::new(),
        count => format!(" (+{count} previous)"),
    };
    format!(
        "cluster: member {} via etcd {} ({}), prefix {}, lease_ttl {}, key-encryption key {} \
         ({}){}",
        cluster.member,
        cluster.etcd.join(", "),
        authentication.join(", "),
        cluster.prefix,
        config::format_duration(cluster.lease_ttl),
        key_id,
        cluster.key_encryption_key_file.display(),
        previous
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::model::ClusterPassword;

    #[test]
    fn the_cluster_summary_names_member_endpoints_and_authentication_but_not_the_password() {
        let cluster = ClusterConfig {
            etcd: vec!["https://a:2379".into(), "https://b:2379".into()],
            ca_file: None,
            client_cert: Some(PathBuf::from("/etc/certinel/c.pem")),
            client_key: Some(PathBuf::from("/etc/certinel/k.pem")),
            username: Some("certinel".into()),
            password: Some(ClusterPassword("S3CR3T".into())),
            prefix: "/certinel/".into(),
            member: "web-1".into(),
            lease_ttl: Duration::from_secs(15),
            audit_retention: Duration::from_secs(90 * 86_400),
            key_encryption_key_file: PathBuf::from("/etc/certinel/cluster.kek"),
            key_encryption_key_previous: vec![PathBuf::from("/etc/certinel/old.kek")],
        };
        assert_eq!(
            cluster_summary(&cluster, "0123456789abcdef"),
            "cluster: member web-1 via etcd https://a:2379, https://b:2379 (client certificate, \
             user certinel), prefix /certinel/, lease_ttl 15s, key-encryption key \
             0123456789abcdef (/etc/certinel/cluster.kek) (+1 previous)"
        );
    }
}
