//! Unit tests of the pipeline on `Vec<u8>` frames, without DPDK.
//!
//! Frames are built from reprs (`crate::wire::build_*_frame`, so every
//! checksum in an input or an expected frame is a full recomputation) and
//! time is a parameter: nothing here sleeps.

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use proptest::collection::vec as pvec;
use proptest::prelude::*;

use super::{rewrite_destination, rewrite_source, DataPlane, Limits, Verdict};
use crate::addr::MacAddr;
use crate::conn::{ConnState, FlowKey, Millis};
use crate::counters::{DropReason, WorkerCounters};
use crate::neigh::Resolution;
use crate::sched::ServerLoad;
use crate::snapshot::Snapshot;
use crate::wire::tcp::flags::{ACK, FIN, PSH, RST, SYN};
use crate::wire::{
    build_arp_frame, build_icmp_frame, build_ipv4_frame, build_tcp_frame, build_udp_frame,
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, IcmpMessage,
    IcmpPacket, IcmpRepr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

// ---------------------------------------------------------------------------
// The test network
// ---------------------------------------------------------------------------

const WAN: usize = 0;
const LAN: usize = 1;

const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
const RS1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x12]);
const STRANGER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x77]);

const WAN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const LAN_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// A VIP outside every port prefix (answered in ARP on every port).
const FAR_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const RS1: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
const RS2: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 12);
const RS3: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 13);
const RS4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 14);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 77);

/// Service indices in [`BASE`].
const SVC_TCP: usize = 0;
const SVC_UDP: usize = 1;

const RS_PORT: u16 = 8080;
const DNS_RS_PORT: u16 = 5353;

const PORTS: &str = r#"
[[port]]
name = "wan"
vdev = "net_null0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "lan"
vdev = "net_null1"
addresses = ["198.19.0.1/24"]
"#;

/// Two ports; TCP VIP:80 and UDP VIP:53, rr over RS1 and RS2; a TCP service
/// on a VIP outside every prefix.
const BASE: &str = r#"
[[port]]
name = "wan"
vdev = "net_null0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "lan"
vdev = "net_null1"
addresses = ["198.19.0.1/24"]

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
scheduler = "rr"
[[service.server]]
address = "198.19.0.11:8080"
forward = "nat"
[[service.server]]
address = "198.19.0.12:8080"
forward = "nat"

[[service]]
protocol = "udp"
address = "198.18.0.100:53"
scheduler = "rr"
[[service.server]]
address = "198.19.0.11:5353"
forward = "nat"
[[service.server]]
address = "198.19.0.12:5353"
forward = "nat"

[[service]]
protocol = "tcp"
address = "203.0.113.10:443"
[[service.server]]
address = "198.19.0.13:443"
forward = "nat"
"#;

fn snapshot(text: &str) -> Snapshot {
    let config = crate::config::parse(text, "test.toml").expect("test config is valid");
    Snapshot::compile(&config, &[WAN_MAC, LAN_MAC], 1)
}

fn plane_with(text: &str, limits: Limits) -> DataPlane {
    let snapshot = snapshot(text);
    let ports = snapshot.ports.len();
    DataPlane::new(
        Arc::new(snapshot),
        limits,
        0x5eed_1234_abcd_0001,
        Arc::new(WorkerCounters::new(ports)),
    )
}

fn plane(text: &str) -> DataPlane {
    plane_with(
        text,
        Limits {
            connections: 1024,
            neighbors: 64,
            templates: 256,
        },
    )
}

fn base() -> DataPlane {
    // Parsing once keeps the property tests fast.
    static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();
    let snap = SNAP.get_or_init(|| Arc::new(snapshot(BASE))).clone();
    let ports = snap.ports.len();
    DataPlane::new(
        snap,
        Limits {
            connections: 1024,
            neighbors: 64,
            templates: 256,
        },
        7,
        Arc::new(WorkerCounters::new(ports)),
    )
}

/// A TCP service on VIP:80 with `scheduler` and servers RS1.. of `weights`.
fn service_config(scheduler: &str, weights: &[u32]) -> String {
    let mut text = format!(
        "{PORTS}\n[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:80\"\nscheduler = \"{scheduler}\"\n"
    );
    for (i, w) in weights.iter().enumerate() {
        text += &format!(
            "[[service.server]]\naddress = \"198.19.0.{}:{RS_PORT}\"\nforward = \"nat\"\nweight = {w}\n",
            11 + i
        );
    }
    text
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/// One IPv4 packet, as the fields the tests vary.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    ttl: u8,
    /// TCP flags (ignored for UDP).
    flags: u8,
    payload: &'static [u8],
}

impl Pkt {
    /// Client → VIP:80 over the WAN port.
    fn from_client(sport: u16, flags: u8) -> Pkt {
        Pkt {
            src_mac: CLIENT_MAC,
            dst_mac: WAN_MAC,
            src: CLIENT,
            sport,
            dst: VIP,
            dport: 80,
            ttl: 64,
            flags,
            payload: b"",
        }
    }

    /// Real server `rs`:8080 → client over the LAN port.
    fn from_server(rs: Ipv4Addr, sport: u16, flags: u8) -> Pkt {
        Pkt {
            src_mac: if rs == RS2 { RS2_MAC } else { RS1_MAC },
            dst_mac: LAN_MAC,
            src: rs,
            sport: RS_PORT,
            dst: CLIENT,
            dport: sport,
            ttl: 64,
            flags,
            payload: b"",
        }
    }

    fn eth(&self) -> EthernetRepr {
        EthernetRepr {
            src_addr: self.src_mac,
            dst_addr: self.dst_mac,
            ethertype: EtherType::Ipv4,
        }
    }

    fn ip(&self) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: self.src,
            dst_addr: self.dst,
            ttl: self.ttl,
            ident: 0x4242,
            dont_frag: true,
            ..Ipv4Repr::default()
        }
    }

    fn tcp(&self) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: self.sport,
            dst_port: self.dport,
            seq_number: 0x1000_0000,
            ack_number: if self.flags & ACK != 0 {
                0x2000_0001
            } else {
                0
            },
            flags: self.flags,
            window_len: 64240,
            max_seg_size: (self.flags & SYN != 0).then_some(1460),
            payload: self.payload,
            ..TcpRepr::default()
        };
        build_tcp_frame(&self.eth(), &self.ip(), &tcp)
    }

    fn udp(&self) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: self.sport,
            dst_port: self.dport,
            payload: self.payload,
        };
        build_udp_frame(&self.eth(), &self.ip(), &udp)
    }

    /// The same packet as the director forwards it towards a real server.
    fn to_server(self, rs: Ipv4Addr, port: u16) -> Pkt {
        Pkt {
            dst: rs,
            dport: port,
            ttl: self.ttl - 1,
            ..self
        }
    }

    /// The same packet as the director forwards it back to the client.
    fn as_vip(self, vip: Ipv4Addr, port: u16) -> Pkt {
        Pkt {
            src: vip,
            sport: port,
            ttl: self.ttl - 1,
            ..self
        }
    }
}

fn run(dp: &mut DataPlane, mut frame: Vec<u8>, port: usize, now: Millis) -> (Verdict, Vec<u8>) {
    let verdict = dp.process(&mut frame, port, now);
    (verdict, frame)
}

fn forward(port: usize, next_hop: Ipv4Addr) -> Verdict {
    Verdict::Forward { port, next_hop }
}

fn drop_(reason: DropReason) -> Verdict {
    Verdict::Drop(reason)
}

/// Asserts the IPv4 header checksum and the TCP/UDP/ICMP checksum.
#[track_caller]
fn assert_checksums(frame: &[u8]) {
    let ip = Ipv4Packet::new_checked(&frame[14..]).expect("IPv4 packet");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.protocol() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).expect("TCP");
            assert!(tcp.verify_checksum(src, dst), "TCP checksum");
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
            assert!(udp.verify_checksum(src, dst), "UDP checksum");
        }
        IpProtocol::Icmp => {
            let icmp = IcmpPacket::new_checked(ip.payload()).expect("ICMP");
            assert!(icmp.verify_checksum(), "ICMP checksum");
        }
        other => panic!("unexpected protocol {other:?}"),
    }
}

/// Asserts a forwarded frame equals `expected` byte for byte (so every
/// incremental checksum equals a full recomputation) and verifies them.
#[track_caller]
fn assert_frame(got: &[u8], expected: &[u8]) {
    assert_checksums(got);
    assert_eq!(
        got, expected,
        "rewritten frame differs from the rebuilt one"
    );
}

fn client_key(sport: u16) -> FlowKey {
    FlowKey {
        protocol: 6,
        src_addr: CLIENT,
        src_port: sport,
        dst_addr: VIP,
        dst_port: 80,
    }
}

fn state_of(dp: &DataPlane, key: &FlowKey) -> Option<ConnState> {
    dp.conns
        .find_from_client(key)
        .map(|id| dp.conns.get(id).state)
}

fn load(active: u32, inactive: u32) -> (u32, u32) {
    (active, inactive)
}

fn loads(dp: &DataPlane, svc: usize) -> Vec<(u32, u32)> {
    dp.service_loads(svc)
        .iter()
        .map(|l: &ServerLoad| (l.active, l.inactive))
        .collect()
}

/// SYN, SYN-ACK, ACK for client port `sport`; returns the server chosen.
fn handshake(dp: &mut DataPlane, sport: u16, now: Millis) -> Ipv4Addr {
    let (v, _) = run(dp, Pkt::from_client(sport, SYN).tcp(), WAN, now);
    let Verdict::Forward {
        port: LAN,
        next_hop,
    } = v
    else {
        panic!("SYN from {sport}: {v:?}");
    };
    let (v, _) = run(
        dp,
        Pkt::from_server(next_hop, sport, SYN | ACK).tcp(),
        LAN,
        now,
    );
    assert_eq!(v, forward(WAN, CLIENT), "SYN-ACK to {sport}");
    let (v, _) = run(dp, Pkt::from_client(sport, ACK).tcp(), WAN, now);
    assert_eq!(v, forward(LAN, next_hop), "ACK from {sport}");
    assert_eq!(
        state_of(dp, &client_key(sport)),
        Some(ConnState::Established)
    );
    next_hop
}

fn arp_frame(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    operation: ArpOperation,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) -> Vec<u8> {
    build_arp_frame(
        &EthernetRepr {
            src_addr: eth_src,
            dst_addr: eth_dst,
            ethertype: EtherType::Arp,
        },
        &ArpRepr {
            operation,
            source_hardware_addr: sender.0,
            source_protocol_addr: sender.1,
            target_hardware_addr: target.0,
            target_protocol_addr: target.1,
        },
    )
}

/// A broadcast "who has `target`? tell CLIENT".
fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        CLIENT_MAC,
        MacAddr::BROADCAST,
        ArpOperation::Request,
        (CLIENT_MAC, CLIENT),
        (MacAddr::ZERO, target),
    )
}

fn echo_request(dst: Ipv4Addr, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    build_icmp_frame(
        &Pkt::from_client(1, 0).eth(),
        &Ipv4Repr {
            protocol: IpProtocol::Icmp,
            dst_addr: dst,
            ..Pkt::from_client(1, 0).ip()
        },
        &IcmpRepr::EchoRequest {
            ident,
            seq_no,
            data,
        },
    )
}

/// Refills the IPv4 header checksum of a frame after a test edited it.
fn refill_ip_checksum(frame: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
}

// ---------------------------------------------------------------------------
// ARP
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_arp_reply(frame: &[u8], port_mac: MacAddr, owner: Ipv4Addr) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), CLIENT_MAC);
    assert_eq!(eth.src_addr(), port_mac);
    assert_eq!(eth.ethertype(), EtherType::Arp);
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: port_mac,
            source_protocol_addr: owner,
            target_hardware_addr: CLIENT_MAC,
            target_protocol_addr: CLIENT,
        }
    );
}

