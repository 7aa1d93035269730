//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums returned by [`data`], [`combine`] and [`pseudo_header_v4`] are
//! *folded but not inverted* one's complement sums. A checksum field holds
//! the inverted sum, and a buffer that includes a correct checksum field
//! sums to `0xffff`.
//!
//! # Zero representations
//!
//! One's complement arithmetic has two zeros, `0x0000` and `0xffff`. The
//! folded sum of a buffer is `0x0000` only when every byte is zero;
//! otherwise it is in `1..=0xffff`, so the sum of a non-zero buffer that is
//! congruent to zero is always written `0xffff` and the checksum of any
//! non-zero buffer lies in `0..=0xfffe`. IPv4 headers (version field) and
//! TCP/UDP pseudo-headers (protocol field) are never all zero, so their
//! checksums are never `0xffff` (UDP then maps a computed `0x0000` to
//! `0xffff` on the wire, see below).
//!
//! The incremental update [`update_u16`] uses RFC 1624 eqn. 3,
//! `HC' = ~(~HC + ~m + m')`. With `~HC` in `1..=0xffff` the one's
//! complement sum on the right cannot come out as `0x0000` (adding to a
//! non-zero value never yields `+0`), so the result lies in `0..=0xfffe`
//! and is exactly what a full recomputation gives — including the case
//! where the new checksum is `0x0000`, which RFC 1624's eqn. 2 gets wrong.
//!
//! The one case where eqn. 3 and a recomputation differ is when the data
//! becomes *all zero* after the change: recomputation gives `0xffff`,
//! eqn. 3 gives `0x0000`, which a receiver rejects. That cannot happen for
//! IPv4, TCP or UDP (version/protocol fields), but can for ICMP: an echo
//! reply with type, code, ident, sequence and data all zero. Use
//! `IcmpPacket::fill_checksum` there (the messages are small anyway).
//!
//! # UDP
//!
//! A UDP checksum field of `0` means "no checksum"; a computed checksum of
//! `0x0000` is transmitted as `0xffff`. The `update_udp_*` functions leave
//! a zero field untouched (the datagram stays unchecksummed) and otherwise
//! map a `0x0000` result to `0xffff`. A field of `0xffff` stands for a sum
//! of `0xffff` although `~0xffff = 0`; eqn. 3 handles that too, because
//! `0` and `0xffff` are the same number in one's complement arithmetic and
//! the only way to reach `+0` is `~m = m' = 0`, which is a no-op change in
//! one's complement (`0xffff` → `0`), where `0xffff` is the right answer
//! again.

use std::net::Ipv4Addr;

/// Folds a wide accumulator into 16 bits with end-around carry.
#[inline]
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's complement sum of `bytes` taken as big-endian 16-bit words (an odd
/// trailing byte is padded with zero), folded to 16 bits, not inverted.
pub fn data(bytes: &[u8]) -> u16 {
    // Big-endian 32-bit words summed into a 64-bit accumulator: since
    // 2^16 ≡ 1 (mod 0xffff), a 32-bit word contributes the same as its two
    // 16-bit halves, and 2^32 words would be needed to overflow.
    let mut sum: u64 = 0;
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        let (a, rest) = chunk.split_at(4);
        let (b, rest) = rest.split_at(4);
        let (c, d) = rest.split_at(4);
        sum += u64::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
            + u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            + u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            + u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    fold(sum)
}

/// One's complement sum of several partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// One's complement sum of the IPv4 pseudo-header used by TCP and UDP:
/// source, destination, zero + protocol, and the upper-layer `length`.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let sum = u64::from(u32::from(src))
        + u64::from(u32::from(dst))
        + u64::from(protocol)
        + u64::from(length);
    fold(sum)
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data
/// changes from `old` to `new`. Equals a full recomputation whenever the
/// old checksum was computed correctly over non-zero data (see the module
/// documentation).
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(sum)
}

/// Like [`update_u16`] for a 32-bit (two-word, word-aligned) field.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let sum = u64::from(!checksum)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold(sum)
}

/// Like [`update_u32`] for an IPv4 address (in the IPv4 header or in the
/// TCP/UDP pseudo-header).
#[inline]
pub fn update_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(checksum, u32::from(old), u32::from(new))
}

/// Maps the result of an update on a UDP checksum field: `0` stays `0`
/// ("no checksum"), a computed `0x0000` becomes `0xffff`.
#[inline]
fn udp_fixup(original: u16, updated: u16) -> u16 {
    match (original, updated) {
        (0, _) => 0,
        (_, 0) => 0xffff,
        (_, c) => c,
    }
}

/// [`update_u16`] for a UDP checksum field (keeps `0`, never yields `0`).
#[inline]
pub fn update_udp_u16(checksum: u16, old: u16, new: u16) -> u16 {
    udp_fixup(checksum, update_u16(checksum, old, new))
}

/// [`update_u32`] for a UDP checksum field (keeps `0`, never yields `0`).
#[inline]
pub fn update_udp_u32(checksum: u16, old: u32, new: u32) -> u16 {
    udp_fixup(checksum, update_u32(checksum, old, new))
}

