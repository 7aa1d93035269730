//! The per-core poll loop: RX bursts from every port, the pipeline, next-hop
//! resolution and buffered TX; between bursts, snapshot pick-up, ARP retries
//! and connection expiry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam::queue::ArrayQueue;

use crate::addr::MacAddr;
use crate::conn::Millis;
use crate::counters::{ConnDump, ConnListing, DropReason, DumpAnswer, WorkerCounters};
use crate::dpdk::{self, Mbuf, Mempool, Port, RxBurst, TxBuffer, TxQueue};
use crate::neigh::{PendingQueue, Resolution};
use crate::pipeline::{
    encapsulate_ipip, flow_owner, write_l2, DataPlane, Limits, Verdict, IPIP_HEADER_LEN,
};
use crate::snapshot::Snapshot;

/// Shared between the management thread and the workers.
pub struct Shared {
    /// The current configuration; replaced whole by the management thread.
    pub snapshot: ArcSwap<Snapshot>,
    /// Bumped after every snapshot store so workers notice cheaply.
    pub generation: AtomicU64,
    pub stop: AtomicBool,
}

/// What workers pass each other: packets of flows another worker owns (see
/// [`flow_owner`]) and neighbours learned from ARP. One single-producer,
/// single-consumer queue per ordered pair of workers, so nothing on the
/// packet path takes a lock.
pub struct Steering {
    workers: usize,
    /// `from * workers + to`.
    packets: Vec<ArrayQueue<(Mbuf, u16)>>,
    /// Per receiving worker.
    neighbors: Vec<ArrayQueue<(std::net::Ipv4Addr, MacAddr, u16)>>,
}

impl Steering {
    /// Queues of `depth` packets between every pair of `workers`.
    pub fn new(workers: usize, depth: usize) -> Self {
        Steering {
            workers,
            packets: (0..workers * workers)
                .map(|_| ArrayQueue::new(depth.max(1)))
                .collect(),
            neighbors: (0..workers).map(|_| ArrayQueue::new(256)).collect(),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    #[inline]
    fn queue(&self, from: usize, to: usize) -> &ArrayQueue<(Mbuf, u16)> {
        &self.packets[from * self.workers + to]
    }

    /// Packets still queued between workers (after they stopped: packets
    /// that will not be sent).
    pub fn queued(&self) -> usize {
        self.packets.iter().map(ArrayQueue::len).sum()
    }

    /// Whether a queue from worker `from` to another is over half full
    /// (room left for one more burst from every port, with margin).
    #[inline]
    fn backed_up(&self, from: usize) -> bool {
        (0..self.workers).filter(|&to| to != from).any(|to| {
            let q = self.queue(from, to);
            q.len() * 2 > q.capacity()
        })
    }
}

/// Packets taken from each other worker's queue per loop iteration.
const STEER_BUDGET: usize = 64;

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
    /// This worker's index among the workers (and its queue on every port).
    pub queue: u16,
    pub steering: Arc<Steering>,
    pub ports: Vec<Port>,
    pub pool: Arc<Mempool>,
    pub shared: Arc<Shared>,
    pub counters: Arc<WorkerCounters>,
    pub limits: Limits,
    pub hash_seed: u64,
    /// `[bench] pace_pps`: packets per second this worker takes from its
    /// RX queues at most; 0 = no limit.
    pub pace_pps: u64,
    /// `[bench] prefill_connections`.
    pub prefill_connections: usize,
    /// Counted up once this worker has built its tables and is about to
    /// poll (the management thread waits for all before saying so).
    pub ready: Arc<std::sync::atomic::AtomicUsize>,
}

/// A token bucket over the TSC: how many packets the worker may take now.
struct Pacer {
    cycles_per_packet: u64,
    /// TSC time at which the bucket was last empty-equivalent.
    credit_from: u64,
}

impl Pacer {
    fn new(pps: u64) -> Option<Pacer> {
        (pps > 0).then(|| Pacer {
            cycles_per_packet: (dpdk::tsc_hz() / pps).max(1),
            credit_from: dpdk::rdtsc(),
        })
    }

    /// Packets allowed now (at most one burst's worth banked).
    #[inline]
    fn allowance(&mut self, now: u64) -> usize {
        let bank = BURST_CREDIT * self.cycles_per_packet;
        if now.saturating_sub(self.credit_from) > bank {
            self.credit_from = now - bank;
        }
        (now.saturating_sub(self.credit_from) / self.cycles_per_packet) as usize
    }

