//! UDP (RFC 768) datagrams.
//!
//! The datagram ends at its length field; bytes after it in the buffer are
//! ignored. A checksum field of 0 means "no checksum": `verify_checksum`
//! accepts it, `fill_checksum` never produces it (a computed 0 is sent as
//! `0xffff`), and the incremental `rewrite_*`/`update_*` methods keep it 0.

use super::{checksum, IpProtocol, Result, WireError};
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 8 bytes or than the length
    /// field; `Malformed` if the length field is below 8.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len < field_len {
            return Err(WireError::Truncated);
        }
        Ok(())
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Checksum field (0 = none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The datagram bytes, header included, bounded by the length field.
    #[inline]
    fn datagram(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[..usize::from(self.len()).min(data.len())]
    }

    /// The payload, bounded by the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.datagram()[HEADER_LEN..]
    }

    /// True when the checksum is correct or absent (0).
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let datagram = self.datagram();
        checksum::combine(&[
            checksum::pseudo_header_v4(
                src_addr,
                dst_addr,
                IpProtocol::Udp.into(),
                u32::from(self.len()),
            ),
            checksum::data(datagram),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port);
    }

    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    /// Mutable payload, bounded by the length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len()).min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the pseudo-header and the datagram; a
    /// computed 0 is written as `0xffff`.
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(
                src_addr,
                dst_addr,
                IpProtocol::Udp.into(),
                u32::from(self.len()),
            ),
            checksum::data(self.datagram()),
        ]);
        let value = match !sum {
            0 => 0xffff,
            value => value,
        };
        self.set_checksum(value);
    }

    /// Sets the source port and updates the checksum incrementally (a zero
    /// checksum stays zero).
    #[inline]
    pub fn rewrite_src_port(&mut self, port: u16) {
        let sum = checksum::update_udp_u16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(sum);
    }

    /// Sets the destination port and updates the checksum incrementally (a
    /// zero checksum stays zero).
    #[inline]
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let sum = checksum::update_udp_u16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(sum);
    }

    /// Updates the checksum for a change of one pseudo-header address (a
    /// zero checksum stays zero).
    #[inline]
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let sum = checksum::update_udp_addr(self.checksum(), old, new);
        self.set_checksum(sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Parses a datagram; `Malformed` for a bad (non-zero) checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &UdpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(WireError::Malformed);
        }
        let data: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &data[HEADER_LEN..usize::from(packet.len())],
        })
    }

    /// Header length (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload, then the checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`, or (debug builds) if
    /// that exceeds 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        debug_assert!(self.buffer_len() <= usize::from(u16::MAX));
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, Ipv4Packet};
    use proptest::prelude::*;

    /// DNS query for example.com/A, 198.18.0.1:53000 -> 198.18.0.53:53,
    /// UDP checksum 0x28d0, IPv4 without DF.
    pub(crate) const UDP_FRAME: [u8; 71] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x39, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xee, 0x58, // ip
        0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x35, //
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x28, 0xd0, // udp
        0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // dns header
        0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, // name
        0x00, 0x01, 0x00, 0x01, // A, IN
    ];

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DNS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);

    fn datagram() -> [u8; 37] {
        let mut buf = [0u8; 37];
        buf.copy_from_slice(&UDP_FRAME[34..]);
        buf
    }

    #[test]
    fn accessors() {
        let frame = EthernetFrame::new_checked(&UDP_FRAME[..]).unwrap();
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert!(!ip.dont_frag());
        let packet = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(packet.src_port(), 53000);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 37);
        assert_eq!(packet.checksum(), 0x28d0);
        assert_eq!(packet.payload(), &UDP_FRAME[42..]);
        assert!(packet.verify_checksum(CLIENT, DNS));
        assert!(!packet.verify_checksum(DNS, Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(packet.into_inner().len(), 37);
    }

    #[test]
    fn length_field_bounds_payload() {
        let mut padded = [0u8; 46];
        padded[..37].copy_from_slice(&datagram());
        padded[37..].fill(0x5a);
        let packet = UdpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload().len(), 29);
        assert!(packet.verify_checksum(CLIENT, DNS));
        let mut packet = UdpPacket::new_checked(&mut padded[..]).unwrap();
        assert_eq!(packet.payload_mut().len(), 29);
        packet.fill_checksum(CLIENT, DNS);
        assert_eq!(packet.checksum(), 0x28d0);
    }

    #[test]
    fn check_len_errors() {
        let buf = datagram();
        let check = |bytes: &[u8]| UdpPacket::new_checked(bytes).map(|_| ());
        assert_eq!(check(&buf[..7]), Err(WireError::Truncated));
        assert_eq!(check(&[]), Err(WireError::Truncated));
        assert_eq!(check(&buf[..36]), Err(WireError::Truncated));
        let mut bad = buf;
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(check(&bad), Err(WireError::Malformed));
        let mut empty = buf;
        empty[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(UdpPacket::new_checked(&empty[..])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 37];
        buf[8..].copy_from_slice(&UDP_FRAME[42..]);
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        packet.set_src_port(53000);
        packet.set_dst_port(53);
        packet.set_len(37);
        packet.fill_checksum(CLIENT, DNS);
        assert_eq!(buf, datagram());
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        packet.set_checksum(0);
        assert!(packet.verify_checksum(CLIENT, Ipv4Addr::BROADCAST));
        packet.payload_mut()[0] = 0;
        assert_eq!(buf[8], 0);
    }

    #[test]
    fn zero_checksum_is_sent_as_ffff() {
        // Tune the first payload word so the computed checksum is 0.
        let mut buf = datagram();
        buf[8] = 0;
        buf[9] = 0;
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        packet.set_checksum(0);
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(CLIENT, DNS, 17, 37),
            checksum::data(packet.as_ref()),
        ]);
        packet.payload_mut()[..2].copy_from_slice(&(0xffff - sum).to_be_bytes());
        packet.fill_checksum(CLIENT, DNS);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum(CLIENT, DNS));
        // Incremental changes from 0xffff agree with recomputation.
        packet.rewrite_dst_port(5353);
        let incremental = packet.checksum();
        packet.fill_checksum(CLIENT, DNS);
        assert_eq!(incremental, packet.checksum());
        // ... and back to 0xffff.
        packet.rewrite_dst_port(53);
        assert_eq!(packet.checksum(), 0xffff);
    }

    #[test]
    fn no_checksum_stays_none() {
        let mut buf = datagram();
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        packet.set_checksum(0);
        packet.rewrite_src_port(1);
        packet.rewrite_dst_port(2);
        packet.update_checksum_for_addr(CLIENT, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(packet.checksum(), 0);
        assert!(packet.verify_checksum(Ipv4Addr::new(10, 0, 0, 1), DNS));
        // A repr of an unchecksummed datagram parses.
        let packet = UdpPacket::new_checked(&buf[..]).unwrap();
        let repr = UdpRepr::parse(&packet, CLIENT, DNS).unwrap();
        assert_eq!((repr.src_port, repr.dst_port), (1, 2));
    }

    #[test]
    fn rewrites_update_checksum() {
        let mut buf = datagram();
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        let rip = Ipv4Addr::new(10, 0, 0, 53);
        packet.update_checksum_for_addr(DNS, rip);
        packet.rewrite_dst_port(5353);
        packet.rewrite_src_port(1024);
        assert!(packet.verify_checksum(CLIENT, rip));
        let incremental = packet.checksum();
        packet.fill_checksum(CLIENT, rip);
        assert_eq!(incremental, packet.checksum());
    }

    #[test]
    fn repr_round_trip() {
        let packet = UdpPacket::new_checked(&UDP_FRAME[34..]).unwrap();
        let repr = UdpRepr::parse(&packet, CLIENT, DNS).unwrap();
        assert_eq!(repr.src_port, 53000);
        assert_eq!(repr.dst_port, 53);
        assert_eq!(repr.payload, &UDP_FRAME[42..]);
        assert_eq!(repr.header_len(), 8);
        assert_eq!(repr.buffer_len(), 37);
        let mut buf = [0u8; 37];
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), CLIENT, DNS);
        assert_eq!(buf, datagram());
        assert_eq!(
            UdpRepr::parse(&packet, CLIENT, CLIENT),
            Err(WireError::Malformed)
        );
    }

    fn datagram_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u8; 8]>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(header, payload)| {
                let mut buf = header.to_vec();
                buf.extend_from_slice(&payload);
                let len = buf.len() as u16;
                UdpPacket::new_unchecked(&mut buf[..]).set_len(len);
                buf
            })
    }

    /// Overwrites the first payload word (or, without payload, leaves the
    /// datagram alone) so that the full checksum for `src`/`dst` is 0,
    /// i.e. transmitted as 0xffff.
    fn force_zero_checksum(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
        if buf.len() < 10 {
            return;
        }
        buf[8] = 0;
        buf[9] = 0;
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        packet.set_checksum(0);
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, 17, u32::from(packet.len())),
            checksum::data(packet.as_ref()),
        ]);
        buf[8..10].copy_from_slice(&(0xffff - sum).to_be_bytes());
    }

    proptest! {
        #[test]
        fn incremental_matches_recompute(
            buf in datagram_strategy(),
            addrs in any::<[u32; 4]>(),
            ports in any::<[u16; 2]>(),
            which in any::<u8>(),
        ) {
            let mut buf = buf;
            let [src, dst, new_src, new_dst] = addrs.map(Ipv4Addr::from);
            let (cur_src, cur_dst) = (
                if which & 1 != 0 { new_src } else { src },
                if which & 2 != 0 { new_dst } else { dst },
            );
            // Bits 6/7: start from, or end at, a checksum of 0xffff.
            if which & 64 != 0 {
                force_zero_checksum(&mut buf, src, dst);
            }
            let (old_ports, new_ports) = {
                let p = UdpPacket::new_unchecked(&buf[..]);
                let old = [p.src_port(), p.dst_port()];
                let new = [
                    if which & 4 != 0 { ports[0] } else { old[0] },
                    if which & 8 != 0 { ports[1] } else { old[1] },
                ];
                (old, new)
            };
            if which & 128 != 0 {
                // Make the *final* datagram's checksum 0xffff.
                let mut p = UdpPacket::new_unchecked(&mut buf[..]);
                p.set_src_port(new_ports[0]);
                p.set_dst_port(new_ports[1]);
                force_zero_checksum(&mut buf, cur_src, cur_dst);
                let mut p = UdpPacket::new_unchecked(&mut buf[..]);
                p.set_src_port(old_ports[0]);
                p.set_dst_port(old_ports[1]);
            }
            let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum(src, dst);
            prop_assert!(packet.checksum() != 0);
            prop_assert!(packet.verify_checksum(src, dst));
            if which & 1 != 0 {
                packet.update_checksum_for_addr(src, new_src);
            }
            if which & 2 != 0 {
                packet.update_checksum_for_addr(dst, new_dst);
            }
            packet.rewrite_src_port(new_ports[0]);
            packet.rewrite_dst_port(new_ports[1]);
            let incremental = packet.checksum();
            packet.fill_checksum(cur_src, cur_dst);
            prop_assert_eq!(incremental, packet.checksum());
            prop_assert!(packet.verify_checksum(cur_src, cur_dst));

            // An unchecksummed datagram stays unchecksummed.
            packet.set_checksum(0);
            packet.update_checksum_for_addr(cur_src, src);
            packet.rewrite_src_port(ports[1]);
            packet.rewrite_dst_port(ports[0]);
            prop_assert_eq!(packet.checksum(), 0);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            if let Ok(packet) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (packet.src_port(), packet.dst_port(), packet.len(), packet.checksum());
                let _ = (packet.payload(), packet.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
                let _ = UdpRepr::parse(&packet, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
            }
            let mut copy = bytes.clone();
            if let Ok(mut packet) = UdpPacket::new_checked(&mut copy[..]) {
                packet.fill_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
                prop_assert!(packet.checksum() != 0);
                let _ = packet.payload_mut().len();
            }
        }
    }
}
