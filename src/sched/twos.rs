//! Weighted random of two choices (`twos`), as IPVS's `ip_vs_twos.c`
//! ("power of two choices", after Mitzenmacher).
//!
//! Two servers are drawn independently at random, each with probability
//! about proportional to its weight, and the connection goes to the one
//! with the smaller overhead per unit of weight (`wlc`'s measure),
//! `overhead = active * 256 + inactive`. On a tie the first draw wins.
//!
//! # The draw, as the kernel does it
//!
//! With `W` the sum of the positive weights (servers of weight 0 take no
//! part), a number `r` is drawn uniformly from `0..=W` (note: `W + 1`
//! values, both ends included) and the list is walked in order, keeping
//! the running sum `S` of the weights seen; the draw lands on the first
//! server at which `r <= S`. Server `k` (in list order among the
//! available ones) is therefore drawn with probability
//!
//! ```text
//! P(first) = (w_first + 1) / (W + 1),   P(k) = w_k / (W + 1) otherwise
//! ```
//!
//! a slight bias towards the first available server that we keep, to make
//! the same choices as the kernel. Two such draws `c1`, `c2` are made and
//! the result is `c2` exactly when it is strictly lighter:
//!
//! ```text
//! overhead(c1) * weight(c2) > overhead(c2) * weight(c1)
//! ```
//!
//! (products in `u128`, sums in `u64`: nothing wraps, unlike the kernel's
//! `int`s). So with the loads equal the choice is just the weighted draw,
//! and a server is chosen over a lighter one only when both draws land on
//! it.
//!
//! # Randomness
//!
//! The kernel uses `get_random_u32_below`. Here each instance owns a small
//! xorshift64* generator seeded at construction (through SplitMix64, so any
//! seed, 0 included, gives a good state); `r` is mapped to `0..=W` by the
//! multiply-high method (`(x * (W + 1)) >> 64` on a 64-bit `x`), whose bias
//! is below 2^-20 for any realistic `W` and which never loops. Not
//! cryptographic: a client cannot steer its own connection anyway.
//!
//! # Cost
//!
//! The kernel sums the weights and walks the list on every pick, O(n).
//! Here [`Scheduler::update`] keeps the running sums `S` of the list
//! (O(n), the only allocation), so a draw lands by binary search on them:
//! a pick is O(log n), with the same draws and the same result. Loads are
//! read from the slice at pick time, so load changes need no notification.
//! Without a matching `update` (another slice length, or a drawn server
//! whose weight differs from the sums) the sums are recomputed (same
//! length, no allocation) or the pick walks the list as the kernel does.

use super::{FlowInfo, Scheduler, ServerLoad};

/// The `twos` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct Twos {
    rng: XorShift64Star,
    /// `running[i]`: the sum of the weights of servers `0..=i` at the last
    /// `update` (weight-0 servers add nothing).
    running: Vec<u64>,
}

impl Twos {
    /// A scheduler whose random draws are determined by `seed` (give each
    /// worker its own, e.g. from its id and the clock). Call
    /// [`Scheduler::update`] before the first pick.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: XorShift64Star::new(seed),
            running: Vec::new(),
        }
    }

    /// Recomputes the running sums into the existing buffer (allocates only
    /// when the list grew).
    fn sum_weights(&mut self, servers: &[ServerLoad]) {
        self.running.clear();
        let mut running = 0u64;
        self.running.extend(servers.iter().map(|server| {
            running += u64::from(server.weight);
            running
        }));
    }

    /// Whether `running` still describes server `index`'s weight.
    fn sums_agree_at(&self, servers: &[ServerLoad], index: usize) -> bool {
        let before = index.checked_sub(1).map_or(0, |i| self.running[i]);
        self.running[index] - before == u64::from(servers[index].weight)
    }

    /// The first server at which the running sum reaches `draw`: the first
    /// index with `running >= max(draw, 1)` (for `draw = 0` the first
    /// server of positive weight, where leading weight-0 servers also have
    /// a running sum of 0). `draw <= total`.
    fn land(&self, draw: u64) -> usize {
        let target = draw.max(1);
        self.running.partition_point(|&sum| sum < target)
    }
}