#[test]
fn arp_request_for_director_address_is_answered_on_its_port() {
    let mut dp = base();
    let (v, out) = run(&mut dp, arp_request(WAN_IP), WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_arp_reply(&out, WAN_MAC, WAN_IP);
    assert_eq!(out.len(), 42, "the reply is built in place");
    // A request aimed at us teaches us the asker.
    assert_eq!(dp.neighbors.mac_of(CLIENT), Some(CLIENT_MAC));

    let (v, out) = run(&mut dp, arp_request(LAN_IP), LAN, 0);
    assert_eq!(v, Verdict::Reply { port: LAN });
    assert_arp_reply(&out, LAN_MAC, LAN_IP);

    // The WAN address is not answered on the LAN port, nor the reverse.
    assert_eq!(
        run(&mut dp, arp_request(WAN_IP), LAN, 0).0,
        drop_(DropReason::ArpNotForUs)
    );
    assert_eq!(
        run(&mut dp, arp_request(LAN_IP), WAN, 0).0,
        drop_(DropReason::ArpNotForUs)
    );
}

#[test]
fn arp_request_padded_to_60_bytes_is_answered() {
    let mut dp = base();
    let mut frame = arp_request(VIP);
    frame.resize(60, 0);
    let (v, out) = run(&mut dp, frame, WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_arp_reply(&out[..42], WAN_MAC, VIP);
    assert_eq!(out.len(), 60);
}

#[test]
fn arp_vip_answered_only_on_the_port_whose_prefix_holds_it() {
    let mut dp = base();
    let (v, out) = run(&mut dp, arp_request(VIP), WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_arp_reply(&out, WAN_MAC, VIP);
    let (v, out) = run(&mut dp, arp_request(VIP), LAN, 0);
    assert_eq!(v, drop_(DropReason::ArpNotForUs));
    assert_eq!(out, arp_request(VIP), "a dropped request is left alone");
}

#[test]
fn arp_vip_outside_every_prefix_answered_on_every_port() {
    let mut dp = base();
    for (port, mac) in [(WAN, WAN_MAC), (LAN, LAN_MAC)] {
        let (v, out) = run(&mut dp, arp_request(FAR_VIP), port, 0);
        assert_eq!(v, Verdict::Reply { port }, "port {port}");
        assert_arp_reply(&out, mac, FAR_VIP);
    }
}

#[test]
fn arp_request_for_someone_else_is_dropped_and_not_learned() {
    let mut dp = base();
    let before = dp.neighbors.len();
    assert_eq!(
        run(&mut dp, arp_request(STRANGER), WAN, 0).0,
        drop_(DropReason::ArpNotForUs)
    );
    assert_eq!(dp.neighbors.len(), before);
    assert_eq!(dp.neighbors.mac_of(CLIENT), None);
}

#[test]
fn arp_reply_from_a_host_we_asked_for_is_learned() {
    let mut dp = base();
    let now = 1_000;
    assert_eq!(dp.neighbors.mac_of(RS1), None);
    assert_eq!(dp.resolve(LAN, RS1, now), Resolution::ProbeNow);
    assert_eq!(dp.resolve(LAN, RS1, now + 1), Resolution::Wait);
    let reply = arp_frame(
        RS1_MAC,
        LAN_MAC,
        ArpOperation::Reply,
        (RS1_MAC, RS1),
        (LAN_MAC, LAN_IP),
    );
    assert_eq!(run(&mut dp, reply, LAN, now + 5).0, Verdict::Consumed);
    assert_eq!(dp.neighbors.mac_of(RS1), Some(RS1_MAC));
    assert_eq!(dp.resolve(LAN, RS1, now + 6), Resolution::Known(RS1_MAC));
}

#[test]
fn arp_reply_completes_a_pending_entry_whatever_its_target() {
    // We asked from the LAN port; the reply names the WAN address as target
    // (a confused host), which we do not answer on LAN: the pending entry
    // is still completed, since we asked.
    let mut dp = base();
    assert_eq!(dp.resolve(LAN, RS2, 0), Resolution::ProbeNow);
    let reply = arp_frame(
        RS2_MAC,
        LAN_MAC,
        ArpOperation::Reply,
        (RS2_MAC, RS2),
        (LAN_MAC, WAN_IP),
    );
    assert_eq!(run(&mut dp, reply, LAN, 1).0, Verdict::Consumed);
    assert_eq!(dp.neighbors.mac_of(RS2), Some(RS2_MAC));
}

#[test]
fn gratuitous_arp_from_a_stranger_creates_no_entry() {
    let mut dp = base();
    let before = dp.neighbors.len();
    // Gratuitous request (sender = target), broadcast.
    let garp_request = arp_frame(
        STRANGER_MAC,
        MacAddr::BROADCAST,
        ArpOperation::Request,
        (STRANGER_MAC, STRANGER),
        (MacAddr::ZERO, STRANGER),
    );
    assert_eq!(
        run(&mut dp, garp_request, WAN, 0).0,
        drop_(DropReason::ArpNotForUs)
    );
    // Gratuitous reply, broadcast.
    let garp_reply = arp_frame(
        STRANGER_MAC,
        MacAddr::BROADCAST,
        ArpOperation::Reply,
        (STRANGER_MAC, STRANGER),
        (MacAddr::BROADCAST, STRANGER),
    );
    assert_eq!(run(&mut dp, garp_reply, WAN, 0).0, Verdict::Consumed);
    assert_eq!(dp.neighbors.mac_of(STRANGER), None);
    assert_eq!(dp.neighbors.len(), before);
}

#[test]
fn gratuitous_arp_updates_a_known_neighbor() {
    let mut dp = base();
    assert_eq!(
        run(&mut dp, arp_request(WAN_IP), WAN, 0).0,
        Verdict::Reply { port: WAN }
    );
    assert_eq!(dp.neighbors.mac_of(CLIENT), Some(CLIENT_MAC));
    let moved = MacAddr([0x02, 0, 0, 0, 0, 0xcc]);
    let garp = arp_frame(
        moved,
        MacAddr::BROADCAST,
        ArpOperation::Request,
        (moved, CLIENT),
        (MacAddr::ZERO, CLIENT),
    );
    assert_eq!(
        run(&mut dp, garp, WAN, 10).0,
        drop_(DropReason::ArpNotForUs)
    );
    assert_eq!(dp.neighbors.mac_of(CLIENT), Some(moved));
}

#[test]
fn static_neighbors_are_known_and_not_overridden_by_arp() {
    let text = BASE.replacen(
        "addresses = [\"198.19.0.1/24\"]",
        "addresses = [\"198.19.0.1/24\"]\nstatic_neighbors = [ { address = \"198.19.0.11\", mac = \"02:00:00:00:00:11\" } ]",
        1,
    );
    let mut dp = plane(&text);
    assert_eq!(dp.neighbors.mac_of(RS1), Some(RS1_MAC));
    assert_eq!(dp.resolve(LAN, RS1, 0), Resolution::Known(RS1_MAC));
    let spoof = arp_frame(
        STRANGER_MAC,
        LAN_MAC,
        ArpOperation::Reply,
        (STRANGER_MAC, RS1),
        (LAN_MAC, LAN_IP),
    );
    assert_eq!(run(&mut dp, spoof, LAN, 1).0, Verdict::Consumed);
    assert_eq!(dp.neighbors.mac_of(RS1), Some(RS1_MAC));
}

#[test]
fn arp_with_other_hardware_or_protocol_is_malformed() {
    let mut dp = base();
    let mut frame = arp_request(WAN_IP);
    frame[14 + 1] = 6; // htype 6 (IEEE 802)
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    let mut frame = arp_request(WAN_IP);
    frame[14 + 5] = 16; // plen 16
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
}

// ---------------------------------------------------------------------------
// write_arp_request
// ---------------------------------------------------------------------------

#[test]
fn write_arp_request_builds_a_60_byte_broadcast_request() {
    let dp = base();
    let mut buf = [0xaau8; 128];
    assert_eq!(dp.write_arp_request(&mut buf, LAN, RS1), Some(60));
    let mut expected = arp_frame(
        LAN_MAC,
        MacAddr::BROADCAST,
        ArpOperation::Request,
        (LAN_MAC, LAN_IP),
        (MacAddr::ZERO, RS1),
    );
    expected.resize(60, 0);
    assert_eq!(&buf[..60], &expected[..]);
    assert!(
        buf[60..].iter().all(|&b| b == 0xaa),
        "nothing past 60 bytes"
    );

    // From the WAN port, for the gateway-side peer.
    assert_eq!(dp.write_arp_request(&mut buf, WAN, CLIENT), Some(60));
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&buf[14..60]).unwrap()).unwrap();
    assert_eq!(arp.source_protocol_addr, WAN_IP);
    assert_eq!(arp.source_hardware_addr, WAN_MAC);
    assert_eq!(
        EthernetFrame::new_checked(&buf[..60]).unwrap().src_addr(),
        WAN_MAC
    );

    // Too small a buffer, or no such port.
    assert_eq!(dp.write_arp_request(&mut buf[..59], LAN, RS1), None);
    assert_eq!(dp.write_arp_request(&mut buf, 2, RS1), None);
}

#[test]
fn write_arp_request_uses_the_address_whose_prefix_holds_the_target() {
    let text = PORTS.replacen(
        "addresses = [\"198.19.0.1/24\"]",
        "addresses = [\"198.19.0.1/24\", \"10.1.0.1/16\"]",
        1,
    );
    let dp = plane(&text);
    let mut buf = [0u8; 60];
    assert_eq!(
        dp.write_arp_request(&mut buf, LAN, Ipv4Addr::new(10, 1, 2, 3)),
        Some(60)
    );
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&buf[14..]).unwrap()).unwrap();
    assert_eq!(arp.source_protocol_addr, Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(arp.target_protocol_addr, Ipv4Addr::new(10, 1, 2, 3));
    // Outside both prefixes: the first address.
    dp.write_arp_request(&mut buf, LAN, Ipv4Addr::new(192, 0, 2, 1))
        .unwrap();
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&buf[14..]).unwrap()).unwrap();
    assert_eq!(arp.source_protocol_addr, LAN_IP);
}

// ---------------------------------------------------------------------------
// ICMP echo
// ---------------------------------------------------------------------------

/// The echo reply rvs should send for `echo_request(dst, ...)` from CLIENT.
fn expected_echo_reply(
    from: Ipv4Addr,
    port_mac: MacAddr,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    build_icmp_frame(
        &EthernetRepr {
            src_addr: port_mac,
            dst_addr: CLIENT_MAC,
            ethertype: EtherType::Ipv4,
        },
        &Ipv4Repr {
            src_addr: from,
            dst_addr: CLIENT,
            protocol: IpProtocol::Icmp,
            ttl: 64,
            ..Pkt::from_client(1, 0).ip()
        },
        &IcmpRepr::EchoReply {
            ident,
            seq_no: seq,
            data,
        },
    )
}

