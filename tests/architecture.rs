//! The boundaries ARCHITECTURE.md promises, checked on the source text of `src/`: which
//! top-level module may import which (`use crate::X`, `crate::X::`), which files stay pure
//! (no clock, randomness, files or sockets), and that metric names are spelled only in
//! `src/metrics/names.rs`. Test code (`#[cfg(test)]` modules and the files they mount) may
//! read files and clocks and spell metric names in expected output; its imports are
//! checked against the graph plus [`TEST_ONLY`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The allowed dependency graph: every top-level module of `src/` and the modules it may
/// import. Written once here; ARCHITECTURE.md shows the same table (checked below).
const ALLOWED: &[(&str, &[&str])] = &[
    ("cert", &[]),
    ("disk", &[]),
    ("escape", &[]),
    ("redact", &[]),
    ("hook", &["cert", "redact"]),
    ("config", &["cert", "hook"]),
    ("scan", &["cert", "config", "disk", "escape"]),
    ("store", &["cert", "disk", "redact", "scan"]),
    ("schedule", &["cert", "store"]),
    ("cluster", &["cert", "config", "disk", "store"]),
    ("acme", &["cert", "disk", "hook", "store"]),
    ("report", &["escape", "scan"]),
    ("metrics", &["cert", "config", "escape", "report", "scan"]),
    (
        "inventory",
        &[
            "cert", "config", "escape", "metrics", "scan", "schedule", "store",
        ],
    ),
    ("import", &["acme", "cert", "config", "disk", "store"]),
    (
        "renew",
        &[
            "acme", "cert", "config", "hook", "scan", "schedule", "store",
        ],
    ),
    (
        "service",
        &[
            "acme", "cert", "cluster", "config", "metrics", "renew", "scan", "schedule", "store",
        ],
    ),
    (
        "cli",
        &[
            "acme",
            "cert",
            "cluster",
            "config",
            "disk",
            "escape",
            "import",
            "inventory",
            "metrics",
            "renew",
            "report",
            "scan",
            "schedule",
            "service",
            "store",
        ],
    ),
];

/// Imports only test code may make: `acme`'s renewalInfo property test folds every parsed
/// answer into `schedule::ari`'s state, which the renewer does in production; the shared
/// tls-alpn-01 listener's test completes handshakes with `scan::probe`'s accept-any
/// verifier (the one copy of it) to read the challenge certificate.
const TEST_ONLY: &[(&str, &str)] = &[("acme", "schedule"), ("acme", "scan")];

/// Files and directories (relative to the crate root) whose production code is pure. Add a
/// path here when a module is meant to stay a decision over its inputs.
const PURE: &[&str] = &[
    "src/cert",
    "src/schedule/plan.rs",
    "src/schedule/ari.rs",
    "src/scan/inspect.rs",
    "src/scan/verify.rs",
    "src/scan/crl/verdict.rs",
    "src/config/allow.rs",
    "src/config/cas.rs",
    "src/config/certificates.rs",
    "src/config/challenge.rs",
    "src/config/duration.rs",
    "src/config/endpoint_source.rs",
    "src/config/error.rs",
    "src/config/file_sd.rs",
    "src/config/hook_env.rs",
    "src/config/keywords.rs",
    "src/config/locate.rs",
    "src/config/model.rs",
    "src/config/raw.rs",
    "src/config/secrets.rs",
    "src/config/target.rs",
    "src/config/validate.rs",
    "src/config/verify_targets.rs",
    "src/inventory",
    "src/report",
    "src/store/recovery.rs",
    "src/renew/fleet.rs",
    "src/acme/retry.rs",
    "src/acme/caa.rs",
    "src/renew/next_action.rs",
    "src/renew/ca_choice.rs",
    "src/renew/next_action/planning.rs",
    "src/import/certbot.rs",
    "src/import/lego.rs",
    "src/import/plan.rs",
    "src/import/render.rs",
    "src/cluster/shard.rs",
    "src/cluster/membership_roster.rs",
];

/// What a pure file must not mention: the clock, randomness, files and sockets.
const IMPURE: &[&str] = &[
    "SystemTime::now",
    "OffsetDateTime::now_utc",
    "Instant::now",
    "rand::",
    "std::fs",
    "tokio::net",
];

