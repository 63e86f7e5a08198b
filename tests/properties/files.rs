//! Certificate parsing on damaged input: real rcgen-made chains (root, intermediate, and
//! ECDSA, Ed25519 and RSA leaves) with bytes flipped, cut, inserted and removed, given to
//! chain inspection and verification as DER, and to the file inspector as PEM and DER files.
//! The store checks a downloaded chain the same way. Nothing may panic or take long; a
//! damaged file is a `FileError`, never a crash.

use std::path::PathBuf;
use std::sync::LazyLock;

use certinel::scan::files::inspect_file;
use certinel::scan::inspect::inspect_chain;
use certinel::scan::trust::TrustRoots;
use certinel::scan::verify::verify_chain;
use certinel::store::version_check::{check_pems, leaf_facts};
use proptest::prelude::*;
use rustls::pki_types::{CertificateDer, UnixTime};
use tempfile::TempDir;

use crate::common::crl::pem;
use crate::common::pki::{Ca, KeyKind, Leaf, LeafSpec, Validity};
use certinel_testkit::fuzz::{config, within_time_limit};

/// Real chains to damage: leaf, intermediate, root.
struct Chains {
    chains: Vec<Vec<CertificateDer<'static>>>,
    /// The private key of each chain's leaf, as PEM.
    leaf_keys: Vec<String>,
    roots: TrustRoots,
}

static CHAINS: LazyLock<Chains> = LazyLock::new(|| {
    let root = Ca::root("Fuzz Root", Validity::current_for_days(3650));
    let intermediate = root.intermediate("Fuzz Intermediate", Validity::current_for_days(365));
    let leaf = |key: KeyKind| -> Leaf {
        intermediate.leaf(&LeafSpec::new(&["fuzz.example", "127.0.0.1"]).key(key))
    };
    let leaves: Vec<Leaf> = [KeyKind::EcdsaP256, KeyKind::Ed25519, KeyKind::Rsa2048]
        .into_iter()
        .map(leaf)
        .collect();
    let chains = leaves
        .iter()
        .map(|leaf| {
            vec![
                leaf.cert.clone(),
                intermediate.cert.clone(),
                root.cert.clone(),
            ]
        })
        .collect();
    let leaf_keys = leaves.iter().map(|leaf| leaf.key_pem.clone()).collect();
    let mut roots = TrustRoots::empty();
    roots
        .add_certificate(&root.cert)
        .expect("the root is a trust anchor");
    Chains {
        chains,
        leaf_keys,
        roots,
    }
});

/// One place to write damaged files, shared by every case.
static DIRECTORY: LazyLock<TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));

