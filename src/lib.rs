//! rvs: a layer-4 load balancer (an LVS director) on a DPDK data plane.

pub mod addr;
pub mod adm;
pub mod config;
pub mod conn;
pub mod control;
pub mod counters;
pub mod dpdk;
pub mod neigh;
pub mod pcap;
pub mod pipeline;
pub mod sched;
pub mod snapshot;
pub mod stats;
pub mod web;
pub mod wire;
pub mod worker;
