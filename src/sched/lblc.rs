//! Locality-based least connection (`lblc`), as IPVS's `ip_vs_lblc.c`.
//!
//! Meant for cache clusters, where the destination address of the request
//! says which object is wanted: connections for the same destination should
//! keep going to the same server, so that its cache stays warm, unless that
//! server is overloaded. The key is the flow's destination address,
//! [`FlowInfo::virtual_addr`] (for a plain virtual-address service it is
//! the one VIP, so all its flows share one entry; the scheduler only shows
//! locality where the destination varies, e.g. firewall-mark services).
//!
//! # Rule
//!
//! A table maps destination address → (server, time of last use). For a
//! new connection to destination `d` at time `now`:
//!
//! 1. If `d` has a live entry (see Expiry), its last use becomes `now`.
//!    If its server `s` has a positive weight and is not overloaded, `s` is
//!    the answer.
//! 2. Otherwise (no entry, or `s` unusable) the server is chosen by the
//!    `wlc` rule ([`WeightedLeastConnection`]: least
//!    `(active * 256 + inactive) / weight`, ties to the first), and
//!    remembered for `d` (a new entry, or the old one repointed). If no
//!    server has a positive weight the answer is `None` and nothing is
//!    remembered.
//!
//! Server `s` is *overloaded* when it holds more active connections than
//! its weight while some server of the service is below half its own:
//!
//! ```text
//! active(s) > weight(s)  and  exists j: 2 * active(j) < weight(j)
//! ```
//!
//! (`j` ranges over all servers, whatever their weight; the kernel's
//! `is_overloaded`.) So a busy server keeps its destinations as long as
//! everybody else is busy too.
//!
//! # Expiry
//!
//! An entry not used for [`DEFAULT_EXPIRATION_MS`] (24 hours, the kernel's
//! `lblc_expiration` sysctl default) is dead: `now - last_use >= expiration`.
//! The kernel deletes such entries from a timer that runs a full sweep
//! every 30 minutes, so an entry may there outlive its expiry by up to half
//! an hour; here expiry is checked exactly, at lookup, against `flow.now`
//! (the worker's clock in ms; no timer, no sleeping).
//!
//! # Table
//!
//! Fixed capacity, allocated once in [`LocalityLeastConnection::new`] /
//! [`with_capacity`](LocalityLeastConnection::with_capacity); `pick` never
//! allocates. The table is set-associative: a multiplicative hash of the
//! address selects a set of [`WAYS`] slots, and a lookup or insertion looks
//! at that set only (O(1)). A new entry takes an empty or dead slot of its
//! set, else evicts the least recently used entry of the set. Default
//! capacity is [`DEFAULT_CAPACITY`] entries (16 bytes each, 256 KiB), the
//! size past which the kernel starts collecting entries idle for 6 minutes.
//! Deviation: the kernel's table has no hard bound (it shrinks by garbage
//! collection); ours evicts, per set, the least recently used entry, so an
//! evicted destination is simply scheduled afresh by `wlc`.
//!
//! # Configuration changes
//!
//! Entries hold server *indices*, and [`Scheduler::update`] cannot tell a
//! weight change from a reordering. When the number of servers changes
//! (a server added or removed, so indices may have shifted) `update` forgets
//! every entry; when it is unchanged (a weight change) the entries stay,
//! as in the kernel. A reordering of the same number of servers therefore
//! keeps entries that now name other servers: harmless (they are still
//! checked for weight and overload), but locality is lost until they are
//! repointed; call [`clear`](LocalityLeastConnection::clear) in that case.
//! Deviation: the kernel, keyed by server identity, keeps the other
//! servers' entries when one server is added or removed.
//!
//! # Cost
//!
//! The kernel walks the server list for the overload test and again for
//! the `wlc` choice. Here both are kept up to date as loads change: the
//! `wlc` choice in a tournament tree ([`WeightedLeastConnection`]) and the
//! number of servers below half their weight in a counter. A pick is O(WAYS)
//! for the table plus O(1); [`Scheduler::load_changed`] is O(log n) and
//! `update` O(n). A list of another length than at the last `update` is
//! handled by walking it, as the kernel does; debug builds check that no
//! load change went unreported.

use super::{FlowInfo, Scheduler, ServerLoad, WeightedLeastConnection};

/// Entries unused for this long are forgotten: 24 h in ms.
pub const DEFAULT_EXPIRATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Default number of table entries.
pub const DEFAULT_CAPACITY: usize = 16 * 1024;
/// Slots per set of the set-associative table.
pub const WAYS: usize = 8;

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Destination address (IPv4, host order).
    key: u32,
    /// Server index, or [`EMPTY`].
    server: u32,
    /// `FlowInfo::now` of the last pick that used the entry.
    last_use: u64,
}

