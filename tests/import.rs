//! `certinel import certbot|lego` against Debian's real certbot and lego and a real Pebble:
//! the other client issues, certinel adopts the certificate as v0001 and the account, then
//! `certinel status` shows the certificate and `certinel renew --force` renews it into v0002
//! with the adopted account (Pebble never registers another one). Everything on loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use certinel::store::version_check::{certificate_blocks, leaf_facts};

use crate::acme::serve_webroot;
use crate::common::pebble::Pebble;

const CERTBOT: &str = "/usr/bin/certbot";
const LEGO: &str = "/usr/bin/lego";

/// A scratch directory with the other client's files, certinel's state and configuration.
struct Migration {
    dir: tempfile::TempDir,
}

impl Migration {
    fn new() -> Migration {
        for program in [CERTBOT, LEGO] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run scripts/deps (apt-get install certbot lego)"
            );
        }
        Migration {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    fn config(&self) -> PathBuf {
        self.path("certinel.toml")
    }

    /// Runs Debian's certbot against `pebble` with its files under this directory, trusting
    /// Pebble's API root, registering without e-mail and asking nothing.
    async fn certbot(&self, pebble: &Pebble, args: &[&str]) {
        let dirs = ["--config-dir", "--work-dir", "--logs-dir"];
        let mut command = tokio::process::Command::new(CERTBOT);
        command.args(["certonly", "-n", "--agree-tos", "--no-eff-email"]);
        command.args(["--register-unsafely-without-email", "--server"]);
        command.arg(&pebble.directory_url);
        for (flag, sub) in dirs.iter().zip(["letsencrypt", "work", "logs"]) {
            command.arg(flag).arg(self.path(sub));
        }
        let output = command
            .args(args)
            .env("REQUESTS_CA_BUNDLE", &pebble.api_root)
            .output()
            .await
            .expect("run certbot");
        assert!(output.status.success(), "certbot failed: {}", text(&output));
    }

    /// Runs the real certinel binary.
    async fn certinel(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
            .args(args)
            .env("RUST_LOG", "info")
            .output()
            .await
            .expect("run certinel")
    }

    /// `certinel import TOOL DIR` with this state directory and configuration file.
    async fn import(&self, pebble: &Pebble, tool: &str, dir: &Path, extra: &[&str]) -> Output {
        let state_dir = self.state_dir();
        let config = self.config();
        let mut args = vec![
            "import",
            tool,
            dir.to_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--ca-file",
            pebble.api_root.to_str().unwrap(),
            "--write",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.certinel(&args).await
    }

    /// `certinel status --output json` for `name`.
    async fn status(&self, name: &str) -> serde_json::Value {
        let config = self.config();
        let output = self
            .certinel(&["status", "-o", "json", "-c", config.to_str().unwrap()])
            .await;
        assert!(output.status.success(), "{}", text(&output));
        let all: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .find(|status| status["name"] == name)
            .unwrap_or_else(|| panic!("no status for {name}: {all}"))
            .clone()
    }

    /// `certinel renew NAME --force`, which must succeed.
    async fn renew(&self, name: &str) {
        let config = self.config();
        let output = self
            .certinel(&["renew", name, "--force", "-c", config.to_str().unwrap()])
            .await;
        assert!(output.status.success(), "renew failed: {}", text(&output));
    }

    /// The account URL in certinel's (only) credentials file.
    fn stored_account_url(&self) -> String {
        let files: Vec<_> = std::fs::read_dir(self.state_dir().join("acme"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        let [file] = &files[..] else {
            panic!("one credentials file and no saved rollover key: {files:?}");
        };
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        stored["credentials"]["id"].as_str().unwrap().to_owned()
    }

    /// Checks v0001 of `name`: a copy of the certificates of `fullchain` with a 0600
    /// key, current, and shown by `certinel status` with the certificate's own expiry.
    async fn assert_adopted(&self, name: &str, fullchain: &str) {
        let version = self.state_dir().join("certs").join(name).join("v0001");
        assert_eq!(
            std::fs::read_to_string(version.join("fullchain.pem")).unwrap(),
            certificate_blocks(fullchain).concat()
        );
        let mode = std::fs::metadata(version.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let status = self.status(name).await;
        assert_eq!(status["version"], "v0001", "{status}");
        let not_after = leaf_facts(fullchain).unwrap().not_after;
        let expected = not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(status["not_after"], expected.as_str(), "{status}");
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// How many accounts Pebble has registered so far (it logs each new one).
fn accounts_registered(pebble: &Pebble) -> usize {
    pebble.log().matches("accounts in memory").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn certbot_standalone_lineage_is_adopted_linked_and_renewed_with_certbots_rsa_account() {
    let pebble = Pebble::start(Default::default()).await;
    let migration = Migration::new();
    let deployed = migration.path("deployed");
    let port = pebble.http_port.to_string();
    let hook = format!("touch {}", deployed.display());
    migration
        .certbot(
            &pebble,
            &[
                "--standalone",
                "--http-01-address",
                "127.0.0.1",
                "--http-01-port",
                &port,
                "--key-type",
                "ecdsa",
                "--cert-name",
                "shop",
                "-d",
                "shop.certinel.test",
                "-d",
                "www.shop.certinel.test",
                "--deploy-hook",
                &hook,
            ],
        )
        .await;
    assert_eq!(accounts_registered(&pebble), 1, "certbot's account");
    let letsencrypt = migration.path("letsencrypt");
    let live = letsencrypt.join("live/shop");
    let fullchain = std::fs::read_to_string(live.join("fullchain.pem")).unwrap();
    let regr: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            glob::glob(&format!(
                "{}/accounts/*/*/*/regr.json",
                letsencrypt.display()
            ))
            .unwrap()
            .next()
            .unwrap()
            .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();

    let output = migration
        .import(&pebble, "certbot", &letsencrypt, &["--link-live"])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shop: adopted as v0001"), "{stderr}");
    assert!(stderr.contains("RSA key rolled over"), "{stderr}");
    assert_eq!(
        migration.stored_account_url(),
        regr["uri"].as_str().unwrap()
    );
    migration.assert_adopted("shop", &fullchain).await;
    let config = std::fs::read_to_string(migration.config()).unwrap();
    assert!(
        config.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "{config}"
    );
    let current = migration.state_dir().join("certs/shop/current");
    assert_eq!(
        std::fs::read_link(live.join("privkey.pem")).unwrap(),
        current.join("key.pem")
    );

    migration.renew("shop").await;
    assert_eq!(migration.status("shop").await["version"], "v0002");
    assert!(
        deployed.exists(),
        "certbot's deploy hook ran as a deploy command"
    );
    assert_eq!(
        std::fs::read_to_string(live.join("cert.pem")).unwrap(),
        std::fs::read_to_string(current.join("cert.pem")).unwrap(),
        "certbot's live path serves certinel's renewal"
    );
    assert_eq!(
        accounts_registered(&pebble),
        1,
        "no new account: {}",
        pebble.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certbot_webroot_lineage_is_adopted_and_renewed_through_the_same_webroot() {
    let pebble = Pebble::start(Default::default()).await;
    let migration = Migration::new();
    let webroot = migration.path("www");
    std::fs::create_dir(&webroot).unwrap();
    let served = serve_webroot(pebble.http_addr(), webroot.clone()).await;
    migration
        .certbot(
            &pebble,
            &[
                "--webroot",
                "-w",
                webroot.to_str().unwrap(),
                "--key-type",
                "rsa",
                "--cert-name",
                "blog",
                "-d",
                "blog.certinel.test",
            ],
        )
        .await;
    assert!(
        !served.lock().unwrap().is_empty(),
        "certbot validated through the webroot"
    );
    let letsencrypt = migration.path("letsencrypt");
    let fullchain = std::fs::read_to_string(letsencrypt.join("live/blog/fullchain.pem")).unwrap();

    let output = migration
        .import(&pebble, "certbot", &letsencrypt, &[])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    migration.assert_adopted("blog", &fullchain).await;
    let config = std::fs::read_to_string(migration.config()).unwrap();
    assert!(config.contains("key = \"rsa-2048\""), "{config}");
    assert!(
        config.contains(&format!("webroot = \"{}\"", webroot.display())),
        "{config}"
    );

    migration.renew("blog").await;
    assert_eq!(migration.status("blog").await["version"], "v0002");
    // Whether certinel's order needed the webroot again is Pebble's choice: it reuses half
    // of the valid authorizations of the same account (PEBBLE_AUTHZREUSE), and certbot's
    // is the same account.
    assert_eq!(accounts_registered(&pebble), 1, "no new account");
}

#[tokio::test(flavor = "multi_thread")]
async fn lego_certificate_and_p256_account_are_adopted_once_and_renewed_with_legos_account() {
    let pebble = Pebble::start(Default::default()).await;
    let migration = Migration::new();
    let lego_dir = migration.path(".lego");
    let listen = pebble.http_addr().to_string();
    let output = tokio::process::Command::new(LEGO)
        .args(["--accept-tos", "--email", "ops@certinel.test", "--server"])
        .arg(&pebble.directory_url)
        .arg("--path")
        .arg(&lego_dir)
        .args(["--http", "--http.port", &listen])
        .args(["-d", "api.certinel.test", "-d", "api2.certinel.test", "run"])
        .env("LEGO_CA_CERTIFICATES", &pebble.api_root)
        .output()
        .await
        .expect("run lego");
    assert!(output.status.success(), "lego failed: {}", text(&output));
    assert_eq!(accounts_registered(&pebble), 1, "lego's account");
    let fullchain =
        std::fs::read_to_string(lego_dir.join("certificates/api.certinel.test.crt")).unwrap();
    let account: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lego_dir.join(format!(
            "accounts/{}/ops@certinel.test/account.json",
            listen_dir(&pebble.directory_url)
        )))
        .unwrap(),
    )
    .unwrap();

    let extra = ["--server", &pebble.directory_url, "--http-listen", &listen];
    std::fs::write(migration.config(), "# my own configuration\n").unwrap();
    let refused = migration.import(&pebble, "lego", &lego_dir, &extra).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("was not written by certinel import"),
        "{}",
        text(&refused)
    );
    assert!(
        !migration.state_dir().exists(),
        "refused before adopting anything"
    );
    std::fs::remove_file(migration.config()).unwrap();
    let output = migration.import(&pebble, "lego", &lego_dir, &extra).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        migration.stored_account_url(),
        account["registration"]["uri"].as_str().unwrap()
    );
    migration
        .assert_adopted("api.certinel.test", &fullchain)
        .await;
    let again = migration.import(&pebble, "lego", &lego_dir, &extra).await;
    assert!(again.status.success(), "{}", text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already adopted (v0001 is current)"),
        "{stderr}"
    );
    assert!(stderr.contains(": already adopted\n"), "{stderr}");

    migration.renew("api.certinel.test").await;
    let status = migration.status("api.certinel.test").await;
    assert_eq!(status["version"], "v0002", "{status}");
    let after_renewal = migration.import(&pebble, "lego", &lego_dir, &extra).await;
    let stderr = String::from_utf8_lossy(&after_renewal.stderr);
    assert!(
        stderr.contains("already adopted (v0002 is current)"),
        "lego's certificate was imported before, certinel renewed it since: {stderr}"
    );
    assert_eq!(
        status["dns_names"],
        serde_json::json!(["api.certinel.test", "api2.certinel.test"])
    );
    assert_eq!(accounts_registered(&pebble), 1, "no new account");
}

/// lego's account directory name for a directory URL: host and port, `:` as `_`.
fn listen_dir(directory_url: &str) -> String {
    certinel::import::lego::server_dir_name(directory_url)
}
