//! Writes the certificate fixtures under tests/fixtures/certs/ (run it, then commit them).
//!
//! `cargo run --example mint-fixtures` regenerates every file: keys are fresh each run,
//! but names, serials and validity dates are fixed here, so `expected.toml` (also written
//! here) stays exact to the second. Tests read the files; they never run this program.

use std::error::Error;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// The moment at which the reasons in `expected.toml` hold.
const NOW: OffsetDateTime = datetime!(2026-06-01 00:00:00 UTC);

/// A CA's validity unless its fixture is about dates.
const CA_NOT_BEFORE: OffsetDateTime = datetime!(2020-01-01 00:00:00 UTC);
const CA_NOT_AFTER: OffsetDateTime = datetime!(2100-01-01 00:00:00 UTC);

/// A leaf's validity unless its fixture is about dates.
const LEAF_NOT_BEFORE: OffsetDateTime = datetime!(2024-01-01 00:00:00 UTC);
const LEAF_NOT_AFTER: OffsetDateTime = datetime!(2099-01-01 00:00:00 UTC);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One minted certificate with the key that signs for it.
struct Minted {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: Vec<u8>,
    /// The name a client asks for; `None` for a CA.
    server_name: Option<String>,
}

impl Minted {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// A certificate to mint; the builder methods name what a fixture changes.
struct Spec {
    /// The subject alternative names of a leaf (the first is also its common name), or
    /// a CA's common name.
    names: Vec<String>,
    serial: Vec<u8>,
    is_ca: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key: Option<KeyPair>,
}

/// How a fixture file holds its certificates.
#[derive(Clone, Copy)]
enum Format {
    /// PEM certificates, leaf first.
    Pem,
    /// The leaf alone, DER-encoded.
    Der,
    /// The leaf's private key, then the PEM certificates; written 0600.
    KeyThenPem,
}

/// One fixture file and its line in `expected.toml`.
struct Fixture<'a> {
    file: &'static str,
    format: Format,
    /// The certificates in the file, leaf first.
    chain: Vec<&'a Minted>,
    reason: &'static str,
    verified: bool,
}

fn main() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs");
    std::fs::create_dir_all(&dir)?;

    let root = Spec::ca("Certinel Test Root", 0x01).self_signed()?;
    let intermediate = Spec::ca("Certinel Test Intermediate", 0x02)
        .valid_until(datetime!(2099-06-01 00:00:00 UTC))
        .issued_by(&root)?;
    let short_intermediate = Spec::ca("Certinel Short Intermediate", 0x03)
        .valid_until(datetime!(2026-01-01 00:00:00 UTC))
        .issued_by(&root)?;
    let other_root = Spec::ca("Certinel Other Root", 0x04).self_signed()?;

    let valid = Spec::leaf(&["valid.test", "www.valid.test", "127.0.0.1"], 0x1001)
        .issued_by(&intermediate)?;
    let expired = Spec::leaf(&["expired.test"], 0x1002)
        .valid_until(datetime!(2026-03-01 12:00:00 UTC))
        .key(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?)
        .issued_by(&intermediate)?;
    let not_yet_valid = Spec::leaf(&["future.test"], 0x1003)
        .valid_from(datetime!(2027-01-01 00:00:00 UTC))
        .valid_until(datetime!(2028-01-01 00:00:00 UTC))
        .key(KeyPair::generate_rsa_for(
            &rcgen::PKCS_RSA_SHA256,
            rcgen::RsaKeySize::_2048,
        )?)
        .issued_by(&intermediate)?;
    let self_signed = Spec::leaf(&["self-signed.test"], 0x1004)
        .valid_until(datetime!(2030-01-01 00:00:00 UTC))
        .key(KeyPair::generate_for(&rcgen::PKCS_ED25519)?)
        .self_signed()?;
    let outlived =
        Spec::leaf(&["short-intermediate.test"], 0x1005).issued_by(&short_intermediate)?;
    let untrusted = Spec::leaf(&["untrusted.test"], 0x1006).issued_by(&other_root)?;

    use Format::{Der, KeyThenPem, Pem};
    let fixtures = [
        fixture("valid.pem", Pem, &[&valid, &intermediate], "none", true),
        fixture(
            "expired.pem",
            Pem,
            &[&expired, &intermediate],
            "expired",
            false,
        ),
        fixture(
            "not-yet-valid.pem",
            Pem,
            &[&not_yet_valid, &intermediate],
            "not_yet_valid",
            false,
        ),
        fixture(
            "self-signed.pem",
            Pem,
            &[&self_signed],
            "self_signed",
            false,
        ),
        fixture(
            "short-intermediate.pem",
            Pem,
            &[&outlived, &short_intermediate],
            "expired",
            false,
        ),
        fixture(
            "wrong-order.pem",
            Pem,
            &[&valid, &root, &intermediate],
            "wrong_chain_order",
            true,
        ),
        fixture(
            "leaf-only.pem",
            Pem,
            &[&valid],
            "missing_intermediate",
            false,
        ),
        fixture(
            "valid-leaf.cer",
            Der,
            &[&valid],
            "missing_intermediate",
            false,
        ),
        fixture(
            "untrusted-root.pem",
            Pem,
            &[&untrusted, &other_root],
            "unknown_issuer",
            false,
        ),
        // The key comes first so that a reader which does not skip it would notice.
        fixture(
            "key-and-cert.pem",
            KeyThenPem,
            &[&valid, &intermediate],
            "none",
            true,
        ),
        fixture("root.pem", Pem, &[&root], "invalid", false),
        fixture("intermediate.pem", Pem, &[&intermediate], "invalid", false),
    ];
    for fixture in &fixtures {
        write_fixture(&dir, fixture)?;
    }
    write(
        &dir.join("garbage.pem"),
        "This is not a certificate.\n-----BEGIN NOTHING-----\nbm90aGluZw==\n-----END NOTHING-----\n",
    )?;
    write(&dir.join("expected.toml"), &expected_toml(&fixtures)?)?;
    println!("wrote fixtures to {}", dir.display());
    Ok(())
}

