//! Polls one device once and prints what the agent would send:
//! `snmp_poll ADDRESS[:PORT] 2c COMMUNITY` or
//! `snmp_poll ADDRESS[:PORT] 3 USER AUTH AUTHPASS PRIV PRIVPASS`.

use siaga_agent::probe::snmp::SnmpPoller;
use siaga_proto::v1::{Device, SnmpTarget};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize| a.get(i).cloned().unwrap_or_default();
    let (host, port) = match get(0).split_once(':') {
        Some((h, p)) => (h.to_string(), p.parse()?),
        None => (get(0), 161),
    };
    let target = if get(1) == "3" {
        SnmpTarget {
            version: "3".into(),
            user: get(2),
            auth_protocol: get(3),
            auth_password: get(4),
            priv_protocol: get(5),
            priv_password: get(6),
            port,
            ..SnmpTarget::default()
        }
    } else {
        SnmpTarget {
            version: get(1),
            community: get(2),
            port,
            ..SnmpTarget::default()
        }
    };
    let dev = Device {
        id: "dev".into(),
        address: host,
        snmp: Some(target),
        ..Device::default()
    };
    let poller = SnmpPoller::new();
    for _ in 0..2 {
        let (r, events) = poller.poll(&dev, &[]).await;
        println!("{r:#?}\n{events:#?}");
    }
    Ok(())
}
