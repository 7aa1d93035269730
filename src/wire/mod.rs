//! Zero-copy views of the packet formats the director handles.
//!
//! The layout follows the usual two-level design:
//!
//! * a *view* (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`, `TcpPacket`,
//!   `UdpPacket`, `IcmpPacket`) wraps any `T: AsRef<[u8]>` and reads (or,
//!   with `T: AsMut<[u8]>`, writes) header fields in place. Build a view
//!   with `new_checked`, which validates lengths once so that none of the
//!   accessors can panic afterwards; `new_unchecked` skips that (for
//!   emitting into a fresh buffer);
//! * a *repr* (`EthernetRepr`, `ArpRepr`, `Ipv4Repr`, `TcpRepr`, `UdpRepr`,
//!   `IcmpRepr`) is a plain value with `parse` and `emit`, meant for
//!   building packets (tests, traffic generation, control-plane replies),
//!   not for the fast path.
//!
//! The `build_*_frame` helpers at the bottom of this file assemble complete
//! Ethernet frames with correct checksums from reprs.
//!
//! Nothing here allocates (except the `build_*` helpers) and nothing uses
//! `unsafe`.

use std::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use arp::{ArpHardware, ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetPacket, EthernetRepr};
pub use icmp::{IcmpDstUnreachable, IcmpMessage, IcmpPacket, IcmpRepr, IcmpTimeExceeded};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use tcp::{TcpOption, TcpOptionsIter, TcpPacket, TcpRepr, TcpTimestamp};
pub use udp::{UdpPacket, UdpRepr};

/// Why a buffer could not be viewed (or parsed) as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// A field holds an impossible value (header length below the minimum,
    /// wrong version, bad checksum in a repr parse, ...).
    Malformed,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated packet"),
            WireError::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for WireError {}

/// Result type of the wire module.
pub type Result<T> = core::result::Result<T, WireError>;