/// External crates only some top-level modules may use (`crate::` paths aside, a mention
/// of `NAME::` in production code counts).
const EXCLUSIVE_CRATES: &[(&str, &[&str])] = &[
    ("instant_acme", &["acme"]),
    ("hickory_client", &["acme"]),
    ("anyhow", &["cli"]),
];

/// The one file that spells metric names.
const METRIC_NAMES: &str = "src/metrics/names.rs";

/// The start of a metric name in a string literal.
const METRIC_LITERAL: &str = "\"certinel_";

/// One source file: its path relative to the crate root, its text, and whether it is
/// test code as a whole (mounted by a `#[cfg(test)]` module declaration).
struct Source {
    path: PathBuf,
    text: String,
    test_only: bool,
}

#[test]
fn the_source_keeps_the_module_graph_purity_and_metric_name_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = read_sources(root);
    assert!(sources.len() > 50, "found only {} files", sources.len());
    let mut violations = check(&sources);
    for path in PURE {
        if !root.join(path).exists() {
            violations.push(format!("{path} is listed as pure but does not exist"));
        }
    }
    println!(
        "top-level module graph of src/:\n{}",
        render(&actual_graph(&sources))
    );
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

#[test]
fn architecture_md_shows_the_allowed_graph_of_this_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let block = graph_block(&text).expect(
        "ARCHITECTURE.md has a ```text block right after the line `<!-- allowed-graph -->`",
    );
    assert_eq!(
        block,
        render(&allowed_graph()),
        "ARCHITECTURE.md's graph differs from ALLOWED in tests/architecture.rs"
    );
}

#[test]
fn the_allowed_graph_has_no_cycle_and_names_only_its_own_modules() {
    let graph = allowed_graph();
    for (module, targets) in &graph {
        for target in targets {
            assert!(graph.contains_key(target), "{module} -> unknown {target}");
        }
    }
    assert_eq!(cycle(&graph), None);
}

#[test]
fn a_forbidden_import_is_reported_with_its_file() {
    let sources = [
        source("src/config/model.rs", "use crate::cert::Identifier;\n"),
        source(
            "src/config/certificates.rs",
            "use crate::{hook::HookEnv, renew::Renewer};\n",
        ),
        source("src/scan/probe.rs", "fn f() { crate::service::run(); }\n"),
    ];
    assert_eq!(
        check(&sources),
        [
            "src/config/certificates.rs: config may not import renew",
            "src/scan/probe.rs: scan may not import service",
        ]
    );
}

#[test]
fn imports_in_comments_are_ignored_and_test_code_may_use_test_only_edges() {
    let sources = [
        source(
            "src/acme/order.rs",
            "// see crate::renew::Renewer\n/// [`crate::service`]\nfn f() {}\n\
             #[cfg(test)]\nmod tests {\n    use crate::schedule::ari::absorb;\n}\n",
        ),
        Source {
            path: "src/acme/renewal_info/fuzz_tests.rs".into(),
            text: "use crate::schedule::ari::AriState;\n".into(),
            test_only: true,
        },
        source("src/acme/http.rs", "use crate::schedule::plan::plan;\n"),
    ];
    assert_eq!(
        check(&sources),
        ["src/acme/http.rs: acme may not import schedule"]
    );
}

#[test]
fn a_pure_file_that_reads_the_clock_or_a_file_is_reported_but_its_tests_may() {
    let sources = [
        source(
            "src/schedule/plan.rs",
            "fn now() -> OffsetDateTime { OffsetDateTime::now_utc() }\n\
             // Instant::now would be wrong here.\n\
             #[cfg(test)]\nmod tests {\n    fn fixture() { std::fs::read(\"x\"); }\n}\n",
        ),
        source("src/cert/key.rs", "use rand::Rng;\n"),
        source("src/schedule/history.rs", "use std::fs;\n"),
    ];
    assert_eq!(
        check(&sources),
        [
            "src/cert/key.rs: pure but mentions rand::",
            "src/schedule/plan.rs: pure but mentions OffsetDateTime::now_utc",
        ]
    );
}