    #[inline]
    fn spend(&mut self, packets: usize) {
        self.credit_from += packets as u64 * self.cycles_per_packet;
    }
}

const BURST_CREDIT: u64 = crate::dpdk::BURST as u64;

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
        dp.prefill(self.prefill_connections);
        self.ready.fetch_add(1, Ordering::Release);
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
        let me = usize::from(self.queue);
        let workers = self.steering.workers();
        let mut pacer = Pacer::new(self.pace_pps);
        // 1 cycle .. 10^11 cycles (tens of seconds), 3 significant digits.
        let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)
            .expect("valid histogram bounds");
        let mut rx_marks: Vec<(u64, u64)> = Vec::with_capacity(self.ports.len());

        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = clock.now();
            let started = dpdk::rdtsc();
            let mut received = 0;
            rx_marks.clear();
            // Packets other workers passed us come first, and new ones are
            // taken from the NIC only while our queues to the others have
            // room: an overloaded owner slows its peers' RX (where the NIC
            // counts the loss) instead of overflowing a steering queue.
            let mut may_receive = true;
            if workers > 1 {
                received += self.take_steered(&mut dp, &mut tx, &mut pending, now);
                may_receive = !self.steering.backed_up(me);
            }
            for (pi, &port) in self.ports.iter().enumerate() {
                if !may_receive {
                    break;
                }
                let n = match pacer.as_mut() {
                    None => burst.receive(port, self.queue),
                    Some(p) => {
                        let allowed = p.allowance(dpdk::rdtsc());
                        if allowed == 0 {
                            continue;
                        }
                        let n = burst.receive_at_most(port, self.queue, allowed);
                        p.spend(n);
                        n
                    }
                };
                if n == 0 {
                    continue;
                }
                rx_marks.push((dpdk::rdtsc(), n as u64));
                received += n;
                self.counters.ports[pi].rx_packets.add(n as u64);
                for m in &mut burst {
                    match flow_owner(m.data(), dp.snapshot(), workers) {
                        Some(owner) if owner != me => {
                            match self.steering.queue(me, owner).push((m, pi as u16)) {
                                Ok(()) => self.counters.steered_out.inc(),
                                // The mbuf came back in the error and is freed here.
                                Err(_) => self.counters.count_drop(DropReason::SteerQueueFull),
                            }
                        }
                        _ => self.handle(&mut dp, &mut tx, &mut pending, m, pi, now),
                    }
                }
            }
            for (pi, t) in tx.iter_mut().enumerate() {
                t.flush();
                self.publish_tx(pi, t, &mut tx_seen[pi]);
            }
            if received > 0 {
                let flushed = dpdk::rdtsc();
                self.counters.busy_cycles.add(flushed - started);
                for &(at, n) in &rx_marks {
                    latency.saturating_record_n(flushed.saturating_sub(at).max(1), n);
                }
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
        if let Ok(mut slot) = self.counters.latency.lock() {
            *slot = Some(latency);
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
        if let Some((ip, mac, port)) = dp.learned.take() {
            self.share_neighbor(ip, mac, port);
        }
    }

    /// Handles what other workers passed this one; returns how many packets.
    fn take_steered(
        &self,
        dp: &mut DataPlane,
        tx: &mut [TxBuffer],
        pending: &mut PendingQueue<Mbuf>,
        now: Millis,
    ) -> usize {
        let me = usize::from(self.queue);
        let mut taken = 0;
        for from in (0..self.steering.workers()).filter(|&w| w != me) {
            let queue = self.steering.queue(from, me);
            for _ in 0..STEER_BUDGET {
                let Some((m, port)) = queue.pop() else {
                    break;
                };
                taken += 1;
                self.handle(dp, tx, pending, m, usize::from(port), now);
            }
        }
        while let Some((ip, mac, port)) = self.steering.neighbors[me].pop() {
            dp.neighbors.learn(ip, mac, usize::from(port), true, now);
        }
        taken
    }

    /// Tells the other workers about a neighbour this one learned.
    fn share_neighbor(&self, ip: std::net::Ipv4Addr, mac: MacAddr, port: usize) {
        let me = usize::from(self.queue);
        for (w, queue) in self.steering.neighbors.iter().enumerate() {
            if w != me {
                // A full queue only means that worker will ARP for itself.
                let _ = queue.push((ip, mac, port as u16));
            }
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
        self.answer_conn_dump(dp, now);
    }

    /// `rvsadm -c`: copies the connections when the management thread
    /// asked for them (slow path only; it allocates).
    fn answer_conn_dump(&self, dp: &DataPlane, now: Millis) {
        let dump = &self.counters.conn_dump;
        let wanted = dump.requested.load(Ordering::Acquire);
        let Ok(mut answer) = dump.answer.try_lock() else {
            return; // being read: next time
        };
        if answer.request == wanted {
            return;
        }
        let connections = dp
            .conns
            .iter()
            .take(ConnDump::MAX)
            .map(|(_, conn)| ConnListing {
                conn: *conn,
                expires_in: conn.expires_at.saturating_sub(now),
            })
            .collect();
        let template_dests = dp.templates.iter().map(|(_, t)| t.dest_id).collect();
        *answer = DumpAnswer {
            request: wanted,
            connections,
            template_dests,
        };
    }
}
