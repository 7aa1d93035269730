//! Weighted overflow (`ovf`), as IPVS's `ip_vs_ovf.c`.
//!
//! The weight is read as a connection budget. A server is eligible while
//! its weight is positive and its active connections do not exceed it,
//!
//! ```text
//! eligible(i) = weight(i) > 0  and  active(i) <= weight(i)
//! ```
//!
//! and each new connection goes to the eligible server with the highest
//! weight, the first in list order among equals. So the heaviest server
//! fills up first; once its active count has gone past its weight, traffic
//! overflows to the next heaviest, and so on. Note the kernel's bound is
//! inclusive: a server already holding exactly `weight` active connections
//! is still chosen (and so reaches `weight + 1`). When every server is over
//! budget there is no eligible server and the result is `None`, as in the
//! kernel (the connection is refused rather than overloading anyone).
//! Inactive connections are ignored.
//!
//! Cost: one pass over the list, O(n); no state.

use super::{FlowInfo, Scheduler, ServerLoad};

/// The `ovf` scheduler. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct WeightedOverflow;

impl WeightedOverflow {
    pub fn new() -> Self {
        Self
    }
}

impl Scheduler for WeightedOverflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn pick(&mut self, servers: &[ServerLoad], _flow: &FlowInfo) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut highest = 0u32;
        for (index, server) in servers.iter().enumerate() {
            if server.weight == 0 || server.active > server.weight {
                continue;
            }
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
        WeightedOverflow::new().pick(servers, &flow())
    }

    #[test]
    fn the_heaviest_fills_first_then_overflows() {
        let mut list = [server(2, 0, 0), server(5, 0, 0), server(3, 0, 0)];
        assert_eq!(pick(&list), Some(1));
        // At its budget (5 of 5): still chosen, the bound is inclusive.
        list[1].active = 5;
        assert_eq!(pick(&list), Some(1));
        // Past it: the next heaviest.
        list[1].active = 6;
        assert_eq!(pick(&list), Some(2));
        list[2].active = 4;
        assert_eq!(pick(&list), Some(0));
        // Everybody over budget: nobody.
        list[0].active = 3;
        assert_eq!(pick(&list), None);
    }

    #[test]
    fn inactive_connections_are_ignored() {
        assert_eq!(pick(&[server(1, 1, 1000), server(1, 0, 0)]), Some(0));
    }

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(
            pick(&[server(1, 0, 0), server(4, 4, 0), server(4, 0, 0)]),
            Some(1)
        );
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        assert_eq!(pick(&[server(0, 0, 0), server(1, 1, 0)]), Some(1));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[server(0, 0, 0)]), None);
        assert_eq!(WeightedOverflow::new().name(), "ovf");
    }

    /// Among servers with 0 < weight and active <= weight, the first of
    /// the highest weight.
    fn reference(servers: &[ServerLoad]) -> Option<usize> {
        let eligible = |s: &ServerLoad| s.weight > 0 && s.active <= s.weight;
        let max = servers
            .iter()
            .filter(|s| eligible(s))
            .map(|s| s.weight)
            .max()?;
        servers.iter().position(|s| eligible(s) && s.weight == max)
    }

    proptest! {
        #[test]
        fn matches_reference(list in servers()) {
            prop_assert_eq!(pick(&list), reference(&list));
        }
    }
}
