//! Weighted overflow (`ovf`), as IPVS's `ip_vs_ovf.c`.
//!
//! The weight is read as a connection budget. A server is eligible while
//! its weight is positive and its active connections do not exceed it,
//!
//! ```text
//! eligible(i) = weight(i) > 0  and  active(i) <= weight(i)
//! ```
//!
//! and each new connection goes to the eligible server with the highest
//! weight, the first in list order among equals. So the heaviest server
//! fills up first; once its active count has gone past its weight, traffic
//! overflows to the next heaviest, and so on. Note the kernel's bound is
//! inclusive: a server already holding exactly `weight` active connections
//! is still chosen (and so reaches `weight + 1`). When every server is over
//! budget there is no eligible server and the result is `None`, as in the
//! kernel (the connection is refused rather than overloading anyone).
//! Inactive connections are ignored.
//!
//! Cost: the kernel walks the list on every pick. Here the eligible
//! servers sit in a tournament tree ([`super::tree`]) ordered by weight
//! (heaviest first) and list position; a server leaves or rejoins it as
//! its active count crosses its weight. A pick is O(1),
//! [`Scheduler::load_changed`] O(log n), `update` O(n).
//! [`WeightedOverflow::scan`] is the kernel's walk.

use super::tree::{tree_scheduler, Rank};
use super::ServerLoad;

/// `ovf`'s order: eligible servers only, highest weight first.
#[derive(Clone, Copy, Debug, Default)]
struct HeaviestWithinBudget;

impl Rank for HeaviestWithinBudget {
    type Key = u32;

    #[inline]
    fn key(server: &ServerLoad) -> Option<u32> {
        (server.is_available() && server.active <= server.weight).then_some(server.weight)
    }

    #[inline]
    fn precedes(a: &u32, b: &u32) -> bool {
        a > b
    }
}

tree_scheduler!(WeightedOverflow, HeaviestWithinBudget, "ovf", loads: true);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use crate::sched::Scheduler;
    use proptest::prelude::*;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        let mut ovf = WeightedOverflow::new();
        ovf.update(servers);
        let chosen = ovf.pick(servers, &flow());
        assert_eq!(chosen, WeightedOverflow::scan(servers));
        chosen
    }

    #[test]
    fn the_heaviest_fills_first_then_overflows() {
        let mut list = [server(2, 0, 0), server(5, 0, 0), server(3, 0, 0)];
        assert_eq!(pick(&list), Some(1));
        // At its budget (5 of 5): still chosen, the bound is inclusive.
        list[1].active = 5;
        assert_eq!(pick(&list), Some(1));
        // Past it: the next heaviest.
        list[1].active = 6;
        assert_eq!(pick(&list), Some(2));
        list[2].active = 4;
        assert_eq!(pick(&list), Some(0));
        // Everybody over budget: nobody.
        list[0].active = 3;
        assert_eq!(pick(&list), None);
    }

    #[test]
    fn inactive_connections_are_ignored() {
        assert_eq!(pick(&[server(1, 1, 1000), server(1, 0, 0)]), Some(0));
    }

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(
            pick(&[server(1, 0, 0), server(4, 4, 0), server(4, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        assert_eq!(pick(&[server(0, 0, 0), server(1, 1, 0)]), Some(1));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0)]), None);
        assert_eq!(WeightedOverflow::new().name(), "ovf");
    }

    /// Among servers with 0 < weight and active <= weight, the first of
    /// the highest weight.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        let eligible = |s: &ServerLoad| s.weight > 0 && s.active <= s.weight;
        let max = servers
            .iter()
            .filter(|s| eligible(s))
            .map(|s| s.weight)
            .max()?;
        servers.iter().position(|s| eligible(s) && s.weight == max)
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
