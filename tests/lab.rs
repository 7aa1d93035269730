//! End-to-end tests in the network-namespace lab (scripts/lab), NAT: a real
//! client (curl, python) talks to the VIP, rvsd forwards through DPDK's
//! af_packet PMD, real HTTP/UDP servers answer. Needs root; CI runs as root.

mod common;

use common::{assert_clean, spread, Lab, Rvsd, SERIAL};

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
