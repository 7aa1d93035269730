//! Real-server schedulers: small plug-ins behind one trait, one file each.
//!
//! A scheduler instance belongs to one worker and one service. It sees the
//! service's servers as a slice of [`ServerLoad`] (weight and this worker's
//! connection counts) and returns the index of the chosen server, or `None`
//! when no server may take new connections (all weights 0). Picks happen on
//! the packet path: they must not allocate, lock or panic.
//!
//! Each scheduler reproduces the choices of its Linux counterpart
//! (`net/netfilter/ipvs/ip_vs_*.c`), tie-breaking included; the rule is in
//! each file's documentation.
//!
//! # Cost
//!
//! The kernel's `lc`, `wlc`, `sed`, `nq`, `fo`, `ovf` and `twos`, and the
//! overload test and `wlc` step of `lblc`/`lblcr`, walk every server on
//! every pick. None of them does here. The schedulers that choose "the
//! best server by some order" keep the servers in a tournament tree
//! (`tree.rs`: 2 × n nodes rounded up to a power of two, allocated by
//! `update`) that [`Scheduler::load_changed`] replays along one
//! leaf-to-root path. `n` is the number of servers of the service, `M` the
//! Maglev table size.
//!
//! | name    | type                        | chooses                                          | pick         | `update`   | `load_changed` |
//! |---------|-----------------------------|--------------------------------------------------|--------------|------------|----------------|
//! | `rr`    | [`RoundRobin`]              | the next available server after the last one     | O(1) (a)     | none       | none           |
//! | `wrr`   | [`WeightedRoundRobin`]      | in turn, `weight / gcd` turns each per cycle     | O(1)–O(n) (a) | O(n)      | none           |
//! | `lc`    | [`LeastConnection`]         | least [`ServerLoad::overhead`]                   | O(1)         | O(n)       | O(log n)       |
//! | `wlc`   | [`WeightedLeastConnection`] | least `overhead / weight`                        | O(1)         | O(n)       | O(log n)       |
//! | `sed`   | [`ShortestExpectedDelay`]   | least `(active + 1) / weight`                    | O(1)         | O(n)       | O(log n)       |
//! | `nq`    | [`NeverQueue`]              | the first idle server, else as `sed`             | O(1)         | O(n)       | O(log n)       |
//! | `fo`    | [`WeightedFailover`]        | the highest weight                               | O(1)         | O(n)       | none (b)       |
//! | `ovf`   | [`WeightedOverflow`]        | the highest weight with `active <= weight`       | O(1)         | O(n)       | O(log n)       |
//! | `twos`  | [`Twos`]                    | the lighter of two weighted random draws         | O(log n) (c) | O(n)       | none (b)       |
//! | `lblc`  | [`LocalityLeastConnection`] | the destination's server unless overloaded, else `wlc` | O(1) (d) | O(n) (e) | O(log n)      |
//! | `lblcr` | [`LocalityReplicated`]      | the lightest of the destination's set, else `wlc` | O(1) (d)    | O(n) (e)   | O(log n)       |
//! | `sh`    | [`SourceHashing`]           | the bucket of the client address (and port)      | O(1) (f)     | O(n + 256) | none           |
//! | `dh`    | [`DestinationHashing`]      | the bucket of the destination address            | O(1)         | O(n + 256) | none           |
//! | `mh`    | [`MaglevHash`]              | the Maglev table entry of the client             | O(1) (f)     | O(M log M) (g) | none       |
//!
//! (a) Neither looks at loads. `rr` steps over unavailable servers: O(1)
//! while the next server is available, one lap (O(n)) at worst. `wrr`
//! walks the list once per threshold pass, so a pick costs about
//! `n * passes / turns` server visits per cycle: O(1) when the weights are
//! alike, approaching O(n) when one weight dominates (e.g. one server of
//! weight 100 among 999 of weight 1); kept as the kernel does it.
//! (b) Loads play no part (`fo`), or are read from the slice at pick time
//! for the two drawn servers only (`twos`).
//! (c) A binary search of each draw in running weight sums kept by
//! `update`, where the kernel sums and walks the list.
//! (d) Plus O(WAYS) = O(8) for the set-associative lookup, and for `lblcr`
//! O(MAX_REPLICAS) for the set. The overload test's "some server is below
//! half its weight" is a counter kept by `load_changed`.
//! (e) Plus clearing the destination table when the number of servers
//! changes.
//! (f) When the hashed server is unavailable, `sh` with fallback probes up
//! to 256 buckets and `mh` with fallback up to 64 table entries.
//! (g) When the scheduler builds its own table (1–2 ms for M = 65537);
//! O(1) with a table built by the management thread
//! ([`MaglevHash::set_table`]).
//!
//! Picks of the tree schedulers trust that every load change was reported.
//! They check in O(1) what they can: a slice of another length than at the
//! last `update` is answered by walking it (the kernel rule itself), and
//! the chosen server's load and weight are compared with the tree's copy
//! (the tree is rebuilt on a mismatch), so a pick never returns a weight-0
//! server or an index out of range. A stale copy of a server that is not
//! chosen cannot be seen in O(1): debug builds compare the whole tree with
//! the slice on every pick and panic on a missed report, which the
//! pipeline's tests exercise.
//!
//! # Configuration changes
//!
//! Some schedulers derive state from the server list (`wrr` keeps the
//! greatest common divisor and maximum of the weights). The worker must call
//! [`Scheduler::update`] with the new slice after every configuration change
//! of the service (server added, removed or reordered, weight changed) and
//! before the next [`Scheduler::pick`]; this is IPVS's `add_dest` /
//! `del_dest` / `upd_dest` notification. Calling it when nothing changed is
//! harmless (`wrr` restarts its scan at the first server, as IPVS does).

