//! Tests for certificate files: expanding paths, directories and globs, and reading PEM
//! and DER files from tests/fixtures/certs/.

use std::path::{Path, PathBuf};

use super::*;
use crate::scan::testing::{expected, fixture_path};

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Expands `pattern` under tests/fixtures/certs/ and checks the paths found, in order.
fn check_expands(pattern: &str, expected_files: &[&str]) {
    let found = expand(fixture_path(pattern).to_str().unwrap()).unwrap();
    let expected: Vec<PathBuf> = expected_files
        .iter()
        .map(|file| fixture_path(file))
        .collect();
    assert_eq!(found, expected, "{pattern:?}");
}

#[test]
fn existing_file_expands_to_itself() {
    check_expands("valid.pem", &["valid.pem"]);
}

#[test]
fn existing_file_expands_to_itself_whatever_its_extension() {
    check_expands("expected.toml", &["expected.toml"]);
}

#[test]
fn directory_expands_to_its_certificate_files_sorted() {
    check_expands(
        "",
        &[
            "expired.pem",
            "garbage.pem",
            "intermediate.pem",
            "key-and-cert.pem",
            "leaf-only.pem",
            "not-yet-valid.pem",
            "root.pem",
            "self-signed.pem",
            "short-intermediate.pem",
            "untrusted-root.pem",
            "valid-leaf.cer",
            "valid.pem",
            "wrong-order.pem",
        ],
    );
}

#[test]
fn directory_is_not_recursive_and_matches_extensions_without_case() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["b.PEM", "a.crt", "c.cert", "d.cer", "notes.txt", "key"] {
        std::fs::write(dir.path().join(file), "x").unwrap();
    }
    std::fs::create_dir(dir.path().join("nested.pem")).unwrap();
    std::fs::write(dir.path().join("nested.pem").join("e.pem"), "x").unwrap();
    let found = expand(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(names(&found), ["a.crt", "b.PEM", "c.cert", "d.cer"]);
}

#[test]
fn glob_expands_to_matching_files_sorted() {
    check_expands(
        "*-*.pem",
        &[
            "key-and-cert.pem",
            "leaf-only.pem",
            "not-yet-valid.pem",
            "self-signed.pem",
            "short-intermediate.pem",
            "untrusted-root.pem",
            "wrong-order.pem",
        ],
    );
}

#[test]
fn missing_path_is_no_match_naming_the_pattern() {
    let pattern = fixture_path("nothing-here.pem");
    let pattern = pattern.to_str().unwrap();
    let error = expand(pattern).unwrap_err();
    assert_eq!(
        error,
        FileError::NoMatch {
            pattern: pattern.to_owned()
        }
    );
}

#[test]
fn glob_without_matches_and_directory_without_certificates_are_no_match() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    assert!(matches!(
        expand(dir.path().to_str().unwrap()),
        Err(FileError::NoMatch { .. })
    ));
    let glob = dir.path().join("*.pem");
    assert!(matches!(
        expand(glob.to_str().unwrap()),
        Err(FileError::NoMatch { .. })
    ));
}

#[test]
fn invalid_glob_is_no_match() {
    assert!(matches!(
        expand("/nonexistent/[unclosed"),
        Err(FileError::NoMatch { .. })
    ));
}

#[test]
fn pem_der_and_key_plus_pem_files_yield_their_certificates_leaf_first() {
    // (file, what it holds, how many certificates are read from it)
    let cases = [
        ("valid.pem", "a PEM chain", 2),
        ("valid-leaf.cer", "one DER certificate", 1),
        ("key-and-cert.pem", "a key block, then the PEM chain", 2),
    ];
    for (file, holds, certificates) in cases {
        let report = inspect_file(&fixture_path(file));
        assert_eq!(report.path, fixture_path(file), "{holds}");
        let chain = report.outcome.unwrap();
        assert_eq!(chain.entries.len(), certificates, "{holds}");
        let leaf = chain.leaf();
        assert_eq!(leaf.subject, "CN=valid.test, O=Certinel Test", "{holds}");
        assert_eq!(leaf.dns_names, ["valid.test", "www.valid.test"], "{holds}");
    }
}

#[test]
fn every_fixture_file_leaf_not_after_matches_expected_toml() {
    for (file, expectation) in expected().files {
        let chain = inspect_file(&fixture_path(&file)).outcome.unwrap();
        assert_eq!(
            chain.leaf().not_after.unix_timestamp(),
            expectation.leaf_not_after,
            "{file}"
        );
    }
}

#[test]
fn garbage_file_is_a_parse_error_naming_the_file() {
    let path = fixture_path("garbage.pem");
    let error = inspect_file(&path).outcome.unwrap_err();
    assert!(matches!(&error, FileError::Parse { path: p, .. } if p == &path));
    let message = error.to_string();
    assert!(message.contains("garbage.pem"), "{message}");
    assert!(message.contains("no CERTIFICATE block found"), "{message}");
}

#[test]
fn binary_garbage_is_a_parse_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.der");
    std::fs::write(&path, [0x30, 0x03, 0x02, 0x01, 0x00, 0xff]).unwrap();
    assert!(matches!(
        inspect_file(&path).outcome,
        Err(FileError::Parse { .. })
    ));
}

#[test]
fn key_only_file_error_does_not_contain_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(&path, &key).unwrap();
    let error = inspect_file(&path).outcome.unwrap_err();
    let message = format!("{error} {error:?}");
    assert!(message.contains("no CERTIFICATE block found"), "{message}");
    let key_body = key.lines().nth(1).unwrap();
    assert!(!message.contains(key_body), "{message}");
}

#[test]
fn missing_file_is_an_io_error() {
    let path = Path::new("/nonexistent/certinel/cert.pem");
    let error = inspect_file(path).outcome.unwrap_err();
    assert!(matches!(error, FileError::Io { .. }));
    assert!(error.to_string().contains("/nonexistent/certinel/cert.pem"));
}

#[test]
fn a_file_over_the_cap_is_refused_without_being_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.pem");
    // Sparse: the size is real, the disk blocks are not.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_FILE_BYTES + 1).unwrap();
    let error = inspect_file(&path).outcome.unwrap_err();
    assert!(
        matches!(&error, FileError::TooLarge { path: p, limit } if p == &path && *limit == MAX_FILE_BYTES),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("too large for a certificate file"),
        "{error}"
    );
}
