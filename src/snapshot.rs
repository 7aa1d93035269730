//! The control plane computes, the data plane looks up: a validated
//! [`Config`] compiles into an immutable [`Snapshot`] that workers pick up
//! between bursts.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::addr::{Ipv4Cidr, MacAddr};
use crate::config::{Config, Forward, Persistence, Protocol, ServerConfig};
use crate::conn::{Millis, Timeouts};
use crate::sched::maglev::{MaglevTable, ServerIdentity};
use crate::sched::{HashFlags, SchedulerKind};

/// The snapshot's lookup maps, consulted on every packet: keyed by a few
/// bytes of configuration (VIPs, ports), so a multiply-rotate hash (the
/// Fx hash of rustc) serves; SipHash's defence against chosen keys is moot
/// when only the configuration inserts keys (a packet can only look up).
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Index of a port in [`Snapshot::ports`] (and in the worker's queues).
pub type PortIdx = usize;

#[derive(Debug, Clone)]
pub struct PortPlan {
    pub name: String,
    pub mac: MacAddr,
    pub addresses: Vec<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub static_neighbors: Vec<(Ipv4Addr, MacAddr)>,
    pub mtu: u16,
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
    /// 0: the port the client connected to.
    pub port: u16,
    pub forward: Forward,
    pub weight: u32,
    /// The weight the Maglev table is built with: the last weight above 0,
    /// so that quiescing a server (weight 0) moves only its own clients.
    pub table_weight: u32,
    /// Connection thresholds (ipvsadm `-x` / `-y`; 0 = none).
    pub upper_threshold: u32,
    pub lower_threshold: u32,
}

impl ServerPlan {
    /// IPVS's overload rule for a server with `conns` connections (active
    /// and inactive) that is `overloaded` now: it becomes overloaded at
    /// `upper_threshold` and recovers below `lower_threshold`, or below 3/4
    /// of the upper one when no lower one is set.
    pub fn overloaded_at(&self, conns: u64, overloaded: bool) -> bool {
        let upper = u64::from(self.upper_threshold);
        if upper == 0 {
            return false;
        }
        if conns >= upper {
            return true;
        }
        if !overloaded {
            return false;
        }
        let lower = u64::from(self.lower_threshold);
        if lower != 0 {
            conns >= lower
        } else {
            conns * 4 >= upper * 3
        }
    }
}

/// How a service is named: by address or, for a group, by its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceId {
    Addr(ServiceKey),
    Mark(u32),
}

impl ServiceId {
    /// A number unique per service that survives reloads (persistence
    /// templates are keyed by it).
    pub fn tag(self) -> u64 {
        match self {
            ServiceId::Addr(k) => {
                u64::from(k.protocol) << 48 | u64::from(u32::from(k.addr)) << 16 | u64::from(k.port)
            }
            ServiceId::Mark(m) => 1 << 56 | u64::from(m),
        }
    }
}

/// Persistence as the data plane applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistPlan {
    pub timeout: Millis,
    pub netmask: u32,
}

impl PersistPlan {
    fn new(p: &Persistence) -> Self {
        PersistPlan {
            timeout: Millis::from(p.timeout_secs) * 1000,
            netmask: u32::from(p.netmask),
        }
    }