#[test]
fn echo_to_the_director_address_is_answered() {
    let mut dp = base();
    let data = b"abcdefghijklmnopqrstuvw";
    let (v, out) = run(&mut dp, echo_request(WAN_IP, 0x1234, 7, data), WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_checksums(&out);
    let icmp = IcmpPacket::new_checked(&out[34..]).unwrap();
    assert_eq!(icmp.msg_type(), IcmpMessage::EchoReply);
    assert_eq!(icmp.msg_code(), 0);
    assert_eq!(out, expected_echo_reply(WAN_IP, WAN_MAC, 0x1234, 7, data));
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn echo_to_a_vip_is_answered() {
    let mut dp = base();
    let (v, out) = run(&mut dp, echo_request(VIP, 9, 1, b"ping"), WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_checksums(&out);
    assert_eq!(out, expected_echo_reply(VIP, WAN_MAC, 9, 1, b"ping"));

    // The far VIP, asked on the LAN port: answered from the LAN port.
    let mut frame = echo_request(FAR_VIP, 9, 2, b"ping");
    EthernetFrame::new_unchecked(&mut frame[..]).set_dst_addr(LAN_MAC);
    let (v, out) = run(&mut dp, frame, LAN, 0);
    assert_eq!(v, Verdict::Reply { port: LAN });
    assert_eq!(out, expected_echo_reply(FAR_VIP, LAN_MAC, 9, 2, b"ping"));
}

#[test]
fn all_zero_echo_reply_has_a_valid_nonzero_checksum() {
    let mut dp = base();
    let (v, out) = run(&mut dp, echo_request(WAN_IP, 0, 0, b""), WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_checksums(&out);
    let icmp = IcmpPacket::new_checked(&out[34..]).unwrap();
    assert_eq!(icmp.msg_type(), IcmpMessage::EchoReply);
    assert_eq!(
        icmp.checksum(),
        0xffff,
        "all-zero message: checksum 0xffff, not 0x0000"
    );
    assert_eq!(out, expected_echo_reply(WAN_IP, WAN_MAC, 0, 0, b""));
}

#[test]
fn echo_reply_of_a_padded_request_checksums_the_message_only() {
    // 8-byte echo in a 60-byte frame: the Ethernet padding is not ICMP data.
    let mut dp = base();
    let mut frame = echo_request(WAN_IP, 5, 6, b"");
    frame.resize(60, 0x5a);
    let (v, out) = run(&mut dp, frame, WAN, 0);
    assert_eq!(v, Verdict::Reply { port: WAN });
    assert_checksums(&out[..42]);
    assert_eq!(
        &out[..42],
        &expected_echo_reply(WAN_IP, WAN_MAC, 5, 6, b"")[..]
    );
}

#[test]
fn icmp_other_than_echo_request_is_not_answered() {
    let mut dp = base();
    // An echo reply to the director.
    let mut frame = echo_request(WAN_IP, 1, 1, b"x");
    frame[34] = 0;
    IcmpPacket::new_unchecked(&mut frame[34..]).fill_checksum();
    assert_eq!(
        run(&mut dp, frame, WAN, 0).0,
        drop_(DropReason::IcmpNotEcho)
    );
    // Echo request with a non-zero code.
    let mut frame = echo_request(WAN_IP, 1, 1, b"x");
    frame[35] = 1;
    IcmpPacket::new_unchecked(&mut frame[34..]).fill_checksum();
    assert_eq!(
        run(&mut dp, frame, WAN, 0).0,
        drop_(DropReason::IcmpNotEcho)
    );
    // Bad ICMP checksum.
    let mut frame = echo_request(WAN_IP, 1, 1, b"x");
    frame[36] ^= 0x01;
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // Echo to an address that is not ours.
    assert_eq!(
        run(&mut dp, echo_request(STRANGER, 1, 1, b"x"), WAN, 0).0,
        drop_(DropReason::NoService)
    );
}

// ---------------------------------------------------------------------------
// NAT
// ---------------------------------------------------------------------------

#[test]
fn syn_is_forwarded_to_a_real_server_with_dnat() {
    let mut dp = base();
    let syn = Pkt::from_client(40000, SYN);
    let (v, out) = run(&mut dp, syn.tcp(), WAN, 0);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out, &syn.to_server(RS1, RS_PORT).tcp());
    assert_eq!(Ipv4Packet::new_checked(&out[14..]).unwrap().ttl(), 63);
    assert_eq!(dp.conns.len(), 1);
    assert_eq!(dp.counters.conns_created.get(), 1);
    assert_eq!(dp.counters.conns_live.get(), 1);
    let conn = *dp
        .conns
        .get(dp.conns.find_from_client(&client_key(40000)).unwrap());
    assert_eq!((conn.real_addr, conn.real_port), (RS1, RS_PORT));
    assert_eq!(conn.state, ConnState::SynRecv);
}

#[test]
fn replies_are_snatted_back_to_the_vip() {
    let mut dp = base();
    run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 0);
    let syn_ack = Pkt::from_server(RS1, 40000, SYN | ACK);
    let (v, out) = run(&mut dp, syn_ack.tcp(), LAN, 1);
    assert_eq!(v, forward(WAN, CLIENT));
    assert_frame(&out, &syn_ack.as_vip(VIP, 80).tcp());

    // Data both ways, with a payload.
    let data = Pkt {
        payload: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ..Pkt::from_client(40000, ACK | PSH)
    };
    let (v, out) = run(&mut dp, data.tcp(), WAN, 2);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out, &data.to_server(RS1, RS_PORT).tcp());
    let answer = Pkt {
        payload: b"HTTP/1.1 200 OK\r\n\r\nrs1",
        ttl: 1 + 1, // the smallest TTL that is still forwarded
        ..Pkt::from_server(RS1, 40000, ACK | PSH)
    };
    let (v, out) = run(&mut dp, answer.tcp(), LAN, 3);
    assert_eq!(v, forward(WAN, CLIENT));
    assert_frame(&out, &answer.as_vip(VIP, 80).tcp());
    assert_eq!(Ipv4Packet::new_checked(&out[14..]).unwrap().ttl(), 1);
}

#[test]
fn packets_of_a_connection_follow_its_server_and_rr_alternates() {
    let mut dp = base();
    let mut chosen = Vec::new();
    for sport in 40000..40006 {
        let (v, _) = run(&mut dp, Pkt::from_client(sport, SYN).tcp(), WAN, 0);
        let Verdict::Forward {
            port: LAN,
            next_hop,
        } = v
        else {
            panic!("{v:?}");
        };
        chosen.push(next_hop);
    }
    assert_eq!(chosen, [RS1, RS2, RS1, RS2, RS1, RS2]);
    // Later packets, in any order, go to the server chosen at SYN time.
    for round in 0..3 {
        for (i, sport) in (40000..40006).enumerate().rev() {
            let pkt = Pkt::from_client(sport, if round == 0 { ACK } else { ACK | PSH });
            let (v, out) = run(&mut dp, pkt.tcp(), WAN, 10 + round);
            assert_eq!(v, forward(LAN, chosen[i]));
            assert_frame(&out, &pkt.to_server(chosen[i], RS_PORT).tcp());
        }
    }
    // A retransmitted SYN stays with its server and opens nothing new.
    let (v, _) = run(&mut dp, Pkt::from_client(40001, SYN).tcp(), WAN, 20);
    assert_eq!(v, forward(LAN, RS2));
    assert_eq!(dp.conns.len(), 6);
    assert_eq!(dp.counters.conns_created.get(), 6);
}

#[test]
fn weight_zero_servers_are_never_chosen() {
    for scheduler in ["rr", "wrr", "lc", "wlc"] {
        let mut dp = plane(&service_config(scheduler, &[0, 1, 0, 3]));
        let mut seen = Vec::new();
        for sport in 1000..1040 {
            let (v, _) = run(&mut dp, Pkt::from_client(sport, SYN).tcp(), WAN, 0);
            let Verdict::Forward {
                port: LAN,
                next_hop,
            } = v
            else {
                panic!("{scheduler}: {v:?}");
            };
            assert!(
                next_hop == RS2 || next_hop == RS4,
                "{scheduler} chose {next_hop}"
            );
            seen.push(next_hop);
        }
        assert!(
            seen.contains(&RS2) && seen.contains(&RS4),
            "{scheduler}: {seen:?}"
        );
        let l = loads(&dp, 0);
        assert_eq!((l[0], l[2]), (load(0, 0), load(0, 0)), "{scheduler}");
    }
}

#[test]
fn all_weights_zero_or_no_servers_drop_with_no_server() {
    for scheduler in ["rr", "wrr", "lc", "wlc"] {
        for weights in [&[0u32, 0, 0][..], &[][..]] {
            let mut dp = plane(&service_config(scheduler, weights));
            let (v, out) = run(&mut dp, Pkt::from_client(1000, SYN).tcp(), WAN, 0);
            assert_eq!(v, drop_(DropReason::NoServer), "{scheduler} {weights:?}");
            assert_eq!(out, Pkt::from_client(1000, SYN).tcp(), "left untouched");
            assert_eq!(dp.conns.len(), 0);
            assert!(loads(&dp, 0).iter().all(|&l| l == load(0, 0)));
            // UDP alike.
            let udp_text = service_config(scheduler, weights).replace("\"tcp\"", "\"udp\"");
            let mut dp = plane(&udp_text);
            let (v, _) = run(&mut dp, Pkt::from_client(1000, 0).udp(), WAN, 0);
            assert_eq!(v, drop_(DropReason::NoServer));
            assert_eq!(dp.conns.len(), 0);
        }
    }
}

#[test]
fn tcp_other_than_syn_without_connection_is_dropped() {
    let mut dp = base();
    for flags in [
        ACK,
        ACK | PSH,
        FIN | ACK,
        RST,
        RST | ACK,
        SYN | ACK,
        SYN | RST,
        SYN | FIN,
        0,
    ] {
        let (v, _) = run(&mut dp, Pkt::from_client(40000, flags).tcp(), WAN, 0);
        assert_eq!(v, drop_(DropReason::NoConnection), "flags {flags:#04x}");
    }
    assert_eq!(dp.conns.len(), 0);
    assert_eq!(dp.counters.conns_created.get(), 0);
    // A stray reply from a real server with no connection.
    let (v, _) = run(
        &mut dp,
        Pkt::from_server(RS1, 40000, SYN | ACK).tcp(),
        LAN,
        0,
    );
    assert_eq!(v, drop_(DropReason::NoService));
}

#[test]
fn udp_first_datagram_creates_a_connection_and_replies_are_snatted() {
    let mut dp = base();
    let query = Pkt {
        dport: 53,
        payload: b"\xab\xcd\x01\x00\x00\x01query",
        ..Pkt::from_client(53000, 0)
    };
    let (v, out) = run(&mut dp, query.udp(), WAN, 0);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out, &query.to_server(RS1, DNS_RS_PORT).udp());
    assert_eq!(dp.conns.len(), 1);
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 1), load(0, 0)]);

    let answer = Pkt {
        sport: DNS_RS_PORT,
        payload: b"\xab\xcd\x81\x80answer",
        ..Pkt::from_server(RS1, 53000, 0)
    };
    let (v, out) = run(&mut dp, answer.udp(), LAN, 1);
    assert_eq!(v, forward(WAN, CLIENT));
    assert_frame(&out, &answer.as_vip(VIP, 53).udp());

    // The same flow again: same server, no new connection; another flow: rr.
    let (v, _) = run(&mut dp, query.udp(), WAN, 2);
    assert_eq!(v, forward(LAN, RS1));
    let other = Pkt {
        sport: 53001,
        ..query
    };
    let (v, out) = run(&mut dp, other.udp(), WAN, 3);
    assert_eq!(v, forward(LAN, RS2));
    assert_frame(&out, &other.to_server(RS2, DNS_RS_PORT).udp());
    assert_eq!(dp.conns.len(), 2);
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 1), load(0, 1)]);
}

#[test]
fn udp_without_checksum_stays_without_checksum() {
    let mut dp = base();
    let query = Pkt {
        dport: 53,
        payload: b"no checksum",
        ..Pkt::from_client(53000, 0)
    };
    let zero = |mut frame: Vec<u8>| {
        UdpPacket::new_unchecked(&mut frame[34..]).set_checksum(0);
        frame
    };
    let (v, out) = run(&mut dp, zero(query.udp()), WAN, 0);
    assert_eq!(v, forward(LAN, RS1));
    assert_eq!(out, zero(query.to_server(RS1, DNS_RS_PORT).udp()));
    assert_eq!(UdpPacket::new_checked(&out[34..]).unwrap().checksum(), 0);
    assert!(Ipv4Packet::new_checked(&out[14..])
        .unwrap()
        .verify_checksum());

    let answer = Pkt {
        sport: DNS_RS_PORT,
        payload: b"still none",
        ..Pkt::from_server(RS1, 53000, 0)
    };
    let (v, out) = run(&mut dp, zero(answer.udp()), LAN, 1);
    assert_eq!(v, forward(WAN, CLIENT));
    assert_eq!(out, zero(answer.as_vip(VIP, 53).udp()));
    assert_eq!(UdpPacket::new_checked(&out[34..]).unwrap().checksum(), 0);
}

#[test]
fn padded_frames_are_forwarded_with_the_padding_untouched() {
    // A 54-byte ACK and a 43-byte UDP datagram padded to the 60-byte minimum:
    // the L4 checksum must cover the IP payload only.
    let mut dp = base();
    handshake(&mut dp, 40000, 0);
    let ack = Pkt::from_client(40000, ACK);
    let mut frame = ack.tcp();
    assert_eq!(frame.len(), 54);
    frame.resize(60, 0xee);
    let (v, out) = run(&mut dp, frame, WAN, 1);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out[..54], &ack.to_server(RS1, RS_PORT).tcp());
    assert_eq!(&out[54..], &[0xee; 6]);

    let query = Pkt {
        dport: 53,
        payload: b"q",
        ..Pkt::from_client(53000, 0)
    };
    let mut frame = query.udp();
    let len = frame.len();
    frame.resize(60, 0xee);
    let (v, out) = run(&mut dp, frame, WAN, 2);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out[..len], &query.to_server(RS1, DNS_RS_PORT).udp());
    assert!(out[len..].iter().all(|&b| b == 0xee));
}

