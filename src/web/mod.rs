//! What rvsd's management listener serves besides the control API: the
//! web console (a single self-contained page) and Prometheus metrics.
//!
//! Both read the same two documents: the [`Model`](crate::adm::model::Model)
//! (`GET /v1/model`) and the data plane's [`Counters`] (`GET /v1/counters`).
//! Labels name a service as listings do (`TCP 198.18.0.100:80`, `FWM 1`)
//! and a server by its address (`198.19.0.11:80`); the page computes the
//! same labels, so its rows and the metrics' series match.

pub mod metrics;

use crate::adm::model::{Family, ServiceKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The console, served at `/`. Everything is inline (no CDN): the page
/// fetches `/v1/model` and `/v1/counters` every 2 s, with
/// `Authorization: Bearer TOKEN` when its URL ends in `#token=TOKEN`.
pub const CONSOLE_HTML: &str = include_str!("console.html");

/// The data plane's own counters, summed over workers (`GET /v1/counters`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Dropped packets by reason ([`DropReason::name`](crate::counters::DropReason::name)),
    /// every reason present, zeros included.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    #[serde(default)]
    pub ports: Vec<PortCounters>,
    /// Connections in the tables now (persistence templates excluded).
    #[serde(default)]
    pub conns_live: u64,
    #[serde(default)]
    pub uptime_seconds: f64,
}

/// One DPDK port: what the workers moved, and what the NIC itself counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// The `[[port]]` name from the configuration.
    pub name: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub nic_rx_packets: u64,
    pub nic_tx_packets: u64,
    /// Packets the NIC dropped because no RX descriptor was free.
    pub nic_rx_missed: u64,
}

/// The service's label in metrics and in the console: `TCP 198.18.0.100:80`,
/// `UDP [2001:db8::1]:53`, `FWM 1`, `FWM 1 IPv6`.
pub fn service_label(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr } => format!("{} {}", protocol.name(), addr),
        ServiceKey::Fwmark { mark, family } => match family {
            Family::Ipv4 => format!("FWM {mark}"),
            Family::Ipv6 => format!("FWM {mark} IPv6"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adm::model::Protocol;

    #[test]
    fn service_labels_follow_the_listing_names() {
        let tcp = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.18.0.100:80".parse().unwrap(),
        };
        let udp6 = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: "[2001:db8::1]:53".parse().unwrap(),
        };
        let fwm = ServiceKey::Fwmark {
            mark: 1,
            family: Family::Ipv4,
        };
        let fwm6 = ServiceKey::Fwmark {
            mark: 7,
            family: Family::Ipv6,
        };
        assert_eq!(service_label(&tcp), "TCP 198.18.0.100:80");
        assert_eq!(service_label(&udp6), "UDP [2001:db8::1]:53");
        assert_eq!(service_label(&fwm), "FWM 1");
        assert_eq!(service_label(&fwm6), "FWM 7 IPv6");
    }

    #[test]
    fn counters_json_is_the_documented_shape() {
        let counters = Counters {
            drops: BTreeMap::from([("no_service".to_string(), 4)]),
            ports: vec![PortCounters {
                name: "wan".into(),
                rx_packets: 1,
                tx_packets: 2,
                nic_rx_packets: 3,
                nic_tx_packets: 4,
                nic_rx_missed: 5,
            }],
            conns_live: 6,
            uptime_seconds: 7.5,
        };
        let json = serde_json::to_string(&counters).unwrap();
        assert_eq!(
            json,
            r#"{"drops":{"no_service":4},"ports":[{"name":"wan","rx_packets":1,"tx_packets":2,"nic_rx_packets":3,"nic_tx_packets":4,"nic_rx_missed":5}],"conns_live":6,"uptime_seconds":7.5}"#
        );
        assert_eq!(serde_json::from_str::<Counters>(&json).unwrap(), counters);
        // Every field may be absent (an older or partial producer).
        assert_eq!(
            serde_json::from_str::<Counters>("{}").unwrap(),
            Counters::default()
        );
    }
}