const FREE: Slot = Slot {
    key: 0,
    server: EMPTY,
    last_use: 0,
};

/// The `lblc` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct LocalityLeastConnection {
    slots: Box<[Slot]>,
    /// Number of sets minus one (the number of sets is a power of two).
    set_mask: usize,
    expiration: u64,
    /// Server count at the last `update`.
    servers_len: usize,
    /// The `wlc` choice, kept ordered (see [`WeightedLeastConnection`]).
    wlc: WeightedLeastConnection,
    half_idle: HalfIdle,
}

impl Default for LocalityLeastConnection {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `server` holds fewer active connections than half its weight.
#[inline]
fn below_half(server: &ServerLoad) -> bool {
    u64::from(server.active) * 2 < u64::from(server.weight)
}

/// The "some server is below half its weight" part of the overload test,
/// kept per load change so that the test costs O(1) instead of a walk.
/// Rebuilt by `update` (O(n)), adjusted by `load_changed` (O(1)).
#[derive(Clone, Debug, Default)]
pub(crate) struct HalfIdle {
    /// Per server, whether it was below half at the last report.
    below: Vec<bool>,
    /// How many are.
    count: usize,
}

impl HalfIdle {
    pub(crate) fn rebuild(&mut self, servers: &[ServerLoad]) {
        self.below.clear();
        self.below.extend(servers.iter().map(below_half));
        self.count = self.below.iter().filter(|&&b| b).count();
    }

    /// Server `index`'s load changed. Ignored for a list of another
    /// length (`any` then walks the list).
    #[inline]
    pub(crate) fn set(&mut self, servers: &[ServerLoad], index: usize) {
        if servers.len() != self.below.len() || index >= servers.len() {
            return;
        }
        let now = below_half(&servers[index]);
        if std::mem::replace(&mut self.below[index], now) != now {
            if now {
                self.count += 1;
            } else {
                self.count -= 1;
            }
        }
    }

    /// Whether some server is below half its weight. O(1) while every
    /// change was reported; a walk for a list of another length. Debug
    /// builds check the count against the slice.
    #[inline]
    pub(crate) fn any(&self, servers: &[ServerLoad]) -> bool {
        if servers.len() != self.below.len() {
            return servers.iter().any(below_half);
        }
        debug_assert_eq!(
            self.count,
            servers.iter().filter(|s| below_half(s)).count(),
            "lblc/lblcr: a load change was not reported"
        );
        self.count > 0
    }
}

/// `is_overloaded` of the kernel's `lblc` and `lblcr` (see the module
/// documentation); `half_idle` knows whether some server is below half.
#[inline]
pub(crate) fn is_overloaded(
    servers: &[ServerLoad],
    server: &ServerLoad,
    half_idle: &HalfIdle,
) -> bool {
    server.active > server.weight && half_idle.any(servers)
}

/// The set index for `key` in a table of `set_mask + 1` sets.
#[inline]
pub(crate) fn set_of(key: u32, set_mask: usize) -> usize {
    let hash = u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (hash >> 32) as usize & set_mask
}

/// Number of sets (a power of two) for at least `entries` entries.
pub(crate) fn sets_for(entries: usize) -> usize {
    entries.div_ceil(WAYS).max(1).next_power_of_two()
}

impl LocalityLeastConnection {
    /// Default capacity and expiration (control path: allocates).
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, DEFAULT_EXPIRATION_MS)
    }

    /// Room for at least `entries` destinations (rounded up to a power of
    /// two times [`WAYS`]); entries die after `expiration_ms` unused.
    pub fn with_capacity(entries: usize, expiration_ms: u64) -> Self {
        let sets = sets_for(entries);
        Self {
            slots: vec![FREE; sets * WAYS].into_boxed_slice(),
            set_mask: sets - 1,
            expiration: expiration_ms,
            servers_len: 0,
            wlc: WeightedLeastConnection::new(),
            half_idle: HalfIdle::default(),
        }
    }

    /// Total number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Forgets every destination.
    pub fn clear(&mut self) {
        self.slots.fill(FREE);
    }

    /// Entries still live at `now`.
    pub fn live_entries(&self, now: u64) -> usize {
        self.slots.iter().filter(|s| self.is_live(s, now)).count()
    }

    fn is_live(&self, slot: &Slot, now: u64) -> bool {
        slot.server != EMPTY && now.saturating_sub(slot.last_use) < self.expiration
    }
}

