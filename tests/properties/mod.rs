//! Property tests: arbitrary and mutated input never makes a parser or reader panic, hang or
//! buffer without bound. A fixed number of cases per property keeps CI fast;
//! `CERTINEL_FUZZ_CASES` asks for more (`scripts/fuzz` runs them long).

/// The configuration loader on arbitrary bytes, arbitrary TOML and mutated shipped configs.
mod config;
/// PEM/DER certificate files and chain inspection on mutated real chains.
mod files;
/// The real `/probe` route over loopback HTTP with arbitrary queries and headers.
mod probe_http;
/// The `/probe` query: target, module and hostname parameters and the scrape-timeout header.
mod probe_query;
/// Every STARTTLS reader against arbitrary server bytes over an in-memory stream.
mod starttls;
