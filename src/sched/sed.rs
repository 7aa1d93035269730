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
//! unlike `wlc`. No division is done: walking the list in order, the best
//! so far `b` gives way to server `i` only when it is strictly worse,
//!
//! ```text
//! (active(b) + 1) * weight(i) > (active(i) + 1) * weight(b)
//! ```
//!
//! as the kernel compares, so ties keep the earlier server. The `+ 1` makes
//! weight matter even among idle servers: with nobody connected, the
//! heaviest server wins (1/w is least), where `wlc` would take the first.
//!
//! The operands are widened (`active + 1` in `u64`, products in `u128`), so
//! nothing wraps where the kernel's `int` arithmetic could.
//!
//! Cost: one pass over the list, O(n); no state.

use super::{FlowInfo, Scheduler, ServerLoad};

/// The `sed` scheduler. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ShortestExpectedDelay;

impl ShortestExpectedDelay {
    pub fn new() -> Self {
        Self
    }
}

/// The expected-delay numerator of `sed` and `nq`: `active + 1`.
#[inline]
pub(crate) fn queue_length(server: &ServerLoad) -> u64 {
    u64::from(server.active) + 1
}

/// Whether server `a` has a strictly longer expected delay than `b`
/// (`queue(a) / weight(a) > queue(b) / weight(b)`, both weights positive),
/// by cross-multiplication.
#[inline]
pub(crate) fn slower_than(a: &ServerLoad, b: &ServerLoad) -> bool {
    u128::from(queue_length(a)) * u128::from(b.weight)
        > u128::from(queue_length(b)) * u128::from(a.weight)
}

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn pick(&mut self, servers: &[ServerLoad], _flow: &FlowInfo) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (index, server) in servers.iter().enumerate() {
            if !server.is_available() {
                continue;
            }
            match best {
                Some(b) if !slower_than(&servers[b], server) => {}
                _ => best = Some(index),
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use proptest::prelude::*;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        ShortestExpectedDelay::new().pick(servers, &flow())
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