#[test]
fn a_metric_name_outside_names_rs_is_reported() {
    let sources = [
        source(
            "src/inventory/alerts.rs",
            "const SERVED: &str = \"certinel_certificate_served_current\";\n\
             #[cfg(test)]\nmod tests {\n    const EXPECTED: &str = \"certinel_up 1\";\n}\n",
        ),
        source(
            "src/metrics/names.rs",
            "pub const UP: &str = \"certinel_up\";\n",
        ),
    ];
    assert_eq!(
        check(&sources),
        ["src/inventory/alerts.rs: spells a metric name (\"certinel_...); use metrics::names"]
    );
}

#[test]
fn instant_acme_outside_acme_and_anyhow_outside_cli_are_reported() {
    let sources = [
        source("src/renew/mod.rs", "use instant_acme::Account;\n"),
        source("src/acme/order.rs", "use instant_acme::Order;\n"),
        source(
            "src/store/mod.rs",
            "fn f() -> anyhow::Result<()> { Ok(()) }\n",
        ),
        source("src/cli/run.rs", "use anyhow::Context;\n"),
    ];
    assert_eq!(
        check(&sources),
        [
            "src/renew/mod.rs: only acme may use instant_acme",
            "src/store/mod.rs: only cli may use anyhow",
        ]
    );
}

#[test]
fn code_after_an_inline_test_module_is_still_checked() {
    let sources = [source(
        "src/cert/key.rs",
        "#[cfg(test)]\npub(crate) mod testing {\n    fn f() { let s = \"}\"; let c = '{'; }\n}\n\
         fn g() { std::fs::read(\"x\"); }\n",
    )];
    assert_eq!(
        check(&sources),
        ["src/cert/key.rs: pure but mentions std::fs"]
    );
}

fn source(path: &str, text: &str) -> Source {
    Source {
        path: path.into(),
        text: text.into(),
        test_only: false,
    }
}

/// Every violation in `sources`, one line each, in path order.
fn check(sources: &[Source]) -> Vec<String> {
    let allowed = allowed_graph();
    let test_only: BTreeSet<(&str, &str)> = TEST_ONLY.iter().copied().collect();
    let modules: BTreeSet<&str> = allowed.keys().copied().collect();
    let mut violations = Vec::new();
    let mut sorted: Vec<&Source> = sources.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for file in sorted {
        let path = file.path.to_string_lossy().replace('\\', "/");
        let Some(module) = top_level_module(&path) else {
            continue;
        };
        let code = without_comments(&file.text);
        let (production, tests) = if file.test_only {
            (String::new(), code)
        } else {
            split_test_modules(&code)
        };
        if !modules.contains(module.as_str()) {
            violations.push(format!(
                "{path}: top-level module {module} is not in ALLOWED (tests/architecture.rs)"
            ));
            continue;
        }
        let may = &allowed[module.as_str()];
        for target in crate_imports(&production) {
            if modules.contains(target.as_str())
                && target != module
                && !may.contains(&target.as_str())
            {
                violations.push(format!("{path}: {module} may not import {target}"));
            }
        }
        for target in crate_imports(&tests) {
            let edge = (module.as_str(), target.as_str());
            if modules.contains(target.as_str())
                && target != module
                && !may.contains(&target.as_str())
                && !test_only.contains(&edge)
            {
                violations.push(format!("{path}: {module} may not import {target}"));
            }
        }
        if is_pure(&path) {
            for call in IMPURE {
                if production.contains(call) {
                    violations.push(format!("{path}: pure but mentions {call}"));
                }
            }
        }
        for (external, users) in EXCLUSIVE_CRATES {
            if !users.contains(&module.as_str()) && production.contains(&format!("{external}::")) {
                violations.push(format!(
                    "{path}: only {} may use {external}",
                    users.join(", ")
                ));
            }
        }
        if path != METRIC_NAMES && production.contains(METRIC_LITERAL) {
            violations.push(format!(
                "{path}: spells a metric name (\"certinel_...); use metrics::names"
            ));
        }
    }
    violations.dedup();
    violations
}

