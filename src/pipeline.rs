//! The packet pipeline of one worker, on plain `&mut [u8]` frames so it is
//! unit-tested without DPDK.
//!
//! [`DataPlane::process`] classifies a received frame (ARP, ICMP echo to the
//! director, traffic to a virtual service, replies from real servers), updates
//! connection state, rewrites the frame in place and says what to do with it.
//! Link-layer addressing of forwarded frames happens after next-hop
//! resolution ([`DataPlane::resolve`], [`write_l2`]). Nothing here allocates,
//! locks, formats or panics per packet.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::addr::MacAddr;
use crate::config::Forward;
use crate::conn::{
    Conn, ConnId, ConnState, ConnTable, Direction, FlowKey, Millis, PersistTable, TcpFlags,
    TemplateKey, CONN_F_NO_OUTPUT,
};
use crate::counters::{DestStats, DropReason, WorkerCounters};
use crate::neigh::{NeighborTable, Resolution};
use crate::sched::{FlowInfo, Scheduler, ServerLoad};
use crate::snapshot::{PortIdx, Snapshot};
use crate::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use crate::wire::checksum;
use crate::wire::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_HEADER_LEN};
use crate::wire::icmp::{IcmpDstUnreachable, IcmpMessage, IcmpPacket};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;

/// What to do with a frame after [`DataPlane::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten; send it out `port` once `next_hop`'s MAC is known.
    Forward {
        port: PortIdx,
        next_hop: Ipv4Addr,
    },
    /// To be sent IPIP-encapsulated (tun): make [`IPIP_HEADER_LEN`] bytes of
    /// room at the front of the frame, call [`encapsulate_ipip`], then send
    /// it out `port` once `next_hop`'s MAC is known.
    Encapsulate {
        port: PortIdx,
        next_hop: Ipv4Addr,
        outer_src: Ipv4Addr,
        outer_dst: Ipv4Addr,
    },
    /// Turned into a reply in place, link layer included: send it out `port`.
    Reply {
        port: PortIdx,
    },
    /// Replaced by a packet the director generated (an ICMP error), `len`
    /// bytes long: trim the frame to `len`, then treat it as `Forward`.
    Generated {
        port: PortIdx,
        next_hop: Ipv4Addr,
        len: usize,
    },
    /// Consumed without an answer (e.g. an ARP reply that taught us a MAC).
    Consumed,
    Drop(DropReason),
}

/// Sizing of a worker's tables.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connections: usize,
    pub neighbors: usize,
    /// Persistence templates (one per client address per persistent service).
    pub templates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1 << 20,
            neighbors: 4096,
            templates: 1 << 18,
        }
    }
}

/// One service as a worker schedules it: its scheduler and the load it has
/// put on each server (IPVS's per-dest counters, per worker).
struct ServiceState {
    scheduler: Box<dyn Scheduler>,
    /// What the scheduler sees: an overloaded server's weight reads 0.
    loads: Vec<ServerLoad>,
    /// Per server: over its upper connection threshold (IPVS's
    /// IP_VS_DEST_F_OVERLOAD), so it takes no new connections.
    overloaded: Vec<bool>,
}

const NO_SLOT: (u32, u32) = (u32::MAX, u32::MAX);

/// The state of one worker: its connections, its ARP cache and its view of
/// the configuration.
pub struct DataPlane {
    snapshot: Arc<Snapshot>,
    services: Vec<ServiceState>,
    /// dest_id → (service index, server index) in the current snapshot.
    dest_slots: Vec<(u32, u32)>,
    pub conns: ConnTable,
    /// Persistence templates of this worker.
    pub templates: PersistTable,
    pub neighbors: NeighborTable,
    pub counters: Arc<WorkerCounters>,
    /// Set when an ARP packet aimed at the director taught this worker a
    /// neighbour, so the worker can tell the others (ARP replies reach one
    /// worker only). Taken by the worker.
    pub learned: Option<(Ipv4Addr, MacAddr, PortIdx)>,
    /// This worker's per-destination statistics, by dest id.
    dest_stats: DestStats,
}

/// The L4 fields the pipeline needs, read once.
#[derive(Clone, Copy)]
struct L4Info {
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    flags: TcpFlags,
}

