//! `collector.toml`: where the collector listens, keeps its data and finds its
//! certificates, inventory, SOP and users.
//!
//! Relative paths are resolved against the directory of the file itself, so a
//! directory made by `siaga-collector init` can be moved as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::role::Role;
pub use siaga_proto::config::{line_of_top_key, locate, parse_toml, resolve};

/// The collector's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address the gRPC server (agent uplink and admin API) listens on. Port 0
    /// picks a free port; the one bound is written to `<data_dir>/collector.addr`.
    pub listen: SocketAddr,
    /// Directory of the embedded store, pid and address files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The inventory file (OPDs, devices, links).
    #[serde(default = "default_inventory")]
    pub inventory: PathBuf,
    /// The SOP file (the disposition chain).
    #[serde(default = "default_sop")]
    pub sop: PathBuf,
    /// Directory with one `NAME.toml` per enrolled user (name and roles),
    /// written by `siaga-collector enroll user`.
    #[serde(default = "default_users")]
    pub users: PathBuf,
    /// Optional address of the Prometheus metrics endpoint (`/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Allow `metrics_listen` on an address other than loopback. Off by
    /// default: the endpoint has no authentication, so Prometheus scrapes it
    /// on this host (or through a tunnel) unless the operator says otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_public: bool,
    /// The Ed25519 key that signs the heads of the SOP audit trails (made by
    /// `init`, or on the first start). Kept apart from the data directory:
    /// whoever can write the store cannot sign a trail of their own.
    #[serde(default = "default_audit_key")]
    pub audit_key: PathBuf,
    /// Certificates of the collector and its CA.
    #[serde(default)]
    pub tls: TlsFiles,
    /// How long data is kept.
    #[serde(default)]
    pub retention: Retention,
    /// Business calendar on which the SOP's time standards count.
    #[serde(default)]
    pub calendar: crate::sop::CalendarConfig,
    /// Health rules: thresholds, hysteresis, flap detection, agent silence.
    #[serde(default)]
    pub health: crate::health::HealthRules,
    /// Where ticket events are sent (webhooks, e-mail).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// Measurements on command (before/after the work on a ticket).
    #[serde(default)]
    pub measure: MeasureConfig,
    /// Maintenance windows.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// What the collector accepts from agents.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Tickets entered from letters.
    #[serde(default)]
    pub tickets: TicketsConfig,
    /// The web console (off unless `[web] listen` is set).
    #[serde(default, skip_serializing_if = "WebConfig::is_off")]
    pub web: WebConfig,
    /// Where samples, rollups and agents' records live: the embedded store
    /// in `data_dir` unless `[store] url` names a PostgreSQL database.
    #[serde(default, skip_serializing_if = "StoreConfig::is_embedded")]
    pub store: StoreConfig,
}

/// The `[store]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]`: keep samples,
    /// their per-minute rollups, the newest readings and the agents'
    /// records in PostgreSQL. Absent: the embedded store
    /// (`<data_dir>/collector.redb`). Tickets, SOP trails, measurements
    /// and reports stay in `<data_dir>/tickets.redb` either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl StoreConfig {
    /// No `[store] url`: the embedded store.
    pub fn is_embedded(&self) -> bool {
        self.url.is_none()
    }

    /// Why `url` is refused (the message never repeats it: it may hold a
    /// password).
    pub fn check(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        use crate::store::pg_connect::URL_FORM;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!("not a PostgreSQL URL: write it as {URL_FORM}"));
        }
        // Without the "store (PostgreSQL): " of the error's own message:
        // the caller names file, line and key.
        let message = |e: crate::error::StoreError| match e {
            crate::error::StoreError::PostgresUrl(m) => m,
            other => {
                let m = other.to_string();
                m.strip_prefix("store (PostgreSQL): ")
                    .unwrap_or(&m)
                    .to_string()
            }
        };
        let cfg = crate::store::pg_config(url).map_err(message)?;
        if cfg.get_hosts().is_empty() {
            return Err(format!("names no host: write it as {URL_FORM}"));
        }
        // Reads the CA file: a missing one is found here, not at the first
        // connection.
        crate::store::PgTls::from_url(url).map_err(message)?;
        Ok(())
    }
}

/// The `[web]` section: the web console's own HTTPS listener, beside the
/// gRPC port. Off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// `ADDR:PORT` of the HTTPS listener. Port 0 picks a free port; the one
    /// bound is written to `<data_dir>/web.addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Certificate chain (PEM) the console shows browsers; default the
    /// collector's own server certificate (`[tls] cert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM); default `[tls] key`. Given together with `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR networks, e.g. "127.0.0.1") whose
    /// `X-Forwarded-For` is believed: a request from one of them is counted
    /// (login lockout, audit) under the client address the proxy names.
    /// Empty (the default): the header is ignored, the peer is the client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// The console's address as people's browsers reach it (e.g.
    /// "https://siaga.diskominfo.example:8443", the reverse proxy's when
    /// there is one): notifications link to a ticket's page under it.
    /// Unset: messages carry no link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl WebConfig {
    fn is_off(&self) -> bool {
        *self == WebConfig::default()
    }

    /// `trusted_proxies` as networks (an address is a network of one);
    /// the first entry that is neither, as `Err`.
    pub fn proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| s.to_string())
            })
            .collect()
    }

    /// The certificate and key files the console serves with.
    pub fn cert_and_key<'a>(&'a self, tls: &'a TlsFiles) -> (&'a Path, &'a Path) {
        (
            self.cert.as_deref().unwrap_or(&tls.cert),
            self.key.as_deref().unwrap_or(&tls.key),
        )
    }
}

