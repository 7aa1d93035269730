//! Golden packet tests (Katran's style): rvsd runs on a `net_pcap` vdev, reads
//! a crafted input pcap, and what it transmits is compared frame by frame with
//! frames built independently from `Repr`s (so every checksum in the expected
//! frames is a full recomputation, and the incremental updates must match it).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rvs::addr::MacAddr;
use rvs::pcap;
use rvs::wire::tcp::flags;
use rvs::wire::{
    build_arp_frame, build_icmp_frame, build_tcp_frame, build_udp_frame, ArpOperation, ArpRepr,
    EtherType, EthernetRepr, IcmpRepr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpRepr, UdpRepr,
};

const DIRECTOR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const RS1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x12]);
const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
const DIRECTOR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RS1_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
const RS2_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 12);

/// `[dpdk]` and the one port, reading `input` and writing `output`, with
/// `port_extra` lines in the port's table.
fn director(input: &Path, output: &Path, port_extra: &str) -> String {
    format!(
        r#"
[dpdk]
lcores = "0-1"
memory_mb = 256
mbufs = 4095
args = ["--no-shconf", "--log-level=warning"]

[control]
socket = "{socket}"

[[port]]
name = "one"
vdev = "net_pcap0,rx_pcap={input},tx_pcap={output}"
mac = "{DIRECTOR_MAC}"
addresses = ["198.18.0.1/24", "198.19.0.1/24"]
{port_extra}static_neighbors = [
  {{ address = "{CLIENT_IP}", mac = "{CLIENT_MAC}" }},
  {{ address = "{RS1_IP}", mac = "{RS1_MAC}" }},
  {{ address = "{RS2_IP}", mac = "{RS2_MAC}" }},
]
"#,
        input = input.display(),
        output = output.display(),
        // Each run has its own control socket, so the tests can run at once.
        socket = output.with_extension("sock").display()
    )
}

fn config(input: &Path, output: &Path) -> String {
    director(input, output, "")
        + &format!(
            r#"
[[service]]
protocol = "tcp"
address = "{VIP}:80"
scheduler = "rr"
[[service.server]]
address = "{RS1_IP}:8080"
forward = "nat"
[[service.server]]
address = "{RS2_IP}:8080"
forward = "nat"

[[service]]
protocol = "udp"
address = "{VIP}:53"
scheduler = "rr"
[[service.server]]
address = "{RS1_IP}:53"
forward = "nat"
[[service.server]]
address = "{RS2_IP}:53"
forward = "nat"
"#
        )
}

fn eth(src: MacAddr, dst: MacAddr) -> EthernetRepr {
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EtherType::Ipv4,
    }
}

fn ip(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::Tcp,
        payload_len: 0,
        ttl,
        ident: 0x1234,
        dont_frag: true,
    }
}

fn tcp(src_port: u16, dst_port: u16, flag_bits: u8, payload: &[u8]) -> TcpRepr<'_> {
    TcpRepr {
        src_port,
        dst_port,
        seq_number: 1000,
        ack_number: if flag_bits & flags::ACK != 0 { 2000 } else { 0 },
        flags: flag_bits,
        window_len: 64240,
        max_seg_size: if flag_bits & flags::SYN != 0 {
            Some(1460)
        } else {
            None
        },
        window_scale: None,
        sack_permitted: false,
        timestamp: None,
        payload,
    }
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    build_arp_frame(
        &EthernetRepr {
            src_addr: CLIENT_MAC,
            dst_addr: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        },
        &ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: CLIENT_MAC,
            source_protocol_addr: CLIENT_IP,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: target,
        },
    )
}

fn arp_reply(from: Ipv4Addr) -> Vec<u8> {
    build_arp_frame(
        &EthernetRepr {
            src_addr: DIRECTOR_MAC,
            dst_addr: CLIENT_MAC,
            ethertype: EtherType::Arp,
        },
        &ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: DIRECTOR_MAC,
            source_protocol_addr: from,
            target_hardware_addr: CLIENT_MAC,
            target_protocol_addr: CLIENT_IP,
        },
    )
}

