use std::collections::{BTreeMap, HashMap};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use siaga_proto::v1;
use test_case::test_case;

use super::*;

/// A snapshot served as it is.
#[derive(Debug)]
struct Fixed(Snapshot);

impl Collector for Fixed {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

fn exposition(s: Snapshot) -> String {
    let mut r = Registry::default();
    r.register_collector(Box::new(Fixed(s)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).expect("encodes");
    out
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Reads the text exposition format as Prometheus does: `# HELP` and
/// `# TYPE` before each family's samples, label values with `\\`, `\"` and
/// `\n` escapes, a number after the labels. Errs on anything else.
fn parse(text: &str) -> Result<Vec<Series>, String> {
    let mut helped = HashMap::new();
    let mut typed = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or(format!("HELP: {line}"))?;
            helped.insert(name.to_string(), help.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').ok_or(format!("TYPE: {line}"))?;
            if !["gauge", "counter"].contains(&t) {
                return Err(format!("type {t}: {line}"));
            }
            typed.insert(name.to_string(), t.to_string());
            continue;
        }
        let mut chars = line.chars().peekable();
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        let family = match name.strip_suffix("_total") {
            Some(base) if typed.get(base).is_some_and(|t| t == "counter") => base.to_string(),
            _ => name.clone(),
        };
        if !helped.contains_key(&family) || !typed.contains_key(&family) {
            return Err(format!("{name} has no HELP or TYPE before it"));
        }
        let mut labels = BTreeMap::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let mut key = String::new();
                for c in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if chars.next() != Some('"') {
                    return Err(format!("no quote after {key}=: {line}"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => return Err(format!("escape {other:?}: {line}")),
                        },
                        Some('"') => break,
                        Some('\n') | None => return Err(format!("unterminated: {line}")),
                        Some(c) => value.push(c),
                    }
                }
                if labels.insert(key.clone(), value).is_some() {
                    return Err(format!("label {key} twice: {line}"));
                }
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => return Err(format!("{other:?} after a label: {line}")),
                }
            }
        }
        let rest: String = chars.collect();
        let value = rest
            .trim()
            .parse::<f64>()
            .map_err(|e| format!("value {rest:?}: {e}: {line}"))?;
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

fn find<'a>(all: &'a [Series], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Series> {
    all.iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

const NASTY: &str = "Switch \"lantai 2\" \\ ruang\nserver, {a=b}";

fn device(id: &str, name: &str, state: State, icmp: Option<IcmpReading>) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        opd: "dinkes".into(),
        name: name.into(),
        kind: "switch".into(),
        address: "198.18.0.2".into(),
        parent: String::new(),
        state,
        icmp,
        resources: None,
        last_reading_s: Some(1_700_000_000.5),
    }
}

fn snapshot() -> Snapshot {
    let mut open_tickets = BTreeMap::new();
    for step in 1..=9 {
        for overdue in [false, true] {
            open_tickets.insert(("dinkes".to_string(), step, overdue), 0);
        }
    }
    open_tickets.insert(("dinkes".to_string(), 5, true), 2);
    Snapshot {
        devices: vec![
            device(
                "sw1",
                NASTY,
                State::Degraded,
                Some(IcmpReading {
                    rtt_s: Some(0.0123),
                    loss_ratio: Some(0.25),
                    jitter_s: Some(0.001),
                }),
            ),
            DeviceRow {
                resources: Some(ResourceReading {
                    cpu_ratio: Some(0.97),
                    memory_ratio: Some(0.61),
                    temperature_c: Some(47.0),
                    temperature_threshold_c: Some(68.0),
                }),
                ..device("core", "core switch", State::Up, None)
            },
            device("sw2", "plain", State::Stale, None),
        ],
        links: vec![
            LinkRow {
                opd: "dinkes".into(),
                device: "sw1".into(),
                link: "uplink \"isp\"".into(),
                state: State::Up,
                interface: Some(IfReading {
                    oper_up: true,
                    speed_bps: 100_000_000,
                    in_bps: Some(2_000_000.0),
                    out_bps: Some(500_000.0),
                    in_util: Some(0.02),
                    out_util: Some(0.005),
                    errors_per_s: Some(0.0),
                    discards_per_s: None,
                    in_octets: Some(123_456),
                    out_octets: Some(654_321),
                    in_errors: Some(3),
                    out_errors: Some(0),
                }),
                last_reading_s: Some(1_700_000_000.0),
            },
            LinkRow {
                opd: "dinkes".into(),
                device: "sw2".into(),
                link: "port2".into(),
                state: State::Stale,
                interface: None,
                last_reading_s: Some(1_600_000_000.0),
            },
        ],
        open_tickets,
    }
}