impl Spec {
    /// A CA valid from [`CA_NOT_BEFORE`] to [`CA_NOT_AFTER`], with a fresh ECDSA P-256 key.
    fn ca(common_name: &str, serial: u8) -> Self {
        Spec {
            names: vec![common_name.to_owned()],
            serial: vec![serial],
            is_ca: true,
            not_before: CA_NOT_BEFORE,
            not_after: CA_NOT_AFTER,
            key: None,
        }
    }

    /// A server certificate for `names` (the first is its common name), valid from
    /// [`LEAF_NOT_BEFORE`] to [`LEAF_NOT_AFTER`], with a fresh ECDSA P-256 key.
    fn leaf(names: &[&str], serial: u16) -> Self {
        Spec {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            serial: serial.to_be_bytes().to_vec(),
            is_ca: false,
            not_before: LEAF_NOT_BEFORE,
            not_after: LEAF_NOT_AFTER,
            key: None,
        }
    }

    fn valid_from(mut self, not_before: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self
    }

    fn valid_until(mut self, not_after: OffsetDateTime) -> Self {
        self.not_after = not_after;
        self
    }

    fn key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    fn issued_by(self, issuer: &Minted) -> Result<Minted> {
        self.mint(Some(issuer))
    }

    fn self_signed(self) -> Result<Minted> {
        self.mint(None)
    }

    fn mint(self, issuer: Option<&Minted>) -> Result<Minted> {
        let mut params = if self.is_ca {
            ca_params()
        } else {
            leaf_params(self.names.clone())?
        };
        params.distinguished_name = name(&self.names[0]);
        params.serial_number = Some(SerialNumber::from_slice(&self.serial));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.use_authority_key_identifier_extension = issuer.is_some();
        let key = match self.key {
            Some(key) => key,
            None => KeyPair::generate()?,
        };
        let certificate = match issuer {
            Some(issuer) => params.signed_by(&key, &issuer.issuer())?,
            None => params.self_signed(&key)?,
        };
        Ok(Minted {
            pem: certificate.pem(),
            der: certificate.der().to_vec(),
            server_name: (!self.is_ca).then(|| self.names[0].clone()),
            params,
            key,
        })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(subject_alt_names: Vec<String>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(subject_alt_names)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Certinel Test");
    name.push(DnType::CommonName, common_name);
    name
}

fn fixture<'a>(
    file: &'static str,
    format: Format,
    chain: &[&'a Minted],
    reason: &'static str,
    verified: bool,
) -> Fixture<'a> {
    Fixture {
        file,
        format,
        chain: chain.to_vec(),
        reason,
        verified,
    }
}

impl Fixture<'_> {
    fn leaf(&self) -> &Minted {
        self.chain[0]
    }

    /// The soonest `not_after` in the file: the end of the chain's validity.
    fn earliest_not_after(&self) -> OffsetDateTime {
        let not_afters = self.chain.iter().map(|c| c.params.not_after);
        not_afters.min().unwrap_or(self.leaf().params.not_after)
    }
}

fn write_fixture(dir: &Path, fixture: &Fixture<'_>) -> Result<()> {
    let path = dir.join(fixture.file);
    let pems = fixture
        .chain
        .iter()
        .map(|c| c.pem.as_str())
        .collect::<String>();
    match fixture.format {
        Format::Pem => write(&path, &pems),
        Format::Der => Ok(std::fs::write(path, &fixture.leaf().der)?),
        Format::KeyThenPem => write_private(&path, &(fixture.leaf().key.serialize_pem() + &pems)),
    }
}

fn expected_toml(fixtures: &[Fixture<'_>]) -> Result<String> {
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
    for fixture in fixtures {
        writeln!(text)?;
        writeln!(text, "[files.\"{}\"]", fixture.file)?;
        let leaf_not_after = fixture.leaf().params.not_after;
        writeln!(
            text,
            "leaf_not_after = {} # {}",
            leaf_not_after.unix_timestamp(),
            rfc3339(leaf_not_after)?
        )?;
        let earliest = fixture.earliest_not_after();
        writeln!(
            text,
            "earliest_not_after = {} # {}",
            earliest.unix_timestamp(),
            rfc3339(earliest)?
        )?;
        if let Some(server_name) = &fixture.leaf().server_name {
            writeln!(text, "server_name = \"{server_name}\"")?;
        }
        writeln!(text, "reason = \"{}\"", fixture.reason)?;
        writeln!(text, "verified = {}", fixture.verified)?;
    }
    Ok(text)
}

fn rfc3339(moment: OffsetDateTime) -> Result<String> {
    Ok(moment.format(&time::format_description::well_known::Rfc3339)?)
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents)?;
    Ok(())
}

/// Private keys are written readable by the owner only, even test keys.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
