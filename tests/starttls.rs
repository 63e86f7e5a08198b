//! STARTTLS: each protocol's upgrade against a scripted plaintext server that then accepts
//! TLS, the refusals and garbage it must report, and PostgreSQL for real.

use std::time::Duration;

use certinel::config::model::StartTls;
use certinel::scan::starttls::{StartTlsError, upgrade};
use tokio::net::TcpStream;

use crate::common::plaintext_servers::{
    ScriptedServer, Step, TestCert, expect, handshake_leaf, send,
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

/// Runs `upgrade` against `script`; on success completes a TLS handshake and asserts the
/// scripted server's certificate is the one presented.
async fn check_upgrades(protocol: StartTls, script: Vec<Step>) {
    let cert = TestCert::localhost();
    let server = ScriptedServer::start(script, &cert).await;
    let outcome = tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        upgrade(&mut stream, protocol, "localhost").await?;
        Ok::<_, StartTlsError>(handshake_leaf(stream).await)
    })
    .await
    .expect("upgrade and handshake finish");
    let server_side = server.done.await.expect("server task");
    match outcome {
        Ok(Ok(leaf)) => assert_eq!(leaf, cert.der, "the scripted server's certificate"),
        Ok(Err(handshake)) => panic!("{handshake}; server: {server_side:?}"),
        Err(error) => panic!("upgrade failed: {error}; server: {server_side:?}"),
    }
    assert_eq!(server_side, Ok(()));
}

/// Runs `upgrade` against `script` and returns its error, which it must produce in time.
async fn upgrade_error(protocol: StartTls, script: Vec<Step>) -> StartTlsError {
    let cert = TestCert::localhost();
    let server = ScriptedServer::start(script, &cert).await;
    let outcome = tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        upgrade(&mut stream, protocol, "localhost").await
    })
    .await
    .expect("upgrade gives up in time");
    match outcome {
        Ok(()) => panic!("upgrade succeeded against a server that should fail it"),
        Err(error) => error,
    }
}