/// The kernel's walk: where the two draws land, in one pass.
fn land_by_walking(servers: &[ServerLoad], draw1: u64, draw2: u64) -> Option<(usize, usize)> {
    let mut first: Option<usize> = None;
    let mut second: Option<usize> = None;
    let mut running = 0u64;
    for (index, server) in servers.iter().enumerate() {
        if !server.is_available() {
            continue;
        }
        running += u64::from(server.weight);
        if first.is_none() && draw1 <= running {
            first = Some(index);
        }
        if second.is_none() && draw2 <= running {
            second = Some(index);
        }
        if first.is_some() && second.is_some() {
            break;
        }
    }
    Some((first?, second?))
}

/// The lighter of the two drawn servers, the first on a tie.
fn lighter(servers: &[ServerLoad], c1: usize, c2: usize) -> usize {
    let (a, b) = (&servers[c1], &servers[c2]);
    let first_heavier = u128::from(a.overhead()) * u128::from(b.weight)
        > u128::from(b.overhead()) * u128::from(a.weight);
    if first_heavier {
        c2
    } else {
        c1
    }
}

/// xorshift64* (Vigna): 64 bits of state, never zero.
#[derive(Clone, Debug)]
struct XorShift64Star {
    state: u64,
}

impl XorShift64Star {
    fn new(seed: u64) -> Self {
        // One SplitMix64 step spreads the seed; force the state non-zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self { state: z | 1 }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn pick(&mut self, servers: &[ServerLoad], _flow: &FlowInfo) -> Option<usize> {
        debug_assert!(
            servers.len() != self.running.len()
                || (0..servers.len()).all(|i| self.sums_agree_at(servers, i)),
            "twos: weights changed without update"
        );
        self.pick_checked(servers)
    }

    fn update(&mut self, servers: &[ServerLoad]) {
        self.sum_weights(servers);
    }
}

