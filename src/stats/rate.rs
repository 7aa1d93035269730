//! The IPVS rate estimator (`net/netfilter/ipvs/ip_vs_est.c`), with time as
//! a parameter.
//!
//! # The maths
//!
//! Every [`SAMPLE_INTERVAL`] (2 s) the estimator takes the increase `Δ` of
//! each cumulative counter since the previous sample and folds the rate it
//! implies into an exponentially weighted moving average with weight
//! `W = 1/4`:
//!
//! ```text
//! avg ← avg + (rate − avg) · W        i.e.  avg ← ¾·avg + ¼·rate
//! ```
//!
//! A sample's weight decays by ¾ per interval, so the average reflects about
//! the last four samples (1/W intervals, ≈ 8 s); after n intervals of a
//! constant rate it has covered `1 − (¾)ⁿ` of a step.
//!
//! The kernel keeps the averages in fixed point, and so does this code, bit
//! for bit:
//!
//! - connections and packets per second are scaled by 2¹⁰. `Δ` counted over
//!   2 s is `Δ/2` per second, so the scaled rate is `Δ << 9`;
//! - bytes per second are scaled by 2⁵: the scaled rate is `Δ << 4`;
//! - the update is `avg += (rate − avg) >> 2` on signed 64-bit values. The
//!   arithmetic shift rounds towards −∞: a rising average stops up to 3
//!   units (of 2⁻¹⁰ or 2⁻⁵) short of a constant rate, a falling one reaches
//!   exactly 0;
//! - reading rounds to the nearest unit, halves down:
//!   `cps = (avg + 0x1FF) >> 10`, `bps = (avg + 0xF) >> 5`.
//!
//! So a steady 1 connection per second reads 0, 0, 1, 1, … after 1, 2, 3, 4
//! samples (scaled averages 256, 448, 592, 700, … stopping at 1021), and a
//! steady ½ per second reads 0 for ever (512 rounds down).
//!
//! # Sampling off the beat
//!
//! The kernel's timer fires every 2 s. Here [`RateEstimator::sample`] is
//! called with the current time whenever the caller likes: a call before
//! the next 2 s boundary does nothing; a call `k` intervals late runs `k`
//! update steps (at most [`MAX_CATCH_UP_STEPS`]: by then (¾)⁶⁴ < 10⁻⁸ of the
//! old average is left) and shares the counters' increase evenly among
//! them, as if the traffic had been steady. Boundaries stay on the 2 s grid
//! of the estimator's start.
//!
//! # Zeroing
//!
//! `ipvsadm -Z` does not reset the kernel's counters: it records their
//! current values as the zero point (what listings subtract), restarts the
//! estimator from them and clears the averages. [`StatsTracker`] does the
//! same.

use crate::conn::Millis;
use serde::{Deserialize, Serialize};

/// How often the kernel samples the counters.
pub const SAMPLE_INTERVAL: Millis = 2_000;

/// Upper bound on update steps run by one late [`RateEstimator::sample`].
pub const MAX_CATCH_UP_STEPS: u64 = 64;

/// Cumulative traffic counters of a service or a real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets from clients.
    pub inpkts: u64,
    /// Packets from real servers.
    pub outpkts: u64,
    /// Bytes from clients (whole IP packets).
    pub inbytes: u64,
    /// Bytes from real servers.
    pub outbytes: u64,
}

impl Counters {
    /// `self − earlier`, field by field; a field that went down gives 0
    /// (counters only grow, but a bad reading must not produce a huge rate).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            conns: self.conns.saturating_sub(earlier.conns),
            inpkts: self.inpkts.saturating_sub(earlier.inpkts),
            outpkts: self.outpkts.saturating_sub(earlier.outpkts),
            inbytes: self.inbytes.saturating_sub(earlier.inbytes),
            outbytes: self.outbytes.saturating_sub(earlier.outbytes),
        }
    }
}

/// Rates as `ipvsadm --rate` shows them: per second, rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second from clients.
    pub inpps: u64,
    /// Packets per second from real servers.
    pub outpps: u64,
    /// Bytes per second from clients.
    pub inbps: u64,
    /// Bytes per second from real servers.
    pub outbps: u64,
}

/// One fixed-point moving average; `shift` converts a 2 s increase into the
/// scaled per-second rate (9 for ×2¹⁰/2, 4 for ×2⁵/2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Average {
    scaled: u64,
}