/// Asserts the upgrade fails with a message containing every one of `fragments`.
async fn check_refused(protocol: StartTls, script: Vec<Step>, fragments: &[&str]) {
    let error = upgrade_error(protocol, script).await.to_string();
    for fragment in fragments {
        assert!(error.contains(fragment), "{fragment:?} not in {error:?}");
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
async fn smtp_upgrades_after_multiline_greeting_and_ehlo() {
    let script = vec![
        send("220-mx.localhost ESMTP\r\n220 no UCE\r\n"),
        expect(SMTP_EHLO),
        send("250-mx.localhost\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
        expect("STARTTLS\r\n"),
        send("220 2.0.0 Ready to start TLS\r\n"),
        Step::Tls,
    ];
    check_upgrades(StartTls::Smtp, script).await;
}

#[tokio::test]
async fn imap_upgrades_skipping_untagged_lines() {
    let script = vec![
        send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"),
        expect("a1 STARTTLS\r\n"),
        send("* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK Begin TLS negotiation now\r\n"),
        Step::Tls,
    ];
    check_upgrades(StartTls::Imap, script).await;
}

#[tokio::test]
async fn pop3_upgrades_with_stls() {
    let script = vec![
        send("+OK POP3 ready\r\n"),
        expect("STLS\r\n"),
        send("+OK Begin TLS negotiation\r\n"),
        Step::Tls,
    ];
    check_upgrades(StartTls::Pop3, script).await;
}

#[tokio::test]
async fn ftp_upgrades_after_multiline_greeting_with_free_text_lines() {
    let script = vec![
        send("220-Welcome to the test FTP\r\n  no anonymous access\r\n220 ready\r\n"),
        expect("AUTH TLS\r\n"),
        send("234 AUTH TLS successful\r\n"),
        Step::Tls,
    ];
    check_upgrades(StartTls::Ftp, script).await;
}

#[tokio::test]
async fn ldap_upgrades_on_success_result() {
    let script = vec![
        expect(LDAP_START_TLS),
        send(ldap_extended_response(0, b"")),
        Step::Tls,
    ];
    check_upgrades(StartTls::Ldap, script).await;
}

#[tokio::test]
async fn ldap_upgrade_parses_long_form_ber_lengths() {
    let response = ldap_extended_response(0, &[b'x'; 300]);
    assert_eq!(
        response[1], 0x82,
        "the test response uses a two-octet length"
    );
    let script = vec![expect(LDAP_START_TLS), send(response), Step::Tls];
    check_upgrades(StartTls::Ldap, script).await;
}

#[tokio::test]
async fn mysql_upgrades_with_an_ssl_request_packet() {
    let script = vec![
        send(mysql_handshake(
            0x8000_0000 | u32::from(CLIENT_SSL | CLIENT_PROTOCOL_41),
        )),
        Step::ExpectWith(36, mysql_ssl_request_is_valid),
        Step::Tls,
    ];
    check_upgrades(StartTls::Mysql, script).await;
}

#[tokio::test]
async fn xmpp_upgrades_after_stream_features_offer_starttls() {
    let script = vec![
        xmpp_stream_header_names_localhost(),
        send(XMPP_FEATURES),
        expect(XMPP_STARTTLS),
        send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        Step::Tls,
    ];
    check_upgrades(StartTls::Xmpp, script).await;
}

#[tokio::test]
async fn postgres_fake_upgrades_on_s() {
    let script = vec![expect(POSTGRES_SSL_REQUEST), send("S"), Step::Tls];
    check_upgrades(StartTls::Postgres, script).await;
}

#[tokio::test]
async fn smtp_refuses_server_without_starttls_in_ehlo() {
    let script = vec![
        send("220 mx.localhost ESMTP\r\n"),
        expect(SMTP_EHLO),
        send("250-mx.localhost\r\n250 SIZE 1000\r\n"),
    ];
    let fragments = [
        "smtp: expected a 250 reply to EHLO advertising STARTTLS",
        "250 SIZE 1000",
    ];
    check_refused(StartTls::Smtp, script, &fragments).await;
}

#[tokio::test]
async fn smtp_reports_a_refused_starttls_command() {
    let script = smtp_answering_starttls_with("454 4.7.0 TLS not available\r\n");
    let fragments = ["a 220 reply to STARTTLS", "454 4.7.0 TLS not available"];
    check_refused(StartTls::Smtp, script, &fragments).await;
}

#[tokio::test]
async fn smtp_refuses_bytes_sent_after_the_final_reply() {
    let script = smtp_answering_starttls_with("220 go ahead\r\n250 injected\r\n");
    let fragments = ["after its final plaintext reply", "250 injected"];
    check_refused(StartTls::Smtp, script, &fragments).await;
}

#[tokio::test]
async fn pop3_reports_err_reply_to_stls() {
    let script = vec![
        send("+OK POP3 ready\r\n"),
        expect("STLS\r\n"),
        send("-ERR TLS not configured\r\n"),
    ];
    let fragments = ["+OK in reply to STLS", "-ERR TLS not configured"];
    check_refused(StartTls::Pop3, script, &fragments).await;
}

#[tokio::test]
async fn imap_reports_a_tagged_no() {
    let script = vec![
        send("* OK ready\r\n"),
        expect("a1 STARTTLS\r\n"),
        send("a1 NO STARTTLS disabled\r\n"),
    ];
    check_refused(StartTls::Imap, script, &["a1 NO STARTTLS disabled"]).await;
}

#[tokio::test]
async fn ldap_reports_a_non_zero_result_code_with_its_name() {
    let script = vec![
        expect(LDAP_START_TLS),
        send(ldap_extended_response(53, b"TLS not configured")),
    ];
    let fragments = ["resultCode 53 (unwillingToPerform)", "TLS not configured"];
    check_refused(StartTls::Ldap, script, &fragments).await;
}

#[tokio::test]
async fn mysql_reports_a_server_without_client_ssl() {
    let script = vec![send(mysql_handshake(u32::from(CLIENT_PROTOCOL_41)))];
    check_refused(StartTls::Mysql, script, &["8.0.36-test does not offer SSL"]).await;
}

#[tokio::test]
async fn mysql_reports_the_message_of_an_error_packet() {
    let mut packet = vec![0, 0, 0, 0, 0xff, 0x6a, 0x04];
    packet.extend_from_slice(b"Host '127.0.0.1' is not allowed to connect");
    packet[0] = (packet.len() - 4) as u8;
    let fragments = ["error 1130: Host '127.0.0.1' is not allowed to connect"];
    check_refused(StartTls::Mysql, vec![send(packet)], &fragments).await;
}

#[tokio::test]
async fn xmpp_reports_features_without_starttls() {
    let features = XMPP_FEATURES.replace("<required/>", "").replace(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></starttls>",
        "",
    );
    let script = vec![xmpp_stream_header_names_localhost(), send(features)];
    let fragments = [
        "stream features offering <starttls>",
        "<stream:features><mechanisms",
    ];
    check_refused(StartTls::Xmpp, script, &fragments).await;
}

#[tokio::test]
async fn xmpp_quotes_the_stream_error_of_a_closed_stream() {
    let refusal = "<?xml version='1.0'?><stream:stream from='localhost' id='s2' version='1.0' \
        xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:error>\
        <host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
    let script = vec![xmpp_stream_header_names_localhost(), send(refusal)];
    check_refused(StartTls::Xmpp, script, &["<stream:error><host-unknown"]).await;
}

#[tokio::test]
async fn postgres_reports_a_server_that_does_not_accept_ssl() {
    let script = vec![expect(POSTGRES_SSL_REQUEST), send("N")];
    check_refused(StartTls::Postgres, script, &["server does not accept SSL"]).await;
}

#[tokio::test]
async fn every_protocol_quotes_garbage_from_the_server() {
    for protocol in [
        StartTls::Smtp,
        StartTls::Imap,
        StartTls::Pop3,
        StartTls::Ftp,
        StartTls::Ldap,
        StartTls::Postgres,
        StartTls::Mysql,
        StartTls::Xmpp,
    ] {
        let script = vec![send(b"\x00\xffGARBAGE\r\n")];
        let error = upgrade_error(protocol, script).await.to_string();
        assert!(error.contains(r"\x00\xffGARBAGE"), "{protocol:?}: {error}");
    }
}

#[tokio::test]
async fn a_megabyte_without_newline_or_marker_stops_at_the_plaintext_limit() {
    for protocol in [StartTls::Smtp, StartTls::Imap, StartTls::Xmpp] {
        let script = vec![send(vec![b'A'; 1 << 20])];
        let error = upgrade_error(protocol, script).await.to_string();
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
