//! rvs-pktgen: writes benchmark traffic for rvsd as a pcap file.
//!
//! Every frame arrives at one director port (`--dst-mac`): client packets to
//! the VIP and, for NAT, the real servers' replies to the clients. rvsd
//! replays the file with `net_pcap,infinite_rx=1`, so the file is built to
//! stay valid when it loops:
//!
//! * `syn`: one SYN per flow, every flow distinct. Only the first pass is
//!   "new connections"; the bench script stops rvsd before the file wraps
//!   and checks `conns_created == rx_packets`.
//! * `established`: a SYN per flow (flows in order), then
//!   `--packets-per-flow` rounds; each round visits every flow once in a
//!   fresh random order, alternating client data and server reply per flow.
//!   On later passes the SYNs hit the existing ESTABLISHED connections (a
//!   SYN does not leave ESTABLISHED in IPVS's table), so the live connection
//!   count stays at `--flows`. `--one-way` leaves out the replies (DR/TUN,
//!   where replies bypass the director).
//! * `lifecycle`: whole conversations — SYN, SYN-ACK, ACK, request, reply,
//!   client FIN, server FIN-ACK, last ACK — stage by stage, each stage in a
//!   random flow order (so every flow's packets keep their order). On later
//!   passes the SYN finds the connection in TIME_WAIT and schedules afresh.
//!
//! Replies name the real server rvsd picked, which the generator predicts:
//! with `rr` and one worker, the k-th SYN of the file goes to server
//! `k mod servers` (servers `--server-base`, +1, +2, ...). `lifecycle` needs
//! `flows` to be a multiple of `servers` so later passes repeat the mapping.
//!
//! Flow i (counting from `--flow-offset`) is client
//! `client-base + i mod 32000`, source port `1024 + i / 32000`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use rvs::addr::MacAddr;
use rvs::pcap;
use rvs::wire::tcp::flags;
use rvs::wire::{build_tcp_frame, EtherType, EthernetRepr, Ipv4Repr, TcpRepr};

/// Client addresses in use; the rest of a flow index goes into the port.
const CLIENT_ADDRESSES: u64 = 32_000;
const FIRST_CLIENT_PORT: u64 = 1024;
/// Ethernet minimum frame length without the FCS; shorter frames are padded
/// as a NIC would.
const MIN_FRAME: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mix {
    Syn,
    Established,
    Lifecycle,
}

#[derive(Parser, Debug)]
#[command(
    name = "rvs-pktgen",
    about = "Write benchmark traffic for rvsd (TCP to a VIP, and the real servers' replies) as pcap"
)]
struct Args {
    /// Traffic mix.
    #[arg(long, value_enum)]
    mix: Mix,
    /// Number of distinct flows (client address and port pairs).
    #[arg(long)]
    flows: u64,
    /// Output pcap file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Index of the first flow, so several files (one per worker queue) hold
    /// disjoint flows.
    #[arg(long, default_value_t = 0)]
    flow_offset: u64,
    /// established: data packets per flow after its SYN.
    #[arg(long, default_value_t = 2)]
    packets_per_flow: u64,
    /// established: client packets only (DR, TUN).
    #[arg(long)]
    one_way: bool,
    /// The virtual service.
    #[arg(long, default_value = "198.18.0.100:80")]
    vip: SocketAddrV4,
    /// Number of real servers (replies come from them).
    #[arg(long, default_value_t = 2)]
    servers: u32,
    /// Address of the first real server; the others follow consecutively.
    #[arg(long, default_value = "198.19.0.10")]
    server_base: Ipv4Addr,
    #[arg(long, default_value_t = 8080)]
    server_port: u16,
    /// Address of client 0; clients are consecutive addresses from here.
    #[arg(long, default_value = "198.18.128.0")]
    client_base: Ipv4Addr,
    /// Destination MAC of every frame: the director port that receives them.
    #[arg(long, default_value = "02:00:c6:12:00:01")]
    dst_mac: MacAddr,
    /// Source MAC of every frame (the router or switch in front of the director).
    #[arg(long, default_value = "02:00:c6:12:00:fe")]
    src_mac: MacAddr,
    /// TCP payload bytes of a client request.
    #[arg(long, default_value_t = 64)]
    request_bytes: usize,
    /// TCP payload bytes of a server reply.
    #[arg(long, default_value_t = 64)]
    reply_bytes: usize,
    /// Seed of the shuffles (the same seed gives the same file).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Counts of what the file holds, printed as `name=value` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    frames: u64,
    bytes: u64,
    syn: u64,
    client_packets: u64,
    server_packets: u64,
    fin: u64,
}

