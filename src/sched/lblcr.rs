//! Locality-based least connection with replication (`lblcr`), as IPVS's
//! `ip_vs_lblcr.c`.
//!
//! Like [`lblc`](super::lblc), for cache clusters, keyed on the flow's
//! destination address [`FlowInfo::virtual_addr`]; but a destination maps
//! to a *set* of servers, so a popular object can be served (replicated)
//! by several caches, and the set shrinks again once it has stopped growing.
//!
//! # Rule
//!
//! A table maps destination address → (server set, time of last use, time
//! the set last grew). The set is ordered newest member first. For a new
//! connection to destination `d` at time `now`:
//!
//! 1. No live entry for `d`: choose by the `wlc` rule over all servers
//!    ([`WeightedLeastConnection`]: least `(active * 256 + inactive) /
//!    weight`, ties to the first) and create the entry `{that server}`,
//!    last grown `now`. No server of positive weight: `None`, no entry.
//! 2. Otherwise last use becomes `now`, and:
//!    - `m` = the set's member of least `overhead / weight` among members
//!      of positive weight (ties to the earlier, i.e. newer, member);
//!    - if the set has more than one member and last grew more than the
//!      expiration ago (`now - last_grown > expiration`, strictly), its
//!      member of *most* `overhead / weight` among those of positive
//!      weight (ties to the newer) is dropped. The grow time is not reset,
//!      so each later pick drops one more until one member is left.
//!      Members of weight 0 are never dropped this way (as in the kernel).
//!      The dropped member may be `m` itself; `m` is still used this time;
//!    - if `m` exists and is not overloaded, `m` is the answer;
//!    - else the `wlc` choice over all servers is the answer (`None` if
//!      there is none), and it joins the set at the front if not already a
//!      member (the set then counts as grown at `now`).
//!
//! *Overloaded* is as in `lblc`: `active(m) > weight(m)` while some server
//! `j` of the service has `2 * active(j) < weight(j)`.
//!
//! The expiration is [`DEFAULT_EXPIRATION_MS`] (24 hours, the kernel's
//! `lblcr_expiration` sysctl default) both for shrinking a set and for
//! forgetting an entry unused that long (`now - last_use >= expiration`;
//! the kernel's timer sweeps them up to 30 minutes late; here exactly, at
//! lookup). The kernel's 6-minute `ENTRY_TIMEOUT` only applies to its
//! garbage collection of an over-full table; our analogue is eviction.
//!
//! # Table and bounds
//!
//! Fixed capacity, allocated in [`new`](LocalityReplicated::new) /
//! [`with_capacity`](LocalityReplicated::with_capacity); `pick` never
//! allocates. Same set-associative layout as `lblc`: a hash of the address
//! picks a set of [`WAYS`](super::lblc::WAYS) slots; a new entry takes a
//! free or dead slot, else evicts the least recently used of the set.
//! Default [`DEFAULT_CAPACITY`] entries (64 bytes each, 1 MiB).
//! Deviations: the kernel's table and server sets are unbounded. A set here
//! holds at most [`MAX_REPLICAS`] servers; when a full set must grow, its
//! oldest member (the last) is dropped to make room.
//!
//! # Configuration changes
//!
//! As in `lblc`: entries hold server indices; [`Scheduler::update`] forgets
//! all entries when the number of servers changes and keeps them when it
//! does not (weight change); [`clear`](LocalityReplicated::clear) forgets
//! them on demand. Members whose index is out of range (a list shortened
//! without `update`) are ignored by the min/max choices.
//!
//! Cost: as for `lblc`, the `wlc` choice and the overload test are kept up
//! to date per load change instead of walking the list: a pick is O(WAYS)
//! for the lookup plus O(MAX_REPLICAS) for the set, [`Scheduler::load_changed`]
//! O(log n), `update` O(n).

use super::lblc::{is_overloaded, set_of, sets_for, HalfIdle, WAYS};
use super::{FlowInfo, Scheduler, ServerLoad, WeightedLeastConnection};

pub use super::lblc::DEFAULT_EXPIRATION_MS;
/// Default number of table entries.
pub const DEFAULT_CAPACITY: usize = 16 * 1024;
/// Most servers remembered for one destination.
pub const MAX_REPLICAS: usize = 10;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Destination address (IPv4, host order).
    key: u32,
    /// Members in use; 0 marks a free slot.
    len: u32,
    last_use: u64,
    /// When the set last gained a member.
    last_grown: u64,
    /// Server indices, newest first; `members[..len]` are valid.
    members: [u32; MAX_REPLICAS],
}

