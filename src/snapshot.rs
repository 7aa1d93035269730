//! The control plane computes, the data plane looks up: a validated
//! [`Config`] compiles into an immutable [`Snapshot`] that workers pick up
//! between bursts.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Cidr, MacAddr};
use crate::config::{Config, Forward, Protocol};
use crate::conn::Timeouts;
use crate::sched::SchedulerKind;

/// Index of a port in [`Snapshot::ports`] (and in the worker's queues).
pub type PortIdx = usize;

#[derive(Debug, Clone)]
pub struct PortPlan {
    pub name: String,
    pub mac: MacAddr,
    pub addresses: Vec<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub static_neighbors: Vec<(Ipv4Addr, MacAddr)>,
}

impl PortPlan {
    /// The address the director uses as a source towards `peer` on this port:
    /// the one whose prefix holds `peer`, else the first.
    pub fn source_for(&self, peer: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addresses
            .iter()
            .find(|c| c.contains(peer))
            .or(self.addresses.first())
            .map(|c| c.addr)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPlan {
    /// Stable identity of (service, server) used by connections and counters.
    pub dest_id: u32,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub forward: Forward,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub protocol: Protocol,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub scheduler: SchedulerKind,
    pub servers: Vec<ServerPlan>,
}

/// Lookup key of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub protocol: u8,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// Everything a worker needs to forward, immutable once built.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generation: u64,
    pub ports: Vec<PortPlan>,
    pub services: Vec<ServicePlan>,
    pub timeouts: Timeouts,
    service_index: HashMap<ServiceKey, usize>,
    /// Director addresses and VIPs, with the ports that answer ARP for them.
    local: HashMap<Ipv4Addr, LocalAddr>,
    /// Number of dest ids handed out; ids are below this.
    pub dest_id_limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// A VIP (else one of the director's own port addresses).
    pub is_vip: bool,
    /// Bit i set: answer ARP for it on port i.
    pub arp_ports: u64,
}

/// Most ports a director may have (the ARP port mask is a u64).
pub const MAX_PORTS: usize = 64;

impl Snapshot {
    /// Compiles a validated configuration; `port_macs[i]` is the MAC DPDK
    /// reports for port i (used unless the config overrides it).
    pub fn compile(config: &Config, port_macs: &[MacAddr], generation: u64) -> Snapshot {
        Self::compile_with_ids(config, port_macs, generation, None)
    }

    /// Compiles a new configuration to replace `self`: a server that stays
    /// (same service, same address and port) keeps its `dest_id`, so live
    /// connections and per-server counts stay attached to it; new servers
    /// get ids never used before.
    pub fn compile_next(&self, config: &Config, port_macs: &[MacAddr]) -> Snapshot {
        Self::compile_with_ids(config, port_macs, self.generation + 1, Some(self))
    }

    fn compile_with_ids(
        config: &Config,
        port_macs: &[MacAddr],
        generation: u64,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let ports: Vec<PortPlan> = config
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortPlan {
                name: p.name.clone(),
                mac: p.mac.or(port_macs.get(i).copied()).unwrap_or(MacAddr::ZERO),
                addresses: p.addresses.clone(),
                gateway: p.gateway,
                static_neighbors: p.static_neighbors.clone(),
            })
            .collect();

        let mut local = HashMap::new();
        for (i, p) in ports.iter().enumerate().take(MAX_PORTS) {
            for a in &p.addresses {
                local
                    .entry(a.addr)
                    .or_insert(LocalAddr {
                        is_vip: false,
                        arp_ports: 0,
                    })
                    .arp_ports |= 1 << i;
            }
        }

        let mut next_id = previous.map_or(0, |p| p.dest_id_limit);
        let mut services = Vec::new();
        let mut service_index = HashMap::new();
        for s in &config.services {
            let servers = s
                .servers
                .iter()
                .map(|r| {
                    let key = ServiceKey {
                        protocol: s.protocol.number(),
                        addr: *s.address.ip(),
                        port: s.address.port(),
                    };
                    let kept =
                        previous.and_then(|p| p.dest_id_of(key, *r.address.ip(), r.address.port()));
                    let dest_id = kept.unwrap_or_else(|| {
                        next_id += 1;
                        next_id - 1
                    });
                    ServerPlan {
                        dest_id,
                        addr: *r.address.ip(),
                        port: r.address.port(),
                        forward: r.forward,
                        weight: r.weight,
                    }
                })
                .collect();
            let vip = *s.address.ip();
            service_index.insert(
                ServiceKey {
                    protocol: s.protocol.number(),
                    addr: vip,
                    port: s.address.port(),
                },
                services.len(),
            );
            services.push(ServicePlan {
                protocol: s.protocol,
                addr: vip,
                port: s.address.port(),
                scheduler: s.scheduler,
                servers,
            });

            // A VIP is answered on the port whose prefix holds it, or on every port.
            let holders = ports
                .iter()
                .enumerate()
                .take(MAX_PORTS)
                .filter(|(_, p)| p.addresses.iter().any(|c| c.contains(vip)))
                .fold(0u64, |mask, (i, _)| mask | 1 << i);
            let all = if ports.len() >= 64 {
                u64::MAX
            } else {
                (1u64 << ports.len()) - 1
            };
            let entry = local.entry(vip).or_insert(LocalAddr {
                is_vip: true,
                arp_ports: 0,
            });
            entry.is_vip = true;
            entry.arp_ports |= if holders != 0 { holders } else { all };
        }

        Snapshot {
            generation,
            ports,
            services,
            timeouts: Timeouts::default(),
            service_index,
            local,
            dest_id_limit: next_id,
        }
    }

    /// The id of server `addr:port` of the service `key`, if configured.
    pub fn dest_id_of(&self, key: ServiceKey, addr: Ipv4Addr, port: u16) -> Option<u32> {
        let svc = &self.services[*self.service_index.get(&key)?];
        svc.servers
            .iter()
            .find(|r| r.addr == addr && r.port == port)
            .map(|r| r.dest_id)
    }

    #[inline]
    pub fn service(&self, protocol: u8, addr: Ipv4Addr, port: u16) -> Option<usize> {
        self.service_index
            .get(&ServiceKey {
                protocol,
                addr,
                port,
            })
            .copied()
    }

    #[inline]
    pub fn local(&self, addr: Ipv4Addr) -> Option<LocalAddr> {
        self.local.get(&addr).copied()
    }

    /// Does the director answer ARP for `addr` on `port`?
    #[inline]
    pub fn answers_arp(&self, addr: Ipv4Addr, port: PortIdx) -> bool {
        self.local(addr)
            .is_some_and(|l| port < 64 && l.arp_ports & (1 << port) != 0)
    }

    /// Egress port and next hop for `dst`: a port whose prefix holds it
    /// (longest prefix wins), else the first port with a gateway.
    pub fn route(&self, dst: Ipv4Addr) -> Option<(PortIdx, Ipv4Addr)> {
        let mut best: Option<(PortIdx, u8)> = None;
        for (i, p) in self.ports.iter().enumerate() {
            for c in &p.addresses {
                if c.contains(dst) && best.is_none_or(|(_, len)| c.prefix_len > len) {
                    best = Some((i, c.prefix_len));
                }
            }
        }
        if let Some((i, _)) = best {
            return Some((i, dst));
        }
        self.ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway.map(|gw| (i, gw)))
    }
}
