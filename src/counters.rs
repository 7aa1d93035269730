//! Per-worker counters: written by one worker only, summed by the
//! management thread. Drop reasons are a small `Copy` enum, one counter each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

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
    SteerQueueFull => "steer_queue_full", "The queue to the worker owning the flow was full.";
    NoDestination => "no_destination", "A packet of a connection whose server was removed (the connection ends, as IPVS's expire_nodest_conn=1).";
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

    /// For gauges (a value, not a count), still written by one thread.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One port's packet counts as one worker sees them.
/// IPVS's per-destination statistics, counted by one worker. IPVS counts
/// packets and bytes (IP length) in each direction and connections
/// scheduled; a service's statistics are the sum over its destinations.
#[derive(Default, Debug)]
pub struct DestCounters {
    pub conns: Counter,
    pub in_packets: Counter,
    pub out_packets: Counter,
    pub in_bytes: Counter,
    pub out_bytes: Counter,
    /// Gauges: this worker's connections to the destination in ESTABLISHED
    /// state and in any other (IPVS's ActiveConn / InActConn).
    pub active: Counter,
    pub inactive: Counter,
}

/// A worker's [`DestCounters`] indexed by dest id. The worker replaces the
/// whole array (values carried over) when ids outgrow it, so readers on the
/// management thread never see it move under them.
pub type DestStats = Arc<Vec<DestCounters>>;

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
    /// Packets handed to the worker that owns their flow.
    pub steered_out: Counter,
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
    /// Added latency per packet in TSC cycles (RX burst to the end of its
    /// TX flush). The worker records into its own histogram and hands it
    /// over here once, when it stops: no lock on the packet path.
    pub latency: std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>,
    /// Per-destination statistics (see [`DestStats`]).
    pub dests: ArcSwap<Vec<DestCounters>>,
    /// Connection listing on request (`rvsadm -c`), see [`ConnDump`].
    pub conn_dump: ConnDump,
}

/// One connection as a listing shows it: the record and how long it has
/// left.
#[derive(Clone, Copy, Debug)]
pub struct ConnListing {
    pub conn: crate::conn::Conn,
    pub expires_in: crate::conn::Millis,
}

/// How the management thread gets a worker's connections without touching
/// its table: it bumps `requested`; the worker, on its slow path (never per
/// packet), copies up to [`ConnDump::MAX`] connections into `answer` tagged
/// with that number, with the dest id of each of its persistence templates.
#[derive(Debug, Default)]
pub struct ConnDump {
    pub requested: AtomicU64,
    pub answer: std::sync::Mutex<DumpAnswer>,
}

/// A worker's answer to a [`ConnDump`] request.
#[derive(Debug, Default)]
pub struct DumpAnswer {
    /// The request this answers.
    pub request: u64,
    pub connections: Vec<ConnListing>,
    /// The dest id of every persistence template (IPVS's PersistConn).
    pub template_dests: Vec<u32>,
}

impl ConnDump {
    /// Connections one worker lists at most.
    pub const MAX: usize = 65_536;
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
            steered_out: Counter::default(),
            forwarded_to_servers: Counter::default(),
            forwarded_to_clients: Counter::default(),
            icmp_frag_needed_sent: Counter::default(),
            one_packet_scheduled: Counter::default(),
            busy_cycles: Counter::default(),
            latency: std::sync::Mutex::new(None),
            dests: ArcSwap::from_pointee(Vec::new()),
            conn_dump: ConnDump::default(),
        }
    }

    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// Makes room for dest ids below `limit` (control path: allocates),
    /// keeping the counts; returns the array the worker should count in.
    pub fn dest_stats_for(&self, limit: usize) -> DestStats {
        let current = self.dests.load_full();
        if current.len() >= limit {
            return current;
        }
        let grown: Vec<DestCounters> = (0..limit.next_power_of_two())
            .map(|i| {
                let d = DestCounters::default();
                if let Some(old) = current.get(i) {
                    d.conns.add(old.conns.get());
                    d.in_packets.add(old.in_packets.get());
                    d.out_packets.add(old.out_packets.get());
                    d.in_bytes.add(old.in_bytes.get());
                    d.out_bytes.add(old.out_bytes.get());
                    d.active.set(old.active.get());
                    d.inactive.set(old.inactive.get());
                }
                d
            })
            .collect();
        let grown = DestStats::new(grown);
        self.dests.store(grown.clone());
        grown
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
