//! What an agent sends up its stream, as the collector handles it: the
//! protobuf decoder of `AgentMessage` (prost, under the collector's 16 MiB
//! message cap), the OPD check that refuses samples of other OPDs' or
//! unknown devices, the stored form of each sample (encoded body, decoded
//! back), and the health engine: readings, state machines, flap
//! detection, incidents, with heartbeats and clock ticks in between.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use siaga_collector::discover::proposal::propose;
use siaga_collector::health::{Engine, HealthRules};
use siaga_collector::inventory::Inventory;
use siaga_collector::ticket::service::topology;
use siaga_proto::v1::{AgentMessage, Sample, agent_message::Msg};

const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const OPD: &str = "dinkes";

const INVENTORY: &str = r#"
interval = "10s"
[[opd]]
id = "dinkes"
[[opd]]
id = "bappeda"
[[device]]
id = "dinkes-core"
opd = "dinkes"
kind = "router"
address = "198.18.0.1"
[[device]]
id = "dinkes-rtr"
opd = "dinkes"
kind = "router"
address = "198.18.0.2"
parent = "dinkes-core"
[device.snmp]
version = "2c"
community = "public"
[[device]]
id = "dinkes-sw1"
opd = "dinkes"
kind = "switch"
address = "198.18.0.3"
parent = "dinkes-rtr"
[[device]]
id = "bappeda-rtr"
opd = "bappeda"
kind = "router"
address = "198.18.1.1"
[[link]]
device = "dinkes-rtr"
interface = "eth0"
name = "uplink"
[[link]]
device = "dinkes-rtr"
if_index = 7
name = "ke-puskesmas"
"#;

static INV: LazyLock<Inventory> = LazyLock::new(|| {
    Inventory::parse(Path::new("inventory.toml"), INVENTORY)
        .unwrap_or_else(|e| panic!("the fuzz target's own inventory: {e}"))
});

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_MESSAGE {
        return;
    }
    let inv = &*INV;
    let mut engine = Engine::new(HealthRules::default(), topology(inv));
    let mut now: i64 = 1_800_000_000_000_000;
    let mut buf = data;
    while !buf.is_empty() {
        let Ok(m) = AgentMessage::decode_length_delimited(&mut buf) else {
            return;
        };
        now += 1_000_000;
        match m.msg {
            Some(Msg::Batch(batch)) => {
                for s in batch.samples {
                    let ours = inv.devices.get(&s.device).is_some_and(|d| d.opd == OPD);
                    if !ours {
                        continue;
                    }
                    // Device, time and sequence live in the store's key;
                    // the body is the sample without them.
                    let body = Sample {
                        seq: 0,
                        ts_us: 0,
                        device: String::new(),
                        kind: s.kind.clone(),
                    };
                    let stored = Sample::decode(body.encode_to_vec().as_slice());
                    assert!(stored.is_ok(), "a stored body decodes");
                    let _ = engine.sample(OPD, &s, now);
                }
                let _ = engine.tick(now);
            }
            Some(Msg::Heartbeat(_)) | Some(Msg::Hello(_)) => {
                let _ = engine.heartbeat(OPD, now);
            }
            Some(Msg::MeasureResult(r)) => {
                let _ = r.samples.len();
            }
            Some(Msg::DiscoverResult(r)) => {
                // A hostile agent's discovery becomes a proposal, never a
                // panic, and proposes no id the inventory already has.
                let p = propose(inv, OPD, "198.18.0.0/24", &r.hosts);
                for d in &p.new_devices {
                    assert!(!inv.devices.contains_key(&d.id), "{} proposed again", d.id);
                }
            }
            None => {
                // Silence: the clock moves on past the agent's timeout.
                now += 60_000_000;
                let _ = engine.tick(now);
            }
        }
    }
});
