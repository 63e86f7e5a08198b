//! STARTTLS: each protocol's upgrade against a scripted plaintext server that then accepts
//! TLS, the refusals and garbage it must report, and PostgreSQL for real.

use std::time::Duration;

use certinel::config::model::StartTls;
use certinel::scan::starttls::{StartTlsError, upgrade};
use tokio::net::TcpStream;

use crate::common::plaintext_servers::{
    EVERY_STARTTLS, ScriptedServer, Step, TestCert, expect, handshake_leaf, send,
};
use crate::common::postgres::Postgres;

/// A guard against hangs: every exchange here completes in milliseconds.
const GUARD: Duration = Duration::from_secs(20);

const SMTP_EHLO: &[u8] = b"EHLO certinel.invalid\r\n";
const LDAP_START_TLS: &[u8] = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x161.3.6.1.4.1.1466.20037";
const POSTGRES_SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const XMPP_STARTTLS: &[u8] = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const CLIENT_SSL: u16 = 0x0800;
const CLIENT_PROTOCOL_41: u16 = 0x0200;

/// A protocol's upgrade against a scripted server that then accepts TLS.
struct Upgrade {
    /// What the case shows; printed when it fails.
    name: &'static str,
    protocol: StartTls,
    script: Vec<Step>,
}

/// Runs `upgrade` against the case's script; on success completes a TLS handshake and
/// asserts the scripted server's certificate is the one presented.
async fn check_upgrades(case: Upgrade) {
    let name = case.name;
    let cert = TestCert::localhost();
    let server = ScriptedServer::start(case.script, &cert).await;
    let outcome = tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        upgrade(&mut stream, case.protocol, "localhost").await?;
        Ok::<_, StartTlsError>(handshake_leaf(stream).await)
    })
    .await
    .unwrap_or_else(|_| panic!("{name}: upgrade and handshake did not finish"));
    let server_side = server.done.await.expect("server task");
    match outcome {
        Ok(Ok(leaf)) => assert_eq!(leaf, cert.der, "{name}: the scripted server's certificate"),
        Ok(Err(handshake)) => panic!("{name}: {handshake}; server: {server_side:?}"),
        Err(error) => panic!("{name}: upgrade failed: {error}; server: {server_side:?}"),
    }
    assert_eq!(server_side, Ok(()), "{name}");
}

/// Runs `upgrade` against `script` and returns its error, which it must produce in time;
/// `case` names the case when it does not.
async fn upgrade_error(case: &str, protocol: StartTls, script: Vec<Step>) -> StartTlsError {
    let cert = TestCert::localhost();
    let server = ScriptedServer::start(script, &cert).await;
    let outcome = tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        upgrade(&mut stream, protocol, "localhost").await
    })
    .await
    .unwrap_or_else(|_| panic!("{case}: upgrade did not give up in time"));
    match outcome {
        Ok(()) => panic!("{case}: upgrade succeeded against a server that should fail it"),
        Err(error) => error,
    }
}

/// A protocol's upgrade refused by a scripted server.
struct Refusal {
    /// What the case shows; printed when it fails.
    name: &'static str,
    protocol: StartTls,
    script: Vec<Step>,
    /// What the error message must contain, every one.
    fragments: &'static [&'static str],
}

/// Asserts the upgrade fails with a message containing every one of the case's fragments.
async fn check_refused(case: Refusal) {
    let error = upgrade_error(case.name, case.protocol, case.script)
        .await
        .to_string();
    for fragment in case.fragments {
        assert!(
            error.contains(fragment),
            "{}: {fragment:?} not in {error:?}",
            case.name
        );
    }
}

fn ldap_extended_response(result_code: u8, diagnostic: &[u8]) -> Vec<u8> {
    let mut operation = vec![0x0a, 0x01, result_code, 0x04, 0x00];
    operation.extend(ber(0x04, diagnostic));
    let mut message = vec![0x02, 0x01, 0x01];
    message.extend(ber(0x78, &operation));
    ber(0x30, &message)
}

/// A BER element, with a long-form length when the content needs it.
fn ber(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut encoded = vec![tag];
    match content.len() {
        short @ 0..0x80 => encoded.push(short as u8),
        long @ 0x80..0x100 => encoded.extend([0x81, long as u8]),
        long => encoded.extend([0x82, (long >> 8) as u8, long as u8]),
    }
    encoded.extend_from_slice(content);
    encoded
}