impl DataPlane {
    pub fn new(
        snapshot: Arc<Snapshot>,
        limits: Limits,
        hash_seed: u64,
        counters: Arc<WorkerCounters>,
    ) -> Self {
        let mut dp = DataPlane {
            snapshot: snapshot.clone(),
            services: Vec::new(),
            dest_slots: Vec::new(),
            conns: ConnTable::with_capacity(limits.connections, hash_seed),
            templates: PersistTable::with_capacity(limits.templates, hash_seed),
            neighbors: NeighborTable::with_capacity(limits.neighbors),
            dest_stats: counters.dest_stats_for(0),
            counters,
            learned: None,
        };
        dp.apply_snapshot(snapshot);
        dp
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Switches to a new configuration between bursts (control path: may
    /// allocate). Per-server connection counts carry over by dest id.
    pub fn apply_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        let mut services = Vec::with_capacity(snapshot.services.len());
        let mut slots = vec![NO_SLOT; snapshot.dest_id_limit as usize];
        for (si, svc) in snapshot.services.iter().enumerate() {
            let mut loads: Vec<ServerLoad> = svc
                .servers
                .iter()
                .enumerate()
                .map(|(ri, server)| {
                    slots[server.dest_id as usize] = (si as u32, ri as u32);
                    let old = self.load_of(server.dest_id);
                    ServerLoad {
                        weight: server.weight,
                        active: old.active,
                        inactive: old.inactive,
                    }
                })
                .collect();
            let overloaded: Vec<bool> = svc
                .servers
                .iter()
                .zip(&loads)
                .map(|(server, load)| {
                    let was = self.was_overloaded(server.dest_id);
                    server.overloaded_at(u64::from(load.active) + u64::from(load.inactive), was)
                })
                .collect();
            for (load, &over) in loads.iter_mut().zip(&overloaded) {
                if over {
                    load.weight = 0;
                }
            }
            let mut scheduler = svc
                .scheduler
                .build_with(svc.sched_flags, svc.maglev.clone());
            scheduler.update(&loads);
            services.push(ServiceState {
                scheduler,
                loads,
                overloaded,
            });
        }
        // Templates of services that are gone or whose persistence changed,
        // and of servers that left their service, go (a removed server's
        // clients are scheduled afresh).
        let old = &self.snapshot;
        self.templates.retain(|key, template| {
            let Some(new_svc) = snapshot
                .services
                .iter()
                .position(|s| s.id.tag() == key.service)
            else {
                return false;
            };
            let same_persistence = old
                .services
                .iter()
                .find(|s| s.id.tag() == key.service)
                .is_some_and(|o| o.persistence == snapshot.services[new_svc].persistence);
            let (svc, _) = slots
                .get(template.dest_id as usize)
                .copied()
                .unwrap_or(NO_SLOT);
            same_persistence && svc as usize == new_svc
        });
        for (ip, mac) in snapshot.ports.iter().enumerate().flat_map(|(i, p)| {
            p.static_neighbors
                .iter()
                .map(move |(ip, mac)| ((*ip, i), *mac))
        }) {
            self.neighbors.add_static(ip.0, mac, ip.1);
        }
        self.services = services;
        self.dest_slots = slots;
        self.dest_stats = self
            .counters
            .dest_stats_for(snapshot.dest_id_limit as usize);
        self.snapshot = snapshot;
    }

    fn was_overloaded(&self, dest_id: u32) -> bool {
        self.slot(dest_id)
            .and_then(|(s, r)| self.services.get(s)?.overloaded.get(r).copied())
            .unwrap_or(false)
    }

    fn load_of(&self, dest_id: u32) -> ServerLoad {
        self.slot(dest_id)
            .and_then(|(s, r)| self.services.get(s)?.loads.get(r).copied())
            .unwrap_or_default()
    }

    #[inline]
    fn slot(&self, dest_id: u32) -> Option<(usize, usize)> {
        match self.dest_slots.get(dest_id as usize) {
            Some(&(s, r)) if (s, r) != NO_SLOT => Some((s as usize, r as usize)),
            _ => None,
        }
    }

    /// The load this worker has put on each server of service `svc`.
    pub fn service_loads(&self, svc: usize) -> &[ServerLoad] {
        self.services
            .get(svc)
            .map(|s| s.loads.as_slice())
            .unwrap_or(&[])
    }

    /// Moves a connection between the active and inactive counts of its
    /// server when its state changes (IPVS counts ESTABLISHED as active).
    #[inline]
    fn account(&mut self, dest_id: u32, old: Option<ConnState>, new: Option<ConnState>) {
        let Some((s, r)) = self.slot(dest_id) else {
            return;
        };
        let Some(load) = self.services.get_mut(s).and_then(|s| s.loads.get_mut(r)) else {
            return;
        };
        match old {
            Some(st) if st.is_active() => load.active = load.active.saturating_sub(1),
            Some(_) => load.inactive = load.inactive.saturating_sub(1),
            None => {}
        }
        match new {
            Some(st) if st.is_active() => load.active += 1,
            Some(_) => load.inactive += 1,
            None => {}
        }
        let (active, inactive) = (load.active, load.inactive);
        if let Some(d) = self.dest_stats.get(dest_id as usize) {
            d.active.set(u64::from(active));
            d.inactive.set(u64::from(inactive));
        }
        let (Some(svc), Some(plan)) = (
            self.services.get_mut(s),
            self.snapshot.services.get(s).and_then(|p| p.servers.get(r)),
        ) else {
            return;
        };
        let conns = u64::from(active) + u64::from(inactive);
        let over = plan.overloaded_at(conns, svc.overloaded[r]);
        if over != svc.overloaded[r] {
            // Crossing a threshold changes the weight the scheduler sees:
            // a configuration change for it (O(n), no allocation for an
            // unchanged list), rare by design of the thresholds.
            svc.overloaded[r] = over;
            svc.loads[r].weight = if over { 0 } else { plan.weight };
            svc.scheduler.update(&svc.loads);
        } else {
            svc.scheduler.load_changed(&svc.loads, r);
        }
    }

    /// Classifies and rewrites one received frame.
    pub fn process(&mut self, frame: &mut [u8], in_port: PortIdx, now: Millis) -> Verdict {
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let Some(port) = self.snapshot.ports.get(in_port) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let dst_mac = eth.dst_addr();
        if dst_mac != port.mac && !dst_mac.is_broadcast() {
            return Verdict::Drop(DropReason::ForeignMac);
        }
        match eth.ethertype() {
            EtherType::Arp => self.process_arp(frame, in_port, now),
            EtherType::Ipv4 => self.process_ipv4(frame, in_port, now),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn process_arp(&mut self, frame: &mut [u8], in_port: PortIdx, now: Millis) -> Verdict {
        let Ok(arp) = ArpPacket::new_checked(&frame[ETH_HEADER_LEN..]) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if !arp.is_ethernet_ipv4() {
            return Verdict::Drop(DropReason::Malformed);
        }
        let sender_ip = arp.source_protocol_addr();
        let sender_mac = arp.source_hardware_addr();
        let target_ip = arp.target_protocol_addr();
        let operation = arp.operation();
        let for_us = self.snapshot.answers_arp(target_ip, in_port);
        if !sender_mac.is_multicast() && sender_ip != Ipv4Addr::UNSPECIFIED {
            // Replies to our requests and requests aimed at us may create entries.
            self.neighbors
                .learn(sender_ip, sender_mac, in_port, for_us, now);
            if for_us {
                self.learned = Some((sender_ip, sender_mac, in_port));
            }
        }
        match operation {
            ArpOperation::Request if for_us => {
                let our_mac = self.snapshot.ports[in_port].mac;
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: our_mac,
                    source_protocol_addr: target_ip,
                    target_hardware_addr: sender_mac,
                    target_protocol_addr: sender_ip,
                };
                let (l2, rest) = frame.split_at_mut(ETH_HEADER_LEN);
                reply.emit(&mut ArpPacket::new_unchecked(rest));
                let mut eth = EthernetFrame::new_unchecked(l2);
                eth.set_dst_addr(sender_mac);
                eth.set_src_addr(our_mac);
                Verdict::Reply { port: in_port }
            }
            ArpOperation::Request => Verdict::Drop(DropReason::ArpNotForUs),
            _ => Verdict::Consumed,
        }
    }

    fn process_ipv4(&mut self, frame: &mut [u8], in_port: PortIdx, now: Millis) -> Verdict {
        let (ip_src, ip_dst, protocol, ttl, header_len) = {
            let Ok(ip) = Ipv4Packet::new_checked(&frame[ETH_HEADER_LEN..]) else {
                return Verdict::Drop(DropReason::Malformed);
            };
            if !ip.verify_checksum() {
                return Verdict::Drop(DropReason::BadChecksum);
            }
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Verdict::Drop(DropReason::Fragment);
            }
            (
                ip.src_addr(),
                ip.dst_addr(),
                ip.protocol(),
                ip.ttl(),
                ip.header_len() as usize,
            )
        };
        let l4_start = ETH_HEADER_LEN + header_len;
        let local = self.snapshot.local(ip_dst);

        let l4 = match protocol {
            IpProtocol::Tcp => {
                let Ok(tcp) = TcpPacket::new_checked(ip_payload(frame, l4_start)) else {
                    return Verdict::Drop(DropReason::Malformed);
                };
                L4Info {
                    protocol: 6,
                    src_port: tcp.src_port(),
                    dst_port: tcp.dst_port(),
                    flags: TcpFlags {
                        syn: tcp.syn(),
                        ack: tcp.ack(),
                        fin: tcp.fin(),
                        rst: tcp.rst(),
                    },
                }
            }
            IpProtocol::Udp => {
                let Ok(udp) = UdpPacket::new_checked(ip_payload(frame, l4_start)) else {
                    return Verdict::Drop(DropReason::Malformed);
                };
                L4Info {
                    protocol: 17,
                    src_port: udp.src_port(),
                    dst_port: udp.dst_port(),
                    flags: TcpFlags::NONE,
                }
            }
            IpProtocol::Icmp if local.is_some() => {
                return self.answer_echo(frame, in_port, l4_start)
            }
            IpProtocol::Icmp => return Verdict::Drop(DropReason::NoService),
            _ => return Verdict::Drop(DropReason::UnsupportedProtocol),
        };

        // Checked before any state is created: a packet that cannot be
        // forwarded must not open a connection.
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let key = FlowKey {
            protocol: l4.protocol,
            src_addr: ip_src,
            src_port: l4.src_port,
            dst_addr: ip_dst,
            dst_port: l4.dst_port,
        };

        // A packet of a known connection: one lookup for either direction.
        match self.conns.find_any(&key) {
            Some((id, Direction::FromClient)) => {
                let conn = *self.conns.get(id);
                let reuse = l4.protocol == 6
                    && is_new_tcp(l4.flags)
                    && matches!(conn.state, ConnState::TimeWait | ConnState::Close);
                if !reuse {
                    return self.forward(frame, l4_start, id, l4, Direction::FromClient, now);
                }
                // The client reuses its port after the old connection closed:
                // schedule afresh, as IPVS's conn_reuse_mode does.
                let old = self.conns.remove(id);
                self.connection_ended(&old);
                self.counters.conns_live.add(1u64.wrapping_neg()); // −1 on a wrapping counter
            }
            // A reply from a real server.
            Some((id, Direction::FromServer)) => {
                return self.forward(frame, l4_start, id, l4, Direction::FromServer, now);
            }
            None => {}
        }
        // A new connection to a virtual service.
        if let Some(svc) = self.snapshot.service(l4.protocol, ip_dst, l4.dst_port) {
            if l4.protocol == 6 && !is_new_tcp(l4.flags) {
                return Verdict::Drop(DropReason::NoConnection);
            }
            let conn = match self.schedule(svc, &key, now) {
                Ok(conn) => conn,
                Err(reason) => return Verdict::Drop(reason),
            };
            if self.snapshot.services[svc].one_packet {
                self.counters.one_packet_scheduled.inc();
                if let Some(d) = self.dest_stats.get(conn.dest_id as usize) {
                    d.conns.inc();
                }
                return self.emit(frame, l4_start, &conn, Direction::FromClient);
            }
            return match self.insert(conn, l4, now) {
                Ok(id) => self.forward(frame, l4_start, id, l4, Direction::FromClient, now),
                Err(reason) => Verdict::Drop(reason),
            };
        }
        // A reply of a one-packet NAT service (it has no connection).
        if let Some((vip, vport)) = self
            .snapshot
            .one_packet_reply(l4.protocol, ip_src, l4.src_port)
        {
            let Some((port, next_hop)) = self.snapshot.route(ip_dst) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            rewrite_source(frame, l4_start, l4.protocol, vip, vport);
            self.counters.forwarded_to_clients.inc();
            return Verdict::Forward { port, next_hop };
        }
        if local.is_some() {
            return Verdict::Drop(if local.is_some_and(|l| l.is_vip) {
                DropReason::NoService
            } else {
                DropReason::ToDirector
            });
        }
        Verdict::Drop(DropReason::NoService)
    }

    /// Picks a server for a new flow (through the client's persistence
    /// template when the service has one) and describes the connection;
    /// it is not in the table yet.
    fn schedule(&mut self, svc: usize, key: &FlowKey, now: Millis) -> Result<Conn, DropReason> {
        let snapshot = &self.snapshot;
        let service = &snapshot.services[svc];
        let template_key = service.persistence.map(|p| TemplateKey {
            service: service.id.tag(),
            client: p.client_key(key.src_addr),
        });
        let remembered = template_key
            .and_then(|k| self.templates.get(&k))
            .and_then(|t| match self.slot(t.dest_id) {
                // A server of weight 0 keeps its persistent clients, as in IPVS.
                Some((s, r)) if s == svc => Some(r),
                _ => None,
            });
        let pick = match remembered {
            Some(r) => r,
            None => {
                let state = &mut self.services[svc];
                let flow = FlowInfo {
                    protocol: key.protocol,
                    client_addr: key.src_addr,
                    client_port: key.src_port,
                    virtual_addr: key.dst_addr,
                    virtual_port: key.dst_port,
                    now,
                };
                state
                    .scheduler
                    .pick(&state.loads, &flow)
                    .ok_or(DropReason::NoServer)?
            }
        };
        let server = service.servers.get(pick).ok_or(DropReason::NoServer)?;
        let mut flags = forward_flag(server.forward);
        if let (Some(k), Some(p)) = (template_key, service.persistence) {
            if !service.one_packet {
                self.templates
                    .on_new_connection(&k, server.dest_id, now, p.timeout)
                    .map_err(|_| DropReason::TemplateTableFull)?;
                flags |= CONN_F_PERSISTENT;
            }
        }
        Ok(Conn {
            protocol: key.protocol,
            client_addr: key.src_addr,
            client_port: key.src_port,
            virtual_addr: key.dst_addr,
            virtual_port: key.dst_port,
            real_addr: server.addr,
            // Port 0: the server listens on the port the client asked for.
            real_port: if server.port == 0 {
                key.dst_port
            } else {
                server.port
            },
            dest_id: server.dest_id,
            state: if key.protocol == 6 {
                ConnState::None
            } else {
                ConnState::Udp
            },
            expires_at: now,
            flags,
        })
    }

    /// Records a scheduled connection.
    fn insert(&mut self, conn: Conn, _l4: L4Info, _now: Millis) -> Result<ConnId, DropReason> {
        match self.conns.insert(conn) {
            Ok(id) => {
                self.account(conn.dest_id, None, Some(conn.state));
                if let Some(d) = self.dest_stats.get(conn.dest_id as usize) {
                    d.conns.inc();
                }
                self.counters.conns_created.inc();
                self.counters.conns_live.inc();
                Ok(id)
            }
            Err(_) => {
                self.release_template(&conn);
                Err(DropReason::TableFull)
            }
        }
    }

    /// Bookkeeping for a connection that left the table: its server's
    /// counts and its persistence template.
    fn connection_ended(&mut self, conn: &Conn) {
        self.account(conn.dest_id, Some(conn.state), None);
        self.release_template(conn);
    }

    /// The connection no longer holds its persistence template open.
    fn release_template(&mut self, conn: &Conn) {
        if conn.flags & CONN_F_PERSISTENT == 0 {
            return;
        }
        let slot = self.slot(conn.dest_id);
        if let Some(service) = slot.and_then(|(s, _)| self.snapshot.services.get(s)) {
            if let Some(p) = service.persistence {
                self.templates.on_connection_end(&TemplateKey {
                    service: service.id.tag(),
                    client: p.client_key(conn.client_addr),
                });
            }
        }
    }

    /// Advances the connection's state for a packet in direction `dir`, then
    /// rewrites the packet for the connection's forwarding method.
    fn forward(
        &mut self,
        frame: &mut [u8],
        l4_start: usize,
        id: ConnId,
        l4: L4Info,
        dir: Direction,
        now: Millis,
    ) -> Verdict {
        if self.slot(self.conns.get(id).dest_id).is_none() {
            // Its server was removed: end the connection (IPVS's
            // expire_nodest_conn=1) rather than keep feeding a server the
            // configuration no longer names.
            let gone = self.conns.remove(id);
            self.release_template(&gone);
            self.counters.conns_live.add(1u64.wrapping_neg());
            return Verdict::Drop(DropReason::NoDestination);
        }
        let (old, new) = self
            .conns
            .on_packet(id, dir, l4.flags, now, &self.snapshot.timeouts);
        let conn = *self.conns.get(id);
        if old != new {
            self.account(conn.dest_id, Some(old), Some(new));
        }
        self.emit(frame, l4_start, &conn, dir)
    }

    /// Rewrites a packet of `conn` travelling in direction `dir`:
    ///
    /// | method | client → server              | server → client (seen only for nat) |
    /// |--------|------------------------------|-------------------------------------|
    /// | nat    | DNAT to the server, TTL − 1  | SNAT from the VIP, TTL − 1          |
    /// | dr     | untouched; MAC of the server | routed, TTL − 1                      |
    /// | tun    | IPIP to the server           | routed, TTL − 1                      |
    fn emit(&mut self, frame: &mut [u8], l4_start: usize, conn: &Conn, dir: Direction) -> Verdict {
        let method = conn_forward(conn.flags);
        let towards = match dir {
            Direction::FromClient => conn.real_addr,
            Direction::FromServer => conn.client_addr,
        };
        let Some((port, next_hop)) = self.snapshot.route(towards) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        match (dir, method) {
            (Direction::FromClient, Forward::Nat) => rewrite_destination(
                frame,
                l4_start,
                conn.protocol,
                conn.real_addr,
                conn.real_port,
            ),
            (Direction::FromServer, Forward::Nat) => rewrite_source(
                frame,
                l4_start,
                conn.protocol,
                conn.virtual_addr,
                conn.virtual_port,
            ),
            // The server owns the VIP: only the link layer changes (in
            // write_l2, after resolution). LVS leaves even the TTL alone.
            (Direction::FromClient, Forward::Dr) => {}
            (Direction::FromClient, Forward::Tun) => {
                return self.tunnel(frame, port, next_hop, conn)
            }
            // A dr/tun server that routes its replies through the director.
            (Direction::FromServer, _) => decrement_ttl(frame),
        }
        self.count_forwarded(frame, conn.dest_id, dir);
        Verdict::Forward { port, next_hop }
    }

    /// Counts a forwarded packet for the director and its destination
    /// (IPVS's in = client → server, out = server → client; bytes are the
    /// IP length before encapsulation).
    #[inline]
    fn count_forwarded(&self, frame: &[u8], dest_id: u32, dir: Direction) {
        let bytes = u64::from(Ipv4Packet::new_unchecked(&frame[ETH_HEADER_LEN..]).total_len());
        let dest = self.dest_stats.get(dest_id as usize);
        match dir {
            Direction::FromClient => {
                self.counters.forwarded_to_servers.inc();
                if let Some(d) = dest {
                    d.in_packets.inc();
                    d.in_bytes.add(bytes);
                }
            }
            Direction::FromServer => {
                self.counters.forwarded_to_clients.inc();
                if let Some(d) = dest {
                    d.out_packets.inc();
                    d.out_bytes.add(bytes);
                }
            }
        }
    }

    /// IPIP towards the connection's server out of `port`, or ICMP "fragmentation needed"
    /// back to the client when the encapsulated packet would not fit the
    /// port's MTU and the client forbade fragmentation (IPVS does the same).
    fn tunnel(
        &mut self,
        frame: &mut [u8],
        port: PortIdx,
        next_hop: Ipv4Addr,
        conn: &Conn,
    ) -> Verdict {
        let server = conn.real_addr;
        let plan = &self.snapshot.ports[port];
        let (total_len, dont_frag, client) = {
            let ip = Ipv4Packet::new_unchecked(&frame[ETH_HEADER_LEN..]);
            (ip.total_len(), ip.dont_frag(), ip.src_addr())
        };
        let mtu = plan.mtu;
        if usize::from(total_len) + IPIP_HEADER_LEN > usize::from(mtu) {
            if !dont_frag {
                return Verdict::Drop(DropReason::TunnelTooBig);
            }
            let Some((back_port, back_hop)) = self.snapshot.route(client) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            let Some(source) = self.snapshot.ports[back_port].source_for(client) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            let len = write_frag_needed(frame, source, mtu - IPIP_HEADER_LEN as u16);
            self.counters.icmp_frag_needed_sent.inc();
            return Verdict::Generated {
                port: back_port,
                next_hop: back_hop,
                len,
            };
        }
        let Some(outer_src) = plan.source_for(server) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        self.count_forwarded(frame, conn.dest_id, Direction::FromClient);
        Verdict::Encapsulate {
            port,
            next_hop,
            outer_src,
            outer_dst: server,
        }
    }

    /// Answers an ICMP echo request to a director address or VIP in place.
    fn answer_echo(&mut self, frame: &mut [u8], in_port: PortIdx, l4_start: usize) -> Verdict {
        {
            let Ok(icmp) = IcmpPacket::new_checked(ip_payload(frame, l4_start)) else {
                return Verdict::Drop(DropReason::Malformed);
            };
            if icmp.msg_type() != IcmpMessage::EchoRequest || icmp.msg_code() != 0 {
                return Verdict::Drop(DropReason::IcmpNotEcho);
            }
            if !icmp.verify_checksum() {
                return Verdict::Drop(DropReason::Malformed);
            }
        }
        {
            let mut icmp = IcmpPacket::new_unchecked(ip_payload_mut(frame, l4_start));
            icmp.set_msg_type(IcmpMessage::EchoReply);
            // Full recomputation: an incremental update would give 0x0000
            // for an all-zero reply, which receivers reject.
            icmp.fill_checksum();
        }
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER_LEN..]);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.set_ttl(64);
            ip.fill_checksum();
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        let peer = eth.src_addr();
        eth.set_dst_addr(peer);
        eth.set_src_addr(self.snapshot.ports[in_port].mac);
        Verdict::Reply { port: in_port }
    }

    /// Next-hop MAC for a forwarded frame (see [`Resolution`]).
    #[inline]
    pub fn resolve(&mut self, port: PortIdx, next_hop: Ipv4Addr, now: Millis) -> Resolution {
        self.neighbors.resolve(next_hop, port, now)
    }

    /// The source MAC for frames leaving `port`.
    #[inline]
    pub fn port_mac(&self, port: PortIdx) -> MacAddr {
        self.snapshot
            .ports
            .get(port)
            .map(|p| p.mac)
            .unwrap_or(MacAddr::ZERO)
    }

    /// Writes an ARP request for `target` as it leaves `port` into `buf`
    /// (at least 60 bytes); returns the frame length, or `None` when the
    /// port has no address to ask from.
    pub fn write_arp_request(
        &self,
        buf: &mut [u8],
        port: PortIdx,
        target: Ipv4Addr,
    ) -> Option<usize> {
        let plan = self.snapshot.ports.get(port)?;
        let source_ip = plan.source_for(target)?;
        const LEN: usize = 60; // minimum Ethernet frame without FCS
        let frame = buf.get_mut(..LEN)?;
        frame.fill(0);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(MacAddr::BROADCAST);
        eth.set_src_addr(plan.mac);
        eth.set_ethertype(EtherType::Arp);
        let request = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: plan.mac,
            source_protocol_addr: source_ip,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: target,
        };
        request.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH_HEADER_LEN..]));
        Some(LEN)
    }

    /// Benchmarks only (`[bench] prefill_connections`): fills the table
    /// with `n` established connections that no real packet matches
    /// (clients 198.19.128.0/17, which the benchmarks never send from),
    /// never expiring and not counted as any server's load.
    pub fn prefill(&mut self, n: usize) {
        let Some((vip, vport, real, rport, dest_id)) =
            self.snapshot.services.iter().find_map(|s| {
                let r = s.servers.first()?;
                let (addr, port) = match s.members.first() {
                    Some(m) => (m.addr, m.port),
                    None => (s.addr, s.port),
                };
                Some((addr, port, r.addr, r.port, r.dest_id))
            })
        else {
            return;
        };
        for i in 0..n {
            let client = 0xc613_8000u32 + (i / 60_000) as u32; // 198.19.128.0 + k
            let conn = Conn {
                protocol: 6,
                client_addr: Ipv4Addr::from(client),
                client_port: 1024 + (i % 60_000) as u16,
                virtual_addr: vip,
                virtual_port: vport,
                real_addr: real,
                real_port: if rport == 0 { vport } else { rport },
                dest_id,
                state: ConnState::Established,
                expires_at: Millis::MAX,
                flags: 0,
            };
            if self.conns.insert(conn).is_err() {
                break;
            }
        }
    }

    /// Slow path: removes up to `budget` expired connections.
    pub fn expire(&mut self, now: Millis, budget: usize) -> usize {
        let mut gone: [Conn; 64] = [Conn::EMPTY; 64];
        let mut removed = 0;
        let mut left = budget;
        while left > 0 {
            let step = left.min(gone.len());
            let mut n = 0;
            self.conns.expire(now, step, |c| {
                if n < 64 {
                    gone[n] = *c;
                    n += 1;
                }
            });
            for c in &gone[..n] {
                self.connection_ended(c);
            }
            removed += n;
            left -= step;
        }
        self.counters.conns_expired.add(removed as u64);
        self.counters
            .conns_live
            .add((removed as u64).wrapping_neg());
        self.templates.expire(now, budget);
        removed
    }
}

