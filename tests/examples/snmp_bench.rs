//! SNMP benchmark, side by side in one run (root needed): ifTable + ifXTable
//! of N lab devices (default 50, each a real snmpd), the agent's poller
//! (all devices at once, one GETBULK stream per device) vs `snmpbulkwalk` of
//! both tables, one device after the other.
//!
//! `cargo run --release -p siaga-tests --example snmp_bench [-- DEVICES]`

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use siaga_agent::probe::snmp::SnmpPoller;
use siaga_proto::v1::{Device, SnmpStatus, SnmpTarget};
use siaga_tests::lab::Lab;

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50);
    let mut builder = Lab::new()?;
    for i in 0..n {
        builder = builder
            .device(&format!("d{i}"))
            .snmpd_v2c("public")
            .spare_link("port2");
    }
    let setup = Instant::now();
    let lab = builder.start()?;
    println!(
        "SNMP: {n} lab devices (snmpd, 3 interfaces each), set up in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("d{i}");
        let addr = lab.target(IpAddr::V4(lab.addr(&id)?))?;
        devices.push(Device {
            id,
            address: addr.to_string(),
            snmp: Some(SnmpTarget {
                version: "2c".into(),
                community: "public".into(),
                timeout_ms: 2000,
                retries: 1,
                ..SnmpTarget::default()
            }),
            ..Device::default()
        });
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let poller = SnmpPoller::new();
    let mut ours = Vec::new();
    for round in 0..4 {
        let start = Instant::now();
        let results = rt.block_on(futures::future::join_all(
            devices.iter().map(|d| poller.poll(d, &[])),
        ));
        let took = start.elapsed();
        let ok = results
            .iter()
            .filter(|(r, _)| r.status == SnmpStatus::Ok as i32)
            .count();
        let ifs: usize = results.iter().map(|(r, _)| r.interfaces.len()).sum();
        ensure!(
            ok == n,
            "only {ok} of {n} devices answered: {:?}",
            results
                .iter()
                .find(|(r, _)| r.status != SnmpStatus::Ok as i32)
        );
        println!(
            "  siaga poller, round {round}{}: {:>8.1} ms ({ifs} interfaces)",
            if round == 0 {
                " (cold: client setup)"
            } else {
                ""
            },
            ms(took)
        );
        if round > 0 {
            ours.push(took);
        }
    }

    let mut walks = Vec::new();
    for round in 0..2 {
        let start = Instant::now();
        let mut lines = 0;
        for d in &devices {
            for table in ["1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1"] {
                let out = Command::new("snmpbulkwalk")
                    .args(["-v2c", "-c", "public", "-On", &d.address, table])
                    .output()?;
                ensure!(
                    out.status.success(),
                    "snmpbulkwalk failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                lines += out
                    .stdout
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
            }
        }
        let took = start.elapsed();
        println!(
            "  sequential snmpbulkwalk, round {round}: {:>8.1} ms ({lines} values)",
            ms(took)
        );
        walks.push(took);
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    println!(
        "  ratio siaga/snmpbulkwalk (best warm rounds): {:.3} (goal <= 0.33)",
        best(&ours).as_secs_f64() / best(&walks).as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