impl Scheduler for LocalityLeastConnection {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize> {
        let key = u32::from(flow.virtual_addr);
        let now = flow.now;
        let expiration = self.expiration;
        let live = |s: &Slot| s.server != EMPTY && now.saturating_sub(s.last_use) < expiration;
        let start = set_of(key, self.set_mask) * WAYS;
        let set = &mut self.slots[start..start + WAYS];

        if let Some(slot) = set.iter_mut().find(|s| live(s) && s.key == key) {
            slot.last_use = now;
            let index = slot.server as usize;
            if let Some(server) = servers.get(index) {
                if server.is_available() && !is_overloaded(servers, server, &self.half_idle) {
                    return Some(index);
                }
            }
            let chosen = self.wlc.pick(servers, flow)?;
            // An index past u32 cannot be remembered: the slot is dropped.
            slot.server = u32::try_from(chosen).unwrap_or(EMPTY);
            return Some(chosen);
        }

        let chosen = self.wlc.pick(servers, flow)?;
        let Ok(server) = u32::try_from(chosen) else {
            return Some(chosen);
        };
        // A dead or empty slot, else the least recently used one.
        let victim = match set.iter().position(|s| !live(s)) {
            Some(free) => free,
            None => {
                let mut oldest = 0;
                for (i, s) in set.iter().enumerate() {
                    if s.last_use < set[oldest].last_use {
                        oldest = i;
                    }
                }
                oldest
            }
        };
        set[victim] = Slot {
            key,
            server,
            last_use: now,
        };
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

    fn fresh(servers: &[ServerLoad]) -> LocalityLeastConnection {
        let mut lblc = LocalityLeastConnection::new();
        lblc.update(servers);
        lblc
    }

    #[test]
    fn same_destination_same_server() {
        let mut list = vec![server(1, 0, 0), server(1, 0, 0), server(1, 0, 0)];
        let mut lblc = fresh(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(1, 0)), Some(0));
        list[0].active += 1;
        // wlc would now pick 1; the entry keeps destination 1 on server 0.
        assert_eq!(reported_pick(&mut lblc, &list, &to(1, 10)), Some(0));
        // A new destination goes by wlc.
        assert_eq!(reported_pick(&mut lblc, &list, &to(2, 10)), Some(1));
        list[1].active += 1;
        assert_eq!(reported_pick(&mut lblc, &list, &to(3, 10)), Some(2));
        assert_eq!(reported_pick(&mut lblc, &list, &to(2, 20)), Some(1));
        assert_eq!(reported_pick(&mut lblc, &list, &to(1, 20)), Some(0));
        assert_eq!(lblc.live_entries(20), 3);
    }

