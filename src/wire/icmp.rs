//! ICMP for IPv4 (RFC 792).
//!
//! An `IcmpPacket` covers its whole buffer (the checksum is computed over
//! all of it), so wrap exactly the message: `Ipv4Packet::payload()`.

use super::{checksum, enum_with_unknown, Ipv4Packet, Result, WireError};

enum_with_unknown! {
    /// ICMP message type.
    pub enum IcmpMessage(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        Redirect = 5,
        EchoRequest = 8,
        RouterAdvert = 9,
        RouterSolicit = 10,
        TimeExceeded = 11,
        ParamProblem = 12,
        Timestamp = 13,
        TimestampReply = 14,
    }
}

enum_with_unknown! {
    /// Codes of Destination Unreachable.
    pub enum IcmpDstUnreachable(u8) {
        NetUnreachable = 0,
        HostUnreachable = 1,
        ProtoUnreachable = 2,
        PortUnreachable = 3,
        /// Fragmentation needed and DF set; carries the next-hop MTU
        /// (RFC 1191).
        FragRequired = 4,
        SrcRouteFailed = 5,
        DstNetUnknown = 6,
        DstHostUnknown = 7,
        SrcHostIsolated = 8,
        NetProhibited = 9,
        HostProhibited = 10,
        NetUnreachToS = 11,
        HostUnreachToS = 12,
        CommProhibited = 13,
        HostPrecedViol = 14,
        PrecedCutoff = 15,
    }
}

enum_with_unknown! {
    /// Codes of Time Exceeded.
    pub enum IcmpTimeExceeded(u8) {
        TtlExpired = 0,
        FragExpired = 1,
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo request/reply.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Destination unreachable / fragmentation needed.
    pub const UNUSED: Range<usize> = 4..6;
    pub const MTU: Range<usize> = 6..8;
    pub const DATA: RangeFrom<usize> = 8..;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte
/// type-specific word).
pub const HEADER_LEN: usize = field::DATA.start;

/// A read/write view of an ICMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> IcmpMessage {
        IcmpMessage::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code (meaning depends on the type).
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Identifier of an echo request/reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Sequence number of an echo request/reply.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::MTU)
    }

    /// The data after the 8-byte header: echo data, or the quoted datagram
    /// of an error message.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// The datagram quoted by an error message (Destination Unreachable,
    /// Time Exceeded, ...), as a header-checked IPv4 view: its payload is
    /// whatever was quoted (usually 8 bytes: the ports, for TCP and UDP).
    /// Fails like [`Ipv4Packet::new_checked_header`].
    pub fn quoted_ipv4(&self) -> Result<Ipv4Packet<&[u8]>> {
        Ipv4Packet::new_checked_header(self.payload())
    }

    /// True when the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: IcmpMessage) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.set_u16_at(field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.set_u16_at(field::ECHO_SEQNO, value);
    }

    /// Sets the next-hop MTU and zeroes the unused word before it.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.set_u16_at(field::UNUSED, 0);
        self.set_u16_at(field::MTU, value);
    }

    /// Mutable data after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for IcmpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed ICMP message of one of the supported kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpRepr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    DstUnreachable {
        reason: IcmpDstUnreachable,
        /// Meaningful for `FragRequired`, 0 otherwise.
        next_hop_mtu: u16,
        /// The quoted datagram: IPv4 header plus at least 8 bytes.
        data: &'a [u8],
    },
    TimeExceeded {
        reason: IcmpTimeExceeded,
        /// The quoted datagram: IPv4 header plus at least 8 bytes.
        data: &'a [u8],
    },
}

