//! Test configurations as text: `state_dir` and the `[acme]` table against a CA, and
//! `[[certificate]]` tables answering http-01, so each test writes only what is its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::common::pebble::Pebble;

/// `state_dir` and an `[acme]` table for `directory`, trusted through `ca_file`.
pub fn acme_table(state_dir: &Path, directory: &str, ca_file: &Path) -> String {
    format!(
        "state_dir = {state:?}\n\n[acme]\ndirectory = {directory:?}\nca_file = {ca:?}\n\
         contact = [\"mailto:ops@certinel.test\"]\npoll_timeout = \"60s\"\n",
        state = state_dir.display().to_string(),
        ca = ca_file.display().to_string(),
    )
}

/// [`acme_table`] for `pebble` itself.
pub fn pebble_acme_table(state_dir: &Path, pebble: &Pebble) -> String {
    acme_table(state_dir, &pebble.directory_url, &pebble.api_root)
}

/// A `[[certificate]]` table `name` for `name.certinel.test`, answering http-01 on
/// `listen`; `extra` (whole lines) follows.
pub fn http01_certificate(name: &str, listen: SocketAddr, extra: &str) -> String {
    format!(
        "\n[[certificate]]\nname = {name:?}\ndns_names = [\"{name}.certinel.test\"]\n\
         challenge = {{ type = \"http-01\", listen = \"{listen}\" }}\n{extra}"
    )
}

/// Writes `text` to `dir/certinel.toml` and returns its path.
pub fn write_config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("certinel.toml");
    std::fs::write(&path, text).expect("write certinel.toml");
    path
}
