//! Name resolution: a hosts-file override, then the system resolver; every A/AAAA address.

use std::net::IpAddr;
use std::path::Path;

use crate::config::model::{Host, IpFamily, ResolveMode};
use crate::scan::probe::ProbeError;

/// Resolves endpoint hosts to the addresses to probe.
#[derive(Debug, Clone, Default)]
pub struct Resolver {}

impl Resolver {
    /// The system resolver with no overrides.
    pub fn system() -> Resolver {
        todo!("probe helper")
    }

    /// The system resolver, with names in `path` (hosts-file format) answered from it.
    pub fn with_hosts_file(path: &Path) -> std::io::Result<Resolver> {
        let _ = path;
        todo!("probe helper")
    }

    /// The addresses of `host` to probe, filtered by family and mode, in resolver order.
    pub async fn resolve(
        &self,
        host: &Host,
        family: IpFamily,
        mode: ResolveMode,
    ) -> Result<Vec<IpAddr>, ProbeError> {
        let _ = (host, family, mode);
        todo!("probe helper")
    }
}