mod dh;
mod fo;
mod hashing;
mod lblc;
mod lblcr;
mod lc;
pub mod maglev;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod tree;
mod twos;
mod wlc;
mod wrr;

pub use dh::DestinationHashing;
pub use fo::WeightedFailover;
pub use hashing::HashFlags;
pub use lblc::LocalityLeastConnection;
pub use lblcr::LocalityReplicated;
pub use lc::LeastConnection;
pub use mh::MaglevHash;
pub use nq::NeverQueue;
pub use ovf::WeightedOverflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHashing;
pub use twos::Twos;
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// What a scheduler may look at for one server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerLoad {
    /// 0..=65535; 0 means "no new connections".
    pub weight: u32,
    /// Connections in ESTABLISHED state (IPVS `activeconns`).
    pub active: u32,
    /// All other connections (IPVS `inactconns`).
    pub inactive: u32,
}

impl ServerLoad {
    /// Cost of an established connection in units of other connections:
    /// IPVS reckons the former 256 times as expensive.
    pub const ACTIVE_COST: u64 = 256;

    /// Whether the server may receive new connections (weight above 0).
    #[inline]
    pub fn is_available(&self) -> bool {
        self.weight > 0
    }

    /// The IPVS connection overhead `active * 256 + inactive` that `lc` and
    /// `wlc` minimise. Computed in `u64`, so it cannot overflow (at most
    /// about 2^40), where the kernel's `int` would wrap.
    #[inline]
    pub fn overhead(&self) -> u64 {
        u64::from(self.active) * Self::ACTIVE_COST + u64::from(self.inactive)
    }
}

/// The new flow being scheduled (hashing schedulers use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    pub protocol: u8,
    pub client_addr: Ipv4Addr,
    pub client_port: u16,
    pub virtual_addr: Ipv4Addr,
    pub virtual_port: u16,
    /// The worker's clock (ms), for schedulers with timed state (lblc).
    pub now: u64,
}

