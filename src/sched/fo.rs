//! Weighted failover (`fo`), as IPVS's `ip_vs_fo.c`.
//!
//! Every new connection goes to the available server with the highest
//! weight,
//!
//! ```text
//! argmax weight(i)  over weight(i) > 0
//! ```
//!
//! and, among servers of equal highest weight, to the first in list order
//! (the kernel replaces its choice only on a strictly higher weight).
//! Connection counts are ignored: the others stand by until the operator
//! lowers the leader's weight (to 0 to take it out), which is how failover
//! is driven.
//!
//! Cost: the kernel walks the list on every pick. The choice depends on
//! the weights only, so here the servers sit in a tournament tree
//! ([`super::tree`]) ordered by weight (heaviest first) and list position,
//! built by `update` (O(n)): a pick is O(1), and load changes need no
//! notification. [`WeightedFailover::scan`] is the kernel's walk.

use super::tree::{tree_scheduler, Rank};
use super::ServerLoad;

/// `fo`'s order: highest weight first.
#[derive(Clone, Copy, Debug, Default)]
struct HeaviestFirst;

impl Rank for HeaviestFirst {
    type Key = u32;

    #[inline]
    fn key(server: &ServerLoad) -> Option<u32> {
        server.is_available().then_some(server.weight)
    }

    #[inline]
    fn precedes(a: &u32, b: &u32) -> bool {
        a > b
    }
}

tree_scheduler!(WeightedFailover, HeaviestFirst, "fo", loads: false);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use crate::sched::Scheduler;
    use proptest::prelude::*;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        let mut fo = WeightedFailover::new();
        fo.update(servers);
        let chosen = fo.pick(servers, &flow());
        assert_eq!(chosen, WeightedFailover::scan(servers));
        chosen
    }

    #[test]
    fn the_heaviest_server_takes_everything() {
        assert_eq!(
            pick(&[server(1, 0, 0), server(5, 1000, 1000), server(3, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(
            pick(&[server(2, 0, 0), server(7, 9, 0), server(7, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        assert_eq!(pick(&[server(0, 0, 0), server(1, 9, 9)]), Some(1));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0), server(0, 0, 0)]), None);
        assert_eq!(WeightedFailover::new().name(), "fo");
    }

    /// The first index holding the maximum positive weight.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        let max = servers.iter().map(|s| s.weight).max().filter(|&w| w > 0)?;
        servers.iter().position(|s| s.weight == max)
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
