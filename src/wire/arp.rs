//! ARP (RFC 826) for IPv4 over Ethernet.
//!
//! The view uses the fixed Ethernet/IPv4 layout (hardware length 6,
//! protocol length 4, 28 bytes). `new_checked` only checks the length, so
//! the accessors never panic; check [`ArpPacket::is_ethernet_ipv4`] (or use
//! [`ArpRepr::parse`], which does) before trusting the addresses.

use super::{enum_with_unknown, EtherType, Result, WireError};
use crate::addr::MacAddr;
use std::net::Ipv4Addr;

enum_with_unknown! {
    /// ARP hardware type.
    pub enum ArpHardware(u16) {
        Ethernet = 1,
    }
}

enum_with_unknown! {
    /// ARP operation code.
    pub enum ArpOperation(u16) {
        Request = 1,
        Reply = 2,
    }
}

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Fails with `Truncated` if the buffer is shorter than 28 bytes.
    /// Trailing bytes (Ethernet padding) are allowed.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
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

    #[inline]
    fn mac_at(&self, range: core::ops::Range<usize>) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        MacAddr(mac)
    }

    #[inline]
    fn ip_at(&self, range: core::ops::Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[range];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Hardware type (HTYPE).
    #[inline]
    pub fn hardware_type(&self) -> ArpHardware {
        ArpHardware::from(self.u16_at(field::HTYPE))
    }

    /// Protocol type (PTYPE).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(self.u16_at(field::PTYPE))
    }

    /// Hardware address length (HLEN).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (PLEN).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// True when HTYPE/PTYPE/HLEN/PLEN describe Ethernet and IPv4, i.e. when
    /// the address accessors below are meaningful.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == ArpHardware::Ethernet
            && self.protocol_type() == EtherType::Ipv4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }

    /// Operation (OPER).
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.u16_at(field::OPER))
    }

    /// Sender hardware address (SHA).
    #[inline]
    pub fn source_hardware_addr(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }

    /// Sender protocol address (SPA).
    #[inline]
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    /// Target hardware address (THA).
    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddr {
        self.mac_at(field::THA)
    }

    /// Target protocol address (TPA).
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: ArpHardware) {
        self.set_u16_at(field::HTYPE, value.into());
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.set_u16_at(field::PTYPE, value.into());
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, value: ArpOperation) {
        self.set_u16_at(field::OPER, value.into());
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: MacAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: MacAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet/IPv4 ARP packet; `Malformed` for any other
    /// hardware/protocol combination.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.is_ethernet_ipv4() {
            return Err(WireError::Malformed);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes `emit` writes (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet.
    ///
    /// # Panics
    /// If the buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(ArpHardware::Ethernet);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, EthernetRepr};
    use proptest::prelude::*;

    /// Who has 198.18.0.2? Tell 198.18.0.1 (02:00:00:00:00:01), broadcast,
    /// not padded.
    pub(crate) const ARP_REQUEST_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x06, // eth
        0x00, 0x01, // htype Ethernet
        0x08, 0x00, // ptype IPv4
        0x06, 0x04, // hlen, plen
        0x00, 0x01, // request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sha
        0xc6, 0x12, 0x00, 0x01, // spa 198.18.0.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        0xc6, 0x12, 0x00, 0x02, // tpa 198.18.0.2
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(198, 18, 0, 1),
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: Ipv4Addr::new(198, 18, 0, 2),
        }
    }

    #[test]
    fn accessors() {
        let frame = EthernetFrame::new_checked(&ARP_REQUEST_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert!(frame.dst_addr().is_broadcast());
        let packet = ArpPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(packet.hardware_type(), ArpHardware::Ethernet);
        assert_eq!(packet.protocol_type(), EtherType::Ipv4);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert!(packet.is_ethernet_ipv4());
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(packet.source_hardware_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(packet.source_protocol_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(packet.target_hardware_addr(), MacAddr::ZERO);
        assert_eq!(packet.target_protocol_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(packet.into_inner().len(), 28);
    }

    #[test]
    fn check_len() {
        let arp = &ARP_REQUEST_FRAME[14..];
        assert_eq!(
            ArpPacket::new_checked(&arp[..27]).unwrap_err(),
            WireError::Truncated
        );
        // Ethernet padding after the packet is fine.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(arp);
        let packet = ArpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet).unwrap(), request_repr());
    }

    #[test]
    fn setters_make_a_reply() {
        let mut buf = [0u8; 28];
        buf.copy_from_slice(&ARP_REQUEST_FRAME[14..]);
        let mut packet = ArpPacket::new_checked(&mut buf[..]).unwrap();
        let me = MacAddr([2, 0, 0, 0, 0, 2]);
        let (sha, spa) = (packet.source_hardware_addr(), packet.source_protocol_addr());
        let tpa = packet.target_protocol_addr();
        packet.set_operation(ArpOperation::Reply);
        packet.set_target_hardware_addr(sha);
        packet.set_target_protocol_addr(spa);
        packet.set_source_hardware_addr(me);
        packet.set_source_protocol_addr(tpa);
        assert_eq!(
            ArpRepr::parse(&packet).unwrap(),
            ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: me,
                source_protocol_addr: Ipv4Addr::new(198, 18, 0, 2),
                target_hardware_addr: sha,
                target_protocol_addr: Ipv4Addr::new(198, 18, 0, 1),
            }
        );
        assert_eq!(&buf[6..8], &[0x00, 0x02]);
    }

    #[test]
    fn repr_round_trip() {
        let packet = ArpPacket::new_checked(&ARP_REQUEST_FRAME[14..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(repr, request_repr());
        assert_eq!(repr.buffer_len(), 28);
        let mut buf = [0u8; 42];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        EthernetRepr {
            src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_addr: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        }
        .emit(&mut frame);
        repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        assert_eq!(buf, ARP_REQUEST_FRAME);
    }

    #[test]
    fn parse_rejects_other_protocols() {
        let mut buf = [0u8; 28];
        buf.copy_from_slice(&ARP_REQUEST_FRAME[14..]);
        for (index, value) in [(1, 0x06), (3, 0xdd), (4, 8), (5, 16)] {
            let mut bad = buf;
            bad[index] = value;
            let packet = ArpPacket::new_checked(&bad[..]).unwrap();
            assert!(!packet.is_ethernet_ipv4());
            assert_eq!(ArpRepr::parse(&packet), Err(WireError::Malformed));
        }
        buf[7] = 9;
        let packet = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.operation(), ArpOperation::Unknown(9));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            match ArpPacket::new_checked(&bytes[..]) {
                Ok(p) => {
                    let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
                    let _ = (p.operation(), p.source_hardware_addr(), p.source_protocol_addr());
                    let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                    let _ = ArpRepr::parse(&p);
                }
                Err(e) => prop_assert_eq!(e, WireError::Truncated),
            }
        }
    }
}
