//! Micro-benchmarks of the hot pieces: scheduler picks, the Maglev table
//! build, the connection table and the packet pipeline.
//!
//! `cargo bench --bench micro` prints one table row per measurement: name,
//! n (servers, or table entries), ns per operation (the median over batches
//! of each batch's mean) and operations per second. An argument filters
//! the groups (`cargo bench --bench micro -- conn`). `RVS_BENCH_QUICK=1` runs every measurement with tiny iteration
//! counts, a seconds-long smoke run for CI. Nothing here asserts anything
//! about time; the numbers depend on the machine.
//!
//! Plain `std::time::Instant` around batches of operations (no criterion:
//! too heavy to build for what it would add here), `black_box` on inputs and
//! results so the optimiser cannot drop the work.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs::addr::MacAddr;
use rvs::conn::{Conn, ConnState, ConnTable, FlowKey};
use rvs::counters::WorkerCounters;
use rvs::pipeline::{DataPlane, Limits, Verdict};
use rvs::sched::maglev::{MaglevTable, ServerIdentity, DEFAULT_SIZE};
use rvs::sched::{
    FlowInfo, LeastConnection, NeverQueue, Scheduler, SchedulerKind, ServerLoad,
    ShortestExpectedDelay, WeightedFailover, WeightedLeastConnection, WeightedOverflow,
};
use rvs::snapshot::Snapshot;
use rvs::wire::ipv4::Ipv4Packet;
use rvs::wire::tcp::flags::{ACK, PSH, SYN};
use rvs::wire::{build_tcp_frame, EtherType, EthernetRepr, Ipv4Repr, TcpRepr};

/// How long to run and how to print.
struct Bench {
    quick: bool,
}

impl Bench {
    fn from_env() -> Bench {
        let quick = std::env::var("RVS_BENCH_QUICK").is_ok_and(|v| v == "1");
        Bench { quick }
    }

    /// Time spent per measurement in a full run (quick runs do one batch).
    fn budget(&self) -> Duration {
        Duration::from_millis(if self.quick { 0 } else { 300 })
    }

    /// `full` in a full run, `quick` in a smoke run.
    fn count(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// Calls `op` in batches of `batch` until the budget is spent (at least
    /// one batch) and prints the result.
    fn run(&self, name: &str, n: usize, batch: usize, mut op: impl FnMut()) {
        self.run_timed(name, n, || {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            (batch as u64, start.elapsed())
        });
    }

    /// Like [`run`](Self::run) for operations that need untimed work
    /// between batches: `batch` runs one batch and returns the calls it
    /// made and the time they took. Prints the median over the batches of
    /// their mean time per call: on a shared machine a batch that lost the
    /// CPU to another process does not skew it the way a plain mean would.
    fn run_timed(&self, name: &str, n: usize, mut batch: impl FnMut() -> (u64, Duration)) {
        let mut per_call = Vec::new();
        let mut elapsed = Duration::ZERO;
        loop {
            let (calls, took) = batch();
            per_call.push(took.as_nanos() as f64 / calls.max(1) as f64);
            elapsed += took;
            if elapsed >= self.budget() {
                break;
            }
        }
        per_call.sort_by(f64::total_cmp);
        row(name, n, per_call[per_call.len() / 2]);
    }
}

fn header() {
    println!("{:<40} {:>8} {:>14} {:>14}", "name", "n", "ns/op", "ops/s");
}

fn row(name: &str, n: usize, ns: f64) {
    let per_second = if ns > 0.0 { 1e9 / ns } else { f64::INFINITY };
    println!("{name:<40} {n:>8} {ns:>14.1} {per_second:>14.0}");
}

// ---------------------------------------------------------------------------
// Schedulers
// ---------------------------------------------------------------------------

/// Which kernel walk a `*.scan` row times.
type Scan = fn(&[ServerLoad]) -> Option<usize>;

const SCANS: [(&str, Scan); 6] = [
    ("lc", LeastConnection::scan),
    ("wlc", WeightedLeastConnection::scan),
    ("sed", ShortestExpectedDelay::scan),
    ("nq", NeverQueue::scan),
    ("fo", WeightedFailover::scan),
    ("ovf", WeightedOverflow::scan),
];

/// How a step chooses the server: the scheduler's pick, a kernel walk, ...
type Choose<'a> = dyn FnMut(&mut dyn Scheduler, &[ServerLoad], &FlowInfo) -> Option<usize> + 'a;

/// A service's servers under steady connection churn, as a worker sees it:
/// each step schedules one connection; the oldest open connection closes
/// (active → inactive) once `open` is full, and the oldest closed one
/// expires once `closed` is full. Every count change is reported to the
/// scheduler, as `DataPlane::account` does.
struct Churn {
    servers: Vec<ServerLoad>,
    open: VecDeque<usize>,
    closed: VecDeque<usize>,
    max_open: usize,
    max_closed: usize,
    flows: u32,
}

impl Churn {
    fn new(n: usize) -> Churn {
        let servers = (0..n)
            .map(|i| ServerLoad {
                weight: 1 + (i % 4) as u32,
                active: 0,
                inactive: 0,
            })
            .collect();
        // About 8 open and 4 closing connections per server.
        let (max_open, max_closed) = (8 * n, 4 * n);
        Churn {
            servers,
            open: VecDeque::with_capacity(max_open + 1),
            closed: VecDeque::with_capacity(max_closed + 1),
            max_open,
            max_closed,
            flows: 0,
        }
    }