/// Bit of [`Conn::flags`]: the connection was scheduled through a
/// persistence template (which counts it). Bits 0–1 hold the method.
const CONN_F_PERSISTENT: u8 = 1 << 2;
const CONN_F_METHOD: u8 = 0b11;

/// Bytes an IPIP outer header adds.
pub const IPIP_HEADER_LEN: usize = 20;

/// Which of `workers` owns the flow a frame belongs to, so that a
/// connection's packets in both directions meet on one worker whatever
/// queue they arrived on: a hash of the client's address (the source of a
/// packet to a VIP, else the destination: a reply), masked by
/// [`Snapshot::steer_mask`]. `None` for what any worker may handle (ARP,
/// ICMP, non-IPv4, fragments, malformed frames). The address alone (not the
/// port) keeps a persistent client's connections together.
#[inline]
pub fn flow_owner(frame: &[u8], snapshot: &Snapshot, workers: usize) -> Option<usize> {
    if workers <= 1 || frame.len() < ETH_HEADER_LEN + 20 {
        return None;
    }
    if frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = Ipv4Packet::new_unchecked(&frame[ETH_HEADER_LEN..]);
    if !matches!(ip.protocol(), IpProtocol::Tcp | IpProtocol::Udp) || ip.is_fragment() {
        return None;
    }
    let dst = ip.dst_addr();
    let client = if snapshot.local(dst).is_some_and(|l| l.is_vip) {
        ip.src_addr()
    } else {
        dst
    };
    let key = u32::from(client) & snapshot.steer_mask;
    // Fibonacci hashing, then a multiply-shift onto 0..workers.
    let h = key.wrapping_mul(0x9e37_79b9);
    Some(((u64::from(h) * workers as u64) >> 32) as usize)
}