impl Summary {
    fn count(&mut self, frame: &[u8], from_client: bool, tcp_flags: u8) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
        if from_client {
            self.client_packets += 1;
        } else {
            self.server_packets += 1;
        }
        if tcp_flags & flags::SYN != 0 && from_client {
            self.syn += 1;
        }
        if tcp_flags & flags::FIN != 0 {
            self.fin += 1;
        }
    }
}

/// One flow's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    client: SocketAddrV4,
    server: SocketAddrV4,
}

/// splitmix64: a small, seedable generator for the shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

struct Generator<'a> {
    args: &'a Args,
    flows: Vec<Flow>,
    frames: Vec<Vec<u8>>,
    summary: Summary,
    rng: Rng,
}

/// Relative sequence numbers of a conversation: the client starts at
/// `CLIENT_ISN`, the server at `SERVER_ISN`.
const CLIENT_ISN: u32 = 1_000_000;
const SERVER_ISN: u32 = 5_000_000;

impl<'a> Generator<'a> {
    fn new(args: &'a Args) -> Result<Self, String> {
        check(args)?;
        let flows = (0..args.flows)
            .map(|local| {
                let i = args.flow_offset + local;
                let client_ip = u32::from(args.client_base) + (i % CLIENT_ADDRESSES) as u32;
                let client_port = (FIRST_CLIENT_PORT + i / CLIENT_ADDRESSES) as u16;
                // rr in one worker: the k-th new connection goes to server k mod n.
                let server = (local % u64::from(args.servers)) as u32;
                Flow {
                    client: SocketAddrV4::new(Ipv4Addr::from(client_ip), client_port),
                    server: SocketAddrV4::new(
                        Ipv4Addr::from(u32::from(args.server_base) + server),
                        args.server_port,
                    ),
                }
            })
            .collect();
        Ok(Generator {
            args,
            flows,
            frames: Vec::new(),
            summary: Summary::default(),
            rng: Rng(args.seed),
        })
    }

    fn client_packet(&mut self, flow: usize, tcp_flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        let f = self.flows[flow];
        let vip = self.args.vip;
        self.push(f.client, vip, true, tcp_flags, seq, ack, payload);
    }

    fn server_packet(&mut self, flow: usize, tcp_flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        let f = self.flows[flow];
        self.push(f.server, f.client, false, tcp_flags, seq, ack, payload);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        from_client: bool,
        tcp_flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) {
        let syn = tcp_flags & flags::SYN != 0;
        let mut frame = build_tcp_frame(
            &EthernetRepr {
                src_addr: self.args.src_mac,
                dst_addr: self.args.dst_mac,
                ethertype: EtherType::Ipv4,
            },
            &Ipv4Repr {
                src_addr: *src.ip(),
                dst_addr: *dst.ip(),
                ttl: 64,
                ident: (self.frames.len() & 0xffff) as u16,
                dont_frag: true,
                ..Ipv4Repr::default()
            },
            &TcpRepr {
                src_port: src.port(),
                dst_port: dst.port(),
                seq_number: seq,
                ack_number: ack,
                flags: tcp_flags,
                window_len: 64240,
                max_seg_size: syn.then_some(1460),
                window_scale: None,
                sack_permitted: false,
                timestamp: None,
                payload,
            },
        );
        if frame.len() < MIN_FRAME {
            frame.resize(MIN_FRAME, 0);
        }
        self.summary.count(&frame, from_client, tcp_flags);
        self.frames.push(frame);
    }

