//! The per-core poll loop: RX bursts from every port, the pipeline, next-hop
//! resolution and buffered TX; between bursts, snapshot pick-up, ARP retries
//! and connection expiry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::conn::Millis;
use crate::counters::{DropReason, WorkerCounters};
use crate::dpdk::{self, Mbuf, Mempool, Port, RxBurst, TxBuffer, TxQueue};
use crate::neigh::{PendingQueue, Resolution};
use crate::pipeline::{encapsulate_ipip, write_l2, DataPlane, Limits, Verdict, IPIP_HEADER_LEN};
use crate::snapshot::Snapshot;

/// Shared between the management thread and the workers.
pub struct Shared {
    /// The current configuration; replaced whole by the management thread.
    pub snapshot: ArcSwap<Snapshot>,
    /// Bumped after every snapshot store so workers notice cheaply.
    pub generation: AtomicU64,
    pub stop: AtomicBool,
}

/// How often the slow path runs (ARP retries, pending queue, expiry).
const SLOW_PATH_MS: Millis = 10;
/// Connection slots examined per slow-path run.
const EXPIRE_BUDGET: usize = 4096;
const PENDING_PACKETS: usize = 256;
const PENDING_PER_HOP: usize = 16;

/// A TSC-based millisecond clock.
#[derive(Clone, Copy)]
pub struct Clock {
    start: u64,
    cycles_per_ms: u64,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: dpdk::rdtsc(),
            cycles_per_ms: (dpdk::tsc_hz() / 1000).max(1),
        }
    }

    #[inline]
    pub fn now(&self) -> Millis {
        (dpdk::rdtsc() - self.start) / self.cycles_per_ms
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Worker {
    pub queue: u16,
    pub ports: Vec<Port>,
    pub pool: Arc<Mempool>,
    pub shared: Arc<Shared>,
    pub counters: Arc<WorkerCounters>,
    pub limits: Limits,
    pub hash_seed: u64,
}

impl Worker {
    /// Runs until `shared.stop` is set. Returns 0 (the lcore exit code).
    pub fn run(self) -> i32 {
        let clock = Clock::new();
        let mut generation = self.shared.generation.load(Ordering::Acquire);
        let mut dp = DataPlane::new(
            self.shared.snapshot.load_full(),
            self.limits,
            self.hash_seed,
            self.counters.clone(),
        );
        let mut tx: Vec<TxBuffer> = self
            .ports
            .iter()
            .map(|&port| {
                TxBuffer::new(TxQueue {
                    port,
                    queue: self.queue,
                })
            })
            .collect();
        let mut tx_seen: Vec<(u64, u64)> = vec![(0, 0); self.ports.len()];
        let mut pending: PendingQueue<Mbuf> = PendingQueue::new(PENDING_PACKETS, PENDING_PER_HOP);
        let mut burst = RxBurst::default();
        let mut next_slow = 0;

        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = clock.now();
            let started = dpdk::rdtsc();
            let mut received = 0;
            for (pi, &port) in self.ports.iter().enumerate() {
                let n = burst.receive(port, self.queue);
                if n == 0 {
                    continue;
                }
                received += n;
                self.counters.ports[pi].rx_packets.add(n as u64);
                for m in &mut burst {
                    self.handle(&mut dp, &mut tx, &mut pending, m, pi, now);
                }
            }
            for (pi, t) in tx.iter_mut().enumerate() {
                t.flush();
                self.publish_tx(pi, t, &mut tx_seen[pi]);
            }
            if received > 0 {
                self.counters.busy_cycles.add(dpdk::rdtsc() - started);
            }

            if now >= next_slow {
                next_slow = now + SLOW_PATH_MS;
                let current = self.shared.generation.load(Ordering::Acquire);
                if current != generation {
                    generation = current;
                    dp.apply_snapshot(self.shared.snapshot.load_full());
                }
                self.slow_path(&mut dp, &mut tx, &mut pending, now);
                for (pi, t) in tx.iter_mut().enumerate() {
                    t.flush();
                    self.publish_tx(pi, t, &mut tx_seen[pi]);
                }
            }
        }
        0
    }

    fn publish_tx(&self, pi: usize, t: &TxBuffer, seen: &mut (u64, u64)) {
        let c = &self.counters;
        c.ports[pi].tx_packets.add(t.sent - seen.0);
        c.drops[DropReason::TxFull as usize].add(t.dropped - seen.1);
        *seen = (t.sent, t.dropped);
    }

    /// One received packet: the pipeline, then TX or a drop (a dropped
    /// `Mbuf` goes back to the pool when it goes out of scope).
    #[inline]
    fn handle(
        &self,
        dp: &mut DataPlane,
        tx: &mut [TxBuffer],
        pending: &mut PendingQueue<Mbuf>,
        mut m: Mbuf,
        in_port: usize,
        now: Millis,
    ) {
        if m.segments() != 1 {
            dp.counters.count_drop(DropReason::MultiSegment);
            return;
        }
        match dp.process(m.data_mut(), in_port, now) {
            Verdict::Forward { port, next_hop } => {
                self.send_or_park(dp, tx, pending, m, port, next_hop, now)
            }
            Verdict::Encapsulate {
                port,
                next_hop,
                outer_src,
                outer_dst,
            } => {
                if !m.prepend(IPIP_HEADER_LEN) {
                    dp.counters.count_drop(DropReason::NoHeadroom);
                    return;
                }
                encapsulate_ipip(m.data_mut(), outer_src, outer_dst);
                self.send_or_park(dp, tx, pending, m, port, next_hop, now)
            }
            Verdict::Generated {
                port,
                next_hop,
                len,
            } => {
                m.set_len(len);
                self.send_or_park(dp, tx, pending, m, port, next_hop, now)
            }
            Verdict::Reply { port } => {
                tx[port].push(m);
                dp.counters.replies_sent.inc();
            }
            Verdict::Consumed => {}
            Verdict::Drop(reason) => dp.counters.count_drop(reason),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_or_park(
        &self,
        dp: &mut DataPlane,
        tx: &mut [TxBuffer],
        pending: &mut PendingQueue<Mbuf>,
        mut m: Mbuf,
        port: usize,
        next_hop: std::net::Ipv4Addr,
        now: Millis,
    ) {
        match dp.resolve(port, next_hop, now) {
            Resolution::Known(mac) => {
                write_l2(m.data_mut(), dp.port_mac(port), mac);
                tx[port].push(m);
            }
            Resolution::KnownRefresh(mac) => {
                write_l2(m.data_mut(), dp.port_mac(port), mac);
                tx[port].push(m);
                self.send_arp_request(dp, tx, port, next_hop);
            }
            Resolution::ProbeNow => {
                if pending.push(next_hop, port, m, now).is_err() {
                    dp.counters.count_drop(DropReason::NeighborQueueFull);
                }
                self.send_arp_request(dp, tx, port, next_hop);
            }
            Resolution::Wait => {
                if pending.push(next_hop, port, m, now).is_err() {
                    dp.counters.count_drop(DropReason::NeighborQueueFull);
                }
            }
            Resolution::Unreachable => dp.counters.count_drop(DropReason::NeighborTimeout),
        }
    }

    fn send_arp_request(
        &self,
        dp: &DataPlane,
        tx: &mut [TxBuffer],
        port: usize,
        target: std::net::Ipv4Addr,
    ) {
        let Some(mut m) = self.pool.alloc() else {
            dp.counters.count_drop(DropReason::NoMbuf);
            return;
        };
        if !m.set_len(60) {
            return;
        }
        if let Some(len) = dp.write_arp_request(m.data_mut(), port, target) {
            m.set_len(len);
            tx[port].push(m);
            dp.counters.arp_requests_sent.inc();
        }
    }

    fn slow_path(
        &self,
        dp: &mut DataPlane,
        tx: &mut [TxBuffer],
        pending: &mut PendingQueue<Mbuf>,
        now: Millis,
    ) {
        let mut probes: [(usize, std::net::Ipv4Addr); 32] =
            [(0, std::net::Ipv4Addr::UNSPECIFIED); 32];
        let mut n = 0;
        dp.neighbors.tick(now, |port, ip| {
            if n < probes.len() {
                probes[n] = (port, ip);
                n += 1;
            }
        });
        for &(port, ip) in &probes[..n] {
            self.send_arp_request(dp, tx, port, ip);
        }
        let plane = &*dp;
        pending.release(
            &plane.neighbors,
            now,
            |port, mac, mut m| {
                write_l2(m.data_mut(), plane.port_mac(port), mac);
                tx[port].push(m);
            },
            |_| plane.counters.count_drop(DropReason::NeighborTimeout),
        );
        dp.expire(now, EXPIRE_BUDGET);
    }
}
