//! `agent.toml`: what the agent is, where it sends, where it keeps its spool.
//!
//! Relative paths in the file are relative to the directory of the file, so
//! an enrolment bundle (`agent.toml`, `ca.pem`, `agent.pem`, `agent.key`)
//! can be moved as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The agent's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Agent id, as in the agent's certificate (`siaga://agent/<opd>/<id>`).
    pub id: String,
    /// The OPD this agent speaks for.
    pub opd: String,
    /// The collectors' uplink URLs, e.g. `https://127.0.0.1:7443`: one (a
    /// string) or several (a list). The agent streams to one at a time and
    /// fails over to the next in the list when it loses the stream.
    #[serde(deserialize_with = "one_or_many", serialize_with = "one_or_many_out")]
    pub collector: Vec<String>,
    /// TLS name to verify on every collector's certificate (default: the
    /// host of each collector's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Directory of the spool and the cached inventory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Probe cycle used until the collector's inventory names one.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Address of the Prometheus endpoint (off when absent). Port 0 picks a
    /// free port; the bound address is written to `<data_dir>/metrics.addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Allow `metrics_listen` on an address other than loopback. Off by
    /// default: the endpoint has no authentication, so Prometheus scrapes it
    /// on this host (or through a tunnel) unless the operator says otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_public: bool,
    /// Address of the SNMP trap receiver (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trap_listen: Option<SocketAddr>,
    /// Certificates for mutual TLS with the collector.
    pub tls: TlsConfig,
    /// Bounds of the local spool.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Bounds of SNMP polling.
    #[serde(default)]
    pub snmp: SnmpConfig,
}

/// Bounds of what SNMP polling takes from one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnmpConfig {
    /// Interfaces polled per device; a device with more has the rest
    /// counted (`siaga device` shows how many), not polled.
    pub max_interfaces: usize,
}

impl Default for SnmpConfig {
    fn default() -> Self {
        SnmpConfig {
            max_interfaces: crate::probe::snmp::DEFAULT_MAX_INTERFACES,
        }
    }
}

/// Files for mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The collector's CA certificate (PEM): the only CA the agent trusts.
    pub ca: PathBuf,
    /// The agent's certificate (PEM), issued by the collector's CA.
    pub cert: PathBuf,
    /// The agent's private key (PEM); keep it mode 0600.
    pub key: PathBuf,
}

/// Bounds of the spool: beyond either, the oldest samples are dropped and
/// counted (the count reaches the collector in every Hello and Heartbeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Largest total size of the unacknowledged samples, in bytes.
    pub max_bytes: u64,
    /// Oldest age of an unacknowledged sample.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// The most interfaces per device that may be configured: a poll of that
/// many still fits in the agent's memory and a sample.
const MAX_INTERFACES_LIMIT: usize = 65_536;
/// Smallest `spool.max_bytes`: the spool file's own structure takes about
/// 72 KiB and the file grows by doubling.
pub const MIN_SPOOL_BYTES: u64 = 256 * 1024;

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca: PathBuf::from("ca.pem"),
            cert: PathBuf::from("agent.pem"),
            key: PathBuf::from("agent.key"),
        }
    }
}

impl Default for AgentConfig {
    /// The example configuration: an agent of OPD `dinkes` talking to a
    /// collector on this host.
    fn default() -> Self {
        AgentConfig {
            id: "dinkes-agent".into(),
            opd: "dinkes".into(),
            collector: vec!["https://127.0.0.1:7443".into()],
            server_name: None,
            data_dir: default_data_dir(),
            interval: default_interval(),
            metrics_listen: None,
            metrics_public: false,
            trap_listen: None,
            tls: TlsConfig::default(),
            spool: SpoolConfig::default(),
            snmp: SnmpConfig::default(),
        }
    }
}

/// A commented example of `agent.toml` (printed by `siaga-agent print-config`).
pub const EXAMPLE: &str = r#"# siaga-agent configuration. Relative paths are relative to this file.

