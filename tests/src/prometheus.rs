//! A real Prometheus (Debian package `prometheus`) scraping one target every
//! second, its data in a temporary directory, on a free loopback port;
//! killed when dropped, also when a test fails.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::harness::{free_port, http_get, secs, wait_until};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// Its HTTP API, `127.0.0.1:<port>`.
    pub addr: String,
    log: PathBuf,
    // Dropped last: the process goes before its directory.
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`)
    /// every second, and waits until it is ready.
    pub fn scraping(target: &str) -> Result<Prometheus> {
        let exe = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("`prometheus` is not installed (Debian: apt-get install prometheus)")?;
        let dir = tempfile::Builder::new().prefix("siaga-prom-").tempdir()?;
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: siaga\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = dir.path().join("prometheus.log");
        let out = fs::File::create(&log)?;
        let child = Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting prometheus")?;
        let p = Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        };
        wait_until(secs(60), "prometheus ready", || {
            Ok(http_get(&p.addr, "/-/ready")?.contains("Ready"))
        })
        .map_err(|e| e.context(p.log_tail()))?;
        Ok(p)
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "prometheus log:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    /// An instant query through `/api/v1/query`: each series' labels and
    /// value.
    pub fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>> {
        let body = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )?;
        let v: Value =
            serde_json::from_str(&body).with_context(|| format!("query answer {body:?}"))?;
        ensure!(v["status"] == "success", "query {promql:?}: {v}");
        let Some(rows) = v["data"]["result"].as_array() else {
            bail!("query {promql:?}: no result in {v}");
        };
        rows.iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .with_context(|| format!("a value in {r}"))?;
                Ok((r["metric"].clone(), value))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