    fn shuffled_flows(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.flows.len()).collect();
        self.rng.shuffle(&mut order);
        order
    }

    fn syn_mix(&mut self) {
        for flow in 0..self.flows.len() {
            self.client_packet(flow, flags::SYN, CLIENT_ISN, 0, &[]);
        }
    }

    fn established_mix(&mut self) {
        let request = vec![b'q'; self.args.request_bytes];
        let reply = vec![b'r'; self.args.reply_bytes];
        // SYNs in flow order: that is the order rr assigns servers in.
        self.syn_mix();
        let data = flags::ACK | flags::PSH;
        for round in 0..self.args.packets_per_flow {
            for flow in self.shuffled_flows() {
                let rounds = round as u32;
                let client_turn = self.args.one_way || (round + flow as u64).is_multiple_of(2);
                if client_turn {
                    let seq = CLIENT_ISN + 1 + rounds * request.len() as u32;
                    self.client_packet(flow, data, seq, SERVER_ISN + 1, &request);
                } else {
                    let seq = SERVER_ISN + 1 + rounds * reply.len() as u32;
                    self.server_packet(flow, data, seq, CLIENT_ISN + 1, &reply);
                }
            }
        }
    }

    fn lifecycle_mix(&mut self) {
        let request = vec![b'q'; self.args.request_bytes];
        let reply = vec![b'r'; self.args.reply_bytes];
        let (req, rep) = (request.len() as u32, reply.len() as u32);
        let (c, s) = (CLIENT_ISN, SERVER_ISN);
        let ack = flags::ACK;
        // SYNs in flow order (rr's assignment order); later stages shuffled.
        self.syn_mix();
        for flow in self.shuffled_flows() {
            self.server_packet(flow, flags::SYN | ack, s, c + 1, &[]);
        }
        for flow in self.shuffled_flows() {
            self.client_packet(flow, ack, c + 1, s + 1, &[]);
        }
        for flow in self.shuffled_flows() {
            self.client_packet(flow, ack | flags::PSH, c + 1, s + 1, &request);
        }
        for flow in self.shuffled_flows() {
            self.server_packet(flow, ack | flags::PSH, s + 1, c + 1 + req, &reply);
        }
        for flow in self.shuffled_flows() {
            self.client_packet(flow, ack | flags::FIN, c + 1 + req, s + 1 + rep, &[]);
        }
        for flow in self.shuffled_flows() {
            self.server_packet(flow, ack | flags::FIN, s + 1 + rep, c + 2 + req, &[]);
        }
        for flow in self.shuffled_flows() {
            self.client_packet(flow, ack, c + 2 + req, s + 2 + rep, &[]);
        }
    }

    fn generate(mut self) -> (Vec<Vec<u8>>, Summary) {
        match self.args.mix {
            Mix::Syn => self.syn_mix(),
            Mix::Established => self.established_mix(),
            Mix::Lifecycle => self.lifecycle_mix(),
        }
        (self.frames, self.summary)
    }
}

