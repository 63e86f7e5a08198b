//! Writes the certificate fixtures under tests/fixtures/certs/ (run it, then commit them).
//!
//! `cargo run --example mint-fixtures` regenerates every file: keys are fresh each run,
//! but names, serials and validity dates are fixed here, so `expected.toml` (also written
//! here) stays exact to the second. Tests read the files; they never run this program.

use std::error::Error;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// The moment at which the reasons in `expected.toml` hold.
const NOW: OffsetDateTime = datetime!(2026-06-01 00:00:00 UTC);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One minted certificate with the key that signs for it.
struct Minted {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: Vec<u8>,
}

impl Minted {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// One line of `expected.toml`.
struct Expectation {
    file: &'static str,
    leaf_not_after: OffsetDateTime,
    earliest_not_after: OffsetDateTime,
    server_name: Option<&'static str>,
    reason: &'static str,
    verified: bool,
}

fn main() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs");
    std::fs::create_dir_all(&dir)?;

    let root = ca(
        "Certinel Test Root",
        0x01,
        datetime!(2020-01-01 00:00:00 UTC),
        datetime!(2100-01-01 00:00:00 UTC),
        None,
    )?;
    let intermediate = ca(
        "Certinel Test Intermediate",
        0x02,
        datetime!(2020-01-01 00:00:00 UTC),
        datetime!(2099-06-01 00:00:00 UTC),
        Some(&root),
    )?;
    let short_intermediate = ca(
        "Certinel Short Intermediate",
        0x03,
        datetime!(2020-01-01 00:00:00 UTC),
        datetime!(2026-01-01 00:00:00 UTC),
        Some(&root),
    )?;
    let other_root = ca(
        "Certinel Other Root",
        0x04,
        datetime!(2020-01-01 00:00:00 UTC),
        datetime!(2100-01-01 00:00:00 UTC),
        None,
    )?;

    let valid = leaf(
        &["valid.test", "www.valid.test", "127.0.0.1"],
        0x1001,
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2099-01-01 00:00:00 UTC),
        KeyPair::generate()?,
        Some(&intermediate),
    )?;
    let expired = leaf(
        &["expired.test"],
        0x1002,
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2026-03-01 12:00:00 UTC),
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
        Some(&intermediate),
    )?;
    let not_yet_valid = leaf(
        &["future.test"],
        0x1003,
        datetime!(2027-01-01 00:00:00 UTC),
        datetime!(2028-01-01 00:00:00 UTC),
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?,
        Some(&intermediate),
    )?;
    let self_signed = leaf(
        &["self-signed.test"],
        0x1004,
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2030-01-01 00:00:00 UTC),
        KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
        None,
    )?;
    let outlived = leaf(
        &["short-intermediate.test"],
        0x1005,
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2099-01-01 00:00:00 UTC),
        KeyPair::generate()?,
        Some(&short_intermediate),
    )?;
    let untrusted = leaf(
        &["untrusted.test"],
        0x1006,
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2099-01-01 00:00:00 UTC),
        KeyPair::generate()?,
        Some(&other_root),
    )?;

    write(&dir, "root.pem", &root.pem)?;
    write(&dir, "intermediate.pem", &intermediate.pem)?;
    write(
        &dir,
        "valid.pem",
        &[&valid, &intermediate].map(|c| c.pem.as_str()).concat(),
    )?;
    write(
        &dir,
        "expired.pem",
        &[&expired, &intermediate].map(|c| c.pem.as_str()).concat(),
    )?;
    write(
        &dir,
        "not-yet-valid.pem",
        &[&not_yet_valid, &intermediate]
            .map(|c| c.pem.as_str())
            .concat(),
    )?;
    write(&dir, "self-signed.pem", &self_signed.pem)?;
    write(
        &dir,
        "short-intermediate.pem",
        &[&outlived, &short_intermediate]
            .map(|c| c.pem.as_str())
            .concat(),
    )?;
    write(
        &dir,
        "wrong-order.pem",
        &[&valid, &root, &intermediate]
            .map(|c| c.pem.as_str())
            .concat(),
    )?;
    write(&dir, "leaf-only.pem", &valid.pem)?;
    write(
        &dir,
        "untrusted-root.pem",
        &[&untrusted, &other_root].map(|c| c.pem.as_str()).concat(),
    )?;
    std::fs::write(dir.join("valid-leaf.cer"), &valid.der)?;
    write(
        &dir,
        "garbage.pem",
        "This is not a certificate.\n-----BEGIN NOTHING-----\nbm90aGluZw==\n-----END NOTHING-----\n",
    )?;
    // The key comes first so that a reader which does not skip it would notice.
    write_private(
        &dir.join("key-and-cert.pem"),
        &[
            valid.key.serialize_pem().as_str(),
            &valid.pem,
            &intermediate.pem,
        ]
        .concat(),
    )?;

    let valid_until = valid.params.not_after;
    let expectations = [
        expect(
            "valid.pem",
            &valid,
            valid_until,
            Some("valid.test"),
            "none",
            true,
        ),
        expect(
            "expired.pem",
            &expired,
            expired.params.not_after,
            Some("expired.test"),
            "expired",
            false,
        ),
        expect(
            "not-yet-valid.pem",
            &not_yet_valid,
            not_yet_valid.params.not_after,
            Some("future.test"),
            "not_yet_valid",
            false,
        ),
        expect(
            "self-signed.pem",
            &self_signed,
            self_signed.params.not_after,
            Some("self-signed.test"),
            "self_signed",
            false,
        ),
        expect(
            "short-intermediate.pem",
            &outlived,
            short_intermediate.params.not_after,
            Some("short-intermediate.test"),
            "expired",
            false,
        ),
        expect(
            "wrong-order.pem",
            &valid,
            valid_until,
            Some("valid.test"),
            "wrong_chain_order",
            true,
        ),
        expect(
            "leaf-only.pem",
            &valid,
            valid_until,
            Some("valid.test"),
            "missing_intermediate",
            false,
        ),
        expect(
            "valid-leaf.cer",
            &valid,
            valid_until,
            Some("valid.test"),
            "missing_intermediate",
            false,
        ),
        expect(
            "untrusted-root.pem",
            &untrusted,
            untrusted.params.not_after,
            Some("untrusted.test"),
            "unknown_issuer",
            false,
        ),
        expect(
            "key-and-cert.pem",
            &valid,
            valid_until,
            Some("valid.test"),
            "none",
            true,
        ),
        expect(
            "root.pem",
            &root,
            root.params.not_after,
            None,
            "invalid",
            false,
        ),
        expect(
            "intermediate.pem",
            &intermediate,
            intermediate.params.not_after,
            None,
            "invalid",
            false,
        ),
    ];
    write(&dir, "expected.toml", &expected_toml(&expectations)?)?;
    println!("wrote fixtures to {}", dir.display());
    Ok(())
}

