//! Next-hop resolution: the ARP cache and the small queue of packets that
//! wait for it. Time is a parameter; nothing here sleeps or allocates after
//! construction.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::addr::MacAddr;
use crate::conn::Millis;

/// How long a learned entry is used without being confirmed by new ARP.
pub const REACHABLE_MS: Millis = 300_000;
/// A learned entry older than this is re-probed while it stays in use.
pub const REFRESH_MS: Millis = 240_000;
/// Interval between ARP requests for an unresolved next hop.
pub const RETRY_MS: Millis = 1_000;
/// Requests sent before giving up on a next hop.
pub const MAX_PROBES: u32 = 3;
/// How long a packet may wait for resolution.
pub const PENDING_MAX_AGE_MS: Millis = RETRY_MS * MAX_PROBES as Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Configured; never expires, never probed.
    Static,
    Reachable {
        confirmed_at: Millis,
        probed_at: Millis,
    },
    Incomplete {
        probes: u32,
        probed_at: Millis,
    },
    /// Resolution failed; packets are dropped until the next retry window.
    Failed {
        since: Millis,
    },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: MacAddr,
    port: usize,
    state: State,
}

/// What a lookup tells the caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send to this MAC.
    Known(MacAddr),
    /// Send to this MAC, and also send an ARP request to refresh the entry.
    KnownRefresh(MacAddr),
    /// Queue the packet and send an ARP request now.
    ProbeNow,
    /// Queue the packet; a request is already on its way.
    Wait,
    /// Resolution failed recently; drop.
    Unreachable,
}

/// The ARP cache of one worker.
pub struct NeighborTable {
    entries: HashMap<Ipv4Addr, Entry>,
    capacity: usize,
}

impl NeighborTable {
    pub fn with_capacity(capacity: usize) -> Self {
        NeighborTable {
            entries: HashMap::with_capacity(capacity),
            capacity,
        }
    }

    /// A permanent entry (`ip neigh ... nud permanent`).
    pub fn add_static(&mut self, ip: Ipv4Addr, mac: MacAddr, port: usize) {
        self.entries.insert(
            ip,
            Entry {
                mac,
                port,
                state: State::Static,
            },
        );
    }

