//! The table's side of each command (the kernel's in ipvsadm): errors with
//! their exit codes, `-E`/`-e` replacing every attribute, deletions,
//! zeroing, timeouts; and the JSON of the model.

use super::{ok, rvsadm};
use rvs::adm::model::{
    Destination, Forward, Group, GroupMember, Model, Protocol, SchedFlags, ServiceKey, Timeouts,
};
use rvs::adm::{Command, DestSpec};
use rvs::stats::{Counters, Rates};
use std::net::SocketAddr;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn web() -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: addr("198.18.0.100:80"),
    }
}

fn refused(model: &mut Model, line: &str, message: &str) {
    let out = rvsadm(model, line);
    assert_eq!(
        (out.stderr.as_str(), out.code),
        (format!("{message}\n").as_str(), 255),
        "rvsadm {line}"
    );
    assert_eq!(out.stdout, "");
}

fn with_web() -> Model {
    let mut model = Model::default();
    ok(&mut model, "-A -t 198.18.0.100:80 -s wlc");
    ok(
        &mut model,
        "-a -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -w 3",
    );
    model
}

fn dest<'a>(model: &'a Model, text: &str) -> &'a Destination {
    model
        .service(&web())
        .unwrap()
        .destination(addr(text))
        .unwrap()
}

#[test]
fn service_errors() {
    let mut model = with_web();
    refused(
        &mut model,
        "-A -t 198.18.0.100:80",
        "Service already exists: -t 198.18.0.100:80",
    );
    refused(
        &mut model,
        "-E -t 198.18.0.100:81",
        "No such service: -t 198.18.0.100:81",
    );
    refused(
        &mut model,
        "-D -u 198.18.0.100:80",
        "No such service: -u 198.18.0.100:80",
    );
    refused(&mut model, "-Z -f 7", "No such service: -f 7");
    refused(
        &mut model,
        "-A -t 198.18.0.100:81 -s bogus",
        "Scheduler or persistence engine not found: -s bogus",
    );
    refused(
        &mut model,
        "-E -t 198.18.0.100:80 -s bogus",
        "Scheduler or persistence engine not found: -s bogus",
    );
    refused(
        &mut model,
        "-A -t 198.18.0.100:81 --pe sip",
        "Scheduler or persistence engine not found: --pe sip",
    );
    // The existence check comes first, as in the kernel.
    refused(
        &mut model,
        "-A -t 198.18.0.100:80 -s bogus",
        "Service already exists: -t 198.18.0.100:80",
    );
    refused(
        &mut model,
        "--start-daemon master",
        "Operation not supported: rvs has no connection synchronisation daemon (--start-daemon, --stop-daemon)",
    );
    assert_eq!(model.services.len(), 1);
}

#[test]
fn every_scheduler_is_accepted() {
    let mut model = Model::default();
    for (port, scheduler) in [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ]
    .iter()
    .enumerate()
    {
        ok(
            &mut model,
            &format!("-A -t 198.18.0.100:{} -s {scheduler}", port + 1),
        );
    }
    assert_eq!(model.services.len(), 14);
    assert!(model.services.iter().all(|s| s.scheduler_kind().is_some()));
}

#[test]
fn server_errors() {
    let mut model = with_web();
    refused(
        &mut model,
        "-a -t 198.18.0.100:81 -r 198.19.0.11",
        "Service not defined: -t 198.18.0.100:81",
    );
    refused(
        &mut model,
        "-e -t 198.18.0.100:81 -r 198.19.0.11",
        "Service not defined: -t 198.18.0.100:81",
    );
    refused(
        &mut model,
        "-d -t 198.18.0.100:81 -r 198.19.0.11",
        "Service not defined: -t 198.18.0.100:81",
    );
    refused(
        &mut model,
        "-a -t 198.18.0.100:80 -r 198.19.0.11:8080 -m",
        "Destination already exists: -t 198.18.0.100:80 -r 198.19.0.11:8080",
    );
    refused(
        &mut model,
        "-d -t 198.18.0.100:80 -r 198.19.0.11:8081",
        "No such destination: -t 198.18.0.100:80 -r 198.19.0.11:8081",
    );
    // -y above -x (and -y without -x) is the kernel's ERANGE.
    refused(
        &mut model,
        "-a -t 198.18.0.100:80 -r 198.19.0.12 -y 5",
        "Numerical result out of range: -x 0 -y 5 (the lower threshold is above the upper)",
    );
    refused(
        &mut model,
        "-e -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -x 10 -y 11",
        "Numerical result out of range: -x 10 -y 11 (the lower threshold is above the upper)",
    );
    for bad in ["0.0.0.0", "224.0.0.1", "255.255.255.255"] {
        refused(
            &mut model,
            &format!("-a -t 198.18.0.100:80 -r {bad}:80 -m"),
            &format!(
                "Invalid operation.  Possibly wrong module version, address not unicast, ...: -r {bad}:80"
            ),
        );
    }
    assert_eq!(model.service(&web()).unwrap().destinations.len(), 1);
    ok(
        &mut model,
        "-a -t 198.18.0.100:80 -r 198.19.0.12 -m -x 10 -y 10",
    );
    assert_eq!(dest(&model, "198.19.0.12:80").lower_threshold, 10);
}

