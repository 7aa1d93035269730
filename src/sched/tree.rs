//! A tournament tree over server indices: the ordered structure behind the
//! schedulers that choose "the best server by some order" (`lc`, `wlc`,
//! `sed`, `nq`, `fo`, `ovf`), so that a pick does not walk every server as
//! the kernel's does.
//!
//! # The rule it keeps
//!
//! Each scheduler supplies a [`Rank`]: a small per-server key (`None` for a
//! server that may not be chosen, weight 0) and a strict "is preferable to"
//! on keys. The kernel walks the list in order and replaces its choice only
//! by a strictly preferable server; the result is therefore the *first in
//! list order* among the most preferable servers. The tree returns exactly
//! that server, provided `precedes` is a strict weak order (irreflexive,
//! transitive, and "neither precedes the other" transitive), which ratio
//! comparisons by cross-multiplication are.
//!
//! # Layout
//!
//! `nodes` is an implicit binary tree of `2 * capacity` entries, `capacity`
//! the number of servers rounded up to a power of two. Leaf `capacity + i`
//! holds server `i`'s key; each inner node `k` holds the winner of its
//! children `2k` and `2k + 1`, with the key, so a match reads two adjacent
//! nodes and no server record. Because of the power-of-two layout every
//! server under a left child comes before every server under its sibling,
//! so a match needs one comparison: the right child wins only when it
//! strictly precedes the left. Node 1 is the overall winner.
//!
//! # Cost
//!
//! * [`LoadTree::winner`]: O(1) (node 1).
//! * [`LoadTree::set`] (one server's load or weight changed): O(log n), the
//!   leaf-to-root path, one comparison per level; it stops early at the
//!   first match whose result (winner and key) did not change, which is
//!   soon for a server far from winning.
//! * [`LoadTree::rebuild`]: O(n); allocates only when the server count grows
//!   past the current capacity.
//!
//! # Keeping in step with the loads
//!
//! The tree holds copies of the keys; the caller must report every change
//! to a server's load ([`LoadTree::set`]) or to the list ([`LoadTree::rebuild`]).
//! [`LoadTree::pick`] guards against a caller that did not:
//!
//! * a slice of another length than the tree's: answered by a linear scan
//!   ([`scan`]), the kernel rule itself, so the answer stays exact;
//! * otherwise the winner's key is compared with its current load in the
//!   slice (O(1)); on a mismatch the tree is rebuilt from the slice (O(n),
//!   no allocation) before answering. So the returned server never has
//!   weight 0 and never is out of range, whatever the caller did;
//! * debug builds also compare every leaf with the slice and panic on a
//!   difference, so a missing notification fails the tests instead of
//!   silently skewing picks (a stale key of a server that is not the
//!   winner cannot be seen in O(1)).

use super::ServerLoad;

/// How a scheduler on the tree ranks servers.
pub(crate) trait Rank {
    /// What the tree keeps of a server to compare it with another.
    type Key: Copy + Default + PartialEq + std::fmt::Debug;

    /// The server's key, or `None` when it may not be chosen.
    fn key(server: &ServerLoad) -> Option<Self::Key>;

    /// Whether a server of key `a` is strictly preferable to one of key
    /// `b`. Must be a strict weak order.
    fn precedes(a: &Self::Key, b: &Self::Key) -> bool;
}

/// Marks an empty node: no server, or none that may be chosen.
const NONE: u32 = u32::MAX;

/// Largest number of servers the tree tracks (indices are `u32`, as the data
/// plane's own server slots are). A longer list is answered by [`scan`].
const MAX_SERVERS: usize = NONE as usize;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Node<K> {
    key: K,
    /// Server index, or [`NONE`].
    index: u32,
}

/// The kernel's linear rule: the first server in list order among those
/// no other server strictly precedes. O(n).
pub(crate) fn scan<R: Rank>(servers: &[ServerLoad]) -> Option<usize> {
    let mut best: Option<(usize, R::Key)> = None;
    for (index, server) in servers.iter().enumerate() {
        let Some(key) = R::key(server) else {
            continue;
        };
        match best {
            Some((_, best_key)) if !R::precedes(&key, &best_key) => {}
            _ => best = Some((index, key)),
        }
    }
    best.map(|(index, _)| index)
}

