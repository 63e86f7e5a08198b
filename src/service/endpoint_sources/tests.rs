//! Endpoint source files on disk: last good lists kept per file, removals, re-parses.

use std::time::Duration;

use super::*;

fn settings(dir: &Path) -> Settings {
    Settings {
        sources: vec![EndpointSource {
            files: vec![
                dir.join("*.json").display().to_string(),
                dir.join("*.yml").display().to_string(),
            ],
            interval: Duration::from_secs(60),
            probe: crate::config::default_config().exporter.modules["default"].clone(),
        }],
        modules: BTreeMap::new(),
    }
}

/// Writes `text` to the file `name` in `dir`.
fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn targets(sources: &EndpointSources) -> Vec<String> {
    sources
        .merge(&[])
        .iter()
        .map(|endpoint| endpoint.target.to_string())
        .collect()
}

fn status(sources: &EndpointSources) -> Vec<(String, bool, usize)> {
    sources
        .statuses()
        .into_iter()
        .map(|status| {
            let name = Path::new(&status.file)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, status.successful, status.targets)
        })
        .collect()
}

#[test]
fn a_broken_file_keeps_its_last_good_targets_while_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    write(dir.path(), "a.json", r#"[{"targets": ["a.test:443"]}]"#);
    write(dir.path(), "b.yml", "- targets: ['b.test:443']\n");
    let mut sources = EndpointSources::default();
    assert!(sources.refresh(&settings));
    assert_eq!(targets(&sources), ["a.test:443", "b.test:443"]);
    assert!(!sources.refresh(&settings), "nothing changed on disk");

    write(
        dir.path(),
        "a.json",
        r#"[{"targets": ["a.test:443", "c.test:443"]}]"#,
    );
    write(dir.path(), "b.yml", "- targets: [b.test:443\n");
    assert!(sources.refresh(&settings));
    assert_eq!(
        targets(&sources),
        ["a.test:443", "c.test:443", "b.test:443"]
    );
    assert_eq!(
        status(&sources),
        [
            ("a.json".to_owned(), true, 2),
            ("b.yml".to_owned(), false, 1)
        ]
    );

    write(dir.path(), "b.yml", "- targets: ['d.test:443']\n");
    assert!(sources.refresh(&settings));
    assert_eq!(
        targets(&sources),
        ["a.test:443", "c.test:443", "d.test:443"]
    );
    assert_eq!(status(&sources)[1], ("b.yml".to_owned(), true, 1));
}

#[test]
fn a_file_broken_from_the_start_has_no_targets_and_a_failed_status() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", "[{");
    let mut sources = EndpointSources::default();
    assert!(!sources.refresh(&settings(dir.path())));
    assert!(targets(&sources).is_empty());
    assert_eq!(status(&sources), [("a.json".to_owned(), false, 0)]);
}

#[test]
fn a_removed_file_takes_its_targets_and_its_status_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    write(dir.path(), "a.json", r#"[{"targets": ["a.test:443"]}]"#);
    let mut sources = EndpointSources::default();
    assert!(sources.refresh(&settings));
    std::fs::remove_file(dir.path().join("a.json")).unwrap();
    assert!(sources.refresh(&settings));
    assert!(targets(&sources).is_empty());
    assert!(sources.statuses().is_empty());
}

#[test]
fn changed_settings_rebuild_every_files_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    write(dir.path(), "a.json", r#"[{"targets": ["a.test:443"]}]"#);
    let mut sources = EndpointSources::default();
    assert!(sources.refresh(&settings));
    settings.sources[0].interval = Duration::from_secs(5);
    assert!(sources.refresh(&settings));
    assert_eq!(sources.merge(&[])[0].interval, Duration::from_secs(5));
}

#[test]
fn files_of_other_extensions_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.sources[0].files = vec![dir.path().join("*").display().to_string()];
    write(dir.path(), "notes.txt", "a.test:443");
    let mut sources = EndpointSources::default();
    sources.refresh(&settings);
    assert_eq!(status(&sources), [("notes.txt".to_owned(), false, 0)]);
}

#[test]
fn a_hundred_thousand_targets_load_from_a_file_in_well_under_three_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let groups: Vec<String> = (0..100)
        .map(|group| {
            let targets: Vec<String> = (0..1000)
                .map(|i| format!("\"10.0.{group}.{}:{}\"", i % 250, 443 + i / 250))
                .collect();
            format!(
                "{{\"targets\": [{}], \"labels\": {{\"team\": \"t{group}\"}}}}",
                targets.join(",")
            )
        })
        .collect();
    write(dir.path(), "big.json", &format!("[{}]", groups.join(",")));
    let settings = settings(dir.path());
    let config = crate::config::default_config();
    let started = std::time::Instant::now();
    let mut sources = EndpointSources::default();
    assert!(sources.refresh(&settings));
    let scheduled = scheduled(&config, &sources);
    assert!(!sources.refresh(&settings), "unchanged");
    let elapsed = started.elapsed();
    assert_eq!(scheduled.endpoints.len(), 100_000);
    // A debug build; release is several times faster.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}
