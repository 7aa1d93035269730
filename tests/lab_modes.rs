//! End-to-end tests of direct routing, tunnelling, persistence, service
//! groups and one-packet scheduling in the namespace lab (scripts/lab), with
//! real clients and servers. Needs root; CI runs as root.
//!
//! dr and tun run in the lab's one-armed topology: client, director and real
//! servers share one segment, and the dr/tun servers answer the client
//! directly (tun servers through scripts/ipip-decap, this kernel having no
//! ipip module).

mod common;

use std::collections::HashMap;

use common::{assert_clean, curl_from, extra_client_addresses, spread, Lab, Rvsd, SERIAL};

fn one_armed(modes: &str) -> Lab {
    let servers = modes.split(',').count().to_string();
    Lab::up_with(&["--one-armed", "--servers", &servers, "--modes", modes])
}

/// The director forwarded the client's half only: nothing came back
/// through it from a real server.
fn assert_replies_bypassed(report: &HashMap<String, u64>, at_least: u64) {
    assert!(
        report["forwarded_to_servers"] >= at_least,
        "client packets forwarded: {report:?}"
    );
    assert_eq!(
        report["forwarded_to_clients"], 0,
        "a reply went through the director: {report:?}"
    );
}

#[test]
fn dr_one_armed_splits_forty_connections_and_replies_bypass_the_director() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = one_armed("dr,dr");
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "rr"]));
    let seen = spread(&lab, 40);
    let report = rvsd.stop();
    // The probe that found the VIP answering made one more connection.
    let total: usize = seen.values().sum();
    assert_eq!(total, 40);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.values().all(|&n| n == 20),
        "rr over two dr servers: {seen:?}"
    );
    assert_clean(&report);
    // Each connection: SYN, ACK, request, ACKs, FIN, ... all client → server.
    assert_replies_bypassed(&report, 40 * 4);
}

#[test]
fn tun_carries_a_sixteen_megabyte_download_through_the_decapsulator() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = one_armed("tun,tun");
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "rr"]));
    let seen = spread(&lab, 20);
    let url = format!("http://{}/blob", lab.var("LAB_VIP"));
    let out = lab.exec(
        "client",
        &["sh", "-c", &format!("curl -s -f -m 60 '{url}' | sha256sum")],
    );
    let report = rvsd.stop();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        Some(lab.var("LAB_BLOB_SHA256")),
        "sha256 of the download over tun"
    );
    assert_clean(&report);
    assert_replies_bypassed(&report, 20 * 4);
    assert_eq!(report["icmp_frag_needed_sent"], 0);
}

#[test]
fn one_service_mixes_nat_dr_and_tun_servers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = one_armed("nat,dr,tun");
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "rr"]));
    let seen = spread(&lab, 30);
    let report = rvsd.stop();
    for rs in ["rs1", "rs2", "rs3"] {
        assert_eq!(seen.get(rs), Some(&10), "{seen:?}");
    }
    assert_clean(&report);
    // Only the nat server's replies come back through the director.
    assert!(report["forwarded_to_clients"] > 0, "{report:?}");
    assert!(report["forwarded_to_servers"] > report["forwarded_to_clients"]);
}

#[test]
fn persistence_keeps_a_client_and_its_netmask_neighbours_on_one_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let client = lab.var("LAB_CLIENT_IP").to_string();
    let mut clients = vec![client.clone()];
    clients.extend(extra_client_addresses(&lab));

    // /32: one client's 30 connections on one server, the four clients spread.
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--persistence", "300"]),
    );
    let first = curl_from(&lab, &client, 80);
    for _ in 0..29 {
        assert_eq!(curl_from(&lab, &client, 80), first);
    }
    let per_client: Vec<String> = clients.iter().map(|c| curl_from(&lab, c, 80)).collect();
    // rvsadm --persistent-conn: one template per client address, on its server.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg("--socket")
        .arg(Rvsd::socket(&lab))
        .args(["-L", "-n", "--persistent-conn"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let templates: u64 = listing
        .lines()
        .filter(|l| l.contains(":80 ") && l.trim_start().starts_with("->"))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(templates, clients.len() as u64, "{listing}");
    let report = rvsd.stop();
    assert_clean(&report);
    assert_eq!(per_client[0], first);
    assert!(
        per_client.iter().any(|s| *s != first),
        "/32 persistence spreads clients: {per_client:?}"
    );

    // /24: all four clients share one template, so one server.
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--persistence", "300/255.255.255.0"]),
    );
    let servers: Vec<String> = (0..3)
        .flat_map(|_| clients.iter().map(|c| curl_from(&lab, c, 80)))
        .collect();
    let report = rvsd.stop();
    assert_clean(&report);
    assert!(
        servers.iter().all(|s| *s == servers[0]),
        "/24 persistence: {servers:?}"
    );
}