/// Rejects argument combinations that would give a wrong or ambiguous file;
/// each message names the argument.
fn check(args: &Args) -> Result<(), String> {
    if args.flows == 0 {
        return Err("--flows: must be at least 1".into());
    }
    let last = args
        .flow_offset
        .checked_add(args.flows - 1)
        .ok_or("--flow-offset: too large")?;
    let max_flows = CLIENT_ADDRESSES * (65536 - FIRST_CLIENT_PORT);
    if last >= max_flows {
        return Err(format!(
            "--flows/--flow-offset: flow index {last} exceeds the {max_flows} client address/port pairs"
        ));
    }
    if u64::from(u32::from(args.client_base)) + CLIENT_ADDRESSES > 1 << 32 {
        return Err(format!(
            "--client-base: {} leaves no room for {CLIENT_ADDRESSES} client addresses",
            args.client_base
        ));
    }
    if args.servers == 0 {
        return Err("--servers: must be at least 1".into());
    }
    if u64::from(u32::from(args.server_base)) + u64::from(args.servers) > 1 << 32 {
        return Err(format!(
            "--server-base: {} leaves no room for {} servers",
            args.server_base, args.servers
        ));
    }
    if args.mix == Mix::Lifecycle && !args.flows.is_multiple_of(u64::from(args.servers)) {
        return Err(format!(
            "--flows: {} is not a multiple of --servers {} (lifecycle replays must reschedule \
             every flow to the same server)",
            args.flows, args.servers
        ));
    }
    if args.mix == Mix::Established && args.packets_per_flow == 0 && !args.one_way {
        // Allowed, but then the file is a SYN mix; say so rather than guess.
        return Err(
            "--packets-per-flow: 0 makes `established` a SYN-only file; use --mix syn".into(),
        );
    }
    let frame_payload_limit = 1500 - 20 - 24;
    for (name, n) in [
        ("--request-bytes", args.request_bytes),
        ("--reply-bytes", args.reply_bytes),
    ] {
        if n > frame_payload_limit {
            return Err(format!(
                "{name}: {n} exceeds {frame_payload_limit} (one 1500-byte IP packet)"
            ));
        }
    }
    if args.dst_mac.is_multicast() {
        return Err(format!("--dst-mac: {} is not unicast", args.dst_mac));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let generator = match Generator::new(&args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rvs-pktgen: {e}");
            return ExitCode::from(2);
        }
    };
    let (frames, summary) = generator.generate();
    // Flushed explicitly: dropping a BufWriter would swallow a write error.
    let written = File::create(&args.out).and_then(|file| {
        let mut out = BufWriter::new(file);
        pcap::write(&mut out, &frames)?;
        out.flush()
    });
    if let Err(e) = written {
        eprintln!("rvs-pktgen: --out {}: {e}", args.out.display());
        return ExitCode::from(1);
    }
    let report = format!(
        "frames={}\nbytes={}\nflows={}\nsyn={}\nclient_packets={}\nserver_packets={}\nfin={}\n",
        summary.frames,
        summary.bytes,
        args.flows,
        summary.syn,
        summary.client_packets,
        summary.server_packets,
        summary.fin
    );
    // A closed stdout (e.g. `| head`) is reported, not a panic.
    if let Err(e) = std::io::stdout().write_all(report.as_bytes()) {
        eprintln!("rvs-pktgen: stdout: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs::wire::{EthernetFrame, Ipv4Packet, TcpPacket};
    use std::collections::{HashMap, HashSet};

    fn args(mix: Mix, extra: &[&str]) -> Args {
        let mut argv = vec![
            "rvs-pktgen",
            "--mix",
            match mix {
                Mix::Syn => "syn",
                Mix::Established => "established",
                Mix::Lifecycle => "lifecycle",
            },
            "--out",
            "/dev/null",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    /// (src, dst, flags, payload length) of a frame, via the wire views with
    /// every checksum verified.
    fn parse(frame: &[u8]) -> (SocketAddrV4, SocketAddrV4, u8, usize) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let end = ip.total_len() as usize - ip.header_len() as usize;
        let tcp = TcpPacket::new_checked(&ip.payload()[..end]).unwrap();
        let repr = TcpRepr::parse(&tcp, ip.src_addr(), ip.dst_addr()).unwrap();
        (
            SocketAddrV4::new(ip.src_addr(), repr.src_port),
            SocketAddrV4::new(ip.dst_addr(), repr.dst_port),
            repr.flags,
            repr.payload.len(),
        )
    }

    #[test]
    fn syn_mix_is_one_distinct_syn_per_flow() {
        let a = args(Mix::Syn, &["--flows", "70000"]);
        let (frames, summary) = Generator::new(&a).unwrap().generate();
        assert_eq!(frames.len(), 70000);
        assert_eq!(summary.syn, 70000);
        let mut clients = HashSet::new();
        for f in &frames {
            assert!(f.len() >= MIN_FRAME);
            let (src, dst, fl, _) = parse(f);
            assert_eq!(fl, flags::SYN);
            assert_eq!(dst, a.vip);
            assert!(clients.insert(src), "flow {src} repeated");
        }
    }

    #[test]
    fn established_replies_come_from_the_rr_server() {
        let a = args(
            Mix::Established,
            &["--flows", "10", "--servers", "3", "--packets-per-flow", "4"],
        );
        let (frames, summary) = Generator::new(&a).unwrap().generate();
        assert_eq!(frames.len(), 10 + 10 * 4);
        assert_eq!(summary.syn, 10);
        assert_eq!(summary.client_packets + summary.server_packets, 50);
        assert_eq!(summary.server_packets, 20);
        // The k-th SYN picks server k mod 3 (rr); replies must match it.
        let mut server_of = HashMap::new();
        for (k, f) in frames[..10].iter().enumerate() {
            let (src, _, fl, _) = parse(f);
            assert_eq!(fl, flags::SYN);
            let rs = Ipv4Addr::from(u32::from(a.server_base) + (k % 3) as u32);
            server_of.insert(src, SocketAddrV4::new(rs, 8080));
        }
        let mut per_flow = HashMap::new();
        for f in &frames[10..] {
            let (src, dst, fl, len) = parse(f);
            assert_eq!(fl, flags::ACK | flags::PSH);
            assert_eq!(len, 64);
            let client = if dst == a.vip {
                src
            } else {
                assert_eq!(server_of[&dst], src, "reply from the wrong server");
                dst
            };
            *per_flow.entry(client).or_insert(0) += 1;
        }
        assert_eq!(per_flow.len(), 10);
        assert!(per_flow.values().all(|&n| n == 4));
    }

    #[test]
    fn one_way_has_no_replies() {
        let a = args(Mix::Established, &["--flows", "8", "--one-way"]);
        let (frames, summary) = Generator::new(&a).unwrap().generate();
        assert_eq!(summary.server_packets, 0);
        assert!(frames.iter().all(|f| parse(f).1 == a.vip));
    }

    #[test]
    fn lifecycle_keeps_each_flows_packets_in_order() {
        let a = args(Mix::Lifecycle, &["--flows", "6", "--servers", "2"]);
        let (frames, summary) = Generator::new(&a).unwrap().generate();
        assert_eq!(frames.len(), 6 * 8);
        assert_eq!(summary.fin, 12);
        let client = |f: &[u8]| {
            let (src, dst, _, _) = parse(f);
            if dst == a.vip {
                src
            } else {
                dst
            }
        };
        let first = client(&frames[0]);
        let seen: Vec<u8> = frames
            .iter()
            .filter(|f| client(f) == first)
            .map(|f| parse(f).2)
            .collect();
        let ack = flags::ACK;
        assert_eq!(
            seen,
            [
                flags::SYN,
                flags::SYN | ack,
                ack,
                ack | flags::PSH,
                ack | flags::PSH,
                ack | flags::FIN,
                ack | flags::FIN,
                ack
            ]
        );
    }

    #[test]
    fn offsets_give_disjoint_flows() {
        let a = args(Mix::Syn, &["--flows", "100"]);
        let b = args(Mix::Syn, &["--flows", "100", "--flow-offset", "100"]);
        let flows_a: HashSet<_> = Generator::new(&a)
            .unwrap()
            .flows
            .iter()
            .map(|f| f.client)
            .collect();
        let flows_b: HashSet<_> = Generator::new(&b)
            .unwrap()
            .flows
            .iter()
            .map(|f| f.client)
            .collect();
        assert_eq!(flows_a.len(), 100);
        assert!(flows_a.is_disjoint(&flows_b));
    }

    #[test]
    fn same_seed_same_file_other_seed_other_order() {
        let a = args(Mix::Established, &["--flows", "50"]);
        let b = args(Mix::Established, &["--flows", "50", "--seed", "2"]);
        let one = Generator::new(&a).unwrap().generate().0;
        let again = Generator::new(&a).unwrap().generate().0;
        let other = Generator::new(&b).unwrap().generate().0;
        assert_eq!(one, again);
        assert_ne!(one, other);
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let cases: &[(Mix, &[&str], &str)] = &[
            (Mix::Syn, &["--flows", "0"], "--flows"),
            (Mix::Syn, &["--flows", "1", "--servers", "0"], "--servers"),
            (
                Mix::Lifecycle,
                &["--flows", "5", "--servers", "2"],
                "--flows",
            ),
            (Mix::Syn, &["--flows", "2100000000"], "--flows"),
            (
                Mix::Syn,
                &["--flows", "1", "--request-bytes", "2000"],
                "--request-bytes",
            ),
            (
                Mix::Syn,
                &["--flows", "1", "--dst-mac", "ff:ff:ff:ff:ff:ff"],
                "--dst-mac",
            ),
            (
                Mix::Established,
                &["--flows", "1", "--packets-per-flow", "0"],
                "--packets-per-flow",
            ),
        ];
        for (mix, extra, name) in cases {
            let a = args(*mix, extra);
            let err = Generator::new(&a).err().unwrap();
            assert!(err.starts_with(name), "{extra:?}: {err}");
        }
    }
}