/// Defines a scheduler that picks the best server by rank `$rank` from a
/// [`LoadTree`]: the struct, `new`, `scan` (the kernel's linear walk, for
/// comparison) and its [`Scheduler`](super::Scheduler) impl. `loads: true`
/// when the rank reads connection counts, so load changes are replayed into
/// the tree; `false` when it reads weights only (a configuration change,
/// which `update` handles).
macro_rules! tree_scheduler {
    ($ty:ident, $rank:ty, $name:literal, loads: $loads:literal) => {
        #[doc = concat!("The `", $name, "` scheduler. See the module documentation.")]
        #[derive(Clone, Debug, Default)]
        pub struct $ty {
            tree: $crate::sched::tree::LoadTree<$rank>,
        }

        impl $ty {
            /// Call [`Scheduler::update`](crate::sched::Scheduler::update)
            /// before the first pick.
            pub fn new() -> Self {
                Self::default()
            }

            /// The kernel's choice by a walk over every server, O(n), without
            /// state: what the scheduler's pick returns, for comparison.
            pub fn scan(servers: &[$crate::sched::ServerLoad]) -> Option<usize> {
                $crate::sched::tree::scan::<$rank>(servers)
            }
        }

        impl $crate::sched::Scheduler for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            #[inline]
            fn pick(
                &mut self,
                servers: &[$crate::sched::ServerLoad],
                _flow: &$crate::sched::FlowInfo,
            ) -> Option<usize> {
                self.tree.pick(servers)
            }

            fn update(&mut self, servers: &[$crate::sched::ServerLoad]) {
                self.tree.rebuild(servers);
            }

            #[inline]
            fn load_changed(&mut self, servers: &[$crate::sched::ServerLoad], index: usize) {
                if $loads {
                    self.tree.set(servers, index);
                }
            }
        }
    };
}

pub(crate) use tree_scheduler;

/// The tournament tree of one scheduler instance. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct LoadTree<R: Rank> {
    nodes: Vec<Node<R::Key>>,
    /// Number of leaves, a power of two (0 before the first rebuild).
    capacity: usize,
    /// Number of servers the leaves stand for.
    len: usize,
    rank: std::marker::PhantomData<R>,
}

impl<R: Rank> Default for LoadTree<R> {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            capacity: 0,
            len: 0,
            rank: std::marker::PhantomData,
        }
    }
}

impl<R: Rank> LoadTree<R> {
    /// Re-reads every server (a configuration change). Control path: may
    /// allocate when the list outgrows the current capacity.
    pub(crate) fn rebuild(&mut self, servers: &[ServerLoad]) {
        if servers.len() > MAX_SERVERS {
            // Track nothing, under a length no slice of 12-byte records can
            // have: `set` ignores every report and `pick` walks the list.
            *self = Self::default();
            self.len = usize::MAX;
            return;
        }
        let capacity = servers.len().max(1).next_power_of_two();
        if capacity != self.capacity {
            self.nodes = vec![Self::empty(); 2 * capacity];
            self.capacity = capacity;
        }
        self.len = servers.len();
        let empty = Self::empty();
        for (slot, leaf) in self.nodes[capacity..].iter_mut().enumerate() {
            *leaf = match servers.get(slot) {
                Some(server) => Self::leaf(slot, server),
                None => empty,
            };
        }
        for node in (1..capacity).rev() {
            self.nodes[node] = self.play(node);
        }
    }

    /// Server `index`'s load changed: re-reads it and replays its matches.
    /// O(log n). Ignored when `servers` is not the list the tree was built
    /// for (another length) or `index` is out of range; `pick` copes.
    #[inline]
    pub(crate) fn set(&mut self, servers: &[ServerLoad], index: usize) {
        if servers.len() != self.len || index >= self.len {
            return;
        }
        let mut node = self.capacity + index;
        self.nodes[node] = Self::leaf(index, &servers[index]);
        while node > 1 {
            node /= 2;
            let winner = self.play(node);
            if winner == self.nodes[node] {
                // Same winner with the same key: nothing above changes.
                break;
            }
            self.nodes[node] = winner;
        }
    }

    /// The server the kernel rule chooses, per the keys the tree holds.
    #[inline]
    pub(crate) fn winner(&self) -> Option<usize> {
        // With one leaf (capacity 1) node 1 is that leaf.
        let root = self.nodes.get(1)?;
        (root.index != NONE).then_some(root.index as usize)
    }

    /// The kernel rule's choice for `servers`, guarding against a caller
    /// that did not report a change (see the module documentation).
    #[inline]
    pub(crate) fn pick(&mut self, servers: &[ServerLoad]) -> Option<usize> {
        debug_assert!(
            servers.len() != self.len || self.agrees_with(servers),
            "scheduler tree out of step with the loads: a load change was not reported"
        );
        self.pick_checked(servers)
    }