/// The `[tickets]` section: what a ticket entered from a letter must hold to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketsConfig {
    /// A letter dated longer ago than this is refused (`siaga ticket new`):
    /// an old letter is filed again with a new date, not back-dated.
    #[serde(with = "humantime_serde")]
    pub max_letter_age: std::time::Duration,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        Self {
            max_letter_age: std::time::Duration::from_secs(365 * 86_400),
        }
    }
}

/// The `[maintenance]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Longest window `siaga maintenance add` may create (one-off or each
    /// weekly occurrence); longer ones are refused.
    #[serde(with = "humantime_serde")]
    pub max_window: std::time::Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            max_window: std::time::Duration::from_secs(7 * 86_400),
        }
    }
}

/// The `[ingest]` section: what the collector accepts from agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A sample stamped later than the collector's clock plus this is
    /// refused and counted: an agent's clock running ahead must not make a
    /// reading look newer than every real one.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: std::time::Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_clock_skew: std::time::Duration::from_secs(300),
        }
    }
}

impl IngestConfig {
    /// Values the types allow but that make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_clock_skew < std::time::Duration::from_secs(1) {
            return Err("ingest.max_clock_skew: at least 1s (e.g. \"5m\")".into());
        }
        if self.max_clock_skew > std::time::Duration::from_secs(86_400) {
            return Err("ingest.max_clock_skew: at most a day".into());
        }
        Ok(())
    }

    /// The tolerance in microseconds.
    pub fn max_clock_skew_us(&self) -> i64 {
        i64::try_from(self.max_clock_skew.as_micros()).unwrap_or(i64::MAX)
    }
}

/// The `[measure]` section: measurements on command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeasureConfig {
    /// How long a queued measurement (`--queue`, its agent offline) waits
    /// for the agent to reconnect before it expires.
    #[serde(with = "humantime_serde")]
    pub queue_expiry: std::time::Duration,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        Self {
            queue_expiry: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

impl MeasureConfig {
    /// Values the types allow but that make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.queue_expiry.is_zero() {
            return Err("measure.queue_expiry: must be more than 0 (e.g. \"24h\")".into());
        }
        if self.queue_expiry > std::time::Duration::from_secs(366 * 86_400) {
            return Err("measure.queue_expiry: at most a year".into());
        }
        Ok(())
    }
}

/// Certificate and key files of the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate (PEM): client certificates must chain to it.
    pub ca: PathBuf,
    /// CA private key (PEM), used by `enroll` only.
    pub ca_key: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// Lifetime in days of the agent certificates `enroll agent` and `renew`
    /// issue (1 to 3650).
    #[serde(default = "default_agent_cert_days", deserialize_with = "cert_days")]
    pub agent_cert_days: u32,
    /// Lifetime in days of the user certificates `enroll user` and `renew`
    /// issue (1 to 3650).
    #[serde(default = "default_user_cert_days", deserialize_with = "cert_days")]
    pub user_cert_days: u32,
}

fn default_agent_cert_days() -> u32 {
    730
}

fn default_user_cert_days() -> u32 {
    365
}

/// Certificate lifetimes are at least a day and at most ten years.
fn cert_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let days = u32::deserialize(d)?;
    if (1..=3650).contains(&days) {
        Ok(days)
    } else {
        Err(serde::de::Error::custom(format!(
            "{days} days: a certificate lifetime is 1 to 3650 days"
        )))
    }
}

impl Default for TlsFiles {
    fn default() -> Self {
        Self {
            ca: "ca.pem".into(),
            ca_key: "ca.key".into(),
            cert: "server.pem".into(),
            key: "server.key".into(),
            agent_cert_days: default_agent_cert_days(),
            user_cert_days: default_user_cert_days(),
        }
    }
}

