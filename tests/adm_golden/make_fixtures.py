#!/usr/bin/env python3
"""Writes the golden listings of tests/adm_golden/main.rs.

An oracle independent of rvsadm's code: the table of main.rs's
`scenario()` written out by hand below, printed with the C formats of
ipvsadm 1.31 (shared/reference/ipvsadm-output.md), which Python's %
operator implements the same way for these conversions. Run it from this
directory after changing the scenario: python3 make_fixtures.py
"""

# (key words for save, listing name, scheduler, flags text, persistence
# (timeout, mask or None), ops, destinations in insertion order)
# destination: (addr, forward name, save switch, weight, upper, lower,
#               active, inactive, persistent, stats, rates)
Z5 = (0, 0, 0, 0, 0)
SERVICES_IN_INSERTION_ORDER = [
    ("-t 198.18.0.100:80", "TCP  198.18.0.100:80", "wlc", None, (360, "255.255.255.0"), False,
     (99_999_999, 100_000_000, 999_999_999, 1_000_000_000, 99_999_999_999),
     (1, 2, 3, 100_000_000, 4_000_000_000),
     [("198.19.0.12:80", "Masq", "-m", 2, 0, 0, 0, 1, 0, Z5, Z5),
      ("198.19.0.11:80", "Masq", "-m", 3, 100, 50, 3, 7, 2,
       (1, 100_000_000_000, 99_999_999_999_999, 100_000_000_000_000, 18446744073709551615),
       (123_456_789, 5, 6, 7, 8))]),
    ("-u 198.18.0.100:53", "UDP  198.18.0.100:53", "sh", "sh-fallback,sh-port", None, True, Z5, Z5,
     [("198.19.0.11:53", "Route", "-g", 1, 0, 0, 0, 0, 0, Z5, Z5)]),
    ("-f 7", "FWM  7", "rr", None, None, False, Z5, Z5,
     [("198.19.0.13:0", "Local", "-g", 0, 0, 0, 0, 0, 0, Z5, Z5)]),
    ("-t 198.18.0.99:443", "TCP  198.18.0.99:443", "mh", "mh-port", None, False, Z5, Z5,
     [("198.19.0.11:443", "Tunnel", "-i", 5, 0, 0, 0, 0, 0, Z5, Z5)]),
    ("-t [2001:db8::100]:80", "TCP  [2001:db8::100]:80", "rr", None, None, False, Z5, Z5,
     [("[2001:db8::11]:8080", "Masq", "-m", 1, 0, 0, 0, 0, 0, Z5, Z5)]),
    ("-f 9 -6", "FWM  9 IPv6", "wlc", None, (600, "64"), False, Z5, Z5, []),
]
# The sorted order (fwmark, family, protocol, address, port) and, within
# each service, destinations by address and port: worked out by hand.
SORTED = [3, 0, 1, 4, 2, 5]
SORTED_DESTS = {0: [1, 0]}

CONNECTIONS = [
    ("TCP", "198.18.0.2:40000", "198.18.0.100:80", "198.19.0.11:80", "ESTABLISHED", 899),
    ("TCP", "198.18.0.0:0", "198.18.0.100:80", "198.19.0.11:80", "NONE", 359),
    ("UDP", "198.18.0.3:5353", "198.18.0.100:53", "198.19.0.11:53", "UDP", 6001),
    ("TCP", "[2001:db8::2]:40001", "[2001:db8::100]:80", "[2001:db8::11]:8080", "SYN_RECV", 59),
]