/// Every `.rs` file under `src/`, with the files mounted by `#[cfg(test)] mod NAME;` (and
/// everything below them) marked as test code.
fn read_sources(root: &Path) -> Vec<Source> {
    let mut paths = Vec::new();
    collect_rs(&root.join("src"), &mut paths);
    let texts: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let relative = path.strip_prefix(root).expect("under the root").to_owned();
            (relative, text)
        })
        .collect();
    let mut test_roots: Vec<PathBuf> = Vec::new();
    for (path, text) in &texts {
        test_roots.extend(cfg_test_module_files(path, &without_comments(text)));
    }
    texts
        .into_iter()
        .map(|(path, text)| {
            let test_only = test_roots.iter().any(|root| path.starts_with(root));
            Source {
                path,
                text,
                test_only,
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Where the files of `path`'s child modules live: beside `mod.rs`/`lib.rs`, or in the
/// directory named after the file.
fn child_dir(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new(""));
    match path.file_stem().and_then(|stem| stem.to_str()) {
        Some("mod" | "lib" | "main") | None => parent.to_owned(),
        Some(stem) => parent.join(stem),
    }
}

/// The files (or directories) mounted by the `#[cfg(test)] mod NAME;` declarations of the
/// file at `path` whose comment-free text is `code`, `#[path = "..."]` mounts included.
fn cfg_test_module_files(path: &Path, code: &str) -> Vec<PathBuf> {
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    let mut mounted = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if *line != "#[cfg(test)]" {
            continue;
        }
        let mut next = i + 1;
        let mut explicit = None;
        if let Some(attribute) = lines.get(next).and_then(|l| l.strip_prefix("#[path = \"")) {
            explicit = attribute.strip_suffix("\"]").map(str::to_owned);
            next += 1;
        }
        let Some((name, false)) = lines.get(next).and_then(|l| module_declaration(l)) else {
            continue;
        };
        match explicit {
            Some(file) => mounted.push(path.parent().unwrap_or(Path::new("")).join(file)),
            None => {
                mounted.push(child_dir(path).join(format!("{name}.rs")));
                mounted.push(child_dir(path).join(name));
            }
        }
    }
    mounted
}

/// `mod NAME;` or `pub(crate) mod NAME {`: the name, and whether the body is inline.
fn module_declaration(line: &str) -> Option<(String, bool)> {
    let rest = line.split_once("mod ")?;
    if !rest.0.trim().is_empty() && !rest.0.trim().starts_with("pub") {
        return None;
    }
    let name: String = rest
        .1
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let after = rest.1[name.len()..].trim();
    match after {
        ";" => Some((name, false)),
        "{" => Some((name, true)),
        _ => None,
    }
}

/// `src/X.rs` or `src/X/...`: `X`; `None` for the crate root files.
fn top_level_module(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (module != "lib" && module != "main").then(|| module.to_owned())
}

fn is_pure(path: &str) -> bool {
    PURE.iter()
        .any(|pure| path == *pure || path.starts_with(&format!("{pure}/")))
}

/// `code` split into production code and the bodies of inline `#[cfg(test)]` modules.
fn split_test_modules(code: &str) -> (String, String) {
    let mut production = String::new();
    let mut tests = String::new();
    let mut rest = code;
    while let Some(start) = rest.find("#[cfg(test)]") {
        production.push_str(&rest[..start]);
        let after = &rest[start..];
        let header_end = after.find('\n').map_or(after.len(), |i| i + 1);
        let next_line = after[header_end..].lines().next().unwrap_or("").trim();
        match module_declaration(next_line) {
            Some((_, true)) => {
                let body_start = header_end + after[header_end..].find('{').unwrap_or(0);
                let body_end = matching_brace(&after[body_start..])
                    .map_or(after.len(), |end| body_start + end + 1);
                tests.push_str(&after[..body_end]);
                rest = &after[body_end..];
            }
            _ => {
                production.push_str(&after[..header_end]);
                rest = &after[header_end..];
            }
        }
    }
    production.push_str(rest);
    (production, tests)
}

/// The offset of the `}` closing the `{` that `text` starts with, skipping string and
/// character literals.
fn matching_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {
                if let Some(end) = literal_end(bytes, i) {
                    i = end;
                }
            }
        }
        i += 1;
    }
    None
}

/// When a string, raw string or character literal starts at `i`: the index of its last
/// byte. A lifetime (`'a`) is not a literal.
fn literal_end(bytes: &[u8], i: usize) -> Option<usize> {
    let after_identifier = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
    match bytes[i] {
        b'"' => Some(string_end(bytes, i)),
        b'r' if !after_identifier
            && matches!(bytes.get(i + 1), Some(b'#' | b'"'))
            && raw_string_end(bytes, i) > i =>
        {
            Some(raw_string_end(bytes, i))
        }
        b'\'' if bytes.get(i + 1) == Some(&b'\\') => {
            let close = bytes[i + 2..].iter().skip(1).position(|b| *b == b'\'')?;
            Some(i + 3 + close)
        }
        b'\'' if bytes.get(i + 2) == Some(&b'\'') => Some(i + 2),
        _ => None,
    }
}

