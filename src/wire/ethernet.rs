//! Ethernet II frames (IEEE 802.3 with an EtherType, no VLAN tag).

use super::{enum_with_unknown, Result, WireError};
use crate::addr::MacAddr;

enum_with_unknown! {
    /// The EtherType of an Ethernet II frame.
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        /// IEEE 802.1Q VLAN tag (not parsed by this module).
        Vlan = 0x8100,
        Ipv6 = 0x86dd,
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

/// Same type under the `XxxPacket` naming used by the other views.
pub type EthernetPacket<T> = EthernetFrame<T>;

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Fails with `Truncated` if the buffer cannot hold the header.
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

    /// Header length (always 14).
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// Length of a frame carrying `payload_len` bytes (no padding).
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    #[inline]
    fn mac_at(&self, range: core::ops::Range<usize>) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        MacAddr(mac)
    }

    /// Destination hardware address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        self.mac_at(field::DESTINATION)
    }

    /// Source hardware address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        self.mac_at(field::SOURCE)
    }

    /// EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let data = self.buffer.as_ref();
        EtherType::from(u16::from_be_bytes([
            data[field::ETHERTYPE.start],
            data[field::ETHERTYPE.start + 1],
        ]))
    }

    /// Everything after the header, including any trailing padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination hardware address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source hardware address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }

    /// Mutable access to everything after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: EtherType,
}

impl Default for EthernetRepr {
    fn default() -> Self {
        EthernetRepr {
            src_addr: MacAddr::ZERO,
            dst_addr: MacAddr::ZERO,
            ethertype: EtherType::Ipv4,
        }
    }
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length (14).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Bytes `emit` writes (the header).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the frame's buffer is shorter than 14 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Header of the ICMP echo request fixture, plus four payload bytes.
    const FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x34,
    ];

    #[test]
    fn accessors() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(frame.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.payload(), &[0x45, 0x00, 0x00, 0x34]);
        assert_eq!(EthernetFrame::<&[u8]>::header_len(), 14);
        assert_eq!(EthernetFrame::<&[u8]>::buffer_len(4), 18);
        assert_eq!(frame.into_inner(), &FRAME[..]);
    }

    #[test]
    fn check_len() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            EthernetFrame::new_checked(&[][..]).unwrap_err(),
            WireError::Truncated
        );
        let empty = EthernetFrame::new_checked(&FRAME[..14]).unwrap();
        assert!(empty.payload().is_empty());
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 18];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        frame.set_dst_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        frame.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        frame.set_ethertype(EtherType::Ipv4);
        frame
            .payload_mut()
            .copy_from_slice(&[0x45, 0x00, 0x00, 0x34]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn ethertype_conversions() {
        assert_eq!(EtherType::from(0x0806), EtherType::Arp);
        assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);
        assert_eq!(EtherType::from(0x8100), EtherType::Vlan);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(u16::from(EtherType::Unknown(0x88cc)), 0x88cc);
        assert_eq!(u16::from(EtherType::Arp), 0x0806);
    }

    #[test]
    fn repr_round_trip() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
                dst_addr: MacAddr([2, 0, 0, 0, 0, 2]),
                ethertype: EtherType::Ipv4,
            }
        );
        let mut buf = FRAME;
        buf[..14].fill(0);
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FRAME);
        assert_eq!(repr.buffer_len(), 14);
        assert_eq!(
            EthernetRepr::parse(&EthernetFrame::new_unchecked(&FRAME[..3])),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload());
                let _ = EthernetRepr::parse(&frame).unwrap();
            } else {
                prop_assert!(bytes.len() < 14);
            }
        }
    }
}