def largenum(i, exact):
    if exact:
        width = 9 if len("%d" % i) <= 8 else len("%d" % i) + 1
        return "%*d" % (width, i)
    if i < 100000000:
        return "%9d" % i
    if i < 1000000000:
        return "%8dK" % (i // 1000)
    if i < 100000000000:
        return "%8dM" % (i // 1000000)
    if i < 100000000000000:
        return "%8dG" % (i // 1000000000)
    return "%8dT" % (i // 1000000000000)


def services(nosort):
    order = range(len(SERVICES_IN_INSERTION_ORDER)) if nosort else SORTED
    for index in order:
        svc = SERVICES_IN_INSERTION_ORDER[index]
        dests = svc[8]
        dest_order = range(len(dests)) if nosort else SORTED_DESTS.get(index, range(len(dests)))
        yield svc, [dests[d] for d in dest_order]


def title(fmt):
    if fmt in ("stats", "rate"):
        cols = (("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes") if fmt == "stats"
                else ("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"))
        return ("%-33s %8s %8s %8s %8s %8s\n" % (("Prot LocalAddress:Port",) + cols)
                + "  -> RemoteAddress:Port\n")
    if fmt == "thresholds":
        return ("%-33s %-10s %-10s %-10s %-10s\n" % ("Prot LocalAddress:Port", "Uthreshold",
                                                  "Lthreshold", "ActiveConn", "InActConn")
                + "  -> RemoteAddress:Port\n")
    if fmt == "persistent-conn":
        return ("%-33s %-9s %-11s %-10s %-10s\n" % ("Prot LocalAddress:Port", "Weight",
                                                 "PersistConn", "ActiveConn", "InActConn")
                + "  -> RemoteAddress:Port\n")
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def entry(svc, dests, fmt, exact):
    _, name, sched, flags, persistence, ops, stats, rates, _ = svc
    out = ""
    if fmt == "stats":
        out += "%-33s" % name + "".join(largenum(v, exact) for v in stats)
    elif fmt == "rate":
        out += "%-33s" % name + "".join(largenum(v, exact) for v in rates)
    else:
        out += "%s %s" % (name, sched)
        if flags:
            out += " (%s)" % flags
        if persistence:
            out += " persistent %u" % persistence[0]
            if persistence[1]:
                out += " mask %s" % persistence[1]
        if ops:
            out += " ops"
    out += "\n"
    for addr, fwd, _, weight, upper, lower, active, inactive, persist, dstats, drates in dests:
        if fmt == "stats":
            out += "  -> %-28s" % addr + "".join(largenum(v, exact) for v in dstats) + "\n"
        elif fmt == "rate":
            out += ("  -> %-28s %8u %8u %8u" % (addr, drates[0], drates[1], drates[2])
                    + largenum(drates[3], exact) + largenum(drates[4], exact) + "\n")
        elif fmt == "thresholds":
            out += "  -> %-28s %-10u %-10u %-10u %-10u\n" % (addr, upper, lower, active, inactive)
        elif fmt == "persistent-conn":
            out += "  -> %-28s %-9u %-11u %-10u %-10u\n" % (addr, weight, persist, active, inactive)
        else:
            out += "  -> %-28s %-7s %-6d %-10u %-10u\n" % (addr, fwd, weight, active, inactive)
    return out


def listing(fmt="plain", exact=False, nosort=False):
    out = "IP Virtual Server version 1.2.1 (size=4096)\n" + title(fmt)
    for svc, dests in services(nosort):
        out += entry(svc, dests, fmt, exact)
    return out


def save():
    out = ""
    for svc, dests in services(False):
        key, _, sched, flags, persistence, ops = svc[:6]
        out += "-A %s -s %s" % (key, sched)
        if persistence:
            out += " -p %u" % persistence[0]
            if persistence[1]:
                out += " -M %s" % persistence[1]
        if ops:
            out += " -o"
        if flags:
            out += " -b %s" % flags
        out += "\n"
        for d in dests:
            out += "-a %s -r %s %s -w %d\n" % (key, d[0], d[2], d[3])
    return out


def connections(pe_columns):
    out = "IPVS connection entries\n"
    if pe_columns:
        out += "pro expire %-11s %-18s %-18s %-18s %-16s %s\n" % (
            "state", "source", "virtual", "destination", "pe name", "pe_data")
    else:
        out += "pro expire %-11s %-18s %-18s %s\n" % ("state", "source", "virtual", "destination")
    for proto, client, virtual, dest, state, expires in CONNECTIONS:
        expire = "%02d:%02d" % (expires // 60, expires % 60)
        out += "%-3s %-6s %-11s %-18s %-18s %s\n" % (proto, expire, state, client, virtual, dest)
    return out


def one_service():
    svc = SERVICES_IN_INSERTION_ORDER[0]
    return title("plain") + entry(svc, [svc[8][1], svc[8][0]], "plain", False)


FIXTURES = {
    "list.txt": listing(),
    "list_nosort.txt": listing(nosort=True),
    "stats.txt": listing("stats"),
    "stats_exact.txt": listing("stats", exact=True),
    "rate.txt": listing("rate"),
    "rate_exact.txt": listing("rate", exact=True),
    "thresholds.txt": listing("thresholds"),
    "persistent_conn.txt": listing("persistent-conn"),
    "service.txt": one_service(),
    "connections.txt": connections(False),
    "connections_pe.txt": connections(True),
    "timeout.txt": "Timeout (tcp tcpfin udp): %d %d %d\n" % (1000, 120, 200),
    "save.txt": save(),
}

if __name__ == "__main__":
    for name, text in FIXTURES.items():
        with open(name, "w") as f:
            f.write(text)