struct Case {
    what: &'static str,
    input: Vec<u8>,
    /// The frame rvsd must transmit for this input, or None if it must drop it.
    expected: Option<Vec<u8>>,
}

fn cases() -> Vec<Case> {
    let ping = b"rvs golden ping!";
    let http = b"GET / HTTP/1.1\r\n\r\n";
    let dns = b"query";
    let answer = b"rs1 query";
    let mut bad_checksum = build_tcp_frame(
        &eth(CLIENT_MAC, DIRECTOR_MAC),
        &ip(CLIENT_IP, VIP, 64),
        &tcp(40003, 80, flags::SYN, &[]),
    );
    bad_checksum[14 + 10] ^= 0xff; // IPv4 header checksum
    let mut truncated = build_tcp_frame(
        &eth(CLIENT_MAC, DIRECTOR_MAC),
        &ip(CLIENT_IP, VIP, 64),
        &tcp(40004, 80, flags::SYN, &[]),
    );
    truncated.truncate(14 + 12);
    let mut ipv6 = build_udp_frame(
        &eth(CLIENT_MAC, DIRECTOR_MAC),
        &ip(CLIENT_IP, VIP, 64),
        &UdpRepr {
            src_port: 1,
            dst_port: 53,
            payload: dns,
        },
    );
    ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());

    vec![
        Case {
            what: "ARP request for the VIP",
            input: arp_request(VIP),
            expected: Some(arp_reply(VIP)),
        },
        Case {
            what: "ARP request for the director",
            input: arp_request(DIRECTOR_IP),
            expected: Some(arp_reply(DIRECTOR_IP)),
        },
        Case {
            what: "ARP request for someone else",
            input: arp_request(Ipv4Addr::new(198, 18, 0, 77)),
            expected: None,
        },
        Case {
            what: "ICMP echo to the VIP",
            input: build_icmp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &Ipv4Repr {
                    protocol: IpProtocol::Icmp,
                    ..ip(CLIENT_IP, VIP, 64)
                },
                &IcmpRepr::EchoRequest {
                    ident: 7,
                    seq_no: 1,
                    data: ping,
                },
            ),
            expected: Some(build_icmp_frame(
                &eth(DIRECTOR_MAC, CLIENT_MAC),
                &Ipv4Repr {
                    protocol: IpProtocol::Icmp,
                    ..ip(VIP, CLIENT_IP, 64)
                },
                &IcmpRepr::EchoReply {
                    ident: 7,
                    seq_no: 1,
                    data: ping,
                },
            )),
        },
        Case {
            what: "SYN to the VIP is DNAT'd to rs1",
            input: build_tcp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &ip(CLIENT_IP, VIP, 64),
                &tcp(40000, 80, flags::SYN, &[]),
            ),
            expected: Some(build_tcp_frame(
                &eth(DIRECTOR_MAC, RS1_MAC),
                &ip(CLIENT_IP, RS1_IP, 63),
                &tcp(40000, 8080, flags::SYN, &[]),
            )),
        },
        Case {
            what: "SYN-ACK from rs1 is SNAT'd to the VIP",
            input: build_tcp_frame(
                &eth(RS1_MAC, DIRECTOR_MAC),
                &ip(RS1_IP, CLIENT_IP, 64),
                &tcp(8080, 40000, flags::SYN | flags::ACK, &[]),
            ),
            expected: Some(build_tcp_frame(
                &eth(DIRECTOR_MAC, CLIENT_MAC),
                &ip(VIP, CLIENT_IP, 63),
                &tcp(80, 40000, flags::SYN | flags::ACK, &[]),
            )),
        },
        Case {
            what: "data of the connection follows it to rs1",
            input: build_tcp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &ip(CLIENT_IP, VIP, 64),
                &tcp(40000, 80, flags::ACK | flags::PSH, http),
            ),
            expected: Some(build_tcp_frame(
                &eth(DIRECTOR_MAC, RS1_MAC),
                &ip(CLIENT_IP, RS1_IP, 63),
                &tcp(40000, 8080, flags::ACK | flags::PSH, http),
            )),
        },
        Case {
            what: "non-SYN to the VIP without a connection is dropped",
            input: build_tcp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &ip(CLIENT_IP, VIP, 64),
                &tcp(40001, 80, flags::ACK, &[]),
            ),
            expected: None,
        },
        Case {
            what: "UDP to the VIP is DNAT'd to rs1",
            input: build_udp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &ip(CLIENT_IP, VIP, 64),
                &UdpRepr {
                    src_port: 5353,
                    dst_port: 53,
                    payload: dns,
                },
            ),
            expected: Some(build_udp_frame(
                &eth(DIRECTOR_MAC, RS1_MAC),
                &ip(CLIENT_IP, RS1_IP, 63),
                &UdpRepr {
                    src_port: 5353,
                    dst_port: 53,
                    payload: dns,
                },
            )),
        },
        Case {
            what: "UDP reply from rs1 comes from the VIP",
            input: build_udp_frame(
                &eth(RS1_MAC, DIRECTOR_MAC),
                &ip(RS1_IP, CLIENT_IP, 64),
                &UdpRepr {
                    src_port: 53,
                    dst_port: 5353,
                    payload: answer,
                },
            ),
            expected: Some(build_udp_frame(
                &eth(DIRECTOR_MAC, CLIENT_MAC),
                &ip(VIP, CLIENT_IP, 63),
                &UdpRepr {
                    src_port: 53,
                    dst_port: 5353,
                    payload: answer,
                },
            )),
        },
        Case {
            what: "bad IPv4 header checksum is dropped",
            input: bad_checksum,
            expected: None,
        },
        Case {
            what: "truncated IPv4 header is dropped",
            input: truncated,
            expected: None,
        },
        Case {
            what: "TTL 1 is dropped",
            input: build_tcp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &ip(CLIENT_IP, VIP, 1),
                &tcp(40005, 80, flags::SYN, &[]),
            ),
            expected: None,
        },
        Case {
            what: "the next SYN goes to rs2 (rr)",
            input: build_tcp_frame(
                &eth(CLIENT_MAC, DIRECTOR_MAC),
                &ip(CLIENT_IP, VIP, 64),
                &tcp(40002, 80, flags::SYN, &[]),
            ),
            expected: Some(build_tcp_frame(
                &eth(DIRECTOR_MAC, RS2_MAC),
                &ip(CLIENT_IP, RS2_IP, 63),
                &tcp(40002, 8080, flags::SYN, &[]),
            )),
        },
        Case {
            what: "a frame for another station's MAC is dropped",
            input: build_tcp_frame(
                &eth(CLIENT_MAC, OTHER_MAC),
                &ip(CLIENT_IP, VIP, 64),
                &tcp(40006, 80, flags::SYN, &[]),
            ),
            expected: None,
        },
        Case {
            what: "IPv6 is dropped",
            input: ipv6,
            expected: None,
        },
    ]
}