fn ca(
    common_name: &str,
    serial: u8,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issuer: Option<&Minted>,
) -> Result<Minted> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.serial_number = Some(SerialNumber::from_slice(&[serial]));
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = issuer.is_some();
    mint(params, KeyPair::generate()?, issuer)
}

fn leaf(
    names: &[&str],
    serial: u16,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key: KeyPair,
    issuer: Option<&Minted>,
) -> Result<Minted> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names.clone())?;
    params.distinguished_name = name(&names[0]);
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = issuer.is_some();
    mint(params, key, issuer)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Certinel Test");
    name.push(DnType::CommonName, common_name);
    name
}

fn mint(params: CertificateParams, key: KeyPair, issuer: Option<&Minted>) -> Result<Minted> {
    let certificate = match issuer {
        Some(issuer) => params.signed_by(&key, &issuer.issuer())?,
        None => params.self_signed(&key)?,
    };
    Ok(Minted {
        pem: certificate.pem(),
        der: certificate.der().to_vec(),
        params,
        key,
    })
}

fn expect(
    file: &'static str,
    leaf: &Minted,
    earliest_not_after: OffsetDateTime,
    server_name: Option<&'static str>,
    reason: &'static str,
    verified: bool,
) -> Expectation {
    Expectation {
        file,
        leaf_not_after: leaf.params.not_after,
        earliest_not_after,
        server_name,
        reason,
        verified,
    }
}

fn expected_toml(expectations: &[Expectation]) -> Result<String> {
    let mut text = String::new();
    writeln!(
        text,
        "# Written by `cargo run --example mint-fixtures`; do not edit by hand."
    )?;
    writeln!(
        text,
        "# Verification outcome of each file at `now`, trusting only root.pem."
    )?;
    writeln!(text, "now = {} # {}", NOW.unix_timestamp(), rfc3339(NOW)?)?;
    writeln!(text, "trust = \"root.pem\"")?;
    for expectation in expectations {
        writeln!(text)?;
        writeln!(text, "[files.\"{}\"]", expectation.file)?;
        let leaf_not_after = expectation.leaf_not_after;
        writeln!(
            text,
            "leaf_not_after = {} # {}",
            leaf_not_after.unix_timestamp(),
            rfc3339(leaf_not_after)?
        )?;
        let earliest = expectation.earliest_not_after;
        writeln!(
            text,
            "earliest_not_after = {} # {}",
            earliest.unix_timestamp(),
            rfc3339(earliest)?
        )?;
        if let Some(server_name) = expectation.server_name {
            writeln!(text, "server_name = \"{server_name}\"")?;
        }
        writeln!(text, "reason = \"{}\"", expectation.reason)?;
        writeln!(text, "verified = {}", expectation.verified)?;
    }
    Ok(text)
}

fn rfc3339(moment: OffsetDateTime) -> Result<String> {
    Ok(moment.format(&time::format_description::well_known::Rfc3339)?)
}

fn write(dir: &Path, file: &str, contents: &str) -> Result<()> {
    std::fs::write(dir.join(file), contents)?;
    Ok(())
}

/// Private keys are written readable by the owner only, even test keys.
fn write_private(path: &PathBuf, contents: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