/// A TCP segment that may open a connection: SYN alone.
#[inline]
fn is_new_tcp(f: TcpFlags) -> bool {
    f.syn && !f.ack && !f.rst && !f.fin
}

/// The method bits of a new connection's flags; dr and tun also start
/// with [`CONN_F_NO_OUTPUT`] (the director does not see their replies).
fn forward_flag(forward: Forward) -> u8 {
    match forward {
        Forward::Nat => 0,
        Forward::Dr => 1 | CONN_F_NO_OUTPUT,
        Forward::Tun => 2 | CONN_F_NO_OUTPUT,
    }
}

#[inline]
fn conn_forward(flags: u8) -> Forward {
    match flags & CONN_F_METHOD {
        1 => Forward::Dr,
        2 => Forward::Tun,
        _ => Forward::Nat,
    }
}

/// The IP payload (bounded by the IP total length) of a frame.
#[inline]
fn ip_payload(frame: &[u8], l4_start: usize) -> &[u8] {
    let ip = Ipv4Packet::new_unchecked(&frame[ETH_HEADER_LEN..]);
    let end = (ETH_HEADER_LEN + ip.total_len() as usize).min(frame.len());
    frame.get(l4_start..end).unwrap_or(&[])
}

#[inline]
fn ip_payload_mut(frame: &mut [u8], l4_start: usize) -> &mut [u8] {
    let total = Ipv4Packet::new_unchecked(&frame[ETH_HEADER_LEN..]).total_len() as usize;
    let end = (ETH_HEADER_LEN + total).min(frame.len());
    frame.get_mut(l4_start..end).unwrap_or(&mut [])
}