/// One change to a DER encoding.
#[derive(Debug, Clone)]
enum Damage {
    Flip {
        at: usize,
        mask: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        count: usize,
    },
    /// Sets a byte to a value that means something in DER lengths and tags.
    Set {
        at: usize,
        value: u8,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    let at = any::<prop::sample::Index>().prop_map(|index| index.index(1 << 16));
    prop_oneof![
        (at.clone(), 1u8..).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        at.clone().prop_map(|at| Damage::Truncate { at }),
        (at.clone(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        (at.clone(), 1usize..64).prop_map(|(at, count)| Damage::Remove { at, count }),
        (
            at,
            prop::sample::select(&[0x00u8, 0x30, 0x7f, 0x80, 0x81, 0x82, 0x84, 0x88, 0xff][..])
        )
            .prop_map(|(at, value)| Damage::Set { at, value }),
    ]
}

fn apply(der: &mut Vec<u8>, damage: &Damage) {
    let length = der.len().max(1);
    match damage {
        Damage::Flip { at, mask } => {
            if let Some(byte) = der.get_mut(at % length) {
                *byte ^= mask;
            }
        }
        Damage::Truncate { at } => der.truncate(at % length),
        Damage::Insert { at, bytes } => {
            let at = at % (der.len() + 1);
            der.splice(at..at, bytes.iter().copied());
        }
        Damage::Remove { at, count } => {
            let start = at % length;
            let end = (start + count).min(der.len());
            if start < end {
                der.drain(start..end);
            }
        }
        Damage::Set { at, value } => {
            if let Some(byte) = der.get_mut(at % length) {
                *byte = *value;
            }
        }
    }
}

/// A real chain with up to four changes to its certificates, and maybe reordered or cut.
fn damaged_chain() -> impl Strategy<Value = Vec<CertificateDer<'static>>> {
    (
        0..CHAINS.chains.len(),
        prop::collection::vec((0usize..3, damage()), 0..4),
        prop_oneof![Just(None), (0usize..3).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(which, damages, drop, reverse)| {
            let mut chain: Vec<Vec<u8>> = CHAINS.chains[which]
                .iter()
                .map(|der| der.as_ref().to_vec())
                .collect();
            for (position, damage) in &damages {
                apply(&mut chain[*position], damage);
            }
            if let Some(position) = drop {
                chain.remove(position);
            }
            if reverse {
                chain.reverse();
            }
            chain.into_iter().map(CertificateDer::from).collect()
        })
}

/// A file's bytes: a damaged chain as PEM (with other blocks and stray text around) or as
/// DER, then maybe damaged again as a whole.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    let label = prop::sample::select(
        &[
            "CERTIFICATE",
            "PRIVATE KEY",
            "X509 CRL",
            "CERTIFICATE REQUEST",
            "CERT",
        ][..],
    );
    (
        damaged_chain(),
        prop::collection::vec(label, 1..4),
        any::<bool>(),
        prop::collection::vec(damage(), 0..3),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(chain, labels, as_pem, file_damages, stray)| {
            let mut bytes = if as_pem {
                let mut text = String::from_utf8_lossy(&stray).into_owned();
                for (index, der) in chain.iter().enumerate() {
                    text.push_str(&pem(labels[index % labels.len()], der));
                }
                text.into_bytes()
            } else {
                chain.first().map(|der| der.to_vec()).unwrap_or(stray)
            };
            for damage in &file_damages {
                apply(&mut bytes, damage);
            }
            bytes
        })
}

fn now() -> UnixTime {
    UnixTime::now()
}

proptest! {
    #![proptest_config(config(1_500))]

    #[test]
    fn chain_inspection_and_verification_survive_damaged_der(chain in damaged_chain()) {
        within_time_limit("inspect and verify", || {
            if let Ok(facts) = inspect_chain(&chain) {
                assert!(!facts.entries.is_empty());
                let _ = verify_chain(&chain, &facts, Some("fuzz.example"), &CHAINS.roots, now());
            }
        });
    }

    #[test]
    fn file_inspection_survives_damaged_pem_and_der_files(bytes in file_bytes()) {
        let path: PathBuf = DIRECTORY.path().join("damaged.pem");
        std::fs::write(&path, &bytes).expect("the damaged file written");
        let report = within_time_limit("inspect_file", || inspect_file(&path));
        if let Err(error) = report.outcome {
            assert!(!error.to_string().is_empty());
        }
    }

    /// What the renewer does with a chain the CA sent: the store's checks against the key
    /// and names, and the ARI identifier of its leaf.
    #[test]
    fn downloaded_chains_with_damage_are_checked_or_refused_without_panic(
        chain in damaged_chain(),
        key in 0..3usize,
    ) {
        let pem: String = chain.iter().map(|der| pem("CERTIFICATE", der)).collect();
        within_time_limit("store checks", || {
            let checked = check_pems(&pem, &CHAINS.leaf_keys[key], &["fuzz.example".to_owned()]);
            let leaf = leaf_facts(&pem);
            if let Ok(facts) = checked {
                assert_eq!(leaf.map(|leaf| leaf.serial).ok(), Some(facts.serial));
            }
            let _ = certinel::acme::ari_certificate_id(&pem);
        });
    }

    #[test]
    fn file_inspection_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        armoured in any::<bool>(),
    ) {
        let path: PathBuf = DIRECTORY.path().join("arbitrary.pem");
        let bytes = if armoured {
            [b"-----BEGIN CERTIFICATE-----\n".as_slice(), &bytes, b"\n-----END CERTIFICATE-----\n"].concat()
        } else {
            bytes
        };
        std::fs::write(&path, &bytes).expect("the file written");
        let _ = within_time_limit("inspect_file", || inspect_file(&path));
    }
}
