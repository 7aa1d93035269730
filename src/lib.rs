//! rvs: a layer-4 load balancer (an LVS director) on a DPDK data plane.

pub mod addr;
pub mod dpdk;
pub mod sched;
