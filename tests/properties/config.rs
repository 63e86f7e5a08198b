//! The configuration loader on arbitrary bytes, on arbitrary TOML built from certinel's own
//! key names, and on structured mutations (lines dropped, duplicated, truncated, values
//! swapped) of `config/certinel.toml` and the good fixtures. It must answer with a model or
//! one error whose line and column lie inside the text, never panic, and stay fast. The
//! `[scanner] hosts_file` it names is read the same way.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use proptest::prelude::*;
use tempfile::TempDir;

use certinel_testkit::fuzz::{config, within_time_limit};

/// One place for the files the properties write, shared by every case.
static DIRECTORY: LazyLock<TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));

/// The shipped example and every good fixture, read once.
static SEEDS: LazyLock<Vec<(PathBuf, String)>> = LazyLock::new(seeds);

/// Key names certinel's configuration uses, so generated tables reach validation.
const KEYS: &[&str] = &[
    "scanner",
    "endpoint",
    "file",
    "exporter",
    "acme",
    "certificate",
    "state_dir",
    "target",
    "path",
    "name",
    "dns_names",
    "challenge",
    "type",
    "listen",
    "webroot",
    "zone",
    "server",
    "tsig_key",
    "tsig_key_name",
    "tsig_algorithm",
    "command",
    "provider",
    "deploy",
    "deploy_timeout",
    "directory",
    "contact",
    "eab",
    "kid",
    "hmac_key",
    "duration",
    "renew_before",
    "renew_before_percentage",
    "interval",
    "timeout",
    "concurrency",
    "hosts_file",
    "sni",
    "starttls",
    "ca_file",
    "client_cert",
    "client_key",
    "ip_family",
    "resolve",
    "probe_allow",
    "host",
    "network",
    "module",
    "verify",
    "verify_timeout",
    "on_verify_failure",
    "history",
    "key",
    "profile",
    "poll_timeout",
    "propagation_timeout",
    "propagation_resolver",
    "served",
    "dry_run_directory",
    "labels",
    "modules",
];

/// Values that mean something to some key.
const WORDS: &[&str] = &[
    "",
    "0",
    "0s",
    "1s",
    "90d",
    "30d",
    "1h",
    "-1s",
    "18446744073709551616s",
    "1e400s",
    "smtp",
    "imap",
    "xmpp",
    "ldap",
    "http-01",
    "dns-01",
    "tls-alpn-01",
    "rfc2136",
    "exec",
    "ecdsa-p256",
    "rsa-2048",
    "rollback",
    "keep",
    "ipv4",
    "ipv6",
    "all",
    "first",
    "example.com:443",
    "[::1]:443",
    "https://example.com",
    "127.0.0.1:0",
    "10.0.0.0/8",
    "*.example.com",
    "é.example",
    "a..b",
    "/tmp",
    "relative/path",
    "https://127.0.0.1/dir",
    "mailto:a@example.com",
    "hmac-sha256",
    "\u{0}",
    "\u{feff}",
    "ü",
    "x:99999",
    ":443",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
}

fn scalar() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(|word| toml::Value::String(word.to_owned())),
        2 => any::<String>().prop_map(toml::Value::String),
        2 => any::<i64>().prop_map(toml::Value::Integer),
        1 => prop_oneof![Just(0i64), Just(1), Just(-1), Just(65_536), Just(i64::MAX)]
            .prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|table| toml::Value::Table(table.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::btree_map(key(), value(), 0..8).prop_map(|table| {
        let table: toml::Table = table.into_iter().collect();
        toml::to_string(&table).unwrap_or_default()
    })
}

/// The shipped example and every good fixture, as texts to mutate.
fn seeds() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("config/certinel.toml")];
    let good = root.join("tests/fixtures/config/good");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&good)
        .expect("the good config fixtures")
        .map(|entry| entry.expect("a fixture entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .collect();
    fixtures.sort();
    paths.extend(fixtures);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable seed");
            (path, text)
        })
        .collect()
}

/// One structured change to a configuration text.
#[derive(Debug, Clone)]
enum Mutation {
    DropLine(usize),
    DuplicateLine(usize),
    Truncate(usize),
    /// Replaces the value after the `=` of a line.
    ReplaceValue(usize, String),
    Insert(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>().prop_map(|index| index.index(1 << 20));
    let snippet = prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(|word| format!("{word:?}")),
        1 => any::<String>(),
        1 => prop::sample::select(&["[", "]", "[[", "\"", "'''", "=", "\n", "{", "#", ",", "\\u"][..])
            .prop_map(str::to_owned),
        1 => scalar().prop_map(|value| value.to_string()),
    ];
    prop_oneof![
        index.clone().prop_map(Mutation::DropLine),
        index.clone().prop_map(Mutation::DuplicateLine),
        index.clone().prop_map(Mutation::Truncate),
        (index.clone(), snippet.clone()).prop_map(|(at, text)| Mutation::ReplaceValue(at, text)),
        (index, snippet).prop_map(|(at, text)| Mutation::Insert(at, text)),
    ]
}