#[test]
fn the_exposition_parses_and_label_values_round_trip() {
    let text = exposition(snapshot());
    let all = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let info = find(&all, "siaga_device_info", &[("device", "sw1")]);
    assert_eq!(info.len(), 1, "{text}");
    // The name comes back as it was: quotes, backslash, newline, comma, braces.
    assert_eq!(info[0].labels["name"], NASTY);
    assert_eq!(
        find(
            &all,
            "siaga_link_state",
            &[("link", "uplink \"isp\""), ("state", "up")]
        )[0]
        .value,
        1.0
    );
    // Every family has HELP and TYPE, also with no series at all.
    let empty = exposition(Snapshot::default());
    parse(&empty).unwrap_or_else(|e| panic!("{e}\n{empty}"));
    for family in [
        "siaga_device_rtt_seconds",
        "siaga_link_in_utilisation_ratio",
        "siaga_opd_open_tickets",
    ] {
        assert!(
            empty.contains(&format!("# TYPE {family} gauge")),
            "{family}:\n{empty}"
        );
    }
}

#[test]
fn values_are_in_base_units() {
    let all = parse(&exposition(snapshot())).expect("parses");
    let one = |name: &str, labels: &[(&str, &str)]| {
        let f = find(&all, name, labels);
        assert_eq!(f.len(), 1, "{name} {labels:?}: {f:?}");
        f[0].value
    };
    let sw1 = [("opd", "dinkes"), ("device", "sw1")];
    assert_eq!(one("siaga_device_rtt_seconds", &sw1), 0.0123);
    assert_eq!(one("siaga_device_packet_loss_ratio", &sw1), 0.25);
    assert_eq!(one("siaga_device_jitter_seconds", &sw1), 0.001);
    assert_eq!(one("siaga_device_up", &sw1), 1.0);
    assert_eq!(
        one("siaga_device_last_reading_timestamp_seconds", &sw1),
        1_700_000_000.5
    );
    let core = [("opd", "dinkes"), ("device", "core")];
    assert_eq!(one("siaga_device_cpu_ratio", &core), 0.97);
    assert_eq!(one("siaga_device_memory_used_ratio", &core), 0.61);
    assert_eq!(one("siaga_device_temperature_celsius", &core), 47.0);
    assert_eq!(
        one("siaga_device_temperature_threshold_celsius", &core),
        68.0
    );
    // A device that tells no health has no such series.
    assert!(find(&all, "siaga_device_cpu_ratio", &sw1).is_empty());
    let up = [("device", "sw1"), ("link", "uplink \"isp\"")];
    assert_eq!(one("siaga_link_in_utilisation_ratio", &up), 0.02);
    assert_eq!(one("siaga_link_out_utilisation_ratio", &up), 0.005);
    assert_eq!(one("siaga_link_in_bytes_per_second", &up), 250_000.0);
    assert_eq!(one("siaga_link_speed_bytes_per_second", &up), 12_500_000.0);
    assert_eq!(one("siaga_link_in_bytes_total", &up), 123_456.0);
    assert_eq!(one("siaga_link_in_errors_total", &up), 3.0);
    assert_eq!(one("siaga_link_oper_up", &up), 1.0);
    assert!(find(&all, "siaga_link_discards_per_second", &up).is_empty());
    // The state is one-hot over every state.
    let states = find(&all, "siaga_device_state", &sw1);
    assert_eq!(states.len(), STATES.len());
    for s in states {
        let want = if s.labels["state"] == "degraded" {
            1.0
        } else {
            0.0
        };
        assert_eq!(s.value, want, "{s:?}");
    }
    // Open tickets: the waiting ones and a zero everywhere else.
    let t = find(&all, "siaga_opd_open_tickets", &[("opd", "dinkes")]);
    assert_eq!(t.len(), 18);
    assert_eq!(t.iter().map(|s| s.value).sum::<f64>(), 2.0);
    assert_eq!(
        one(
            "siaga_opd_open_tickets",
            &[("step", "5"), ("overdue", "true")]
        ),
        2.0
    );
}