const FREE: Entry = Entry {
    key: 0,
    len: 0,
    last_use: 0,
    last_grown: 0,
    members: [0; MAX_REPLICAS],
};

impl Entry {
    fn members(&self) -> &[u32] {
        &self.members[..self.len as usize]
    }

    /// The member (position in the set) of least or most load per weight
    /// among members of positive weight; ties to the earlier.
    fn extreme(&self, servers: &[ServerLoad], most: bool) -> Option<usize> {
        let mut best: Option<(usize, &ServerLoad)> = None;
        for (pos, &index) in self.members().iter().enumerate() {
            let Some(server) = servers.get(index as usize) else {
                continue;
            };
            if !server.is_available() {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, b)) => {
                    let lhs = u128::from(b.overhead()) * u128::from(server.weight);
                    let rhs = u128::from(server.overhead()) * u128::from(b.weight);
                    if most {
                        lhs < rhs
                    } else {
                        lhs > rhs
                    }
                }
            };
            if better {
                best = Some((pos, server));
            }
        }
        best.map(|(pos, _)| pos)
    }

    fn remove(&mut self, pos: usize) {
        let len = self.len as usize;
        self.members.copy_within(pos + 1..len, pos);
        self.len -= 1;
    }

    /// Adds `server` at the front unless present; a full set loses its
    /// oldest member.
    fn insert(&mut self, server: u32, now: u64) {
        if self.members().contains(&server) {
            return;
        }
        let len = (self.len as usize).min(MAX_REPLICAS - 1);
        self.members.copy_within(0..len, 1);
        self.members[0] = server;
        self.len = len as u32 + 1;
        self.last_grown = now;
    }
}

/// The `lblcr` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct LocalityReplicated {
    entries: Box<[Entry]>,
    set_mask: usize,
    expiration: u64,
    servers_len: usize,
    /// The `wlc` choice, kept ordered (see [`WeightedLeastConnection`]).
    wlc: WeightedLeastConnection,
    half_idle: HalfIdle,
}

impl Default for LocalityReplicated {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalityReplicated {
    /// Default capacity and expiration (control path: allocates).
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, DEFAULT_EXPIRATION_MS)
    }

    /// Room for at least `entries` destinations (rounded up to a power of
    /// two times `WAYS`); sets shrink, and entries die, after
    /// `expiration_ms`.
    pub fn with_capacity(entries: usize, expiration_ms: u64) -> Self {
        let sets = sets_for(entries);
        Self {
            entries: vec![FREE; sets * WAYS].into_boxed_slice(),
            set_mask: sets - 1,
            expiration: expiration_ms,
            servers_len: 0,
            wlc: WeightedLeastConnection::new(),
            half_idle: HalfIdle::default(),
        }
    }

    /// Total number of entries.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Forgets every destination.
    pub fn clear(&mut self) {
        self.entries.fill(FREE);
    }

    /// Entries still live at `now`.
    pub fn live_entries(&self, now: u64) -> usize {
        let expiration = self.expiration;
        self.entries
            .iter()
            .filter(|e| e.len > 0 && now.saturating_sub(e.last_use) < expiration)
            .count()
    }

    /// The servers remembered for `dest` (newest first), if live at `now`.
    pub fn replicas(&self, dest: std::net::Ipv4Addr, now: u64) -> Option<&[u32]> {
        let key = u32::from(dest);
        let start = set_of(key, self.set_mask) * WAYS;
        self.entries[start..start + WAYS]
            .iter()
            .find(|e| e.len > 0 && e.key == key && now.saturating_sub(e.last_use) < self.expiration)
            .map(Entry::members)
    }
}

impl Scheduler for LocalityReplicated {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize> {
        let key = u32::from(flow.virtual_addr);
        let now = flow.now;
        let expiration = self.expiration;
        let live = |e: &Entry| e.len > 0 && now.saturating_sub(e.last_use) < expiration;
        let start = set_of(key, self.set_mask) * WAYS;
        let set = &mut self.entries[start..start + WAYS];

