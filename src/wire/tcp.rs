//! TCP (RFC 9293) segments.
//!
//! TCP has no length field: a `TcpPacket` covers its whole buffer, so wrap
//! exactly the segment — `Ipv4Packet::payload()`, which already excludes
//! Ethernet padding — or checksums will be wrong.

use super::{checksum, IpProtocol, Result, WireError};
use std::net::Ipv4Addr;

/// The TCP flag bits (the low byte of the flags field).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (high nibble) and the NS bit (bit 0).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;

    // Options.
    pub const OPT_END: u8 = 0x00;
    pub const OPT_NOP: u8 = 0x01;
    pub const OPT_MSS: u8 = 0x02;
    pub const OPT_WS: u8 = 0x03;
    pub const OPT_SACKPERM: u8 = 0x04;
    pub const OPT_SACKRNG: u8 = 0x05;
    pub const OPT_TSTAMP: u8 = 0x08;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// A read/write view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes or than the data
    /// offset; `Malformed` if the data offset is below 5.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len < header_len {
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
    fn u32_at(&self, range: core::ops::Range<usize>) -> u32 {
        let d = &self.buffer.as_ref()[range];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ_NUM)
    }

    /// Acknowledgment number (meaningful when `ack()` is set).
    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight flag bits CWR..FIN (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    fn flag(&self, bit: u8) -> bool {
        self.flags() & bit != 0
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flag(flags::FIN)
    }

    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flag(flags::SYN)
    }

    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flag(flags::RST)
    }

    /// PSH flag.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flag(flags::PSH)
    }

    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flag(flags::ACK)
    }

    /// URG flag.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flag(flags::URG)
    }

    /// ECE flag.
    #[inline]
    pub fn ece(&self) -> bool {
        self.flag(flags::ECE)
    }

    /// CWR flag.
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flag(flags::CWR)
    }

    /// NS flag (RFC 3540, historic).
    #[inline]
    pub fn ns(&self) -> bool {
        self.buffer.as_ref()[field::DATA_OFF] & 0x01 != 0
    }

    /// Window size (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// Raw option bytes (between the fixed header and the data offset).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.header_len())]
    }

    /// Iterates over the parsed options.
    #[inline]
    pub fn options_iter(&self) -> TcpOptionsIter<'_> {
        TcpOptionsIter::new(self.options())
    }

    /// The segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Sequence space the segment occupies: payload length, plus one for
    /// SYN and one for FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// True when the checksum over the IPv4 pseudo-header and the whole
    /// buffer is correct.
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header_v4(
                src_addr,
                dst_addr,
                IpProtocol::Tcp.into(),
                data.len() as u32,
            ),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    fn set_u32_at(&mut self, range: core::ops::Range<usize>, value: u32) {
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

    /// Sets the sequence number (checksum not updated).
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        self.set_u32_at(field::SEQ_NUM, value);
    }

    /// Sets the acknowledgment number (checksum not updated).
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        self.set_u32_at(field::ACK_NUM, value);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4);
    /// keeps the NS bit.
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((len / 4) & 0x0f) << 4);
    }

    /// Sets all eight flag bits CWR..FIN (see [`flags`]).
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    #[inline]
    fn set_flag(&mut self, bit: u8, value: bool) {
        let flags = self.flags();
        self.set_flags(if value { flags | bit } else { flags & !bit });
    }

    /// Sets or clears FIN.
    #[inline]
    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(flags::FIN, value);
    }

    /// Sets or clears SYN.
    #[inline]
    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(flags::SYN, value);
    }

    /// Sets or clears RST.
    #[inline]
    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(flags::RST, value);
    }

    /// Sets or clears PSH.
    #[inline]
    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(flags::PSH, value);
    }

    /// Sets or clears ACK.
    #[inline]
    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(flags::ACK, value);
    }

    /// Sets or clears URG.
    #[inline]
    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(flags::URG, value);
    }

    /// Sets or clears ECE.
    #[inline]
    pub fn set_ece(&mut self, value: bool) {
        self.set_flag(flags::ECE, value);
    }

    /// Sets or clears CWR.
    #[inline]
    pub fn set_cwr(&mut self, value: bool) {
        self.set_flag(flags::CWR, value);
    }

    /// Sets or clears NS.
    #[inline]
    pub fn set_ns(&mut self, value: bool) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & !0x01) | u8::from(value);
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        self.set_u16_at(field::WIN_SIZE, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        self.set_u16_at(field::URGENT, value);
    }

    /// Mutable raw option bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// Mutable segment data.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        &mut self.buffer.as_mut()[header_len..]
    }

    /// Recomputes the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(
                src_addr,
                dst_addr,
                IpProtocol::Tcp.into(),
                data.len() as u32,
            ),
            checksum::data(data),
        ]);
        self.set_checksum(!sum);
    }

    /// Sets the source port and updates the checksum incrementally.
    #[inline]
    pub fn rewrite_src_port(&mut self, port: u16) {
        let sum = checksum::update_u16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(sum);
    }

    /// Sets the destination port and updates the checksum incrementally.
    #[inline]
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let sum = checksum::update_u16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(sum);
    }

    /// Sets the sequence number and updates the checksum incrementally.
    #[inline]
    pub fn rewrite_seq_number(&mut self, value: u32) {
        let sum = checksum::update_u32(self.checksum(), self.seq_number(), value);
        self.set_seq_number(value);
        self.set_checksum(sum);
    }

    /// Sets the acknowledgment number and updates the checksum
    /// incrementally.
    #[inline]
    pub fn rewrite_ack_number(&mut self, value: u32) {
        let sum = checksum::update_u32(self.checksum(), self.ack_number(), value);
        self.set_ack_number(value);
        self.set_checksum(sum);
    }

    /// Updates the checksum for a change of one pseudo-header address
    /// (after `Ipv4Packet::rewrite_src_addr`/`rewrite_dst_addr`).
    #[inline]
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let sum = checksum::update_addr(self.checksum(), old, new);
        self.set_checksum(sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The TCP timestamps option (RFC 7323).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpTimestamp {
    pub tsval: u32,
    pub tsecr: u32,
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// SACK blocks, raw: pairs of big-endian (left, right) edges.
    SackRange(&'a [u8]),
    Timestamps(TcpTimestamp),
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `buffer`; returns the rest of the
    /// buffer and the option. `Truncated` when the option runs past the
    /// buffer, `Malformed` for a length byte below 2 or a known option with
    /// the wrong length.
    pub fn parse(buffer: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>)> {
        let (&kind, rest) = buffer.split_first().ok_or(WireError::Truncated)?;
        match kind {
            field::OPT_END => return Ok((rest, TcpOption::EndOfList)),
            field::OPT_NOP => return Ok((rest, TcpOption::NoOperation)),
            _ => {}
        }
        let &len = rest.first().ok_or(WireError::Truncated)?;
        let len = usize::from(len);
        if len < 2 {
            return Err(WireError::Malformed);
        }
        if buffer.len() < len {
            return Err(WireError::Truncated);
        }
        let data = &buffer[2..len];
        let rest = &buffer[len..];
        let option = match (kind, len) {
            (field::OPT_MSS, 4) => {
                TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]]))
            }
            (field::OPT_WS, 3) => TcpOption::WindowScale(data[0]),
            (field::OPT_SACKPERM, 2) => TcpOption::SackPermitted,
            (field::OPT_SACKRNG, _) if (len - 2) % 8 == 0 && len > 2 => TcpOption::SackRange(data),
            (field::OPT_TSTAMP, 10) => TcpOption::Timestamps(TcpTimestamp {
                tsval: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                tsecr: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            }),
            (
                field::OPT_MSS
                | field::OPT_WS
                | field::OPT_SACKPERM
                | field::OPT_SACKRNG
                | field::OPT_TSTAMP,
                _,
            ) => return Err(WireError::Malformed),
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Ok((rest, option))
    }

    /// Encoded length in bytes.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(data) => 2 + data.len(),
            TcpOption::Timestamps(_) => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns the rest.
    ///
    /// # Panics
    /// If `buffer` is shorter than `buffer_len()`, or if the option's data
    /// is longer than 253 bytes.
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (out, rest) = buffer.split_at_mut(len);
        let (kind, data): (u8, &[u8]) = match self {
            TcpOption::EndOfList => {
                out[0] = field::OPT_END;
                return rest;
            }
            TcpOption::NoOperation => {
                out[0] = field::OPT_NOP;
                return rest;
            }
            TcpOption::MaxSegmentSize(mss) => {
                out[2..4].copy_from_slice(&mss.to_be_bytes());
                (field::OPT_MSS, &[])
            }
            TcpOption::WindowScale(shift) => {
                out[2] = *shift;
                (field::OPT_WS, &[])
            }
            TcpOption::SackPermitted => (field::OPT_SACKPERM, &[]),
            TcpOption::SackRange(data) => (field::OPT_SACKRNG, data),
            TcpOption::Timestamps(ts) => {
                out[2..6].copy_from_slice(&ts.tsval.to_be_bytes());
                out[6..10].copy_from_slice(&ts.tsecr.to_be_bytes());
                (field::OPT_TSTAMP, &[])
            }
            TcpOption::Unknown { kind, data } => (*kind, data),
        };
        out[0] = kind;
        out[1] = u8::try_from(len).expect("TCP option longer than 255 bytes");
        if !data.is_empty() {
            out[2..].copy_from_slice(data);
        }
        rest
    }
}

