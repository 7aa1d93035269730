//! IPv4 (RFC 791) headers.

use super::{checksum, enum_with_unknown, Result, WireError};
use std::net::Ipv4Addr;

enum_with_unknown! {
    /// IP protocol numbers (the IPv4 "Protocol" field).
    pub enum IpProtocol(u8) {
        Icmp = 1,
        Igmp = 2,
        /// IP-in-IP encapsulation (LVS tunnel mode).
        IpIp = 4,
        Tcp = 6,
        Udp = 17,
        /// IPv6 encapsulated in IPv4.
        Ipv6 = 41,
        Gre = 47,
        Esp = 50,
        Ah = 51,
        Sctp = 132,
    }
}

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Longest IPv4 header (IHL = 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
///
/// The buffer may extend past the packet (Ethernet padding): the packet
/// ends at `total_len`, and [`payload`](Self::payload) stops there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wraps a buffer after [`check_header_len`](Self::check_header_len)
    /// only: for datagrams quoted in ICMP errors, which carry the header and
    /// only the first bytes of the payload. `payload()` then returns what is
    /// present, up to `total_len`.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header_len()?;
        Ok(packet)
    }

    /// Checks that the header is complete and sane:
    /// * `Truncated` if the buffer is shorter than 20 bytes or than the
    ///   header length;
    /// * `Malformed` if the version is not 4, the IHL is below 5, or
    ///   `total_len` is below the header length.
    pub fn check_header_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len < header_len {
            return Err(WireError::Truncated);
        }
        if usize::from(self.total_len()) < header_len {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    /// [`check_header_len`](Self::check_header_len), plus `Truncated` if
    /// the buffer is shorter than `total_len`.
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        if self.buffer.as_ref().len() < usize::from(self.total_len()) {
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

    #[inline]
    fn addr_at(&self, range: core::ops::Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[range];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Version (4 for a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (RFC 2474).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits (RFC 3168).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset **in bytes** (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for any fragment (first, middle or last) of a fragmented
    /// datagram: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr_at(field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr_at(field::DST_ADDR)
    }

    /// Header options (empty when IHL = 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.header_len())]
    }

    /// True when the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        checksum::data(header) == 0xffff
    }

    /// End of the packet within the buffer: `total_len`, or the buffer end
    /// for a header-only (quoted) view.
    #[inline]
    fn packet_end(&self) -> usize {
        usize::from(self.total_len()).min(self.buffer.as_ref().len())
    }

    /// The payload: from the end of the header to `total_len` (any
    /// Ethernet padding after the packet is excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.packet_end();
        &self.buffer.as_ref()[usize::from(self.header_len())..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    /// Sets the DSCP.
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Sets the ECN bits.
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        self.set_u16_at(field::IDENT, ident);
    }

    /// Clears all flags and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_u16_at(field::FLG_OFF, 0);
    }

    #[inline]
    fn set_flg_off_bits(&mut self, mask: u16, bits: u16) {
        let raw = self.u16_at(field::FLG_OFF);
        self.set_u16_at(field::FLG_OFF, (raw & !mask) | (bits & mask));
    }

    /// Sets or clears Don't Fragment.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    /// Sets or clears More Fragments.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset, given **in bytes** (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flg_off_bits(OFFSET_MASK, offset >> 3);
    }

    /// Sets the time to live (checksum not updated).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_u16_at(field::CHECKSUM, checksum);
    }

    /// Sets the source address (checksum not updated).
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (checksum not updated).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = usize::from(self.header_len());
        let sum = checksum::data(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(!sum);
    }

    /// Sets the source address and updates the header checksum
    /// incrementally (RFC 1624). The TCP/UDP checksum, which covers the
    /// address through the pseudo-header, is the caller's business.
    #[inline]
    pub fn rewrite_src_addr(&mut self, addr: Ipv4Addr) {
        let old = self.src_addr();
        self.set_src_addr(addr);
        let sum = checksum::update_addr(self.checksum(), old, addr);
        self.set_checksum(sum);
    }

    /// Sets the destination address and updates the header checksum
    /// incrementally (see [`rewrite_src_addr`](Self::rewrite_src_addr)).
    #[inline]
    pub fn rewrite_dst_addr(&mut self, addr: Ipv4Addr) {
        let old = self.dst_addr();
        self.set_dst_addr(addr);
        let sum = checksum::update_addr(self.checksum(), old, addr);
        self.set_checksum(sum);
    }

    /// Sets the TTL and updates the header checksum incrementally.
    #[inline]
    pub fn rewrite_ttl(&mut self, ttl: u8) {
        let protocol = self.buffer.as_ref()[field::PROTOCOL];
        let old = u16::from_be_bytes([self.ttl(), protocol]);
        self.set_ttl(ttl);
        let sum = checksum::update_u16(self.checksum(), old, u16::from_be_bytes([ttl, protocol]));
        self.set_checksum(sum);
    }

    /// Mutable header options.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// Mutable payload (header end to `total_len`).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        let end = self.packet_end();
        &mut self.buffer.as_mut()[header_len..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed IPv4 header without options.
///
/// Not represented (and so dropped by a parse/emit round trip): DSCP/ECN
/// (emitted as 0) and options (emitted without). Fragments are rejected by
/// [`parse`](Self::parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Payload length in bytes (`total_len` − header length).
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Default for Ipv4Repr {
    /// Unspecified addresses, TCP, empty payload, TTL 64, ident 0, DF set.
    fn default() -> Self {
        Ipv4Repr {
            src_addr: Ipv4Addr::UNSPECIFIED,
            dst_addr: Ipv4Addr::UNSPECIFIED,
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 0,
            dont_frag: true,
        }
    }
}

impl Ipv4Repr {
    /// Parses a packet: `Malformed` for a bad header checksum or a
    /// fragment, plus whatever [`Ipv4Packet::check_len`] reports.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum() || packet.is_fragment() {
            return Err(WireError::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Header length `emit` writes (20).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header (with its checksum); the payload is left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes, or (debug builds) if
    /// `buffer_len()` exceeds 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        debug_assert!(self.buffer_len() <= usize::from(u16::MAX));
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp(0);
        packet.set_ecn(0);
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::tests::RST_PADDED_FRAME;
    use proptest::prelude::*;

    /// IPv4 header + ICMP echo request (see icmp::tests::ECHO_FRAME).
    ///
    /// Header checksum by hand: 4500 + 0034 + 5c1d + 4000 + 4001 + c612 +
    /// 0001 + c612 + 0002 = 0x2ad79 -> fold 0xad7b -> !0xad7b = 0x5284.
    const PACKET: [u8; 52] = [
        0x45, 0x00, 0x00, 0x34, // v4, IHL 5, total 52
        0x5c, 0x1d, 0x40, 0x00, // ident, DF
        0x40, 0x01, 0x52, 0x84, // TTL 64, ICMP, checksum
        0xc6, 0x12, 0x00, 0x01, // 198.18.0.1
        0xc6, 0x12, 0x00, 0x02, // 198.18.0.2
        0x08, 0x00, 0xa0, 0x79, 0x12, 0x34, 0x00, 0x01, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
        0x26, 0x27,
    ];

    /// A header with options (IHL 6: Router Alert, RFC 2113), 4 payload
    /// bytes, a fragment (MF set, offset 1480 bytes = 185 units).
    const WITH_OPTIONS: [u8; 28] = [
        0x46, 0xb8, 0x00, 0x1c, // v4, IHL 6, DSCP 46 (EF) + ECN 0, total 28
        0xab, 0xcd, 0x20, 0xb9, // ident, MF, offset 185
        0x01, 0x11, 0x00, 0x00, // TTL 1, UDP, checksum (filled in the test)
        0x0a, 0x00, 0x00, 0x01, // 10.0.0.1
        0xe0, 0x00, 0x00, 0x16, // 224.0.0.22
        0x94, 0x04, 0x00, 0x00, // Router Alert
        0xde, 0xad, 0xbe, 0xef,
    ];

    fn echo_repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 2),
            protocol: IpProtocol::Icmp,
            payload_len: 32,
            ttl: 64,
            ident: 0x5c1d,
            dont_frag: true,
        }
    }

    #[test]
    fn accessors() {
        let packet = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.dscp(), 0);
        assert_eq!(packet.ecn(), 0);
        assert_eq!(packet.total_len(), 52);
        assert_eq!(packet.ident(), 0x5c1d);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IpProtocol::Icmp);
        assert_eq!(packet.checksum(), 0x5284);
        assert!(packet.verify_checksum());
        assert_eq!(packet.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload(), &PACKET[20..]);
        assert_eq!(packet.into_inner().len(), 52);
    }

    #[test]
    fn accessors_with_options_and_fragment() {
        let mut buf = WITH_OPTIONS;
        let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum();
        assert!(packet.verify_checksum());
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.ecn(), 0);
        assert!(!packet.dont_frag());
        assert!(packet.more_frags());
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.is_fragment());
        assert_eq!(packet.ttl(), 1);
        assert_eq!(packet.protocol(), IpProtocol::Udp);
        assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        // A fragment cannot become a repr.
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Malformed));
        // Last fragment: offset only.
        packet.set_more_frags(false);
        assert!(packet.is_fragment());
        packet.set_frag_offset(0);
        assert!(!packet.is_fragment());
        packet.options_mut()[0] = 0x01;
        assert_eq!(buf[20], 0x01);
    }

    #[test]
    fn payload_excludes_ethernet_padding() {
        // 60-byte frame: 14 Ethernet + 40 IPv4/TCP + 6 padding.
        let packet = Ipv4Packet::new_checked(&RST_PADDED_FRAME[14..]).unwrap();
        assert_eq!(packet.total_len(), 40);
        assert_eq!(packet.payload().len(), 20);
        assert_eq!(packet.payload(), &RST_PADDED_FRAME[34..54]);
        let mut buf = RST_PADDED_FRAME;
        let mut packet = Ipv4Packet::new_checked(&mut buf[14..]).unwrap();
        assert_eq!(packet.payload_mut().len(), 20);
    }

    #[test]
    fn check_len_errors() {
        let check = |bytes: &[u8]| Ipv4Packet::new_checked(bytes).map(|_| ());
        // Shorter than the fixed header.
        assert_eq!(check(&PACKET[..19]), Err(WireError::Truncated));
        assert_eq!(check(&[]), Err(WireError::Truncated));
        // Shorter than total_len.
        assert_eq!(check(&PACKET[..51]), Err(WireError::Truncated));
        assert_eq!(check(&PACKET[..20]), Err(WireError::Truncated));
        // Shorter than the header length (IHL 6, 22 bytes).
        assert_eq!(check(&WITH_OPTIONS[..22]), Err(WireError::Truncated));
        // IHL below 5.
        let mut bad = PACKET;
        bad[0] = 0x44;
        assert_eq!(check(&bad), Err(WireError::Malformed));
        // Wrong version.
        let mut bad = PACKET;
        bad[0] = 0x65;
        assert_eq!(check(&bad), Err(WireError::Malformed));
        // total_len below the header length.
        let mut bad = PACKET;
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(check(&bad), Err(WireError::Malformed));
        let mut bad = WITH_OPTIONS;
        bad[2..4].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(check(&bad), Err(WireError::Malformed));
        // total_len == header length: empty payload, fine.
        let mut ok = PACKET;
        ok[2..4].copy_from_slice(&20u16.to_be_bytes());
        let packet = Ipv4Packet::new_checked(&ok[..]).unwrap();
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn quoted_header_view() {
        // Header + 8 bytes of a 52-byte datagram, as quoted in ICMP errors.
        let quoted = &PACKET[..28];
        assert_eq!(
            Ipv4Packet::new_checked(quoted).unwrap_err(),
            WireError::Truncated
        );
        let packet = Ipv4Packet::new_checked_header(quoted).unwrap();
        assert_eq!(packet.total_len(), 52);
        assert_eq!(packet.payload(), &PACKET[20..28]);
        assert!(packet.verify_checksum());
        assert_eq!(
            Ipv4Packet::new_checked_header(&PACKET[..19]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 52];
        buf[20..].copy_from_slice(&PACKET[20..]);
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp(0);
        packet.set_ecn(0);
        packet.set_total_len(52);
        packet.set_ident(0x5c1d);
        packet.clear_flags();
        packet.set_more_frags(true);
        packet.set_frag_offset(8);
        packet.set_more_frags(false);
        packet.set_frag_offset(0);
        packet.set_dont_frag(true);
        packet.set_ttl(64);
        packet.set_protocol(IpProtocol::Icmp);
        packet.set_src_addr(Ipv4Addr::new(198, 18, 0, 1));
        packet.set_dst_addr(Ipv4Addr::new(198, 18, 0, 2));
        packet.fill_checksum();
        assert_eq!(buf, PACKET);

        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        packet.set_dscp(46);
        packet.set_ecn(3);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.ecn(), 3);
        packet.set_ecn(1);
        assert_eq!(packet.dscp(), 46);
        packet.set_dont_frag(false);
        assert!(!packet.dont_frag());
        packet.payload_mut()[0] = 0;
        assert_eq!(buf[20], 0);
    }

    #[test]
    fn rewrites_update_checksum() {
        let mut buf = PACKET;
        let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        packet.rewrite_src_addr(Ipv4Addr::new(10, 1, 2, 3));
        packet.rewrite_dst_addr(Ipv4Addr::new(192, 168, 200, 1));
        packet.rewrite_ttl(63);
        assert!(packet.verify_checksum());
        let incremental = packet.checksum();
        packet.fill_checksum();
        assert_eq!(packet.checksum(), incremental);
        assert_eq!(packet.ttl(), 63);
        assert_eq!(packet.protocol(), IpProtocol::Icmp);
    }

    #[test]
    fn rewrite_to_and_from_zero_checksum() {
        // Pick the new destination so that the recomputed checksum is 0x0000
        // (header sum 0xffff): eqn. 3 must give 0x0000, not 0xffff.
        let mut buf = PACKET;
        let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        packet.set_dst_addr(Ipv4Addr::UNSPECIFIED);
        packet.set_checksum(0);
        let rest = checksum::data(&packet.as_ref()[..20]);
        // The destination's two words must add 0xffff - rest.
        let needed = 0xffff - rest;
        let dst = Ipv4Addr::from(u32::from(needed));
        let mut buf2 = PACKET;
        let mut packet = Ipv4Packet::new_checked(&mut buf2[..]).unwrap();
        packet.rewrite_dst_addr(dst);
        assert_eq!(packet.checksum(), 0x0000);
        assert!(packet.verify_checksum());
        packet.fill_checksum();
        assert_eq!(packet.checksum(), 0x0000);
        // And back.
        packet.rewrite_dst_addr(Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(packet.checksum(), 0x5284);
    }

    #[test]
    fn protocol_conversions() {
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(17), IpProtocol::Udp);
        assert_eq!(IpProtocol::from(4), IpProtocol::IpIp);
        assert_eq!(IpProtocol::from(99), IpProtocol::Unknown(99));
        assert_eq!(u8::from(IpProtocol::Sctp), 132);
    }

    #[test]
    fn repr_round_trip() {
        let packet = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr, echo_repr());
        assert_eq!(repr.header_len(), 20);
        assert_eq!(repr.buffer_len(), 52);
        let mut buf = [0u8; 52];
        buf[20..].copy_from_slice(&PACKET[20..]);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn repr_parse_rejects_bad_checksum() {
        let mut buf = PACKET;
        buf[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Malformed));
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&PACKET[..30])),
            Err(WireError::Truncated)
        );
    }

    fn header_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            0u8..=10,                                      // option words
            any::<[u8; 20]>(),                             // raw fields
            proptest::collection::vec(any::<u8>(), 40),    // options
            proptest::collection::vec(any::<u8>(), 0..16), // payload
        )
            .prop_map(|(opt_words, fixed, options, payload)| {
                let header_len = 20 + 4 * usize::from(opt_words);
                let mut buf = fixed.to_vec();
                buf.extend_from_slice(&options[..header_len - 20]);
                buf.extend_from_slice(&payload);
                let total = buf.len() as u16;
                let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
                packet.set_version(4);
                packet.set_header_len(header_len as u8);
                packet.set_total_len(total);
                packet.fill_checksum();
                buf
            })
    }

    proptest! {
        #[test]
        fn incremental_matches_recompute(
            buf in header_strategy(),
            src in any::<u32>(),
            dst in any::<u32>(),
            ttl in any::<u8>(),
            which in 0u8..16,
        ) {
            let mut buf = buf;
            if which & 8 != 0 {
                // Tune the ident so that the final checksum is 0x0000.
                let mut after = buf.clone();
                let mut packet = Ipv4Packet::new_unchecked(&mut after[..]);
                if which & 1 != 0 {
                    packet.set_src_addr(src.into());
                }
                if which & 2 != 0 {
                    packet.set_dst_addr(dst.into());
                }
                if which & 4 != 0 {
                    packet.set_ttl(ttl);
                }
                packet.set_ident(0);
                packet.set_checksum(0);
                let header_len = usize::from(packet.header_len());
                let rest = checksum::data(&after[..header_len]);
                let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
                packet.set_ident(0xffff - rest);
                packet.fill_checksum();
            }
            let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            if which & 1 != 0 {
                packet.rewrite_src_addr(src.into());
            }
            if which & 2 != 0 {
                packet.rewrite_dst_addr(dst.into());
            }
            if which & 4 != 0 {
                packet.rewrite_ttl(ttl);
            }
            let incremental = packet.checksum();
            packet.fill_checksum();
            prop_assert_eq!(incremental, packet.checksum());
            prop_assert!(incremental != 0xffff);
            if which & 8 != 0 {
                prop_assert_eq!(incremental, 0);
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80), vhl in any::<bool>()) {
            let mut bytes = bytes;
            if vhl && !bytes.is_empty() {
                // Bias towards version 4 so that the deeper checks run.
                bytes[0] = 0x40 | (bytes[0] & 0x0f);
            }
            for packet in [Ipv4Packet::new_checked(&bytes[..]), Ipv4Packet::new_checked_header(&bytes[..])]
                .into_iter()
                .flatten()
            {
                let _ = (packet.version(), packet.header_len(), packet.dscp(), packet.ecn());
                let _ = (packet.total_len(), packet.ident(), packet.dont_frag(), packet.more_frags());
                let _ = (packet.frag_offset(), packet.is_fragment(), packet.ttl(), packet.protocol());
                let _ = (packet.checksum(), packet.src_addr(), packet.dst_addr());
                let _ = (packet.options(), packet.verify_checksum(), packet.payload());
                let _ = Ipv4Repr::parse(&packet);
            }
            let mut copy = bytes.clone();
            if let Ok(mut packet) = Ipv4Packet::new_checked(&mut copy[..]) {
                packet.fill_checksum();
                packet.rewrite_ttl(1);
                let _ = (packet.options_mut().len(), packet.payload_mut().len());
            }
        }
    }
}
