//! Least connection (`lc`), as IPVS's `ip_vs_lc.c`.
//!
//! Each new connection goes to the available server (weight above 0) with
//! the smallest connection overhead
//!
//! ```text
//! overhead = active * 256 + inactive
//! ```
//!
//! ([`ServerLoad::overhead`]): an established connection is reckoned to cost
//! 256 times an idle or closing one. Weights only decide availability; among
//! servers with equal overhead the first in list order wins, as in the
//! kernel, which keeps its first minimum.
//!
//! Cost: the kernel walks every server. Here the servers sit in a
//! tournament tree ([`super::tree`]) ordered by (overhead, list position):
//! a pick is O(1), [`Scheduler::load_changed`] O(log n), `update` O(n).
//! [`LeastConnection::scan`] is the kernel's linear walk.

use super::tree::{tree_scheduler, Rank};
use super::ServerLoad;

/// `lc`'s order: least overhead first.
#[derive(Clone, Copy, Debug, Default)]
struct ByOverhead;

impl Rank for ByOverhead {
    type Key = u64;

    #[inline]
    fn key(server: &ServerLoad) -> Option<u64> {
        server.is_available().then(|| server.overhead())
    }

    #[inline]
    fn precedes(a: &u64, b: &u64) -> bool {
        a < b
    }
}

tree_scheduler!(LeastConnection, ByOverhead, "lc", loads: true);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use crate::sched::Scheduler;
    use proptest::prelude::*;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        let mut lc = LeastConnection::new();
        lc.update(servers);
        let chosen = lc.pick(servers, &flow());
        assert_eq!(chosen, LeastConnection::scan(servers));
        chosen
    }

    #[test]
    fn chooses_least_overhead() {
        // Overheads 512+0, 256+10, 0+300.
        let list = [server(1, 2, 0), server(1, 1, 10), server(1, 0, 300)];
        assert_eq!(pick(&list), Some(1));
        // One active connection outweighs 255 inactive ones, not 256.
        assert_eq!(pick(&[server(1, 1, 0), server(1, 0, 255)]), Some(1));
        assert_eq!(pick(&[server(1, 1, 0), server(1, 0, 257)]), Some(0));
    }

    #[test]
    fn ties_go_to_the_first_server() {
        assert_eq!(pick(&[server(1, 1, 0), server(1, 0, 256)]), Some(0));
        assert_eq!(
            pick(&[server(1, 3, 3), server(9, 1, 1), server(1, 1, 1)]),
            Some(1)
        );
    }

    #[test]
    fn weight_only_decides_availability() {
        assert_eq!(pick(&[server(100, 1, 0), server(1, 0, 5)]), Some(1));
        assert_eq!(pick(&[server(0, 0, 0), server(1, 9, 9)]), Some(1));
    }

    #[test]
    fn nothing_available_gives_none() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0), server(0, 1, 1)]), None);
    }

    #[test]
    fn huge_counts_do_not_wrap() {
        // In 32-bit arithmetic (u32::MAX << 8) would wrap to a small number.
        let list = [server(1, u32::MAX, 0), server(1, 0, u32::MAX)];
        assert_eq!(pick(&list), Some(1));
    }

    /// Exhaustive reference: the smallest (overhead, index) pair.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (index, server) in servers.iter().enumerate() {
            if server.weight == 0 {
                continue;
            }
            let overhead = server.active as u64 * 256 + server.inactive as u64;
            let candidate = (overhead, index);
            if best.is_none_or(|b| candidate < b) {
                best = Some(candidate);
            }
        }
        best.map(|(_, index)| index)
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
