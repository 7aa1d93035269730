//! rvsd: the rvs director daemon. Runs in the foreground, logs to stderr, and
//! prints its counters as `name=value` lines on stdout when it stops.
//!
//! The management thread serves the control API (docs/API.md; rvsadm talks
//! to it), stops on SIGINT/SIGTERM and reloads the configuration file on
//! SIGHUP.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clap::Parser;

use rvs::config::{self, Config, PortDevice};
use rvs::control::{Control, Endpoints};
use rvs::counters::{DropReason, WorkerCounters};
use rvs::dpdk::{self, Mempool, Port};
use rvs::pipeline::Limits;
use rvs::snapshot::Snapshot;
use rvs::web::PortCounters;
use rvs::worker::{Shared, Steering, Worker};

#[derive(Parser, Debug)]
#[command(
    name = "rvsd",
    version,
    about = "rvs director: an LVS-style layer-4 load balancer on DPDK"
)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and exit (0 = valid, 2 = invalid).
    #[arg(long)]
    check: bool,
}

/// Packets one worker may have queued for another.
const STEER_QUEUE_DEPTH: usize = 4096;

/// RX/TX descriptors per queue.
const RING_SIZE: u16 = 1024;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rvsd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        eprintln!(
            "rvsd: {}: configuration OK ({} ports, {} services)",
            args.config.display(),
            config.ports.len(),
            config.services.len()
        );
        return ExitCode::SUCCESS;
    }
    match run(&config, &args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvsd: {e}");
            ExitCode::from(1)
        }
    }
}

fn device_name(device: &PortDevice) -> &str {
    match device {
        PortDevice::Vdev(spec) => spec.split(',').next().unwrap_or(spec),
        PortDevice::Pci(addr) => addr,
    }
}

/// How long the management thread waits for a request before it looks at
/// the signal flags again.
const POLL: Duration = Duration::from_millis(50);

fn run(config: &Config, config_path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())?;
    // Before the EAL: a socket that cannot be had fails fast.
    let endpoints = Endpoints::bind(&config.control)?;

    dpdk::eal_init(&config.dpdk.eal_args(&config.ports))?;
    let worker_lcores: Vec<u32> = config.dpdk.lcore_ids[1..].to_vec();
    let queues = worker_lcores.len() as u16;
    let pool = Arc::new(Mempool::new("rvs_mbufs", config.dpdk.mbufs)?);

    let mut ports = Vec::new();
    let mut macs = Vec::new();
    for p in &config.ports {
        let port =
            Port::by_name(device_name(&p.device)).map_err(|e| format!("port {:?}: {e}", p.name))?;
        port.configure_and_start(queues, RING_SIZE, RING_SIZE, &pool)
            .map_err(|e| format!("port {:?}: {e}", p.name))?;
        let mac = port.mac()?;
        eprintln!(
            "rvsd: port {} = DPDK port {} ({}), MAC {}",
            p.name,
            port.id,
            device_name(&p.device),
            p.mac.unwrap_or(mac)
        );
        ports.push(port);
        macs.push(mac);
    }

    let snapshot = Snapshot::compile(config, &macs, 1);
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        generation: AtomicU64::new(1),
        stop: AtomicBool::new(false),
    });
    let counters: Vec<Arc<WorkerCounters>> = worker_lcores
        .iter()
        .map(|_| Arc::new(WorkerCounters::new(ports.len())))
        .collect();
    let limits = Limits {
        connections: config.limits.connections as usize,
        neighbors: config.limits.neighbors as usize,
        templates: config.limits.templates as usize,
    };
    let steering = Arc::new(Steering::new(worker_lcores.len(), STEER_QUEUE_DEPTH));
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for (queue, (&lcore, counters)) in worker_lcores.iter().zip(&counters).enumerate() {
        let worker = Worker {
            queue: queue as u16,
            steering: steering.clone(),
            ports: ports.clone(),
            pool: pool.clone(),
            shared: shared.clone(),
            counters: counters.clone(),
            limits,
            hash_seed: RandomState::new().build_hasher().finish(),
            pace_pps: config.bench.pace_pps,
            prefill_connections: config.bench.prefill_connections as usize,
            ready: ready.clone(),
        };
        dpdk::launch_on_lcore(lcore, Box::new(move || worker.run()))?;
    }
    // Workers allocate (and fault in) their tables first: say "forwarding"
    // only when every one polls.
    while ready.load(Ordering::Acquire) < worker_lcores.len() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "rvsd: forwarding: {} ports, {} services, {} worker lcores {:?}",
        ports.len(),
        config.services.len(),
        worker_lcores.len(),
        worker_lcores
    );
    eprintln!(
        "rvsd: control API on {}{}",
        config.control.socket.display(),
        config
            .control
            .listen
            .map(|a| format!(" and http://{a}"))
            .unwrap_or_default()
    );
    let started = Instant::now();
    let mut control = Control::new(config.clone(), macs.clone(), shared.clone());
    let port_reader = {
        let ports = ports.clone();
        let names: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
        move || {
            ports
                .iter()
                .zip(&names)
                .map(|(port, name)| {
                    let nic = port.stats();
                    PortCounters {
                        name: name.clone(),
                        rx_packets: 0,
                        tx_packets: 0,
                        nic_rx_packets: nic.rx_packets,
                        nic_tx_packets: nic.tx_packets,
                        nic_rx_missed: nic.rx_missed,
                    }
                })
                .collect()
        }
    };
    control.attach(counters.clone(), Box::new(port_reader));
    while !stop.load(Ordering::Relaxed) {
        if hangup.swap(false, Ordering::Relaxed) {
            reload(&mut control, config_path);
        }
        endpoints.serve(&mut control, POLL);
        control.tick();
    }
    drop(endpoints);
    eprintln!("rvsd: stopping");
    shared.stop.store(true, Ordering::Relaxed);
    dpdk::wait_all_workers();
    let forwarding = started.elapsed();
    // Packets still queued between workers go back to the pool now.
    let steered_at_stop = steering.queued();
    drop(steering);

    print_report(config, &ports, &counters, forwarding);
    println!("steered_at_stop={steered_at_stop}");
    for port in &ports {
        port.stop_and_close();
    }
    drop(pool);
    dpdk::eal_cleanup();
    Ok(())
}