fn mutate(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let count = lines.len();
    match mutation {
        Mutation::DropLine(at) => {
            lines.remove(at % count);
        }
        Mutation::DuplicateLine(at) => {
            let line = lines[at % count].clone();
            lines.insert(at % count, line);
        }
        Mutation::Truncate(at) => {
            let mut end = at % (text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return text[..end].to_owned();
        }
        Mutation::ReplaceValue(at, value) => {
            let line = &mut lines[at % count];
            if let Some((key, _)) = line.split_once('=') {
                *line = format!("{key}= {value}");
            }
        }
        Mutation::Insert(at, snippet) => {
            let line = &mut lines[at % count];
            let mut position = at % (line.len() + 1);
            while !line.is_char_boundary(position) {
                position -= 1;
            }
            line.insert_str(position, snippet);
        }
    }
    lines.join("\n")
}

/// Loads `text` and checks the error, if any, points inside it.
fn check(text: &str, source: Option<&Path>) {
    let result = within_time_limit("config::parse", || certinel::config::parse(text, source));
    let Err(error) = result else { return };
    let message = error.to_string();
    assert!(!message.is_empty());
    assert!(
        !message.contains('\n'),
        "error is not one line: {message:?}"
    );
    let lines = text.split('\n').count();
    if let Some(line) = error.line() {
        assert!(
            (1..=lines).contains(&line),
            "line {line} outside a text of {lines} lines: {message}"
        );
    }
    if let Some(column) = error.column() {
        assert!(column >= 1, "column {column}: {message}");
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn config_parse_survives_arbitrary_text(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&String::from_utf8_lossy(&bytes), None);
    }

    #[test]
    fn config_parse_survives_arbitrary_toml_with_certinel_keys(text in document()) {
        check(&text, Some(Path::new("/nonexistent/certinel.toml")));
    }

    #[test]
    fn config_parse_survives_mutated_shipped_configs(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (path, text) = &SEEDS[seed.index(SEEDS.len())];
        let mutated = mutations.iter().fold(text.clone(), |text, change| mutate(&text, change));
        check(&mutated, Some(path));
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// `load` reads bytes from disk, so invalid UTF-8 reaches it too.
    #[test]
    fn config_load_survives_arbitrary_file_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let path = DIRECTORY.path().join("certinel.toml");
        std::fs::write(&path, &bytes).expect("the config file written");
        let result = within_time_limit("config::load", || certinel::config::load(&path));
        if let Err(error) = result {
            assert!(!error.to_string().is_empty());
        }
    }
}

/// Pieces of hosts files, so generated lines reach every branch of the hosts parser.
const HOSTS_PIECES: &[&str] = &[
    "127.0.0.1",
    "::1",
    "fe80::1%eth0",
    "10.0.0.300",
    "1.2.3",
    " ",
    "\t",
    "\n",
    "\r\n",
    "#",
    "localhost",
    "api.example",
    "API.Example.",
    "*",
    "é",
    "%",
    "::ffff:1.2.3.4",
];

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn hosts_files_of_any_text_load_or_refuse_without_panic(
        pieces in prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(HOSTS_PIECES).prop_map(str::to_owned),
                1 => any::<String>(),
            ],
            0..32,
        ),
    ) {
        let path = DIRECTORY.path().join("hosts");
        std::fs::write(&path, pieces.concat()).expect("the hosts file written");
        let loaded = within_time_limit("hosts file", || {
            certinel::scan::resolve::Resolver::with_hosts_file(&path)
        });
        if let Err(error) = loaded {
            assert!(!error.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config(3_000))]

    /// Durations of any text parse or are refused; a parsed one prints (`format_duration`)
    /// as text that parses to the same duration, as `certinel config check` relies on.
    #[test]
    fn durations_parse_or_refuse_and_print_as_they_parse(
        text in prop_oneof![
            3 => prop::collection::vec(
                prop::sample::select(&[
                    "0", "1", "90", "18446744073709551615", "18446744073709551616", "999999999999",
                    "ms", "s", "m", "h", "d", "w", "y", ".", "-", "+", " ", "e3", "\u{660}",
                ][..]),
                0..6,
            )
            .prop_map(|pieces| pieces.concat()),
            1 => any::<String>(),
        ],
    ) {
        let parsed = within_time_limit("duration parse", || certinel::config::parse_duration(&text));
        if let Ok(duration) = parsed {
            let printed = certinel::config::format_duration(duration);
            let reparsed = certinel::config::parse_duration(&printed);
            prop_assert_eq!(
                reparsed.as_ref().ok(),
                Some(&duration),
                "{:?} parsed as {:?}, printed as {:?}, which parses as {:?}",
                text,
                duration,
                printed,
                reparsed
            );
        }
    }
}
