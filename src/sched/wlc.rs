//! Weighted least connection (`wlc`), as IPVS's `ip_vs_wlc.c`; the IPVS
//! default.
//!
//! Each new connection goes to the available server (weight above 0) with
//! the smallest overhead per unit of weight
//!
//! ```text
//! overhead(i) / weight(i),  overhead = active * 256 + inactive
//! ```
//!
//! so a server of weight 3 is expected to carry three times the load of one
//! of weight 1. No division is done: walking the list in order, the kernel
//! replaces its current best `b` by server `i` only when `b` is strictly
//! worse,
//!
//! ```text
//! overhead(b) * weight(i) > overhead(i) * weight(b)
//! ```
//!
//! so ties keep the earlier server. The products are formed in `u128`:
//! overheads reach about 2^40 and weights 2^32, so unlike the kernel's
//! 64-bit products they can never overflow.
//!
//! Cost: instead of the kernel's walk over every server, the servers sit in
//! a tournament tree ([`super::tree`]) ordered by the comparison above and
//! then list position, which gives the kernel's choice exactly: a pick is
//! O(1), [`Scheduler::load_changed`] O(log n), `update` O(n).
//! [`WeightedLeastConnection::scan`] is the kernel's linear walk.

use super::tree::{tree_scheduler, Rank};
use super::ServerLoad;

/// `wlc`'s order: least overhead per unit of weight first.
#[derive(Clone, Copy, Debug, Default)]
struct ByOverheadPerWeight;

/// One available server's standing: its overhead and (positive) weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Standing {
    overhead: u64,
    weight: u32,
}

impl Rank for ByOverheadPerWeight {
    type Key = Standing;

    #[inline]
    fn key(server: &ServerLoad) -> Option<Standing> {
        server.is_available().then(|| Standing {
            overhead: server.overhead(),
            weight: server.weight,
        })
    }

    /// `a` is strictly lighter per weight than `b`, by cross-multiplication.
    #[inline]
    fn precedes(a: &Standing, b: &Standing) -> bool {
        u128::from(a.overhead) * u128::from(b.weight)
            < u128::from(b.overhead) * u128::from(a.weight)
    }
}

tree_scheduler!(WeightedLeastConnection, ByOverheadPerWeight, "wlc", loads: true);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use crate::sched::Scheduler;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn pick(servers: &[ServerLoad]) -> Option<usize> {
        let mut wlc = WeightedLeastConnection::new();
        wlc.update(servers);
        let chosen = wlc.pick(servers, &flow());
        assert_eq!(chosen, WeightedLeastConnection::scan(servers));
        chosen
    }

    #[test]
    fn weight_scales_the_load() {
        // A (weight 3) with 2 active: 512/3 ≈ 171 < B (weight 1): 256/1.
        assert_eq!(pick(&[server(3, 2, 0), server(1, 1, 0)]), Some(0));
        // A with 4 active: 1024/3 ≈ 341 > 256: B.
        assert_eq!(pick(&[server(3, 4, 0), server(1, 1, 0)]), Some(1));
        // lc would choose B (256 < 512); per weight A is lighter.
        assert_eq!(pick(&[server(1, 1, 0), server(3, 2, 0)]), Some(1));
    }

    #[test]
    fn cross_multiplication_is_exact() {
        // 769/3 = 256.33 vs 256/1: B. Integer division would call them equal.
        assert_eq!(pick(&[server(3, 3, 1), server(1, 1, 0)]), Some(1));
        // 770/3 = 256.67 vs 1025/4 = 256.25: the second, though both floor to 256.
        assert_eq!(pick(&[server(3, 3, 2), server(4, 4, 1)]), Some(1));
        // 767/3 = 255.67 vs 256/1: the second is heavier.
        assert_eq!(pick(&[server(3, 2, 255), server(1, 1, 0)]), Some(0));
    }

    #[test]
    fn ties_go_to_the_first_server() {
        // 768/3 == 256/1.
        assert_eq!(pick(&[server(3, 3, 0), server(1, 1, 0)]), Some(0));
        assert_eq!(pick(&[server(1, 1, 0), server(3, 3, 0)]), Some(0));
        // All idle: the first available.
        assert_eq!(
            pick(&[server(0, 0, 0), server(2, 0, 0), server(5, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        assert_eq!(pick(&[server(0, 0, 0), server(1, 100, 100)]), Some(1));
        assert_eq!(pick(&[server(1, 100, 100), server(0, 0, 0)]), Some(0));
    }

    #[test]
    fn nothing_available_gives_none() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0), server(0, 7, 0)]), None);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let huge = server(u32::MAX, u32::MAX, u32::MAX);
        assert_eq!(pick(&[huge, server(1, 0, 1)]), Some(1));
        // (2^32-1)*257 / (2^32-1) = 257 > 256 / 1.
        assert_eq!(pick(&[huge, server(1, 1, 0)]), Some(1));
        assert_eq!(pick(&[huge, server(1, 1, 1)]), Some(0));
    }

    /// Orders a/b against c/d (b, d > 0) by Euclid's continued-fraction
    /// expansion, without multiplying: independent of the code under test.
    fn compare_fractions(mut a: u64, mut b: u64, mut c: u64, mut d: u64) -> Ordering {
        loop {
            let (whole_ab, rest_ab) = (a / b, a % b);
            let (whole_cd, rest_cd) = (c / d, c % d);
            if whole_ab != whole_cd {
                return whole_ab.cmp(&whole_cd);
            }
            match (rest_ab, rest_cd) {
                (0, 0) => return Ordering::Equal,
                (0, _) => return Ordering::Less,
                (_, 0) => return Ordering::Greater,
                // rest_ab/b vs rest_cd/d orders like d/rest_cd vs b/rest_ab.
                _ => (a, b, c, d) = (d, rest_cd, b, rest_ab),
            }
        }
    }

    /// The available server with the least overhead/weight, earliest on ties.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (index, server) in servers.iter().enumerate() {
            if server.weight == 0 {
                continue;
            }
            let better = best.is_none_or(|b| {
                let leader = servers[b];
                compare_fractions(
                    server.overhead(),
                    u64::from(server.weight),
                    leader.overhead(),
                    u64::from(leader.weight),
                ) == Ordering::Less
            });
            if better {
                best = Some(index);
            }
        }
        best
    }

    #[test]
    fn reference_fraction_comparison() {
        assert_eq!(compare_fractions(1, 3, 1, 2), Ordering::Less);
        assert_eq!(compare_fractions(2, 4, 1, 2), Ordering::Equal);
        assert_eq!(compare_fractions(769, 3, 256, 1), Ordering::Greater);
        assert_eq!(compare_fractions(0, 5, 0, 1), Ordering::Equal);
        assert_eq!(compare_fractions(355, 113, 22, 7), Ordering::Less);
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }

        #[test]
        fn reference_comparison_agrees_with_rationals(
            a in 0u64..1000, b in 1u64..1000, c in 0u64..1000, d in 1u64..1000,
        ) {
            prop_assert_eq!(compare_fractions(a, b, c, d), (a * d).cmp(&(c * b)));
        }
    }
}
