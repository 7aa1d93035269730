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
use crate::conn::{Conn, ConnId, ConnState, ConnTable, Direction, FlowKey, Millis, TcpFlags};
use crate::counters::{DropReason, WorkerCounters};
use crate::neigh::{NeighborTable, Resolution};
use crate::sched::{FlowInfo, Scheduler, ServerLoad};
use crate::snapshot::{PortIdx, Snapshot};
use crate::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use crate::wire::checksum;
use crate::wire::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_HEADER_LEN};
use crate::wire::icmp::{IcmpMessage, IcmpPacket};
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
    /// Turned into a reply in place, link layer included: send it out `port`.
    Reply {
        port: PortIdx,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1 << 20,
            neighbors: 4096,
        }
    }
}

/// One service as a worker schedules it: its scheduler and the load it has
/// put on each server (IPVS's per-dest counters, per worker).
struct ServiceState {
    scheduler: Box<dyn Scheduler>,
    loads: Vec<ServerLoad>,
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
    pub neighbors: NeighborTable,
    pub counters: Arc<WorkerCounters>,
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
            neighbors: NeighborTable::with_capacity(limits.neighbors),
            counters,
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
            let loads: Vec<ServerLoad> = svc
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
            let mut scheduler = svc.scheduler.build();
            scheduler.update(&loads);
            services.push(ServiceState { scheduler, loads });
        }
        for (ip, mac) in snapshot.ports.iter().enumerate().flat_map(|(i, p)| {
            p.static_neighbors
                .iter()
                .map(move |(ip, mac)| ((*ip, i), *mac))
        }) {
            self.neighbors.add_static(ip.0, mac, ip.1);
        }
        self.services = services;
        self.dest_slots = slots;
        self.snapshot = snapshot;
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
        if let Some(svc) = self.services.get_mut(s) {
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

        // A packet of a known connection, from the client.
        if let Some(id) = self.conns.find_from_client(&key) {
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
            self.account(old.dest_id, Some(old.state), None);
            self.counters.conns_live.add(1u64.wrapping_neg()); // −1 on a wrapping counter
        }
        // A reply from a real server.
        if let Some(id) = self.conns.find_from_server(&key) {
            return self.forward(frame, l4_start, id, l4, Direction::FromServer, now);
        }
        // A new connection to a virtual service.
        if let Some(svc) = self.snapshot.service(l4.protocol, ip_dst, l4.dst_port) {
            if l4.protocol == 6 && !is_new_tcp(l4.flags) {
                return Verdict::Drop(DropReason::NoConnection);
            }
            return match self.schedule(svc, &key, now) {
                Ok(id) => self.forward(frame, l4_start, id, l4, Direction::FromClient, now),
                Err(reason) => Verdict::Drop(reason),
            };
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

    /// Picks a server for a new flow and records the connection.
    fn schedule(&mut self, svc: usize, key: &FlowKey, now: Millis) -> Result<ConnId, DropReason> {
        let snapshot = &self.snapshot;
        let service = &snapshot.services[svc];
        let state = &mut self.services[svc];
        let flow = FlowInfo {
            protocol: key.protocol,
            client_addr: key.src_addr,
            client_port: key.src_port,
            virtual_addr: key.dst_addr,
            virtual_port: key.dst_port,
            now,
        };
        let pick = state
            .scheduler
            .pick(&state.loads, &flow)
            .ok_or(DropReason::NoServer)?;
        let server = service.servers.get(pick).ok_or(DropReason::NoServer)?;
        let conn = Conn {
            protocol: key.protocol,
            client_addr: key.src_addr,
            client_port: key.src_port,
            virtual_addr: key.dst_addr,
            virtual_port: key.dst_port,
            real_addr: server.addr,
            real_port: server.port,
            dest_id: server.dest_id,
            state: if key.protocol == 6 {
                ConnState::None
            } else {
                ConnState::Udp
            },
            expires_at: now,
            flags: forward_flag(server.forward),
        };
        let id = self.conns.insert(conn).map_err(|_| DropReason::TableFull)?;
        self.account(server.dest_id, None, Some(conn.state));
        self.counters.conns_created.inc();
        self.counters.conns_live.inc();
        Ok(id)
    }

    /// Advances the connection's state for a packet in direction `dir` and
    /// rewrites it: towards the real server (DNAT) or back to the client
    /// from the VIP (SNAT).
    fn forward(
        &mut self,
        frame: &mut [u8],
        l4_start: usize,
        id: ConnId,
        l4: L4Info,
        dir: Direction,
        now: Millis,
    ) -> Verdict {
        let (old, new) = self
            .conns
            .on_packet(id, dir, l4.flags, now, &self.snapshot.timeouts);
        let conn = *self.conns.get(id);
        if old != new {
            self.account(conn.dest_id, Some(old), Some(new));
        }
        let towards = match dir {
            Direction::FromClient => conn.real_addr,
            Direction::FromServer => conn.client_addr,
        };
        let Some((port, next_hop)) = self.snapshot.route(towards) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        match dir {
            Direction::FromClient => {
                rewrite_destination(frame, l4_start, l4.protocol, conn.real_addr, conn.real_port)
            }
            Direction::FromServer => rewrite_source(
                frame,
                l4_start,
                l4.protocol,
                conn.virtual_addr,
                conn.virtual_port,
            ),
        }
        Verdict::Forward { port, next_hop }
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

    /// Slow path: removes up to `budget` expired connections.
    pub fn expire(&mut self, now: Millis, budget: usize) -> usize {
        let mut gone: [(u32, ConnState); 64] = [(0, ConnState::None); 64];
        let mut removed = 0;
        let mut left = budget;
        while left > 0 {
            let step = left.min(gone.len());
            let mut n = 0;
            self.conns.expire(now, step, |c| {
                if n < 64 {
                    gone[n] = (c.dest_id, c.state);
                    n += 1;
                }
            });
            for &(dest_id, state) in &gone[..n] {
                self.account(dest_id, Some(state), None);
            }
            removed += n;
            left -= step;
        }
        self.counters.conns_expired.add(removed as u64);
        self.counters
            .conns_live
            .add((removed as u64).wrapping_neg());
        removed
    }
}

/// A TCP segment that may open a connection: SYN alone.
#[inline]
fn is_new_tcp(f: TcpFlags) -> bool {
    f.syn && !f.ack && !f.rst && !f.fin
}

fn forward_flag(forward: Forward) -> u8 {
    match forward {
        Forward::Nat => 0,
        Forward::Dr => 1,
        Forward::Tun => 2,
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
