//! ipvsadm 1.31's output, byte for byte: `-L` in all its forms, `-L -c`,
//! `-L --timeout` and `-S`. The C formats are noted next to the code that
//! reproduces them (Rust's `{:<28}` pads like C's `%-28s`; neither
//! truncates). Addresses and ports are always numeric: rvsadm does no name
//! resolution, so `-L` and `-L -n` print the same.

use super::args::{ListFormat, ListRequest, ListWhat};
use super::error::AdmError;
use super::model::{
    ConnectionEntry, Destination, Family, Model, Netmask, Service, ServiceKey, IPVS_VERSION,
};
use crate::stats::{Counters, Rates};
use std::fmt::Write;

/// The listing `request` asks for. Fails only for a service that does not
/// exist (`No such service`, exit 1).
pub fn list(model: &Model, request: &ListRequest) -> Result<String, AdmError> {
    let mut out = String::new();
    let format = &request.format;
    match request.what {
        ListWhat::Services => {
            // "IP Virtual Server version %d.%d.%d (size=%d)"
            let _ = writeln!(
                out,
                "IP Virtual Server version {IPVS_VERSION} (size={})",
                model.table_size
            );
            title(&mut out, format);
            for service in sorted_services(model, format.nosort) {
                service_entry(&mut out, service, format);
            }
        }
        ListWhat::Service(key) => {
            let service = model
                .service(&key)
                .ok_or_else(|| AdmError::list(format!("No such service: {key}")))?;
            title(&mut out, format);
            service_entry(&mut out, service, format);
        }
        ListWhat::Connections => connections(&mut out, &model.connections, format),
        ListWhat::Timeouts => {
            let t = &model.timeouts;
            let _ = writeln!(
                out,
                "Timeout (tcp tcpfin udp): {} {} {}",
                t.tcp, t.tcpfin, t.udp
            );
        }
        // rvs has no sync daemon: ipvsadm prints nothing when none runs.
        ListWhat::Daemons => {}
    }
    Ok(out)
}

/// `-S`: the rules that rebuild the table, services and servers sorted.
pub fn save(model: &Model) -> String {
    let mut out = String::new();
    for service in sorted_services(model, false) {
        let key = &service.key;
        let _ = write!(out, "-A {key} -s {}", service.scheduler);
        if let Some(persistence) = &service.persistence {
            let _ = write!(out, " -p {}", persistence.timeout);
            if !is_host_mask(&persistence.netmask, key.family()) {
                let _ = write!(out, " -M {}", persistence.netmask);
            }
        }
        if service.one_packet {
            out.push_str(" -o");
        }
        if !service.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", service.sched_flags.names(&service.scheduler));
        }
        out.push('\n');
        for dest in sorted_destinations(service, false) {
            // "-a %s -r %s %s -w %d\n"
            let _ = writeln!(
                out,
                "-a {key} -r {} {} -w {}",
                dest.addr,
                dest.forward.save_option(),
                dest.weight
            );
        }
    }
    out
}

/// One of ipvsadm's "large numbers" (`print_largenum`): 9 columns, scaled
/// to K/M/G/T (dividing by powers of 1000, truncating) from 10⁸ on; with
/// `exact`, the whole number right-aligned in at least 9 columns with at
/// least one space before it.
pub fn large_number(out: &mut String, value: u64, exact: bool) {
    if exact {
        let digits = value.to_string();
        let width = (digits.len() + 1).max(9);
        let _ = write!(out, "{digits:>width$}");
        return;
    }
    if value < 100_000_000 {
        let _ = write!(out, "{value:>9}");
        return;
    }
    let (divisor, suffix) = if value < 1_000_000_000 {
        (1_000, 'K')
    } else if value < 100_000_000_000 {
        (1_000_000, 'M')
    } else if value < 100_000_000_000_000 {
        (1_000_000_000, 'G')
    } else {
        (1_000_000_000_000, 'T')
    };
    let _ = write!(out, "{:>8}{suffix}", value / divisor);
}

fn is_host_mask(netmask: &Netmask, family: Family) -> bool {
    *netmask == Netmask::host(family)
}

fn sorted_services(model: &Model, nosort: bool) -> Vec<&Service> {
    let mut services: Vec<&Service> = model.services.iter().collect();
    if !nosort {
        services.sort_by(|a, b| a.key.listing_order(&b.key));
    }
    services
}

fn sorted_destinations(service: &Service, nosort: bool) -> Vec<&Destination> {
    let mut dests: Vec<&Destination> = service.destinations.iter().collect();
    if !nosort {
        dests.sort_by(|a, b| a.listing_order(b));
    }
    dests
}