#[test]
fn ip_options_are_skipped_and_kept() {
    // SYN with a 4-byte IPv4 option (NOPs + EOL): the L4 header starts at 38.
    let mut dp = base();
    let with_options = |frame: Vec<u8>| {
        let mut out = frame[..34].to_vec();
        out.extend_from_slice(&[1, 1, 1, 0]);
        out.extend_from_slice(&frame[34..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut out[14..]);
        ip.set_header_len(24);
        let total = ip.total_len();
        ip.set_total_len(total + 4);
        ip.fill_checksum();
        out
    };
    let syn = Pkt::from_client(40000, SYN);
    let (v, out) = run(&mut dp, with_options(syn.tcp()), WAN, 0);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out, &with_options(syn.to_server(RS1, RS_PORT).tcp()));
}

// ---------------------------------------------------------------------------
// Connection accounting
// ---------------------------------------------------------------------------

#[test]
fn loads_follow_the_tcp_handshake_and_expiry() {
    let mut dp = base();
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
    run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 0);
    assert_eq!(
        loads(&dp, SVC_TCP),
        [load(0, 1), load(0, 0)],
        "SYN_RECV is inactive"
    );
    run(
        &mut dp,
        Pkt::from_server(RS1, 40000, SYN | ACK).tcp(),
        LAN,
        1,
    );
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 1), load(0, 0)]);
    run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 2);
    assert_eq!(
        state_of(&dp, &client_key(40000)),
        Some(ConnState::Established)
    );
    assert_eq!(
        loads(&dp, SVC_TCP),
        [load(1, 0), load(0, 0)],
        "ESTABLISHED is active"
    );

    // Nothing expires within the ESTABLISHED timeout (900 s).
    assert_eq!(dp.expire(2 + 899_999, 1 << 16), 0);
    assert_eq!(dp.expire(2 + 900_000, 1 << 16), 1);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
    assert_eq!(dp.conns.len(), 0);
    assert_eq!(dp.conns.find_from_client(&client_key(40000)), None);
    assert_eq!(dp.counters.conns_expired.get(), 1);
    assert_eq!(dp.counters.conns_live.get(), 0);
    // The expired connection's packets are no longer forwarded.
    let (v, _) = run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 900_010);
    assert_eq!(v, drop_(DropReason::NoConnection));
}

#[test]
fn loads_follow_the_close_of_a_connection() {
    let mut dp = base();
    handshake(&mut dp, 40000, 0);
    run(&mut dp, Pkt::from_client(40000, FIN | ACK).tcp(), WAN, 1);
    assert_eq!(
        state_of(&dp, &client_key(40000)),
        Some(ConnState::CloseWait)
    );
    assert_eq!(loads(&dp, SVC_TCP)[0], load(0, 1));
    run(
        &mut dp,
        Pkt::from_server(RS1, 40000, FIN | ACK).tcp(),
        LAN,
        2,
    );
    run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 3);
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::TimeWait));
    assert_eq!(loads(&dp, SVC_TCP)[0], load(0, 1));
    // TIME_WAIT lasts 120 s.
    assert_eq!(dp.expire(3 + 119_999, 1 << 16), 0);
    assert_eq!(dp.expire(3 + 120_000, 1 << 16), 1);
    assert_eq!(loads(&dp, SVC_TCP)[0], load(0, 0));
}

#[test]
fn wlc_sends_new_connections_to_the_least_loaded_server() {
    let mut dp = plane(&service_config("wlc", &[1, 1, 1]));
    // Ties go to the first server.
    assert_eq!(handshake(&mut dp, 1000, 0), RS1);
    assert_eq!(loads(&dp, 0), [load(1, 0), load(0, 0), load(0, 0)]);
    assert_eq!(handshake(&mut dp, 1001, 0), RS2);
    assert_eq!(loads(&dp, 0), [load(1, 0), load(1, 0), load(0, 0)]);
    // Two half-open connections to the idle server: still far cheaper than
    // an established one (256 inactive ones weigh as much).
    for sport in [1002, 1003] {
        let (v, _) = run(&mut dp, Pkt::from_client(sport, SYN).tcp(), WAN, 1);
        assert_eq!(v, forward(LAN, RS3), "port {sport}");
    }
    assert_eq!(loads(&dp, 0), [load(1, 0), load(1, 0), load(0, 2)]);
    // The client resets its connection to RS1: RS1 is now the least loaded.
    run(&mut dp, Pkt::from_client(1000, RST).tcp(), WAN, 2);
    assert_eq!(state_of(&dp, &client_key(1000)), Some(ConnState::Close));
    assert_eq!(loads(&dp, 0), [load(0, 1), load(1, 0), load(0, 2)]);
    let (v, _) = run(&mut dp, Pkt::from_client(1004, SYN).tcp(), WAN, 3);
    assert_eq!(v, forward(LAN, RS1));
    assert_eq!(loads(&dp, 0), [load(0, 2), load(1, 0), load(0, 2)]);
    // Next: RS1 and RS3 tie at 2, the earlier wins.
    let (v, _) = run(&mut dp, Pkt::from_client(1005, SYN).tcp(), WAN, 3);
    assert_eq!(v, forward(LAN, RS1));
}

#[test]
fn wlc_honours_weights() {
    let mut dp = plane(&service_config("wlc", &[1, 3]));
    let mut counts = [0u32; 2];
    for sport in 2000..2040 {
        let rs = handshake(&mut dp, sport, 0);
        counts[usize::from(rs == RS2)] += 1;
    }
    assert_eq!(counts, [10, 30]);
    assert_eq!(loads(&dp, 0), [load(10, 0), load(30, 0)]);
}

// ---------------------------------------------------------------------------
// Expiry timing
// ---------------------------------------------------------------------------

#[test]
fn udp_connection_expires_after_300_s() {
    let t0 = 5_000;
    let mut dp = base();
    let query = Pkt {
        dport: 53,
        ..Pkt::from_client(53000, 0)
    };
    assert_eq!(run(&mut dp, query.udp(), WAN, t0).0, forward(LAN, RS1));
    assert_eq!(dp.expire(t0 + 299_000, 1 << 16), 0, "not at 299 s");
    assert_eq!(dp.expire(t0 + 299_999, 1 << 16), 0);
    assert_eq!(dp.conns.len(), 1);
    assert_eq!(dp.expire(t0 + 301_000, 1 << 16), 1, "yes at 301 s");
    assert_eq!(dp.conns.len(), 0);
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 0), load(0, 0)]);
}

#[test]
fn udp_traffic_keeps_the_connection_alive() {
    let t0 = 0;
    let mut dp = base();
    let query = Pkt {
        dport: 53,
        ..Pkt::from_client(53000, 0)
    };
    run(&mut dp, query.udp(), WAN, t0);
    // A reply at 200 s re-arms the 300 s timer.
    let answer = Pkt {
        sport: DNS_RS_PORT,
        ..Pkt::from_server(RS1, 53000, 0)
    };
    assert_eq!(
        run(&mut dp, answer.udp(), LAN, 200_000).0,
        forward(WAN, CLIENT)
    );
    assert_eq!(dp.expire(301_000, 1 << 16), 0);
    assert_eq!(dp.expire(499_999, 1 << 16), 0);
    assert_eq!(dp.expire(500_000, 1 << 16), 1);
}

#[test]
fn tcp_syn_recv_expires_after_60_s() {
    let t0 = 12_345;
    let mut dp = base();
    run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, t0);
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::SynRecv));
    assert_eq!(dp.expire(t0 + 59_000, 1 << 16), 0, "not at 59 s");
    assert_eq!(dp.expire(t0 + 59_999, 1 << 16), 0);
    assert_eq!(dp.expire(t0 + 61_000, 1 << 16), 1, "yes at 61 s");
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn expire_respects_its_budget() {
    let mut dp = base();
    for sport in 0..100 {
        run(&mut dp, Pkt::from_client(10_000 + sport, SYN).tcp(), WAN, 0);
    }
    assert_eq!(dp.conns.len(), 100);
    // 1024 slots; a budget of 64 examines at most 64 of them.
    let first = dp.expire(1_000_000, 64);
    assert!(first <= 64, "{first}");
    let mut total = first;
    for _ in 0..64 {
        total += dp.expire(1_000_000, 64);
    }
    assert_eq!(total, 100);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
    assert_eq!(dp.counters.conns_expired.get(), 100);
    assert_eq!(dp.counters.conns_live.get(), 0);
}

// ---------------------------------------------------------------------------
// Port reuse
// ---------------------------------------------------------------------------

#[test]
fn syn_after_time_wait_is_scheduled_afresh() {
    let mut dp = base();
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    run(&mut dp, Pkt::from_client(40000, FIN | ACK).tcp(), WAN, 1);
    run(
        &mut dp,
        Pkt::from_server(RS1, 40000, FIN | ACK).tcp(),
        LAN,
        2,
    );
    run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 3);
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::TimeWait));
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 1), load(0, 0)]);

    let syn = Pkt::from_client(40000, SYN);
    let (v, out) = run(&mut dp, syn.tcp(), WAN, 4);
    assert_eq!(v, forward(LAN, RS2), "rr moves on to the next server");
    assert_frame(&out, &syn.to_server(RS2, RS_PORT).tcp());
    assert_eq!(dp.conns.len(), 1, "the old connection is replaced");
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::SynRecv));
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 1)]);
    assert_eq!(dp.counters.conns_created.get(), 2);
    assert_eq!(dp.counters.conns_live.get(), 1);
    // A late segment from the old server no longer matches anything.
    let (v, _) = run(&mut dp, Pkt::from_server(RS1, 40000, ACK).tcp(), LAN, 5);
    assert_eq!(v, drop_(DropReason::NoService));
    // The new server's reply does.
    let (v, _) = run(
        &mut dp,
        Pkt::from_server(RS2, 40000, SYN | ACK).tcp(),
        LAN,
        5,
    );
    assert_eq!(v, forward(WAN, CLIENT));
}

#[test]
fn syn_after_reset_is_scheduled_afresh() {
    let mut dp = base();
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    run(&mut dp, Pkt::from_client(40000, RST).tcp(), WAN, 1);
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::Close));
    let (v, _) = run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 2);
    assert_eq!(v, forward(LAN, RS2));
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 1)]);
    assert_eq!(dp.conns.len(), 1);
}

#[test]
fn syn_on_a_live_connection_is_not_rescheduled() {
    let mut dp = base();
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    let (v, _) = run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 1);
    assert_eq!(v, forward(LAN, RS1));
    assert_eq!(dp.conns.len(), 1);
    assert_eq!(loads(&dp, SVC_TCP), [load(1, 0), load(0, 0)]);
}

// ---------------------------------------------------------------------------
// Drops
// ---------------------------------------------------------------------------

#[test]
fn ttl_1_is_dropped_without_creating_a_connection() {
    let mut dp = base();
    for ttl in [0, 1] {
        let syn = Pkt {
            ttl,
            ..Pkt::from_client(40000, SYN)
        };
        assert_eq!(
            run(&mut dp, syn.tcp(), WAN, 0).0,
            drop_(DropReason::TtlExceeded)
        );
        let query = Pkt {
            ttl,
            dport: 53,
            ..Pkt::from_client(53000, 0)
        };
        assert_eq!(
            run(&mut dp, query.udp(), WAN, 0).0,
            drop_(DropReason::TtlExceeded)
        );
    }
    assert_eq!(dp.conns.len(), 0);
    assert_eq!(dp.counters.conns_created.get(), 0);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
    // rr did not move either: the first real SYN goes to RS1.
    assert_eq!(
        run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 0).0,
        forward(LAN, RS1)
    );
    // A reply with TTL 1 is dropped and does not change the state.
    let reply = Pkt {
        ttl: 1,
        ..Pkt::from_server(RS1, 40000, RST)
    };
    assert_eq!(
        run(&mut dp, reply.tcp(), LAN, 1).0,
        drop_(DropReason::TtlExceeded)
    );
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::SynRecv));
}