    /// ARP told us `ip` is at `mac` on `port`. New entries are only created
    /// when `create` is set (the ARP was for us, or we asked), so strangers
    /// cannot fill the table.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, port: usize, create: bool, now: Millis) {
        let reachable = State::Reachable {
            confirmed_at: now,
            probed_at: now,
        };
        let room = self.entries.len() < self.capacity;
        match self.entries.get_mut(&ip) {
            Some(e) if e.state == State::Static => {}
            Some(e) => {
                *e = Entry {
                    mac,
                    port,
                    state: reachable,
                }
            }
            None if create && room => {
                self.entries.insert(
                    ip,
                    Entry {
                        mac,
                        port,
                        state: reachable,
                    },
                );
            }
            None => {}
        }
    }

    /// Resolves `ip` for a packet leaving by `port` at `now`.
    pub fn resolve(&mut self, ip: Ipv4Addr, port: usize, now: Millis) -> Resolution {
        let full = self.entries.len() >= self.capacity;
        let Some(e) = self.entries.get_mut(&ip) else {
            if full {
                return Resolution::Unreachable;
            }
            self.entries.insert(
                ip,
                Entry {
                    mac: MacAddr::ZERO,
                    port,
                    state: State::Incomplete {
                        probes: 1,
                        probed_at: now,
                    },
                },
            );
            return Resolution::ProbeNow;
        };
        match e.state {
            State::Static => Resolution::Known(e.mac),
            State::Reachable {
                confirmed_at,
                probed_at,
            } => {
                let age = now.saturating_sub(confirmed_at);
                if age >= REACHABLE_MS {
                    e.state = State::Incomplete {
                        probes: 1,
                        probed_at: now,
                    };
                    Resolution::ProbeNow
                } else if age >= REFRESH_MS && now.saturating_sub(probed_at) >= RETRY_MS {
                    e.state = State::Reachable {
                        confirmed_at,
                        probed_at: now,
                    };
                    Resolution::KnownRefresh(e.mac)
                } else {
                    Resolution::Known(e.mac)
                }
            }
            State::Incomplete { .. } => Resolution::Wait,
            State::Failed { since } if now.saturating_sub(since) >= RETRY_MS => {
                e.state = State::Incomplete {
                    probes: 1,
                    probed_at: now,
                };
                Resolution::ProbeNow
            }
            State::Failed { .. } => Resolution::Unreachable,
        }
    }

    /// The MAC for `ip` if it is usable now (static or reachable).
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        match self.entries.get(&ip)? {
            Entry {
                mac,
                state: State::Static | State::Reachable { .. },
                ..
            } => Some(*mac),
            _ => None,
        }
    }

    /// Slow path: for each incomplete entry due for another request, calls
    /// `probe(port, ip)`; entries out of tries become Failed.
    pub fn tick(&mut self, now: Millis, mut probe: impl FnMut(usize, Ipv4Addr)) {
        for (ip, e) in self.entries.iter_mut() {
            if let State::Incomplete { probes, probed_at } = e.state {
                if now.saturating_sub(probed_at) >= RETRY_MS {
                    if probes >= MAX_PROBES {
                        e.state = State::Failed { since: now };
                    } else {
                        e.state = State::Incomplete {
                            probes: probes + 1,
                            probed_at: now,
                        };
                        probe(e.port, *ip);
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Packets waiting for their next hop's MAC, bounded in number and age.
pub struct PendingQueue<P> {
    slots: Vec<Option<Pending<P>>>,
    used: usize,
    per_hop_limit: usize,
}

struct Pending<P> {
    next_hop: Ipv4Addr,
    port: usize,
    queued_at: Millis,
    packet: P,
}

impl<P> PendingQueue<P> {
    pub fn new(capacity: usize, per_hop_limit: usize) -> Self {
        PendingQueue {
            slots: (0..capacity).map(|_| None).collect(),
            used: 0,
            per_hop_limit,
        }
    }

    /// Parks `packet`; gives it back when the queue (or this hop's share) is full.
    pub fn push(
        &mut self,
        next_hop: Ipv4Addr,
        port: usize,
        packet: P,
        now: Millis,
    ) -> Result<(), P> {
        if self.used == self.slots.len() {
            return Err(packet);
        }
        let same_hop = self
            .slots
            .iter()
            .flatten()
            .filter(|p| p.next_hop == next_hop)
            .count();
        if same_hop >= self.per_hop_limit {
            return Err(packet);
        }
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some(Pending {
                next_hop,
                port,
                queued_at: now,
                packet,
            });
            self.used += 1;
            Ok(())
        } else {
            Err(packet)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    pub fn len(&self) -> usize {
        self.used
    }

    /// Hands every packet whose next hop now resolves to `send(port, mac, packet)`,
    /// and every packet older than [`PENDING_MAX_AGE_MS`] to `expired(packet)`.
    pub fn release(
        &mut self,
        neighbors: &NeighborTable,
        now: Millis,
        mut send: impl FnMut(usize, MacAddr, P),
        mut expired: impl FnMut(P),
    ) {
        if self.used == 0 {
            return;
        }
        for slot in self.slots.iter_mut() {
            let Some(p) = slot.as_ref() else { continue };
            if let Some(mac) = neighbors.mac_of(p.next_hop) {
                let p = slot.take().expect("slot checked above");
                self.used -= 1;
                send(p.port, mac, p.packet);
            } else if now.saturating_sub(p.queued_at) >= PENDING_MAX_AGE_MS {
                let p = slot.take().expect("slot checked above");
                self.used -= 1;
                expired(p.packet);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 11]);

    #[test]
    fn static_entries_resolve_and_never_change() {
        let mut t = NeighborTable::with_capacity(8);
        t.add_static(IP, MAC, 1);
        assert_eq!(t.resolve(IP, 1, 0), Resolution::Known(MAC));
        t.learn(IP, MacAddr([9; 6]), 1, true, 5);
        assert_eq!(t.resolve(IP, 1, 10_000_000), Resolution::Known(MAC));
    }

    #[test]
    fn unknown_hop_probes_then_waits_then_learns() {
        let mut t = NeighborTable::with_capacity(8);
        assert_eq!(t.resolve(IP, 1, 0), Resolution::ProbeNow);
        assert_eq!(t.resolve(IP, 1, 10), Resolution::Wait);
        assert_eq!(t.mac_of(IP), None);
        t.learn(IP, MAC, 1, false, 20);
        assert_eq!(t.resolve(IP, 1, 30), Resolution::Known(MAC));
    }

    #[test]
    fn retries_then_fails_then_tries_again() {
        let mut t = NeighborTable::with_capacity(8);
        assert_eq!(t.resolve(IP, 1, 0), Resolution::ProbeNow);
        let mut probes = Vec::new();
        for now in [500, 1000, 1500, 2000, 3000] {
            t.tick(now, |port, ip| probes.push((now, port, ip)));
        }
        assert_eq!(probes, vec![(1000, 1, IP), (2000, 1, IP)]);
        // Third interval passed with no answer: failed.
        assert_eq!(t.resolve(IP, 1, 3500), Resolution::Unreachable);
        assert_eq!(t.resolve(IP, 1, 4000), Resolution::ProbeNow);
    }

    #[test]
    fn learned_entries_are_refreshed_then_expire() {
        let mut t = NeighborTable::with_capacity(8);
        t.learn(IP, MAC, 0, true, 0);
        assert_eq!(t.resolve(IP, 0, REFRESH_MS - 1), Resolution::Known(MAC));
        assert_eq!(t.resolve(IP, 0, REFRESH_MS), Resolution::KnownRefresh(MAC));
        assert_eq!(t.resolve(IP, 0, REFRESH_MS + 10), Resolution::Known(MAC));
        assert_eq!(t.resolve(IP, 0, REACHABLE_MS), Resolution::ProbeNow);
    }

    #[test]
    fn strangers_do_not_create_entries() {
        let mut t = NeighborTable::with_capacity(1);
        t.learn(IP, MAC, 0, false, 0);
        assert!(t.is_empty());
        t.learn(IP, MAC, 0, true, 0);
        t.learn(Ipv4Addr::new(198, 19, 0, 12), MAC, 0, true, 0);
        assert_eq!(t.len(), 1, "capacity bounds the table");
    }

    #[test]
    fn pending_queue_is_bounded_and_released_on_resolution() {
        let mut t = NeighborTable::with_capacity(8);
        let mut q = PendingQueue::new(3, 2);
        assert!(q.push(IP, 1, vec![1u8], 0).is_ok());
        assert!(q.push(IP, 1, vec![2u8], 0).is_ok());
        assert_eq!(q.push(IP, 1, vec![3u8], 0), Err(vec![3u8]), "per-hop limit");
        let other = Ipv4Addr::new(198, 19, 0, 12);
        assert!(q.push(other, 1, vec![4u8], 0).is_ok());
        assert_eq!(
            q.push(other, 1, vec![5u8], 0),
            Err(vec![5u8]),
            "total limit"
        );

        t.learn(IP, MAC, 1, true, 10);
        let mut sent = Vec::new();
        let mut dropped = Vec::new();
        q.release(
            &t,
            20,
            |port, mac, p| sent.push((port, mac, p)),
            |p| dropped.push(p),
        );
        assert_eq!(sent, vec![(1, MAC, vec![1u8]), (1, MAC, vec![2u8])]);
        assert!(dropped.is_empty());
        assert_eq!(q.len(), 1);

        q.release(
            &t,
            PENDING_MAX_AGE_MS,
            |_, _, p| sent.push((9, MAC, p)),
            |p| dropped.push(p),
        );
        assert_eq!(dropped, vec![vec![4u8]]);
        assert!(q.is_empty());
    }
}
