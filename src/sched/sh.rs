//! Source hashing (`sh`), as IPVS's `ip_vs_sh.c`: a client address (and,
//! with `sh-port`, its port) always maps to the same server while the
//! configuration stays the same.
//!
//! The 256 buckets of a [`BucketTable`] are dealt to the servers in list
//! order, `weight` consecutive buckets each (at least one, even for weight
//! 0), round and round until all are dealt; every configuration change
//! deals them again, so unlike `mh` a change can move many clients. A new
//! connection goes to the server of bucket
//!
//! ```text
//! bucket(offset) = (offset + hash_32(port + addr, 8)) mod 256
//! hash_32(x, 8)  = (x * 0x61C88647 mod 2^32) >> 24      (golden ratio)
//! ```
//!
//! with `offset = 0`, `addr` the client address as a host-order integer
//! and `port` the client port with `sh-port` (TCP, UDP, SCTP; 0 otherwise).
//!
//! If that server is unavailable (weight 0), the connection is refused
//! (`None`), unless the service has `sh-fallback`. Then, like the kernel,
//! the offsets `(k + b) mod 256` for `k = 0..256` are tried in turn, `b`
//! being the first bucket; as the offset is added to the hash again, the
//! buckets visited are `(k + 2b) mod 256`: every bucket once, starting at
//! `2b`. The first available server found wins; `None` if there is none.
//! (As in the kernel, servers beyond the 256th bucket owner are never
//! reached: with more than 256 servers, or a weight of 256 or more, some
//! servers hold no bucket.)
//!
//! Cost: a multiplication and a load; with fallback, at most 256 more.

use super::hashing::{hash_32, hashed_port, usable, BucketTable, HashFlags};
use super::{FlowInfo, Scheduler, ServerLoad};
use std::net::Ipv4Addr;

/// The `sh` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct SourceHashing {
    flags: HashFlags,
    table: BucketTable,
}

impl SourceHashing {
    /// An `sh` scheduler with the service's flags; call
    /// [`Scheduler::update`] before the first pick.
    pub fn new(flags: HashFlags) -> Self {
        Self {
            flags,
            table: BucketTable::new(),
        }
    }

    pub fn flags(&self) -> HashFlags {
        self.flags
    }

    #[inline]
    fn bucket(addr: Ipv4Addr, port: u16, offset: u32) -> u32 {
        let key = u32::from(port).wrapping_add(u32::from(addr));
        offset.wrapping_add(hash_32(key, BucketTable::BITS)) & BucketTable::MASK
    }
}

impl Scheduler for SourceHashing {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize> {
        let port = hashed_port(self.flags, flow);
        let first = Self::bucket(flow.client_addr, port, 0);
        let index = self.table.get(first)?;
        if usable(servers, index) {
            return Some(index);
        }
        if !self.flags.fallback {
            return None;
        }
        (0..BucketTable::SIZE as u32)
            .filter_map(|k| {
                let offset = (k + first) & BucketTable::MASK;
                self.table.get(Self::bucket(flow.client_addr, port, offset))
            })
            .find(|&i| usable(servers, i))
    }