#[test]
fn edit_service_replaces_every_attribute() {
    let mut model = Model::default();
    ok(
        &mut model,
        "-A -t 198.18.0.100:80 -s sh -b sh-port -p 100 -M 255.255.255.0",
    );
    ok(&mut model, "-a -t 198.18.0.100:80 -r 198.19.0.11 -m");
    let service = model.service_mut(&web()).unwrap();
    service.stats.conns = 5;
    service.group = Some(Group {
        name: Some("web".to_string()),
        members: vec![],
    });
    ok(&mut model, "-E -t 198.18.0.100:80 -s rr");
    let service = model.service(&web()).unwrap();
    assert_eq!(service.scheduler, "rr");
    // No -p, no -b: persistence and flags are gone, as with ipvsadm.
    assert_eq!(service.persistence, None);
    assert_eq!(service.sched_flags, SchedFlags::default());
    // Servers, counters and the group stay.
    assert_eq!(service.destinations.len(), 1);
    assert_eq!(service.stats.conns, 5);
    assert_eq!(service.group.as_ref().unwrap().name.as_deref(), Some("web"));
    // -E without -s sets the default scheduler.
    ok(&mut model, "-E -t 198.18.0.100:80 -p");
    let service = model.service(&web()).unwrap();
    assert_eq!(service.scheduler, "wlc");
    assert_eq!(service.persistence.unwrap().timeout, 360);
}

#[test]
fn edit_server_replaces_every_attribute() {
    let mut model = with_web();
    ok(
        &mut model,
        "-a -t 198.18.0.100:80 -r 198.19.0.12:80 -m -w 4 -x 9 -y 2",
    );
    model
        .service_mut(&web())
        .unwrap()
        .destinations
        .iter_mut()
        .for_each(|d| d.active_conns = 6);
    // Without -m, -e means -g: the port is forced to 80, so the NAT server
    // on 8080 is not found...
    refused(
        &mut model,
        "-e -t 198.18.0.100:80 -r 198.19.0.11:8080 -w 5",
        "No such destination: -t 198.18.0.100:80 -r 198.19.0.11:80",
    );
    // ...and the one on 80 becomes Route with weight 1, thresholds 0.
    ok(&mut model, "-e -t 198.18.0.100:80 -r 198.19.0.12");
    let rs2 = dest(&model, "198.19.0.12:80");
    assert_eq!(
        (
            rs2.forward,
            rs2.weight,
            rs2.upper_threshold,
            rs2.lower_threshold,
            rs2.active_conns
        ),
        (Forward::Dr, 1, 0, 0, 6)
    );
    ok(
        &mut model,
        "-e -t 198.18.0.100:80 -r 198.19.0.11:8080 -m -w 0",
    );
    let rs1 = dest(&model, "198.19.0.11:8080");
    assert_eq!((rs1.forward, rs1.weight), (Forward::Nat, 0));
}

#[test]
fn deleting() {
    let mut model = with_web();
    ok(&mut model, "-a -t 198.18.0.100:80 -r 198.19.0.12 -m");
    ok(&mut model, "-A -u 198.18.0.100:53");
    ok(&mut model, "-d -t 198.18.0.100:80 -r 198.19.0.11:8080");
    let service = model.service(&web()).unwrap();
    assert_eq!(service.destinations.len(), 1);
    assert_eq!(service.destinations[0].addr, addr("198.19.0.12:80"));
    // Deleting a service takes its servers with it.
    ok(&mut model, "-D -t 198.18.0.100:80");
    assert!(model.service(&web()).is_none());
    ok(&mut model, "-A -t 198.18.0.100:80");
    assert!(model.service(&web()).unwrap().destinations.is_empty());
    ok(&mut model, "--set 10 20 30");
    ok(&mut model, "-C");
    assert!(model.services.is_empty());
    // -C leaves the timeouts alone.
    assert_eq!(
        model.timeouts,
        Timeouts {
            tcp: 10,
            tcpfin: 20,
            udp: 30
        }
    );
}