# Agent id, as in the agent's certificate (siaga://agent/<opd>/<id>).
id = "dinkes-agent"
# The OPD this agent speaks for.
opd = "dinkes"
# The collector's uplink URL, or a list of collectors that share one CA
# (copies of one collector's directory, each with its own `listen`):
#   collector = ["https://10.0.0.1:7443", "https://10.0.0.2:7443"]
# With a list the agent streams to one collector at a time. When it loses
# the stream it tries the next (wrapping around, with the usual backoff)
# and replays its unacknowledged samples there. It stays on a collector
# that works: no return to the first one by itself.
collector = "https://127.0.0.1:7443"
# Optional: TLS name to verify on every collector's certificate
# (default: the host of each URL in `collector`).
# server_name = "localhost"
# Spool and cached inventory.
data_dir = "data"
# Probe cycle until the collector's inventory names one.
interval = "10s"
# Optional Prometheus endpoint; port 0 picks a free port and the bound
# address is written to <data_dir>/metrics.addr.
# metrics_listen = "127.0.0.1:9465"
# The endpoint has no authentication: an address other than loopback is
# refused unless this is set (then firewall the port to Prometheus).
# metrics_public = false
# Optional SNMP trap receiver.
# trap_listen = "0.0.0.0:162"

[tls]
# The collector's CA: the only CA this agent trusts.
ca = "ca.pem"
# This agent's certificate and private key (mode 0600), issued by the collector.
cert = "agent.pem"
key = "agent.key"

[spool]
# Samples are written here before they are sent and deleted when the
# collector acknowledges them. Beyond either bound the oldest are dropped
# and counted; the count is reported to the collector. max_bytes bounds the
# spool file itself (at least 262144); its records get at most half of it.
max_bytes = 268435456
max_age = "7d"

[snmp]
# Interfaces polled per device; a device with more has the rest counted
# (shown by `siaga device`), not polled.
max_interfaces = 4096
"#;