/// Drop counters the input above must produce (name, count).
const EXPECTED_DROPS: &[(&str, u64)] = &[
    ("arp_not_for_us", 1),
    ("no_connection", 1),
    ("bad_ip_checksum", 1),
    ("malformed", 1),
    ("ttl_exceeded", 1),
    ("foreign_mac", 1),
    ("unsupported_ethertype", 1),
];

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvs-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs rvsd over `frames` until it has received them all; returns what it
/// transmitted and its exit report.
fn run_rvsd(
    name: &str,
    frames: &[Vec<u8>],
    config: impl Fn(&Path, &Path) -> String,
) -> (Vec<Vec<u8>>, Vec<(String, String)>) {
    let dir = scratch_dir(name);
    let input = dir.join("in.pcap");
    let output = dir.join("out.pcap");
    let conf = dir.join("rvsd.toml");
    pcap::write(std::fs::File::create(&input).unwrap(), frames).unwrap();
    std::fs::write(&conf, config(&input, &output)).unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rvsd");
    // net_pcap reads the whole file at once; give the worker time to drain it.
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(started.elapsed() < Duration::from_secs(60));
    // SAFETY-free signalling through the kill command keeps this test simple.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rvsd failed: {:?}\n{stderr}",
        out.status
    );
    let report: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let sent = pcap::read(std::fs::File::open(&output).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (sent, report)
}

