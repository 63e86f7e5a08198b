//! The DNS messages dns-01 needs, built and sent by hickory: RFC 2136 updates signed with
//! TSIG, and plain CNAME, TXT, SOA, NS, address and CAA queries. One TCP connection per
//! operation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::ProtoError;
use hickory_client::proto::dnssec::DnsSecError;
use hickory_client::proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryTsigAlgorithm;
use hickory_client::proto::dnssec::tsig::TSigner;
use hickory_client::proto::op::{MessageFinalizer, ResponseCode};
use hickory_client::proto::rr::rdata::TXT;
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::tcp::TcpClientStream;
use hickory_client::{ClientError, ClientErrorKind};

use crate::acme::caa::CaaRecord;
use crate::cert::{Rfc2136Settings, TsigAlgorithm};

/// The deadline of one DNS request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The TTL of the TXT records we publish: short, so a retry is not hidden by caches.
const TXT_TTL: u32 = 60;
/// The clock difference the server may accept for our TSIG signatures (RFC 8945 advises
/// 300 seconds).
const TSIG_FUDGE: u16 = 300;

/// Why a DNS update or query failed; the hickory error, when there is one, is the source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// A name in the configuration or the challenge is not a DNS name.
    #[error("{text:?} is not a DNS name: {source}")]
    Name {
        text: String,
        #[source]
        source: ProtoError,
    },
    /// hickory cannot sign with the configured TSIG key.
    #[error("cannot sign with the TSIG key: {0}")]
    Signer(#[source] DnsSecError),
    /// No connection to the server.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: SocketAddr,
        #[source]
        source: ProtoError,
    },
    /// The server's answer to an update failed TSIG verification: it did not accept ours.
    #[error(
        "{server} did not accept the update's TSIG signature (its answer failed \
         verification: {text}); check tsig_key_name, tsig_key and tsig_algorithm"
    )]
    TsigRejected {
        server: SocketAddr,
        text: String,
        #[source]
        source: Box<ClientError>,
    },
    /// The update got no usable answer.
    #[error("update sent to {server} failed: {text}")]
    Update {
        server: SocketAddr,
        text: String,
        #[source]
        source: Box<ClientError>,
    },
    /// NOTAUTH to an update.
    #[error(
        "{server} refused the update (NOTAUTH): the TSIG key is unknown or wrong, or not \
         allowed to update zone {zone}; check tsig_key_name, tsig_key and tsig_algorithm"
    )]
    NotAuth { server: SocketAddr, zone: String },
    /// REFUSED to an update.
    #[error(
        "{server} refused the update (REFUSED): it does not allow this key to update zone {zone}"
    )]
    Refused { server: SocketAddr, zone: String },
    /// NOTZONE to an update.
    #[error("{server} says {fqdn} is not in zone {zone} (NOTZONE)")]
    NotZone {
        server: SocketAddr,
        fqdn: String,
        zone: String,
    },
    /// Another failure code to an update.
    #[error("{server} answered the update with {code}")]
    UpdateAnswer {
        server: SocketAddr,
        code: ResponseCode,
    },
    /// A query got no usable answer.
    #[error("{kind} query to {server} failed: {text}")]
    Query {
        kind: RecordType,
        server: SocketAddr,
        text: String,
        #[source]
        source: Box<ClientError>,
    },
    /// A failure code (other than NXDOMAIN) to a query.
    #[error("{server} answered the {kind} query with {code}")]
    QueryAnswer {
        server: SocketAddr,
        kind: RecordType,
        code: ResponseCode,
    },
}

/// Whether an update was to add or to remove the record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change {
    Add,
    Remove,
}

