//! Shortest expected delay (`sed`), as IPVS's `ip_vs_sed.c`.
//!
//! A new connection joining server `i` expects to wait behind the
//! connections it already serves plus itself, spread over the server's
//! capacity (its weight):
//!
//! ```text
//! delay(i) = (active(i) + 1) / weight(i)
//! ```
//!
//! and goes to the available server (weight above 0) where that is least.
//! Only established (active) connections count; inactive ones are ignored,
//! unlike `wlc`. No division is done: walking the list in order, the kernel's
//! best so far `b` gives way to server `i` only when it is strictly worse,
//!
//! ```text
//! (active(b) + 1) * weight(i) > (active(i) + 1) * weight(b)
//! ```
//!
//! so ties keep the earlier server. The `+ 1` makes weight matter even
//! among idle servers: with nobody connected, the heaviest server wins
//! (1/w is least), where `wlc` would take the first.
//!
//! The products are formed in `u64`: `(active + 1)` is at most 2^32 and a
//! weight below 2^32, so they stay below 2^64, where the kernel's `int`
//! arithmetic could wrap.
//!
//! Cost: instead of the kernel's walk over every server, the servers sit in
//! a tournament tree ([`super::tree`]) ordered by expected delay and then
//! list position: a pick is O(1), [`Scheduler::load_changed`] O(log n),
//! `update` O(n). [`ShortestExpectedDelay::scan`] is the kernel's walk.

use super::tree::{tree_scheduler, Rank};
use super::ServerLoad;

/// What `sed` and `nq` look at: active connections and (positive) weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Queue {
    pub(crate) active: u32,
    pub(crate) weight: u32,
}

impl Queue {
    /// `None` for a server that may not be chosen (weight 0).
    #[inline]
    pub(crate) fn of(server: &ServerLoad) -> Option<Queue> {
        server.is_available().then_some(Queue {
            active: server.active,
            weight: server.weight,
        })
    }

    /// Whether a connection joining `self` expects a strictly shorter delay
    /// than one joining `other`: `(a + 1) / w < (a' + 1) / w'`.
    #[inline]
    pub(crate) fn is_shorter_than(&self, other: &Queue) -> bool {
        (u64::from(self.active) + 1) * u64::from(other.weight)
            < (u64::from(other.active) + 1) * u64::from(self.weight)
    }
}

/// `sed`'s order: shortest expected delay first.
#[derive(Clone, Copy, Debug, Default)]
struct ByExpectedDelay;

impl Rank for ByExpectedDelay {
    type Key = Queue;

    #[inline]
    fn key(server: &ServerLoad) -> Option<Queue> {
        Queue::of(server)
    }

    #[inline]
    fn precedes(a: &Queue, b: &Queue) -> bool {
        a.is_shorter_than(b)
    }
}

tree_scheduler!(ShortestExpectedDelay, ByExpectedDelay, "sed", loads: true);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use crate::sched::Scheduler;
    use proptest::prelude::*;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        let mut sed = ShortestExpectedDelay::new();
        sed.update(servers);
        let chosen = sed.pick(servers, &flow());
        assert_eq!(chosen, ShortestExpectedDelay::scan(servers));
        chosen
    }

    #[test]
    fn idle_servers_go_by_weight() {
        // 1/1 vs 1/3: the heavier one, though it comes second.
        assert_eq!(pick(&[server(1, 0, 0), server(3, 0, 0)]), Some(1));
        // Equal weights, all idle: the first.
        assert_eq!(pick(&[server(2, 0, 0), server(2, 0, 0)]), Some(0));
    }

    #[test]
    fn only_active_connections_count() {
        // Inactive connections are ignored: 1/1 each, tie, the first.
        assert_eq!(pick(&[server(1, 0, 1000), server(1, 0, 0)]), Some(0));
        // One active on the first: 2/1 > 1/1.
        assert_eq!(pick(&[server(1, 1, 0), server(1, 0, 1000)]), Some(1));
    }

    #[test]
    fn cross_multiplication_is_exact() {
        // (2+1)/3 = 1 vs (0+1)/1 = 1: tie, the first.
        assert_eq!(pick(&[server(3, 2, 0), server(1, 0, 0)]), Some(0));
        assert_eq!(pick(&[server(1, 0, 0), server(3, 2, 0)]), Some(0));
        // (3+1)/3 = 1.33 vs 1/1: the second; integer division calls it 1.
        assert_eq!(pick(&[server(3, 3, 0), server(1, 0, 0)]), Some(1));
        // 5/4 = 1.25 vs 6/5 = 1.2: the second.
        assert_eq!(pick(&[server(4, 4, 0), server(5, 5, 0)]), Some(1));
    }

    #[test]
    fn differs_from_wlc_by_the_extra_connection() {
        // wlc: 0/1 vs 256/10 picks the first; sed: 1/1 vs 2/10 picks the second.
        assert_eq!(pick(&[server(1, 0, 0), server(10, 1, 0)]), Some(1));
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        assert_eq!(pick(&[server(0, 0, 0), server(1, 100, 0)]), Some(1));
        assert_eq!(pick(&[server(1, 100, 0), server(0, 0, 0)]), Some(0));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0), server(0, 3, 0)]), None);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let huge = server(u32::MAX, u32::MAX, 0);
        // 2^32 / (2^32 - 1) > 1 / 1.
        assert_eq!(pick(&[huge, server(1, 0, 0)]), Some(1));
        // vs 2/1: the huge one.
        assert_eq!(pick(&[huge, server(1, 1, 0)]), Some(0));
        assert_eq!(ShortestExpectedDelay::new().name(), "sed");
    }

    /// The first available server minimising (active + 1) / weight, as
    /// `min_by` over exact rational comparisons (which keeps the first of
    /// equal minima).
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.weight > 0)
            .min_by(|(_, a), (_, b)| {
                let lhs = (u128::from(a.active) + 1) * u128::from(b.weight);
                let rhs = (u128::from(b.active) + 1) * u128::from(a.weight);
                lhs.cmp(&rhs)
            })
            .map(|(i, _)| i)
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