/// Retention of stored data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Raw samples older than this many days are pruned (0 = keep forever).
    pub raw_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { raw_days: 30 }
    }
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_inventory() -> PathBuf {
    "inventory.toml".into()
}
fn default_sop() -> PathBuf {
    "sop.toml".into()
}
fn default_audit_key() -> PathBuf {
    "audit.key".into()
}
fn default_users() -> PathBuf {
    "users".into()
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: default_data_dir(),
            inventory: default_inventory(),
            sop: default_sop(),
            users: default_users(),
            metrics_listen: None,
            metrics_public: false,
            audit_key: default_audit_key(),
            tls: TlsFiles::default(),
            retention: Retention::default(),
            calendar: crate::sop::CalendarConfig::default(),
            health: crate::health::HealthRules::default(),
            notify: crate::notify::NotifyConfig::default(),
            measure: MeasureConfig::default(),
            maintenance: MaintenanceConfig::default(),
            ingest: IngestConfig::default(),
            tickets: TicketsConfig::default(),
            web: WebConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

impl CollectorConfig {
    /// Reads and parses `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        let mut cfg: CollectorConfig = parse_toml(path, &text)?;
        cfg.check(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve(base);
        Ok(cfg)
    }

    /// What the types allow but the collector refuses, with file, line and key.
    pub fn check(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let max = self.maintenance.max_window;
        if max.is_zero() || max > std::time::Duration::from_secs(366 * 86_400) {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("max_window"))
                .map_or(1, |i| i + 1);
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                key: "maintenance.max_window".into(),
                message: "must be more than 0 and at most a year (e.g. \"7d\")".into(),
            });
        }
        let age = self.tickets.max_letter_age;
        if age < std::time::Duration::from_secs(86_400)
            || age > std::time::Duration::from_secs(10 * 366 * 86_400)
        {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("max_letter_age"))
                .map_or(1, |i| i + 1);
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                key: "tickets.max_letter_age".into(),
                message: "must be at least a day and at most ten years (e.g. \"365d\")".into(),
            });
        }
        if let Err(e) = crate::sop::Calendar::new(&self.calendar) {
            // "calendar.KEY: message": the line is the key's in the file.
            let text_of_error = e.to_string();
            let (key, message) = text_of_error
                .split_once(": ")
                .unwrap_or(("calendar", text_of_error.as_str()));
            let leaf = key.rsplit('.').next().unwrap_or(key);
            let line = text
                .lines()
                .position(|l| {
                    l.trim_start()
                        .strip_prefix(leaf)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
                .or_else(|| text.lines().position(|l| l.trim() == "[calendar]"))
                .map_or(1, |i| i + 1);
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                key: key.to_string(),
                message: message.to_string(),
            });
        }
        if let Some(addr) = self.metrics_listen
            && !addr.ip().is_loopback()
            && !self.metrics_public
        {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line: line_of_top_key(text, "metrics_listen"),
                key: "metrics_listen".into(),
                message: format!(
                    "{addr} is not a loopback address; the endpoint has no authentication: \
                     listen on 127.0.0.1 and let Prometheus scrape this host, \
                     or set metrics_public = true and firewall the port"
                ),
            });
        }
        self.check_web(path, text)?;
        self.check_notify(path, text)?;
        self.check_health(path, text)?;
        if let Err(message) = self.store.check() {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line: line_in_section(text, "store", "url"),
                key: "store.url".into(),
                message,
            });
        }
        Ok(())
    }

    /// `[health]`: a rule that parses but cannot work, named by its file,
    /// line and key (`health.cpu.above`).
    fn check_health(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let Err(e) = self.health.validate() else {
            return Ok(());
        };
        let (key, message) = e.0.split_once(": ").unwrap_or(("health", e.0.as_str()));
        let (section, leaf) = key.rsplit_once('.').unwrap_or((key, ""));
        // `health.cpu.above` lives in [health.cpu]; `health.flap` is a table.
        let line = if text.contains(&format!("[{key}]")) {
            line_in_section(text, key, "\u{0}")
        } else {
            line_in_section(text, section, leaf)
        };
        Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.to_string(),
        })
    }

    /// `[notify]`: templates name known placeholders only; Telegram chats
    /// have a well-formed token, chat id and API URL (the token is never
    /// repeated in the message).
    fn check_notify(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let n = &self.notify;
        let invalid = |key: String, line: usize, message: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            line,
            key,
            message,
        };
        if let Err((key, message)) = n.templates.check() {
            // notify.templates.KIND.PART
            let (section, leaf) = key.rsplit_once('.').unwrap_or((key.as_str(), ""));
            let line = line_in_section(text, section, leaf);
            return Err(invalid(key.clone(), line, message));
        }
        for (i, w) in n.webhook.iter().enumerate() {
            if let Some(t) = &w.template
                && let Err(message) = crate::notify::template::check_webhook(t)
            {
                let line = line_in_array_table(text, "notify.webhook", i, "template");
                return Err(invalid("notify.webhook.template".into(), line, message));
            }
        }
        for (i, t) in n.telegram.iter().enumerate() {
            if let Err((leaf, message)) = t.check() {
                let line = line_in_array_table(text, "notify.telegram", i, leaf);
                return Err(invalid(format!("notify.telegram.{leaf}"), line, message));
            }
        }
        Ok(())
    }

    /// `[[notify.telegram]] roles` against the roles people can hold (the
    /// SOP file's `[[role]]` ids and `admin`): a misspelt role would match no
    /// event, and the chat would silently hear nothing. Checked where the SOP
    /// file is read too: by `validate` and at start.
    pub fn check_telegram_roles(&self, path: &Path, known: &[Role]) -> Result<(), ConfigError> {
        for (i, t) in self.notify.telegram.iter().enumerate() {
            if let Some(Err(e)) = t
                .roles
                .iter()
                .map(|r| Role::parse(r, known))
                .find(Result::is_err)
            {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                return Err(ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line: line_in_array_table(&text, "notify.telegram", i, "roles"),
                    key: "notify.telegram.roles".into(),
                    message: format!(
                        "{e}; correct it, or add the role to the SOP file as a [[role]]"
                    ),
                });
            }
        }
        Ok(())
    }

    /// `[web]`: cert and key go together; without `listen` they mean nothing.
    fn check_web(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let w = &self.web;
        let invalid = |key: &str, message: &str| {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line: line_in_section(text, "web", leaf),
                key: key.to_string(),
                message: message.to_string(),
            }
        };
        match (&w.cert, &w.key) {
            (Some(_), None) => {
                return Err(invalid(
                    "web.cert",
                    "given without web.key: set both (the certificate chain and its key), \
                     or neither to use [tls] cert and key",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "web.key",
                    "given without web.cert: set both (the certificate chain and its key), \
                     or neither to use [tls] cert and key",
                ));
            }
            _ => {}
        }
        if let Err(bad) = w.proxies() {
            return Err(invalid(
                "web.trusted_proxies",
                &format!(
                    "{bad:?} is neither an address nor a network: give the reverse proxy's \
                     address (\"127.0.0.1\") or network (\"10.20.0.0/24\")"
                ),
            ));
        }
        if let Some(u) = &w.public_url {
            let bad = |why: &str| {
                invalid(
                    "web.public_url",
                    &format!(
                        "{u:?}: {why}: give the console's address as browsers reach it \
                         (e.g. \"https://siaga.diskominfo.example:8443\")"
                    ),
                )
            };
            let url: reqwest::Url = u.parse().map_err(|e| bad(&format!("{e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("only http and https"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(bad("no query or fragment"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("no user name or password in it"));
            }
        }
        if w.listen.is_none()
            && (w.cert.is_some()
                || w.key.is_some()
                || !w.trusted_proxies.is_empty()
                || w.public_url.is_some())
        {
            return Err(invalid(
                "web.listen",
                "missing: the web console is off unless [web] has listen = \"ADDR:PORT\" \
                 (e.g. \"0.0.0.0:8443\")",
            ));
        }
        Ok(())
    }

    fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.data_dir,
            &mut self.inventory,
            &mut self.sop,
            &mut self.users,
            &mut self.audit_key,
            &mut self.tls.ca,
            &mut self.tls.ca_key,
            &mut self.tls.cert,
            &mut self.tls.key,
        ] {
            *p = resolve(base, p);
        }
        for p in [&mut self.web.cert, &mut self.web.key]
            .into_iter()
            .flatten()
        {
            *p = resolve(base, p);
        }
    }

    /// The commented `collector.toml` that `init` writes: [`Self::example`]
    /// with `[store] url` set when `store_url` is given.
    pub fn example_with_store(listen: SocketAddr, store_url: Option<&str>) -> String {
        const COMMENTED: &str =
            "# [store]\n# url = \"postgres://siaga:PASSWORD@127.0.0.1:5432/siaga\"\n";
        let text = Self::example(listen);
        match store_url {
            // `[store]` is the example's last section: uncommented, nothing
            // after it falls into it.
            Some(url) if text.ends_with(COMMENTED) => format!(
                "{}[store]\nurl = {}\n",
                &text[..text.len() - COMMENTED.len()],
                toml::Value::String(url.to_string())
            ),
            _ => text,
        }
    }

    /// The commented collector.toml `init` writes, listening on `listen`.
    pub fn example(listen: SocketAddr) -> String {
        format!(
            r#"# Siaga collector configuration.
# Relative paths are relative to the directory of this file.
# Check it with `siaga-collector validate --config collector.toml`.

# Address of the gRPC server: the agents' uplink and the admin API for `siaga`.
# Port 0 picks a free port; the bound address is written to <data_dir>/collector.addr.
listen = "{listen}"

# Embedded store (redb), pid file and address files.
data_dir = "data"

# OPDs, devices and links. Apply changes with `siaga-collector reload`.
inventory = "inventory.toml"

# The SOP disposition chain.
sop = "sop.toml"

# One NAME.toml per person enrolled with `siaga-collector enroll user`.
users = "users"

# Prometheus metrics at http://<metrics_listen>/metrics (optional). The
# endpoint has no authentication: an address other than loopback is refused
# unless metrics_public = true (then firewall the port to Prometheus).
# metrics_listen = "127.0.0.1:9464"
# metrics_public = false

# Signs the heads of the SOP audit trails (Ed25519; made by init or on the
# first start). Keep it out of the data directory and its backups.
audit_key = "audit.key"

[tls]
ca = "ca.pem"          # clients must present a certificate issued by this CA
ca_key = "ca.key"      # used by `enroll` only; keep it private
cert = "server.pem"
key = "server.key"
agent_cert_days = 730  # lifetime of agent certificates (`enroll agent`, `renew`)
user_cert_days = 365   # lifetime of user certificates (`enroll user`, `renew`)

[retention]
raw_days = 30          # raw samples older than this are pruned (0 = keep forever)

# Business calendar for the SOP's time standards: "1d" is one working day,
# "1h" one working hour; urgent tickets count calendar time instead.
[calendar]
working_days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
start = "07:30"
end = "16:00"
# The province's time, an IANA zone: "Asia/Jakarta" (WIB), "Asia/Makassar"
# (WITA) or "Asia/Jayapura" (WIT). Every time people read is shown in it.
time_zone = "Asia/Jakarta"
holidays = []          # e.g. ["2026-08-17", "2026-12-25"]

{health}
# Ticket events (opened, recovered, step changed) for the helpdesk.
[notify]
queue_capacity = 1024  # events waiting; beyond this new ones are dropped and counted
max_attempts = 24      # per event and receiver
retry_initial = "2s"   # doubling up to retry_max, with jitter
retry_max = "5m"
escalation_every = "1m"   # how often late SOP steps are looked for

# A JSON POST per event with an Idempotency-Key header (ticket:event:sequence).
# [[notify.webhook]]
# url = "https://helpdesk.example/siaga"
# timeout = "10s"

# E-mail, in Bahasa Indonesia unless language = "en".
# [notify.email]
# host = "127.0.0.1"
# port = 25
# security = "none"    # or "starttls" (port 587)
# from = "Siaga <siaga@diskominfo.example>"
# to = ["helpdesk@diskominfo.example"]

# Telegram: a bot writes each event to a chat (Bahasa Indonesia, with a link
# to the ticket when [web] public_url is set). One table per chat; opds and
# roles narrow what a chat is told. The token is a secret: keep this file
# readable by the collector only.
# [[notify.telegram]]
# token = "123456789:REPLACE-WITH-THE-BOTS-TOKEN"
# chat_id = -1001234567890     # or "@channelname"
# opds = ["dinkes"]            # default: every OPD
# roles = ["kepala_dinas"]     # default: every event
# api_url = "https://api.telegram.org"

# Texts per event kind (opened, recovered, step_changed, escalated), Jinja
# syntax; unset ones keep the built-in texts. A webhook may have its own
# `template` (the request body), e.g. '{{"text": "{{{{ subject }}}}"}}' for Slack.
# [notify.templates.opened]
# subject = "[Siaga] Tiket {{{{ ticket }}}} {{{{ what }}}}: {{{{ problem }}}}"
# body = "Tiket {{{{ ticket }}}} di {{{{ opd }}}}: {{{{ problem }}}} {{{{ url }}}}"

# Maintenance windows (`siaga maintenance add`): a longer one is refused.
# [maintenance]
# max_window = "7d"

# What the collector accepts from agents.
[ingest]
max_clock_skew = "5m"  # samples stamped further ahead of the collector's clock are refused and counted

# Tickets entered from letters (`siaga ticket new`).
# [tickets]
# max_letter_age = "365d"  # an older letter is refused; a letter dated after tomorrow always is

# The web console for people without a terminal (HTTPS, login with a
# password set by `siaga user passwd NAME`). Off unless listen is set.
# [web]
# listen = "0.0.0.0:8443"
# cert = "web.pem"       # default: [tls] cert (the collector's own certificate)
# key = "web.key"        # default: [tls] key
# trusted_proxies = ["127.0.0.1"]  # behind nginx: believe its X-Forwarded-For
# public_url = "https://siaga.diskominfo.example:8443"  # as browsers reach it; notifications link here

# Measurements on command (`siaga ticket measure`, `siaga measure`).
# [measure]
# queue_expiry = "24h"   # a --queue'd measurement whose agent stays offline this long expires

# Samples, their per-minute rollups, the newest readings and the agents'
# records in PostgreSQL instead of data_dir/collector.redb (the schema is
# created at the first start). Tickets, SOP trails, measurements and reports
# stay in data_dir/tickets.redb. `validate` connects and checks the schema.
# Over a network, encrypt and check the server: append
# ?sslmode=verify-full&sslrootcert=/etc/siaga/pg-ca.pem (the CA that signed
# the server's certificate; sslmode as libpq: disable, prefer, require,
# verify-ca, verify-full).
# [store]
# url = "postgres://siaga:PASSWORD@127.0.0.1:5432/siaga"
"#,
            health = crate::health::HealthRules::example_toml().trim_end()
        )
    }
}

