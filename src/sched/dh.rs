//! Destination hashing (`dh`), as IPVS's `ip_vs_dh.c`: connections to the
//! same destination address always go to the same server (meant for
//! caches in front of many origin addresses, with firewall-mark services).
//!
//! The 256 buckets of a [`BucketTable`] are dealt to the servers as for
//! `sh` (list order, `weight` consecutive buckets each, at least one). A
//! new connection goes to the server of bucket
//!
//! ```text
//! (daddr * 2654435761) mod 256
//! ```
//!
//! with `daddr` the packet's destination ([`FlowInfo::virtual_addr`]) as a
//! host-order integer: Knuth's golden-ratio multiplier, of which, as in
//! the kernel, only the low 8 bits of the product are kept. If that
//! server is unavailable (weight 0) the connection is refused (`None`);
//! `dh` has no fallback. Every configuration change deals the buckets
//! again.
//!
//! Cost: a multiplication and a load.

use super::hashing::{usable, BucketTable};
use super::{FlowInfo, Scheduler, ServerLoad};
use std::net::Ipv4Addr;

/// The `dh` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct DestinationHashing {
    table: BucketTable,
}

impl Default for DestinationHashing {
    fn default() -> Self {
        Self::new()
    }
}

impl DestinationHashing {
    /// A `dh` scheduler; call [`Scheduler::update`] before the first pick.
    pub fn new() -> Self {
        Self {
            table: BucketTable::new(),
        }
    }

    #[inline]
    fn bucket(addr: Ipv4Addr) -> u32 {
        u32::from(addr).wrapping_mul(2_654_435_761) & BucketTable::MASK
    }
}

impl Scheduler for DestinationHashing {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize> {
        let index = self.table.get(Self::bucket(flow.virtual_addr))?;
        usable(servers, index).then_some(index)
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

    fn to(daddr: u32, client: u32) -> FlowInfo {
        FlowInfo {
            virtual_addr: Ipv4Addr::from(daddr),
            client_addr: Ipv4Addr::from(client),
            ..flow()
        }
    }

    fn ready(list: &[ServerLoad]) -> DestinationHashing {
        let mut sched = DestinationHashing::new();
        sched.update(list);
        sched
    }

    #[test]
    fn name() {
        assert_eq!(DestinationHashing::new().name(), "dh");
    }

    #[test]
    fn kernel_bucket_arithmetic() {
        // 2654435761 = 0x9E3779B1: 0.0.0.1 -> 0xB1 = 177, odd.
        assert_eq!(DestinationHashing::bucket(Ipv4Addr::from(1)), 177);
        assert_eq!(DestinationHashing::bucket(Ipv4Addr::from(2)), 0x62);
        let list = weighted(&[1, 1]);
        assert_eq!(ready(&list).pick(&list, &to(1, 5)), Some(1));
        assert_eq!(ready(&list).pick(&list, &to(2, 5)), Some(0));
    }

    #[test]
    fn same_destination_same_server_whatever_the_client() {
        let list = weighted(&[2, 1, 3]);
        let mut sched = ready(&list);
        for d in 0..300u32 {
            let daddr = 0xcb00_7100 + d * 13;
            let first = sched.pick(&list, &to(daddr, 1));
            assert!(first.is_some());
            for client in [2, 0x0a00_0001, u32::MAX] {
                assert_eq!(sched.pick(&list, &to(daddr, client)), first);
            }
        }
    }

    #[test]
    fn destinations_spread_by_weight() {
        let list = weighted(&[1, 2, 1]);
        let mut sched = ready(&list);
        let mut counts = [0u32; 3];
        for d in 0..40_000u32 {
            counts[sched.pick(&list, &to(0x0a00_0000 + d, 1)).unwrap()] += 1;
        }
        for (i, expected) in [(0, 10_000.0), (1, 20_000.0), (2, 10_000.0)] {
            let error = (f64::from(counts[i]) - expected).abs() / expected;
            assert!(error < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn weight_zero_refuses_without_fallback() {
        let list = weighted(&[1, 0, 1]);
        let mut sched = ready(&list);
        for d in 0..1000u32 {
            let bucket = DestinationHashing::bucket(Ipv4Addr::from(d));
            let expected = [Some(0), None, Some(2)][bucket as usize % 3];
            assert_eq!(sched.pick(&list, &to(d, 1)), expected);
        }
    }

    #[test]
    fn update_redeals_the_buckets() {
        let mut sched = DestinationHashing::new();
        let f = to(1, 1); // bucket 177
        assert_eq!(sched.pick(&weighted(&[1]), &f), None, "no update yet");
        sched.update(&weighted(&[1, 1]));
        assert_eq!(sched.pick(&weighted(&[1, 1]), &f), Some(1));
        sched.update(&weighted(&[1, 1, 1]));
        assert_eq!(sched.pick(&weighted(&[1, 1, 1]), &f), Some(177 % 3));
        sched.update(&[]);
        assert_eq!(sched.pick(&[], &f), None);
    }

    proptest! {
        #[test]
        fn never_picks_weight_zero(list in servers(), daddr in any::<u32>()) {
            let mut sched = ready(&list);
            if let Some(i) = sched.pick(&list, &to(daddr, 1)) {
                prop_assert!(list[i].weight > 0);
            }
            // A list that shrank without an update never yields a missing index.
            if let Some(i) = sched.pick(&list[..list.len() / 2], &to(daddr, 1)) {
                prop_assert!(i < list.len() / 2);
            }
        }
    }
}