/// NAT towards the real server: destination address and port, TTL − 1,
/// checksums updated incrementally (RFC 1624).
pub fn rewrite_destination(
    frame: &mut [u8],
    l4_start: usize,
    protocol: u8,
    addr: Ipv4Addr,
    port: u16,
) {
    let old_addr = rewrite_ip(
        frame,
        |ip| {
            let old = ip.dst_addr();
            ip.set_dst_addr(addr);
            old
        },
        addr,
    );
    rewrite_l4(frame, l4_start, protocol, old_addr, addr, |p| p.1 = port);
}

/// NAT back to the client: source address and port become the VIP's.
pub fn rewrite_source(frame: &mut [u8], l4_start: usize, protocol: u8, addr: Ipv4Addr, port: u16) {
    let old_addr = rewrite_ip(
        frame,
        |ip| {
            let old = ip.src_addr();
            ip.set_src_addr(addr);
            old
        },
        addr,
    );
    rewrite_l4(frame, l4_start, protocol, old_addr, addr, |p| p.0 = port);
}

/// Applies `set` to the IPv4 header, decrements the TTL, and fixes the header
/// checksum for both changes. Returns the address `set` replaced.
#[inline]
fn rewrite_ip(
    frame: &mut [u8],
    set: impl FnOnce(&mut Ipv4Packet<&mut [u8]>) -> Ipv4Addr,
    new: Ipv4Addr,
) -> Ipv4Addr {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER_LEN..]);
    let old = set(&mut ip);
    let ttl = ip.ttl();
    let proto = u8::from(ip.protocol());
    ip.set_ttl(ttl - 1);
    let mut sum = ip.checksum();
    sum = checksum::update_addr(sum, old, new);
    sum = checksum::update_u16(
        sum,
        u16::from_be_bytes([ttl, proto]),
        u16::from_be_bytes([ttl - 1, proto]),
    );
    ip.set_checksum(sum);
    old
}