    /// A new flow: clients from 198.18.0.0/15, 256 destinations (for the
    /// locality and destination-hashing schedulers), the clock in ms.
    fn next_flow(&mut self) -> FlowInfo {
        self.flows = self.flows.wrapping_add(1);
        let k = self.flows;
        FlowInfo {
            protocol: 6,
            client_addr: Ipv4Addr::from(0xC612_0000 | (k.wrapping_mul(2_654_435_761) & 0x1_FFFF)),
            client_port: 1024 + (k % 60_000) as u16,
            virtual_addr: Ipv4Addr::from(0xC612_0100 | (k & 0xFF)),
            virtual_port: 80,
            now: u64::from(k),
        }
    }

    /// One connection scheduled by `choose`, and the churn it causes;
    /// `notify` reports each count change to `sched`.
    fn step(&mut self, sched: &mut dyn Scheduler, notify: bool, choose: &mut Choose<'_>) {
        let flow = self.next_flow();
        let chosen = choose(sched, &self.servers, black_box(&flow));
        if let Some(i) = chosen {
            self.servers[i].active += 1;
            if notify {
                sched.load_changed(&self.servers, i);
            }
            self.open.push_back(i);
        }
        // Without a new connection time still passes: one closes anyway.
        if self.open.len() > self.max_open || (chosen.is_none() && !self.open.is_empty()) {
            let i = self.open.pop_front().unwrap_or_default();
            self.servers[i].active -= 1;
            self.servers[i].inactive += 1;
            if notify {
                sched.load_changed(&self.servers, i);
            }
            self.closed.push_back(i);
        }
        if self.closed.len() > self.max_closed {
            let i = self.closed.pop_front().unwrap_or_default();
            self.servers[i].inactive -= 1;
            if notify {
                sched.load_changed(&self.servers, i);
            }
        }
    }
}

fn bench_schedulers(bench: &Bench) {
    let batch = bench.count(10_000, 200);
    for n in [2usize, 100, 1000] {
        // The bookkeeping alone, with a trivial choice: subtract it from
        // the rows below to see the scheduler's share.
        {
            let mut churn = Churn::new(n);
            let mut sched = SchedulerKind::Rr.build();
            sched.update(&churn.servers);
            let mut turn = 0usize;
            let mut choose = |_: &mut dyn Scheduler, s: &[ServerLoad], _: &FlowInfo| {
                turn = (turn + 1) % s.len();
                Some(turn)
            };
            for _ in 0..churn.max_open + churn.max_closed {
                churn.step(sched.as_mut(), false, &mut choose);
            }
            bench.run("sched.churn-only", n, batch, || {
                churn.step(sched.as_mut(), false, &mut choose)
            });
        }
        for &kind in SchedulerKind::ALL {
            let mut churn = Churn::new(n);
            let mut sched = kind.build();
            sched.update(&churn.servers);
            let mut choose =
                |sched: &mut dyn Scheduler, s: &[ServerLoad], f: &FlowInfo| sched.pick(s, f);
            // Warm up to the steady state of the churn.
            for _ in 0..churn.max_open + churn.max_closed {
                churn.step(sched.as_mut(), true, &mut choose);
            }
            bench.run(&format!("sched.{kind}"), n, batch, || {
                churn.step(sched.as_mut(), true, &mut choose)
            });
        }
        for (name, scan) in SCANS {
            let mut churn = Churn::new(n);
            // Only for the churn's interface: the walk needs no state.
            let mut sched = SchedulerKind::Rr.build();
            let mut choose = |_: &mut dyn Scheduler, s: &[ServerLoad], _: &FlowInfo| scan(s);
            for _ in 0..churn.max_open + churn.max_closed {
                churn.step(sched.as_mut(), false, &mut choose);
            }
            bench.run(&format!("sched.{name}.kernel-walk"), n, batch, || {
                churn.step(sched.as_mut(), false, &mut choose)
            });
        }
    }
}

fn bench_maglev(bench: &Bench) {
    for n in [100usize, 1000] {
        let servers: Vec<(ServerIdentity, u32)> = (0..n)
            .map(|i| {
                let addr = Ipv4Addr::from(0xC613_0000 + i as u32);
                (ServerIdentity::new(addr, 80), 1)
            })
            .collect();
        let name = format!("maglev.build M={DEFAULT_SIZE}");
        bench.run(&name, n, 1, || {
            black_box(MaglevTable::build(black_box(&servers), DEFAULT_SIZE));
        });
    }
}

// ---------------------------------------------------------------------------
// Connection table
// ---------------------------------------------------------------------------

/// Connection `i`: a distinct client address and port to one VIP:80,
/// expiring at time 1000.
fn conn(i: usize) -> Conn {
    let key = FlowKey {
        protocol: 6,
        src_addr: Ipv4Addr::from(0xC612_0000 | (i as u32 >> 14)),
        src_port: 1024 + (i & 0x3FFF) as u16,
        dst_addr: Ipv4Addr::new(198, 18, 0, 100),
        dst_port: 80,
    };
    let mut conn = Conn::new(&key, Ipv4Addr::new(198, 19, 0, 11), 8080, (i % 16) as u32);
    conn.state = ConnState::Established;
    conn.expires_at = 1000;
    conn
}

/// A spread of positions in `0..n` (odd stride: not sequential in memory).
fn spread(k: usize, n: usize) -> usize {
    k.wrapping_mul(0x9E37_79B1) % n
}

fn filled(n: usize, conns: &[Conn]) -> ConnTable {
    let mut table = ConnTable::with_capacity(n, 0x5EED);
    for &c in conns {
        table.insert(c).expect("room for every connection");
    }
    table
}

fn bench_conn_table(bench: &Bench) {
    for n in [1_000usize, 100_000, 1_000_000] {
        let conns: Vec<Conn> = (0..n).map(conn).collect();

        // Insert: fill an empty table of capacity n to n entries.
        bench.run_timed("conn.insert (fill to n)", n, || {
            let mut table = ConnTable::with_capacity(n, 0x5EED);
            let start = Instant::now();
            for &c in &conns {
                black_box(table.insert(black_box(c)).ok());
            }
            (n as u64, start.elapsed())
        });

        let table = filled(n, &conns);
        let lookups = bench.count(1_000_000, 1_000);
        let hits: Vec<FlowKey> = (0..lookups.min(n * 4))
            .map(|k| conns[spread(k, n)].client_key())
            .collect();
        let mut next = 0usize;
        bench.run("conn.lookup hit", n, 1000, || {
            let key = &hits[next];
            next = if next + 1 == hits.len() { 0 } else { next + 1 };
            black_box(table.find_from_client(black_box(key)));
        });
        // Misses: the same clients on another port of the VIP.
        let misses: Vec<FlowKey> = hits
            .iter()
            .map(|k| FlowKey {
                dst_port: 443,
                ..*k
            })
            .collect();
        let mut next = 0usize;
        bench.run("conn.lookup miss", n, 1000, || {
            let key = &misses[next];
            next = if next + 1 == misses.len() {
                0
            } else {
                next + 1
            };
            black_box(table.find_from_client(black_box(key)));
        });
        drop(table);

        // Expire: one sweep over a full table in which everything is due.
        bench.run_timed("conn.expire (all due, per entry)", n, || {
            let mut table = filled(n, &conns);
            let start = Instant::now();
            let removed = table.expire(black_box(1000), n, |c| {
                black_box(c);
            });
            let elapsed = start.elapsed();
            assert_eq!(removed, n, "every connection was due");
            (n as u64, elapsed)
        });
    }
}

// ---------------------------------------------------------------------------
// Packet pipeline
// ---------------------------------------------------------------------------

const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const WAN: usize = 0;
const LAN: usize = 1;

/// Two ports and one TCP service on VIP:80, `wlc` over `servers` real
/// servers 198.19.0.11.. port 8080.
fn pipeline_config(servers: usize) -> String {
    let mut text = String::from(
        r#"
[[port]]
name = "wan"
vdev = "net_null0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "lan"
vdev = "net_null1"
addresses = ["198.19.0.1/24"]

[[service]]
protocol = "tcp"
address = "198.18.0.100:80"
scheduler = "wlc"
"#,
    );
    for i in 0..servers {
        text += &format!(
            "[[service.server]]\naddress = \"198.19.0.{}:8080\"\nforward = \"nat\"\nweight = {}\n",
            11 + i,
            1 + i % 3
        );
    }
    text
}

fn data_plane(servers: usize, connections: usize) -> DataPlane {
    let config = rvs::config::parse(&pipeline_config(servers), "bench.toml")
        .expect("the benchmark configuration is valid");
    let snapshot = Snapshot::compile(&config, &[WAN_MAC, LAN_MAC], 1);
    let ports = snapshot.ports.len();
    DataPlane::new(
        Arc::new(snapshot),
        Limits {
            connections,
            neighbors: 64,
            templates: 1024,
        },
        0x5EED_1234,
        Arc::new(WorkerCounters::new(ports)),
    )
}

/// A TCP segment with `flags` and `payload`.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        ttl: 64,
        ..Ipv4Repr::default()
    };
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: 1,
        ack_number: if flags & ACK != 0 { 1 } else { 0 },
        flags,
        window_len: 64240,
        payload,
        ..TcpRepr::default()
    };
    build_tcp_frame(&eth, &ip, &tcp)
}