#[test]
fn a_stale_device_has_its_state_and_age_but_no_values() {
    let all = parse(&exposition(snapshot())).expect("parses");
    let sw2 = [("device", "sw2")];
    for name in [
        "siaga_device_rtt_seconds",
        "siaga_device_packet_loss_ratio",
        "siaga_device_jitter_seconds",
        "siaga_device_up",
        "siaga_link_in_utilisation_ratio",
        "siaga_link_oper_up",
        "siaga_link_in_bytes_total",
    ] {
        assert!(find(&all, name, &sw2).is_empty(), "{name}");
    }
    assert_eq!(
        find(
            &all,
            "siaga_device_state",
            &[("device", "sw2"), ("state", "stale")]
        )[0]
        .value,
        1.0
    );
    assert_eq!(
        find(
            &all,
            "siaga_link_state",
            &[("device", "sw2"), ("state", "stale")]
        )[0]
        .value,
        1.0
    );
    assert_eq!(
        find(&all, "siaga_device_last_reading_timestamp_seconds", &sw2).len(),
        1
    );
}

fn icmp_sample(ts_us: i64) -> v1::Sample {
    v1::Sample {
        seq: 1,
        ts_us,
        device: "sw1".into(),
        kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
            sent: 4,
            received: 3,
            loss_pct: 25.0,
            rtt_avg_us: Some(12_300),
            jitter_us: Some(1_000),
            ..Default::default()
        })),
    }
}

fn snmp_sample(ts_us: i64) -> v1::Sample {
    v1::Sample {
        seq: 2,
        ts_us,
        device: "sw1".into(),
        kind: Some(v1::sample::Kind::Snmp(v1::SnmpResult::default())),
    }
}

const S: i64 = 1_000_000;

// Interval 10 s, now 100 s: a reading older than 30 s is stale.
#[test_case(90 * S, None, true ; "fresh")]
#[test_case(50 * S, None, false ; "old")]
#[test_case(90 * S, Some(-60 * S), false ; "agent clock ahead hides the age")]
#[test_case(50 * S, Some(45 * S), true ; "agent clock behind")]
fn readings_are_exported_only_while_fresh(ts: i64, offset: Option<i64>, fresh: bool) {
    let d = crate::inventory::Device {
        id: "sw1".into(),
        opd: "dinkes".into(),
        kind: "switch".into(),
        address: "198.18.0.2".parse().expect("an address"),
        parent: None,
        name: NASTY.into(),
        icmp_count: 4,
        snmp: None,
    };
    let latest = crate::store::Latest {
        icmp: Some(icmp_sample(ts)),
        snmp: Some(snmp_sample(ts)),
        last_sample_us: Some(ts),
    };
    let (row, (snmp_ts, snmp)) = device_row(&d, latest, Health::Up, offset, 10 * S, 100 * S);
    assert_eq!(row.state, if fresh { State::Up } else { State::Stale });
    assert_eq!(snmp_ts, Some(ts));
    assert_eq!(snmp.is_some(), fresh);
    let want = IcmpReading {
        rtt_s: Some(0.0123),
        loss_ratio: Some(0.25),
        jitter_s: Some(0.001),
    };
    assert_eq!(row.icmp, fresh.then_some(want));
    // The time is the collector's: the agent's corrected by its offset.
    assert_eq!(
        row.last_reading_s,
        Some((ts + offset.unwrap_or(0)) as f64 / 1e6)
    );
}

/// The Grafana dashboard shipped in `deploy/grafana/`.
const DASHBOARD: &str = include_str!("../../../../deploy/grafana/siaga-network.json");

/// The `siaga_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("siaga_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

#[test]
fn the_dashboard_is_importable_and_asks_only_for_exported_series() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(d["uid"].is_string() && d["title"].is_string());
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("template variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["opd", "device"]);
    // A family is known by its TYPE line (a counter's samples add `_total`).
    let text = exposition(snapshot());
    let known = |name: &str| {
        let family = name.strip_suffix("_total").unwrap_or(name);
        text.contains(&format!("# TYPE {name} gauge\n"))
            || text.contains(&format!("# TYPE {family} counter\n"))
    };
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64()), "panel id twice: {p}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap_or(99), g["w"].as_u64().unwrap_or(99));
        assert!(x + w <= 24 && g["h"].as_u64().is_some(), "{}", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
            exprs.push(t["expr"].as_str().expect("an expr").to_string());
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        exprs.push(v["definition"].as_str().expect("a query").to_string());
    }
    assert!(exprs.len() > 10, "{exprs:?}");
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no siaga series in {e}");
        for n in names {
            assert!(
                known(&n),
                "the dashboard asks for {n}, which is not exported ({e})"
            );
        }
    }
}