fn mysql_handshake(capabilities: u32) -> Vec<u8> {
    let mut payload = vec![10];
    payload.extend_from_slice(b"8.0.36-test\0");
    payload.extend_from_slice(&7u32.to_le_bytes());
    payload.extend_from_slice(b"abcdefgh\0");
    payload.extend_from_slice(&(capabilities as u16).to_le_bytes());
    payload.extend_from_slice(&[0x2d, 0x02, 0x00]);
    payload.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    payload.extend_from_slice(&[21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend(payload);
    packet
}

fn mysql_ssl_request_is_valid(packet: &[u8]) -> Result<(), String> {
    let flags = u16::from_le_bytes([packet[4], packet[5]]);
    let wanted = CLIENT_SSL | CLIENT_PROTOCOL_41;
    if packet[..4] != [32, 0, 0, 1] || flags & wanted != wanted {
        return Err(format!("bad SSL Request {packet:02x?}"));
    }
    Ok(())
}

/// An SMTP server that greets, offers STARTTLS in its EHLO reply and answers the
/// STARTTLS command with `reply`.
fn smtp_answering_starttls_with(reply: &'static str) -> Vec<Step> {
    vec![
        send("220 mx.localhost ESMTP\r\n"),
        expect(SMTP_EHLO),
        send("250-mx.localhost\r\n250 STARTTLS\r\n"),
        expect("STARTTLS\r\n"),
        send(reply),
    ]
}

fn xmpp_stream_header_names_localhost() -> Step {
    Step::ExpectUntil(b"'>".to_vec(), b"to='localhost'".to_vec())
}

const XMPP_FEATURES: &str = "<?xml version='1.0'?><stream:stream from='localhost' id='s1' \
    version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\
    <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
    <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>\
    </mechanisms></stream:features>";

#[tokio::test]
async fn each_protocol_upgrades_against_its_scripted_server() {
    let long_ldap_response = ldap_extended_response(0, &[b'x'; 300]);
    assert_eq!(
        long_ldap_response[1], 0x82,
        "the test response uses a two-octet length"
    );
    let cases = [
        Upgrade {
            name: "smtp after a multi-line greeting and EHLO",
            protocol: StartTls::Smtp,
            script: vec![
                send("220-mx.localhost ESMTP\r\n220 no UCE\r\n"),
                expect(SMTP_EHLO),
                send("250-mx.localhost\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
                expect("STARTTLS\r\n"),
                send("220 2.0.0 Ready to start TLS\r\n"),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "imap skipping untagged lines",
            protocol: StartTls::Imap,
            script: vec![
                send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"),
                expect("a1 STARTTLS\r\n"),
                send("* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK Begin TLS negotiation now\r\n"),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "pop3 with STLS",
            protocol: StartTls::Pop3,
            script: vec![
                send("+OK POP3 ready\r\n"),
                expect("STLS\r\n"),
                send("+OK Begin TLS negotiation\r\n"),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "ftp after a multi-line greeting with free text lines",
            protocol: StartTls::Ftp,
            script: vec![
                send("220-Welcome to the test FTP\r\n  no anonymous access\r\n220 ready\r\n"),
                expect("AUTH TLS\r\n"),
                send("234 AUTH TLS successful\r\n"),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "ldap on a success result",
            protocol: StartTls::Ldap,
            script: vec![
                expect(LDAP_START_TLS),
                send(ldap_extended_response(0, b"")),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "ldap parsing a long-form BER length",
            protocol: StartTls::Ldap,
            script: vec![expect(LDAP_START_TLS), send(long_ldap_response), Step::Tls],
        },
        Upgrade {
            name: "mysql with an SSL request packet",
            protocol: StartTls::Mysql,
            script: vec![
                send(mysql_handshake(
                    0x8000_0000 | u32::from(CLIENT_SSL | CLIENT_PROTOCOL_41),
                )),
                Step::ExpectWith(36, mysql_ssl_request_is_valid),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "xmpp after stream features offer starttls",
            protocol: StartTls::Xmpp,
            script: vec![
                xmpp_stream_header_names_localhost(),
                send(XMPP_FEATURES),
                expect(XMPP_STARTTLS),
                send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                Step::Tls,
            ],
        },
        Upgrade {
            name: "postgres (scripted) on S",
            protocol: StartTls::Postgres,
            script: vec![expect(POSTGRES_SSL_REQUEST), send("S"), Step::Tls],
        },
    ];
    for case in cases {
        check_upgrades(case).await;
    }
}

#[tokio::test]
async fn each_protocol_reports_a_refusal_with_what_the_server_said() {
    let mut mysql_error_packet = vec![0, 0, 0, 0, 0xff, 0x6a, 0x04];
    mysql_error_packet.extend_from_slice(b"Host '127.0.0.1' is not allowed to connect");
    mysql_error_packet[0] = (mysql_error_packet.len() - 4) as u8;
    let features_without_starttls = XMPP_FEATURES.replace("<required/>", "").replace(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></starttls>",
        "",
    );
    let xmpp_refusal = "<?xml version='1.0'?><stream:stream from='localhost' id='s2' version='1.0' \
        xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:error>\
        <host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
    let cases = [
        Refusal {
            name: "smtp: no STARTTLS in the EHLO reply",
            protocol: StartTls::Smtp,
            script: vec![
                send("220 mx.localhost ESMTP\r\n"),
                expect(SMTP_EHLO),
                send("250-mx.localhost\r\n250 SIZE 1000\r\n"),
            ],
            fragments: &[
                "smtp: expected a 250 reply to EHLO advertising STARTTLS",
                "250 SIZE 1000",
            ],
        },
        Refusal {
            name: "smtp: the STARTTLS command refused",
            protocol: StartTls::Smtp,
            script: smtp_answering_starttls_with("454 4.7.0 TLS not available\r\n"),
            fragments: &["a 220 reply to STARTTLS", "454 4.7.0 TLS not available"],
        },
        Refusal {
            name: "smtp: bytes sent after the final reply",
            protocol: StartTls::Smtp,
            script: smtp_answering_starttls_with("220 go ahead\r\n250 injected\r\n"),
            fragments: &["after its final plaintext reply", "250 injected"],
        },
        Refusal {
            name: "pop3: -ERR in reply to STLS",
            protocol: StartTls::Pop3,
            script: vec![
                send("+OK POP3 ready\r\n"),
                expect("STLS\r\n"),
                send("-ERR TLS not configured\r\n"),
            ],
            fragments: &["+OK in reply to STLS", "-ERR TLS not configured"],
        },
        Refusal {
            name: "imap: a tagged NO",
            protocol: StartTls::Imap,
            script: vec![
                send("* OK ready\r\n"),
                expect("a1 STARTTLS\r\n"),
                send("a1 NO STARTTLS disabled\r\n"),
            ],
            fragments: &["a1 NO STARTTLS disabled"],
        },
        Refusal {
            name: "ldap: a non-zero result code, with its name",
            protocol: StartTls::Ldap,
            script: vec![
                expect(LDAP_START_TLS),
                send(ldap_extended_response(53, b"TLS not configured")),
            ],
            fragments: &["resultCode 53 (unwillingToPerform)", "TLS not configured"],
        },
        Refusal {
            name: "mysql: a server without CLIENT_SSL",
            protocol: StartTls::Mysql,
            script: vec![send(mysql_handshake(u32::from(CLIENT_PROTOCOL_41)))],
            fragments: &["8.0.36-test does not offer SSL"],
        },
        Refusal {
            name: "mysql: the message of an error packet",
            protocol: StartTls::Mysql,
            script: vec![send(mysql_error_packet)],
            fragments: &["error 1130: Host '127.0.0.1' is not allowed to connect"],
        },
        Refusal {
            name: "xmpp: stream features without starttls",
            protocol: StartTls::Xmpp,
            script: vec![
                xmpp_stream_header_names_localhost(),
                send(features_without_starttls),
            ],
            fragments: &[
                "stream features offering <starttls>",
                "<stream:features><mechanisms",
            ],
        },
        Refusal {
            name: "xmpp: the stream error of a closed stream, quoted",
            protocol: StartTls::Xmpp,
            script: vec![xmpp_stream_header_names_localhost(), send(xmpp_refusal)],
            fragments: &["<stream:error><host-unknown"],
        },
        Refusal {
            name: "postgres (scripted): a server that does not accept SSL",
            protocol: StartTls::Postgres,
            script: vec![expect(POSTGRES_SSL_REQUEST), send("N")],
            fragments: &["server does not accept SSL"],
        },
    ];
    for case in cases {
        check_refused(case).await;
    }
}

#[tokio::test]
async fn every_protocol_quotes_garbage_from_the_server() {
    for protocol in EVERY_STARTTLS {
        let script = vec![send(b"\x00\xffGARBAGE\r\n")];
        let error = upgrade_error(&format!("{protocol:?}"), protocol, script)
            .await
            .to_string();
        assert!(error.contains(r"\x00\xffGARBAGE"), "{protocol:?}: {error}");
    }
}

#[tokio::test]
async fn a_megabyte_without_newline_or_marker_stops_at_the_plaintext_limit() {
    for protocol in [StartTls::Smtp, StartTls::Imap, StartTls::Xmpp] {
        let script = vec![send(vec![b'A'; 1 << 20])];
        let error = upgrade_error(&format!("{protocol:?}"), protocol, script)
            .await
            .to_string();
        assert!(
            error.contains("65536 bytes of plaintext"),
            "{protocol:?}: {error}"
        );
        assert!(
            error.len() < 400,
            "the error quotes a bounded excerpt: {error}"
        );
    }
}

#[tokio::test]
async fn real_postgres_upgrades_and_presents_its_configured_certificate() {
    let cert = TestCert::localhost();
    // Starting blocks this runtime's only thread, which has nothing else to run meanwhile.
    let postgres = Postgres::start_with_ssl(&cert);
    let leaf = tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(postgres.addr).await.expect("connect");
        upgrade(&mut stream, StartTls::Postgres, "localhost")
            .await
            .expect("postgres answers S");
        handshake_leaf(stream).await.expect("TLS handshake")
    })
    .await
    .expect("upgrade and handshake finish");
    assert_eq!(leaf, cert.der);
}

#[tokio::test]
async fn real_postgres_without_ssl_is_reported_as_not_accepting_ssl() {
    // Starting blocks this runtime's only thread, which has nothing else to run meanwhile.
    let postgres = Postgres::start_without_ssl();
    let error = tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(postgres.addr).await.expect("connect");
        upgrade(&mut stream, StartTls::Postgres, "localhost").await
    })
    .await
    .expect("postgres answers in time")
    .expect_err("postgres with ssl=off answers N");
    assert!(
        error.to_string().contains("server does not accept SSL"),
        "{error}"
    );
}