/// Updates the L4 ports via `set` (on a (src, dst) pair) and the L4 checksum
/// for the address change (pseudo-header) and the port change.
#[inline]
fn rewrite_l4(
    frame: &mut [u8],
    l4_start: usize,
    protocol: u8,
    old_addr: Ipv4Addr,
    new_addr: Ipv4Addr,
    set: impl FnOnce(&mut (u16, u16)),
) {
    let segment = ip_payload_mut(frame, l4_start);
    if protocol == 6 {
        let mut tcp = TcpPacket::new_unchecked(segment);
        let old = (tcp.src_port(), tcp.dst_port());
        let mut new = old;
        set(&mut new);
        let mut sum = checksum::update_addr(tcp.checksum(), old_addr, new_addr);
        sum = checksum::update_u16(sum, old.0, new.0);
        sum = checksum::update_u16(sum, old.1, new.1);
        tcp.set_src_port(new.0);
        tcp.set_dst_port(new.1);
        tcp.set_checksum(sum);
    } else {
        let mut udp = UdpPacket::new_unchecked(segment);
        let old = (udp.src_port(), udp.dst_port());
        let mut new = old;
        set(&mut new);
        let mut sum = checksum::update_udp_addr(udp.checksum(), old_addr, new_addr);
        sum = checksum::update_udp_u16(sum, old.0, new.0);
        sum = checksum::update_udp_u16(sum, old.1, new.1);
        udp.set_src_port(new.0);
        udp.set_dst_port(new.1);
        udp.set_checksum(sum);
    }
}

