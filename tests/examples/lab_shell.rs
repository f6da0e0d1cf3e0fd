//! Keeps a small lab up for poking at it by hand (snmpwalk, ping, ...):
//! `cargo run -p siaga-tests --example lab_shell [-- SECONDS]`. Prints the
//! namespaces and addresses; everything is removed when it ends.

use std::time::Duration;

use siaga_tests::lab::Lab;

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(120);
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .snmpd_v3("admin", "authpass123", "privpass123")
        .spare_link("port2")
        .router("r1")
        .device("sw2")
        .behind("r1")
        .snmpd_v2c("public")
        .start()?;
    for d in ["sw1", "r1", "sw2"] {
        println!(
            "{d}: {} in netns {} (gateway {})",
            lab.addr(d)?,
            lab.netns(d)?,
            lab.gateway(d)?
        );
    }
    println!("up for {secs} s");
    std::thread::sleep(Duration::from_secs(secs));
    Ok(())
}
