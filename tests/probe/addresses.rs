//! Names with several addresses, IPv6 literals, and whole sweeps.

use super::*;

#[tokio::test]
async fn name_on_two_addresses_serving_different_leaves_is_reported_as_disagreeing() {
    let pki = test_pki();
    let first_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let second_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let (first_listener, second_listener) = bind_pair(first_ip, second_ip).await;
    let port = first_listener.local_addr().expect("bound address").port();
    let first_leaf = pki.leaf(Validity::current_for_days(60));
    let second_leaf = pki.leaf(Validity::current_for_days(20));
    let _first = spawn_tls(
        first_listener,
        ServerOptions::new(pki.chain_with(&first_leaf), first_leaf.key.clone_key()).acceptor(),
    );
    let _second = spawn_tls(
        second_listener,
        ServerOptions::new(pki.chain_with(&second_leaf), second_leaf.key.clone_key()).acceptor(),
    );
    let hosts = write_pem(
        pki.dir.path(),
        "hosts",
        &format!("# test hosts file\n{first_ip} {NAME}\n{second_ip} {NAME}\n"),
    );
    let ctx = ProbeContext::new(
        Resolver::with_hosts_file(&hosts).expect("hosts file"),
        TrustCache::empty(),
        ConnectionBudget::new(256),
    );
    let target = Target {
        host: Host::Name(NAME.to_string()),
        port,
    };
    let mut endpoint = Endpoint::new(target, Duration::from_secs(5));
    endpoint.probe.ca_file = Some(pki.ca_file.clone());

    let report = probe_endpoint(&endpoint, &ctx).await;

    let ips: Vec<IpAddr> = report.addresses.iter().map(|address| address.ip).collect();
    assert_eq!(ips, vec![first_ip, second_ip]);
    let handshakes: Vec<&Handshake> = report
        .addresses
        .iter()
        .map(|address| address.outcome.as_ref().expect("handshake"))
        .collect();
    for (handshake, leaf) in handshakes.iter().zip([&first_leaf, &second_leaf]) {
        check(handshake, Expect::leaf_first(true, None, leaf.not_after));
    }
    assert_ne!(
        handshakes[0].chain.leaf().fingerprint_sha256,
        handshakes[1].chain.leaf().fingerprint_sha256
    );
    assert!(report.addresses_disagree);

    endpoint.probe.resolve = ResolveMode::First;
    let first_only = probe_endpoint(&endpoint, &ctx).await;
    assert_eq!(first_only.addresses.len(), 1);
    assert!(!first_only.addresses_disagree);
}

#[tokio::test]
async fn ipv6_loopback_literal_is_probed_without_sni_and_verified_by_ip() {
    let pki = test_pki();
    let ipv6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    // This machine has ::1 on lo: failing to bind it is a broken environment, not a skip.
    let listener = bind(ipv6).await;
    let leaf = pki.intermediate.leaf(&LeafSpec::new(&["::1"]));
    let server = spawn_tls(
        listener,
        ServerOptions::new(pki.chain_with(&leaf), leaf.key.clone_key()).acceptor(),
    );
    let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
    endpoint.probe.sni = None;
    endpoint.probe.ip_family = IpFamily::Ipv6;

    let report = probe(&endpoint).await;

    assert_eq!(report.addresses[0].ip, ipv6);
    check(
        only_handshake(&report),
        Expect::leaf_first(true, None, leaf.not_after),
    );
}

#[tokio::test]
async fn sweep_of_200_endpoints_with_concurrency_16_returns_every_result_in_order() {
    let pki = test_pki();
    let leaf = pki.intermediate.leaf(&LeafSpec::new(&["*.sweep.test"]));
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let closed = {
        let listener = bind(LOCALHOST).await;
        listener.local_addr().expect("bound address")
    };
    let endpoints: Vec<Endpoint> = (0..200)
        .map(|index| {
            // Every tenth endpoint points at a closed port: failures must not disturb order.
            let addr = if index % 10 == 9 { closed } else { server.addr };
            let mut endpoint = endpoint_at(addr, &pki.ca_file);
            endpoint.probe.sni = Some(format!("host{index}.sweep.test"));
            endpoint
        })
        .collect();
    let progress = Mutex::new(Vec::new());

    let reports = sweep_endpoints(&endpoints, Arc::new(context()), 16, &|done, total| {
        progress.lock().expect("progress lock").push((done, total))
    })
    .await;

    assert_eq!(reports.len(), 200);
    for (index, (report, endpoint)) in reports.iter().zip(&endpoints).enumerate() {
        assert_eq!(&report.endpoint, endpoint, "report {index} out of place");
        if index % 10 == 9 {
            assert_eq!(only_error(report).keyword(), "connect");
        } else {
            check(
                only_handshake(report),
                Expect::leaf_first(true, None, leaf.not_after),
            );
        }
    }
    let progress = progress.into_inner().expect("progress lock");
    assert_eq!(progress.len(), 200);
    assert_eq!(progress.last(), Some(&(200, 200)));
}
