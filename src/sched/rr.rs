//! Round robin (`rr`), as IPVS's `ip_vs_rr.c`.
//!
//! Servers with a positive weight take new connections strictly in turn,
//! in list order, whatever their weights and loads. The scheduler remembers
//! only the index `c` of the server it chose last (initially "before the
//! first server"); a pick returns the first available server among
//!
//! ```text
//! c+1, c+2, ..., n-1, 0, 1, ..., c
//! ```
//!
//! so `c` itself comes last: a lone available server is chosen every time.
//! Weight-0 servers are passed over; with none available the pick returns
//! `None` and `c` stays where it was.
//!
//! Cost: O(1) per pick when every server is available, O(n) worst case
//! (one lap of the list); no configuration-derived state, so [`update`] is
//! not needed.
//!
//! Difference from the kernel: IPVS keeps a pointer to the last server and,
//! when that server is deleted, steps it back to its predecessor. Here the
//! position is an index, so after a removal the turn resumes by position
//! (one server may be skipped or repeated once); an index past the end of a
//! shrunken list restarts at the first server.
//!
//! [`update`]: super::Scheduler::update

use super::{FlowInfo, Scheduler, ServerLoad};

/// The `rr` scheduler. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    /// Index of the server chosen last; `None` before the first pick.
    last_chosen: Option<usize>,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn pick(&mut self, servers: &[ServerLoad], _flow: &FlowInfo) -> Option<usize> {
        // Where this lap starts; clamped so a shrunken list cannot make the
        // split below go out of range.
        let start = self
            .last_chosen
            .map_or(0, |last| last.saturating_add(1))
            .min(servers.len());
        let (before_start, from_start) = servers.split_at(start);
        let chosen = from_start
            .iter()
            .position(ServerLoad::is_available)
            .map(|offset| start + offset)
            .or_else(|| before_start.iter().position(ServerLoad::is_available))?;
        self.last_chosen = Some(chosen);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, servers, weighted};
    use proptest::prelude::*;

    fn picks(sched: &mut RoundRobin, servers: &[ServerLoad], count: usize) -> Vec<Option<usize>> {
        (0..count).map(|_| sched.pick(servers, &flow())).collect()
    }

    #[test]
    fn cycles_through_three_servers_in_order() {
        let mut rr = RoundRobin::new();
        let list = weighted(&[1, 5, 2]);
        let expected = [0, 1, 2, 0, 1, 2, 0].map(Some);
        assert_eq!(picks(&mut rr, &list, 7), expected);
    }

    #[test]
    fn skips_weight_zero() {
        let mut rr = RoundRobin::new();
        assert_eq!(
            picks(&mut rr, &weighted(&[1, 0, 3]), 5),
            [0, 2, 0, 2, 0].map(Some)
        );
        let mut rr = RoundRobin::new();
        assert_eq!(
            picks(&mut rr, &weighted(&[0, 0, 3]), 3),
            [2, 2, 2].map(Some)
        );
    }

    #[test]
    fn nothing_available_gives_none_and_keeps_the_turn() {
        let mut rr = RoundRobin::new();
        assert_eq!(rr.pick(&[], &flow()), None);
        let list = weighted(&[1, 1, 1]);
        assert_eq!(picks(&mut rr, &list, 2), [Some(0), Some(1)]);
        assert_eq!(rr.pick(&weighted(&[0, 0, 0]), &flow()), None);
        assert_eq!(rr.pick(&list, &flow()), Some(2));
    }

    #[test]
    fn continues_after_the_last_chosen_when_weights_change() {
        let mut rr = RoundRobin::new();
        assert_eq!(rr.pick(&weighted(&[1, 1, 1]), &flow()), Some(0));
        // Server 1 quiesced: the turn passes to 2, then wraps to 0.
        let quiesced = weighted(&[1, 0, 1]);
        assert_eq!(picks(&mut rr, &quiesced, 2), [Some(2), Some(0)]);
    }

    #[test]
    fn shrunken_list_restarts_at_the_first_server() {
        let mut rr = RoundRobin::new();
        assert_eq!(
            picks(&mut rr, &weighted(&[1, 1, 1, 1]), 4).last(),
            Some(&Some(3))
        );
        assert_eq!(picks(&mut rr, &weighted(&[1, 1]), 3), [0, 1, 0].map(Some));
    }

    /// The kernel's loop, transcribed plainly: walk forward one step at a
    /// time from the last choice, wrapping, for at most one lap.
    fn reference_next(servers: &[ServerLoad], last: Option<usize>) -> Option<usize> {
        let n = servers.len();
        let mut position = match last {
            Some(last) if last < n => last,
            _ => n.checked_sub(1)?,
        };
        for _ in 0..n {
            position = (position + 1) % n;
            if servers[position].weight > 0 {
                return Some(position);
            }
        }
        None
    }

    proptest! {
        #[test]
        fn matches_reference_as_loads_and_lists_change(
            lists in prop::collection::vec(servers(), 1..8),
            picks_per_list in 1usize..12,
        ) {
            let mut rr = RoundRobin::new();
            let mut last = None;
            for list in &lists {
                for _ in 0..picks_per_list {
                    let expected = reference_next(list, last);
                    prop_assert_eq!(rr.pick(list, &flow()), expected);
                    last = expected.or(last);
                }
            }
        }

        /// Over k laps each available server is chosen exactly k times.
        #[test]
        fn equal_shares(list in servers(), laps in 1usize..5) {
            let available = list.iter().filter(|s| s.is_available()).count();
            let mut rr = RoundRobin::new();
            let mut counts = vec![0usize; list.len()];
            for _ in 0..laps * available {
                counts[rr.pick(&list, &flow()).unwrap()] += 1;
            }
            for (server, count) in list.iter().zip(counts) {
                prop_assert_eq!(count, if server.is_available() { laps } else { 0 });
            }
        }
    }
}
