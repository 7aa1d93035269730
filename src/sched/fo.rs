//! Weighted failover (`fo`), as IPVS's `ip_vs_fo.c`.
//!
//! Every new connection goes to the available server with the highest
//! weight,
//!
//! ```text
//! argmax weight(i)  over weight(i) > 0
//! ```
//!
//! and, among servers of equal highest weight, to the first in list order
//! (the kernel replaces its choice only on a strictly higher weight).
//! Connection counts are ignored: the others stand by until the operator
//! lowers the leader's weight (to 0 to take it out), which is how failover
//! is driven.
//!
//! Cost: one pass over the list, O(n); no state.

use super::{FlowInfo, Scheduler, ServerLoad};

/// The `fo` scheduler. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct WeightedFailover;

impl WeightedFailover {
    pub fn new() -> Self {
        Self
    }
}

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn pick(&mut self, servers: &[ServerLoad], _flow: &FlowInfo) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut highest = 0u32;
        for (index, server) in servers.iter().enumerate() {
            if server.weight > highest {
                highest = server.weight;
                best = Some(index);
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
        WeightedFailover::new().pick(servers, &flow())
    }

    #[test]
    fn the_heaviest_server_takes_everything() {
        assert_eq!(
            pick(&[server(1, 0, 0), server(5, 1000, 1000), server(3, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(
            pick(&[server(2, 0, 0), server(7, 9, 0), server(7, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        assert_eq!(pick(&[server(0, 0, 0), server(1, 9, 9)]), Some(1));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0), server(0, 0, 0)]), None);
        assert_eq!(WeightedFailover::new().name(), "fo");
    }

    /// The first index holding the maximum positive weight.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        let max = servers.iter().map(|s| s.weight).max().filter(|&w| w > 0)?;
        servers.iter().position(|s| s.weight == max)
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