/// Declares a C-like enum over an integer with a catch-all `Unknown(raw)`
/// variant, plus lossless `From` conversions both ways.
///
/// Note that `Unknown(x)` is only produced for values without a named
/// variant; do not construct `Unknown` with a named value by hand (it would
/// compare unequal to the named variant).
macro_rules! enum_with_unknown {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value without a named variant.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;

/// Assembles Ethernet + IPv4 + TCP with correct IPv4 and TCP checksums.
///
/// `eth.ethertype` is forced to IPv4, `ip.protocol` to TCP and
/// `ip.payload_len` to the TCP segment length; every other field is taken
/// from the reprs as given.
pub fn build_tcp_frame(eth: &EthernetRepr, ip: &Ipv4Repr, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let ip = Ipv4Repr {
        protocol: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        ..*ip
    };
    build_ipv4_frame(eth, &ip, |payload| {
        tcp.emit(
            &mut TcpPacket::new_unchecked(payload),
            ip.src_addr,
            ip.dst_addr,
        )
    })
}

/// Assembles Ethernet + IPv4 + UDP with correct IPv4 and UDP checksums.
///
/// `eth.ethertype` is forced to IPv4, `ip.protocol` to UDP and
/// `ip.payload_len` to the datagram length.
pub fn build_udp_frame(eth: &EthernetRepr, ip: &Ipv4Repr, udp: &UdpRepr<'_>) -> Vec<u8> {
    let ip = Ipv4Repr {
        protocol: IpProtocol::Udp,
        payload_len: udp.buffer_len(),
        ..*ip
    };
    build_ipv4_frame(eth, &ip, |payload| {
        udp.emit(
            &mut UdpPacket::new_unchecked(payload),
            ip.src_addr,
            ip.dst_addr,
        )
    })
}

/// Assembles Ethernet + IPv4 + ICMP with correct IPv4 and ICMP checksums.
///
/// `eth.ethertype` is forced to IPv4, `ip.protocol` to ICMP and
/// `ip.payload_len` to the message length.
pub fn build_icmp_frame(eth: &EthernetRepr, ip: &Ipv4Repr, icmp: &IcmpRepr<'_>) -> Vec<u8> {
    let ip = Ipv4Repr {
        protocol: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        ..*ip
    };
    build_ipv4_frame(eth, &ip, |payload| {
        icmp.emit(&mut IcmpPacket::new_unchecked(payload))
    })
}

/// Assembles Ethernet + ARP (`eth.ethertype` is forced to ARP). The frame
/// is not padded to the 60-byte Ethernet minimum; the NIC does that.
pub fn build_arp_frame(eth: &EthernetRepr, arp: &ArpRepr) -> Vec<u8> {
    let eth = EthernetRepr {
        ethertype: EtherType::Arp,
        ..*eth
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// Assembles Ethernet + IPv4 and lets `emit_payload` write the IPv4 payload
/// (exactly `ip.payload_len` bytes) in place.
pub fn build_ipv4_frame<F>(eth: &EthernetRepr, ip: &Ipv4Repr, emit_payload: F) -> Vec<u8>
where
    F: FnOnce(&mut [u8]),
{
    let eth = EthernetRepr {
        ethertype: EtherType::Ipv4,
        ..*eth
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    emit_payload(packet.payload_mut());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::MacAddr;
    use std::net::Ipv4Addr;

    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn error_display() {
        assert_eq!(WireError::Truncated.to_string(), "truncated packet");
        assert_eq!(WireError::Malformed.to_string(), "malformed packet");
    }

    #[test]
    fn build_tcp_frame_matches_fixture() {
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: EtherType::Unknown(0), // overridden
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 100),
            ident: 0xb7c3,
            dont_frag: true,
            ttl: 64,
            ..Ipv4Repr::default()
        };
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 0x1234_5678,
            flags: tcp::flags::SYN,
            window_len: 64240,
            max_seg_size: Some(1460),
            sack_permitted: true,
            timestamp: Some(TcpTimestamp {
                tsval: 0x00a1_b2c3,
                tsecr: 0,
            }),
            window_scale: Some(7),
            ..TcpRepr::default()
        };
        assert_eq!(build_tcp_frame(&eth, &ip, &tcp), tcp::tests::SYN_FRAME);
    }

    #[test]
    fn build_udp_frame_matches_fixture() {
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: EtherType::Ipv4,
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 53),
            ident: 1,
            dont_frag: false,
            ttl: 64,
            ..Ipv4Repr::default()
        };
        let udp = UdpRepr {
            src_port: 53000,
            dst_port: 53,
            payload: &udp::tests::UDP_FRAME[42..],
        };
        assert_eq!(build_udp_frame(&eth, &ip, &udp), udp::tests::UDP_FRAME);
    }

    #[test]
    fn build_icmp_frame_matches_fixture() {
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: EtherType::Ipv4,
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 2),
            ident: 0x5c1d,
            dont_frag: true,
            ttl: 64,
            ..Ipv4Repr::default()
        };
        let data: Vec<u8> = (0x10..0x28).collect();
        let icmp = IcmpRepr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: &data,
        };
        assert_eq!(build_icmp_frame(&eth, &ip, &icmp), icmp::tests::ECHO_FRAME);
    }

    #[test]
    fn build_arp_frame_matches_fixture() {
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MacAddr::BROADCAST,
            ethertype: EtherType::Ipv4, // overridden
        };
        let arp = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MAC_A,
            source_protocol_addr: Ipv4Addr::new(198, 18, 0, 1),
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: Ipv4Addr::new(198, 18, 0, 2),
        };
        assert_eq!(build_arp_frame(&eth, &arp), arp::tests::ARP_REQUEST_FRAME);
    }

    #[test]
    fn full_parse_chain_of_built_frame() {
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: EtherType::Ipv4,
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            ..Ipv4Repr::default()
        };
        let tcp = TcpRepr {
            src_port: 1234,
            dst_port: 443,
            seq_number: 7,
            ack_number: 9,
            flags: tcp::flags::ACK | tcp::flags::PSH,
            window_len: 512,
            payload: b"hello, world",
            ..TcpRepr::default()
        };
        let frame = build_tcp_frame(&eth, &ip, &tcp);
        let frame = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame).unwrap(), eth);
        let packet = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip_parsed = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(ip_parsed.protocol, IpProtocol::Tcp);
        assert_eq!(ip_parsed.payload_len, tcp.buffer_len());
        let segment = TcpPacket::new_checked(packet.payload()).unwrap();
        let parsed = TcpRepr::parse(&segment, ip.src_addr, ip.dst_addr).unwrap();
        assert_eq!(parsed, tcp);
    }
}
