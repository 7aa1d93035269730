//! Never queue (`nq`), as IPVS's `ip_vs_nq.c`.
//!
//! A new connection goes straight to an idle server when there is one: the
//! first available server (weight above 0) with no active connection, so
//! nothing waits in a queue (inactive connections do not make a server
//! busy). When every available server is busy, `nq` falls back to the
//! shortest-expected-delay rule of [`sed`](super::sed): the least
//!
//! ```text
//! (active(i) + 1) / weight(i)
//! ```
//!
//! compared by cross-multiplication, `b` giving way to `i` only when
//! `(active(b) + 1) * weight(i) > (active(i) + 1) * weight(b)`, so ties
//! keep the earlier server. That is the kernel's single pass, which returns
//! at the first idle server it meets.
//!
//! As one order: every idle server precedes every busy one, idle servers
//! are all equal (so list position decides: the first idle server), busy
//! ones go by expected delay, then list position.
//!
//! Cost: the kernel's pass stops at the first idle server but walks the
//! whole list when all are busy, O(n). Here the servers sit in a tournament
//! tree ([`super::tree`]) in the order above: a pick is O(1),
//! [`Scheduler::load_changed`] O(log n), `update` O(n).
//! [`NeverQueue::scan`] is the kernel's walk.

use super::sed::Queue;
use super::tree::{tree_scheduler, Rank};
use super::ServerLoad;

/// `nq`'s order: idle servers first, then shortest expected delay.
#[derive(Clone, Copy, Debug, Default)]
struct IdleFirst;

impl Rank for IdleFirst {
    type Key = Queue;

    #[inline]
    fn key(server: &ServerLoad) -> Option<Queue> {
        Queue::of(server)
    }

    #[inline]
    fn precedes(a: &Queue, b: &Queue) -> bool {
        match (a.active == 0, b.active == 0) {
            (true, false) => true,
            (false, false) => a.is_shorter_than(b),
            // Idle servers tie with each other; a busy one never beats one.
            (true, true) | (false, true) => false,
        }
    }
}

tree_scheduler!(NeverQueue, IdleFirst, "nq", loads: true);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::sed::ShortestExpectedDelay;
    use crate::sched::testing::{flow, server, servers};
    use crate::sched::Scheduler;
    use proptest::prelude::*;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        let mut nq = NeverQueue::new();
        nq.update(servers);
        let chosen = nq.pick(servers, &flow());
        assert_eq!(chosen, NeverQueue::scan(servers));
        chosen
    }

    #[test]
    fn an_idle_server_wins_whatever_its_weight() {
        // sed would pick the second (2/100 < 1/1); nq takes the idle one.
        assert_eq!(pick(&[server(100, 1, 0), server(1, 0, 50)]), Some(1));
        // The first idle one, not the heaviest idle one.
        assert_eq!(
            pick(&[server(5, 3, 0), server(1, 0, 0), server(9, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn inactive_connections_do_not_make_a_server_busy() {
        assert_eq!(pick(&[server(1, 1, 0), server(1, 0, 1000)]), Some(1));
    }

    #[test]
    fn busy_servers_go_by_expected_delay() {
        // 3/1 vs 4/2: the second.
        assert_eq!(pick(&[server(1, 2, 0), server(2, 3, 0)]), Some(1));
        // 2/1 vs 4/2: tie, the first.
        assert_eq!(pick(&[server(1, 1, 0), server(2, 3, 0)]), Some(0));
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        // Idle but weight 0: skipped.
        assert_eq!(pick(&[server(0, 0, 0), server(1, 9, 0)]), Some(1));
        assert_eq!(pick(&[server(1, 9, 0), server(0, 0, 0)]), Some(0));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0)]), None);
        assert_eq!(NeverQueue::new().name(), "nq");
    }

    /// The first available idle server, else what `sed` picks.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        servers
            .iter()
            .position(|s| s.weight > 0 && s.active == 0)
            .or_else(|| ShortestExpectedDelay::scan(servers))
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
