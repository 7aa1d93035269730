//! Maglev hashing (`mh`), as IPVS's `ip_vs_mh.c`: a client always lands on
//! the same server, and a change to the server list moves few clients.
//!
//! A new connection's client address (and client port, with the `mh-port`
//! flag, for TCP, UDP and SCTP) is hashed and looked up in a
//! [`MaglevTable`] (see [`super::maglev`] for how the table is built):
//!
//! ```text
//! h = client_hash(addr, port, 0)          server = table[h mod M]
//! ```
//!
//! If that server is unavailable (weight 0 now, though the table was built
//! when it had a weight, or an index the current list lacks), the flow is
//! refused (`None`), unless the service has `mh-fallback`. Then, as the
//! kernel does, the client is re-hashed with an offset that moves on each
//! try, landing on pseudo-random entries until one names an available
//! server:
//!
//! ```text
//! i = h mod M;   for k = 0, 1, ...:  table[client_hash(addr, port, (k + i) mod M) mod M]
//! ```
//!
//! The kernel keeps trying up to `M` times. To keep a pick bounded we stop
//! after [`MAX_FALLBACK_PROBES`]; when all of them fail (it takes a table
//! in which almost every entry is unavailable), the client goes to one of
//! the available servers chosen by `h`: entry `h mod n` of the list of
//! available servers computed by the last `update`. Either way the choice
//! depends only on the client and the configuration.
//!
//! # Where the table comes from
//!
//! The table maps *identities* (address and port) to indices into the
//! server slice. The scheduler only sees `ServerLoad`s, so:
//!
//! * [`MaglevHash::new`] builds its own table on every [`Scheduler::update`]
//!   from the current weights, naming server `i` by its position `i`. This
//!   works, but a position is not an identity: removing a server renumbers
//!   the ones after it and moves their clients, which defeats the purpose.
//! * [`MaglevHash::with_table`] / [`MaglevHash::set_table`] take a table
//!   the management thread built by identity (shared with every worker
//!   through an `Arc`); `update` then leaves the table alone. To quiesce a
//!   server like the kernel does (its last non-zero weight keeps its
//!   entries, so setting weight 0 only sheds its own clients), build the
//!   table with each server's last non-zero weight.
//!
//! Cost of a pick: one SipHash-1-3 of 10 bytes and a load; with fallback,
//! at most [`MAX_FALLBACK_PROBES`] more. No allocation, no lock.

use std::sync::Arc;

use super::hashing::{hashed_port, usable, HashFlags};
use super::maglev::{client_hash, MaglevTable, ServerIdentity};
use super::{FlowInfo, Scheduler, ServerLoad};
use std::net::Ipv4Addr;

/// Re-hashes tried by `mh-fallback` before the last resort.
pub const MAX_FALLBACK_PROBES: usize = 64;

/// The `mh` scheduler. See the module documentation.
#[derive(Clone, Debug)]
pub struct MaglevHash {
    flags: HashFlags,
    table: Arc<MaglevTable>,
    /// The table came from outside: `update` does not rebuild it.
    external: bool,
    /// Indices of the available servers at the last `update`.
    available: Vec<u32>,
}

impl MaglevHash {
    /// An `mh` scheduler building its own table of `size` entries (a
    /// prime; see [`super::maglev::PRIMES`]) on every `update`, naming
    /// servers by position.
    ///
    /// # Panics
    ///
    /// If `size` is not prime.
    pub fn new(flags: HashFlags, size: usize) -> Self {
        Self {
            flags,
            table: Arc::new(MaglevTable::build(&[], size)),
            external: false,
            available: Vec::new(),
        }
    }

    /// An `mh` scheduler using `table`, built elsewhere for the service's
    /// servers in their current order. `update` will not rebuild it.
    pub fn with_table(flags: HashFlags, table: Arc<MaglevTable>) -> Self {
        Self {
            flags,
            table,
            external: true,
            available: Vec::new(),
        }
    }

    /// Replaces the table (built for the server slice the next picks will
    /// see); from now on `update` does not rebuild it.
    pub fn set_table(&mut self, table: Arc<MaglevTable>) {
        self.table = table;
        self.external = true;
    }

