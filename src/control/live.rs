//! Live figures for the control API: the workers' per-destination counters
//! summed, IPVS's rate estimation on them, and `-Z`'s zero points.
//!
//! Each worker counts in its own [`crate::counters::DestCounters`] (single
//! writer); the management thread only reads and adds them up, here. A
//! service's figures are the sum of its destinations', as in IPVS. Rates are
//! estimated every [`SAMPLE_INTERVAL`] by [`tick`](Live::tick); time is a
//! parameter.

use std::collections::HashMap;
use std::sync::Arc;

use crate::adm::model::Model;
use crate::conn::Millis;
use crate::counters::WorkerCounters;
use crate::snapshot::Snapshot;
use crate::stats::{Counters, StatsTracker, SAMPLE_INTERVAL};

/// Tracker keys: a destination by its dest id, a service by its tag.
fn dest_key(dest_id: u32) -> u64 {
    u64::from(dest_id)
}

fn service_key(tag: u64) -> u64 {
    1 << 62 | tag
}

pub struct Live {
    workers: Vec<Arc<WorkerCounters>>,
    trackers: HashMap<u64, StatsTracker>,
    next_sample: Millis,
}

/// A destination's cumulative figures over all workers.
#[derive(Clone, Copy, Default)]
struct DestTotals {
    counters: Counters,
    active: u64,
    inactive: u64,
}

impl Live {
    pub fn new(workers: Vec<Arc<WorkerCounters>>) -> Live {
        Live {
            workers,
            trackers: HashMap::new(),
            next_sample: 0,
        }
    }

    pub fn workers(&self) -> &[Arc<WorkerCounters>] {
        &self.workers
    }

    fn dest_totals(&self, dest_id: u32) -> DestTotals {
        let mut t = DestTotals::default();
        for w in &self.workers {
            let stats = w.dests.load();
            if let Some(d) = stats.get(dest_id as usize) {
                t.counters.conns += d.conns.get();
                t.counters.inpkts += d.in_packets.get();
                t.counters.outpkts += d.out_packets.get();
                t.counters.inbytes += d.in_bytes.get();
                t.counters.outbytes += d.out_bytes.get();
                t.active += d.active.get();
                t.inactive += d.inactive.get();
            }
        }
        t
    }

    /// Every (tracker key, cumulative counters) of `snapshot`.
    fn all_totals(&self, snapshot: &Snapshot) -> Vec<(u64, Counters)> {
        let mut out = Vec::new();
        for svc in &snapshot.services {
            let mut sum = Counters::default();
            for r in &svc.servers {
                let c = self.dest_totals(r.dest_id).counters;
                add(&mut sum, &c);
                out.push((dest_key(r.dest_id), c));
            }
            out.push((service_key(svc.id.tag()), sum));
        }
        out
    }

    /// Samples the rates when [`SAMPLE_INTERVAL`] has passed since the last
    /// time (the management thread calls it often; cheap otherwise).
    pub fn tick(&mut self, snapshot: &Snapshot, now: Millis) {
        if now < self.next_sample {
            return;
        }
        self.next_sample = now + SAMPLE_INTERVAL;
        let totals = self.all_totals(snapshot);
        let live: std::collections::HashSet<u64> = totals.iter().map(|(k, _)| *k).collect();
        self.trackers.retain(|k, _| live.contains(k));
        for (key, c) in totals {
            self.trackers
                .entry(key)
                .and_modify(|t| {
                    t.sample(&c, now);
                })
                // Dest ids are never reused, so a new tracker's start is
                // (about) its destination's zero.
                .or_insert_with(|| StatsTracker::new(&c, now));
        }
    }

    /// `-Z`: zero the shown counters (and rates) of every service, or of
    /// the services `which` accepts.
    pub fn zero(&mut self, snapshot: &Snapshot, which: impl Fn(usize) -> bool) {
        for (i, svc) in snapshot.services.iter().enumerate() {
            if !which(i) {
                continue;
            }
            let mut sum = Counters::default();
            for r in &svc.servers {
                let c = self.dest_totals(r.dest_id).counters;
                add(&mut sum, &c);
                self.tracker(dest_key(r.dest_id)).zero(&c);
            }
            self.tracker(service_key(svc.id.tag())).zero(&sum);
        }
    }

    fn tracker(&mut self, key: u64) -> &mut StatsTracker {
        self.trackers
            .entry(key)
            .or_insert_with(|| StatsTracker::new(&Counters::default(), 0))
    }