    #[test]
    fn overload_needs_a_half_idle_server_elsewhere() {
        // Server 0: 3 active > weight 2. Server 1: 2*1 < 4 is half idle.
        let mut list = vec![server(2, 0, 0), server(4, 1, 0)];
        let mut lblc = fresh(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(7, 0)), Some(0));
        // At its weight: not overloaded.
        list[0].active = 2;
        assert_eq!(reported_pick(&mut lblc, &list, &to(7, 1)), Some(0));
        // Past it, but the other is at half (2*2 == 4, not below): kept.
        list[0].active = 3;
        list[1].active = 2;
        assert_eq!(reported_pick(&mut lblc, &list, &to(7, 2)), Some(0));
        // The other drops below half: overloaded, re-picked by wlc, remembered.
        list[1].active = 1;
        assert_eq!(reported_pick(&mut lblc, &list, &to(7, 3)), Some(1));
        list[0].active = 0;
        assert_eq!(reported_pick(&mut lblc, &list, &to(7, 4)), Some(1));
    }

    #[test]
    fn a_weight_zero_server_loses_its_destinations() {
        let mut list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblc = fresh(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(9, 0)), Some(0));
        list[0].weight = 0;
        lblc.update(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(9, 1)), Some(1));
        list[0].weight = 1;
        lblc.update(&list);
        // Repointed: stays on 1.
        assert_eq!(reported_pick(&mut lblc, &list, &to(9, 2)), Some(1));
    }

    #[test]
    fn nothing_available_gives_none_and_keeps_nothing() {
        let list = vec![server(0, 0, 0), server(0, 0, 0)];
        let mut lblc = fresh(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(1, 0)), None);
        assert_eq!(reported_pick(&mut lblc, &[], &to(1, 0)), None);
        assert_eq!(lblc.live_entries(0), 0);
        assert_eq!(lblc.name(), "lblc");
    }

    #[test]
    fn entries_expire_after_a_day_unused() {
        let day = DEFAULT_EXPIRATION_MS;
        let mut list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblc = fresh(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(5, 1000)), Some(0));
        list[0].active = 1;
        // Used just before expiry: kept, and the use refreshes it.
        assert_eq!(
            reported_pick(&mut lblc, &list, &to(5, 1000 + day - 1)),
            Some(0)
        );
        assert_eq!(
            reported_pick(&mut lblc, &list, &to(5, 1000 + 2 * day - 2)),
            Some(0)
        );
        // A full day unused: gone, scheduled afresh.
        assert_eq!(lblc.live_entries(1000 + 3 * day - 2), 0);
        assert_eq!(
            reported_pick(&mut lblc, &list, &to(5, 1000 + 3 * day - 2)),
            Some(1)
        );
    }

    #[test]
    fn server_count_change_forgets_weight_change_keeps() {
        let mut list = vec![server(1, 0, 0), server(1, 0, 0)];
        let mut lblc = fresh(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(5, 0)), Some(0));
        list[0].active = 1;
        list[0].weight = 2;
        lblc.update(&list);
        assert_eq!(reported_pick(&mut lblc, &list, &to(5, 1)), Some(0));
        list.push(server(1, 0, 0));
        lblc.update(&list);
        assert_eq!(lblc.live_entries(1), 0);
        assert_eq!(reported_pick(&mut lblc, &list, &to(5, 2)), Some(1));
    }

    #[test]
    fn stale_index_without_update_does_not_panic() {
        let list = vec![server(1, 0, 0), server(1, 0, 0), server(1, 1, 0)];
        let mut lblc = fresh(&list);
        // Land destination 5 on server 2.
        let loaded = [server(1, 1, 0), server(1, 1, 0), server(1, 0, 0)];
        assert_eq!(reported_pick(&mut lblc, &loaded, &to(5, 0)), Some(2));
        let shorter = [server(1, 0, 0)];
        assert_eq!(reported_pick(&mut lblc, &shorter, &to(5, 1)), Some(0));
    }

    #[test]
    fn capacity_is_bounded_and_evicts_least_recently_used() {
        let list = vec![server(1, 0, 0)];
        let mut lblc = LocalityLeastConnection::with_capacity(1, DEFAULT_EXPIRATION_MS);
        lblc.update(&list);
        assert_eq!(lblc.capacity(), WAYS);
        for dest in 0..1000u32 {
            assert_eq!(
                reported_pick(&mut lblc, &list, &to(dest, u64::from(dest))),
                Some(0)
            );
        }
        assert_eq!(lblc.live_entries(1000), WAYS);
        // The survivors are the most recently used ones.
        for s in lblc.slots.iter() {
            assert!(s.key >= 1000 - WAYS as u32, "{}", s.key);
        }
        assert_eq!(LocalityLeastConnection::new().capacity(), DEFAULT_CAPACITY);
        assert_eq!(
            LocalityLeastConnection::with_capacity(100, 1).capacity(),
            16 * WAYS
        );
    }

    /// The kernel rule with an unbounded map (no evictions).
    #[derive(Default)]
    struct Reference {
        table: HashMap<u32, (usize, u64)>,
    }

    impl Reference {
        fn pick(&mut self, servers: &[ServerLoad], dest: u32, now: u64) -> Option<usize> {
            if let Some(&(s, last)) = self.table.get(&dest) {
                if now - last < DEFAULT_EXPIRATION_MS {
                    self.table.insert(dest, (s, now));
                    let overloaded = servers[s].active > servers[s].weight
                        && servers
                            .iter()
                            .any(|d| 2 * u64::from(d.active) < u64::from(d.weight));
                    if servers[s].weight > 0 && !overloaded {
                        return Some(s);
                    }
                }
            }
            let chosen = WeightedLeastConnection::scan(servers)?;
            self.table.insert(dest, (chosen, now));
            Some(chosen)
        }
    }

    proptest! {
        /// Few destinations (no evictions), loads changing between picks,
        /// time advancing in jumps across the expiry.
        #[test]
        fn matches_reference(
            list_len in 1usize..6,
            steps in prop::collection::vec(
                (servers(), 0u32..6, 0u64..(DEFAULT_EXPIRATION_MS / 2), any::<bool>()),
                1..40,
            ),
        ) {
            let mut lblc = LocalityLeastConnection::new();
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
                                lblc.load_changed(&list, index);
                            }
                        }
                    }
                    _ => lblc.update(&list),
                }
                previous = Some(list.clone());
                let got = lblc.pick(&list, &to(dest, now));
                prop_assert_eq!(got, reference.pick(&list, dest, now));
                if let Some(i) = got {
                    prop_assert!(list[i].weight > 0);
                }
            }
        }
    }
}