#[test]
fn fragments_are_dropped() {
    let mut dp = base();
    let mut mf = Pkt::from_client(40000, SYN).tcp();
    Ipv4Packet::new_unchecked(&mut mf[14..]).set_more_frags(true);
    refill_ip_checksum(&mut mf);
    assert_eq!(run(&mut dp, mf, WAN, 0).0, drop_(DropReason::Fragment));
    let mut later = Pkt::from_client(40000, SYN).tcp();
    Ipv4Packet::new_unchecked(&mut later[14..]).set_frag_offset(1480);
    refill_ip_checksum(&mut later);
    assert_eq!(run(&mut dp, later, WAN, 0).0, drop_(DropReason::Fragment));
    let mut udp = Pkt {
        dport: 53,
        ..Pkt::from_client(53000, 0)
    }
    .udp();
    Ipv4Packet::new_unchecked(&mut udp[14..]).set_more_frags(true);
    refill_ip_checksum(&mut udp);
    assert_eq!(run(&mut dp, udp, WAN, 0).0, drop_(DropReason::Fragment));
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn bad_ip_checksum_is_dropped() {
    let mut dp = base();
    let mut frame = Pkt::from_client(40000, SYN).tcp();
    frame[14 + 10] ^= 0x80;
    assert_eq!(
        run(&mut dp, frame, WAN, 0).0,
        drop_(DropReason::BadChecksum)
    );
    let mut frame = echo_request(WAN_IP, 1, 1, b"");
    frame[14 + 11] ^= 0x01;
    assert_eq!(
        run(&mut dp, frame, WAN, 0).0,
        drop_(DropReason::BadChecksum)
    );
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn every_truncation_is_malformed() {
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("tcp syn", Pkt::from_client(40000, SYN).tcp()),
        (
            "tcp data",
            Pkt {
                payload: b"some data",
                ..Pkt::from_client(40000, ACK)
            }
            .tcp(),
        ),
        (
            "udp",
            Pkt {
                dport: 53,
                payload: b"query",
                ..Pkt::from_client(53000, 0)
            }
            .udp(),
        ),
        ("icmp echo", echo_request(WAN_IP, 1, 2, b"data")),
        ("arp", arp_request(WAN_IP)),
    ];
    for (what, frame) in frames {
        for len in 0..frame.len() {
            let mut dp = base();
            let mut cut = frame[..len].to_vec();
            let v = dp.process(&mut cut, WAN, 0);
            assert_eq!(v, drop_(DropReason::Malformed), "{what} cut to {len} bytes");
            assert_eq!(cut, &frame[..len], "{what} cut to {len}: modified");
            assert_eq!(dp.conns.len(), 0);
        }
    }
}

#[test]
fn inconsistent_lengths_are_malformed() {
    let mut dp = base();
    // IPv4 total length below the header length.
    let mut frame = Pkt::from_client(40000, SYN).tcp();
    Ipv4Packet::new_unchecked(&mut frame[14..]).set_total_len(19);
    refill_ip_checksum(&mut frame);
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // IHL below 5.
    let mut frame = Pkt::from_client(40000, SYN).tcp();
    frame[14] = 0x44;
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // Version 6 in an IPv4 frame.
    let mut frame = Pkt::from_client(40000, SYN).tcp();
    frame[14] = 0x65;
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // TCP data offset beyond the IP payload.
    let mut frame = Pkt::from_client(40000, ACK).tcp();
    frame[34 + 12] = 0xf0;
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // TCP data offset below 5.
    let mut frame = Pkt::from_client(40000, ACK).tcp();
    frame[34 + 12] = 0x40;
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // UDP length beyond the IP payload, and below 8.
    for udp_len in [200, 7] {
        let mut frame = Pkt {
            dport: 53,
            ..Pkt::from_client(53000, 0)
        }
        .udp();
        UdpPacket::new_unchecked(&mut frame[34..]).set_len(udp_len);
        assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    }
    // An IP total length shorter than the frame (padding) but cutting the
    // TCP header.
    let mut frame = Pkt::from_client(40000, ACK).tcp();
    Ipv4Packet::new_unchecked(&mut frame[14..]).set_total_len(20 + 10);
    refill_ip_checksum(&mut frame);
    assert_eq!(run(&mut dp, frame, WAN, 0).0, drop_(DropReason::Malformed));
    // An input port that does not exist.
    assert_eq!(
        run(&mut dp, Pkt::from_client(40000, SYN).tcp(), 2, 0).0,
        drop_(DropReason::Malformed)
    );
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn foreign_unicast_and_multicast_macs_are_dropped() {
    let mut dp = base();
    for mac in [
        STRANGER_MAC,
        LAN_MAC, // our other port's MAC, received on WAN
        MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]),
    ] {
        let frame = Pkt {
            dst_mac: mac,
            ..Pkt::from_client(40000, SYN)
        }
        .tcp();
        assert_eq!(
            run(&mut dp, frame, WAN, 0).0,
            drop_(DropReason::ForeignMac),
            "{mac}"
        );
    }
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn non_ip_ethertypes_are_dropped() {
    let mut dp = base();
    for ethertype in [0x86dd_u16, 0x88cc, 0x8100] {
        let mut frame = Pkt::from_client(40000, SYN).tcp();
        frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        assert_eq!(
            run(&mut dp, frame, WAN, 0).0,
            drop_(DropReason::UnsupportedEthertype),
            "{ethertype:#06x}"
        );
    }
}

#[test]
fn unknown_ip_protocol_is_unsupported() {
    let mut dp = base();
    for dst in [VIP, WAN_IP, STRANGER] {
        let eth = Pkt::from_client(1, 0).eth();
        let ip = Ipv4Repr {
            protocol: IpProtocol::Unknown(47),
            payload_len: 24,
            dst_addr: dst,
            ..Pkt::from_client(1, 0).ip()
        };
        let frame = build_ipv4_frame(&eth, &ip, |p| p.fill(0x11));
        assert_eq!(
            run(&mut dp, frame, WAN, 0).0,
            drop_(DropReason::UnsupportedProtocol),
            "GRE to {dst}"
        );
    }
}

#[test]
fn traffic_to_the_director_or_to_no_service_is_dropped() {
    let mut dp = base();
    let to = |dst, dport| Pkt {
        dst,
        dport,
        ..Pkt::from_client(40000, SYN)
    };
    assert_eq!(
        run(&mut dp, to(WAN_IP, 22).tcp(), WAN, 0).0,
        drop_(DropReason::ToDirector)
    );
    assert_eq!(
        run(&mut dp, to(LAN_IP, 80).tcp(), WAN, 0).0,
        drop_(DropReason::ToDirector)
    );
    assert_eq!(
        run(&mut dp, to(WAN_IP, 53).udp(), WAN, 0).0,
        drop_(DropReason::ToDirector)
    );
    // The VIP on a port without a service, the UDP VIP port over TCP.
    assert_eq!(
        run(&mut dp, to(VIP, 81).tcp(), WAN, 0).0,
        drop_(DropReason::NoService)
    );
    assert_eq!(
        run(&mut dp, to(VIP, 53).tcp(), WAN, 0).0,
        drop_(DropReason::NoService)
    );
    assert_eq!(
        run(&mut dp, to(VIP, 80).udp(), WAN, 0).0,
        drop_(DropReason::NoService)
    );
    // An address that is nobody's.
    assert_eq!(
        run(&mut dp, to(STRANGER, 80).tcp(), WAN, 0).0,
        drop_(DropReason::NoService)
    );
    assert_eq!(dp.conns.len(), 0);
}

#[test]
fn reply_to_a_client_with_no_route_is_dropped() {
    // A server outside every prefix cannot be configured without a gateway,
    // so the reachable NoRoute case is a reply towards a client outside
    // every prefix.
    let far_client = Ipv4Addr::new(192, 0, 2, 7);
    let mut dp = base();
    let syn = Pkt {
        src: far_client,
        ..Pkt::from_client(40000, SYN)
    };
    assert_eq!(run(&mut dp, syn.tcp(), WAN, 0).0, forward(LAN, RS1));
    let reply = Pkt {
        dst: far_client,
        ..Pkt::from_server(RS1, 40000, SYN | ACK)
    };
    let (v, out) = run(&mut dp, reply.tcp(), LAN, 1);
    assert_eq!(v, drop_(DropReason::NoRoute));
    assert_eq!(out, reply.tcp(), "not rewritten");

    // With a gateway the same reply leaves through it.
    let text = BASE.replacen(
        "addresses = [\"198.18.0.1/24\"]",
        "addresses = [\"198.18.0.1/24\"]\ngateway = \"198.18.0.254\"",
        1,
    );
    let mut dp = plane(&text);
    assert_eq!(run(&mut dp, syn.tcp(), WAN, 0).0, forward(LAN, RS1));
    let (v, out) = run(&mut dp, reply.tcp(), LAN, 1);
    assert_eq!(v, forward(WAN, Ipv4Addr::new(198, 18, 0, 254)));
    assert_frame(&out, &reply.as_vip(VIP, 80).tcp());
}

#[test]
fn full_connection_table_drops_new_flows() {
    let mut dp = plane_with(
        BASE,
        Limits {
            connections: 2,
            neighbors: 4,
            templates: 256,
        },
    );
    for sport in [1, 2] {
        assert!(matches!(
            run(&mut dp, Pkt::from_client(sport, SYN).tcp(), WAN, 0).0,
            Verdict::Forward { .. }
        ));
    }
    assert_eq!(
        run(&mut dp, Pkt::from_client(3, SYN).tcp(), WAN, 0).0,
        drop_(DropReason::TableFull)
    );
    assert_eq!(dp.conns.len(), 2);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 1), load(0, 1)]);
    assert_eq!(dp.counters.conns_live.get(), 2);
}

// ---------------------------------------------------------------------------
// Properties: arbitrary input never panics; accounting stays consistent
// ---------------------------------------------------------------------------

/// Valid frames of every kind the pipeline handles, to be mutated.
fn seed_frames() -> Vec<(usize, Vec<u8>)> {
    vec![
        (WAN, Pkt::from_client(40000, SYN).tcp()),
        (
            WAN,
            Pkt {
                payload: b"data",
                ..Pkt::from_client(40000, ACK | PSH)
            }
            .tcp(),
        ),
        (LAN, Pkt::from_server(RS1, 40000, SYN | ACK).tcp()),
        (
            WAN,
            Pkt {
                dport: 53,
                payload: b"query",
                ..Pkt::from_client(53000, 0)
            }
            .udp(),
        ),
        (WAN, echo_request(VIP, 1, 1, b"ping")),
        (WAN, arp_request(VIP)),
        (
            LAN,
            arp_frame(
                RS1_MAC,
                LAN_MAC,
                ArpOperation::Reply,
                (RS1_MAC, RS1),
                (LAN_MAC, LAN_IP),
            ),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in pvec(any::<u8>(), 0..160), port in 0usize..3) {
        let mut dp = base();
        let mut frame = bytes;
        let _ = dp.process(&mut frame, port, 0);
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in 0usize..7,
        edits in pvec((0usize..128, any::<u8>()), 0..6),
        cut in proptest::option::of(0usize..128),
        fix_ip_checksum in any::<bool>(),
        extra in pvec(any::<u8>(), 0..8),
    ) {
        let mut dp = base();
        // Open a connection first so reply paths are exercised too.
        run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 0);
        let (port, mut frame) = seed_frames().swap_remove(seed);
        frame.extend_from_slice(&extra);
        for (at, value) in edits {
            if let Some(b) = frame.get_mut(at) {
                *b = value;
            }
        }
        if let Some(len) = cut {
            frame.truncate(len);
        }
        if fix_ip_checksum && frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            if (20..=60).contains(&ihl) && frame.len() >= 14 + ihl {
                refill_ip_checksum(&mut frame);
            }
        }
        let input = frame.clone();
        let verdict = dp.process(&mut frame, port, 1);
        prop_assert_eq!(frame.len(), input.len());
        match verdict {
            Verdict::Drop(_) | Verdict::Consumed => prop_assert_eq!(&frame, &input),
            Verdict::Forward { .. } => {
                let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
                prop_assert!(ip.verify_checksum(), "forwarded IPv4 checksum");
                prop_assert_eq!(ip.ttl() + 1, input[14 + 8]);
            }
            Verdict::Reply { port: out } => {
                prop_assert_eq!(out, port);
                if frame[12..14] == [0x08, 0x00] {
                    assert_checksums(&frame);
                }
            }
            // The base configuration has no tun server.
            v @ (Verdict::Encapsulate { .. } | Verdict::Generated { .. }) => {
                prop_assert!(false, "unexpected {:?}", v);
            }
        }
    }

    /// Random client and server packets over a few flows: the per-server
    /// counts always equal the states in the table, and expiry empties both.
    #[test]
    fn loads_always_match_the_connection_table(
        steps in pvec((any::<bool>(), 0u16..4, 0usize..8, 0u64..5_000), 1..80),
    ) {
        let mut dp = base();
        let flag_set = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0];
        let mut now = 0;
        for (from_client, flow, f, dt) in steps {
            now += dt;
            let sport = 50_000 + flow;
            let flags = flag_set[f];
            let frame = if from_client {
                Pkt::from_client(sport, flags).tcp()
            } else {
                match dp.conns.find_from_client(&client_key(sport)) {
                    Some(id) => Pkt::from_server(dp.conns.get(id).real_addr, sport, flags).tcp(),
                    None => Pkt::from_server(RS1, sport, flags).tcp(),
                }
            };
            let port = if from_client { WAN } else { LAN };
            let _ = dp.process(&mut frame.clone(), port, now);
            if dt % 7 == 0 {
                dp.expire(now, 16);
            }
            let mut expected = vec![load(0, 0); 2];
            for (_, conn) in dp.conns.iter() {
                let i = usize::from(conn.real_addr == RS2);
                if conn.state.is_active() {
                    expected[i].0 += 1;
                } else {
                    expected[i].1 += 1;
                }
            }
            prop_assert_eq!(loads(&dp, SVC_TCP), expected);
            prop_assert_eq!(dp.counters.conns_live.get(), dp.conns.len() as u64);
        }
        dp.expire(now + 10_000_000, 1 << 16);
        prop_assert_eq!(dp.conns.len(), 0);
        prop_assert_eq!(loads(&dp, SVC_TCP), vec![load(0, 0); 2]);
        prop_assert_eq!(dp.counters.conns_live.get(), 0);
    }
}