        if let Some(entry) = set.iter_mut().find(|e| live(e) && e.key == key) {
            entry.last_use = now;
            let least = entry.extreme(servers, false).map(|pos| entry.members[pos]);
            if entry.len > 1 && now.saturating_sub(entry.last_grown) > expiration {
                if let Some(pos) = entry.extreme(servers, true) {
                    entry.remove(pos);
                }
            }
            if let Some(index) = least {
                let index = index as usize;
                if !is_overloaded(servers, &servers[index], &self.half_idle) {
                    return Some(index);
                }
            }
            let chosen = self.wlc.pick(servers, flow)?;
            if let Ok(server) = u32::try_from(chosen) {
                entry.insert(server, now);
            }
            return Some(chosen);
        }

        let chosen = self.wlc.pick(servers, flow)?;
        let Ok(server) = u32::try_from(chosen) else {
            return Some(chosen);
        };
        let victim = match set.iter().position(|e| !live(e)) {
            Some(free) => free,
            None => {
                let mut oldest = 0;
                for (i, e) in set.iter().enumerate() {
                    if e.last_use < set[oldest].last_use {
                        oldest = i;
                    }
                }
                oldest
            }
        };
        let mut entry = FREE;
        entry.key = key;
        entry.last_use = now;
        entry.insert(server, now);
        set[victim] = entry;
        Some(chosen)
    }

    fn update(&mut self, servers: &[ServerLoad]) {
        if servers.len() != self.servers_len {
            self.clear();
            self.servers_len = servers.len();
        }
        self.wlc.update(servers);
        self.half_idle.rebuild(servers);
    }

