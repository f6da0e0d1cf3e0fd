//! The files people write, through the loaders the collector and the agent
//! use: inventory.toml, collector.toml (with its checks), sop.toml, a user
//! file of users/, agent.toml. The first byte picks the loader, the rest is
//! the text. A loader answers with a value or an error naming file and
//! line; it never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use siaga_agent::config::AgentConfig;
use siaga_collector::config::{CollectorConfig, parse_toml};
use siaga_collector::inventory::Inventory;
use siaga_collector::users::User;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(inv) = Inventory::parse(Path::new("inventory.toml"), text) {
                for opd in inv.opds.keys() {
                    let _ = inv.for_opd(opd);
                }
                let _ = inv.devices_by_opd();
            }
        }
        1 => {
            if let Ok(c) = parse_toml::<CollectorConfig>(Path::new("collector.toml"), text) {
                let _ = c.health.validate();
                let _ = c.measure.validate();
            }
        }
        2 => {
            let _ = siaga_collector::sop::file::parse(text, Path::new("sop.toml"));
        }
        3 => {
            let _ = parse_toml::<User>(Path::new("users/budi.toml"), text);
        }
        _ => {
            let _ = AgentConfig::parse(Path::new("agent.toml"), text);
        }
    }
});
