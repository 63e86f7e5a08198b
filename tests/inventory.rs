//! `certinel inventory` against a real Pebble: the checklist of a renewed certificate.

use std::io::Write;
use std::net::Ipv4Addr;

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::pki::{Leaf, LeafSpec, Validity};
use crate::common::tls_server::{ServerOptions, bind, spawn_tls};
use crate::revoke::{certinel, issued, setup, text};

#[tokio::test]
async fn inventory_json_reports_overlap_storage_and_last_rotation_after_two_issuances() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = setup(&pebble, "web");
    for args in [&["renew", "web"][..], &["renew", "web", "--force"][..]] {
        let output = certinel(&setup, args).await;
        assert!(output.status.success(), "{}", text(&output));
    }
    let output = certinel(&setup, &["inventory", "--output", "json"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let web = &json["managed"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["automation"]["challenge"], "http-01");
    assert!(
        web["stored_at"]
            .as_str()
            .unwrap()
            .ends_with("certs/web/current")
    );
    assert!(web["overlap"].as_i64().unwrap() > 0, "{web}");
    assert!(web["last_rotation"].is_string(), "{web}");
    assert!(web["issuer"].as_str().unwrap().contains("Pebble"), "{web}");
    assert_eq!(json["monitored_not_managed"], serde_json::json!([]));

    let table = certinel(&setup, &["inventory"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("certificate web"));
}

#[tokio::test]
async fn unmanaged_endpoint_is_listed_with_days_left_and_the_managed_file_is_not() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = issued(&pebble, "web").await;
    let legacy = Leaf::self_signed(
        &LeafSpec::new(&["legacy.certinel.test"]).validity(Validity::current_for_days(12)),
    );
    let server = spawn_tls(
        bind(Ipv4Addr::LOCALHOST.into()).await,
        ServerOptions::new(vec![legacy.cert.clone()], legacy.key.clone_key()).acceptor(),
    );
    let managed_file = setup.state_dir.join("certs/web/current/cert.pem");
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&setup.config)
        .unwrap();
    write!(
        config,
        "\n[[endpoint]]\ntarget = \"{}\"\nsni = \"legacy.certinel.test\"\n\n[[file]]\npath = {:?}\n",
        server.addr,
        managed_file.display().to_string()
    )
    .unwrap();

    let output = certinel(&setup, &["inventory", "--output", "json"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let unmanaged = json["monitored_not_managed"].as_array().unwrap();
    assert_eq!(unmanaged.len(), 1, "{json}");
    assert_eq!(unmanaged[0]["kind"], "endpoint");
    assert_eq!(unmanaged[0]["target"], server.addr.to_string());
    let days = unmanaged[0]["days_left"].as_i64().unwrap();
    assert!((10..=12).contains(&days), "{days}");
}