    /// Builds a table by identity for `servers` (identity, weight), in the
    /// order of the slice the next picks will see. Control plane.
    pub fn rebuild(&mut self, servers: &[(ServerIdentity, u32)]) {
        let size = self.table.size();
        self.set_table(Arc::new(MaglevTable::build(servers, size)));
    }

    pub fn table(&self) -> &Arc<MaglevTable> {
        &self.table
    }

    pub fn flags(&self) -> HashFlags {
        self.flags
    }

    /// The stand-in identity of position `index` when none is known.
    fn positional_identity(index: usize) -> ServerIdentity {
        ServerIdentity::new(Ipv4Addr::from(index as u32), 0)
    }

    /// The bounded version of the kernel's fallback search.
    fn fallback(
        &self,
        servers: &[ServerLoad],
        addr: Ipv4Addr,
        port: u16,
        hash: u32,
    ) -> Option<usize> {
        let size = self.table.size();
        let first = hash as usize % size;
        for offset in 0..MAX_FALLBACK_PROBES.min(size) {
            let shifted = (offset + first) % size;
            let index = self.table.lookup(client_hash(addr, port, shifted as u32))?;
            if usable(servers, index) {
                return Some(index);
            }
        }
        if self.available.is_empty() {
            return None;
        }
        let index = self.available[hash as usize % self.available.len()] as usize;
        usable(servers, index).then_some(index)
    }
}

impl Scheduler for MaglevHash {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn pick(&mut self, servers: &[ServerLoad], flow: &FlowInfo) -> Option<usize> {
        let port = hashed_port(self.flags, flow);
        let hash = client_hash(flow.client_addr, port, 0);
        let index = self.table.lookup(hash)?;
        if usable(servers, index) {
            Some(index)
        } else if self.flags.fallback {
            self.fallback(servers, flow.client_addr, port, hash)
        } else {
            None
        }
    }

