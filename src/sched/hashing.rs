//! Pieces shared by the hashing schedulers (`sh`, `dh`, `mh`): the service
//! flags they obey and the kernel's 256-bucket server table.
//!
//! # The bucket table (`sh`, `dh`)
//!
//! IPVS's `sh` and `dh` map a hash to one of 256 buckets, each naming a
//! server. The buckets are dealt out in list order: the first server takes
//! `weight` consecutive buckets (at least one, so a weight-0 server still
//! holds one bucket), then the next server, wrapping round to the first
//! server until all 256 are dealt. A weight above 256 therefore gives one
//! server every bucket, as in the kernel. The deal is redone on every
//! configuration change; an empty list leaves every bucket empty.

use super::{FlowInfo, ServerLoad};

/// The service's hashing flags (ipvsadm `-b sh-port,sh-fallback` /
/// `mh-port,mh-fallback`; IPVS `IP_VS_SVC_F_SCHED_{SH,MH}_{PORT,FALLBACK}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HashFlags {
    /// Hash the client port as well as the client address (only for
    /// protocols with ports: TCP, UDP, SCTP).
    pub port: bool,
    /// When the hashed server is unavailable (weight 0), look further
    /// instead of refusing the connection.
    pub fallback: bool,
}

impl HashFlags {
    pub const NONE: HashFlags = HashFlags {
        port: false,
        fallback: false,
    };
}

/// The port the hash includes: the client port when `flags.port` is set
/// and the protocol has ports (TCP 6, UDP 17, SCTP 132), otherwise 0.
#[inline]
pub(crate) fn hashed_port(flags: HashFlags, flow: &FlowInfo) -> u16 {
    match flow.protocol {
        6 | 17 | 132 if flags.port => flow.client_port,
        _ => 0,
    }
}

/// Whether `index` names an available server of `servers`.
#[inline]
pub(crate) fn usable(servers: &[ServerLoad], index: usize) -> bool {
    servers.get(index).is_some_and(ServerLoad::is_available)
}

/// The kernel's 32-bit golden-ratio multiplicative hash, keeping the top
/// `bits` bits (1..=32) of `value * 0x61C88647`.
#[inline]
pub(crate) fn hash_32(value: u32, bits: u32) -> u32 {
    value.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// 256 buckets, each naming a server by index (or none). See the module
/// documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BucketTable {
    buckets: [u32; BucketTable::SIZE],
}

impl BucketTable {
    /// IPVS `IP_VS_SH_TAB_SIZE` / `IP_VS_DH_TAB_SIZE`.
    pub const SIZE: usize = 256;
    pub const BITS: u32 = 8;
    pub const MASK: u32 = Self::SIZE as u32 - 1;
    const EMPTY: u32 = u32::MAX;

    pub fn new() -> Self {
        Self {
            buckets: [Self::EMPTY; Self::SIZE],
        }
    }

    /// Deals the buckets out again for `servers` (by list order, `weight`
    /// buckets in a row each, at least one).
    pub fn reassign(&mut self, servers: &[ServerLoad]) {
        if servers.is_empty() {
            self.buckets = [Self::EMPTY; Self::SIZE];
            return;
        }
        let (mut server, mut dealt) = (0usize, 0u32);
        for bucket in self.buckets.iter_mut() {
            *bucket = server as u32;
            dealt += 1;
            if dealt >= servers[server].weight {
                server = (server + 1) % servers.len();
                dealt = 0;
            }
        }
    }

    /// The server in bucket `bucket & MASK`.
    #[inline]
    pub fn get(&self, bucket: u32) -> Option<usize> {
        match self.buckets[(bucket & Self::MASK) as usize] {
            Self::EMPTY => None,
            index => Some(index as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, weighted};

    fn owners(table: &BucketTable) -> Vec<Option<usize>> {
        (0..256).map(|b| table.get(b)).collect()
    }

    #[test]
    fn buckets_are_dealt_by_weight_in_turn() {
        let mut table = BucketTable::new();
        assert!(owners(&table).iter().all(Option::is_none));
        table.reassign(&weighted(&[2, 0, 1]));
        let o = owners(&table);
        // 0,0,1,2, 0,0,1,2, ...
        for (b, owner) in o.iter().enumerate() {
            assert_eq!(*owner, Some([0, 0, 1, 2][b % 4]), "bucket {b}");
        }
        table.reassign(&weighted(&[300, 1]));
        assert!(owners(&table).iter().all(|&o| o == Some(0)));
        table.reassign(&[]);
        assert!(owners(&table).iter().all(Option::is_none));
    }

    #[test]
    fn bucket_index_is_masked() {
        let mut table = BucketTable::new();
        table.reassign(&weighted(&[1, 1]));
        assert_eq!(table.get(256), table.get(0));
        assert_eq!(table.get(u32::MAX), table.get(255));
    }

    #[test]
    fn golden_ratio_hash() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(1, 32), 0x61C8_8647);
        assert_eq!(hash_32(2, 8), 0xC3);
    }

    #[test]
    fn port_is_hashed_only_when_asked_and_present() {
        let tcp = flow();
        let port = HashFlags {
            port: true,
            fallback: false,
        };
        assert_eq!(hashed_port(HashFlags::NONE, &tcp), 0);
        assert_eq!(hashed_port(port, &tcp), tcp.client_port);
        for (proto, expected) in [
            (17, tcp.client_port),
            (132, tcp.client_port),
            (1, 0),
            (47, 0),
        ] {
            let f = FlowInfo {
                protocol: proto,
                ..tcp
            };
            assert_eq!(hashed_port(port, &f), expected, "protocol {proto}");
        }
    }
}