fn client_frame(client: Ipv4Addr, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_frame(CLIENT_MAC, WAN_MAC, client, sport, VIP, 80, flags, payload)
}

fn expect_forward(verdict: Verdict, what: &str) {
    assert!(
        matches!(verdict, Verdict::Forward { .. }),
        "{what}: {verdict:?}"
    );
}

fn bench_pipeline(bench: &Bench) {
    const SERVERS: usize = 16;
    let payload = [0x42u8; 64];

    // An established connection: SYN, SYN-ACK, ACK.
    let mut dp = data_plane(SERVERS, 1 << 16);
    let client = Ipv4Addr::new(198, 18, 0, 2);
    let mut syn = client_frame(client, 40000, SYN, b"");
    expect_forward(dp.process(&mut syn, WAN, 0), "SYN");
    let server = Ipv4Packet::new_checked(&syn[14..])
        .expect("the rewritten SYN is IPv4")
        .dst_addr();
    let mut syn_ack = tcp_frame(RS_MAC, LAN_MAC, server, 8080, client, 40000, SYN | ACK, b"");
    expect_forward(dp.process(&mut syn_ack, LAN, 1), "SYN-ACK");
    let mut ack = client_frame(client, 40000, ACK, b"");
    expect_forward(dp.process(&mut ack, WAN, 2), "ACK");

    // Each call copies the template into the buffer (process rewrites in
    // place): a ~130-byte copy is part of the number.
    let request = client_frame(client, 40000, PSH | ACK, &payload);
    let mut buffer = request.clone();
    buffer.copy_from_slice(&request);
    expect_forward(dp.process(&mut buffer, WAN, 3), "request");
    bench.run("pipeline.established client->server", SERVERS, 1000, || {
        buffer.copy_from_slice(&request);
        black_box(dp.process(black_box(&mut buffer), WAN, 3));
    });
    let reply = tcp_frame(
        RS_MAC,
        LAN_MAC,
        server,
        8080,
        client,
        40000,
        PSH | ACK,
        &payload,
    );
    let mut buffer = reply.clone();
    buffer.copy_from_slice(&reply);
    expect_forward(dp.process(&mut buffer, LAN, 3), "reply");
    bench.run("pipeline.established server->client", SERVERS, 1000, || {
        buffer.copy_from_slice(&reply);
        black_box(dp.process(black_box(&mut buffer), LAN, 3));
    });

    // New connections: batches of distinct SYNs, then (untimed) everything
    // expires a day later so the same SYNs are new again.
    let batch = bench.count(4096, 256);
    let syns: Vec<Vec<u8>> = (0..batch)
        .map(|k| {
            let client = Ipv4Addr::from(0xC612_0000 | (k as u32 >> 8));
            client_frame(client, 1024 + (k & 0xFF) as u16, SYN, b"")
        })
        .collect();
    let capacity = 1 << 16;
    let mut dp = data_plane(SERVERS, capacity);
    let mut buffer = syns[0].clone();
    let mut now = 0u64;
    bench.run_timed("pipeline.new SYN (schedule+insert)", SERVERS, || {
        let mut forwarded = 0usize;
        let start = Instant::now();
        for frame in &syns {
            buffer.copy_from_slice(frame);
            let verdict = dp.process(black_box(&mut buffer), WAN, now);
            forwarded += usize::from(matches!(verdict, Verdict::Forward { .. }));
        }
        let elapsed = start.elapsed();
        assert_eq!(forwarded, syns.len(), "every SYN opened a connection");
        now += 86_400_000;
        dp.expire(now, capacity);
        assert!(dp.conns.is_empty(), "every SYN_RECV connection expired");
        now += 1;
        (syns.len() as u64, elapsed)
    });
}

fn main() {
    let bench = Bench::from_env();
    // `cargo bench` passes `--bench`; a name filter may follow.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |group: &str| filter.as_deref().is_none_or(|f| group.contains(f));
    println!(
        "rvs micro-benchmarks ({} run)",
        if bench.quick { "quick" } else { "full" }
    );
    header();
    if wanted("sched") {
        bench_schedulers(&bench);
    }
    if wanted("maglev") {
        bench_maglev(&bench);
    }
    if wanted("conn") {
        bench_conn_table(&bench);
    }
    if wanted("pipeline") {
        bench_pipeline(&bench);
    }
}