/// [`update_addr`] for a UDP checksum field (keeps `0`, never yields `0`).
#[inline]
pub fn update_udp_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    udp_fixup(checksum, update_addr(checksum, old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Straightforward RFC 1071 reference: 16-bit words, carry folded after
    /// every addition.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        // Byte-order independence example: same sum from split halves.
        assert_eq!(combine(&[data(&bytes[..4]), data(&bytes[4..])]), 0xddf2);
    }

    #[test]
    fn well_known_ipv4_header() {
        // The IPv4 header commonly used as the checksum example
        // (192.168.0.1 -> 192.168.0.199, UDP), checksum b861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(!data(&header), 0xb861);
    }

    #[test]
    fn edge_values() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0; 7]), 0);
        assert_eq!(data(&[0xff]), 0xff00);
        assert_eq!(data(&[0xff, 0xff]), 0xffff);
        assert_eq!(data(&[0xff; 64]), 0xffff);
        // 0xffff + 0x0001 = 0x0001 after end-around carry, never 0.
        assert_eq!(data(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
        assert_eq!(combine(&[]), 0);
        assert_eq!(combine(&[0xffff, 0xffff]), 0xffff);
        assert_eq!(combine(&[0x8000, 0x8000]), 0x0001);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let dst = Ipv4Addr::new(198, 18, 0, 100);
        let bytes = [198, 18, 0, 1, 198, 18, 0, 100, 0, 6, 0, 40];
        assert_eq!(pseudo_header_v4(src, dst, 6, 40), data(&bytes));
        assert_eq!(
            pseudo_header_v4(src, dst, 17, 0x1_0004),
            combine(&[data(&bytes[..8]), 17, 1, 4])
        );
    }

    #[test]
    fn update_to_zero_checksum() {
        // Data whose sum becomes 0xffff after the change: a full
        // recomputation gives checksum 0x0000, and so must eqn. 3 (eqn. 2
        // would give 0xffff).
        let before = [0x12, 0x34, 0x00, 0x01];
        let after = [0x12, 0x34, 0xed, 0xcb]; // 0x1234 + 0xedcb = 0xffff
        let hc = !data(&before);
        assert_eq!(!data(&after), 0x0000);
        assert_eq!(update_u16(hc, 0x0001, 0xedcb), 0x0000);
        // And back from a zero checksum.
        assert_eq!(update_u16(0x0000, 0xedcb, 0x0001), hc);
    }

    #[test]
    fn udp_update_rules() {
        // "No checksum" stays so.
        assert_eq!(update_udp_u16(0, 0x1234, 0x4321), 0);
        assert_eq!(update_udp_u32(0, 1, 2), 0);
        assert_eq!(
            update_udp_addr(0, Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(4, 3, 2, 1)),
            0
        );
        // A computed 0x0000 is sent as 0xffff.
        assert_eq!(update_u16(0x0001, 0x0000, 0x0001), 0x0000);
        assert_eq!(update_udp_u16(0x0001, 0x0000, 0x0001), 0xffff);
        // 0xffff (sum 0xffff) with no effective change stays 0xffff.
        assert_eq!(update_udp_u16(0xffff, 0x1234, 0x1234), 0xffff);
        assert_eq!(update_udp_u16(0xffff, 0xffff, 0x0000), 0xffff);
        assert_eq!(update_udp_u16(0xffff, 0x0000, 0xffff), 0xffff);
    }

    proptest! {
        #[test]
        fn data_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(data(&bytes), reference(&bytes));
        }

        #[test]
        fn split_at_even_offset_combines(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            at in 0usize..100,
        ) {
            let at = (at * 2).min(bytes.len() & !1);
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(combine(&[data(a), data(b)]), data(&bytes));
        }

        #[test]
        fn update_matches_recompute(
            mut words in proptest::collection::vec(any::<u16>(), 2..40),
            index in any::<proptest::sample::Index>(),
            new in any::<u16>(),
            to_zero in any::<bool>(),
        ) {
            // Word 0 is forced non-zero, as the version/protocol field is in
            // real headers.
            words[0] |= 1;
            let to_bytes = |w: &[u16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
            let i = 1 + index.index(words.len() - 1);
            if to_zero {
                // Tune word 0 so that the sum *after* the change is 0xffff,
                // i.e. the recomputed checksum is 0x0000.
                let mut after = words.clone();
                after[i] = new;
                after[0] = 0;
                let rest = data(&to_bytes(&after));
                words[0] = if rest == 0xffff { 0xffff } else { 0xffff - rest };
            }
            let hc = !data(&to_bytes(&words));
            let old = words[i];
            words[i] = new;
            prop_assert_eq!(update_u16(hc, old, new), !data(&to_bytes(&words)));
        }

        #[test]
        fn update_u32_is_two_u16_updates(hc in 0u16..0xffff, old in any::<u32>(), new in any::<u32>()) {
            let twice = update_u16(
                update_u16(hc, (old >> 16) as u16, (new >> 16) as u16),
                old as u16,
                new as u16,
            );
            prop_assert_eq!(update_u32(hc, old, new), twice);
        }
    }
}
