//! `certinel config check FILE`: validate a configuration and summarise it.

use std::path::Path;

use crate::cli::ExitCode;
use crate::config;
use crate::config::model::ClusterConfig;

/// Validates `file` and prints what it configures; a bad file is an error (exit code 2).
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
        println!("{}", cluster_summary(cluster));
    }
    Ok(ExitCode(0))
}

/// One line about `[cluster]`: who this replica is, where etcd is and how it authenticates.
/// Never the password.
fn cluster_summary(cluster: &ClusterConfig) -> String {
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
        "cluster: member {} via etcd {} ({}), prefix {}, lease_ttl {}, key-encryption key {}{}",
        cluster.member,
        cluster.etcd.join(", "),
        authentication.join(", "),
        cluster.prefix,
        config::format_duration(cluster.lease_ttl),
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
            key_encryption_key_file: PathBuf::from("/etc/certinel/cluster.kek"),
            key_encryption_key_previous: vec![PathBuf::from("/etc/certinel/old.kek")],
        };
        assert_eq!(
            cluster_summary(&cluster),
            "cluster: member web-1 via etcd https://a:2379, https://b:2379 (client certificate, \
             user certinel), prefix /certinel/, lease_ttl 15s, key-encryption key \
             /etc/certinel/cluster.kek (+1 previous)"
        );
    }
}
