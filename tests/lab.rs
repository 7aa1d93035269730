//! End-to-end tests in the network-namespace lab (scripts/lab), NAT: a real
//! client (curl, python) talks to the VIP, rvsd forwards through DPDK's
//! af_packet PMD, real HTTP/UDP servers answer. Needs root; CI runs as root.

mod common;

use common::{assert_clean, curl_from, extra_client_addresses, spread, Lab, Rvsd, SERIAL};

#[test]
fn rr_splits_forty_connections_evenly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "rr"]));
    let seen = spread(&lab, 40);
    let report = rvsd.stop();
    assert_eq!(seen.get("rs1"), Some(&20), "{seen:?}");
    assert_eq!(seen.get("rs2"), Some(&20), "{seen:?}");
    assert_clean(&report);
    assert!(report["conns_created"] >= 40);
    assert!(report["port.wan.rx_packets"] > 0 && report["port.lan.tx_packets"] > 0);
}

#[test]
fn wrr_three_to_one_gives_thirty_and_ten() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "wrr", "--weights", "3,1"]),
    );
    // Any 40 consecutive picks cover ten whole wrr cycles of A A A B.
    let seen = spread(&lab, 40);
    let report = rvsd.stop();
    assert_eq!(seen.get("rs1"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("rs2"), Some(&10), "{seen:?}");
    assert_clean(&report);
}

#[test]
fn sixteen_megabyte_download_arrives_intact() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(&lab, &lab.config(&["--scheduler", "wlc"]));
    let url = format!("http://{}/blob", lab.var("LAB_VIP"));
    let out = lab.exec(
        "client",
        &["sh", "-c", &format!("curl -s -f -m 60 '{url}' | sha256sum")],
    );
    let report = rvsd.stop();
    let digest = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        digest.split_whitespace().next(),
        Some(lab.var("LAB_BLOB_SHA256")),
        "sha256 of the download"
    );
    assert_clean(&report);
    // 16 MiB of 1500-byte frames passed from the LAN port to the WAN port.
    assert!(
        report["port.lan.rx_packets"] > 16 * 1024 * 1024 / 1500,
        "{report:?}"
    );
}

#[test]
fn udp_request_is_answered_from_the_vip() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    let rvsd = Rvsd::start(
        &lab,
        &lab.config(&["--scheduler", "rr", "--udp-scheduler", "rr"]),
    );
    let vip = lab.var("LAB_VIP").to_string();
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(5)\n\
         s.sendto(b'hello', ('{vip}', 53))\n\
         data, peer = s.recvfrom(2048)\n\
         print(peer[0], peer[1], data.decode())\n"
    );
    let out = lab.exec("client", &["python3", "-c", &script]);
    let report = rvsd.stop();
    assert!(
        out.status.success(),
        "UDP exchange failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(
        fields.first().copied(),
        Some(vip.as_str()),
        "reply source address: {answer}"
    );
    assert_eq!(
        fields.get(1).copied(),
        Some("53"),
        "reply source port: {answer}"
    );
    assert!(
        matches!(fields.get(2).copied(), Some("rs1" | "rs2")),
        "reply names a real server: {answer}"
    );
    assert_eq!(fields.get(3).copied(), Some("hello"), "{answer}");
    assert_clean(&report);
}

#[test]
fn two_workers_steer_each_flow_to_the_worker_that_owns_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(2);
    // Two worker lcores on this 2-CPU machine (the management lcore shares
    // CPU 0), two queue pairs per af_packet port (kernel fanout by hash).
    let config = lab
        .config(&["--scheduler", "rr"])
        .replace("lcores = \"0-1\"", "lcores = \"0@0,1@0,2@1\"")
        .replace(
            &format!("iface={}\"", lab.var("LAB_DIR_WAN_IF")),
            &format!("iface={},qpairs=2\"", lab.var("LAB_DIR_WAN_IF")),
        )
        .replace(
            &format!("iface={}\"", lab.var("LAB_DIR_LAN_IF")),
            &format!("iface={},qpairs=2\"", lab.var("LAB_DIR_LAN_IF")),
        );
    assert!(
        config.contains("qpairs=2") && config.contains("2@1"),
        "{config}"
    );
    let rvsd = Rvsd::start(&lab, &config);
    // 198.18.0.2 hashes to worker 1 and 198.18.0.3 to worker 0 (flow_owner).
    let client_b = extra_client_addresses(&lab).remove(0);
    for source in [lab.var("LAB_CLIENT_IP").to_string(), client_b.clone()] {
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20 {
            *seen.entry(curl_from(&lab, &source, 80)).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 2, "rr within the owning worker: {seen:?}");
    }
    let url = format!("http://{}/blob", lab.var("LAB_VIP"));
    let out = lab.exec(
        "client",
        &[
            "sh",
            "-c",
            &format!("curl -s -f -m 60 --interface {client_b} '{url}' | sha256sum"),
        ],
    );
    let report = rvsd.stop();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        Some(lab.var("LAB_BLOB_SHA256")),
        "sha256 of the download through two workers"
    );
    assert_clean(&report);
    assert_eq!(report["drop.steer_queue_full"], 0);
    assert_eq!(report["drop.no_connection"], 0, "{report:?}");
    assert!(report["worker.0.conns_created"] >= 20, "{report:?}");
    assert!(report["worker.1.conns_created"] >= 20, "{report:?}");
    // The kernel's fanout does not know about owners: some packets arrived
    // at the other worker and were passed on.
    assert!(
        report["worker.0.steered_out"] + report["worker.1.steered_out"] > 0,
        "{report:?}"
    );
}
