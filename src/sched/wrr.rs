//! Weighted round robin (`wrr`), as IPVS's `ip_vs_wrr.c`.
//!
//! Servers take turns in list order, but a server of weight `w` gets
//! `w / g` turns per cycle, where `g` is the greatest common divisor of the
//! positive weights. Weights 4:3:2 give the cycle `A A B A B C A B C`.
//!
//! # Algorithm
//!
//! A cycle is a series of passes over the list, each with a weight
//! threshold `t`; a pass offers a turn to every server with `weight >= t`.
//! The thresholds step down by `g` from a top value `T` to 1:
//!
//! ```text
//! T = max_weight - (g - 1)
//! t = T, T - g, T - 2g, ..., 1        (max_weight / g passes)
//! ```
//!
//! Since every positive weight is a multiple of `g`, server `i` meets
//! `w_i / g` of these thresholds, so a cycle has `sum(w_i) / g` turns. (The
//! kernel ends at 1 rather than `g` so that a weight lowered below `g`
//! mid-cycle is still reached; the number of passes is the same.)
//!
//! The state is the index `c` of the server chosen last, the threshold `t`,
//! and `g` and `T`. A pick scans forward from `c + 1` for the first server
//! with `weight >= t`; at the end of the list it lowers `t` by `g` (back to
//! `T` once it would reach 0) and scans again from the first server. The
//! heaviest server meets every threshold, so the second scan always finds
//! one: a pick costs O(n) at worst, and amortised over a cycle at most n
//! server visits.
//!
//! Weight-0 servers never meet a threshold (`t >= 1`). With no positive
//! weight `T` is 0 and every pick returns `None`.
//!
//! # Configuration changes
//!
//! [`update`] does what the kernel does on every destination add, delete
//! or edit: recompute `g` and `T`, move `c` back before the first server,
//! and keep `t` where possible: a `t` above the new `T`, or 0, becomes `T`;
//! otherwise, when `g > 1`, `t` moves to `floor(t / g) * g + 1`, the
//! threshold of the same pass in the new step pattern (all thresholds are
//! 1 more than a multiple of `g`).
//!
//! `update` must be called after every change to the list or a weight.
//! As a safety net a pick calls it itself if the list length differs from
//! the one last seen, and if a full scan finds no server (impossible while
//! the state matches the weights, so the weights changed behind its back).
//! That keeps every pick O(n) even when the worker forgets, though the
//! sequence then only matches the kernel from the resynchronisation on.
//!
//! [`update`]: super::Scheduler::update

use super::{FlowInfo, Scheduler, ServerLoad};

/// The `wrr` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct WeightedRoundRobin {
    /// Index of the server chosen last; `None` means before the first one.
    last_chosen: Option<usize>,
    /// Weight a server needs to get a turn in the current pass (`t`).
    threshold: u32,
    /// Threshold of a cycle's first pass (`T`); 0 when nothing is available.
    top_threshold: u32,
    /// How far the threshold drops per pass (`g`, never 0).
    step: u32,
    /// `servers.len()` at the last update, to notice a missed one.
    configured_len: usize,
}

impl Default for WeightedRoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl WeightedRoundRobin {
    /// A scheduler for a service with no servers yet; call
    /// [`Scheduler::update`] with the servers before the first pick.
    pub fn new() -> Self {
        Self {
            last_chosen: None,
            threshold: 0,
            top_threshold: 0,
            step: 1,
            configured_len: 0,
        }
    }

    /// Index of the first server at or after `from` whose weight meets the
    /// current threshold.
    fn first_meeting_threshold(&self, servers: &[ServerLoad], from: usize) -> Option<usize> {
        let threshold = self.threshold;
        servers
            .get(from..)?
            .iter()
            .position(|server| server.weight >= threshold)
            .map(|offset| from + offset)
    }

    /// Moves on to the next pass: one step down, or back to the top after
    /// the last pass (the one at threshold 1).
    fn lower_threshold(&mut self) {
        if self.threshold > self.step {
            self.threshold -= self.step;
        } else {
            self.threshold = self.top_threshold;
        }
    }
}