impl AgentConfig {
    /// Reads and checks `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        for p in [
            &mut cfg.data_dir,
            &mut cfg.tls.ca,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses and checks `text`; `path` only names the file in errors.
    /// Paths are left as written.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|e| {
            let (line, key) = locate(text, e.span(), e.message());
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                key,
                message: first_line(e.message()),
            }
        })?;
        cfg.check(path, text)?;
        Ok(cfg)
    }

    fn check(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of_key(text, key),
            key: key.to_string(),
            message,
        };
        for (key, value) in [("id", &self.id), ("opd", &self.opd)] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty".into()));
            }
        }
        if self.collector.is_empty() {
            return Err(invalid(
                "collector",
                "must name at least one collector URL".into(),
            ));
        }
        for (i, url) in self.collector.iter().enumerate() {
            let at_url = |message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: line_of_item(text, "collector", url),
                key: "collector".into(),
                message,
            };
            collector_host(url).map_err(at_url)?;
            if self.collector[..i].contains(url) {
                return Err(at_url(format!("{url:?} is listed twice")));
            }
        }
        if let Some(name) = &self.server_name
            && name.trim().is_empty()
        {
            return Err(invalid("server_name", "must not be empty".into()));
        }
        if let Some(addr) = self.metrics_listen
            && !addr.ip().is_loopback()
            && !self.metrics_public
        {
            return Err(invalid(
                "metrics_listen",
                format!(
                    "{addr} is not a loopback address; the endpoint has no authentication: \
                     listen on 127.0.0.1 and let Prometheus scrape this host, \
                     or set metrics_public = true and firewall the port"
                ),
            ));
        }
        if self.interval < Duration::from_millis(100) {
            return Err(invalid("interval", "must be at least 100ms".into()));
        }
        if self.spool.max_bytes < MIN_SPOOL_BYTES {
            return Err(invalid(
                "spool.max_bytes",
                format!(
                    "must be at least {MIN_SPOOL_BYTES} (the spool file's own structure takes about 72 KiB)"
                ),
            ));
        }
        if self.spool.max_age < Duration::from_secs(1) {
            return Err(invalid("spool.max_age", "must be at least 1s".into()));
        }
        if !(1..=MAX_INTERFACES_LIMIT).contains(&self.snmp.max_interfaces) {
            return Err(invalid(
                "snmp.max_interfaces",
                format!("must be between 1 and {MAX_INTERFACES_LIMIT}"),
            ));
        }
        Ok(())
    }

    /// The TLS name the certificate of the collector at `url` must carry:
    /// `server_name` when set (the same for every collector in the list),
    /// else the host of `url`.
    pub fn tls_name(&self, url: &str) -> Result<String, String> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => collector_host(url),
        }
    }

    /// Checks that the TLS files are readable PEM (what `validate` adds to
    /// parsing). Call after [`AgentConfig::load`].
    ///
    /// Then what the collector would refuse at the handshake, said here
    /// instead: the key belongs to the certificate, the certificate is valid
    /// now, was issued by `tls.ca` and names this agent's `opd` and `id`.
    ///
    /// A certificate not issued by `tls.ca` is given back in `Ok` rather
    /// than refused: either file may be the stray one, and only a
    /// connection to the collector tells which.
    pub fn check_files(&self, config_path: &Path) -> Result<Option<ConfigError>, ConfigError> {
        let config_text = std::fs::read_to_string(config_path).unwrap_or_default();
        let file_of = |key: &str| match key {
            "tls.ca" => &self.tls.ca,
            "tls.cert" => &self.tls.cert,
            _ => &self.tls.key,
        };
        let err = |key: &str, message: String| ConfigError::File {
            config: config_path.to_path_buf(),
            line: line_of_key(&config_text, key),
            key: key.into(),
            file: file_of(key).clone(),
            message,
        };
        let mut pem = Vec::new();
        for (key, marker) in [
            ("tls.ca", "CERTIFICATE"),
            ("tls.cert", "CERTIFICATE"),
            ("tls.key", "PRIVATE KEY"),
        ] {
            let text =
                std::fs::read_to_string(file_of(key)).map_err(|e| err(key, e.to_string()))?;
            if !text.contains("-----BEGIN") || !text.contains(marker) {
                return Err(err(key, format!("not a PEM file with a {marker}")));
            }
            pem.push(text);
        }
        if let [ca, cert, key] = pem.as_slice() {
            let checked = crate::identity::check(
                ca.as_bytes(),
                cert.as_bytes(),
                key.as_bytes(),
                &self.opd,
                &self.id,
                rustls::pki_types::UnixTime::now(),
            );
            match checked {
                Ok(()) => {}
                Err(p) if p.undecided => return Ok(Some(err(p.key, p.message))),
                Err(p) => return Err(err(p.key, p.message)),
            }
        }
        Ok(None)
    }
}

/// Host part of a collector URL, checked to be an `https://host:port` URL.
pub fn collector_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(host.to_string())
}

/// `collector = "url"` or `collector = ["url", ...]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Urls;
    impl<'de> serde::de::Visitor<'de> for Urls {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a URL or a list of URLs")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut urls = Vec::new();
            while let Some(url) = seq.next_element::<String>()? {
                urls.push(url);
            }
            Ok(urls)
        }
    }
    d.deserialize_any(Urls)
}