/// TTL − 1 with the header checksum updated (routing a packet unchanged).
fn decrement_ttl(frame: &mut [u8]) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER_LEN..]);
    let ttl = ip.ttl();
    let proto = u8::from(ip.protocol());
    ip.set_ttl(ttl - 1);
    let sum = checksum::update_u16(
        ip.checksum(),
        u16::from_be_bytes([ttl, proto]),
        u16::from_be_bytes([ttl - 1, proto]),
    );
    ip.set_checksum(sum);
}

/// Turns a frame holding [`IPIP_HEADER_LEN`] bytes of fresh room followed by
/// the original Ethernet frame into the IPIP frame: the Ethernet header
/// moves to the front and an outer IPv4 header (protocol 4) follows it,
/// copying TOS, ident, DF and TTL from the inner header, as IPVS does. The
/// inner packet is untouched.
pub fn encapsulate_ipip(frame: &mut [u8], outer_src: Ipv4Addr, outer_dst: Ipv4Addr) {
    frame.copy_within(IPIP_HEADER_LEN..IPIP_HEADER_LEN + ETH_HEADER_LEN, 0);
    let (outer, inner) = frame[ETH_HEADER_LEN..].split_at_mut(IPIP_HEADER_LEN);
    let inner = Ipv4Packet::new_unchecked(&*inner);
    let mut ip = Ipv4Packet::new_unchecked(outer);
    ip.set_version(4);
    ip.set_header_len(IPIP_HEADER_LEN as u8);
    ip.set_dscp(inner.dscp());
    ip.set_ecn(inner.ecn());
    ip.set_total_len(inner.total_len() + IPIP_HEADER_LEN as u16);
    ip.set_ident(inner.ident());
    ip.clear_flags();
    ip.set_dont_frag(inner.dont_frag());
    ip.set_ttl(inner.ttl());
    ip.set_protocol(IpProtocol::IpIp);
    ip.set_src_addr(outer_src);
    ip.set_dst_addr(outer_dst);
    ip.fill_checksum();
}