    #[inline]
    fn load_changed(&mut self, servers: &[ServerLoad], index: usize) {
        self.wlc.load_changed(servers, index);
        self.half_idle.set(servers, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testing::{flow, server, servers};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    const DAY: u64 = DEFAULT_EXPIRATION_MS;

    fn to(dest: u32, now: u64) -> FlowInfo {
        FlowInfo {
            virtual_addr: Ipv4Addr::from(dest),
            now,
            ..flow()
        }
    }

    /// A pick after reporting every server's load, as the worker does
    /// after each change (`load_changed` ignores a list of another length).
    fn reported_pick<S: Scheduler>(
        sched: &mut S,
        servers: &[ServerLoad],
        flow: &FlowInfo,
    ) -> Option<usize> {
        for index in 0..servers.len() {
            sched.load_changed(servers, index);
        }
        sched.pick(servers, flow)
    }

    fn fresh(servers: &[ServerLoad]) -> LocalityReplicated {
        let mut lblcr = LocalityReplicated::new();
        lblcr.update(servers);
        lblcr
    }

    fn replicas(lblcr: &LocalityReplicated, dest: u32, now: u64) -> Vec<u32> {
        lblcr
            .replicas(Ipv4Addr::from(dest), now)
            .map(<[u32]>::to_vec)
            .unwrap_or_default()
    }

    #[test]
    fn same_destination_same_server() {
        let mut list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblcr = fresh(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(0));
        list[0].active = 1;
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 1)), Some(0));
        assert_eq!(reported_pick(&mut lblcr, &list, &to(2, 1)), Some(1));
        assert_eq!(replicas(&lblcr, 1, 1), [0]);
        assert_eq!(replicas(&lblcr, 2, 1), [1]);
        assert_eq!(lblcr.name(), "lblcr");
    }

    #[test]
    fn overload_adds_a_replica_and_the_set_is_then_shared() {
        let mut list = vec![server(2, 0, 0), server(4, 0, 0), server(4, 0, 0)];
        let mut lblcr = fresh(&list);
        // wlc over idle servers: the first.
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(0));
        // Server 0 overloaded (3 > 2) while server 1 is below half.
        list[0].active = 3;
        list[2].active = 1;
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 5)), Some(1));
        assert_eq!(replicas(&lblcr, 1, 5), [1, 0]);
        // Now the least loaded member per weight is chosen: 1 (0/4).
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 6)), Some(1));
        // Member 0 lighter again: chosen, no growth.
        list[0].active = 0;
        list[1].active = 3;
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 7)), Some(0));
        assert_eq!(replicas(&lblcr, 1, 7), [1, 0]);
    }

    #[test]
    fn weight_zero_members_are_skipped_and_rescheduled() {
        let mut list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblcr = fresh(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(0));
        list[0].weight = 0;
        lblcr.update(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 1)), Some(1));
        assert_eq!(replicas(&lblcr, 1, 1), [1, 0]);
        list[1].weight = 0;
        lblcr.update(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 2)), None);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(2, 2)), None);
        assert_eq!(replicas(&lblcr, 2, 2), Vec::<u32>::new());
    }

    #[test]
    fn stale_sets_shrink_one_most_loaded_member_per_pick() {
        let mut list = vec![
            server(2, 1, 0),
            server(4, 1, 0),
            server(4, 1, 0),
            server(100, 0, 0),
        ];
        let mut lblcr = fresh(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(3));
        // 3 overloaded (101 > 100) while 1 is below half: wlc adds 1.
        list[3].active = 101;
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 10)), Some(1));
        // 1 overloaded too (5 > 4) while 2 is below half; the set's least
        // loaded per weight is 3 (25856/100 < 1280/4), overloaded: wlc adds 2.
        list[1].active = 5;
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 20)), Some(2));
        assert_eq!(replicas(&lblcr, 1, 20), [2, 1, 3]);
        // Calm down; per weight 2: 0, 3: 512/100, 1: 256/4.
        list[1].active = 1;
        list[2].active = 0;
        list[3].active = 2;
        // Refresh the entry's last use half way.
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, DAY / 2)), Some(2));
        // Exactly one expiration after the last growth: not yet.
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 20 + DAY)), Some(2));
        assert_eq!(replicas(&lblcr, 1, 20 + DAY), [2, 1, 3]);
        // Past it: the most loaded per weight goes, one per pick.
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 21 + DAY)), Some(2));
        assert_eq!(replicas(&lblcr, 1, 21 + DAY), [2, 3]);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 22 + DAY)), Some(2));
        assert_eq!(replicas(&lblcr, 1, 22 + DAY), [2]);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 23 + DAY)), Some(2));
        assert_eq!(replicas(&lblcr, 1, 23 + DAY), [2]);
    }

    #[test]
    fn the_chosen_member_may_be_the_one_dropped() {
        let list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblcr = fresh(&list);
        let overloaded = [server(1, 2, 0), server(1, 0, 0)];
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(0));
        assert_eq!(reported_pick(&mut lblcr, &overloaded, &to(1, 0)), Some(1));
        assert_eq!(replicas(&lblcr, 1, 0), [1, 0]);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, DAY / 2)), Some(1));
        // Equal loads: least and most are both the newest member, 1: it is
        // chosen and dropped in the same pick.
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, DAY + 1)), Some(1));
        assert_eq!(replicas(&lblcr, 1, DAY + 1), [0]);
    }

    #[test]
    fn entries_expire_after_a_day_unused() {
        let mut list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblcr = fresh(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(0));
        list[0].active = 1;
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, DAY - 1)), Some(0));
        assert_eq!(lblcr.live_entries(2 * DAY - 2), 1);
        assert_eq!(lblcr.live_entries(2 * DAY - 1), 0);
        assert_eq!(
            reported_pick(&mut lblcr, &list, &to(1, 2 * DAY - 1)),
            Some(1)
        );
    }

    #[test]
    fn sets_and_table_are_bounded() {
        // A set never exceeds MAX_REPLICAS: each pick overloads the last choice.
        let n = MAX_REPLICAS + 5;
        let mut list = vec![server(4, 0, 0); n];
        list.push(server(1000, 0, 0)); // always below half: enables overload
        let mut lblcr = fresh(&list);
        for step in 0..n as u64 {
            let chosen = reported_pick(&mut lblcr, &list, &to(1, step)).unwrap();
            assert_eq!(chosen, step as usize);
            list[chosen].active = 5;
            list[n].weight = 1000;
            assert!(replicas(&lblcr, 1, step).len() <= MAX_REPLICAS);
        }
        let set = replicas(&lblcr, 1, n as u64);
        assert_eq!(set.len(), MAX_REPLICAS);
        assert_eq!(set[0] as usize, n - 1);
        // The table: a one-set table keeps the WAYS most recent destinations.
        let one = vec![server(1, 0, 0)];
        let mut small = LocalityReplicated::with_capacity(1, DAY);
        small.update(&one);
        assert_eq!(small.capacity(), WAYS);
        for dest in 0..100u32 {
            assert_eq!(
                reported_pick(&mut small, &one, &to(dest, u64::from(dest))),
                Some(0)
            );
        }
        assert_eq!(small.live_entries(100), WAYS);
        assert_eq!(replicas(&small, 99, 100), [0]);
        assert_eq!(replicas(&small, 0, 100), Vec::<u32>::new());
    }

    #[test]
    fn server_count_change_forgets() {
        let mut list = vec![server(1, 0, 0)];
        let mut lblcr = fresh(&list);
        assert_eq!(reported_pick(&mut lblcr, &list, &to(1, 0)), Some(0));
        lblcr.update(&list);
        assert_eq!(lblcr.live_entries(0), 1);
        list.push(server(1, 0, 0));
        lblcr.update(&list);
        assert_eq!(lblcr.live_entries(0), 0);
    }

    /// The kernel rule with unbounded maps and sets.
    #[derive(Default)]
    struct Reference {
        table: HashMap<u32, (Vec<usize>, u64, u64)>,
    }

    fn wlc(servers: &[ServerLoad]) -> Option<usize> {
        WeightedLeastConnection::scan(servers)
    }

    /// Position in `set` of the least (or most) overhead/weight member of
    /// positive weight, earliest on ties.
    fn extreme(servers: &[ServerLoad], set: &[usize], most: bool) -> Option<usize> {
        let load = |i: usize| {
            (
                u128::from(servers[i].overhead()),
                u128::from(servers[i].weight),
            )
        };
        let mut best: Option<usize> = None;
        for (pos, &i) in set.iter().enumerate() {
            if servers[i].weight == 0 {
                continue;
            }
            if let Some(b) = best {
                let ((bo, bw), (io, iw)) = (load(set[b]), load(i));
                let i_better = if most {
                    io * bw > bo * iw
                } else {
                    io * bw < bo * iw
                };
                if !i_better {
                    continue;
                }
            }
            best = Some(pos);
        }
        best
    }

    impl Reference {
        fn pick(&mut self, servers: &[ServerLoad], dest: u32, now: u64) -> Option<usize> {
            let live = matches!(self.table.get(&dest), Some((_, last, _)) if now - last < DAY);
            if !live {
                let chosen = wlc(servers)?;
                self.table.insert(dest, (vec![chosen], now, now));
                return Some(chosen);
            }
            let (set, last_use, last_grown) = self.table.get_mut(&dest).unwrap();
            *last_use = now;
            let least = extreme(servers, set, false).map(|p| set[p]);
            if set.len() > 1 && now - *last_grown > DAY {
                if let Some(p) = extreme(servers, set, true) {
                    set.remove(p);
                }
            }
            if let Some(m) = least {
                let overloaded = servers[m].active > servers[m].weight
                    && servers
                        .iter()
                        .any(|d| 2 * u64::from(d.active) < u64::from(d.weight));
                if !overloaded {
                    return Some(m);
                }
            }
            let chosen = wlc(servers)?;
            if !set.contains(&chosen) {
                set.insert(0, chosen);
                *last_grown = now;
            }
            Some(chosen)
        }
    }

    proptest! {
        /// Few destinations and servers (no evictions, sets never full),
        /// loads changing between picks, time jumping across expirations.
        #[test]
        fn matches_reference(
            list_len in 1usize..7,
            steps in prop::collection::vec(
                (servers(), 0u32..5, 0u64..(DAY / 2), any::<bool>()),
                1..60,
            ),
        ) {
            let mut lblcr = LocalityReplicated::new();
            let mut reference = Reference::default();
            let mut now = 0;
            let mut previous: Option<Vec<ServerLoad>> = None;
            for (mut list, dest, dt, keep_weights) in steps {
                list.resize(list_len, server(1, 0, 0));
                now += dt;
                // Only the counts changed: reported one server at a time,
                // as the worker does; else a configuration change.
                match &previous {
                    Some(before) if keep_weights => {
                        for (server, old) in list.iter_mut().zip(before) {
                            server.weight = old.weight;
                        }
                        for index in 0..list.len() {
                            if list[index] != before[index] {
                                lblcr.load_changed(&list, index);
                            }
                        }
                    }
                    _ => lblcr.update(&list),
                }
                previous = Some(list.clone());
                let got = lblcr.pick(&list, &to(dest, now));
                prop_assert_eq!(got, reference.pick(&list, dest, now));
                if let Some(i) = got {
                    prop_assert!(list[i].weight > 0);
                }
                let expected: Vec<u32> = reference
                    .table
                    .get(&dest)
                    .filter(|(_, last, _)| now - last < DAY)
                    .map(|(set, _, _)| set.iter().map(|&i| i as u32).collect())
                    .unwrap_or_default();
                prop_assert_eq!(replicas(&lblcr, dest, now), expected);
            }
        }
    }
}
