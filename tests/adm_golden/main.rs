//! rvsadm's listings against golden text: the scenario below is built with
//! rvsadm commands, its counters filled in as rvsd would, and every listing
//! mode compared byte for byte with the files beside this one (written by
//! `make_fixtures.py` from ipvsadm's C formats, independently of rvsadm's
//! code; trailing spaces included).

mod args;
mod model;
mod restore;

use rvs::adm::model::{ConnectionEntry, Forward, Model, Protocol, ServiceKey};
use rvs::adm::{run, Output};
use rvs::stats::{Counters, Rates};
use std::net::SocketAddr;

pub(crate) fn rvsadm(model: &mut Model, line: &str) -> Output {
    let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    run(&argv, model, std::io::empty())
}

pub(crate) fn ok(model: &mut Model, line: &str) -> String {
    let out = rvsadm(model, line);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, ""),
        "rvsadm {line} failed"
    );
    out.stdout
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn tcp(text: &str) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: addr(text),
    }
}

/// The table of `make_fixtures.py`.
fn scenario() -> Model {
    let mut model = Model::default();
    for line in [
        "-A -t 198.18.0.100:80 -s wlc -p 360 -M 255.255.255.0",
        "-a -t 198.18.0.100:80 -r 198.19.0.12:80 -m -w 2",
        "-a -t 198.18.0.100:80 -r 198.19.0.11:80 -m -w 3 -x 100 -y 50",
        "-A -u 198.18.0.100:53 -s sh -b sh-port,sh-fallback -o",
        "-a -u 198.18.0.100:53 -r 198.19.0.11 -g",
        "-A -f 7 -s rr",
        "-a -f 7 -r 198.19.0.13 -g -w 0",
        "-A -t 198.18.0.99:443 -s mh -b mh-port",
        // -i forces the virtual port: 443, not 8443.
        "-a -t 198.18.0.99:443 -r 198.19.0.11:8443 -i -w 5",
        "-A -t [2001:db8::100]:80 -s rr",
        "-a -t [2001:db8::100]:80 -r [2001:db8::11]:8080 -m -w 1",
        "-A -f 9 -6 -s wlc -p 600 -M 64",
        "--set 1000 0 200",
    ] {
        ok(&mut model, line);
    }
    // What rvsd fills in.
    let web = model.service_mut(&tcp("198.18.0.100:80")).unwrap();
    web.stats = Counters {
        conns: 99_999_999,
        inpkts: 100_000_000,
        outpkts: 999_999_999,
        inbytes: 1_000_000_000,
        outbytes: 99_999_999_999,
    };
    web.rates = Rates {
        cps: 1,
        inpps: 2,
        outpps: 3,
        inbps: 100_000_000,
        outbps: 4_000_000_000,
    };
    let rs1 = web
        .destinations
        .iter_mut()
        .find(|d| d.addr == addr("198.19.0.11:80"))
        .unwrap();
    rs1.active_conns = 3;
    rs1.inactive_conns = 7;
    rs1.persistent_conns = 2;
    rs1.stats = Counters {
        conns: 1,
        inpkts: 100_000_000_000,
        outpkts: 99_999_999_999_999,
        inbytes: 100_000_000_000_000,
        outbytes: u64::MAX,
    };
    rs1.rates = Rates {
        cps: 123_456_789,
        inpps: 5,
        outpps: 6,
        inbps: 7,
        outbps: 8,
    };
    web.destinations
        .iter_mut()
        .find(|d| d.addr == addr("198.19.0.12:80"))
        .unwrap()
        .inactive_conns = 1;
    // IPVS would mark a local real server so; rvs has no host stack.
    let group = model
        .service_mut(&ServiceKey::Fwmark {
            mark: 7,
            family: rvs::adm::model::Family::Ipv4,
        })
        .unwrap();
    group.destinations[0].forward = Forward::Local;
    let conn =
        |protocol, client: &str, vip: &str, dest: &str, state: &str, expires| ConnectionEntry {
            protocol,
            client: addr(client),
            virtual_addr: addr(vip),
            destination: addr(dest),
            state: state.to_string(),
            expires,
        };
    model.connections = vec![
        conn(
            Protocol::Tcp,
            "198.18.0.2:40000",
            "198.18.0.100:80",
            "198.19.0.11:80",
            "ESTABLISHED",
            899,
        ),
        conn(
            Protocol::Tcp,
            "198.18.0.0:0",
            "198.18.0.100:80",
            "198.19.0.11:80",
            "NONE",
            359,
        ),
        conn(
            Protocol::Udp,
            "198.18.0.3:5353",
            "198.18.0.100:53",
            "198.19.0.11:53",
            "UDP",
            6001,
        ),
        conn(
            Protocol::Tcp,
            "[2001:db8::2]:40001",
            "[2001:db8::100]:80",
            "[2001:db8::11]:8080",
            "SYN_RECV",
            59,
        ),
    ];
    model
}