pub trait Scheduler: Send {
    /// Name as ipvsadm prints it.
    fn name(&self) -> &'static str;
    /// Index into `servers` of the server for a new connection; `None` when
    /// every weight is 0 or the slice is empty. Never returns the index of a
    /// weight-0 server. Must not allocate, lock or panic.
    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize>;
    /// Configuration-change hook (IPVS `add_dest`/`del_dest`/`upd_dest`).
    ///
    /// The worker must call it with the service's new server slice after
    /// every change to the list or to any weight, before the next `pick`,
    /// and once after `build` before the first `pick`. It re-reads the
    /// whole slice, connection counts included. Control path (may
    /// allocate); the default does nothing.
    fn update(&mut self, servers: &[ServerLoad]) {
        let _ = servers;
    }
    /// Load-change hook: the worker must call it after it changed
    /// `servers[index].active` or `.inactive` (a connection created, moved
    /// between active and inactive, or gone), once per change, with the
    /// slice it will next pass to `pick`; a call when nothing changed is
    /// harmless. Weights and the list itself change only through
    /// [`update`](Self::update). Schedulers that keep servers ordered by
    /// load (`lc`, `wlc`, `sed`, `nq`, `ovf`, and `lblc`/`lblcr`) rely on
    /// it; see the module documentation for what a pick does when a call
    /// was missed. Packet path: O(log n) at most, no allocation; the
    /// default does nothing.
    #[inline]
    fn load_changed(&mut self, servers: &[ServerLoad], index: usize) {
        let _ = (servers, index);
    }
}

/// Scheduler names accepted in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sed,
    Nq,
    Fo,
    Ovf,
    Twos,
    Lblc,
    Lblcr,
    Sh,
    Dh,
    Mh,
}

impl SchedulerKind {
    pub const ALL: &'static [SchedulerKind] = &[
        Self::Rr,
        Self::Wrr,
        Self::Lc,
        Self::Wlc,
        Self::Sed,
        Self::Nq,
        Self::Fo,
        Self::Ovf,
        Self::Twos,
        Self::Lblc,
        Self::Lblcr,
        Self::Sh,
        Self::Dh,
        Self::Mh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Fo => "fo",
            Self::Ovf => "ovf",
            Self::Twos => "twos",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Sh => "sh",
            Self::Dh => "dh",
            Self::Mh => "mh",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// A fresh scheduler of this kind (control path: allocates).
    /// Call [`Scheduler::update`] on it with the service's servers before
    /// the first pick.
    pub fn build(self) -> Box<dyn Scheduler> {
        match self {
            Self::Rr => Box::new(RoundRobin::new()),
            Self::Wrr => Box::new(WeightedRoundRobin::new()),
            Self::Lc => Box::new(LeastConnection::new()),
            Self::Wlc => Box::new(WeightedLeastConnection::new()),
            Self::Sed => Box::new(ShortestExpectedDelay::new()),
            Self::Nq => Box::new(NeverQueue::new()),
            Self::Fo => Box::new(WeightedFailover::new()),
            Self::Ovf => Box::new(WeightedOverflow::new()),
            Self::Twos => Box::new(Twos::new(random_seed())),
            Self::Lblc => Box::new(LocalityLeastConnection::new()),
            Self::Lblcr => Box::new(LocalityReplicated::new()),
            Self::Sh => Box::new(SourceHashing::new(HashFlags::NONE)),
            Self::Dh => Box::new(DestinationHashing::new()),
            Self::Mh => Box::new(MaglevHash::new(HashFlags::NONE, maglev::DEFAULT_SIZE)),
        }
    }

    /// A scheduler of this kind for a service with the given `-b` flags
    /// (used by sh and mh) and, for mh, the Maglev table the control plane
    /// built (without one, mh builds its own from positions). Control path.
    pub fn build_with(
        self,
        flags: HashFlags,
        maglev_table: Option<std::sync::Arc<maglev::MaglevTable>>,
    ) -> Box<dyn Scheduler> {
        match (self, maglev_table) {
            (Self::Sh, _) => Box::new(SourceHashing::new(flags)),
            (Self::Mh, Some(table)) => Box::new(MaglevHash::with_table(flags, table)),
            (Self::Mh, None) => Box::new(MaglevHash::new(flags, maglev::DEFAULT_SIZE)),
            (kind, _) => kind.build(),
        }
    }

    /// Whether the scheduler may refuse a flow although some server has a
    /// weight above 0: ovf (every weighted server is over its weight), and
    /// the hashing schedulers without fallback (the flow hashes to a server
    /// of weight 0, as in IPVS).
    pub fn may_refuse_available(self) -> bool {
        matches!(self, Self::Ovf | Self::Sh | Self::Dh)
    }
}