fn title(out: &mut String, format: &ListFormat) {
    const LOCAL: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    if format.stats || format.rate {
        let [a, b, c, d, e] = if format.stats {
            ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]
        } else {
            ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]
        };
        // "%-33s %8s %8s %8s %8s %8s\n"
        let _ = writeln!(out, "{LOCAL:<33} {a:>8} {b:>8} {c:>8} {d:>8} {e:>8}");
    } else if format.thresholds {
        // "%-33s %-10s %-10s %-10s %-10s\n"
        let _ = writeln!(
            out,
            "{LOCAL:<33} {:<10} {:<10} {:<10} {:<10}",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else if format.persistent_conn {
        // "%-33s %-9s %-11s %-10s %-10s\n"
        let _ = writeln!(
            out,
            "{LOCAL:<33} {:<9} {:<11} {:<10} {:<10}",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        );
    } else {
        let _ = writeln!(out, "{LOCAL} Scheduler Flags");
        let _ = writeln!(
            out,
            "{REMOTE}           Forward Weight ActiveConn InActConn"
        );
        return;
    }
    let _ = writeln!(out, "{REMOTE}");
}

/// `TCP  198.18.0.100:80`, `FWM  7`, `FWM  7 IPv6` ("%-4s %s").
fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr } => format!("{:<4} {addr}", protocol.name()),
        ServiceKey::Fwmark { mark, family } => match family {
            Family::Ipv4 => format!("FWM  {mark}"),
            Family::Ipv6 => format!("FWM  {mark} IPv6"),
        },
    }
}

fn counters(out: &mut String, c: &Counters, exact: bool) {
    for value in [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes] {
        large_number(out, value, exact);
    }
}

fn rates(out: &mut String, r: &Rates, exact: bool) {
    for value in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
        large_number(out, value, exact);
    }
}

fn service_entry(out: &mut String, service: &Service, format: &ListFormat) {
    let name = service_name(&service.key);
    if format.stats {
        let _ = write!(out, "{name:<33}");
        counters(out, &service.stats, format.exact);
    } else if format.rate {
        let _ = write!(out, "{name:<33}");
        rates(out, &service.rates, format.exact);
    } else {
        let _ = write!(out, "{name} {}", service.scheduler);
        if !service.sched_flags.is_empty() {
            let _ = write!(out, " ({})", service.sched_flags.names(&service.scheduler));
        }
        if let Some(persistence) = &service.persistence {
            let _ = write!(out, " persistent {}", persistence.timeout);
            if !is_host_mask(&persistence.netmask, service.key.family()) {
                let _ = write!(out, " mask {}", persistence.netmask);
            }
        }
        if service.one_packet {
            out.push_str(" ops");
        }
    }
    out.push('\n');
    for dest in sorted_destinations(service, format.nosort) {
        destination_entry(out, dest, format);
    }
}

fn destination_entry(out: &mut String, dest: &Destination, format: &ListFormat) {
    let addr = dest.addr.to_string();
    if format.stats {
        let _ = write!(out, "  -> {addr:<28}");
        counters(out, &dest.stats, format.exact);
        out.push('\n');
    } else if format.rate {
        // "  -> %-28s %8llu %8llu %8llu": these three are never scaled.
        let r = &dest.rates;
        let _ = write!(
            out,
            "  -> {addr:<28} {:>8} {:>8} {:>8}",
            r.cps, r.inpps, r.outpps
        );
        large_number(out, r.inbps, format.exact);
        large_number(out, r.outbps, format.exact);
        out.push('\n');
    } else if format.thresholds {
        // "  -> %-28s %-10u %-10u %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {addr:<28} {:<10} {:<10} {:<10} {:<10}",
            dest.upper_threshold, dest.lower_threshold, dest.active_conns, dest.inactive_conns
        );
    } else if format.persistent_conn {
        // "  -> %-28s %-9u %-11u %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {addr:<28} {:<9} {:<11} {:<10} {:<10}",
            dest.weight, dest.persistent_conns, dest.active_conns, dest.inactive_conns
        );
    } else {
        // "  -> %-28s %-7s %-6d %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {addr:<28} {:<7} {:<6} {:<10} {:<10}",
            dest.forward.listing_name(),
            dest.weight,
            dest.active_conns,
            dest.inactive_conns
        );
    }
}

fn connections(out: &mut String, entries: &[ConnectionEntry], format: &ListFormat) {
    out.push_str("IPVS connection entries\n");
    if format.persistent_conn {
        // The persistence-engine columns: rvs has no engines, so rows never
        // have them, as ipvsadm's rows without pe data.
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for entry in entries {
        // "%02d:%02d" minutes and seconds, then "%-3s %-6s %-11s %-18s %-18s %s\n"
        let expire = format!("{:02}:{:02}", entry.expires / 60, entry.expires % 60);
        let _ = writeln!(
            out,
            "{:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
            entry.protocol.name(),
            entry.state,
            entry.client.to_string(),
            entry.virtual_addr.to_string(),
            entry.destination
        );
    }
}