fn value(report: &[(String, String)], key: &str) -> u64 {
    report
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key} missing from rvsd's report: {report:?}"))
        .1
        .parse()
        .unwrap()
}

/// Says which field differs, for a readable failure.
fn describe_difference(got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let field = match first {
        0..=5 => "Ethernet destination",
        6..=11 => "Ethernet source",
        12..=13 => "EtherType",
        22 => "IPv4 TTL",
        24..=25 => "IPv4 header checksum",
        26..=29 => "IPv4 source",
        30..=33 => "IPv4 destination",
        14..=33 => "IPv4 header",
        34..=35 => "L4 source port",
        36..=37 => "L4 destination port",
        _ => "L4 header or payload (checksum?)",
    };
    format!(
        "lengths {} vs {}, first difference at byte {first} ({field})",
        got.len(),
        want.len()
    )
}

#[test]
fn golden_nat_arp_icmp_and_drops() {
    let cases = cases();
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.input.clone()).collect();
    let (sent, report) = run_rvsd("golden", &frames, config);

    assert_eq!(
        value(&report, "port.one.rx_packets"),
        frames.len() as u64,
        "rvsd did not receive every input frame"
    );
    let expected: Vec<(&str, &Vec<u8>)> = cases
        .iter()
        .filter_map(|c| c.expected.as_ref().map(|e| (c.what, e)))
        .collect();
    for (i, ((what, want), got)) in expected.iter().zip(&sent).enumerate() {
        assert!(
            got == *want,
            "output frame {i} ({what}): {}\n got: {got:02x?}\nwant: {want:02x?}",
            describe_difference(got, want)
        );
        // Independent of the expected bytes: every IPv4 header checksum is valid.
        if got[12..14] == [0x08, 0x00] {
            assert!(
                Ipv4Packet::new_checked(&got[14..])
                    .unwrap()
                    .verify_checksum(),
                "frame {i} ({what})"
            );
        }
    }
    assert_eq!(sent.len(), expected.len(), "number of transmitted frames");
    assert_eq!(value(&report, "port.one.tx_packets"), expected.len() as u64);
    for &(reason, count) in EXPECTED_DROPS {
        assert_eq!(
            value(&report, &format!("drop.{reason}")),
            count,
            "drop.{reason}"
        );
    }
    let total_drops: u64 = report
        .iter()
        .filter(|(k, _)| k.starts_with("drop."))
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        total_drops,
        EXPECTED_DROPS.iter().map(|d| d.1).sum::<u64>(),
        "unexpected drops: {report:?}"
    );
    assert_eq!(value(&report, "conns_created"), 3);
}

/// One port (mtu 1200); VIP:80 by rr over rs1 (dr) and rs2 (tun).
fn dr_tun_config(input: &Path, output: &Path) -> String {
    director(input, output, "mtu = 1200\n")
        + &format!(
            r#"
[[service]]
protocol = "tcp"
address = "{VIP}:80"
scheduler = "rr"
[[service.server]]
address = "{RS1_IP}"
forward = "dr"
[[service.server]]
address = "{RS2_IP}:80"
forward = "tun"
"#
        )
}

