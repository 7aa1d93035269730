//! Per-worker counters: written by one worker only, summed by the
//! management thread. Drop reasons are a small `Copy` enum, one counter each.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why the data plane dropped a packet.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's name in rvsd's exit report and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    Malformed => "malformed", "A header is truncated or inconsistent.";
    BadChecksum => "bad_ip_checksum", "The IPv4 header checksum is wrong.";
    MultiSegment => "multi_segment", "A frame spread over several buffers (jumbo frames are not supported).";
    ForeignMac => "foreign_mac", "Unicast frame addressed to another station's MAC.";
    UnsupportedEthertype => "unsupported_ethertype", "Neither ARP nor IPv4 (IPv6, LLDP, ...).";
    ArpNotForUs => "arp_not_for_us", "ARP request for an address the director does not own.";
    Fragment => "fragment", "IPv4 fragment (rvs does not reassemble).";
    TtlExceeded => "ttl_exceeded", "TTL would reach zero on forwarding.";
    IcmpNotEcho => "icmp_unhandled", "ICMP to the director other than an echo request.";
    ToDirector => "to_director", "TCP/UDP to the director's own address (no host stack).";
    NoService => "no_service", "Not a virtual service, nor a known connection's reply.";
    UnsupportedProtocol => "unsupported_protocol", "An IP protocol other than TCP, UDP or ICMP.";
    NoConnection => "no_connection", "TCP segment that is not a SYN, to a VIP, with no connection.";
    NoServer => "no_server", "The service has no server with weight > 0.";
    TableFull => "conn_table_full", "The connection table is full.";
    NoRoute => "no_route", "No port prefix and no gateway leads to the destination.";
    NeighborQueueFull => "neighbor_queue_full", "Too many packets already wait for ARP resolution.";
    NeighborTimeout => "neighbor_timeout", "ARP resolution of the next hop failed.";
    NoMbuf => "no_mbuf", "The mbuf pool was empty when a packet had to be built.";
    TxFull => "tx_full", "The TX queue did not accept the packet.";
    TunnelTooBig => "tunnel_too_big", "Too big for the egress MTU once encapsulated, and DF clear (rvs does not fragment).";
    TemplateTableFull => "template_table_full", "The persistence template table is full.";
    NoHeadroom => "no_headroom", "An mbuf had no room in front for the IPIP header.";
}

/// A counter with a single writer: increments need no atomic
/// read-modify-write, readers on other threads see a recent value.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: load + store is enough and avoids a locked instruction.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One port's packet counts as one worker sees them.
#[derive(Default, Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
}

/// Everything one worker counts.
#[derive(Debug)]
pub struct WorkerCounters {
    pub drops: [Counter; DropReason::COUNT],
    pub ports: Vec<PortCounters>,
    /// New connections scheduled.
    pub conns_created: Counter,
    /// Connections removed by expiry.
    pub conns_expired: Counter,
    /// Live connections in this worker's table.
    pub conns_live: Counter,
    /// ARP requests sent by the director.
    pub arp_requests_sent: Counter,
    /// ARP and ICMP echo replies sent by the director.
    pub replies_sent: Counter,
    /// Packets forwarded from clients towards real servers.
    pub forwarded_to_servers: Counter,
    /// Packets forwarded from real servers back to clients (none for dr and
    /// tun, whose replies bypass the director).
    pub forwarded_to_clients: Counter,
    /// ICMP "fragmentation needed" sent for packets too big to tunnel.
    pub icmp_frag_needed_sent: Counter,
    /// Datagrams of one-packet services forwarded without a connection.
    pub one_packet_scheduled: Counter,
    /// TSC cycles spent in bursts that carried packets.
    pub busy_cycles: Counter,
}

impl WorkerCounters {
    pub fn new(ports: usize) -> Self {
        WorkerCounters {
            drops: std::array::from_fn(|_| Counter::default()),
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
            conns_created: Counter::default(),
            conns_expired: Counter::default(),
            conns_live: Counter::default(),
            arp_requests_sent: Counter::default(),
            replies_sent: Counter::default(),
            forwarded_to_servers: Counter::default(),
            forwarded_to_clients: Counter::default(),
            icmp_frag_needed_sent: Counter::default(),
            one_packet_scheduled: Counter::default(),
            busy_cycles: Counter::default(),
        }
    }

    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counting() {
        let c = WorkerCounters::new(2);
        c.count_drop(DropReason::NoService);
        c.count_drop(DropReason::NoService);
        c.ports[1].rx_packets.add(5);
        assert_eq!(c.dropped(DropReason::NoService), 2);
        assert_eq!(c.dropped(DropReason::Malformed), 0);
        assert_eq!(c.ports[1].rx_packets.get(), 5);
    }
}