/// One URL is written as a string, as it is usually typed; several as a list.
fn one_or_many_out<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    match urls {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

/// Finds the 1-based line and the dotted key of a toml error.
fn locate(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> (usize, String) {
    let start = span.map_or(0, |s| s.start).min(text.len());
    let end_of_span = text.get(start..).unwrap_or_default();
    let line = text.get(..start).unwrap_or_default().matches('\n').count() + 1;
    let table = table_at(text, line);
    let named = between_backticks(message, "unknown field `")
        .or_else(|| between_backticks(message, "missing field `"));
    let key = match named {
        Some(k) => k,
        None => {
            let line_text = text.lines().nth(line - 1).unwrap_or_default();
            match line_text.split_once('=') {
                Some((k, _)) if !line_text.trim_start().starts_with('[') => {
                    k.trim().trim_matches('"').to_string()
                }
                // Inside a list written over several lines: the key that
                // opened it.
                None if !line_text.trim_start().starts_with('[') => text
                    .lines()
                    .take(line - 1)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .take_while(|l| !l.trim_start().starts_with('['))
                    .find_map(|l| l.split_once('='))
                    .map(|(k, _)| k.trim().trim_matches('"').to_string())
                    .unwrap_or_default(),
                _ => end_of_span
                    .split(|c: char| c.is_whitespace() || c == '=')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        }
    };
    // A missing field is reported with the span of its table; if that span
    // starts at the table's header the header line is what the user edits.
    let key = if table.is_empty() || key.starts_with(&format!("{table}.")) {
        key
    } else {
        format!("{table}.{key}")
    };
    (line, key)
}

fn between_backticks(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_string())
}

/// Name of the `[table]` in force at 1-based `line` ("" for the top level).
fn table_at(text: &str, line: usize) -> String {
    let mut table = String::new();
    for l in text.lines().take(line) {
        let t = l.trim();
        if t.starts_with('[') {
            table = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
        }
    }
    table
}

/// 1-based line on which dotted `key` is set, or 0 when it is not in the file.
fn line_of_key(text: &str, key: &str) -> usize {
    let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            current = table_at(t, 1);
            continue;
        }
        if current == table
            && let Some((k, _)) = t.split_once('=')
            && k.trim().trim_matches('"') == leaf
        {
            return i + 1;
        }
    }
    0
}

