//! What the collector sends down an agent's stream, as the agent handles it:
//! the protobuf decoder of `CollectorMessage` (prost, the same length cap
//! the agent's gRPC channel enforces), then every pure step the agent takes
//! on it: the protocol check of a welcome, the cycle, burst shapes, trap
//! credentials and trap sources of an inventory, the plan of a measurement,
//! the addresses and rate of a discovery.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use siaga_agent::probe::cycle::{polled, trap_source};
use siaga_agent::probe::discover;
use siaga_agent::probe::measure::{self, plan};
use siaga_agent::probe::trap::TrapCredentials;
use siaga_agent::scheduler::{burst_options, cycle_interval};
use siaga_proto::v1::{CollectorMessage, Inventory, collector_message::Msg};

/// The agent's gRPC receive cap (tonic's default, 4 MiB).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

fn inventory(inv: &Inventory) {
    let cycle = cycle_interval(Some(inv), Duration::from_secs(10));
    for d in &inv.devices {
        let _ = burst_options(d, cycle);
        let _ = polled(d);
        if let Ok(ip) = d.address.trim().parse::<IpAddr>() {
            let _ = trap_source(inv, ip);
        }
    }
    let _ = TrapCredentials::from_devices(&inv.devices);
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_MESSAGE {
        return;
    }
    // A stream: length-delimited messages, as gRPC frames them. The agent
    // keeps the last inventory; a measurement is planned on it.
    let mut buf = data;
    let mut last: Option<Inventory> = None;
    while !buf.is_empty() {
        let Ok(m) = CollectorMessage::decode_length_delimited(&mut buf) else {
            return;
        };
        match m.msg {
            Some(Msg::Welcome(w)) => {
                let _ = siaga_proto::compatible(w.protocol_major);
            }
            Some(Msg::Inventory(inv)) => {
                inventory(&inv);
                // Cached in the spool as bytes and read back after a restart.
                let again = Inventory::decode(inv.encode_to_vec().as_slice());
                assert_eq!(again.as_ref().ok(), Some(&inv), "inventory round trip");
                last = Some(inv);
            }
            Some(Msg::Measure(cmd)) => {
                if let Ok(p) = plan(last.as_ref(), &cmd) {
                    let _ = measure::burst_options(p.count, p.window);
                }
            }
            Some(Msg::Discover(cmd)) => {
                // The sweep's addresses are bounded whatever the subnet
                // says (at most a /20: 4,096), and so is the rate.
                if let Ok(a) = discover::addresses(&cmd.subnet) {
                    assert!(a.len() <= 4096, "{} addresses of {:?}", a.len(), cmd.subnet);
                }
                assert!(discover::rate_of(cmd.rate_pps) <= 1000);
            }
            Some(Msg::Ack(_)) | Some(Msg::Refusal(_)) | None => {}
        }
    }
});
