//! `-R`, and the `-S` → `-C` → `-R` → `-S` round trip over random tables.

use super::ok;
use proptest::prelude::*;
use rvs::adm::format::large_number;
use rvs::adm::model::Model;
use rvs::adm::{run, Output};

fn restore(model: &mut Model, input: &str) -> Output {
    run(&["-R".to_string()], model, input.as_bytes())
}

#[test]
fn restore_reads_rules_comments_and_shell_lines() {
    let mut model = Model::default();
    let out = restore(
        &mut model,
        "# saved by hand\n\
         \n\
         ipvsadm -A -t 198.18.0.100:80 -s rr   # the web\n\
         \t-a -t 198.18.0.100:80 -r 198.19.0.11:80 -m -w 2\r\n\
         rvsadm -a -t 198.18.0.100:80 -r 198.19.0.12:80 -m\n\
         -L -n --timeout\n",
    );
    assert_eq!(
        out,
        Output {
            stdout: "Timeout (tcp tcpfin udp): 900 120 300\n".to_string(),
            stderr: String::new(),
            code: 0
        }
    );
    assert_eq!(
        ok(&mut model, "-S"),
        "-A -t 198.18.0.100:80 -s rr\n\
         -a -t 198.18.0.100:80 -r 198.19.0.11:80 -m -w 2\n\
         -a -t 198.18.0.100:80 -r 198.19.0.12:80 -m -w 1\n"
    );
}

#[test]
fn a_refused_line_is_reported_and_the_rest_applied() {
    let mut model = Model::default();
    let out = restore(
        &mut model,
        "-A -t 198.18.0.100:80\n\
         -A -t 198.18.0.100:80\n\
         -a -t 198.18.0.100:80 -r 198.19.0.11 -m\n",
    );
    assert_eq!(
        out.stderr,
        "line 2: Service already exists: -t 198.18.0.100:80\n"
    );
    assert_eq!(out.code, 255);
    assert_eq!(model.services[0].destinations.len(), 1);
}

#[test]
fn a_line_that_does_not_parse_stops_the_restore() {
    let mut model = Model::default();
    let out = restore(
        &mut model,
        "-A -t 198.18.0.100:80\n\
         -a -t 198.18.0.100:80 -r 198.19.0.11 -w 70000\n\
         -A -t 198.18.0.100:81\n",
    );
    assert_eq!(out.stderr, "line 2: illegal weight specified: -w 70000\n");
    assert_eq!(out.code, 2);
    assert_eq!(model.services.len(), 1);
    let out = restore(&mut model, "-C\n-R\n-A -t 198.18.0.100:81\n");
    assert_eq!(
        out.stderr,
        "line 2: Try `rvsadm -h' or 'rvsadm --help' for more information.\n"
    );
    assert_eq!(out.code, 255);
    assert!(model.services.is_empty());
}

#[test]
fn unreadable_input_is_an_error() {
    let mut model = Model::default();
    let out = run(&["-R".to_string()], &mut model, &b"-C\n\xff\xfe\n"[..]);
    assert_eq!(out.code, 255);
    assert!(
        out.stderr.starts_with("line 2: cannot read the rules: "),
        "{}",
        out.stderr
    );
}

fn number(value: u64, exact: bool) -> String {
    let mut out = String::new();
    large_number(&mut out, value, exact);
    out
}

#[test]
fn large_number_boundaries() {
    let cases: &[(u64, &str)] = &[
        (0, "        0"),
        (99_999_999, " 99999999"),
        (100_000_000, "  100000K"),
        (999_999_999, "  999999K"),
        (1_000_000_000, "    1000M"),
        (99_999_999_999, "   99999M"),
        (100_000_000_000, "     100G"),
        (99_999_999_999_999, "   99999G"),
        (100_000_000_000_000, "     100T"),
        (u64::MAX, "18446744T"),
    ];
    for (value, text) in cases {
        assert_eq!(number(*value, false), *text, "{value}");
    }
    assert_eq!(number(0, true), "        0");
    assert_eq!(number(99_999_999, true), " 99999999");
    assert_eq!(number(100_000_000, true), " 100000000");
    assert_eq!(number(u64::MAX, true), " 18446744073709551615");
}