/// 1-based line of `value` (a string item of the list set by top-level
/// `key`), or the key's line when the value is not found on its own.
fn line_of_item(text: &str, key: &str, value: &str) -> usize {
    let start = line_of_key(text, key);
    if start == 0 {
        return 0;
    }
    let quoted = [format!("\"{value}\""), format!("'{value}'")];
    text.lines()
        .enumerate()
        .skip(start - 1)
        .take_while(|(i, l)| *i + 1 == start || !l.trim_start().starts_with('['))
        .find(|(_, l)| quoted.iter().any(|q| l.contains(q.as_str())))
        .map_or(start, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("agent.toml"), text)
    }

    #[test]
    fn example_parses_to_default() {
        let cfg = parse(EXAMPLE).expect("example parses");
        assert_eq!(cfg, AgentConfig::default());
    }

    const GOOD: &str = "id = \"a\"\nopd = \"dinkes\"\ncollector = \"https://127.0.0.1:7443\"\n[tls]\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n[spool]\nmax_bytes = 1000000\nmax_age = \"2h\"\n";

    #[test]
    fn good_file_parses() {
        let cfg = parse(GOOD).expect("parses");
        assert_eq!(cfg.spool.max_age, Duration::from_secs(7200));
        assert_eq!(cfg.interval, Duration::from_secs(10));
        assert_eq!(cfg.collector, ["https://127.0.0.1:7443"]);
        assert_eq!(cfg.tls_name(&cfg.collector[0]).as_deref(), Ok("127.0.0.1"));
    }

    // (file text, expected "file:line: key" prefix)
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\nbogus = 1\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:4: bogus: unknown field"; "unknown top-level key")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n[spool]\nmax_age = \"forever\"\n",
        "agent.toml:9: spool.max_age:"; "bad duration")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n[spool]\nmax_bytes = \"big\"\n",
        "agent.toml:9: spool.max_bytes:"; "string for integer")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\ncrl = \"d\"\n",
        "agent.toml:8: tls.crl: unknown field"; "unknown key in table")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\n",
        "agent.toml:4: tls.key: missing field"; "missing key in table")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"http://h:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:3: collector: \"http://h:1\" must start with https://"; "plain http")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\nmetrics_listen = \"0.0.0.0:9465\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:4: metrics_listen: 0.0.0.0:9465 is not a loopback address"; "metrics on every address")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\ninterval = \"0s\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:4: interval: must be at least 100ms"; "zero interval")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = [\n  \"https://h:1\",\n  \"http://h2:1\",\n]\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:5: collector: \"http://h2:1\" must start with https://"; "second of a list is plain http")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = [\"https://h:1\", \"https://:2\"]\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:3: collector: \"https://:2\" has no host"; "list on one line, a url without host")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = []\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:3: collector: must name at least one collector URL"; "empty list")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = [\n\"https://h:1\",\n\"https://h:1\"]\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:4: collector: \"https://h:1\" is listed twice"; "a url twice")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = [\n\"https://h:1\",\n7443]\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:5: collector:"; "a number in the list")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = 7443\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:3: collector:"; "a number for the url")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\ninterval = 5\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
        "agent.toml:4: interval:"; "number for duration")]
    #[test_case(
        "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n[tls\n",
        "agent.toml:4:"; "broken toml")]
    fn errors_name_file_line_and_key(text: &str, expected: &str) {
        let err = parse(text).expect_err("must be rejected").to_string();
        assert!(
            err.starts_with(expected),
            "error {err:?} does not start with {expected:?}"
        );
    }

    #[test]
    fn collector_is_one_url_or_a_list() {
        let tls = "[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n";
        let one = parse(&format!(
            "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n{tls}"
        ))
        .expect("one");
        assert_eq!(one.collector, ["https://h:1"]);
        let many = parse(&format!(
            "id = \"a\"\nopd = \"x\"\ncollector = [\"https://a.example:7443\", \"https://[::1]:7443\"]\n{tls}"
        ))
        .expect("list");
        assert_eq!(
            many.collector,
            ["https://a.example:7443", "https://[::1]:7443"]
        );
        // Without server_name each collector's own host is verified; with
        // it, that one name on every collector.
        let names = |c: &AgentConfig| -> Vec<String> {
            c.collector
                .iter()
                .map(|u| c.tls_name(u).expect("name"))
                .collect()
        };
        assert_eq!(names(&many), ["a.example", "::1"]);
        let named = AgentConfig {
            server_name: Some("localhost".into()),
            ..many.clone()
        };
        assert_eq!(names(&named), ["localhost", "localhost"]);
        // Written back as it is usually typed: one URL as a string.
        let text = toml::to_string(&one).expect("serialize");
        assert!(text.contains("collector = \"https://h:1\""), "{text}");
        let back: AgentConfig =
            toml::from_str(&toml::to_string(&many).expect("serialize")).expect("round trip");
        assert_eq!(back, many);
    }

    #[test]
    fn metrics_beyond_loopback_only_when_asked_for() {
        let base = "id = \"a\"\nopd = \"x\"\ncollector = \"https://h:1\"\n";
        let tls = "[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n";
        for listen in ["127.0.0.1:0", "[::1]:9465"] {
            let cfg = parse(&format!("{base}metrics_listen = \"{listen}\"\n{tls}")).expect(listen);
            assert_eq!(cfg.metrics_listen, Some(listen.parse().expect("addr")));
        }
        let cfg = parse(&format!(
            "{base}metrics_listen = \"0.0.0.0:9465\"\nmetrics_public = true\n{tls}"
        ))
        .expect("public when asked for");
        assert!(cfg.metrics_public);
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("bundle");
        std::fs::create_dir(&sub).expect("mkdir");
        let path = sub.join("agent.toml");
        std::fs::write(
            &path,
            GOOD.replace("ca = \"ca.pem\"", "ca = \"/etc/ca.pem\""),
        )
        .expect("write");
        let cfg = AgentConfig::load(&path).expect("load");
        assert_eq!(cfg.data_dir, sub.join("data"));
        assert_eq!(cfg.tls.cert, sub.join("agent.pem"));
        assert_eq!(cfg.tls.ca, PathBuf::from("/etc/ca.pem"));
        let err = cfg
            .check_files(&path)
            .expect_err("files missing")
            .to_string();
        assert!(err.contains("tls.ca"), "{err}");
    }
}