impl Average {
    /// `avg += (rate − avg) >> 2` in the kernel's signed 64-bit arithmetic.
    fn update(&mut self, increase: u64, shift: u32) {
        let rate = increase.wrapping_shl(shift) as i64;
        let step = rate.wrapping_sub(self.scaled as i64) >> 2;
        self.scaled = self.scaled.wrapping_add(step as u64);
    }

    /// Per-second value rounded as the kernel's `ip_vs_read_estimator`.
    fn read(self, fraction_bits: u32) -> u64 {
        let half_down = (1u64 << (fraction_bits - 1)) - 1;
        self.scaled.wrapping_add(half_down) >> fraction_bits
    }
}

const PACKET_SHIFT: u32 = 9;
const PACKET_FRACTION_BITS: u32 = 10;
const BYTE_SHIFT: u32 = 4;
const BYTE_FRACTION_BITS: u32 = 5;

/// The estimator of one service or real server. See the module
/// documentation for the maths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateEstimator {
    last: Counters,
    next_sample_at: Millis,
    cps: Average,
    inpps: Average,
    outpps: Average,
    inbps: Average,
    outbps: Average,
}

impl RateEstimator {
    /// An estimator whose first sample is due one interval after `now`,
    /// measuring increases from `totals`; all rates read 0.
    pub fn new(totals: &Counters, now: Millis) -> RateEstimator {
        RateEstimator {
            last: *totals,
            next_sample_at: now.saturating_add(SAMPLE_INTERVAL),
            cps: Average::default(),
            inpps: Average::default(),
            outpps: Average::default(),
            inbps: Average::default(),
            outbps: Average::default(),
        }
    }

    /// Feeds the current cumulative `totals` at time `now`: runs one update
    /// step per 2 s boundary passed since the last step (none if no
    /// boundary was passed). Returns the number of steps run.
    pub fn sample(&mut self, totals: &Counters, now: Millis) -> u64 {
        if now < self.next_sample_at {
            return 0;
        }
        let intervals = (now - self.next_sample_at) / SAMPLE_INTERVAL + 1;
        self.next_sample_at = self
            .next_sample_at
            .saturating_add(intervals.saturating_mul(SAMPLE_INTERVAL));
        let increase = totals.since(&self.last);
        self.last = *totals;
        let steps = intervals.min(MAX_CATCH_UP_STEPS);
        for step in 0..steps {
            let share = |total: u64| {
                let each = total / steps;
                // The remainder goes to the newest step.
                if step + 1 == steps {
                    each + total % steps
                } else {
                    each
                }
            };
            self.cps.update(share(increase.conns), PACKET_SHIFT);
            self.inpps.update(share(increase.inpkts), PACKET_SHIFT);
            self.outpps.update(share(increase.outpkts), PACKET_SHIFT);
            self.inbps.update(share(increase.inbytes), BYTE_SHIFT);
            self.outbps.update(share(increase.outbytes), BYTE_SHIFT);
        }
        steps
    }

    /// The current rates, rounded as the kernel reads them.
    pub fn rates(&self) -> Rates {
        Rates {
            cps: self.cps.read(PACKET_FRACTION_BITS),
            inpps: self.inpps.read(PACKET_FRACTION_BITS),
            outpps: self.outpps.read(PACKET_FRACTION_BITS),
            inbps: self.inbps.read(BYTE_FRACTION_BITS),
            outbps: self.outbps.read(BYTE_FRACTION_BITS),
        }
    }

    /// Restarts from `totals` with every average at 0, keeping the 2 s grid
    /// (the kernel's `ip_vs_zero_estimator`).
    pub fn zero(&mut self, totals: &Counters) {
        *self = RateEstimator {
            next_sample_at: self.next_sample_at,
            ..RateEstimator::new(totals, 0)
        };
    }
}

/// Counters as listings show them (relative to the last `-Z`) plus their
/// rates, for one service or real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsTracker {
    zero_point: Counters,
    estimator: RateEstimator,
}

impl StatsTracker {
    /// Starts counting from `totals` (shown as all zero) at `now`.
    pub fn new(totals: &Counters, now: Millis) -> StatsTracker {
        StatsTracker {
            zero_point: *totals,
            estimator: RateEstimator::new(totals, now),
        }
    }