    /// [`pick`](Self::pick) without the debug assertion: the O(1) checks
    /// and their repairs.
    #[inline]
    fn pick_checked(&mut self, servers: &[ServerLoad]) -> Option<usize> {
        if servers.len() != self.len {
            return scan::<R>(servers);
        }
        let winner = self.winner()?;
        let node = self.nodes[self.capacity + winner];
        if R::key(&servers[winner]) != Some(node.key) {
            self.rebuild(servers);
            return self.winner();
        }
        Some(winner)
    }

    /// Whether every leaf holds its server's current key (O(n); for
    /// assertions).
    pub(crate) fn agrees_with(&self, servers: &[ServerLoad]) -> bool {
        servers.len() == self.len
            && servers.iter().enumerate().all(|(index, server)| {
                let leaf = self.nodes[self.capacity + index];
                match R::key(server) {
                    Some(key) => leaf.index as usize == index && leaf.key == key,
                    None => leaf.index == NONE,
                }
            })
    }

    fn empty() -> Node<R::Key> {
        Node {
            key: R::Key::default(),
            index: NONE,
        }
    }

    /// Server `index`'s leaf (`index` below [`MAX_SERVERS`]).
    fn leaf(index: usize, server: &ServerLoad) -> Node<R::Key> {
        match R::key(server) {
            Some(key) => Node {
                key,
                index: index as u32,
            },
            None => Self::empty(),
        }
    }

    /// The winner of inner node `node`'s two children.
    #[inline]
    fn play(&self, node: usize) -> Node<R::Key> {
        let left = self.nodes[2 * node];
        let right = self.nodes[2 * node + 1];
        if right.index == NONE {
            left
        } else if left.index == NONE || R::precedes(&right.key, &left.key) {
            right
        } else {
            left
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{count, flow, server, weight, weighted};
    use crate::sched::{Scheduler, SchedulerKind};
    use proptest::prelude::*;
    use std::cmp::Ordering;

    /// The least-load schedulers: an idle server beats a busy one.
    const LEAST_LOAD_KINDS: [SchedulerKind; 4] = [
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
    ];

    /// All the schedulers built on the tree.
    const TREE_KINDS: [SchedulerKind; 6] = [
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
    ];

    /// `a/b` against `c/d` (b, d > 0) exactly.
    fn ratio_cmp(a: u64, b: u32, c: u64, d: u32) -> Ordering {
        (u128::from(a) * u128::from(d)).cmp(&(u128::from(c) * u128::from(b)))
    }

    /// The first available server with the least `cost / weight`
    /// (`min_by` keeps the first of equal minima, as the kernel does).
    fn least_ratio(servers: &[ServerLoad], cost: fn(&ServerLoad) -> u64) -> Option<usize> {
        servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.weight > 0)
            .min_by(|(_, a), (_, b)| ratio_cmp(cost(a), a.weight, cost(b), b.weight))
            .map(|(index, _)| index)
    }

    /// The kernel rules, written as plainly as possible.
    fn reference(kind: SchedulerKind, servers: &[ServerLoad]) -> Option<usize> {
        let overhead = |s: &ServerLoad| u64::from(s.active) * 256 + u64::from(s.inactive);
        let queue = |s: &ServerLoad| u64::from(s.active) + 1;
        match kind {
            SchedulerKind::Lc => servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.weight > 0)
                .min_by_key(|&(index, s)| (overhead(s), index))
                .map(|(index, _)| index),
            SchedulerKind::Wlc => least_ratio(servers, overhead),
            SchedulerKind::Sed => least_ratio(servers, queue),
            SchedulerKind::Nq => servers
                .iter()
                .position(|s| s.weight > 0 && s.active == 0)
                .or_else(|| least_ratio(servers, queue)),
            // The first of the highest weights, among servers within
            // budget for ovf.
            SchedulerKind::Fo | SchedulerKind::Ovf => {
                let eligible = |s: &ServerLoad| {
                    s.weight > 0 && (kind == SchedulerKind::Fo || s.active <= s.weight)
                };
                let max = servers
                    .iter()
                    .filter(|s| eligible(s))
                    .map(|s| s.weight)
                    .max()?;
                servers.iter().position(|s| eligible(s) && s.weight == max)
            }
            other => unreachable!("{other} is not a tree scheduler"),
        }
    }