// ---------------------------------------------------------------------------
// rewrite_destination / rewrite_source against full recomputation
// ---------------------------------------------------------------------------

fn any_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

#[derive(Clone, Debug)]
struct Headers {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    ttl: u8,
    ident: u16,
    dont_frag: bool,
}

fn headers() -> impl Strategy<Value = Headers> {
    (
        any_addr(),
        any_addr(),
        any::<u16>(),
        any::<u16>(),
        2u8..=255,
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(src, dst, sport, dport, ttl, ident, dont_frag)| Headers {
            src,
            dst,
            sport,
            dport,
            ttl,
            ident,
            dont_frag,
        })
}

impl Headers {
    fn ip(&self) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: self.src,
            dst_addr: self.dst,
            ttl: self.ttl,
            ident: self.ident,
            dont_frag: self.dont_frag,
            ..Ipv4Repr::default()
        }
    }

    fn eth() -> EthernetRepr {
        EthernetRepr {
            src_addr: CLIENT_MAC,
            dst_addr: WAN_MAC,
            ethertype: EtherType::Ipv4,
        }
    }

    fn tcp(&self, payload: &[u8], flags: u8, seq: u32, mss: Option<u16>) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: self.sport,
            dst_port: self.dport,
            seq_number: seq,
            ack_number: seq.rotate_left(7),
            flags,
            window_len: 1000,
            max_seg_size: mss,
            payload,
            ..TcpRepr::default()
        };
        build_tcp_frame(&Self::eth(), &self.ip(), &tcp)
    }

    fn udp(&self, payload: &[u8]) -> Vec<u8> {
        build_udp_frame(
            &Self::eth(),
            &self.ip(),
            &UdpRepr {
                src_port: self.sport,
                dst_port: self.dport,
                payload,
            },
        )
    }

    fn dnat(&self, addr: Ipv4Addr, port: u16) -> Headers {
        Headers {
            dst: addr,
            dport: port,
            ttl: self.ttl - 1,
            ..self.clone()
        }
    }

    fn snat(&self, addr: Ipv4Addr, port: u16) -> Headers {
        Headers {
            src: addr,
            sport: port,
            ttl: self.ttl - 1,
            ..self.clone()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn tcp_rewrites_equal_full_recomputation(
        h in headers(),
        addr in any_addr(),
        port in any::<u16>(),
        payload in pvec(any::<u8>(), 0..80),
        flags in any::<u8>(),
        seq in any::<u32>(),
        mss in proptest::option::of(any::<u16>()),
    ) {
        let mut frame = h.tcp(&payload, flags, seq, mss);
        rewrite_destination(&mut frame, 34, 6, addr, port);
        prop_assert_eq!(&frame, &h.dnat(addr, port).tcp(&payload, flags, seq, mss));

        let mut frame = h.tcp(&payload, flags, seq, mss);
        rewrite_source(&mut frame, 34, 6, addr, port);
        prop_assert_eq!(&frame, &h.snat(addr, port).tcp(&payload, flags, seq, mss));
    }

    #[test]
    fn udp_rewrites_equal_full_recomputation(
        h in headers(),
        addr in any_addr(),
        port in any::<u16>(),
        payload in pvec(any::<u8>(), 0..80),
    ) {
        let mut frame = h.udp(&payload);
        rewrite_destination(&mut frame, 34, 17, addr, port);
        prop_assert_eq!(&frame, &h.dnat(addr, port).udp(&payload));

        let mut frame = h.udp(&payload);
        rewrite_source(&mut frame, 34, 17, addr, port);
        prop_assert_eq!(&frame, &h.snat(addr, port).udp(&payload));
    }
}

/// The first two-byte payload for which `pick(frame)` holds.
fn find_payload(mut pick: impl FnMut(&[u8; 2]) -> bool) -> [u8; 2] {
    (0..=u16::MAX)
        .map(u16::to_be_bytes)
        .find(|p| pick(p))
        .expect("some payload fits")
}

fn l4_checksum(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34 + 16], frame[34 + 17]])
}

fn udp_checksum(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34 + 6], frame[34 + 7]])
}

fn fixed_headers() -> Headers {
    Headers {
        src: CLIENT,
        dst: VIP,
        sport: 40000,
        dport: 80,
        ttl: 64,
        ident: 1,
        dont_frag: true,
    }
}

#[test]
fn tcp_rewrite_edge_checksums() {
    let h = fixed_headers();
    let after = h.dnat(RS1, RS_PORT);
    // The rewritten segment's checksum is 0x0000 (valid for TCP).
    let p = find_payload(|p| l4_checksum(&after.tcp(p, ACK, 1, None)) == 0);
    let mut frame = h.tcp(&p, ACK, 1, None);
    rewrite_destination(&mut frame, 34, 6, RS1, RS_PORT);
    assert_eq!(l4_checksum(&frame), 0);
    assert_frame(&frame, &after.tcp(&p, ACK, 1, None));
    // The original checksum is 0x0000.
    let p = find_payload(|p| l4_checksum(&h.tcp(p, ACK, 1, None)) == 0);
    let mut frame = h.tcp(&p, ACK, 1, None);
    rewrite_destination(&mut frame, 34, 6, RS1, RS_PORT);
    assert_frame(&frame, &after.tcp(&p, ACK, 1, None));
}

#[test]
fn udp_rewrite_edge_checksums() {
    let h = Headers {
        dport: 53,
        ..fixed_headers()
    };
    let after = h.dnat(RS1, DNS_RS_PORT);
    // The rewritten datagram sums to zero: transmitted as 0xffff.
    let p = find_payload(|p| udp_checksum(&after.udp(p)) == 0xffff);
    let mut frame = h.udp(&p);
    rewrite_destination(&mut frame, 34, 17, RS1, DNS_RS_PORT);
    assert_eq!(udp_checksum(&frame), 0xffff);
    assert_frame(&frame, &after.udp(&p));
    // The original checksum is 0xffff.
    let p = find_payload(|p| udp_checksum(&h.udp(p)) == 0xffff);
    let mut frame = h.udp(&p);
    rewrite_destination(&mut frame, 34, 17, RS1, DNS_RS_PORT);
    assert_frame(&frame, &after.udp(&p));
    // The source rewrite, the same.
    let snatted = h.snat(FAR_VIP, 5353);
    let p = find_payload(|p| udp_checksum(&snatted.udp(p)) == 0xffff);
    let mut frame = h.udp(&p);
    rewrite_source(&mut frame, 34, 17, FAR_VIP, 5353);
    assert_eq!(udp_checksum(&frame), 0xffff);
    assert_frame(&frame, &snatted.udp(&p));
}

// ---------------------------------------------------------------------------
// Odds and ends
// ---------------------------------------------------------------------------

#[test]
fn ecn_setup_syn_opens_a_connection() {
    // SYN with ECE and CWR (RFC 3168 ECN setup) is still a new connection.
    let mut dp = base();
    let syn = Pkt::from_client(40000, SYN | 0x40 | 0x80);
    let (v, out) = run(&mut dp, syn.tcp(), WAN, 0);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out, &syn.to_server(RS1, RS_PORT).tcp());
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::SynRecv));
}

#[test]
fn reloading_the_same_configuration_keeps_connections_and_loads() {
    let mut dp = base();
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    run(&mut dp, Pkt::from_client(40001, SYN).tcp(), WAN, 0);
    assert_eq!(loads(&dp, SVC_TCP), [load(1, 0), load(0, 1)]);
    dp.apply_snapshot(Arc::new(snapshot(BASE)));
    assert_eq!(loads(&dp, SVC_TCP), [load(1, 0), load(0, 1)]);
    assert_eq!(
        run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 1).0,
        forward(LAN, RS1)
    );
    assert_eq!(dp.expire(10_000_000, 1 << 16), 2);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
}

#[test]
fn reloading_without_a_server_keeps_the_other_servers_loads() {
    let mut dp = base();
    // An established TCP connection to RS1 and a UDP flow to RS1.
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    let query = Pkt {
        dport: 53,
        ..Pkt::from_client(53000, 0)
    };
    assert_eq!(run(&mut dp, query.udp(), WAN, 0).0, forward(LAN, RS1));
    assert_eq!(loads(&dp, SVC_TCP), [load(1, 0), load(0, 0)]);
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 1), load(0, 0)]);

    // RS1 leaves the TCP service; nothing else changes.
    let without_rs1 = BASE.replacen(
        "[[service.server]]\naddress = \"198.19.0.11:8080\"\nforward = \"nat\"\n",
        "",
        1,
    );
    assert_ne!(without_rs1, BASE);
    let config = crate::config::parse(&without_rs1, "test.toml").unwrap();
    let next = dp.snapshot().compile_next(&config, &[WAN_MAC, LAN_MAC]);
    dp.apply_snapshot(Arc::new(next));
    // RS2 (TCP) had no connection; the UDP service is untouched.
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0)], "TCP RS2");
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 1), load(0, 0)], "UDP service");
    // When the connections expire, no count goes wrong either.
    dp.expire(10_000_000, 1 << 16);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0)]);
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 0), load(0, 0)]);
}

// ---------------------------------------------------------------------------
// Forwarding methods: dr, tun (and nat) in one service
// ---------------------------------------------------------------------------

/// rr over RS1 (nat, port 8080), RS2 (dr) and RS3 (tun) on VIP:80; the
/// LAN's MTU is 1200.
fn mixed() -> String {
    let ports = PORTS.replacen(
        "addresses = [\"198.19.0.1/24\"]\n",
        "addresses = [\"198.19.0.1/24\"]\nmtu = 1200\n",
        1,
    );
    format!(
        "{ports}[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:80\"\nscheduler = \"rr\"\n\
         [[service.server]]\naddress = \"{RS1}:{RS_PORT}\"\nforward = \"nat\"\n\
         [[service.server]]\naddress = \"{RS2}\"\nforward = \"dr\"\n\
         [[service.server]]\naddress = \"{RS3}:80\"\nforward = \"tun\"\n"
    )
}

/// What [`Verdict::Encapsulate`] asks the worker to do, on a `Vec`.
fn encapsulated(frame: &[u8], outer_src: Ipv4Addr, outer_dst: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0u8; super::IPIP_HEADER_LEN];
    out.extend_from_slice(frame);
    super::encapsulate_ipip(&mut out, outer_src, outer_dst);
    out
}

