//! Traffic statistics as IPVS keeps them: cumulative counters per service
//! and per real server, with a zero point for `ipvsadm -Z`, and rates from
//! the kernel's estimator ([`rate`]).

pub mod rate;

pub use rate::{Counters, RateEstimator, Rates, StatsTracker, SAMPLE_INTERVAL};