    /// The address a client's template is kept under.
    #[inline]
    pub fn client_key(&self, client: Ipv4Addr) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(client) & self.netmask)
    }
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub id: ServiceId,
    /// The group's name; empty for a `[[service]]`.
    pub name: String,
    /// For a group: the first member's protocol, and address and port 0.
    pub protocol: Protocol,
    pub addr: Ipv4Addr,
    pub port: u16,
    /// The group's members; empty for a `[[service]]`.
    pub members: Vec<ServiceKey>,
    pub scheduler: SchedulerKind,
    pub sched_flags: HashFlags,
    pub persistence: Option<PersistPlan>,
    pub one_packet: bool,
    /// The `mh` scheduler's lookup table, built here once for all workers.
    pub maglev: Option<Arc<MaglevTable>>,
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
    /// Services by key, group members included; port-0 services under port 0.
    service_index: FastMap<ServiceKey, usize>,
    /// NAT replies of one-packet services, which have no connection: the
    /// real server (protocol, address, port; port 0 = any) → the VIP and
    /// port (0 = keep) they are translated back to.
    one_packet_replies: FastMap<ServiceKey, (Ipv4Addr, u16)>,
    /// Director addresses and VIPs, with the ports that answer ARP for them.
    local: FastMap<Ipv4Addr, LocalAddr>,
    /// Number of dest ids handed out; ids are below this.
    pub dest_id_limit: u32,
    /// Workers share flows out by `client address & steer_mask`: the
    /// coarsest persistence netmask, so a persistence template's clients all
    /// meet on one worker (/32 without persistence).
    pub steer_mask: u32,
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
                mtu: p.mtu,
            })
            .collect();

        let mut local = FastMap::default();
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
        let mut services: Vec<ServicePlan> = Vec::new();
        let mut service_index = FastMap::default();
        let mut one_packet_replies = FastMap::default();
        let mut vips: Vec<Ipv4Addr> = Vec::new();
        let mut plan_servers = |id: ServiceId, servers: &[ServerConfig]| -> Vec<ServerPlan> {
            servers
                .iter()
                .map(|r| {
                    let (addr, port) = (*r.address.ip(), r.address.port());
                    let old = previous.and_then(|p| p.server_of(id, addr, port));
                    let dest_id = old.map(|o| o.dest_id).unwrap_or_else(|| {
                        next_id += 1;
                        next_id - 1
                    });
                    let table_weight = match (r.weight, old) {
                        (0, Some(o)) => o.table_weight,
                        (w, _) => w,
                    };
                    ServerPlan {
                        dest_id,
                        addr,
                        port,
                        forward: r.forward,
                        weight: r.weight,
                        table_weight,
                        upper_threshold: r.upper_threshold,
                        lower_threshold: r.lower_threshold,
                    }
                })
                .collect()
        };
        for s in &config.services {
            let key = ServiceKey {
                protocol: s.protocol.number(),
                addr: *s.address.ip(),
                port: s.address.port(),
            };
            let id = ServiceId::Addr(key);
            let servers = plan_servers(id, &s.servers);
            if s.one_packet {
                for r in servers.iter().filter(|r| r.forward == Forward::Nat) {
                    let server = ServiceKey {
                        protocol: key.protocol,
                        addr: r.addr,
                        port: r.port,
                    };
                    // A server on port 0 answers from the client's port: keep it.
                    let vport = if r.port == 0 { 0 } else { key.port };
                    one_packet_replies.insert(server, (key.addr, vport));
                }
            }
            service_index.insert(key, services.len());
            vips.push(key.addr);
            services.push(ServicePlan {
                id,
                name: String::new(),
                protocol: s.protocol,
                addr: key.addr,
                port: key.port,
                members: Vec::new(),
                scheduler: s.scheduler,
                sched_flags: s.sched_flags,
                persistence: s.persistence.as_ref().map(PersistPlan::new),
                one_packet: s.one_packet,
                maglev: None,
                servers,
            });
        }
        for g in &config.groups {
            let id = ServiceId::Mark(g.mark);
            let servers = plan_servers(id, &g.servers);
            let members: Vec<ServiceKey> = g
                .members
                .iter()
                .map(|(protocol, address)| ServiceKey {
                    protocol: protocol.number(),
                    addr: *address.ip(),
                    port: address.port(),
                })
                .collect();
            for m in &members {
                service_index.insert(*m, services.len());
                vips.push(m.addr);
            }
            services.push(ServicePlan {
                id,
                name: g.name.clone(),
                protocol: g.members[0].0,
                addr: Ipv4Addr::UNSPECIFIED,
                port: 0,
                members,
                scheduler: g.scheduler,
                sched_flags: g.sched_flags,
                persistence: g.persistence.as_ref().map(PersistPlan::new),
                one_packet: g.one_packet,
                maglev: None,
                servers,
            });
        }
        for (svc, size) in services.iter_mut().zip(
            config
                .services
                .iter()
                .map(|s| s.mh_table_size)
                .chain(config.groups.iter().map(|g| g.mh_table_size)),
        ) {
            if svc.scheduler != SchedulerKind::Mh {
                continue;
            }
            let weights: Vec<(ServerIdentity, u32)> = svc
                .servers
                .iter()
                .map(|r| (ServerIdentity::new(r.addr, r.port), r.table_weight))
                .collect();
            svc.maglev = Some(Arc::new(MaglevTable::build(&weights, size)));
        }

        let steer_mask = services
            .iter()
            .filter_map(|s| s.persistence.map(|p| p.netmask))
            .fold(u32::MAX, |mask, m| mask & m);

        for vip in vips {
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
            timeouts: {
                let mut t = Timeouts::default();
                let c = &config.timeouts;
                t.set_ipvsadm(c.tcp, c.tcpfin, c.udp);
                t
            },
            service_index,
            one_packet_replies,
            local,
            dest_id_limit: next_id,
            steer_mask,
        }
    }

    /// Server `addr:port` of service `id`, if configured.
    pub fn server_of(&self, id: ServiceId, addr: Ipv4Addr, port: u16) -> Option<&ServerPlan> {
        self.services
            .iter()
            .find(|s| s.id == id)?
            .servers
            .iter()
            .find(|r| r.addr == addr && r.port == port)
    }

    /// The id of server `addr:port` of the service `key`, if configured.
    pub fn dest_id_of(&self, key: ServiceKey, addr: Ipv4Addr, port: u16) -> Option<u32> {
        self.server_of(ServiceId::Addr(key), addr, port)
            .map(|r| r.dest_id)
    }

    /// The service a new flow to `addr:port` belongs to: the exact service
    /// or group member, else the VIP's port-0 service.
    #[inline]
    pub fn service(&self, protocol: u8, addr: Ipv4Addr, port: u16) -> Option<usize> {
        let key = ServiceKey {
            protocol,
            addr,
            port,
        };
        match self.service_index.get(&key) {
            Some(&i) => Some(i),
            None => self
                .service_index
                .get(&ServiceKey { port: 0, ..key })
                .copied(),
        }
    }

    /// For a packet from `addr:port` that matches no connection: the VIP
    /// and port to translate it back to when it is a reply of a one-packet
    /// NAT service.
    #[inline]
    pub fn one_packet_reply(
        &self,
        protocol: u8,
        addr: Ipv4Addr,
        port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        if self.one_packet_replies.is_empty() {
            return None;
        }
        let key = ServiceKey {
            protocol,
            addr,
            port,
        };
        let (vip, vport) = match self.one_packet_replies.get(&key) {
            Some(&found) => found,
            None => *self
                .one_packet_replies
                .get(&ServiceKey { port: 0, ..key })?,
        };
        Some((vip, if vport == 0 { port } else { vport }))
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