#[test]
fn one_service_mixes_nat_dr_and_tun() {
    let mut dp = plane(&mixed());
    let syn = |sport| Pkt::from_client(sport, SYN);

    // nat: addresses rewritten, TTL − 1.
    let (v, out) = run(&mut dp, syn(40000).tcp(), WAN, 0);
    assert_eq!(v, forward(LAN, RS1));
    assert_frame(&out, &syn(40000).to_server(RS1, RS_PORT).tcp());

    // dr: the IP packet is untouched (TTL too); only the link layer will
    // change, towards RS2 itself.
    let (v, out) = run(&mut dp, syn(40001).tcp(), WAN, 0);
    assert_eq!(v, forward(LAN, RS2));
    assert_eq!(out, syn(40001).tcp());

    // tun: the packet is untouched and encapsulated from the LAN address.
    let (v, out) = run(&mut dp, syn(40002).tcp(), WAN, 0);
    assert_eq!(
        v,
        Verdict::Encapsulate {
            port: LAN,
            next_hop: RS3,
            outer_src: LAN_IP,
            outer_dst: RS3,
        }
    );
    assert_eq!(out, syn(40002).tcp());
    let inner = &out[14..];
    let expected = crate::wire::build_ipv4_frame(
        &syn(40002).eth(),
        &Ipv4Repr {
            src_addr: LAN_IP,
            dst_addr: RS3,
            protocol: IpProtocol::IpIp,
            payload_len: inner.len(),
            ttl: 64,
            ident: 0x4242,
            dont_frag: true,
        },
        |payload| payload.copy_from_slice(inner),
    );
    let got = encapsulated(&out, LAN_IP, RS3);
    assert_eq!(got, expected, "outer header byte for byte");
    assert!(Ipv4Packet::new_checked(&got[14..])
        .unwrap()
        .verify_checksum());
    assert_eq!(dp.conns.len(), 3);
}

#[test]
fn dr_and_tun_connections_track_state_from_client_packets_alone() {
    let mut dp = plane(&mixed());
    run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 0); // nat → RS1
    run(&mut dp, Pkt::from_client(40001, SYN).tcp(), WAN, 0); // dr → RS2
    run(&mut dp, Pkt::from_client(40002, SYN).tcp(), WAN, 0); // tun → RS3
                                                              // The replies of RS2 and RS3 bypass the director: the client's ACK
                                                              // alone establishes their connections (IPVS's input-only table).
    for sport in [40001, 40002] {
        run(&mut dp, Pkt::from_client(sport, ACK).tcp(), WAN, 10);
        assert_eq!(
            state_of(&dp, &client_key(sport)),
            Some(ConnState::Established)
        );
    }
    assert_eq!(loads(&dp, 0), [load(0, 1), load(1, 0), load(1, 0)]);
    // The nat connection still waits for its SYN-ACK.
    assert_eq!(state_of(&dp, &client_key(40000)), Some(ConnState::SynRecv));
}

#[test]
fn dr_reply_routed_through_the_director_is_only_routed() {
    let mut dp = plane(&mixed());
    run(&mut dp, Pkt::from_client(40001, SYN).tcp(), WAN, 0); // nat → RS1
    run(&mut dp, Pkt::from_client(40002, SYN).tcp(), WAN, 0); // dr → RS2
    let reply = Pkt {
        sport: 80,
        ..Pkt::from_server(RS2, 40002, SYN | ACK)
    };
    let (v, out) = run(&mut dp, reply.tcp(), LAN, 1);
    assert_eq!(v, forward(WAN, CLIENT));
    let routed = Pkt {
        ttl: reply.ttl - 1,
        ..reply
    };
    assert_frame(&out, &routed.tcp());
}

#[test]
fn too_big_for_the_tunnel_with_df_gets_icmp_fragmentation_needed() {
    let mut dp = plane(&mixed());
    for sport in [40000, 40001, 40002] {
        run(&mut dp, Pkt::from_client(sport, SYN).tcp(), WAN, 0);
    }
    // 1181 bytes fit the LAN's 1200 unencapsulated, not with 20 more.
    static BIG: [u8; 1141] = [0x5a; 1141];
    let data = Pkt {
        payload: &BIG,
        ..Pkt::from_client(40002, ACK | PSH)
    };
    let input = data.tcp();
    assert_eq!(input.len() - 14, 1181);
    let (v, out) = run(&mut dp, input.clone(), WAN, 1);
    let quote = &input[14..14 + 548];
    let mut expected = build_icmp_frame(
        &EthernetRepr {
            src_addr: CLIENT_MAC,
            dst_addr: WAN_MAC,
            ethertype: EtherType::Ipv4,
        },
        &Ipv4Repr {
            src_addr: WAN_IP,
            dst_addr: CLIENT,
            ttl: 64,
            ident: 0,
            dont_frag: false,
            ..Ipv4Repr::default()
        },
        &IcmpRepr::DstUnreachable {
            reason: crate::wire::icmp::IcmpDstUnreachable::FragRequired,
            next_hop_mtu: 1180,
            data: quote,
        },
    );
    expected[15] = 0xc0; // TOS: internetwork control, as Linux's ICMP errors
    refill_ip_checksum(&mut expected);
    assert_eq!(
        v,
        Verdict::Generated {
            port: WAN,
            next_hop: CLIENT,
            len: expected.len()
        }
    );
    assert_eq!(expected.len(), 14 + 576);
    assert_frame(&out[..expected.len()], &expected);
    assert_eq!(dp.counters.icmp_frag_needed_sent.get(), 1);

    // Without DF rvs does not fragment: counted and dropped.
    let mut no_df = input;
    no_df[14 + 6] &= !0x40;
    refill_ip_checksum(&mut no_df);
    let (v, _) = run(&mut dp, no_df, WAN, 2);
    assert_eq!(v, drop_(DropReason::TunnelTooBig));
    // A packet that fits is encapsulated.
    let (v, _) = run(&mut dp, Pkt::from_client(40002, ACK).tcp(), WAN, 3);
    assert!(matches!(v, Verdict::Encapsulate { .. }), "{v:?}");
}

// ---------------------------------------------------------------------------
// Persistence, port-0 services, groups, one-packet scheduling
// ---------------------------------------------------------------------------

const CLIENT_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

/// rr over RS1 and RS2 (nat :8080) on VIP:80 with `persistence`.
fn persistent(persistence: &str) -> String {
    service_config("rr", &[1, 1]).replace(
        "scheduler = \"rr\"\n",
        &format!("scheduler = \"rr\"\npersistence = {persistence}\n"),
    )
}

/// The real server a SYN from `client:sport` to VIP:`dport` is sent to.
fn syn_goes_to(
    dp: &mut DataPlane,
    client: Ipv4Addr,
    sport: u16,
    dport: u16,
    now: Millis,
) -> (Ipv4Addr, u16) {
    let syn = Pkt {
        src: client,
        dport,
        ..Pkt::from_client(sport, SYN)
    };
    let (v, out) = run(dp, syn.tcp(), WAN, now);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    (ip.dst_addr(), tcp.dst_port())
}

#[test]
fn persistence_sends_a_client_to_one_server() {
    let mut dp = plane(&persistent("{ timeout = 10 }"));
    for sport in 40000..40030 {
        assert_eq!(syn_goes_to(&mut dp, CLIENT, sport, 80, 0), (RS1, RS_PORT));
    }
    // rr continues for a new client: the next server.
    for sport in 40000..40005 {
        assert_eq!(syn_goes_to(&mut dp, CLIENT_B, sport, 80, 0), (RS2, RS_PORT));
    }
    assert_eq!(dp.templates.len(), 2);
    let t = dp
        .templates
        .iter()
        .find(|(k, _)| k.client == CLIENT)
        .unwrap()
        .1;
    assert_eq!((t.controlled, t.expires_at), (30, 10_000));
}

#[test]
fn persistence_netmask_groups_clients() {
    let mut dp = plane(&persistent("{ netmask = \"255.255.255.0\" }"));
    for (i, last) in [2u8, 3, 4, 5].into_iter().enumerate() {
        let client = Ipv4Addr::new(198, 18, 0, last);
        assert_eq!(syn_goes_to(&mut dp, client, 40000 + i as u16, 80, 0).0, RS1);
    }
    assert_eq!(dp.templates.len(), 1);
    // With /32 the same four clients alternate.
    let mut dp = plane(&persistent("{}"));
    let got: Vec<Ipv4Addr> = [2u8, 3, 4, 5]
        .into_iter()
        .map(|last| syn_goes_to(&mut dp, Ipv4Addr::new(198, 18, 0, last), 40000, 80, 0).0)
        .collect();
    assert_eq!(got, [RS1, RS2, RS1, RS2]);
}

#[test]
fn template_lives_while_it_has_connections_then_expires() {
    let mut dp = plane(&persistent("{ timeout = 1 }"));
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40000, 80, 0).0, RS1);
    // 5 s later: the template's second is up, but its connection (SYN_RECV,
    // 60 s) lives, so the template was re-armed and still holds.
    dp.expire(5_000, 1 << 16);
    assert_eq!(dp.templates.len(), 1);
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40001, 80, 5_000).0, RS1);
    // The client completes and then resets both connections; they close
    // (CLOSE lasts 10 s) and go. (IPVS ignores an RST in SYN_RECV.)
    for sport in [40000, 40001] {
        run(&mut dp, Pkt::from_client(sport, ACK).tcp(), WAN, 6_000);
        run(
            &mut dp,
            Pkt::from_client(sport, RST | ACK).tcp(),
            WAN,
            6_000,
        );
        assert_eq!(state_of(&dp, &client_key(sport)), Some(ConnState::Close));
    }
    dp.expire(16_000, 1 << 16);
    assert_eq!(dp.conns.len(), 0);
    // The template, now idle, expires at the next sweep after its time.
    dp.expire(20_000, 1 << 16);
    assert_eq!(dp.templates.len(), 0);
    // Scheduled anew: rr's next server.
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40002, 80, 20_000).0, RS2);
}

#[test]
fn quiesced_server_keeps_its_persistent_clients_removed_server_does_not() {
    let text = persistent("{ timeout = 300 }");
    let mut dp = plane(&text);
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40000, 80, 0).0, RS1);
    let reload = |dp: &mut DataPlane, text: &str| {
        let config = crate::config::parse(text, "test.toml").unwrap();
        let next = dp.snapshot().compile_next(&config, &[WAN_MAC, LAN_MAC]);
        dp.apply_snapshot(Arc::new(next));
    };
    // Weight 0: no new clients, but this one stays (as in IPVS).
    let quiesced = text.replacen("weight = 1", "weight = 0", 1);
    reload(&mut dp, &quiesced);
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40001, 80, 1).0, RS1);
    assert_eq!(syn_goes_to(&mut dp, CLIENT_B, 40001, 80, 1).0, RS2);
    // RS1 removed: its template goes, the client is scheduled anew.
    let removed = text.replacen(
        "[[service.server]]\naddress = \"198.19.0.11:8080\"\nforward = \"nat\"\nweight = 1\n",
        "",
        1,
    );
    assert_ne!(removed, text);
    reload(&mut dp, &removed);
    assert_eq!(dp.templates.len(), 1, "only CLIENT_B's template is left");
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40002, 80, 2).0, RS2);
}

#[test]
fn port_zero_service_persists_a_client_across_ports() {
    let text = format!(
        "{PORTS}[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:0\"\nscheduler = \"rr\"\n\
         persistence = {{ timeout = 60 }}\n\
         [[service.server]]\naddress = \"{RS1}\"\nforward = \"nat\"\n\
         [[service.server]]\naddress = \"{RS2}\"\nforward = \"nat\"\n"
    );
    let mut dp = plane(&text);
    // The server port follows the port the client asked for.
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40000, 80, 0), (RS1, 80));
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40001, 443, 0), (RS1, 443));
    assert_eq!(syn_goes_to(&mut dp, CLIENT, 40002, 8443, 0), (RS1, 8443));
    assert_eq!(syn_goes_to(&mut dp, CLIENT_B, 40000, 22, 0), (RS2, 22));
    // The reply is translated back to the port the client used.
    let reply = Pkt {
        sport: 443,
        ..Pkt::from_server(RS1, 40001, SYN | ACK)
    };
    let (v, out) = run(&mut dp, reply.tcp(), LAN, 1);
    assert_eq!(v, forward(WAN, CLIENT));
    assert_frame(&out, &reply.as_vip(VIP, 443).tcp());
}