    /// One step of a worker's life, indices taken modulo the list length.
    #[derive(Clone, Debug)]
    enum Op {
        /// New weights for a list of this length (counts carry over by
        /// position, new servers start idle), then `update`.
        Reconfigure(Vec<u32>),
        /// A server removed from the list, then `update`.
        Remove(usize),
        /// A server of this weight inserted at a position, then `update`.
        Insert(usize, u32),
        /// Counts set to anything, then `load_changed`.
        SetLoad(usize, u32, u32),
        /// A connection closes: active to inactive, then `load_changed`.
        Close(usize),
        /// A connection expires: inactive down by one, then `load_changed`.
        Expire(usize),
        /// A pick; the chosen server gets a new active connection.
        Connect,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => prop::collection::vec(weight(), 0..40).prop_map(Op::Reconfigure),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => (any::<usize>(), weight()).prop_map(|(at, w)| Op::Insert(at, w)),
            3 => (any::<usize>(), count(), count()).prop_map(|(i, a, n)| Op::SetLoad(i, a, n)),
            3 => any::<usize>().prop_map(Op::Close),
            2 => any::<usize>().prop_map(Op::Expire),
            6 => Just(Op::Connect),
        ]
    }

    /// Applies `op` to `servers` and tells `sched`, as the data plane does.
    fn apply(sched: &mut dyn Scheduler, servers: &mut Vec<ServerLoad>, op: &Op) {
        let len = servers.len();
        match *op {
            Op::Reconfigure(ref weights) => {
                servers.resize(weights.len(), server(0, 0, 0));
                for (server, &weight) in servers.iter_mut().zip(weights) {
                    server.weight = weight;
                }
                sched.update(servers);
            }
            Op::Remove(at) if len > 0 => {
                servers.remove(at % len);
                sched.update(servers);
            }
            Op::Insert(at, weight) => {
                servers.insert(at % (len + 1), server(weight, 0, 0));
                sched.update(servers);
            }
            Op::SetLoad(i, active, inactive) if len > 0 => {
                servers[i % len].active = active;
                servers[i % len].inactive = inactive;
                sched.load_changed(servers, i % len);
            }
            Op::Close(i) if len > 0 && servers[i % len].active > 0 => {
                servers[i % len].active -= 1;
                servers[i % len].inactive = servers[i % len].inactive.saturating_add(1);
                sched.load_changed(servers, i % len);
            }
            Op::Expire(i) if len > 0 && servers[i % len].inactive > 0 => {
                servers[i % len].inactive -= 1;
                sched.load_changed(servers, i % len);
            }
            Op::Connect => {
                if let Some(i) = sched.pick(servers, &flow()) {
                    servers[i].active = servers[i].active.saturating_add(1);
                    sched.load_changed(servers, i);
                }
            }
            _ => {}
        }
    }

    proptest! {
        /// Through any sequence of configuration changes, load changes and
        /// picks, every pick is the kernel rule's choice.
        #[test]
        fn picks_follow_the_kernel_rule_through_any_history(
            initial in prop::collection::vec(weight(), 0..40),
            ops in prop::collection::vec(op(), 1..80),
        ) {
            for kind in TREE_KINDS {
                let mut sched = kind.build();
                let mut servers = weighted(&initial);
                sched.update(&servers);
                for op in &ops {
                    apply(sched.as_mut(), &mut servers, op);
                    prop_assert_eq!(
                        sched.pick(&servers, &flow()),
                        reference(kind, &servers),
                        "{} after {:?} on {:?}", kind, op, servers
                    );
                }
            }
        }

        /// The references agree with the schedulers' own linear scans.
        #[test]
        fn scans_follow_the_kernel_rule(list in crate::sched::testing::servers()) {
            use crate::sched::{
                LeastConnection, NeverQueue, ShortestExpectedDelay, WeightedFailover,
                WeightedLeastConnection, WeightedOverflow,
            };
            prop_assert_eq!(LeastConnection::scan(&list), reference(SchedulerKind::Lc, &list));
            prop_assert_eq!(
                WeightedLeastConnection::scan(&list),
                reference(SchedulerKind::Wlc, &list)
            );
            prop_assert_eq!(
                ShortestExpectedDelay::scan(&list),
                reference(SchedulerKind::Sed, &list)
            );
            prop_assert_eq!(NeverQueue::scan(&list), reference(SchedulerKind::Nq, &list));
            prop_assert_eq!(WeightedFailover::scan(&list), reference(SchedulerKind::Fo, &list));
            prop_assert_eq!(WeightedOverflow::scan(&list), reference(SchedulerKind::Ovf, &list));
        }
    }

    #[test]
    fn weight_zero_servers_are_never_chosen_until_weighted_again() {
        for kind in LEAST_LOAD_KINDS {
            // The idle first server has weight 0: the busy second one wins.
            let mut servers = vec![server(0, 0, 0), server(1, 9, 9)];
            let mut sched = kind.build();
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), Some(1), "{kind}");
            // All weights 0: nobody.
            servers[1].weight = 0;
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), None, "{kind}");
            // A load change does not make a weight-0 server eligible.
            servers[0].active = 0;
            sched.load_changed(&servers, 0);
            assert_eq!(sched.pick(&servers, &flow()), None, "{kind}");
            // Weighted again: back in, and the idle one wins.
            servers[0].weight = 1;
            servers[1].weight = 1;
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), Some(0), "{kind}");
        }
    }

    #[test]
    fn servers_added_and_removed_are_seen_after_update() {
        for kind in LEAST_LOAD_KINDS {
            let mut servers = vec![server(1, 5, 0), server(1, 3, 0)];
            let mut sched = kind.build();
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), Some(1), "{kind}");
            // An idle server added at the front: it wins, indices shift.
            servers.insert(0, server(1, 0, 0));
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), Some(0), "{kind}");
            // The list grows past a power of two (capacity 4 to 8).
            servers.extend([server(1, 7, 0), server(1, 7, 0), server(4, 0, 0)]);
            sched.update(&servers);
            assert_eq!(
                sched.pick(&servers, &flow()),
                reference(kind, &servers),
                "{kind}"
            );
            // Removed again, down to one server and to none.
            servers.truncate(1);
            servers[0].active = 2;
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), Some(0), "{kind}");
            servers.clear();
            sched.update(&servers);
            assert_eq!(sched.pick(&servers, &flow()), None, "{kind}");
        }
    }

    #[test]
    fn a_slice_of_another_length_is_answered_by_a_scan() {
        for kind in TREE_KINDS {
            // Never updated: the tree knows no server.
            let servers = [server(1, 4, 0), server(2, 1, 0), server(1, 0, 0)];
            assert_eq!(
                kind.build().pick(&servers, &flow()),
                reference(kind, &servers)
            );
            // Updated with two servers, asked about three.
            let mut sched = kind.build();
            sched.update(&servers[..2]);
            assert_eq!(sched.pick(&servers, &flow()), reference(kind, &servers));
            // A load change reported against the wrong list, or out of
            // range, is ignored rather than trusted or panicking.
            sched.load_changed(&servers, 2);
            sched.load_changed(&servers[..2], 7);
            assert_eq!(
                sched.pick(&servers[..2], &flow()),
                reference(kind, &servers[..2])
            );
        }
    }

    /// `lc`'s order, for driving a bare tree.
    struct Least;
    impl Rank for Least {
        type Key = u64;
        fn key(server: &ServerLoad) -> Option<u64> {
            server.is_available().then(|| server.overhead())
        }
        fn precedes(a: &u64, b: &u64) -> bool {
            a < b
        }
    }

    #[test]
    fn a_stale_winner_is_caught_and_repaired() {
        let mut servers = vec![server(1, 3, 0), server(1, 1, 0), server(1, 2, 0)];
        let mut tree = LoadTree::<Least>::default();
        tree.rebuild(&servers);
        assert_eq!(tree.winner(), Some(1));
        // The winner got busier and its weight went to 0, unreported.
        servers[1] = server(0, 9, 0);
        assert!(!tree.agrees_with(&servers));
        assert_eq!(tree.pick_checked(&servers), Some(2));
        assert!(tree.agrees_with(&servers));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a load change was not reported")]
    fn debug_builds_catch_a_missed_load_change() {
        let mut servers = vec![server(1, 3, 0), server(1, 1, 0)];
        let mut sched = SchedulerKind::Wlc.build();
        sched.update(&servers);
        servers[0].active = 0;
        let _ = sched.pick(&servers, &flow());
    }

    #[test]
    fn the_layout_has_one_leaf_per_server_up_to_a_power_of_two() {
        let mut tree = LoadTree::<Least>::default();
        assert_eq!(tree.winner(), None);
        for (len, capacity) in [(0, 1), (1, 1), (2, 2), (3, 4), (5, 8), (1000, 1024)] {
            let servers: Vec<_> = (0..len).map(|i| server(1, 0, 1000 - i)).collect();
            tree.rebuild(&servers);
            assert_eq!((tree.capacity, tree.nodes.len()), (capacity, 2 * capacity));
            assert_eq!(tree.winner(), len.checked_sub(1).map(|i| i as usize));
        }
    }
}