    /// Fills `model` (built from the configuration `snapshot` was compiled
    /// from: the same services in the same order, each with its servers in
    /// order) with connection counts, counters and rates.
    pub fn fill(&self, model: &mut Model, snapshot: &Snapshot) {
        if model.services.len() != snapshot.services.len() {
            return;
        }
        for (service, plan) in model.services.iter_mut().zip(&snapshot.services) {
            if service.destinations.len() != plan.servers.len() {
                continue;
            }
            let mut sum = Counters::default();
            for (dest, server) in service.destinations.iter_mut().zip(&plan.servers) {
                let t = self.dest_totals(server.dest_id);
                dest.active_conns = t.active.min(u64::from(u32::MAX)) as u32;
                dest.inactive_conns = t.inactive.min(u64::from(u32::MAX)) as u32;
                add(&mut sum, &t.counters);
                if let Some(tr) = self.trackers.get(&dest_key(server.dest_id)) {
                    dest.stats = tr.shown(&t.counters);
                    dest.rates = tr.rates();
                } else {
                    dest.stats = t.counters;
                }
            }
            if let Some(tr) = self.trackers.get(&service_key(plan.id.tag())) {
                service.stats = tr.shown(&sum);
                service.rates = tr.rates();
            } else {
                service.stats = sum;
            }
        }
    }
}

fn add(sum: &mut Counters, c: &Counters) {
    sum.conns += c.conns;
    sum.inpkts += c.inpkts;
    sum.outpkts += c.outpkts;
    sum.inbytes += c.inbytes;
    sum.outbytes += c.outbytes;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::MacAddr;
    use crate::config::parse;
    use crate::control::convert::model_from_config;

    const CONFIG: &str = r#"
[[port]]
name = "one"
vdev = "net_null0"
addresses = ["198.18.0.1/24", "198.19.0.1/24"]

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
[[service.server]]
address = "198.19.0.11:80"
forward = "nat"
[[service.server]]
address = "198.19.0.12:80"
forward = "nat"
"#;

    fn setup() -> (Live, Snapshot, crate::config::Config) {
        let config = parse(CONFIG, "t.toml").unwrap();
        let snapshot = Snapshot::compile(&config, &[MacAddr([2, 0, 0, 0, 0, 1])], 1);
        let workers: Vec<Arc<WorkerCounters>> =
            (0..2).map(|_| Arc::new(WorkerCounters::new(1))).collect();
        for w in &workers {
            w.dest_stats_for(snapshot.dest_id_limit as usize);
        }
        (Live::new(workers), snapshot, config)
    }

    /// Worker `w` counts `n` connections of one in and one out packet of
    /// 100 bytes each for dest 0, one of them established.
    fn traffic(live: &Live, w: usize, n: u64) {
        let d = &live.workers[w].dests.load()[0];
        d.conns.add(n);
        d.in_packets.add(n);
        d.out_packets.add(n);
        d.in_bytes.add(100 * n);
        d.out_bytes.add(100 * n);
        d.active.set(1);
    }

    #[test]
    fn workers_are_summed_and_services_are_their_servers_sum() {
        let (live, snapshot, config) = setup();
        traffic(&live, 0, 3);
        traffic(&live, 1, 4);
        let mut model = model_from_config(&config);
        live.fill(&mut model, &snapshot);
        let svc = &model.services[0];
        assert_eq!(svc.destinations[0].stats.conns, 7);
        assert_eq!(svc.destinations[0].stats.inbytes, 700);
        assert_eq!(svc.destinations[0].active_conns, 2);
        assert_eq!(svc.destinations[1].stats.conns, 0);
        assert_eq!(svc.stats.conns, 7);
        assert_eq!(svc.stats.outpkts, 7);
    }

    #[test]
    fn rates_follow_a_steady_load_and_zero_restarts_the_counts() {
        let (mut live, snapshot, config) = setup();
        // 10 connections a second for a minute, sampled every 2 s.
        for step in 0..=30u64 {
            live.tick(&snapshot, step * 2000);
            traffic(&live, 0, 20);
        }
        let mut model = model_from_config(&config);
        live.fill(&mut model, &snapshot);
        let cps = model.services[0].destinations[0].rates.cps;
        assert!((9..=10).contains(&cps), "cps {cps}");
        assert_eq!(model.services[0].rates.cps, cps);
        live.zero(&snapshot, |_| true);
        let mut model = model_from_config(&config);
        live.fill(&mut model, &snapshot);
        assert_eq!(model.services[0].stats.conns, 0);
        assert_eq!(model.services[0].destinations[0].stats.conns, 0);
        assert_eq!(model.services[0].destinations[0].rates.cps, 0);
    }
}