fn check(args: &str, golden: &str) {
    let mut model = scenario();
    let printed = ok(&mut model, args);
    if printed != golden {
        panic!("rvsadm {args}\n--- printed\n{printed}\n--- golden\n{golden}");
    }
}

#[test]
fn list() {
    check("-L -n", include_str!("list.txt"));
    check("-Ln", include_str!("list.txt"));
    check("--list --numeric", include_str!("list.txt"));
    // Numeric with or without -n: no name resolution.
    check("-l", include_str!("list.txt"));
    check("-L -n --sort", include_str!("list.txt"));
}

#[test]
fn no_arguments_lists() {
    let mut model = scenario();
    let out = run(&[], &mut model, std::io::empty());
    assert_eq!(out.stdout, include_str!("list.txt"));
    assert_eq!(out.code, 0);
}

#[test]
fn list_nosort_keeps_insertion_order() {
    check("-L -n --nosort", include_str!("list_nosort.txt"));
}

#[test]
fn list_one_service() {
    check("-L -n -t 198.18.0.100:80", include_str!("service.txt"));
    let mut model = scenario();
    let out = rvsadm(&mut model, "-L -n -t 198.18.0.100:81");
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "No such service: -t 198.18.0.100:81\n");
    assert_eq!(out.stdout, "");
}

#[test]
fn stats() {
    check("-L -n --stats", include_str!("stats.txt"));
    check("-L -n --stats --exact", include_str!("stats_exact.txt"));
    check("-Ln --stats -X", include_str!("stats_exact.txt"));
    // --stats wins over --rate, as in ipvsadm.
    check("-L -n --rate --stats", include_str!("stats.txt"));
}

#[test]
fn rate() {
    check("-L -n --rate", include_str!("rate.txt"));
    check("-L -n --rate --exact", include_str!("rate_exact.txt"));
}

#[test]
fn thresholds_and_persistent_connections() {
    check("-L -n --thresholds", include_str!("thresholds.txt"));
    check(
        "-L -n --persistent-conn",
        include_str!("persistent_conn.txt"),
    );
}

#[test]
fn connections() {
    check("-L -n -c", include_str!("connections.txt"));
    check("-lnc", include_str!("connections.txt"));
    check(
        "-L -n -c --persistent-conn",
        include_str!("connections_pe.txt"),
    );
}

#[test]
fn timeouts() {
    check("-L --timeout", include_str!("timeout.txt"));
}

#[test]
fn daemons_list_nothing() {
    check("-L --daemon", "");
}

#[test]
fn save() {
    check("-S -n", include_str!("save.txt"));
    check("-S", include_str!("save.txt"));
    check("--save", include_str!("save.txt"));
}

#[test]
fn save_clear_restore_save_gives_the_same_text() {
    let mut model = scenario();
    let saved = ok(&mut model, "-S -n");
    ok(&mut model, "-C");
    assert_eq!(ok(&mut model, "-S -n"), "");
    let out = run(&["-R".to_string()], &mut model, saved.as_bytes());
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(ok(&mut model, "-S -n"), saved);
}
