//! How long the collector takes to load (parse and check) a province's
//! inventory: 60 OPDs, 3,000 devices and 3,000 links by default.
//!
//! ```text
//! cargo run -p siaga-collector --example inventory_load              # debug
//! cargo run --release -p siaga-collector --example inventory_load    # release
//! cargo run -p siaga-collector --example inventory_load -- --devices 6000
//! ```
//!
//! It prints the time of `Inventory::parse` (what `serve`, `validate` and a
//! reload run) over `--rounds` rounds (default 3), best and slowest. It
//! does not fail on a time: these machines are shared and noisy.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use siaga_collector::inventory::Inventory;

const DEVICES_PER_OPD: usize = 50;

/// Every device a switch of its own address with one uplink, as
/// `metrics_bench` builds it.
fn inventory(devices: usize) -> String {
    let opds = devices.div_ceil(DEVICES_PER_OPD);
    let mut s = String::from("interval = \"1m\"\n");
    for o in 0..opds {
        s.push_str(&format!(
            "\n[[opd]]\nid = \"opd{:03}\"\nname = \"OPD {}\"\n",
            o + 1,
            o + 1
        ));
    }
    for i in 0..devices {
        let (o, d) = (i / DEVICES_PER_OPD, i % DEVICES_PER_OPD);
        s.push_str(&format!(
            "\n[[device]]\nid = \"opd{o1:03}-d{d1:02}\"\nopd = \"opd{o1:03}\"\nkind = \"switch\"\n\
             address = \"127.{hi}.{lo}.{d1}\"\n\n\
             [[link]]\ndevice = \"opd{o1:03}-d{d1:02}\"\ninterface = \"eth0\"\nname = \"uplink\"\n",
            o1 = o + 1,
            d1 = d + 1,
            hi = 1 + o / 250,
            lo = 1 + o % 250,
        ));
    }
    s
}

fn main() -> Result<()> {
    let mut devices = 3_000;
    let mut rounds = 3;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--devices" => devices = it.next().context("--devices N")?.parse()?,
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            other => anyhow::bail!("unknown argument {other:?} (known: --devices N, --rounds N)"),
        }
    }
    ensure!(rounds > 0, "--rounds must be at least 1");
    let text = inventory(devices);
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let inv = Inventory::parse(Path::new("inventory.toml"), &text)?;
        times.push(t.elapsed());
        ensure!(
            inv.devices.len() == devices && inv.links.len() == devices,
            "loaded {} devices and {} links, generated {devices} of each",
            inv.devices.len(),
            inv.links.len()
        );
    }
    times.sort();
    println!(
        "{devices} devices + {devices} links ({} KB, {} lines): best {:.1} ms, slowest {:.1} ms over {rounds} rounds",
        text.len() / 1024,
        text.lines().count(),
        times[0].as_secs_f64() * 1e3,
        times[rounds - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