/// Adds or removes the TXT `value` at `fqdn` in the configured zone.
pub(crate) async fn update(
    settings: &Rfc2136Settings,
    fqdn: &str,
    value: &str,
    change: Change,
) -> Result<(), WireError> {
    let name = parse_name(fqdn)?;
    let zone = parse_name(&settings.zone)?;
    let key_name = parse_name(&settings.tsig_key_name)?;
    let signer = TSigner::new(
        settings.tsig_key.0.clone(),
        hickory_algorithm(settings.tsig_algorithm),
        key_name,
        TSIG_FUDGE,
    )
    .map_err(WireError::Signer)?;
    let mut client = connect(settings.server, Some(Arc::new(signer))).await?;
    let mut record = Record::from_rdata(name, TXT_TTL, RData::TXT(TXT::new(vec![value.into()])));
    record.set_dns_class(DNSClass::IN);
    let response = match change {
        Change::Add => client.append(record, zone, false).await,
        Change::Remove => client.delete_by_rdata(record, zone).await,
    }
    .map_err(|source| {
        let text = error_text(&source);
        let server = settings.server;
        // A server that rejects our signature answers unsigned (or with an empty MAC), and
        // hickory reports that as a failed verification of the answer.
        if looks_like_tsig_failure(&text) {
            WireError::TsigRejected {
                server,
                text,
                source: Box::new(source),
            }
        } else {
            WireError::Update {
                server,
                text,
                source: Box::new(source),
            }
        }
    })?;
    let server = settings.server;
    let zone = settings.zone.clone();
    match response.response_code() {
        ResponseCode::NoError => Ok(()),
        ResponseCode::NotAuth => Err(WireError::NotAuth { server, zone }),
        ResponseCode::Refused => Err(WireError::Refused { server, zone }),
        ResponseCode::NotZone => Err(WireError::NotZone {
            server,
            fqdn: fqdn.to_owned(),
            zone,
        }),
        code => Err(WireError::UpdateAnswer { server, code }),
    }
}

/// The CNAME target of `fqdn`, if `fqdn` is an alias, according to `server`.
pub(crate) async fn cname(server: SocketAddr, fqdn: &str) -> Result<Option<String>, WireError> {
    let answers = query(server, fqdn, RecordType::CNAME).await?;
    Ok(answers.into_iter().find_map(|data| match data {
        RData::CNAME(target) => Some(target.0.to_ascii().to_ascii_lowercase()),
        _ => None,
    }))
}