fn greatest_common_divisor(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn pick(&mut self, servers: &[ServerLoad], _flow: &FlowInfo) -> Option<usize> {
        if servers.len() != self.configured_len {
            self.update(servers);
        }
        if self.top_threshold == 0 {
            return None;
        }
        let mut from = self.last_chosen.map_or(0, |last| last.saturating_add(1));
        let mut resynchronised = false;
        loop {
            if let Some(chosen) = self.first_meeting_threshold(servers, from) {
                self.last_chosen = Some(chosen);
                return Some(chosen);
            }
            if from != 0 {
                // End of the list: next pass, from the first server.
                self.lower_threshold();
                from = 0;
            } else if !resynchronised {
                // A whole pass without a turn: the heaviest server would
                // have had one, so the weights changed without an update.
                self.update(servers);
                resynchronised = true;
                if self.top_threshold == 0 {
                    return None;
                }
            } else {
                // Unreachable: after an update the heaviest server qualifies.
                return None;
            }
        }
    }

    fn update(&mut self, servers: &[ServerLoad]) {
        let positive_weights = servers.iter().map(|s| s.weight).filter(|&w| w > 0);
        let step = positive_weights
            .clone()
            .fold(0, greatest_common_divisor)
            .max(1);
        let max_weight = positive_weights.max().unwrap_or(0);
        // `step` divides `max_weight` (or both are trivial), so no underflow:
        // the top is at least 1 whenever some weight is positive.
        let top_threshold = max_weight - (step - 1);

        self.last_chosen = None;
        self.step = step;
        self.top_threshold = top_threshold;
        if self.threshold == 0 || self.threshold > top_threshold {
            self.threshold = top_threshold;
        } else if step > 1 {
            // Stay in the same pass, on the new pattern's threshold for it.
            self.threshold = self.threshold / step * step + 1;
        }
        self.configured_len = servers.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, weight, weighted};
    use proptest::prelude::*;

    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;

    fn configured(weights: &[u32]) -> (WeightedRoundRobin, Vec<ServerLoad>) {
        let servers = weighted(weights);
        let mut wrr = WeightedRoundRobin::new();
        wrr.update(&servers);
        (wrr, servers)
    }

    fn picks(wrr: &mut WeightedRoundRobin, servers: &[ServerLoad], count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| wrr.pick(servers, &flow()).expect("a server is available"))
            .collect()
    }

    #[test]
    fn four_three_two() {
        let (mut wrr, servers) = configured(&[4, 3, 2]);
        let cycle = [A, A, B, A, B, C, A, B, C];
        assert_eq!(picks(&mut wrr, &servers, 9), cycle);
        assert_eq!(picks(&mut wrr, &servers, 9), cycle);
    }

    #[test]
    fn three_to_one_gives_three_of_four_turns_to_the_first() {
        let (mut wrr, servers) = configured(&[3, 1]);
        for _ in 0..3 {
            assert_eq!(picks(&mut wrr, &servers, 4), [A, A, A, B]);
        }
    }

    #[test]
    fn common_divisor_above_one() {
        // g = 2, T = 3: passes at thresholds 3 and 1.
        let (mut wrr, servers) = configured(&[4, 2]);
        assert_eq!(picks(&mut wrr, &servers, 6), [A, A, B, A, A, B]);
        // g = 2, like 3:2:1.
        let (mut wrr, servers) = configured(&[6, 4, 2]);
        assert_eq!(picks(&mut wrr, &servers, 6), [A, A, B, A, B, C]);
        // Equal weights degenerate to round robin.
        let (mut wrr, servers) = configured(&[5, 5, 5]);
        assert_eq!(picks(&mut wrr, &servers, 6), [A, B, C, A, B, C]);
    }

    #[test]
    fn weight_zero_is_skipped() {
        let (mut wrr, servers) = configured(&[2, 0, 1]);
        assert_eq!(picks(&mut wrr, &servers, 6), [A, A, C, A, A, C]);
    }

    #[test]
    fn nothing_available_gives_none() {
        let mut wrr = WeightedRoundRobin::new();
        assert_eq!(wrr.pick(&[], &flow()), None);
        let (mut wrr, idle) = configured(&[0, 0]);
        assert_eq!(wrr.pick(&idle, &flow()), None);
        // Weights raised later: scheduling resumes after the update.
        let servers = weighted(&[0, 2]);
        wrr.update(&servers);
        assert_eq!(picks(&mut wrr, &servers, 2), [B, B]);
        wrr.update(&idle);
        assert_eq!(wrr.pick(&idle, &flow()), None);
    }

    #[test]
    fn weight_change_restarts_from_the_first_server() {
        let (mut wrr, servers) = configured(&[4, 3, 2]);
        assert_eq!(picks(&mut wrr, &servers, 2), [A, A]);
        // Threshold 3 is above the new top 1, so it becomes 1.
        let servers = weighted(&[1, 1, 1]);
        wrr.update(&servers);
        assert_eq!(picks(&mut wrr, &servers, 6), [A, B, C, A, B, C]);
    }

    #[test]
    fn weight_change_keeps_the_pass_on_the_new_step_pattern() {
        let (mut wrr, servers) = configured(&[4, 3, 2]);
        // After A A B A the pass has threshold 2.
        assert_eq!(picks(&mut wrr, &servers, 4), [A, A, B, A]);
        // New g = 2, T = 3: threshold 2 becomes 2/2*2+1 = 3, scan from A.
        let servers = weighted(&[4, 2, 2]);
        wrr.update(&servers);
        assert_eq!(picks(&mut wrr, &servers, 8), [A, A, B, C, A, A, B, C]);
    }

    #[test]
    fn works_without_an_explicit_first_update() {
        let servers = weighted(&[4, 3, 2]);
        let mut wrr = WeightedRoundRobin::new();
        assert_eq!(picks(&mut wrr, &servers, 9), [A, A, B, A, B, C, A, B, C]);
    }

    #[test]
    fn length_change_without_update_resynchronises() {
        let (mut wrr, servers) = configured(&[1, 1]);
        assert_eq!(picks(&mut wrr, &servers, 1), [A]);
        // As the kernel would after adding C and editing weights: threshold
        // 1 is kept, so this cycle finishes with its last pass first.
        let grown = weighted(&[4, 3, 2]);
        assert_eq!(picks(&mut wrr, &grown, 3), [A, B, C]);
        assert_eq!(picks(&mut wrr, &grown, 9), [A, A, B, A, B, C, A, B, C]);
    }

    #[test]
    fn stale_weights_recover_in_one_pick() {
        // Thresholds 65535, 65534, ...: without the resynchronisation this
        // would take 65535 passes to reach the server of weight 1.
        let (mut wrr, _) = configured(&[65535, 1]);
        let drained = weighted(&[0, 1]);
        assert_eq!(picks(&mut wrr, &drained, 3), [B, B, B]);
        let (mut wrr, _) = configured(&[5, 4]);
        assert_eq!(wrr.pick(&weighted(&[0, 0]), &flow()), None);
    }

    /// The kernel's scheduling loop transcribed literally, with its signed
    /// arithmetic and its guards against weights changing mid-scan, and its
    /// list head modelled as `None`.
    #[derive(Debug)]
    struct KernelModel {
        cursor: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl KernelModel {
        /// A service created empty.
        fn new() -> Self {
            KernelModel {
                cursor: None,
                cw: 0,
                mw: 0,
                di: 1,
            }
        }

        fn dest_changed(&mut self, weights: &[u32]) {
            let mut g = 0i64;
            for &w in weights {
                let w = i64::from(w);
                if w > 0 {
                    g = if g > 0 { gcd(w, g) } else { w };
                }
            }
            let max = weights.iter().map(|&w| i64::from(w)).max().unwrap_or(0);
            self.cursor = None;
            self.di = if g > 0 { g } else { 1 };
            self.mw = max - (self.di - 1);
            if self.cw > self.mw || self.cw == 0 {
                self.cw = self.mw;
            } else if self.di > 1 {
                self.cw = (self.cw / self.di) * self.di + 1;
            }
        }

        fn schedule(&mut self, weights: &[u32]) -> Option<usize> {
            if self.mw == 0 {
                return None;
            }
            let last = self.cursor;
            let mut dest = self.cursor;
            let mut stop = None;
            let (mut last_pass, mut restarted) = (false, false);
            loop {
                let first = dest.map_or(0, |d| d + 1);
                for (i, &w) in weights.iter().enumerate().skip(first) {
                    if i64::from(w) >= self.cw {
                        self.cursor = Some(i);
                        return Some(i);
                    }
                    if stop == Some(i) {
                        self.cursor = Some(i);
                        return None;
                    }
                }
                dest = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cursor = None;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    fn weight_list() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(weight(), 0..7)
    }

    proptest! {
        /// Same choices as the kernel loop, across configuration changes
        /// (each followed by an update, as the worker must do).
        #[test]
        fn matches_the_kernel_loop(
            configurations in prop::collection::vec((weight_list(), 0usize..40), 1..6),
        ) {
            let mut wrr = WeightedRoundRobin::new();
            let mut kernel = KernelModel::new();
            for (weights, pick_count) in &configurations {
                let servers = weighted(weights);
                wrr.update(&servers);
                kernel.dest_changed(weights);
                for n in 0..*pick_count {
                    let expected = kernel.schedule(weights);
                    prop_assert_eq!(wrr.pick(&servers, &flow()), expected, "pick {} of {:?}", n, weights);
                }
            }
        }

        /// A cycle of sum(w)/g turns gives each server exactly w/g of them,
        /// and the next cycle repeats it.
        #[test]
        fn cycle_shares_are_proportional(
            (scale, base) in (1u32..=8, prop::collection::vec(0u32..=16, 1..7)),
        ) {
            // Scaling makes common divisors above 1 frequent.
            let weights: Vec<u32> = base.iter().map(|&w| w * scale).collect();
            let (mut wrr, servers) = configured(&weights);
            let g = weights.iter().copied().fold(0, greatest_common_divisor);
            if g == 0 {
                prop_assert_eq!(wrr.pick(&servers, &flow()), None);
                return Ok(());
            }
            let cycle_len = weights.iter().map(|&w| (w / g) as usize).sum::<usize>();
            let first = picks(&mut wrr, &servers, cycle_len);
            for (index, &w) in weights.iter().enumerate() {
                let turns = first.iter().filter(|&&chosen| chosen == index).count();
                prop_assert_eq!(turns, (w / g) as usize);
            }
            prop_assert_eq!(picks(&mut wrr, &servers, cycle_len), first);
        }
    }
}