    fn update(&mut self, servers: &[ServerLoad]) {
        self.available.clear();
        self.available.extend(
            (0..servers.len())
                .filter(|&i| servers[i].is_available())
                .map(|i| i as u32),
        );
        if !self.external {
            let list: Vec<(ServerIdentity, u32)> = servers
                .iter()
                .enumerate()
                .map(|(i, s)| (Self::positional_identity(i), s.weight))
                .collect();
            self.table = Arc::new(MaglevTable::build(&list, self.table.size()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::maglev::DEFAULT_SIZE;
    use crate::sched::testing::{flow, servers, weighted};
    use proptest::prelude::*;

    const PORT: HashFlags = HashFlags {
        port: true,
        fallback: false,
    };
    const FALLBACK: HashFlags = HashFlags {
        port: false,
        fallback: true,
    };

    fn client(n: u32, port: u16) -> FlowInfo {
        FlowInfo {
            client_addr: Ipv4Addr::from(0xc612_0000u32.wrapping_add(n)),
            client_port: port,
            ..flow()
        }
    }

    fn ids(n: usize) -> Vec<ServerIdentity> {
        (0..n)
            .map(|i| ServerIdentity::new(Ipv4Addr::new(10, 0, 0, i as u8 + 1), 80))
            .collect()
    }

    fn counts(sched: &mut MaglevHash, list: &[ServerLoad], clients: u32) -> Vec<u32> {
        let mut counts = vec![0u32; list.len()];
        for n in 0..clients {
            counts[sched.pick(list, &client(n, 1)).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn name() {
        assert_eq!(MaglevHash::new(HashFlags::NONE, 251).name(), "mh");
    }

    #[test]
    fn same_client_same_server() {
        let list = weighted(&[1, 1, 1, 1]);
        let mut sched = MaglevHash::new(HashFlags::NONE, DEFAULT_SIZE);
        sched.update(&list);
        for n in 0..200 {
            let first = sched.pick(&list, &client(n, 1000));
            assert!(first.is_some());
            // Without mh-port the client port is ignored.
            assert_eq!(sched.pick(&list, &client(n, 2000)), first);
            let mut other = MaglevHash::new(HashFlags::NONE, DEFAULT_SIZE);
            other.update(&list);
            assert_eq!(other.pick(&list, &client(n, 1000)), first);
        }
    }

    #[test]
    fn clients_spread_by_weight() {
        let list = weighted(&[1, 2, 3, 0]);
        let mut sched = MaglevHash::new(HashFlags::NONE, DEFAULT_SIZE);
        sched.update(&list);
        let c = counts(&mut sched, &list, 60_000);
        assert_eq!(c[3], 0);
        for (i, expected) in [(0, 10_000.0), (1, 20_000.0), (2, 30_000.0)] {
            let error = (f64::from(c[i]) - expected).abs() / expected;
            assert!(error < 0.05, "{c:?}");
        }
    }

    #[test]
    fn port_flag_hashes_the_port() {
        let list = weighted(&[1, 1, 1, 1]);
        let mut with_port = MaglevHash::new(PORT, DEFAULT_SIZE);
        with_port.update(&list);
        let picks: std::collections::HashSet<_> = (0..100)
            .map(|p| with_port.pick(&list, &client(7, 1000 + p)).unwrap())
            .collect();
        assert_eq!(
            picks.len(),
            4,
            "one client over 100 ports reaches every server"
        );
        // Stable per (address, port).
        assert_eq!(
            with_port.pick(&list, &client(7, 1234)),
            with_port.pick(&list, &client(7, 1234))
        );
        // Protocols without ports: the port is ignored.
        let icmp = |port| FlowInfo {
            protocol: 1,
            ..client(7, port)
        };
        let first = with_port.pick(&list, &icmp(1));
        assert!((2..100).all(|p| with_port.pick(&list, &icmp(p)) == first));
    }

    #[test]
    fn update_rebuilds_the_table() {
        let mut sched = MaglevHash::new(HashFlags::NONE, 4093);
        let list = weighted(&[1, 1, 1]);
        sched.update(&list);
        assert!(counts(&mut sched, &list, 3000).iter().all(|&c| c > 800));
        let drained = weighted(&[1, 0, 1]);
        sched.update(&drained);
        let c = counts(&mut sched, &drained, 3000);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 3000);
        sched.update(&weighted(&[0, 0, 0]));
        assert_eq!(sched.pick(&weighted(&[0, 0, 0]), &client(1, 1)), None);
    }

    /// A table built by identity with all three servers weighted, while the
    /// live list has server 1 quiesced (weight 0), as the kernel's
    /// last-weight table does.
    fn quiesced(flags: HashFlags) -> (MaglevHash, MaglevHash, Vec<ServerLoad>) {
        let identities = ids(3);
        let table = Arc::new(MaglevTable::build(
            &identities.iter().map(|&id| (id, 1)).collect::<Vec<_>>(),
            DEFAULT_SIZE,
        ));
        let live = weighted(&[1, 0, 1]);
        let mut sched = MaglevHash::with_table(flags, Arc::clone(&table));
        sched.update(&live);
        let mut reference = MaglevHash::with_table(HashFlags::NONE, table);
        reference.update(&weighted(&[1, 1, 1]));
        (sched, reference, live)
    }

    #[test]
    fn quiesced_server_without_fallback_refuses_its_clients() {
        let (mut sched, mut reference, live) = quiesced(HashFlags::NONE);
        let all = weighted(&[1, 1, 1]);
        let mut refused = 0;
        for n in 0..3000 {
            let before = reference.pick(&all, &client(n, 1)).unwrap();
            let now = sched.pick(&live, &client(n, 1));
            if before == 1 {
                assert_eq!(now, None);
                refused += 1;
            } else {
                assert_eq!(now, Some(before), "others keep their server");
            }
        }
        assert!(refused > 800 && refused < 1200, "{refused}");
    }

    #[test]
    fn quiesced_server_with_fallback_sheds_only_its_clients() {
        let (mut sched, mut reference, live) = quiesced(FALLBACK);
        let all = weighted(&[1, 1, 1]);
        let mut moved = [0u32; 3];
        for n in 0..3000 {
            let before = reference.pick(&all, &client(n, 1)).unwrap();
            let now = sched
                .pick(&live, &client(n, 1))
                .expect("fallback finds one");
            assert_ne!(now, 1);
            if before == 1 {
                moved[now] += 1;
                // Deterministic.
                assert_eq!(sched.pick(&live, &client(n, 1)), Some(now));
            } else {
                assert_eq!(now, before, "others keep their server");
            }
        }
        // Spread over both survivors.
        assert!(moved[0] > 300 && moved[2] > 300, "{moved:?}");
    }

    #[test]
    fn fallback_last_resort_when_almost_everything_is_down() {
        // 50 servers in the table, only one live: most clients need the
        // bounded search or the last resort; all must find server 49.
        let identities = ids(50);
        let table = Arc::new(MaglevTable::build(
            &identities.iter().map(|&id| (id, 1)).collect::<Vec<_>>(),
            DEFAULT_SIZE,
        ));
        let mut live = weighted(&[0; 50]);
        live[49].weight = 1;
        let mut sched = MaglevHash::with_table(FALLBACK, table);
        sched.update(&live);
        for n in 0..2000 {
            assert_eq!(sched.pick(&live, &client(n, 1)), Some(49));
        }
        // Nothing live: None, also from the last resort.
        let dead = weighted(&[0; 50]);
        sched.update(&dead);
        assert_eq!(sched.pick(&dead, &client(1, 1)), None);
    }

    #[test]
    fn stale_table_never_yields_missing_index() {
        // Table for 5 servers, list shrunk to 2 without a new table.
        let table = Arc::new(MaglevTable::build(
            &ids(5).iter().map(|&id| (id, 1)).collect::<Vec<_>>(),
            1021,
        ));
        let live = weighted(&[1, 1]);
        for flags in [HashFlags::NONE, FALLBACK] {
            let mut sched = MaglevHash::with_table(flags, Arc::clone(&table));
            sched.update(&live);
            for n in 0..500 {
                if let Some(i) = sched.pick(&live, &client(n, 1)) {
                    assert!(i < 2);
                } else {
                    assert!(!flags.fallback);
                }
            }
        }
    }

    #[test]
    fn rebuild_by_identity_is_order_independent() {
        let identities = ids(6);
        let mut a = MaglevHash::new(HashFlags::NONE, 8191);
        a.rebuild(&identities.iter().map(|&id| (id, 1)).collect::<Vec<_>>());
        let mut reversed = identities.clone();
        reversed.reverse();
        let mut b = MaglevHash::new(HashFlags::NONE, 8191);
        b.rebuild(&reversed.iter().map(|&id| (id, 1)).collect::<Vec<_>>());
        let live = weighted(&[1; 6]);
        a.update(&live);
        b.update(&live);
        for n in 0..500 {
            let pa = a.pick(&live, &client(n, 1)).unwrap();
            let pb = b.pick(&live, &client(n, 1)).unwrap();
            assert_eq!(identities[pa], reversed[pb]);
        }
    }

    proptest! {
        #[test]
        fn never_picks_weight_zero(
            list in servers(),
            table_weights in prop::collection::vec(0u32..4, 0..8),
            port in any::<bool>(),
            fallback in any::<bool>(),
            n in any::<u32>(),
        ) {
            let flags = HashFlags { port, fallback };
            let any_available = list.iter().any(ServerLoad::is_available);
            // Own table, rebuilt from the live weights.
            let mut own = MaglevHash::new(flags, 251);
            own.update(&list);
            match own.pick(&list, &client(n, n as u16)) {
                Some(i) => prop_assert!(list[i].weight > 0),
                None => prop_assert!(!any_available),
            }
            // A foreign (possibly stale) table.
            let foreign: Vec<_> = table_weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (ServerIdentity::new(Ipv4Addr::from(i as u32), 1), w))
                .collect();
            let mut ext = MaglevHash::with_table(flags, Arc::new(MaglevTable::build(&foreign, 251)));
            ext.update(&list);
            match ext.pick(&list, &client(n, n as u16)) {
                Some(i) => prop_assert!(i < list.len() && list[i].weight > 0),
                None => prop_assert!(
                    !any_available || !fallback || table_weights.iter().all(|&w| w == 0)
                ),
            }
        }
    }
}