/// The index of the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index of the last byte of the raw string (`r"..."`, `r#"..."#`) at `start`.
fn raw_string_end(bytes: &[u8], start: usize) -> usize {
    let hashes = bytes[start + 1..]
        .iter()
        .take_while(|b| **b == b'#')
        .count();
    let open = start + 1 + hashes;
    if bytes.get(open) != Some(&b'"') {
        return start;
    }
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    bytes[open + 1..]
        .windows(closing.len())
        .position(|window| window == closing.as_slice())
        .map_or(bytes.len(), |at| open + at + closing.len())
}

/// `code` without `//` comments (doc comments included); literals are kept.
fn without_comments(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'/') {
            out.push_str(&code[copied..i]);
            i = code[i..].find('\n').map_or(code.len(), |end| i + end);
            copied = i;
        } else {
            i = literal_end(bytes, i).map_or(i, |end| end) + 1;
        }
    }
    out.push_str(&code[copied.min(code.len())..]);
    out
}

/// The top-level modules `code` names through `crate::X` or `use crate::{X, ...}`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            found.insert(identifier(rest));
        }
    }
    found.remove("");
    found
}

/// The first path segment of every item at the top of a `{a, b::c, d::{e}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if expect_head && (c.is_alphanumeric() || c == '_') => {
                heads.push(identifier(&group[i..]));
                expect_head = false;
            }
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn allowed_graph() -> BTreeMap<&'static str, Vec<&'static str>> {
    ALLOWED
        .iter()
        .map(|(module, targets)| (*module, targets.to_vec()))
        .collect()
}

/// The imports the production code of `sources` actually makes, per top-level module.
fn actual_graph(sources: &[Source]) -> BTreeMap<String, Vec<String>> {
    let modules: BTreeSet<&str> = ALLOWED.iter().map(|(module, _)| *module).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources {
        let path = file.path.to_string_lossy().replace('\\', "/");
        let Some(module) = top_level_module(&path) else {
            continue;
        };
        let code = without_comments(&file.text);
        let production = if file.test_only {
            String::new()
        } else {
            split_test_modules(&code).0
        };
        let targets = graph.entry(module.clone()).or_default();
        for target in crate_imports(&production) {
            if target != module && modules.contains(target.as_str()) {
                targets.insert(target);
            }
        }
    }
    graph
        .into_iter()
        .map(|(module, targets)| (module, targets.into_iter().collect()))
        .collect()
}

/// One line per module, `module -> a, b` (`module -> (nothing)` for a leaf), in name order.
fn render<K: AsRef<str>, V: AsRef<str>>(graph: &BTreeMap<K, Vec<V>>) -> String {
    let mut text = String::new();
    for (module, targets) in graph {
        let targets: Vec<&str> = targets.iter().map(AsRef::as_ref).collect();
        let targets = if targets.is_empty() {
            "(nothing)".to_owned()
        } else {
            targets.join(", ")
        };
        writeln!(text, "{:<9} -> {targets}", module.as_ref()).expect("writing to a String");
    }
    text
}

/// The ```text block after the `<!-- allowed-graph -->` line of ARCHITECTURE.md.
fn graph_block(markdown: &str) -> Option<String> {
    let after = markdown.split_once("<!-- allowed-graph -->\n")?.1;
    let body = after.strip_prefix("```text\n")?;
    let end = body.find("```")?;
    Some(body[..end].to_owned())
}

/// A module that reaches itself through the graph, if there is one.
fn cycle(graph: &BTreeMap<&str, Vec<&str>>) -> Option<&'static str> {
    fn reaches(
        graph: &BTreeMap<&str, Vec<&str>>,
        from: &str,
        goal: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        graph.get(from).into_iter().flatten().any(|next| {
            *next == goal || (seen.insert((*next).to_owned()) && reaches(graph, next, goal, seen))
        })
    }
    ALLOWED
        .iter()
        .map(|(module, _)| *module)
        .find(|module| reaches(graph, module, module, &mut BTreeSet::new()))
}