#[test]
fn group_schedules_and_persists_its_members_as_one_service() {
    let text = format!(
        "{PORTS}[[group]]\nname = \"web\"\nmembers = [\"tcp:{VIP}:80\", \"tcp:{VIP}:443\"]\n\
         scheduler = \"rr\"\npersistence = {{ timeout = 60 }}\n\
         [[group.server]]\naddress = \"{RS1}\"\nforward = \"nat\"\n\
         [[group.server]]\naddress = \"{RS2}\"\nforward = \"nat\"\n"
    );
    let mut dp = plane(&text);
    for i in 0..20u8 {
        let client = Ipv4Addr::new(198, 18, 0, 10 + i);
        let http = syn_goes_to(&mut dp, client, 40000, 80, 0);
        let https = syn_goes_to(&mut dp, client, 40001, 443, 0);
        assert_eq!(http.0, https.0, "client {client}");
        assert_eq!((http.1, https.1), (80, 443));
        // rr over the clients: alternate servers.
        assert_eq!(http.0, if i % 2 == 0 { RS1 } else { RS2 });
    }
    // Other ports of the VIP are not members.
    let (v, _) = run(
        &mut dp,
        Pkt {
            dport: 8080,
            ..Pkt::from_client(1, SYN)
        }
        .tcp(),
        WAN,
        0,
    );
    assert_eq!(v, drop_(DropReason::NoService));
}

#[test]
fn one_packet_schedules_every_datagram_without_a_connection() {
    let text = BASE.replacen(
        "address = \"198.18.0.100:53\"\nscheduler = \"rr\"\n",
        "address = \"198.18.0.100:53\"\nscheduler = \"rr\"\none_packet = true\n",
        1,
    );
    assert_ne!(text, BASE);
    let mut dp = plane(&text);
    let query = Pkt {
        dport: 53,
        ..Pkt::from_client(53000, 0)
    };
    let mut got = Vec::new();
    for _ in 0..6 {
        let (v, out) = run(&mut dp, query.udp(), WAN, 0);
        let Verdict::Forward { next_hop, .. } = v else {
            panic!("{v:?}")
        };
        got.push(next_hop);
        assert_frame(&out, &query.to_server(next_hop, DNS_RS_PORT).udp());
    }
    assert_eq!(got, [RS1, RS2, RS1, RS2, RS1, RS2]);
    assert_eq!(dp.conns.len(), 0);
    assert_eq!(loads(&dp, SVC_UDP), [load(0, 0), load(0, 0)]);
    assert_eq!(dp.counters.one_packet_scheduled.get(), 6);
    // The answer, with no connection to find, is still translated back.
    let answer = Pkt {
        sport: DNS_RS_PORT,
        ..Pkt::from_server(RS2, 53000, 0)
    };
    let (v, out) = run(&mut dp, answer.udp(), LAN, 1);
    assert_eq!(v, forward(WAN, CLIENT));
    assert_frame(&out, &answer.as_vip(VIP, 53).udp());
}

// ---------------------------------------------------------------------------
// Steering between workers
// ---------------------------------------------------------------------------

#[test]
fn a_connection_and_its_replies_have_one_owner() {
    let snap = snapshot(BASE);
    let workers = 4;
    let mut owners = [0usize; 4];
    for last in (2..=200u8).filter(|&l| l != 100) {
        // (198.18.0.100 is the VIP.)
        let client = Ipv4Addr::new(198, 18, 0, last);
        for sport in [1000u16, 40000, 65000] {
            let request = Pkt {
                src: client,
                ..Pkt::from_client(sport, SYN)
            };
            let reply = Pkt {
                dst: client,
                ..Pkt::from_server(RS1, sport, SYN | ACK)
            };
            let owner = super::flow_owner(&request.tcp(), &snap, workers).unwrap();
            assert_eq!(super::flow_owner(&reply.tcp(), &snap, workers), Some(owner));
            // The client's address alone decides: all its ports meet.
            let other_port = Pkt {
                src: client,
                ..Pkt::from_client(sport ^ 0x5555, SYN)
            };
            assert_eq!(
                super::flow_owner(&other_port.tcp(), &snap, workers),
                Some(owner)
            );
            owners[owner] += 1;
        }
    }
    // Spread over every worker, none with more than twice its share.
    assert!(
        owners.iter().all(|&n| n > 0 && n < 2 * 594 / 4),
        "{owners:?}"
    );
    // One worker, ARP and ICMP: anyone may handle them.
    assert_eq!(
        super::flow_owner(&Pkt::from_client(1, SYN).tcp(), &snap, 1),
        None
    );
    assert_eq!(super::flow_owner(&arp_request(VIP), &snap, workers), None);
}

#[test]
fn clients_of_one_persistence_netmask_share_an_owner() {
    let snap = snapshot(&persistent("{ netmask = \"255.255.255.0\" }"));
    assert_eq!(snap.steer_mask, 0xffff_ff00);
    let owner_of = |last: u8| {
        let p = Pkt {
            src: Ipv4Addr::new(198, 18, 0, last),
            ..Pkt::from_client(40000, SYN)
        };
        super::flow_owner(&p.tcp(), &snap, 8).unwrap()
    };
    let first = owner_of(2);
    assert!((3..=254).all(|last| owner_of(last) == first));
    assert_eq!(snapshot(BASE).steer_mask, u32::MAX);
}

#[test]
fn an_arp_reply_aimed_at_us_is_offered_to_the_other_workers() {
    let mut dp = base();
    let reply = build_arp_frame(
        &EthernetRepr {
            src_addr: RS1_MAC,
            dst_addr: LAN_MAC,
            ethertype: EtherType::Arp,
        },
        &ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: RS1_MAC,
            source_protocol_addr: RS1,
            target_hardware_addr: LAN_MAC,
            target_protocol_addr: LAN_IP,
        },
    );
    assert_eq!(run(&mut dp, reply, LAN, 0).0, Verdict::Consumed);
    assert_eq!(dp.learned.take(), Some((RS1, RS1_MAC, LAN)));
    // Gossip about a stranger is not.
    let (_, _) = run(&mut dp, arp_request(STRANGER), WAN, 0);
    assert_eq!(dp.learned, None);
}

// ---------------------------------------------------------------------------
// Per-destination statistics; removed servers
// ---------------------------------------------------------------------------

#[test]
fn destination_statistics_count_connections_packets_and_ip_bytes() {
    let mut dp = base();
    let syn = Pkt::from_client(40000, SYN).tcp();
    let syn_ip_len = (syn.len() - 14) as u64;
    run(&mut dp, syn, WAN, 0); // → RS1
    let synack = Pkt::from_server(RS1, 40000, SYN | ACK).tcp();
    let synack_ip_len = (synack.len() - 14) as u64;
    run(&mut dp, synack, LAN, 1);
    let data = Pkt {
        payload: b"GET / HTTP/1.0\r\n\r\n",
        ..Pkt::from_client(40000, ACK | PSH)
    }
    .tcp();
    let data_ip_len = (data.len() - 14) as u64;
    run(&mut dp, data, WAN, 2);
    let rs1 = dp.snapshot().services[SVC_TCP].servers[0].dest_id as usize;
    let stats = dp.counters.dests.load_full();
    let d = &stats[rs1];
    assert_eq!(d.conns.get(), 1);
    assert_eq!((d.in_packets.get(), d.out_packets.get()), (2, 1));
    assert_eq!(d.in_bytes.get(), syn_ip_len + data_ip_len);
    assert_eq!(d.out_bytes.get(), synack_ip_len);
    // Nothing for RS2.
    let rs2 = dp.snapshot().services[SVC_TCP].servers[1].dest_id as usize;
    assert_eq!(stats[rs2].in_packets.get(), 0);
}

#[test]
fn statistics_survive_a_reload_that_adds_servers() {
    let mut dp = base();
    run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 0);
    let rs1 = dp.snapshot().services[SVC_TCP].servers[0].dest_id as usize;
    // Many new servers: the statistics array grows, the counts stay.
    let mut text = BASE.to_string();
    for i in 0..40 {
        text += &format!(
            "\n[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.100:{}\"\n\
             [[service.server]]\naddress = \"198.19.0.20:53\"\nforward = \"nat\"\n",
            1000 + i
        );
    }
    let config = crate::config::parse(&text, "test.toml").unwrap();
    let next = dp.snapshot().compile_next(&config, &[WAN_MAC, LAN_MAC]);
    assert!(next.dest_id_limit > 40);
    dp.apply_snapshot(Arc::new(next));
    let stats = dp.counters.dests.load_full();
    assert!(stats.len() >= 45);
    assert_eq!(stats[rs1].in_packets.get(), 1);
    assert_eq!(stats[rs1].conns.get(), 1);
}

#[test]
fn a_removed_servers_connections_end_at_their_next_packet() {
    let mut dp = base();
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    assert_eq!(handshake(&mut dp, 40001, 0), RS2);
    let without_rs1 = BASE.replacen(
        "[[service.server]]\naddress = \"198.19.0.11:8080\"\nforward = \"nat\"\n",
        "",
        1,
    );
    let config = crate::config::parse(&without_rs1, "test.toml").unwrap();
    let next = dp.snapshot().compile_next(&config, &[WAN_MAC, LAN_MAC]);
    dp.apply_snapshot(Arc::new(next));
    let live = dp.conns.len();
    let (v, _) = run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 10);
    assert_eq!(v, drop_(DropReason::NoDestination));
    assert_eq!(dp.conns.len(), live - 1);
    assert_eq!(state_of(&dp, &client_key(40000)), None);
    // RS2's connection is untouched.
    assert_eq!(
        run(&mut dp, Pkt::from_client(40001, ACK).tcp(), WAN, 10).0,
        forward(LAN, RS2)
    );
    // A new SYN from the same client port is scheduled afresh (to RS2).
    assert_eq!(
        run(&mut dp, Pkt::from_client(40000, SYN).tcp(), WAN, 11).0,
        forward(LAN, RS2)
    );
}

#[test]
fn a_server_over_its_upper_threshold_takes_no_new_connections_until_it_drains() {
    let text = service_config("rr", &[1, 1]).replacen(
        "weight = 1\n",
        "weight = 1\nupper_threshold = 2\n",
        1,
    );
    let mut dp = plane(&text);
    let to = |dp: &mut DataPlane, sport: u16, now: Millis| {
        let (v, _) = run(dp, Pkt::from_client(sport, SYN).tcp(), WAN, now);
        let Verdict::Forward { next_hop, .. } = v else {
            panic!("{v:?}")
        };
        next_hop
    };
    assert_eq!(to(&mut dp, 40000, 0), RS1);
    assert_eq!(to(&mut dp, 40001, 0), RS2);
    assert_eq!(to(&mut dp, 40002, 0), RS1); // RS1 now has 2: overloaded
    assert_eq!(to(&mut dp, 40003, 0), RS2);
    assert_eq!(to(&mut dp, 40004, 0), RS2, "rr skips the overloaded server");
    assert_eq!(to(&mut dp, 40005, 0), RS2);
    // One of RS1's connections resets and expires: 1 left, below 3/4 of 2.
    run(&mut dp, Pkt::from_client(40000, ACK).tcp(), WAN, 1);
    run(&mut dp, Pkt::from_client(40000, RST | ACK).tcp(), WAN, 1);
    dp.expire(11_000, 1 << 16);
    assert_eq!(loads(&dp, 0)[0], load(0, 1));
    let next: Vec<Ipv4Addr> = (40006..40008).map(|p| to(&mut dp, p, 11_000)).collect();
    assert!(next.contains(&RS1), "RS1 takes connections again: {next:?}");
}

#[test]
fn prefilled_connections_fill_the_table_without_touching_loads_or_traffic() {
    let mut dp = base();
    dp.prefill(500);
    assert_eq!(dp.conns.len(), 500);
    assert_eq!(loads(&dp, SVC_TCP), [load(0, 0), load(0, 0)]);
    assert_eq!(dp.counters.conns_live.get(), 0);
    // They never expire, and real traffic is scheduled as before.
    assert_eq!(dp.expire(u64::MAX / 2, 1 << 16), 0);
    assert_eq!(handshake(&mut dp, 40000, 0), RS1);
    assert_eq!(dp.conns.len(), 501);
    // No room beyond the table: prefill stops at capacity (1024 here).
    let mut full = base();
    full.prefill(10_000);
    assert_eq!(full.conns.len(), 1024);
}