/// One random service: protocol (0 tcp, 1 udp, 2 fwmark, 3 fwmark IPv6),
/// address and port, scheduler, persistence, flags, and its servers.
#[derive(Clone, Debug)]
struct RandomService {
    kind: u8,
    host: u8,
    port: u16,
    scheduler: &'static str,
    persistence: Option<(u32, u8)>,
    ops: bool,
    flags: u8,
    servers: Vec<(u8, u16, u8, u32)>,
}

fn random_service() -> impl Strategy<Value = RandomService> {
    let schedulers = prop::sample::select(vec![
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ]);
    (
        0u8..4,
        any::<u8>(),
        0u16..3,
        schedulers,
        prop::option::of((1u32..=2_678_400, 1u8..=32)),
        any::<bool>(),
        0u8..4,
        prop::collection::vec((any::<u8>(), 0u16..3, 0u8..3, 0u32..=65_535), 0..4),
    )
        .prop_map(
            |(kind, host, port, scheduler, persistence, ops, flags, servers)| RandomService {
                kind,
                host,
                port: [0, 80, 65_535][port as usize],
                scheduler,
                persistence,
                ops,
                flags,
                servers,
            },
        )
}

impl RandomService {
    fn v6(&self) -> bool {
        self.kind == 3 || (self.kind < 2 && self.host.is_multiple_of(4))
    }

    fn key(&self) -> String {
        let host = if self.v6() {
            format!("[2001:db8::{:x}]", self.host)
        } else {
            format!("198.18.0.{}", self.host)
        };
        match self.kind {
            0 => format!("-t {host}:{}", self.port),
            1 => format!("-u {host}:{}", self.port),
            2 => format!("-f {}", u32::from(self.host) + 1),
            _ => format!("-f {} -6", u32::from(self.host) + 1),
        }
    }

    fn commands(&self) -> Vec<String> {
        let key = self.key();
        let mut add = format!("-A {key} -s {}", self.scheduler);
        if let Some((timeout, bits)) = self.persistence {
            add += &format!(" -p {timeout}");
            if self.v6() {
                add += &format!(" -M {}", u32::from(bits) * 4);
            } else {
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                add += &format!(" -M {}", std::net::Ipv4Addr::from(mask));
            }
        }
        if self.ops {
            add += " -o";
        }
        let flag_names = match self.scheduler {
            "sh" => ["sh-fallback", "sh-port"],
            "mh" => ["mh-fallback", "mh-port"],
            _ => ["flag-1", "flag-3"],
        };
        let flags: Vec<&str> = (0..2)
            .filter(|bit| self.flags & (1 << bit) != 0)
            .map(|bit| flag_names[bit])
            .collect();
        if !flags.is_empty() {
            add += &format!(" -b {}", flags.join(","));
        }
        let mut lines = vec![add];
        for (host, port, forward, weight) in &self.servers {
            let server = if self.v6() {
                format!("[2001:db8:1::{host:x}]")
            } else {
                format!("198.19.0.{host}")
            };
            let port = [None, Some(80), Some(8080)][*port as usize];
            let server = match port {
                Some(port) => format!("{server}:{port}"),
                None => server,
            };
            let forward = ["-m", "-g", "-i"][*forward as usize];
            lines.push(format!("-a {key} -r {server} {forward} -w {weight}"));
        }
        lines
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn save_clear_restore_save_is_identical(services in prop::collection::vec(random_service(), 0..8)) {
        let mut model = Model::default();
        let mut accepted = 0;
        for service in &services {
            for line in service.commands() {
                let argv: Vec<String> = line.split(' ').map(str::to_string).collect();
                // Duplicates, zero ports and the like are refused: fine.
                if run(&argv, &mut model, std::io::empty()).code == 0 {
                    accepted += 1;
                }
            }
        }
        let saved = ok(&mut model, "-S -n");
        prop_assert_eq!(saved.lines().count(), accepted);
        ok(&mut model, "-C");
        prop_assert_eq!(ok(&mut model, "-S -n"), "");
        let out = restore(&mut model, &saved);
        prop_assert_eq!((out.code, out.stderr.as_str()), (0, ""));
        prop_assert_eq!(ok(&mut model, "-S -n"), saved);
    }
}