/// The TXT values at `fqdn` according to `server` (each record's strings joined).
pub(crate) async fn txt_values(server: SocketAddr, fqdn: &str) -> Result<Vec<String>, WireError> {
    let answers = query(server, fqdn, RecordType::TXT).await?;
    Ok(answers
        .into_iter()
        .filter_map(|data| match data {
            RData::TXT(txt) => Some(
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The zone that holds `fqdn` according to `server`, if its answer says: the owner of an
/// SOA record in the answer (`fqdn` is the apex) or in the authority section (the SOA a
/// negative or referral answer carries).
pub(crate) async fn soa_owner(server: SocketAddr, fqdn: &str) -> Result<Option<String>, WireError> {
    let (answers, authority) = query_sections(server, fqdn, RecordType::SOA).await?;
    Ok(answers
        .iter()
        .chain(authority.iter())
        .find(|record| record.record_type() == RecordType::SOA)
        .map(|record| record.name().to_ascii().to_ascii_lowercase()))
}

/// The name servers of `zone` (its NS records) according to `server`.
pub(crate) async fn ns_names(server: SocketAddr, zone: &str) -> Result<Vec<String>, WireError> {
    let answers = query(server, zone, RecordType::NS).await?;
    Ok(answers
        .into_iter()
        .filter_map(|data| match data {
            RData::NS(target) => Some(target.0.to_ascii().to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

/// The IPv4 and IPv6 addresses of `fqdn` according to `server`.
pub(crate) async fn addresses(server: SocketAddr, fqdn: &str) -> Result<Vec<IpAddr>, WireError> {
    let mut found = Vec::new();
    for kind in [RecordType::A, RecordType::AAAA] {
        for data in query(server, fqdn, kind).await? {
            match data {
                RData::A(address) => found.push(IpAddr::V4(address.0)),
                RData::AAAA(address) => found.push(IpAddr::V6(address.0)),
                _ => {}
            }
        }
    }
    Ok(found)
}

/// What a CAA query for one name found: its CAA records, or the name it is an alias of
/// when the server answered with a CNAME alone (its target is in another zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CaaAnswer {
    /// The CAA record set at the name (or at the end of its CNAME chain); may be empty.
    Records(Vec<CaaRecord>),
    /// `fqdn` is an alias of this name, whose records the server did not include.
    Alias(String),
}

/// The CAA records at `fqdn` according to `server`. An answer that follows a CNAME chain
/// inside the server's zones counts as the records of `fqdn` (RFC 8659 §3).
pub(crate) async fn caa_records(server: SocketAddr, fqdn: &str) -> Result<CaaAnswer, WireError> {
    let (answers, _) = query_sections(server, fqdn, RecordType::CAA).await?;
    let records: Vec<CaaRecord> = answers
        .iter()
        .filter_map(|record| match record.data() {
            RData::CAA(caa) => Some(CaaRecord {
                critical: caa.issuer_critical(),
                tag: caa.tag().as_str().to_owned(),
                value: String::from_utf8_lossy(caa.raw_value()).into_owned(),
            }),
            _ => None,
        })
        .collect();
    if !records.is_empty() {
        return Ok(CaaAnswer::Records(records));
    }
    // The last CNAME of the chain names where the records would be.
    let alias = answers.iter().rev().find_map(|record| match record.data() {
        RData::CNAME(target) => Some(target.0.to_ascii().to_ascii_lowercase()),
        _ => None,
    });
    Ok(alias.map_or(CaaAnswer::Records(Vec::new()), CaaAnswer::Alias))
}

/// The answer section's data for the records named `fqdn` (an empty list for NXDOMAIN).
async fn query(server: SocketAddr, fqdn: &str, kind: RecordType) -> Result<Vec<RData>, WireError> {
    let name = parse_name(fqdn)?;
    let (answers, _) = query_sections(server, fqdn, kind).await?;
    Ok(answers
        .into_iter()
        .filter(|record| record.name() == &name && record.record_type() == kind)
        .map(|record| record.data().clone())
        .collect())
}

/// The answer and authority sections of `server`'s answer (NOERROR or NXDOMAIN).
async fn query_sections(
    server: SocketAddr,
    fqdn: &str,
    kind: RecordType,
) -> Result<(Vec<Record>, Vec<Record>), WireError> {
    let name = parse_name(fqdn)?;
    let mut client = connect(server, None).await?;
    let response = client
        .query(name, DNSClass::IN, kind)
        .await
        .map_err(|source| WireError::Query {
            kind,
            server,
            text: error_text(&source),
            source: Box::new(source),
        })?;
    match response.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(WireError::QueryAnswer { server, kind, code }),
    }
    Ok((
        response.answers().to_vec(),
        response.name_servers().to_vec(),
    ))
}

async fn connect(
    server: SocketAddr,
    signer: Option<Arc<dyn MessageFinalizer>>,
) -> Result<Client, WireError> {
    let (stream, sender) = TcpClientStream::new(
        server,
        None,
        Some(REQUEST_TIMEOUT),
        TokioRuntimeProvider::new(),
    );
    let (client, background) = Client::with_timeout(stream, sender, REQUEST_TIMEOUT, signer)
        .await
        .map_err(|source| WireError::Connect { server, source })?;
    // The background task owns the connection; it ends when the client is dropped.
    tokio::spawn(background);
    Ok(client)
}

/// What went wrong: hickory's own text for protocol errors says only "proto error".
fn error_text(error: &ClientError) -> String {
    match error.kind() {
        ClientErrorKind::Proto(proto) => proto.to_string(),
        _ => error.to_string(),
    }
}

fn looks_like_tsig_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["tsig", "hmac", "signature", "mac "]
        .iter()
        .any(|word| text.contains(word))
}

fn parse_name(text: &str) -> Result<Name, WireError> {
    let mut name = Name::from_ascii(text).map_err(|source| WireError::Name {
        text: text.to_owned(),
        source,
    })?;
    name.set_fqdn(true);
    Ok(name)
}

fn hickory_algorithm(algorithm: TsigAlgorithm) -> HickoryTsigAlgorithm {
    match algorithm {
        TsigAlgorithm::HmacSha256 => HickoryTsigAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => HickoryTsigAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => HickoryTsigAlgorithm::HmacSha512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_response_verification_is_recognised_as_a_tsig_problem() {
        assert!(looks_like_tsig_failure(
            "Please file an issue to support truncated HMACs with TSIG"
        ));
        assert!(looks_like_tsig_failure(
            "tsig validation error: outdated response"
        ));
        assert!(!looks_like_tsig_failure("connection refused"));
        assert!(!looks_like_tsig_failure("request timed out"));
    }

    #[test]
    fn names_become_absolute() {
        assert_eq!(
            parse_name("example.com").unwrap().to_ascii(),
            "example.com."
        );
        assert!(parse_name("a..b").is_err());
    }
}
