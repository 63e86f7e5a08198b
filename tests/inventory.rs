//! `certinel inventory` against a real Pebble: the checklist of a renewed certificate.

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::revoke::{certinel, setup, text};

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