/// Line (1-based) of `key = …` inside `[section]` of `text`, else the
/// section's header line, else 1.
pub fn line_in_section(text: &str, section: &str, key: &str) -> usize {
    let header = format!("[{section}]");
    let mut in_section = false;
    let mut header_line = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_section = t.split('#').next().map(str::trim) == Some(header.as_str());
            if in_section {
                header_line = Some(i + 1);
            }
            continue;
        }
        if in_section
            && t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return i + 1;
        }
    }
    header_line.unwrap_or(1)
}

/// Line (1-based) of `key = …` in the `index`-th `[[table]]` of `text`,
/// else that table's header line, else 1.
pub fn line_in_array_table(text: &str, table: &str, index: usize, key: &str) -> usize {
    let header = format!("[[{table}]]");
    let mut seen = 0usize;
    let mut inside = false;
    let mut header_line = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            inside = false;
            // `[[notify.telegram]]   # the helpdesk group`
            if t.split('#').next().map(str::trim) == Some(header.as_str()) {
                seen += 1;
                if seen == index + 1 {
                    inside = true;
                    header_line = Some(i + 1);
                }
            }
            continue;
        }
        if inside
            && t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return i + 1;
        }
    }
    header_line.unwrap_or(1)
}

/// The 1-based line of a byte offset: the newlines before it, nothing more
/// (O(offset); callers count it only when they report an error).
pub fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn line_of_names_the_same_line_as_locate_at_every_offset() {
        let text = "a = 1\n\n[t]\nb = \"é\"\r\nc = 2";
        for offset in (0..=text.len() + 3).filter(|&o| o > text.len() || text.is_char_boundary(o)) {
            assert_eq!(
                line_of(text, offset),
                locate(text, offset).0,
                "offset {offset}"
            );
        }
        assert_eq!(line_of(text, text.find('c').unwrap()), 5);
    }

    #[test]
    fn example_parses_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("collector.toml");
        std::fs::write(&p, CollectorConfig::example("127.0.0.1:0".parse().unwrap())).unwrap();
        let cfg = CollectorConfig::load(&p).unwrap();
        assert_eq!(cfg.data_dir, dir.path().join("data"));
        assert_eq!(cfg.tls.ca_key, dir.path().join("ca.key"));
        assert_eq!(cfg.retention.raw_days, 30);
        assert_eq!(cfg.metrics_listen, None);
        assert_eq!(cfg.calendar, crate::sop::CalendarConfig::default());
        assert_eq!(cfg.health, crate::health::HealthRules::default());
        assert_eq!(cfg.notify, crate::notify::NotifyConfig::default());
        assert_eq!(cfg.measure, MeasureConfig::default());
        assert_eq!(cfg.maintenance, MaintenanceConfig::default());
    }

    #[test]
    fn maintenance_max_window_is_checked_with_file_line_and_key() {
        let check = |text: &str| {
            let cfg: CollectorConfig = parse_toml(Path::new("c.toml"), text)?;
            cfg.check(Path::new("c.toml"), text)?;
            Ok::<_, ConfigError>(cfg)
        };
        let base = "listen = \"127.0.0.1:1\"\n\n[maintenance]\n";
        let ok = check(&format!("{base}max_window = \"2d\"\n")).unwrap();
        assert_eq!(ok.maintenance.max_window.as_secs(), 2 * 86_400);
        for bad in ["0s", "400d"] {
            let err = check(&format!("{base}max_window = \"{bad}\"\n")).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("c.toml:4: maintenance.max_window: must be more than 0"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_wita_province_that_kept_a_wib_offset_is_refused_with_file_line_and_key() {
        let check = |text: &str| {
            let cfg: CollectorConfig = parse_toml(Path::new("c.toml"), text)?;
            cfg.check(Path::new("c.toml"), text)?;
            Ok::<_, ConfigError>(cfg)
        };
        let base = "listen = \"127.0.0.1:1\"\n\n[calendar]\ntime_zone = \"Asia/Makassar\"\n";
        let err = check(&format!("{base}utc_offset = \"+07:00\"\n")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "c.toml:5: calendar.utc_offset: +07:00 disagrees with time_zone Asia/Makassar (+08:00, WITA)"
            ),
            "{err}"
        );
        let err =
            check("listen = \"127.0.0.1:1\"\n[calendar]\ntime_zone = \"WITA\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:3: calendar.time_zone: \"WITA\" is not an IANA time zone"),
            "{err}"
        );
        // The zone alone sets the offset: WITA times, labelled WITA.
        let cfg = check(base).unwrap();
        let cal = crate::sop::Calendar::new(&cfg.calendar).unwrap();
        assert_eq!(
            (cal.offset().local_minus_utc(), cal.zone_abbr()),
            (8 * 3600, "WITA")
        );
    }

    #[test]
    fn max_letter_age_is_checked_with_file_line_and_key() {
        let check = |text: &str| {
            let cfg: CollectorConfig = parse_toml(Path::new("c.toml"), text)?;
            cfg.check(Path::new("c.toml"), text)?;
            Ok::<_, ConfigError>(cfg)
        };
        let base = "listen = \"127.0.0.1:1\"\n\n[tickets]\n";
        let ok = check(&format!("{base}max_letter_age = \"90d\"\n")).unwrap();
        assert_eq!(ok.tickets.max_letter_age.as_secs(), 90 * 86_400);
        let default = check("listen = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(default.tickets.max_letter_age.as_secs(), 365 * 86_400);
        for bad in ["1h", "4000d"] {
            let err = check(&format!("{base}max_letter_age = \"{bad}\"\n")).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("c.toml:4: tickets.max_letter_age: must be at least a day"),
                "{err}"
            );
        }
    }

    #[test]
    fn measure_section_is_checked_with_file_line_and_key() {
        let base = "listen = \"127.0.0.1:1\"\n\n[measure]\n";
        let ok: CollectorConfig = parse_toml(
            Path::new("c.toml"),
            &format!("{base}queue_expiry = \"2h\"\n"),
        )
        .unwrap();
        assert_eq!(
            ok.measure.queue_expiry,
            std::time::Duration::from_secs(7200)
        );
        let err = parse_toml::<CollectorConfig>(
            Path::new("c.toml"),
            &format!("{base}queue_expiry = \"soon\"\n"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:4: measure.queue_expiry: "),
            "{err}"
        );
        let err =
            parse_toml::<CollectorConfig>(Path::new("c.toml"), &format!("{base}expiry = \"2h\"\n"))
                .unwrap_err();
        assert!(
            err.to_string().starts_with("c.toml:4: measure.expiry: "),
            "{err}"
        );
        let zero: CollectorConfig = parse_toml(
            Path::new("c.toml"),
            &format!("{base}queue_expiry = \"0s\"\n"),
        )
        .unwrap();
        assert!(
            zero.measure
                .validate()
                .unwrap_err()
                .contains("measure.queue_expiry")
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "listen = \"127.0.0.1:1\"\n\n[tls]\nca = \"a\"\nca_key = \"b\"\ncert = \"c\"\nkey = \"d\"\ncolour = \"red\"\n";
        let err = parse_toml::<CollectorConfig>(Path::new("collector.toml"), text).unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("collector.toml:8: tls.colour: "), "{s}");
    }

    #[test]
    fn metrics_beyond_loopback_only_when_asked_for() {
        let check = |text: &str| {
            let cfg: CollectorConfig = parse_toml(Path::new("c.toml"), text).unwrap();
            cfg.check(Path::new("c.toml"), text)
        };
        let base = "listen = \"127.0.0.1:1\"\n";
        assert!(check(&format!("{base}metrics_listen = \"127.0.0.1:0\"\n")).is_ok());
        assert!(check(&format!("{base}metrics_listen = \"[::1]:9464\"\n")).is_ok());
        let err = check(&format!("{base}metrics_listen = \"0.0.0.0:9464\"\n")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:2: metrics_listen: 0.0.0.0:9464 is not a loopback address"),
            "{err}"
        );
        assert!(
            check(&format!(
                "{base}metrics_listen = \"0.0.0.0:9464\"\nmetrics_public = true\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn web_is_off_unless_listen_is_set_and_cert_goes_with_key() {
        let check = |text: &str| {
            let cfg: CollectorConfig = parse_toml(Path::new("c.toml"), text).unwrap();
            cfg.check(Path::new("c.toml"), text).map(|_| cfg)
        };
        let base = "listen = \"127.0.0.1:1\"\n";
        assert_eq!(check(base).unwrap().web.listen, None);
        let on = check(&format!("{base}[web]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
        assert_eq!(on.web.listen, Some("127.0.0.1:0".parse().unwrap()));
        let tls = TlsFiles::default();
        assert_eq!(on.web.cert_and_key(&tls), (&*tls.cert, &*tls.key));
        let err = check(&format!(
            "{base}\n[web]\nlisten = \"127.0.0.1:0\"\ncert = \"web.pem\"\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:5: web.cert: given without web.key"),
            "{err}"
        );
        let err = check(&format!("{base}[web]\ncert = \"a.pem\"\nkey = \"a.key\"\n")).unwrap_err();
        assert!(
            err.to_string().starts_with("c.toml:2: web.listen: missing"),
            "{err}"
        );
        let err = parse_toml::<CollectorConfig>(
            Path::new("c.toml"),
            &format!("{base}[web]\nlisten = \"localhost\"\n"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("c.toml:3: web.listen: "),
            "{err}"
        );
        let err = parse_toml::<CollectorConfig>(
            Path::new("c.toml"),
            &format!("{base}[web]\nlisten = \"127.0.0.1:0\"\nport = 1\n"),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("c.toml:4: web.port: "), "{err}");
        let on = check(&format!(
            "{base}[web]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\", \"10.20.0.0/24\"]\n"
        ))
        .unwrap();
        assert_eq!(
            on.web.proxies().unwrap(),
            vec![
                "127.0.0.1/32".parse::<ipnet::IpNet>().unwrap(),
                "10.20.0.0/24".parse().unwrap()
            ]
        );
        let err = check(&format!(
            "{base}[web]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"nginx\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:4: web.trusted_proxies: \"nginx\" is neither"),
            "{err}"
        );
    }

    fn check_text(text: &str) -> Result<CollectorConfig, ConfigError> {
        let cfg: CollectorConfig = parse_toml(Path::new("c.toml"), text)?;
        cfg.check(Path::new("c.toml"), text).map(|_| cfg)
    }

    #[test]
    fn health_resource_rules_are_checked_with_file_line_and_key() {
        let base = "listen = \"127.0.0.1:1\"\n";
        let ok = check_text(&format!(
            "{base}[health.cpu]\nabove = 80.0\nfor = \"10m\"\n[health.temperature]\nabove = 65.0\n"
        ))
        .unwrap();
        assert_eq!(ok.health.cpu.above, Some(80.0));
        assert_eq!(ok.health.cpu.hold, std::time::Duration::from_secs(600));
        assert_eq!(ok.health.temperature.above, Some(65.0));
        let err = check_text(&format!(
            "{base}[health.memory]\nfor = \"1m\"\nabove = 150.0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("c.toml:4: health.memory.above: "), "{err}");
        let err = check_text(&format!("{base}[health.flap]\nlow_pct = 50.0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:2: health.flap: "), "{err}");
    }

    #[test]
    fn init_can_write_the_store_url() {
        let listen = "127.0.0.1:7443".parse().unwrap();
        assert_eq!(
            CollectorConfig::example_with_store(listen, None),
            CollectorConfig::example(listen)
        );
        let url = "postgres://siaga:p\"w\\@db:5432/siaga?sslmode=require";
        let text = CollectorConfig::example_with_store(listen, Some(url));
        assert!(
            text.contains("\n[store]\nurl = ") && !text.contains("# [store]"),
            "{text}"
        );
        let cfg: CollectorConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg.store.url.as_deref(), Some(url));
        assert_eq!(cfg.listen, listen);
    }

    #[test]
    fn store_url_is_checked_with_file_line_and_key() {
        let base = "listen = \"127.0.0.1:1\"\n\n[store]\n";
        assert_eq!(check_text(base).unwrap().store.url, None);
        assert_eq!(
            check_text("listen = \"127.0.0.1:1\"\n").unwrap().store,
            StoreConfig::default()
        );
        let good = "postgres://siaga:s3cret@db.kominfo.example:5433/siaga";
        let on = check_text(&format!("{base}url = \"{good}\"\n")).unwrap();
        assert_eq!(on.store.url.as_deref(), Some(good));
        let tls = format!("{good}?sslmode=require");
        let on = check_text(&format!("{base}url = \"{tls}\"\n")).unwrap();
        assert_eq!(on.store.url.as_deref(), Some(tls.as_str()));
        for (bad, why) in [
            ("mysql://siaga@db/siaga", "not a PostgreSQL URL"),
            ("db.example/siaga", "not a PostgreSQL URL"),
            (
                "postgres://u:s3cret@db:port/siaga",
                "not a PostgreSQL URL (invalid",
            ),
            (
                "postgres://u:s3cret@db/siaga?sslmode=verify-full",
                "sslmode=verify-full needs sslrootcert=",
            ),
            (
                "postgres://u:s3cret@db/siaga?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert /nonexistent/ca.pem: No such file",
            ),
            (
                "postgres://u:s3cret@db/siaga?sslmode=allow",
                "sslmode=allow is not supported",
            ),
        ] {
            let err = check_text(&format!("{base}# the shared store\nurl = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("c.toml:5: store.url: ") && err.contains(why),
                "{bad}: {err}"
            );
            assert!(!err.contains("s3cret"), "the password is repeated: {err}");
        }
        let err = check_text(&format!("{base}uri = \"{good}\"\n")).unwrap_err();
        assert!(err.to_string().contains("uri"), "{err}");
    }

    #[test]
    fn web_public_url_is_checked_with_file_line_and_key() {
        let base = "listen = \"127.0.0.1:1\"\n[web]\nlisten = \"127.0.0.1:0\"\n";
        let on = check_text(&format!(
            "{base}public_url = \"https://siaga.diskominfo.example:8443\"\n"
        ))
        .unwrap();
        assert_eq!(
            on.web.public_url.as_deref(),
            Some("https://siaga.diskominfo.example:8443")
        );
        for (bad, why) in [
            ("siaga.diskominfo.example", "relative URL"),
            ("ftp://siaga.example/", "only http and https"),
            ("https://siaga.example/?a=1", "no query or fragment"),
            ("https://u:p@siaga.example/", "no user name or password"),
        ] {
            let err = check_text(&format!("{base}public_url = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("c.toml:4: web.public_url: ") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let err =
            check_text("listen = \"127.0.0.1:1\"\n[web]\npublic_url = \"https://siaga.example\"\n")
                .unwrap_err();
        assert!(
            err.to_string().starts_with("c.toml:2: web.listen: missing"),
            "{err}"
        );
    }

    #[test]
    fn notify_templates_and_telegram_errors_name_file_line_and_key() {
        let base = "listen = \"127.0.0.1:1\"\n";
        let ok = check_text(&format!(
            "{base}[[notify.telegram]]\ntoken = \"123:abc\"\nchat_id = -100\n\
             [[notify.telegram]]\ntoken = \"456:def\"\nchat_id = \"@helpdesk\"\n\
             opds = [\"dinkes\"]\n\
             [notify.templates.opened]\nbody = \"\"\"\nTiket {{{{ ticket }}}}\n\"\"\"\n"
        ))
        .unwrap();
        assert_eq!(ok.notify.telegram.len(), 2);
        assert_eq!(
            ok.notify.telegram[1].chat_id,
            crate::notify::ChatId::Name("@helpdesk".into())
        );
        assert_eq!(
            ok.notify.templates.opened.body.as_deref(),
            Some("Tiket {{ ticket }}\n")
        );
        let err = check_text(&format!(
            "{base}[notify.templates.recovered]\nsubject = \"ok {{{{ ticket }}}}\"\n\
             body = \"{{{{ tiket }}}} pulih\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "c.toml:4: notify.templates.recovered.body: unknown placeholder {{ tiket }}"
            ),
            "{err}"
        );
        // The second chat's token is bad: its line, and not its value.
        let err = check_text(&format!(
            "{base}[[notify.telegram]]  # helpdesk\ntoken = \"123:abc\"\nchat_id = 1\n\
             [[notify.telegram]] # kadis\nchat_id = 2\ntoken = \"leaked secret\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.toml:7: notify.telegram.token: not a bot token"),
            "{err}"
        );
        assert!(!err.contains("leaked"), "{err}");
        let err = check_text(&format!(
            "{base}[[notify.webhook]]\nurl = \"http://127.0.0.1:1/\"\n\
             template = '{{\"text\": \"{{{{ judul }}}}\"}}'\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.toml:4: notify.webhook.template: unknown placeholder {{ judul }}"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_names_key() {
        let text = "listen = \"not an address\"\n";
        let err = parse_toml::<CollectorConfig>(Path::new("c.toml"), text).unwrap_err();
        assert!(err.to_string().starts_with("c.toml:1: listen: "), "{err}");
    }

    #[test]
    fn a_telegram_role_the_sop_file_has_not_is_refused_with_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        let text = "listen = \"127.0.0.1:1\"\n\
                    [[notify.telegram]]\ntoken = \"123:abc\"\nchat_id = 1\nroles = [\"helpdesk\"]\n\
                    [[notify.telegram]]\ntoken = \"456:def\"\nchat_id = 2\n\
                    roles = [\"kepala_dinas\", \"kadis\"]\n";
        std::fs::write(&path, text).unwrap();
        let cfg = check_text(text).unwrap();
        let known = [Role::HELPDESK, Role::KEPALA_DINAS, Role::ADMIN];
        let err = cfg
            .check_telegram_roles(&path, &known)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{}:9: notify.telegram.roles: ", path.display())),
            "{err}"
        );
        assert!(err.contains("`kadis`") && err.contains("[[role]]"), "{err}");
        // Spelt as the SOP file spells them, both chats pass.
        let fixed = text.replace("\"kadis\"", "\"helpdesk\"");
        std::fs::write(&path, &fixed).unwrap();
        check_text(&fixed)
            .unwrap()
            .check_telegram_roles(&path, &known)
            .unwrap();
    }
}