/// Iterator over the options of a header. Stops after `EndOfList`, at the
/// end of the option bytes, or after yielding the first error.
#[derive(Debug, Clone)]
pub struct TcpOptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionsIter<'a> {
    /// Iterates over raw option bytes.
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionsIter { rest: options }
    }
}

impl<'a> Iterator for TcpOptionsIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((rest, option)) => {
                self.rest = if option == TcpOption::EndOfList {
                    &[]
                } else {
                    rest
                };
                Some(Ok(option))
            }
            Err(err) => {
                self.rest = &[];
                Some(Err(err))
            }
        }
    }
}

/// A parsed TCP segment.
///
/// Options: MSS, window scale, SACK-permitted and timestamps are kept;
/// others (SACK blocks, unknown kinds) are dropped. `emit` lays them out
/// the way Linux does (MSS; SACK-permitted + timestamps or NOP NOP +
/// timestamps; NOP NOP + SACK-permitted without timestamps; NOP + window
/// scale), so a Linux SYN round-trips byte for byte. The urgent pointer and
/// the NS bit are not kept (emitted as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    /// Flag bits, see [`flags`].
    pub flags: u8,
    pub window_len: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamp: Option<TcpTimestamp>,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Parses a segment; `Malformed` for a bad checksum or bad options.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(WireError::Malformed);
        }
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            ..TcpRepr::default()
        };
        for option in packet.options_iter() {
            match option.map_err(|_| WireError::Malformed)? {
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Timestamps(ts) => repr.timestamp = Some(ts),
                _ => {}
            }
        }
        let data: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        repr.payload = &data[usize::from(packet.header_len())..];
        Ok(repr)
    }

    /// Length of the options `emit` writes (a multiple of 4).
    pub fn options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// Header length `emit` writes, options included.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header plus payload length.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes header, options and payload, then the checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`. Any bytes after
    /// `buffer_len()` would be covered by the checksum, so pass a buffer of
    /// exactly that length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.buffer.as_mut()[field::DATA_OFF] = 0;
        packet.set_header_len(self.header_len() as u8);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);

        let mut out = packet.options_mut();
        if let Some(mss) = self.max_seg_size {
            out = TcpOption::MaxSegmentSize(mss).emit(out);
        }
        if let Some(ts) = self.timestamp {
            if self.sack_permitted {
                out = TcpOption::SackPermitted.emit(out);
            } else {
                out = TcpOption::NoOperation.emit(out);
                out = TcpOption::NoOperation.emit(out);
            }
            out = TcpOption::Timestamps(ts).emit(out);
        } else if self.sack_permitted {
            out = TcpOption::NoOperation.emit(out);
            out = TcpOption::NoOperation.emit(out);
            out = TcpOption::SackPermitted.emit(out);
        }
        if let Some(shift) = self.window_scale {
            out = TcpOption::NoOperation.emit(out);
            out = TcpOption::WindowScale(shift).emit(out);
        }
        debug_assert!(out.is_empty());

        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, Ipv4Packet};
    use proptest::prelude::*;

    /// Linux-style SYN 198.18.0.1:40000 -> 198.18.0.100:80, seq 0x12345678,
    /// window 64240, options MSS 1460, SACK-permitted, TS 0x00a1b2c3/0,
    /// NOP, WS 7. TCP checksum 0x07e4.
    pub(crate) const SYN_FRAME: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x3c, 0xb7, 0xc3, 0x40, 0x00, 0x40, 0x06, 0xf6, 0x6e, // ip
        0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x64, //
        0x9c, 0x40, 0x00, 0x50, // ports
        0x12, 0x34, 0x56, 0x78, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, // data offset 10, SYN
        0xfa, 0xf0, 0x07, 0xe4, 0x00, 0x00, // window, checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0xa1, 0xb2, 0xc3, 0x00, 0x00, 0x00, 0x00, // TS
        0x01, // NOP
        0x03, 0x03, 0x07, // WS 7
    ];

    /// RST/ACK 198.18.0.100:80 -> 198.18.0.1:40000, ack 0x12345679, in a
    /// minimum-size (60-byte) Ethernet frame: 6 bytes of padding.
    pub(crate) const RST_PADDED_FRAME: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0x46, // ip
        0xc6, 0x12, 0x00, 0x64, 0xc6, 0x12, 0x00, 0x01, //
        0x00, 0x50, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x79, // tcp
        0x50, 0x14, 0x00, 0x00, 0x1e, 0x09, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // padding
    ];

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    fn syn_repr() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 0x1234_5678,
            ack_number: 0,
            flags: flags::SYN,
            window_len: 64240,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(TcpTimestamp {
                tsval: 0x00a1_b2c3,
                tsecr: 0,
            }),
            payload: &[],
        }
    }

    #[test]
    fn syn_accessors() {
        let segment = &SYN_FRAME[34..];
        let packet = TcpPacket::new_checked(segment).unwrap();
        assert_eq!(packet.src_port(), 40000);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 0x1234_5678);
        assert_eq!(packet.ack_number(), 0);
        assert_eq!(packet.header_len(), 40);
        assert_eq!(packet.flags(), flags::SYN);
        assert!(packet.syn());
        assert!(!packet.ack() && !packet.fin() && !packet.rst() && !packet.psh());
        assert!(!packet.urg() && !packet.ece() && !packet.cwr() && !packet.ns());
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0x07e4);
        assert_eq!(packet.urgent_at(), 0);
        assert_eq!(packet.options(), &segment[20..40]);
        assert!(packet.payload().is_empty());
        assert_eq!(packet.segment_len(), 1);
        assert!(packet.verify_checksum(CLIENT, VIP));
        assert!(!packet.verify_checksum(CLIENT, Ipv4Addr::new(198, 18, 0, 101)));
        let options: Vec<_> = packet.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            options,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps(TcpTimestamp {
                    tsval: 0x00a1_b2c3,
                    tsecr: 0
                }),
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        assert_eq!(packet.into_inner().len(), 40);
    }

    #[test]
    fn rst_in_padded_frame() {
        let frame = EthernetFrame::new_checked(&RST_PADDED_FRAME[..]).unwrap();
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert!(ip.verify_checksum());
        let packet = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(packet.as_ref().len(), 20);
        assert!(packet.rst() && packet.ack());
        assert_eq!(packet.flags(), flags::RST | flags::ACK);
        assert_eq!(packet.ack_number(), 0x1234_5679);
        assert_eq!(packet.segment_len(), 0);
        assert!(packet.verify_checksum(VIP, CLIENT));
        // Including the padding would break the checksum (length differs).
        let padded = TcpPacket::new_checked(&RST_PADDED_FRAME[34..]).unwrap();
        assert!(!padded.verify_checksum(VIP, CLIENT));
    }

    #[test]
    fn check_len_errors() {
        let segment = &SYN_FRAME[34..];
        let check = |bytes: &[u8]| TcpPacket::new_checked(bytes).map(|_| ());
        assert_eq!(check(&segment[..19]), Err(WireError::Truncated));
        assert_eq!(check(&[]), Err(WireError::Truncated));
        // Data offset 10 (40 bytes) but only 39.
        assert_eq!(check(&segment[..39]), Err(WireError::Truncated));
        let mut bad = [0u8; 40];
        bad.copy_from_slice(segment);
        bad[12] = 0x40; // data offset 4
        assert_eq!(check(&bad), Err(WireError::Malformed));
        bad[12] = 0x00;
        assert_eq!(check(&bad), Err(WireError::Malformed));
        bad[12] = 0xf0; // 60 bytes
        assert_eq!(check(&bad), Err(WireError::Truncated));
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 40];
        let mut packet = TcpPacket::new_unchecked(&mut buf[..]);
        packet.set_src_port(40000);
        packet.set_dst_port(80);
        packet.set_seq_number(0x1234_5678);
        packet.set_ack_number(0);
        packet.set_header_len(40);
        packet.set_ns(true);
        packet.set_ns(false);
        packet.set_flags(0);
        packet.set_syn(true);
        packet.set_window_len(64240);
        packet.set_urgent_at(0);
        packet.options_mut().copy_from_slice(&SYN_FRAME[54..74]);
        packet.fill_checksum(CLIENT, VIP);
        assert_eq!(&buf[..], &SYN_FRAME[34..]);

        let mut packet = TcpPacket::new_unchecked(buf);
        for (set, bit) in [
            (
                TcpPacket::set_fin as fn(&mut TcpPacket<[u8; 40]>, bool),
                flags::FIN,
            ),
            (TcpPacket::set_rst, flags::RST),
            (TcpPacket::set_psh, flags::PSH),
            (TcpPacket::set_ack, flags::ACK),
            (TcpPacket::set_urg, flags::URG),
            (TcpPacket::set_ece, flags::ECE),
            (TcpPacket::set_cwr, flags::CWR),
        ] {
            set(&mut packet, true);
            assert_eq!(packet.flags(), flags::SYN | bit);
            set(&mut packet, false);
            assert_eq!(packet.flags(), flags::SYN);
        }
        packet.set_syn(false);
        assert_eq!(packet.flags(), 0);
        packet.set_ns(true);
        assert!(packet.ns());
        assert_eq!(packet.header_len(), 40);
        packet.set_checksum(0xbeef);
        assert_eq!(packet.checksum(), 0xbeef);
    }

    #[test]
    fn rewrites_update_checksum() {
        let mut buf = [0u8; 40];
        buf.copy_from_slice(&SYN_FRAME[34..]);
        let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
        let rip = Ipv4Addr::new(10, 0, 0, 7);
        let lip = Ipv4Addr::new(10, 0, 0, 250);
        // Full-NAT: client -> local address, VIP -> real server.
        packet.update_checksum_for_addr(CLIENT, lip);
        packet.update_checksum_for_addr(VIP, rip);
        packet.rewrite_src_port(5001);
        packet.rewrite_dst_port(8080);
        packet.rewrite_seq_number(0xdead_beef);
        packet.rewrite_ack_number(0x0102_0304);
        assert!(packet.verify_checksum(lip, rip));
        let incremental = packet.checksum();
        packet.fill_checksum(lip, rip);
        assert_eq!(incremental, packet.checksum());
        assert_eq!(packet.src_port(), 5001);
        assert_eq!(packet.dst_port(), 8080);
        assert_eq!(packet.seq_number(), 0xdead_beef);
        assert_eq!(packet.ack_number(), 0x0102_0304);
    }

    #[test]
    fn repr_round_trip() {
        let packet = TcpPacket::new_checked(&SYN_FRAME[34..]).unwrap();
        let repr = TcpRepr::parse(&packet, CLIENT, VIP).unwrap();
        assert_eq!(repr, syn_repr());
        assert_eq!(repr.options_len(), 20);
        assert_eq!(repr.header_len(), 40);
        assert_eq!(repr.buffer_len(), 40);
        let mut buf = [0xaau8; 40];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, VIP);
        assert_eq!(&buf[..], &SYN_FRAME[34..]);

        let rst = TcpPacket::new_checked(&RST_PADDED_FRAME[34..54]).unwrap();
        let repr = TcpRepr::parse(&rst, VIP, CLIENT).unwrap();
        assert_eq!(repr.flags, flags::RST | flags::ACK);
        assert_eq!(repr.header_len(), 20);
        let mut buf = [0u8; 20];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), VIP, CLIENT);
        assert_eq!(&buf[..], &RST_PADDED_FRAME[34..54]);
    }

    #[test]
    fn repr_option_layouts() {
        let base = TcpRepr {
            src_port: 1,
            dst_port: 2,
            flags: flags::SYN,
            payload: b"xyz",
            ..TcpRepr::default()
        };
        let cases: [(TcpRepr, &[u8]); 4] = [
            (base, &[]),
            (
                TcpRepr {
                    max_seg_size: Some(536),
                    sack_permitted: true,
                    window_scale: Some(2),
                    ..base
                },
                &[2, 4, 0x02, 0x18, 1, 1, 4, 2, 1, 3, 3, 2],
            ),
            (
                TcpRepr {
                    timestamp: Some(TcpTimestamp { tsval: 1, tsecr: 2 }),
                    ..base
                },
                &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ),
            (
                TcpRepr {
                    sack_permitted: true,
                    ..base
                },
                &[1, 1, 4, 2],
            ),
        ];
        for (repr, options) in cases {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, VIP);
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(packet.options(), options);
            assert_eq!(packet.payload(), b"xyz");
            assert_eq!(TcpRepr::parse(&packet, CLIENT, VIP).unwrap(), repr);
        }
    }

    #[test]
    fn repr_parse_errors() {
        let mut buf = [0u8; 40];
        buf.copy_from_slice(&SYN_FRAME[34..]);
        buf[17] ^= 0x01;
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&packet, CLIENT, VIP),
            Err(WireError::Malformed)
        );
        // Valid checksum, broken option (MSS with length 3).
        buf[17] ^= 0x01;
        buf[21] = 3;
        let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum(CLIENT, VIP);
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&packet, CLIENT, VIP),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn option_parsing() {
        assert_eq!(TcpOption::parse(&[]), Err(WireError::Truncated));
        assert_eq!(
            TcpOption::parse(&[0, 9]),
            Ok((&[9u8][..], TcpOption::EndOfList))
        );
        assert_eq!(
            TcpOption::parse(&[1]),
            Ok((&[][..], TcpOption::NoOperation))
        );
        assert_eq!(TcpOption::parse(&[2]), Err(WireError::Truncated));
        assert_eq!(TcpOption::parse(&[2, 4, 5]), Err(WireError::Truncated));
        assert_eq!(TcpOption::parse(&[2, 1]), Err(WireError::Malformed));
        assert_eq!(
            TcpOption::parse(&[2, 5, 0, 0, 0]),
            Err(WireError::Malformed)
        );
        assert_eq!(TcpOption::parse(&[8, 2]), Err(WireError::Malformed));
        assert_eq!(TcpOption::parse(&[5, 2]), Err(WireError::Malformed));
        assert_eq!(
            TcpOption::parse(&[5, 9, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Malformed)
        );
        let sack = [5, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            TcpOption::parse(&sack),
            Ok((&[][..], TcpOption::SackRange(&sack[2..])))
        );
        assert_eq!(
            TcpOption::parse(&[30, 3, 7, 1]),
            Ok((
                &[1u8][..],
                TcpOption::Unknown {
                    kind: 30,
                    data: &[7]
                }
            ))
        );
        assert_eq!(
            TcpOption::parse(&[30, 2]),
            Ok((
                &[][..],
                TcpOption::Unknown {
                    kind: 30,
                    data: &[]
                }
            ))
        );

        // Iterator: stops at EOL, and after an error.
        let items: Vec<_> = TcpOptionsIter::new(&[1, 0, 2, 4, 0, 1]).collect();
        assert_eq!(
            items,
            [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
        let items: Vec<_> = TcpOptionsIter::new(&[1, 2, 9, 1]).collect();
        assert_eq!(
            items,
            [Ok(TcpOption::NoOperation), Err(WireError::Truncated)]
        );
    }

    #[test]
    fn option_emit_round_trip() {
        let sack = [0, 0, 0, 1, 0, 0, 0, 2];
        let options = [
            TcpOption::EndOfList,
            TcpOption::NoOperation,
            TcpOption::MaxSegmentSize(1400),
            TcpOption::WindowScale(14),
            TcpOption::SackPermitted,
            TcpOption::SackRange(&sack),
            TcpOption::Timestamps(TcpTimestamp { tsval: 7, tsecr: 9 }),
            TcpOption::Unknown {
                kind: 254,
                data: &[1, 2, 3],
            },
        ];
        for option in options {
            let mut buf = [0u8; 16];
            let len = option.buffer_len();
            let rest = option.emit(&mut buf).len();
            assert_eq!(rest, 16 - len);
            assert_eq!(TcpOption::parse(&buf[..len]), Ok((&[][..], option)));
        }
    }

    fn segment_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            0usize..=10,
            any::<[u8; 20]>(),
            proptest::collection::vec(any::<u8>(), 40),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(opt_words, fixed, options, payload)| {
                let mut buf = fixed.to_vec();
                buf.extend_from_slice(&options[..4 * opt_words]);
                buf.extend_from_slice(&payload);
                TcpPacket::new_unchecked(&mut buf[..]).set_header_len((20 + 4 * opt_words) as u8);
                buf
            })
    }

    proptest! {
        #[test]
        fn incremental_matches_recompute(
            buf in segment_strategy(),
            addrs in any::<[u32; 4]>(),
            ports in any::<[u16; 2]>(),
            seqs in any::<[u32; 2]>(),
            which in any::<u8>(),
        ) {
            let mut buf = buf;
            let [src, dst, new_src, new_dst] = addrs.map(Ipv4Addr::from);
            if which & 64 != 0 {
                // Tune the urgent pointer so that the final checksum is 0.
                let mut after = buf.clone();
                let mut packet = TcpPacket::new_unchecked(&mut after[..]);
                if which & 4 != 0 {
                    packet.set_src_port(ports[0]);
                }
                if which & 8 != 0 {
                    packet.set_dst_port(ports[1]);
                }
                if which & 16 != 0 {
                    packet.set_seq_number(seqs[0]);
                }
                if which & 32 != 0 {
                    packet.set_ack_number(seqs[1]);
                }
                packet.set_urgent_at(0);
                packet.set_checksum(0);
                let final_src = if which & 1 != 0 { new_src } else { src };
                let final_dst = if which & 2 != 0 { new_dst } else { dst };
                let rest = checksum::combine(&[
                    checksum::pseudo_header_v4(final_src, final_dst, 6, after.len() as u32),
                    checksum::data(&after),
                ]);
                TcpPacket::new_unchecked(&mut buf[..]).set_urgent_at(0xffff - rest);
            }
            let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum(src, dst);
            prop_assert!(packet.verify_checksum(src, dst));
            let (mut cur_src, mut cur_dst) = (src, dst);
            if which & 1 != 0 {
                packet.update_checksum_for_addr(src, new_src);
                cur_src = new_src;
            }
            if which & 2 != 0 {
                packet.update_checksum_for_addr(dst, new_dst);
                cur_dst = new_dst;
            }
            if which & 4 != 0 {
                packet.rewrite_src_port(ports[0]);
            }
            if which & 8 != 0 {
                packet.rewrite_dst_port(ports[1]);
            }
            if which & 16 != 0 {
                packet.rewrite_seq_number(seqs[0]);
            }
            if which & 32 != 0 {
                packet.rewrite_ack_number(seqs[1]);
            }
            let incremental = packet.checksum();
            packet.fill_checksum(cur_src, cur_dst);
            prop_assert_eq!(incremental, packet.checksum());
            prop_assert!(packet.verify_checksum(cur_src, cur_dst));
            if which & 64 != 0 {
                prop_assert_eq!(incremental, 0);
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (packet.src_port(), packet.dst_port(), packet.seq_number(), packet.ack_number());
                let _ = (packet.header_len(), packet.flags(), packet.fin(), packet.syn(), packet.rst());
                let _ = (packet.psh(), packet.ack(), packet.urg(), packet.ece(), packet.cwr(), packet.ns());
                let _ = (packet.window_len(), packet.checksum(), packet.urgent_at());
                let _ = (packet.options(), packet.payload(), packet.segment_len());
                let _ = packet.options_iter().count();
                let _ = packet.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
                let _ = TcpRepr::parse(&packet, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
            }
            let _ = TcpOptionsIter::new(&bytes).count();
            let mut copy = bytes.clone();
            if let Ok(mut packet) = TcpPacket::new_checked(&mut copy[..]) {
                packet.fill_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
                let _ = (packet.options_mut().len(), packet.payload_mut().len());
            }
        }
    }
}
