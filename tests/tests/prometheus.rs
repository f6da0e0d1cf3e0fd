//! Grafana's view of the network: a real Prometheus scrapes the collector's
//! `/metrics` while a real agent probes a namespaced device running snmpd,
//! and what Prometheus's HTTP API answers for the device's RTT and its
//! link's utilisation is what `siaga` shows. Needs root (network
//! namespaces, raw sockets) and the Debian package `prometheus`.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use siaga_tests::harness::{Agent, Collector, http_get, json_f64, secs, set_toml, wait_until};
use siaga_tests::lab::Lab;
use siaga_tests::prometheus::Prometheus;

const DEVICE: &str = "dinkes-sw1";
const LINK: &str = "sw1-uplink";
/// A device name as people write them: quotes and a backslash.
const NAME: &str = "Switch \"lantai 2\" \\ ruang server";

/// `a` and `b` are the same measurement (one in seconds or a ratio, the
/// other in ms or %, scaled by `scale`).
fn same(a: f64, b: f64, scale: f64) -> bool {
    (a * scale - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn prometheus_sees_a_devices_rtt_and_a_links_utilisation_as_siaga_shows_them() -> Result<()> {
    let lab = Lab::new()?.device("sw1").snmpd_v2c("public").start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"{DEVICE}\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
         name = {name}\naddress = \"{addr}\"\n\n[device.snmp]\nversion = \"2c\"\n\
         community = \"public\"\n\n\
         [[link]]\ndevice = \"{DEVICE}\"\ninterface = \"eth0\"\nname = \"{LINK}\"\n",
        name = toml::Value::from(NAME),
    ))?;
    set_toml(&c.config, "metrics_listen", "127.0.0.1:0".into())?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let mut agent = Agent::start(agent_cfg)?;
    let metrics_addr = std::fs::read_to_string(c.data_dir.join("metrics.addr"))?;
    let metrics_addr = metrics_addr.trim().to_string();
    let prom = Prometheus::scraping(&metrics_addr)?;
    let logs = |agent: &Agent, c: &Collector| {
        format!(
            "agent log:\n{}\ncollector log:\n{}\n{}",
            agent.log_tail(30),
            c.log_tail(30),
            prom.log_tail()
        )
    };

    wait_until(secs(60), "rates on the link", || {
        let links = siaga.json(&["links", "--json"])?;
        Ok(links
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["name"] == LINK && l["in_bps"].is_number()))
    })
    .map_err(|e| e.context(logs(&agent, &c)))?;
    let rtt_sel = format!("siaga_device_rtt_seconds{{opd=\"dinkes\",device=\"{DEVICE}\"}}");
    let util_sel = format!(
        "siaga_link_in_utilisation_ratio{{opd=\"dinkes\",device=\"{DEVICE}\",link=\"{LINK}\"}}"
    );
    let mut rtt = None;
    let mut util = None;
    // Traffic through the device's uplink while the agent polls it, so
    // that its utilisation is not zero.
    wait_until(secs(60), "Prometheus holds the RTT and a busy link", || {
        lab.send_udp("sw1", 500, 1_000)?;
        let r = prom.query(&rtt_sel)?;
        let u = prom.query(&util_sel)?;
        rtt = r.first().map(|(_, v)| *v);
        util = u.first().map(|(_, v)| *v).filter(|v| *v > 0.0);
        Ok(r.len() == 1 && u.len() == 1 && rtt.is_some() && util.is_some())
    })
    .map_err(|e| e.context(logs(&agent, &c)))?;
    let (rtt, util) = (rtt.context("an RTT")?, util.context("a utilisation")?);

    // Each is a reading the collector took of that device and that link:
    // the same figure `siaga device --json` and `siaga history --json` show
    // (in ms and %).
    let detail = siaga.json(&["device", DEVICE, "--json"])?;
    let rtts: Vec<f64> = detail["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| json_f64(&p["rtt_ms"]))
        .collect();
    ensure!(
        rtts.iter().any(|ms| same(rtt, *ms, 1e3)),
        "Prometheus's RTT {rtt} s is none of the device's readings (ms): {rtts:?}"
    );
    let utils: Vec<f64> = siaga
        .history(DEVICE)?
        .iter()
        .flat_map(|s| s["interfaces"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["if_name"] == "eth0")
        .filter_map(|i| json_f64(&i["util_in_pct"]))
        .collect();
    ensure!(
        utils.iter().any(|pct| same(util, *pct, 100.0)),
        "Prometheus's utilisation {util} is none of the link's readings (%): {utils:?}"
    );
    // Its state and its name (quotes and backslash kept) are there too.
    let state = prom.query(&format!("siaga_device_state{{device=\"{DEVICE}\"}} == 1"))?;
    let shown = siaga
        .devices()?
        .into_iter()
        .find(|d| d["id"] == DEVICE)
        .context("the device in siaga devices")?;
    ensure!(
        state.len() == 1 && state[0].0["state"] == shown["state"],
        "state {state:?}, siaga devices shows {shown}"
    );
    let info = prom.query(&format!("siaga_device_info{{device=\"{DEVICE}\"}}"))?;
    ensure!(info.len() == 1 && info[0].0["name"] == NAME, "{info:?}");

    // promtool, Prometheus's own linter (of names, units, HELP), accepts
    // the exposition.
    let text = http_get(&metrics_addr, "/metrics")?;
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&classic(&text))?;
    ensure!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(std::mem::take(&mut lint.stderr).as_slice())
    );

    // The agent stops: once its readings are old the values go (Prometheus
    // marks the series stale) while the state and the reading's time stay.
    ensure!(agent.stop(), "the agent did not stop cleanly");
    wait_until(secs(60), "no RTT exported for the silent device", || {
        let text = http_get(&metrics_addr, "/metrics")?;
        Ok(!text.contains(&rtt_sel) && !text.contains(&util_sel))
    })
    .map_err(|e| e.context(logs(&agent, &c)))?;
    let text = http_get(&metrics_addr, "/metrics")?;
    for kept in [
        format!(
            "siaga_device_last_reading_timestamp_seconds{{opd=\"dinkes\",device=\"{DEVICE}\"}}"
        ),
        format!("siaga_device_state{{opd=\"dinkes\",device=\"{DEVICE}\",state=\"up\"}} 0"),
    ] {
        ensure!(text.contains(&kept), "no {kept} in:\n{text}");
    }
    Ok(())
}

/// The OpenMetrics text as the classic text format that promtool reads: a
/// counter's HELP and TYPE name it with `_total`, as its samples are, and
/// no `# EOF`.
fn classic(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in text.lines().filter(|l| *l != "# EOF") {
        let renamed = counters.iter().find_map(|c| {
            for kind in ["HELP", "TYPE"] {
                let head = format!("# {kind} {c} ");
                if let Some(rest) = line.strip_prefix(&head) {
                    return Some(format!("# {kind} {c}_total {rest}"));
                }
            }
            None
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `Command::output` with `input` on stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> Result<std::process::Output>;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &str) -> Result<std::process::Output> {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }
}