    fn update(&mut self, servers: &[ServerLoad]) {
        self.table.reassign(servers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, servers, weighted};
    use proptest::prelude::*;

    const FALLBACK: HashFlags = HashFlags {
        port: false,
        fallback: true,
    };
    const PORT: HashFlags = HashFlags {
        port: true,
        fallback: false,
    };

    fn client(addr: u32, port: u16) -> FlowInfo {
        FlowInfo {
            client_addr: Ipv4Addr::from(addr),
            client_port: port,
            ..flow()
        }
    }

    fn ready(flags: HashFlags, list: &[ServerLoad]) -> SourceHashing {
        let mut sched = SourceHashing::new(flags);
        sched.update(list);
        sched
    }

    #[test]
    fn name() {
        assert_eq!(SourceHashing::new(HashFlags::NONE).name(), "sh");
    }

    #[test]
    fn kernel_bucket_arithmetic() {
        // 0.0.0.1: 0x61C88647 >> 24 = 0x61 = bucket 97, odd: server 1 of 2.
        let list = weighted(&[1, 1]);
        let mut sched = ready(HashFlags::NONE, &list);
        assert_eq!(SourceHashing::bucket(Ipv4Addr::from(1), 0, 0), 97);
        assert_eq!(sched.pick(&list, &client(1, 5)), Some(1));
        // 0.0.0.2: 0xC3910C8E >> 24 = 195, port 1 + addr 1 hashes like 2.
        assert_eq!(SourceHashing::bucket(Ipv4Addr::from(2), 0, 0), 195);
        assert_eq!(SourceHashing::bucket(Ipv4Addr::from(1), 1, 0), 195);
        assert_eq!(
            SourceHashing::bucket(Ipv4Addr::from(1), 0, 200),
            (97 + 200) & 255
        );
    }

    #[test]
    fn same_client_same_server() {
        let list = weighted(&[1, 3, 2]);
        let mut sched = ready(HashFlags::NONE, &list);
        for addr in 0..500u32 {
            let a = 0xc612_0000 + addr * 7919;
            let first = sched.pick(&list, &client(a, 1000));
            assert!(first.is_some());
            assert_eq!(sched.pick(&list, &client(a, 2000)), first, "port ignored");
            assert_eq!(
                ready(HashFlags::NONE, &list).pick(&list, &client(a, 1)),
                first
            );
        }
    }

    #[test]
    fn clients_spread_by_weight() {
        let list = weighted(&[1, 2, 1]);
        let mut sched = ready(HashFlags::NONE, &list);
        let mut counts = [0u32; 3];
        for addr in 0..40_000u32 {
            counts[sched.pick(&list, &client(0x0a00_0000 + addr, 1)).unwrap()] += 1;
        }
        for (i, expected) in [(0, 10_000.0), (1, 20_000.0), (2, 10_000.0)] {
            let error = (f64::from(counts[i]) - expected).abs() / expected;
            assert!(error < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn port_flag_hashes_the_port() {
        let list = weighted(&[1, 1, 1, 1]);
        let mut sched = ready(PORT, &list);
        let picks: std::collections::HashSet<_> = (0..64)
            .map(|p| sched.pick(&list, &client(0x0a00_0001, 1000 + p)).unwrap())
            .collect();
        assert_eq!(picks.len(), 4);
        let icmp = FlowInfo {
            protocol: 1,
            ..client(0x0a00_0001, 1234)
        };
        let no_port = ready(HashFlags::NONE, &list).pick(&list, &client(0x0a00_0001, 9));
        assert_eq!(sched.pick(&list, &icmp), no_port);
    }

    #[test]
    fn weight_zero_without_fallback_refuses() {
        // Buckets 0,1,2,0,1,2,...: server 1 (weight 0) keeps one in three.
        let list = weighted(&[1, 0, 1]);
        let mut sched = ready(HashFlags::NONE, &list);
        let mut refused = 0;
        for addr in 0..3000u32 {
            let c = client(0x0a00_0000 + addr, 1);
            let bucket = SourceHashing::bucket(c.client_addr, 0, 0);
            let expected = [Some(0), None, Some(2)][bucket as usize % 3];
            assert_eq!(sched.pick(&list, &c), expected);
            refused += u32::from(expected.is_none());
        }
        assert!(refused > 800, "{refused}");
    }

    #[test]
    fn weight_zero_with_fallback_moves_only_its_clients() {
        let list = weighted(&[1, 0, 1]);
        let mut plain = ready(HashFlags::NONE, &list);
        let mut sched = ready(FALLBACK, &list);
        let mut moved = [0u32; 3];
        for addr in 0..3000u32 {
            let c = client(0x0a00_0000 + addr, 1);
            let now = sched.pick(&list, &c).expect("fallback finds a server");
            match plain.pick(&list, &c) {
                Some(i) => assert_eq!(now, i),
                None => moved[now] += 1,
            }
        }
        assert_eq!(moved[1], 0);
        // The probes walk the buckets linearly from 2b, and with buckets
        // dealt 0,1,2,0,1,2,... the bucket after a server-1 bucket is
        // always server 2's: the kernel's probe order sends every
        // displaced client to the same neighbour.
        assert_eq!(moved[0], 0, "{moved:?}");
        assert!(moved[2] > 800, "{moved:?}");
    }

    #[test]
    fn fallback_follows_the_kernel_probe_order() {
        // Client in bucket 97; server of bucket 97 down. The probes visit
        // (k + 2 * 97) mod 256 = 194, 195, ...: the first live owner wins.
        let mut list = weighted(&[1; 256]);
        list[97].weight = 0;
        list[194].weight = 0;
        list[195].weight = 0;
        let mut sched = ready(FALLBACK, &list);
        assert_eq!(sched.pick(&list, &client(1, 0)), Some(196));
    }

    #[test]
    fn update_redeals_the_buckets() {
        let mut sched = SourceHashing::new(HashFlags::NONE);
        let c = client(1, 0); // bucket 97
        assert_eq!(sched.pick(&weighted(&[1, 1]), &c), None, "no update yet");
        sched.update(&weighted(&[1, 1]));
        assert_eq!(sched.pick(&weighted(&[1, 1]), &c), Some(1));
        sched.update(&weighted(&[1, 1, 1]));
        assert_eq!(sched.pick(&weighted(&[1, 1, 1]), &c), Some(97 % 3));
        sched.update(&[]);
        assert_eq!(sched.pick(&[], &c), None);
        let idle = weighted(&[0, 0]);
        sched.update(&idle);
        assert_eq!(sched.pick(&idle, &c), None);
        let mut fallback = ready(FALLBACK, &idle);
        assert_eq!(fallback.pick(&idle, &c), None);
    }

    proptest! {
        #[test]
        fn never_picks_weight_zero(
            list in servers(),
            port in any::<bool>(),
            fallback in any::<bool>(),
            addr in any::<u32>(),
            client_port in any::<u16>(),
        ) {
            let mut sched = ready(HashFlags { port, fallback }, &list);
            let any_available = list.iter().any(ServerLoad::is_available);
            match sched.pick(&list, &client(addr, client_port)) {
                Some(i) => prop_assert!(list[i].weight > 0),
                // With fallback and fewer than 256 buckets' worth of
                // servers, every server holds a bucket: None only if none
                // is available.
                None => prop_assert!(!any_available || !fallback),
            }
        }
    }
}