/// Largest ICMP error (IP header included), as RFC 1812 4.3.2.3 allows.
const ICMP_ERROR_MAX: usize = 576;

/// Rewrites a too-big frame in place into an ICMP "fragmentation needed"
/// (type 3, code 4, RFC 1191) from `source` to the packet's sender,
/// quoting as much of the original packet as fits in 576 bytes. The link
/// layer is left for [`write_l2`]. Returns the new frame length.
fn write_frag_needed(frame: &mut [u8], source: Ipv4Addr, next_hop_mtu: u16) -> usize {
    const ICMP_HEADER: usize = 8;
    const NEW_HEADERS: usize = 20 + ICMP_HEADER;
    let (sender, original_len) = {
        let ip = Ipv4Packet::new_unchecked(&frame[ETH_HEADER_LEN..]);
        (ip.src_addr(), usize::from(ip.total_len()))
    };
    let quote = original_len
        .min(ICMP_ERROR_MAX - NEW_HEADERS)
        .min(frame.len() - ETH_HEADER_LEN - NEW_HEADERS);
    frame.copy_within(
        ETH_HEADER_LEN..ETH_HEADER_LEN + quote,
        ETH_HEADER_LEN + NEW_HEADERS,
    );
    let len = ETH_HEADER_LEN + NEW_HEADERS + quote;
    let packet = &mut frame[ETH_HEADER_LEN..len];
    {
        let mut icmp = IcmpPacket::new_unchecked(&mut packet[20..]);
        icmp.set_msg_type(IcmpMessage::DstUnreachable);
        icmp.set_msg_code(IcmpDstUnreachable::FragRequired.into());
        icmp.set_next_hop_mtu(next_hop_mtu);
        icmp.fill_checksum();
    }
    let mut ip = Ipv4Packet::new_unchecked(packet);
    ip.set_version(4);
    ip.set_header_len(20);
    // Precedence "internetwork control", as Linux sends ICMP errors.
    ip.set_dscp(0x30);
    ip.set_ecn(0);
    ip.set_total_len((NEW_HEADERS + quote) as u16);
    ip.set_ident(0);
    ip.clear_flags();
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::Icmp);
    ip.set_src_addr(source);
    ip.set_dst_addr(sender);
    ip.fill_checksum();
    len
}

/// Fills in the link layer of a forwarded frame.
#[inline]
pub fn write_l2(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