    /// Feeds the cumulative totals; see [`RateEstimator::sample`].
    pub fn sample(&mut self, totals: &Counters, now: Millis) -> u64 {
        self.estimator.sample(totals, now)
    }

    /// `-Z`: the counters show 0 from `totals` on and the rates restart.
    pub fn zero(&mut self, totals: &Counters) {
        self.zero_point = *totals;
        self.estimator.zero(totals);
    }

    /// The counters to show for cumulative `totals`.
    pub fn shown(&self, totals: &Counters) -> Counters {
        totals.since(&self.zero_point)
    }

    pub fn rates(&self) -> Rates {
        self.estimator.rates()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(n: u64) -> Counters {
        Counters {
            conns: n,
            ..Counters::default()
        }
    }

    /// Samples exactly on the 2 s grid with `per_interval` added each time;
    /// returns the cps read after each sample.
    fn cps_series(per_interval: u64, samples: u64) -> Vec<u64> {
        let mut est = RateEstimator::new(&conns(0), 0);
        (1..=samples)
            .map(|i| {
                assert_eq!(est.sample(&conns(per_interval * i), i * SAMPLE_INTERVAL), 1);
                est.rates().cps
            })
            .collect()
    }

    #[test]
    fn one_per_second_reads_one_from_the_third_sample() {
        // Scaled averages 256, 448, 592, 700: (avg + 511) >> 10 = 0, 0, 1, 1.
        assert_eq!(cps_series(2, 6), vec![0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn rising_average_stops_three_units_short() {
        let mut est = RateEstimator::new(&conns(0), 0);
        for i in 1..=100 {
            est.sample(&conns(2 * i), i * SAMPLE_INTERVAL);
        }
        // 1 cps = 1024 scaled; (1024 − avg) >> 2 is 0 once the gap is 3.
        assert_eq!(est.cps.scaled, 1021);
        assert_eq!(est.rates().cps, 1);
    }

    #[test]
    fn half_a_connection_per_second_rounds_down_to_zero() {
        let series = cps_series(1, 40);
        assert!(series.iter().all(|&cps| cps == 0), "{series:?}");
    }

    #[test]
    fn falling_average_reaches_exactly_zero() {
        let mut est = RateEstimator::new(&conns(0), 0);
        for i in 1..=50 {
            est.sample(&conns(2000 * i), i * SAMPLE_INTERVAL);
        }
        assert_eq!(est.rates().cps, 1000);
        let mut t = 50;
        // Arithmetic shift floors: (−1) >> 2 = −1, so the last unit goes too.
        while est.cps.scaled != 0 {
            t += 1;
            assert!(t < 200, "did not decay to 0");
            est.sample(&conns(2000 * 50), t * SAMPLE_INTERVAL);
        }
        assert_eq!(est.rates().cps, 0);
    }

    #[test]
    fn converges_to_constant_rates_of_every_kind() {
        // 1000 conn/s, 50000 pkt/s in, 40000 out, 60 MB/s in, 3 GB/s out.
        let per_interval = Counters {
            conns: 2_000,
            inpkts: 100_000,
            outpkts: 80_000,
            inbytes: 120_000_000,
            outbytes: 6_000_000_000,
        };
        let mut est = RateEstimator::new(&Counters::default(), 5);
        for i in 1..=120u64 {
            let totals = Counters {
                conns: per_interval.conns * i,
                inpkts: per_interval.inpkts * i,
                outpkts: per_interval.outpkts * i,
                inbytes: per_interval.inbytes * i,
                outbytes: per_interval.outbytes * i,
            };
            est.sample(&totals, 5 + i * SAMPLE_INTERVAL);
        }
        // Each average stops at most 3 scaled units below the exact value,
        // which rounds back up to it.
        assert_eq!(
            est.rates(),
            Rates {
                cps: 1_000,
                inpps: 50_000,
                outpps: 40_000,
                inbps: 60_000_000,
                outbps: 3_000_000_000,
            }
        );
    }

    #[test]
    fn eight_seconds_cover_most_of_a_step() {
        // 4 samples: 1 − (3/4)^4 ≈ 68 % of 1000 cps.
        let series = cps_series(2000, 4);
        // 437.5 reads 437: halves round down.
        assert_eq!(series, vec![250, 437, 578, 684]);
    }

    #[test]
    fn bytes_round_half_down_in_units_of_two_to_the_minus_five() {
        let mut est = RateEstimator::new(&Counters::default(), 0);
        // 2 bytes in 2 s: scaled rate 2 << 4 = 32 (1.0 B/s); first step 8.
        est.sample(
            &Counters {
                inbytes: 2,
                ..Counters::default()
            },
            SAMPLE_INTERVAL,
        );
        assert_eq!(est.inbps.scaled, 8);
        // (8 + 15) >> 5 = 0.
        assert_eq!(est.rates().inbps, 0);
        est.sample(
            &Counters {
                inbytes: 4,
                ..Counters::default()
            },
            2 * SAMPLE_INTERVAL,
        );
        // 8 + (32 − 8) >> 2 = 14; (14 + 15) >> 5 = 0; third: 14 + 4 = 18 → 1.
        assert_eq!(est.inbps.scaled, 14);
        est.sample(
            &Counters {
                inbytes: 6,
                ..Counters::default()
            },
            3 * SAMPLE_INTERVAL,
        );
        assert_eq!(est.inbps.scaled, 18);
        assert_eq!(est.rates().inbps, 1);
    }

    #[test]
    fn samples_between_boundaries_do_nothing() {
        let mut est = RateEstimator::new(&conns(0), 1_000);
        assert_eq!(est.sample(&conns(10), 1_000), 0);
        assert_eq!(est.sample(&conns(10), 2_999), 0);
        assert_eq!(est.rates(), Rates::default());
        // The increase since the start is all counted at the boundary.
        assert_eq!(est.sample(&conns(10), 3_000), 1);
        assert_eq!(est.cps.scaled, (10 << 9) / 4);
        // The next boundary is 5000, not 3000 + 2000 from a late call.
        assert_eq!(est.sample(&conns(10), 4_999), 0);
        assert_eq!(est.sample(&conns(10), 5_000), 1);
    }

    #[test]
    fn a_late_sample_runs_one_step_per_missed_interval() {
        let mut on_time = RateEstimator::new(&conns(0), 0);
        for i in 1..=3 {
            on_time.sample(&conns(6 * i), i * SAMPLE_INTERVAL);
        }
        let mut late = RateEstimator::new(&conns(0), 0);
        // 3 intervals at once, 18 connections shared 6 + 6 + 6.
        assert_eq!(late.sample(&conns(18), 3 * SAMPLE_INTERVAL + 500), 3);
        assert_eq!(late.rates(), on_time.rates());
        assert_eq!(late.cps, on_time.cps);
        // Still on the grid: next boundary at 8000.
        assert_eq!(late.sample(&conns(18), 7_999), 0);
        assert_eq!(late.sample(&conns(18), 8_000), 1);
    }

    #[test]
    fn a_very_late_sample_is_bounded() {
        let mut est = RateEstimator::new(&conns(0), 0);
        let steps = est.sample(&conns(u64::MAX), u64::MAX / 2);
        assert_eq!(steps, MAX_CATCH_UP_STEPS);
        // No panic, and later calls still work.
        assert_eq!(est.sample(&conns(u64::MAX), u64::MAX / 2), 0);
    }

    #[test]
    fn counters_going_backwards_count_as_no_traffic() {
        let mut est = RateEstimator::new(&conns(100), 0);
        est.sample(&conns(50), SAMPLE_INTERVAL);
        assert_eq!(est.rates(), Rates::default());
    }

    #[test]
    fn zero_restarts_rates_and_counts_from_the_current_totals() {
        let mut stats = StatsTracker::new(&conns(7), 0);
        for i in 1..=40 {
            stats.sample(&conns(7 + 200 * i), i * SAMPLE_INTERVAL);
        }
        assert_eq!(stats.shown(&conns(8007)).conns, 8000);
        assert_eq!(stats.rates().cps, 100);
        stats.zero(&conns(8007));
        assert_eq!(stats.shown(&conns(8007)), Counters::default());
        assert_eq!(stats.rates(), Rates::default());
        // Off-grid time: the next step still happens at 82 s.
        assert_eq!(stats.sample(&conns(8207), 81_000), 0);
        assert_eq!(stats.sample(&conns(8207), 82_000), 1);
        assert_eq!(stats.shown(&conns(8207)).conns, 200);
        // First step from 0 towards 100 cps: 102400 / 4 → reads 25.
        assert_eq!(stats.rates().cps, 25);
    }
}