#[test]
fn zeroing() {
    let mut model = with_web();
    ok(&mut model, "-A -u 198.18.0.100:53");
    let busy = Counters {
        conns: 1,
        inpkts: 2,
        outpkts: 3,
        inbytes: 4,
        outbytes: 5,
    };
    let fast = Rates {
        cps: 1,
        inpps: 2,
        outpps: 3,
        inbps: 4,
        outbps: 5,
    };
    for service in &mut model.services {
        service.stats = busy;
        service.rates = fast;
        for dest in &mut service.destinations {
            dest.stats = busy;
            dest.rates = fast;
            dest.active_conns = 2;
        }
    }
    ok(&mut model, "-Z -t 198.18.0.100:80");
    let web_service = model.service(&web()).unwrap();
    assert_eq!((web_service.stats, web_service.rates), Default::default());
    let rs = &web_service.destinations[0];
    assert_eq!((rs.stats, rs.rates), Default::default());
    // Connection counts are not statistics.
    assert_eq!(rs.active_conns, 2);
    assert_eq!(model.services[1].stats, busy);
    ok(&mut model, "-Z");
    assert!(model
        .services
        .iter()
        .all(|s| s.stats == Counters::default() && s.rates == Rates::default()));
}

#[test]
fn set_timeouts_leaves_zeros_unchanged() {
    let mut model = Model::default();
    assert_eq!(
        ok(&mut model, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    ok(&mut model, "--set 0 60 0");
    assert_eq!(
        ok(&mut model, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 60 300\n"
    );
    ok(&mut model, "--set 7200 0 30");
    assert_eq!(
        model.timeouts,
        Timeouts {
            tcp: 7200,
            tcpfin: 60,
            udp: 30
        }
    );
}

#[test]
fn apply_checks_what_the_parser_would() {
    // Commands may come from JSON, not only from the parser.
    let mut model = with_web();
    let spec = |weight, port| DestSpec {
        addr: SocketAddr::new("198.19.0.13".parse().unwrap(), port),
        forward: Forward::Dr,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    };
    let err = model
        .apply(&Command::AddDest(web(), spec(70_000, 80)))
        .unwrap_err();
    assert_eq!(
        (err.message.as_str(), err.code),
        ("illegal weight specified: -w 70000", 2)
    );
    // -g forces the virtual port here too.
    model
        .apply(&Command::AddDest(web(), spec(2, 9999)))
        .unwrap();
    assert_eq!(dest(&model, "198.19.0.13:80").weight, 2);
    let mut service = rvs::adm::ServiceSpec {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: addr("198.18.0.100:0"),
        },
        scheduler: "rr".to_string(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        one_packet: false,
        pe: None,
    };
    let err = model
        .apply(&Command::AddService(service.clone()))
        .unwrap_err();
    assert_eq!(err.code, 2);
    assert!(
        err.message.starts_with("Zero port specified"),
        "{}",
        err.message
    );
    service.key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: addr("198.18.0.100:443"),
    };
    service.one_packet = true;
    let err = model.apply(&Command::AddService(service)).unwrap_err();
    assert!(
        err.message.starts_with("One-Packet Scheduling"),
        "{}",
        err.message
    );
    let err = model
        .apply(&Command::SetTimeouts(Timeouts {
            tcp: 1,
            tcpfin: 2_678_401,
            udp: 3,
        }))
        .unwrap_err();
    assert_eq!(err.message, "invalid timeout value `2678401' specified");
    // -R needs its input.
    assert_eq!(model.apply(&Command::Restore).unwrap_err().code, 2);
}

#[test]
fn model_and_commands_round_trip_through_json() {
    let mut model = with_web();
    ok(&mut model, "-A -f 9 -6 -s mh -b mh-port -p 600 -M 64");
    ok(&mut model, "-A -u 198.18.0.100:53 -p -M 255.255.0.0 -o");
    let group = model
        .service_mut(&ServiceKey::Fwmark {
            mark: 9,
            family: rvs::adm::model::Family::Ipv6,
        })
        .unwrap();
    group.group = Some(Group {
        name: Some("web".to_string()),
        members: vec![GroupMember {
            protocol: Protocol::Tcp,
            addr: addr("[2001:db8::100]:443"),
        }],
    });
    model.services[0].destinations[0].stats.outbytes = u64::MAX;
    let json = serde_json::to_string(&model).unwrap();
    let back: Model = serde_json::from_str(&json).unwrap();
    assert_eq!(back, model);
    // Readable names in the JSON.
    for needle in [
        r#""forward":"nat""#,
        r#""protocol":"tcp""#,
        r#""addr":"198.18.0.100:80""#,
        r#""netmask":64"#,
        r#""netmask":"255.255.0.0""#,
        r#""family":"ipv6""#,
    ] {
        assert!(json.contains(needle), "{needle} not in {json}");
    }
    let command = rvs::adm::args::parse(
        &["-a", "-t", "198.18.0.100:80", "-r", "198.19.0.12", "-m"].map(String::from),
    )
    .unwrap();
    let json = serde_json::to_string(&command).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command);
}