/// SIGHUP: the file again; on any error the running configuration stays.
fn reload(control: &mut Control, path: &Path) {
    match config::load(path) {
        Err(e) => {
            eprintln!("{e}");
            eprintln!("rvsd: reload failed; keeping the running configuration");
        }
        Ok(next) => match control.reload(next) {
            Ok(()) => eprintln!(
                "rvsd: reloaded {}: {} services, {} groups",
                path.display(),
                control.running().services.len(),
                control.running().groups.len()
            ),
            Err(why) => eprintln!(
                "rvsd: {}: {why}; keeping the running configuration",
                path.display()
            ),
        },
    }
}

fn print_report(
    config: &Config,
    ports: &[Port],
    counters: &[Arc<WorkerCounters>],
    forwarding: Duration,
) {
    let sum = |f: &dyn Fn(&WorkerCounters) -> u64| counters.iter().map(|c| f(c)).sum::<u64>();
    let mut out = String::new();
    for (i, (p, port)) in config.ports.iter().zip(ports).enumerate() {
        let nic = port.stats();
        out += &format!(
            "port.{}.rx_packets={}\n",
            p.name,
            sum(&|c| c.ports[i].rx_packets.get())
        );
        out += &format!(
            "port.{}.tx_packets={}\n",
            p.name,
            sum(&|c| c.ports[i].tx_packets.get())
        );
        out += &format!("port.{}.nic_rx_packets={}\n", p.name, nic.rx_packets);
        out += &format!("port.{}.nic_tx_packets={}\n", p.name, nic.tx_packets);
        out += &format!("port.{}.nic_rx_missed={}\n", p.name, nic.rx_missed);
        out += &format!("port.{}.nic_rx_no_mbuf={}\n", p.name, nic.rx_no_mbuf);
    }
    out += &format!("forward_seconds={:.3}\n", forwarding.as_secs_f64());
    let hz = dpdk::tsc_hz().max(1) as f64;
    out += &format!(
        "busy_seconds={:.3}\n",
        sum(&|c| c.busy_cycles.get()) as f64 / hz
    );
    out += &format!("conns_created={}\n", sum(&|c| c.conns_created.get()));
    out += &format!("conns_expired={}\n", sum(&|c| c.conns_expired.get()));
    out += &format!("conns_live={}\n", sum(&|c| c.conns_live.get()));
    out += &format!(
        "arp_requests_sent={}\n",
        sum(&|c| c.arp_requests_sent.get())
    );
    out += &format!("replies_sent={}\n", sum(&|c| c.replies_sent.get()));
    out += &format!(
        "forwarded_to_servers={}\n",
        sum(&|c| c.forwarded_to_servers.get())
    );
    out += &format!(
        "forwarded_to_clients={}\n",
        sum(&|c| c.forwarded_to_clients.get())
    );
    out += &format!(
        "icmp_frag_needed_sent={}\n",
        sum(&|c| c.icmp_frag_needed_sent.get())
    );
    out += &format!(
        "one_packet_scheduled={}\n",
        sum(&|c| c.one_packet_scheduled.get())
    );
    // Added latency, all workers together, in ns.
    let mut latency: Option<hdrhistogram::Histogram<u64>> = None;
    for c in counters {
        if let Some(h) = c.latency.lock().ok().and_then(|mut l| l.take()) {
            match latency.as_mut() {
                None => latency = Some(h),
                Some(all) => {
                    let _ = all.add(&h);
                }
            }
        }
    }
    if let Some(h) = latency.filter(|h| !h.is_empty()) {
        let ns = |cycles: u64| cycles as f64 * 1e9 / hz;
        out += &format!("latency_packets={}\n", h.len());
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            out += &format!("latency_ns_{name}={:.0}\n", ns(h.value_at_quantile(q)));
        }
        out += &format!("latency_ns_max={:.0}\n", ns(h.max()));
    }
    for (w, c) in counters.iter().enumerate() {
        out += &format!("worker.{w}.conns_created={}\n", c.conns_created.get());
        out += &format!("worker.{w}.steered_out={}\n", c.steered_out.get());
    }
    for &reason in DropReason::ALL {
        out += &format!("drop.{}={}\n", reason.name(), sum(&|c| c.dropped(reason)));
    }
    print!("{out}");
}