impl<'a> IcmpRepr<'a> {
    /// Parses a message. `Malformed` for a bad checksum, an echo with a
    /// non-zero code, or a message type not represented here.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &IcmpPacket<&'a T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::Malformed);
        }
        let buffer: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        let data = &buffer[field::DATA];
        match (packet.msg_type(), packet.msg_code()) {
            (IcmpMessage::EchoRequest, 0) => Ok(IcmpRepr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (IcmpMessage::EchoReply, 0) => Ok(IcmpRepr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (IcmpMessage::DstUnreachable, code) => Ok(IcmpRepr::DstUnreachable {
                reason: code.into(),
                next_hop_mtu: packet.next_hop_mtu(),
                data,
            }),
            (IcmpMessage::TimeExceeded, code) => Ok(IcmpRepr::TimeExceeded {
                reason: code.into(),
                data,
            }),
            _ => Err(WireError::Malformed),
        }
    }

    /// Header length (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus data length.
    pub fn buffer_len(&self) -> usize {
        match self {
            IcmpRepr::EchoRequest { data, .. }
            | IcmpRepr::EchoReply { data, .. }
            | IcmpRepr::DstUnreachable { data, .. }
            | IcmpRepr::TimeExceeded { data, .. } => HEADER_LEN + data.len(),
        }
    }

    /// Writes the message and its checksum.
    ///
    /// # Panics
    /// If the buffer is not exactly `buffer_len()` bytes long (the checksum
    /// covers the whole buffer).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut IcmpPacket<T>) {
        let data = match *self {
            IcmpRepr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                packet.set_msg_type(IcmpMessage::EchoRequest);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            IcmpRepr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                packet.set_msg_type(IcmpMessage::EchoReply);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            IcmpRepr::DstUnreachable {
                reason,
                next_hop_mtu,
                data,
            } => {
                packet.set_msg_type(IcmpMessage::DstUnreachable);
                packet.set_msg_code(reason.into());
                packet.set_next_hop_mtu(next_hop_mtu);
                data
            }
            IcmpRepr::TimeExceeded { reason, data } => {
                packet.set_msg_type(IcmpMessage::TimeExceeded);
                packet.set_msg_code(reason.into());
                packet.set_next_hop_mtu(0);
                data
            }
        };
        packet.payload_mut().copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{udp, EthernetFrame, IpProtocol, UdpPacket};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Echo request 198.18.0.1 -> 198.18.0.2, ident 0x1234, seq 1, 24 data
    /// bytes 0x10..0x27. ICMP checksum 0xa079.
    pub(crate) const ECHO_FRAME: [u8; 66] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x34, 0x5c, 0x1d, 0x40, 0x00, 0x40, 0x01, 0x52, 0x84, // ip
        0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, //
        0x08, 0x00, 0xa0, 0x79, 0x12, 0x34, 0x00, 0x01, // icmp
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
        0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
    ];

    /// Port unreachable 198.18.0.53 -> 198.18.0.1 quoting the IPv4 header
    /// and UDP header of `udp::tests::UDP_FRAME`. ICMP checksum 0x04ca.
    pub(crate) const PORT_UNREACH_FRAME: [u8; 70] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x38, 0x07, 0x77, 0x00, 0x00, 0x40, 0x01, 0xe6, 0xf3, // ip
        0xc6, 0x12, 0x00, 0x35, 0xc6, 0x12, 0x00, 0x01, //
        0x03, 0x03, 0x04, 0xca, 0x00, 0x00, 0x00, 0x00, // icmp
        0x45, 0x00, 0x00, 0x39, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xee, 0x58, // quoted ip
        0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x35, //
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x28, 0xd0, // quoted udp
    ];

    #[test]
    fn echo_accessors() {
        let frame = EthernetFrame::new_checked(&ECHO_FRAME[..]).unwrap();
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(ip.protocol(), IpProtocol::Icmp);
        let packet = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(packet.msg_type(), IcmpMessage::EchoRequest);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!(packet.checksum(), 0xa079);
        assert!(packet.verify_checksum());
        assert_eq!(packet.echo_ident(), 0x1234);
        assert_eq!(packet.echo_seq_no(), 1);
        assert_eq!(packet.payload(), &ECHO_FRAME[42..]);
        assert_eq!(packet.into_inner().len(), 32);
    }

    #[test]
    fn port_unreachable_accessors() {
        let frame = EthernetFrame::new_checked(&PORT_UNREACH_FRAME[..]).unwrap();
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert!(ip.verify_checksum());
        let packet = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(packet.msg_type(), IcmpMessage::DstUnreachable);
        assert_eq!(
            IcmpDstUnreachable::from(packet.msg_code()),
            IcmpDstUnreachable::PortUnreachable
        );
        assert!(packet.verify_checksum());
        assert_eq!(packet.next_hop_mtu(), 0);
        let quoted = packet.quoted_ipv4().unwrap();
        assert_eq!(quoted.protocol(), IpProtocol::Udp);
        assert_eq!(quoted.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(quoted.dst_addr(), Ipv4Addr::new(198, 18, 0, 53));
        assert_eq!(quoted.total_len(), 57);
        // Only the UDP header was quoted; its length field says 37, so a
        // checked UDP view fails, but the ports are readable.
        assert_eq!(quoted.payload(), &udp::tests::UDP_FRAME[34..42]);
        assert_eq!(
            UdpPacket::new_checked(quoted.payload()).unwrap_err(),
            WireError::Truncated
        );
        let udp = UdpPacket::new_unchecked(quoted.payload());
        assert_eq!((udp.src_port(), udp.dst_port()), (53000, 53));
    }

    #[test]
    fn check_len_errors() {
        let message = &ECHO_FRAME[34..];
        assert_eq!(
            IcmpPacket::new_checked(&message[..7]).unwrap_err(),
            WireError::Truncated
        );
        let header_only = IcmpPacket::new_checked(&message[..8]).unwrap();
        assert!(header_only.payload().is_empty());
        // An error message quoting too little.
        let short = IcmpPacket::new_checked(&PORT_UNREACH_FRAME[34..50]).unwrap();
        assert_eq!(short.quoted_ipv4().unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 32];
        buf[8..].copy_from_slice(&ECHO_FRAME[42..]);
        let mut packet = IcmpPacket::new_unchecked(&mut buf[..]);
        packet.set_msg_type(IcmpMessage::EchoRequest);
        packet.set_msg_code(0);
        packet.set_echo_ident(0x1234);
        packet.set_echo_seq_no(1);
        packet.fill_checksum();
        assert_eq!(&buf[..], &ECHO_FRAME[34..]);
        let mut packet = IcmpPacket::new_unchecked(&mut buf[..]);
        packet.set_msg_type(IcmpMessage::DstUnreachable);
        packet.set_msg_code(IcmpDstUnreachable::FragRequired.into());
        packet.set_next_hop_mtu(1480);
        packet.payload_mut()[0] = 0x45;
        packet.fill_checksum();
        assert!(packet.verify_checksum());
        assert_eq!(packet.next_hop_mtu(), 1480);
        assert_eq!(&buf[4..8], &[0, 0, 0x05, 0xc8]);
        assert_eq!(buf[8], 0x45);
    }

    #[test]
    fn repr_round_trips() {
        let echo = IcmpPacket::new_checked(&ECHO_FRAME[34..]).unwrap();
        let repr = IcmpRepr::parse(&echo).unwrap();
        assert_eq!(
            repr,
            IcmpRepr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: &ECHO_FRAME[42..],
            }
        );
        assert_eq!(repr.header_len(), 8);
        assert_eq!(repr.buffer_len(), 32);
        let mut buf = [0u8; 32];
        repr.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &ECHO_FRAME[34..]);

        let unreach = IcmpPacket::new_checked(&PORT_UNREACH_FRAME[34..]).unwrap();
        let repr = IcmpRepr::parse(&unreach).unwrap();
        assert_eq!(
            repr,
            IcmpRepr::DstUnreachable {
                reason: IcmpDstUnreachable::PortUnreachable,
                next_hop_mtu: 0,
                data: &udp::tests::UDP_FRAME[14..42],
            }
        );
        let mut buf = [0xffu8; 36];
        repr.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &PORT_UNREACH_FRAME[34..]);

        let others = [
            IcmpRepr::EchoReply {
                ident: 7,
                seq_no: 0xffff,
                data: b"odd",
            },
            IcmpRepr::DstUnreachable {
                reason: IcmpDstUnreachable::FragRequired,
                next_hop_mtu: 1400,
                data: &PORT_UNREACH_FRAME[42..],
            },
            IcmpRepr::TimeExceeded {
                reason: IcmpTimeExceeded::TtlExpired,
                data: &PORT_UNREACH_FRAME[42..],
            },
        ];
        for repr in others {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]));
            let packet = IcmpPacket::new_checked(&buf[..]).unwrap();
            assert!(packet.verify_checksum());
            assert_eq!(IcmpRepr::parse(&packet).unwrap(), repr);
        }
    }

    #[test]
    fn repr_parse_errors() {
        let mut buf = [0u8; 32];
        buf.copy_from_slice(&ECHO_FRAME[34..]);
        buf[3] ^= 1;
        let packet = IcmpPacket::new_checked(&buf[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(IcmpRepr::parse(&packet), Err(WireError::Malformed));
        // Echo with a non-zero code.
        let mut packet = IcmpPacket::new_checked(&mut buf[..]).unwrap();
        packet.set_msg_code(1);
        packet.fill_checksum();
        let packet = IcmpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(IcmpRepr::parse(&packet), Err(WireError::Malformed));
        // Unsupported type.
        let mut packet = IcmpPacket::new_checked(&mut buf[..]).unwrap();
        packet.set_msg_type(IcmpMessage::Timestamp);
        packet.set_msg_code(0);
        packet.fill_checksum();
        let packet = IcmpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.msg_type(), IcmpMessage::Timestamp);
        assert_eq!(IcmpRepr::parse(&packet), Err(WireError::Malformed));
    }

    #[test]
    fn enum_conversions() {
        assert_eq!(IcmpMessage::from(8), IcmpMessage::EchoRequest);
        assert_eq!(IcmpMessage::from(42), IcmpMessage::Unknown(42));
        assert_eq!(u8::from(IcmpMessage::TimeExceeded), 11);
        assert_eq!(
            IcmpDstUnreachable::from(4),
            IcmpDstUnreachable::FragRequired
        );
        assert_eq!(
            IcmpDstUnreachable::from(16),
            IcmpDstUnreachable::Unknown(16)
        );
        assert_eq!(IcmpTimeExceeded::from(1), IcmpTimeExceeded::FragExpired);
    }

    #[test]
    fn all_zero_echo_reply_needs_full_checksum() {
        // Echo request ident 0, seq 0, no data -> reply that is all zero:
        // the incremental update gives 0x0000 (rejected), a recomputation
        // 0xffff (see checksum module documentation).
        let mut buf = [8u8, 0, 0, 0, 0, 0, 0, 0];
        let mut packet = IcmpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum();
        assert_eq!(packet.checksum(), !0x0800);
        let incremental = checksum::update_u16(packet.checksum(), 0x0800, 0x0000);
        packet.set_msg_type(IcmpMessage::EchoReply);
        assert_eq!(incremental, 0x0000);
        packet.set_checksum(incremental);
        assert!(!packet.verify_checksum());
        packet.fill_checksum();
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = IcmpPacket::new_checked(&bytes[..]) {
                let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
                let _ = (packet.echo_ident(), packet.echo_seq_no(), packet.next_hop_mtu());
                let _ = (packet.payload(), packet.verify_checksum());
                if let Ok(quoted) = packet.quoted_ipv4() {
                    let _ = (quoted.payload(), quoted.options(), quoted.verify_checksum());
                }
                let _ = IcmpRepr::parse(&packet);
            }
            let mut copy = bytes.clone();
            if let Ok(mut packet) = IcmpPacket::new_checked(&mut copy[..]) {
                packet.fill_checksum();
                prop_assert!(packet.verify_checksum());
            }
        }

        #[test]
        fn checksum_fill_verify(data in proptest::collection::vec(any::<u8>(), 0..64), ident in any::<u16>()) {
            let repr = IcmpRepr::EchoRequest { ident, seq_no: 3, data: &data };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]));
            let packet = IcmpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(IcmpRepr::parse(&packet).unwrap(), repr);
        }
    }
}