impl Twos {
    /// [`Scheduler::pick`] without the debug assertion: the O(1) checks
    /// and their repairs.
    fn pick_checked(&mut self, servers: &[ServerLoad]) -> Option<usize> {
        if servers.len() != self.running.len() {
            // Not the list of the last update: the kernel's two passes.
            let total: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
            if total == 0 {
                return None;
            }
            let draw1 = self.rng.below(total + 1);
            let draw2 = self.rng.below(total + 1);
            let (c1, c2) = land_by_walking(servers, draw1, draw2)?;
            return Some(lighter(servers, c1, c2));
        }
        let total = self.running.last().copied().unwrap_or(0);
        if total == 0 {
            return None;
        }
        let draw1 = self.rng.below(total + 1);
        let draw2 = self.rng.below(total + 1);
        let (mut c1, mut c2) = (self.land(draw1), self.land(draw2));
        if !(self.sums_agree_at(servers, c1) && self.sums_agree_at(servers, c2)) {
            // A weight changed without `update`: land on current weights.
            self.sum_weights(servers);
            let total = self.running.last().copied().unwrap_or(0);
            if total == 0 {
                return None;
            }
            (c1, c2) = (self.land(draw1.min(total)), self.land(draw2.min(total)));
        }
        Some(lighter(servers, c1, c2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers, weighted};
    use proptest::prelude::*;

    const SEED: u64 = 0x5EED_0F7E_57AB;

    fn histogram(sched: &mut Twos, list: &[ServerLoad], picks: usize) -> Vec<usize> {
        sched.update(list);
        let mut counts = vec![0usize; list.len()];
        for _ in 0..picks {
            counts[sched.pick(list, &flow()).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn equal_loads_follow_the_weights() {
        // Idle servers: every pair ties, so the first draw decides.
        let list = weighted(&[10, 0, 20, 30, 40]);
        let picks = 10_000;
        let counts = histogram(&mut Twos::new(SEED), &list, picks);
        assert_eq!(counts[1], 0);
        // 0..=100: the first gets 11 of 101 values, the others w of 101.
        for (i, share) in [(0, 11.0), (2, 20.0), (3, 30.0), (4, 40.0)] {
            let expected = share / 101.0;
            let seen = counts[i] as f64 / picks as f64;
            assert!(
                (seen - expected).abs() < 0.02,
                "server {i}: {seen} vs {expected}"
            );
        }
    }

    #[test]
    fn the_lighter_of_the_pair_wins() {
        // Two equal weights, the first loaded. The first is drawn with
        // probability 51/101 each time; it is chosen only when both draws
        // land on it: (51/101)^2 ≈ 0.255.
        let list = [server(50, 3, 0), server(50, 0, 0)];
        let picks = 10_000;
        let counts = histogram(&mut Twos::new(SEED), &list, picks);
        let seen = counts[0] as f64 / picks as f64;
        let expected = (51.0f64 / 101.0).powi(2);
        assert!((seen - expected).abs() < 0.02, "{seen} vs {expected}");
    }

    #[test]
    fn a_lone_server_always_wins() {
        let mut twos = Twos::new(SEED);
        let list = [server(0, 0, 0), server(3, 1000, 0), server(0, 0, 0)];
        twos.update(&list);
        for _ in 0..100 {
            assert_eq!(twos.pick(&list, &flow()), Some(1));
        }
    }

    #[test]
    fn weight_zero_and_empty_give_none() {
        let mut twos = Twos::new(SEED);
        assert_eq!(twos.pick(&[], &flow()), None);
        assert_eq!(twos.pick(&weighted(&[0, 0]), &flow()), None);
        assert_eq!(twos.name(), "twos");
    }

    #[test]
    fn seeds_are_deterministic_and_distinct() {
        let list = weighted(&[1, 1, 1, 1, 1, 1, 1, 1]);
        let run = |seed| histogram(&mut Twos::new(seed), &list, 200);
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        // Seed 0 is as good as any.
        assert!(run(0).iter().all(|&c| c > 0));
    }

    #[test]
    fn a_weight_changed_without_update_is_never_chosen_at_zero() {
        let mut list = weighted(&[5, 5, 5]);
        let mut twos = Twos::new(SEED);
        twos.update(&list);
        list[1].weight = 0;
        list[2].weight = 0;
        let picks: Vec<_> = (0..50).map(|_| twos.pick_checked(&list)).collect();
        assert!(picks.iter().all(|&p| p == Some(0)), "{picks:?}");
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let list = [server(u32::MAX, u32::MAX, u32::MAX), server(u32::MAX, 0, 0)];
        let counts = histogram(&mut Twos::new(SEED), &list, 1000);
        assert!(counts[1] > counts[0]);
    }

    /// The kernel rule spelled out with a table: draw indices over the
    /// cumulative weights, then keep the lighter of the two (the first on
    /// a tie). Fed the same random numbers as the scheduler.
    fn reference(servers: &[ServerLoad], rng: &mut XorShift64Star) -> Option<usize> {
        let available: Vec<usize> = (0..servers.len())
            .filter(|&i| servers[i].weight > 0)
            .collect();
        let total: u64 = available
            .iter()
            .map(|&i| u64::from(servers[i].weight))
            .sum();
        if total == 0 {
            return None;
        }
        let land = |r: u64| {
            let mut cumulative = 0;
            for &i in &available {
                cumulative += u64::from(servers[i].weight);
                if r <= cumulative {
                    return i;
                }
            }
            unreachable!()
        };
        let r1 = rng.below(total + 1);
        let r2 = rng.below(total + 1);
        let (c1, c2) = (land(r1), land(r2));
        let lhs = u128::from(servers[c1].overhead()) * u128::from(servers[c2].weight);
        let rhs = u128::from(servers[c2].overhead()) * u128::from(servers[c1].weight);
        Some(if lhs > rhs { c2 } else { c1 })
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers(), seed in any::<u64>(), picks in 1usize..10) {
            // With the running sums of `update`, and by the kernel's walk
            // when the scheduler never saw the list.
            let mut twos = Twos::new(seed);
            twos.update(&list);
            let mut walking = Twos::new(seed);
            let mut rng = XorShift64Star::new(seed);
            for _ in 0..picks {
                let expected = reference(&list, &mut rng);
                prop_assert_eq!(twos.pick(&list, &flow()), expected);
                prop_assert_eq!(walking.pick(&list, &flow()), expected);
            }
        }

        /// Load changes need no notification; a pick is still the
        /// reference's, on the current loads.
        #[test]
        fn loads_are_read_at_pick_time(
            list in servers(),
            loads in prop::collection::vec((any::<prop::sample::Index>(), 0u32..50), 1..20),
            seed in any::<u64>(),
        ) {
            let mut list = list;
            let mut twos = Twos::new(seed);
            twos.update(&list);
            let mut rng = XorShift64Star::new(seed);
            for (at, active) in loads {
                if !list.is_empty() {
                    let len = list.len();
                    list[at.index(len)].active = active;
                }
                prop_assert_eq!(twos.pick(&list, &flow()), reference(&list, &mut rng));
            }
        }
    }
}
