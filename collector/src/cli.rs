//! The `siaga` CLI for people: talks to the collector's admin API only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Deserialize;
use serde_json::{Value, json};
use siaga_proto::v1::admin_client::AdminClient;
use siaga_proto::v1::{self};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::admin::rfc3339;
use crate::config::{parse_toml, resolve};
use crate::error::ConfigError;

/// `siaga.toml`, written by `siaga-collector enroll user`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiagaConfig {
    /// The collector's URL, e.g. `https://127.0.0.1:7443`.
    pub collector: String,
    /// TLS name to verify (default: the host of `collector`).
    pub server_name: Option<String>,
    /// Informative: the identity is the certificate.
    #[serde(default)]
    pub user: String,
    /// Certificate files.
    pub tls: ClientTls,
}

/// The CLI's certificate files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// The collector's CA.
    pub ca: PathBuf,
    /// The user's certificate.
    pub cert: PathBuf,
    /// The user's key.
    pub key: PathBuf,
}

/// Something the user should read: one line, then a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another problem, already phrased for the user.
    #[error("{0}")]
    Message(String),
}

impl SiagaConfig {
    /// Reads `path`, resolving the TLS files against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        let mut c: SiagaConfig = parse_toml(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.tls.ca = resolve(base, &c.tls.ca);
        c.tls.cert = resolve(base, &c.tls.cert);
        c.tls.key = resolve(base, &c.tls.key);
        Ok(c)
    }
}

/// The config file to use: `--config`, else `SIAGA_CONFIG`, else `~/.config/siaga/siaga.toml`.
pub fn config_path(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("SIAGA_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/siaga/siaga.toml")),
        None => Err(CliError::Message(
            "no config: use --config FILE or set SIAGA_CONFIG".into(),
        )),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let s = cur.to_string();
    // "Connection refused (os error 111)" reads better without the errno.
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Connects to the admin API with the user's certificate.
pub async fn connect(cfg: &SiagaConfig) -> Result<AdminClient<Channel>, CliError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| CliError::Message(format!("{}: {}", p.display(), root_cause(&e))))
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cfg.tls.ca)?))
        .identity(Identity::from_pem(
            read(&cfg.tls.cert)?,
            read(&cfg.tls.key)?,
        ));
    if let Some(name) = &cfg.server_name {
        tls = tls.domain_name(name.clone());
    }
    let url = &cfg.collector;
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::Message(format!("collector URL {url:?}: {e}")))?
        .tls_config(tls)
        .map_err(|e| CliError::Message(format!("TLS setup: {}", root_cause(&e))))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60));
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::Message(format!(
            "cannot reach collector at {url}: {}",
            root_cause(&e)
        ))
    })?;
    Ok(AdminClient::new(channel)
        .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(siaga_proto::MAX_MESSAGE_BYTES))
}

/// A gRPC status as one line.
pub fn status_error(url: &str, s: tonic::Status) -> CliError {
    let msg = match s.code() {
        tonic::Code::Unavailable => {
            let cause = std::error::Error::source(&s)
                .map(root_cause)
                .unwrap_or_else(|| s.message().to_string());
            format!("cannot reach collector at {url}: {cause}")
        }
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            format!("refused by the collector: {}", s.message())
        }
        _ => format!("collector: {}", s.message()),
    };
    CliError::Message(msg)
}

fn ts_or_null(us: i64) -> Value {
    if us <= 0 {
        Value::Null
    } else {
        json!(rfc3339(us))
    }
}

/// `siaga agents --json` objects.
pub fn agents_json(agents: &[v1::AgentInfo]) -> Value {
    Value::Array(
        agents
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "opd": a.opd, "version": a.version, "connected": a.connected,
                    "last_seen": ts_or_null(a.last_seen_us), "spool_depth": a.spool_depth,
                    "dropped": a.dropped, "refused": a.refused, "cpu_pct": a.cpu_pct,
                    "mem_used_pct": a.mem_used_pct, "disk_used_pct": a.disk_used_pct, "hostname": a.hostname,
                })
            })
            .collect(),
    )
}

/// `siaga devices --json` objects.
pub fn devices_json(devices: &[v1::DeviceInfo]) -> Value {
    Value::Array(
        devices
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "opd": d.opd, "kind": d.kind, "address": d.address, "state": d.state,
                    "last_sample_at": ts_or_null(d.last_sample_at_us), "rtt_ms": d.rtt_ms,
                    "loss_pct": d.loss_pct, "jitter_ms": d.jitter_ms,
                })
            })
            .collect(),
    )
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn ago(us: i64) -> String {
    if us <= 0 {
        return "never".into();
    }
    let secs = (chrono::Utc::now().timestamp_micros() - us).max(0) / 1_000_000;
    let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    format!("{} ago", humantime::format_duration(d))
}