fn dr_tun_cases() -> Vec<Case> {
    let from_client = |sport: u16, flag_bits: u8, payload: &[u8]| {
        build_tcp_frame(
            &eth(CLIENT_MAC, DIRECTOR_MAC),
            &ip(CLIENT_IP, VIP, 64),
            &tcp(sport, 80, flag_bits, payload),
        )
    };
    // Only the MACs change: the frame as the client sent it, re-addressed.
    let dr = |frame: Vec<u8>| {
        let mut out = frame;
        out[0..6].copy_from_slice(&RS1_MAC.0);
        out[6..12].copy_from_slice(&DIRECTOR_MAC.0);
        out
    };
    // The outer header, rebuilt from a repr: from the director's address on
    // rs2's prefix, ident/TTL/DF of the inner packet, protocol 4.
    let ipip = |frame: Vec<u8>| {
        let inner = &frame[14..];
        rvs::wire::build_ipv4_frame(
            &eth(DIRECTOR_MAC, RS2_MAC),
            &Ipv4Repr {
                protocol: IpProtocol::IpIp,
                payload_len: inner.len(),
                ..ip(Ipv4Addr::new(198, 19, 0, 1), RS2_IP, 64)
            },
            |payload| payload.copy_from_slice(inner),
        )
    };
    let big = vec![0x5au8; 1141]; // IP length 1181: fits 1200, not 1200 − 20
    let big_frame = from_client(40001, flags::ACK | flags::PSH, &big);
    let mut no_df = big_frame.clone();
    no_df[14 + 6] &= !0x40;
    Ipv4Packet::new_unchecked(&mut no_df[14..]).fill_checksum();
    let mut frag_needed = build_icmp_frame(
        &eth(DIRECTOR_MAC, CLIENT_MAC),
        &Ipv4Repr {
            protocol: IpProtocol::Icmp,
            ident: 0,
            dont_frag: false,
            ..ip(DIRECTOR_IP, CLIENT_IP, 64)
        },
        &IcmpRepr::DstUnreachable {
            reason: rvs::wire::icmp::IcmpDstUnreachable::FragRequired,
            next_hop_mtu: 1180,
            data: &big_frame[14..14 + 548],
        },
    );
    frag_needed[15] = 0xc0; // TOS "internetwork control", as Linux's ICMP errors
    Ipv4Packet::new_unchecked(&mut frag_needed[14..]).fill_checksum();

    vec![
        Case {
            what: "SYN to rs1 by dr: only the MACs change",
            input: from_client(40000, flags::SYN, &[]),
            expected: Some(dr(from_client(40000, flags::SYN, &[]))),
        },
        Case {
            what: "SYN to rs2 by tun: IPIP, outer header byte for byte",
            input: from_client(40001, flags::SYN, &[]),
            expected: Some(ipip(from_client(40001, flags::SYN, &[]))),
        },
        Case {
            what: "data of the dr connection",
            input: from_client(40000, flags::ACK | flags::PSH, b"GET /"),
            expected: Some(dr(from_client(40000, flags::ACK | flags::PSH, b"GET /"))),
        },
        Case {
            what: "too big to tunnel, DF set: ICMP fragmentation needed to the client",
            input: big_frame,
            expected: Some(frag_needed),
        },
        Case {
            what: "too big to tunnel, DF clear: dropped (no fragmentation)",
            input: no_df,
            expected: None,
        },
        Case {
            what: "data of the tun connection that fits",
            input: from_client(40001, flags::ACK, &[]),
            expected: Some(ipip(from_client(40001, flags::ACK, &[]))),
        },
    ]
}

#[test]
fn golden_dr_tun_and_fragmentation_needed() {
    let cases = dr_tun_cases();
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.input.clone()).collect();
    let (sent, report) = run_rvsd("golden-dr-tun", &frames, dr_tun_config);
    assert_eq!(value(&report, "port.one.rx_packets"), frames.len() as u64);
    let expected: Vec<(&str, &Vec<u8>)> = cases
        .iter()
        .filter_map(|c| c.expected.as_ref().map(|e| (c.what, e)))
        .collect();
    for (i, ((what, want), got)) in expected.iter().zip(&sent).enumerate() {
        assert!(
            got == *want,
            "output frame {i} ({what}): {}\n got: {got:02x?}\nwant: {want:02x?}",
            describe_difference(got, want)
        );
    }
    assert_eq!(sent.len(), expected.len(), "number of transmitted frames");
    assert_eq!(value(&report, "icmp_frag_needed_sent"), 1);
    assert_eq!(value(&report, "forwarded_to_servers"), 4);
    assert_eq!(value(&report, "forwarded_to_clients"), 0);
    assert_eq!(value(&report, "drop.tunnel_too_big"), 1);
    let total_drops: u64 = report
        .iter()
        .filter(|(k, _)| k.starts_with("drop."))
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total_drops, 1, "unexpected drops: {report:?}");
    assert_eq!(value(&report, "conns_created"), 2);
}