/// A per-instance seed for randomised schedulers (twos), so workers and
/// directors do not draw the same sequence.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown scheduler {s:?} (expected one of: {})",
                names.join(", ")
            )
        })
    }
}

/// Helpers shared by the schedulers' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{FlowInfo, ServerLoad};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Any flow: none of the schedulers here looks at it.
    pub fn flow() -> FlowInfo {
        FlowInfo {
            protocol: 6,
            client_addr: Ipv4Addr::new(198, 18, 0, 2),
            client_port: 40000,
            virtual_addr: Ipv4Addr::new(198, 18, 0, 100),
            virtual_port: 80,
            now: 0,
        }
    }

    pub fn server(weight: u32, active: u32, inactive: u32) -> ServerLoad {
        ServerLoad {
            weight,
            active,
            inactive,
        }
    }

    /// Servers with the given weights and no connections.
    pub fn weighted(weights: &[u32]) -> Vec<ServerLoad> {
        weights.iter().map(|&w| server(w, 0, 0)).collect()
    }

    /// Weights biased towards 0 and small values (so ties, gcds above 1
    /// and all-zero lists are common), with the occasional large one.
    pub fn weight() -> impl Strategy<Value = u32> {
        prop_oneof![
            3 => Just(0u32),
            6 => 1u32..=8,
            2 => (1u32..=6).prop_map(|w| w * 4),
            1 => 0u32..=65535,
        ]
    }

    /// Connection counts: mostly small (ties), sometimes anything.
    pub fn count() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..=4, 2 => 0u32..=1000, 1 => any::<u32>()]
    }

    pub fn server_load() -> impl Strategy<Value = ServerLoad> {
        (weight(), count(), count()).prop_map(|(w, a, i)| server(w, a, i))
    }

    pub fn servers() -> impl Strategy<Value = Vec<ServerLoad>> {
        prop::collection::vec(server_load(), 0..8)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{flow, server, servers};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn build_gives_the_named_scheduler() {
        for &kind in SchedulerKind::ALL {
            assert_eq!(kind.build().name(), kind.name());
            assert_eq!(kind.name().parse::<SchedulerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert!("fifo".parse::<SchedulerKind>().is_err());
    }

    #[test]
    fn overhead_weighs_active_connections_256_times() {
        assert_eq!(server(1, 0, 0).overhead(), 0);
        assert_eq!(server(1, 1, 0).overhead(), 256);
        assert_eq!(server(1, 2, 3).overhead(), 515);
        let huge = server(1, u32::MAX, u32::MAX);
        assert_eq!(huge.overhead(), u64::from(u32::MAX) * 257);
    }

    #[test]
    fn every_scheduler_returns_none_when_nothing_is_available() {
        for &kind in SchedulerKind::ALL {
            let mut sched = kind.build();
            sched.update(&[]);
            assert_eq!(sched.pick(&[], &flow()), None, "{kind}");
            let idle = [server(0, 0, 0), server(0, 5, 1)];
            sched.update(&idle);
            assert_eq!(sched.pick(&idle, &flow()), None, "{kind}");
        }
    }

    proptest! {
        /// Whatever the loads and weights, over a run of picks with the
        /// list changing in between: no scheduler picks a weight-0 server
        /// or an index out of range, and each finds a server exactly when
        /// one has a positive weight.
        #[test]
        fn no_scheduler_picks_weight_zero(
            lists in prop::collection::vec(servers(), 1..6),
            picks_per_list in 1usize..20,
        ) {
            for &kind in SchedulerKind::ALL {
                let mut sched = kind.build();
                for list in &lists {
                    sched.update(list);
                    let any_available = list.iter().any(ServerLoad::is_available);
                    for _ in 0..picks_per_list {
                        match sched.pick(list, &flow()) {
                            Some(i) => prop_assert!(list[i].weight > 0, "{} picked {}", kind, i),
                            None => prop_assert!(
                                !any_available || kind.may_refuse_available(),
                                "{} found nothing",
                                kind
                            ),
                        }
                    }
                }
            }
        }
    }
}