/// Human table of agents.
pub fn agents_table(agents: &[v1::AgentInfo]) -> String {
    let mut t = table(&[
        "agent",
        "opd",
        "version",
        "connected",
        "last seen",
        "spool",
        "dropped",
        "refused",
        "cpu %",
        "mem %",
        "disk %",
        "host",
    ]);
    for a in agents {
        t.add_row(vec![
            a.id.clone(),
            a.opd.clone(),
            a.version.clone(),
            if a.connected {
                "yes".into()
            } else {
                "no".into()
            },
            ago(a.last_seen_us),
            a.spool_depth.to_string(),
            a.dropped.to_string(),
            a.refused.to_string(),
            format!("{:.1}", a.cpu_pct),
            format!("{:.1}", a.mem_used_pct),
            format!("{:.1}", a.disk_used_pct),
            a.hostname.clone(),
        ]);
    }
    t.to_string()
}

/// Human table of devices.
pub fn devices_table(devices: &[v1::DeviceInfo]) -> String {
    let mut t = table(&[
        "device",
        "opd",
        "kind",
        "address",
        "state",
        "last sample",
        "rtt ms",
        "loss %",
        "jitter ms",
    ]);
    for d in devices {
        t.add_row(vec![
            d.id.clone(),
            d.opd.clone(),
            d.kind.clone(),
            d.address.clone(),
            d.state.clone(),
            ago(d.last_sample_at_us),
            num(d.rtt_ms, 2),
            num(d.loss_pct, 1),
            num(d.jitter_ms, 2),
        ]);
    }
    t.to_string()
}

/// Human table of history samples (already JSON objects).
pub fn history_table(samples: &[Value]) -> String {
    let mut t = table(&[
        "time",
        "kind",
        "sent",
        "recv",
        "loss %",
        "rtt avg ms",
        "rtt max ms",
        "jitter ms",
        "detail",
    ]);
    let f = |v: &Value, k: &str, d: usize| {
        v.get(k)
            .and_then(Value::as_f64)
            .map_or("-".into(), |x| format!("{x:.d$}"))
    };
    let s = |v: &Value, k: &str| {
        v.get(k).map_or(String::new(), |x| {
            x.as_str().map_or(x.to_string(), str::to_string)
        })
    };
    for v in samples {
        let kind = s(v, "kind");
        let detail = match kind.as_str() {
            "snmp" => format!("{} {}", s(v, "status"), s(v, "error")),
            "event" => format!("{} {} {}", s(v, "event"), s(v, "link"), s(v, "detail")),
            _ => s(v, "error"),
        };
        t.add_row(vec![
            s(v, "ts"),
            kind,
            s(v, "sent"),
            s(v, "received"),
            f(v, "loss_pct", 1),
            f(v, "rtt_avg_ms", 2),
            f(v, "rtt_max_ms", 2),
            f(v, "jitter_ms", 2),
            detail.trim().to_string(),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_has_exactly_the_documented_fields() {
        let a = agents_json(&[v1::AgentInfo {
            id: "x".into(),
            last_seen_us: 0,
            ..Default::default()
        }]);
        let mut keys: Vec<&String> = a[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "connected",
                "cpu_pct",
                "disk_used_pct",
                "dropped",
                "hostname",
                "id",
                "last_seen",
                "mem_used_pct",
                "opd",
                "refused",
                "spool_depth",
                "version"
            ]
        );
        assert!(a[0]["last_seen"].is_null());
        let d = devices_json(&[v1::DeviceInfo {
            id: "d".into(),
            rtt_ms: Some(1.5),
            last_sample_at_us: 1_700_000_000_000_000,
            ..Default::default()
        }]);
        let mut keys: Vec<&String> = d[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "address",
                "id",
                "jitter_ms",
                "kind",
                "last_sample_at",
                "loss_pct",
                "opd",
                "rtt_ms",
                "state"
            ]
        );
        assert_eq!(d[0]["rtt_ms"], json!(1.5));
        assert!(d[0]["loss_pct"].is_null());
        assert_eq!(d[0]["last_sample_at"], json!("2023-11-14T22:13:20.000Z"));
    }
}