/// One HTTP request from `source` whose connection the client then resets
/// (SO_LINGER 0), so the director's connection closes in 10 s instead of
/// TIME_WAIT's 120 (and stops holding the persistence template).
fn request_and_reset(lab: &Lab, source: &str) -> String {
    let vip = lab.var("LAB_VIP");
    let script = format!(
        "import socket, struct\n\
         s = socket.create_connection(('{vip}', 80), timeout=5, source_address=('{source}', 0))\n\
         s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   chunk = s.recv(4096)\n\
         \x20   if not chunk: break\n\
         \x20   data += chunk\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
         s.close()\n\
         print(data.split(b'\\r\\n\\r\\n', 1)[1].decode().strip())\n"
    );
    let out = lab.exec("client", &["python3", "-c", &script]);
    assert!(
        out.status.success(),
        "request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn persistence_template_times_out_and_the_client_is_scheduled_anew() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    // rr, 2 s templates.
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--persistence", "2"]),
    );
    // Not the address of Rvsd::start's probe, whose connection lingers in
    // TIME_WAIT and holds its own template.
    let client = extra_client_addresses(&lab).remove(0);
    let first = request_and_reset(&lab, &client);
    for _ in 0..4 {
        assert_eq!(
            request_and_reset(&lab, &client),
            first,
            "within the template"
        );
    }
    // Closed connections last 10 s, then the idle template expires.
    std::thread::sleep(std::time::Duration::from_secs(14));
    let after = request_and_reset(&lab, &client);
    let report = rvsd.stop();
    assert_clean(&report);
    assert_ne!(after, first, "rr's next server once the template is gone");
}

#[test]
fn group_sends_a_clients_http_and_https_to_one_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let mut clients = vec![lab.var("LAB_CLIENT_IP").to_string()];
    clients.extend(extra_client_addresses(&lab));
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--group", "--persistence", "300"]),
    );
    let mut servers = Vec::new();
    for round in 0..3 {
        for c in &clients {
            let http = curl_from(&lab, c, 80);
            let https = curl_from(&lab, c, 443);
            assert_eq!(http, https, "client {c}, round {round}");
            servers.push(http);
        }
    }
    let report = rvsd.stop();
    assert_clean(&report);
    assert!(
        servers.iter().any(|s| *s != servers[0]),
        "clients spread over the group's servers: {servers:?}"
    );
}

#[test]
fn one_packet_spreads_a_hundred_datagrams_from_one_socket() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--udp-scheduler", "rr", "--one-packet"]),
    );
    let vip = lab.var("LAB_VIP");
    let script = format!(
        "import socket, collections\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(5)\n\
         seen = collections.Counter()\n\
         for i in range(100):\n\
         \x20   s.sendto(b'q%d' % i, ('{vip}', 53))\n\
         \x20   data, peer = s.recvfrom(2048)\n\
         \x20   assert peer == ('{vip}', 53), peer\n\
         \x20   seen[data.split()[0].decode()] += 1\n\
         print(seen['rs1'], seen['rs2'])\n"
    );
    let out = lab.exec("client", &["python3", "-c", &script]);
    let report = rvsd.stop();
    assert!(
        out.status.success(),
        "UDP exchange: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "50 50");
    assert_eq!(report["one_packet_scheduled"], 100);
    assert_clean(&report);
}
