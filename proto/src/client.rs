//! The people's side of the admin API: `siaga.toml`, a mutual-TLS channel
//! to the collector with the user's certificate, and refusals as sentences
//! that end in what to do. Used by `siaga` and by `siaga-collector backup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::{Channel, Endpoint};

use crate::config::{ConfigError, line_of_top_key, parse_toml, resolve};
use crate::v1::admin_client::AdminClient;

/// Why the client could not start or a call failed, already phrased for
/// the user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another problem, in one sentence.
    #[error("{0}")]
    Message(String),
}

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
    /// The province's IANA time zone, in which local times typed on the
    /// command line are read (`--from "2026-12-07 22:00"`). Default
    /// "Asia/Jakarta"; `enroll user` writes the collector's.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Certificate files.
    pub tls: ClientTls,
}

fn default_time_zone() -> String {
    "Asia/Jakarta".into()
}

impl SiagaConfig {
    /// The zone of [`Self::time_zone`] (checked when the file is read).
    pub fn zone(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::Asia::Jakarta)
    }
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

impl SiagaConfig {
    /// Reads `path`, resolving the TLS files against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        let mut c: SiagaConfig = parse_toml(path, &text)?;
        c.check(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.tls.ca = resolve(base, &c.tls.ca);
        c.tls.cert = resolve(base, &c.tls.cert);
        c.tls.key = resolve(base, &c.tls.key);
        Ok(c)
    }
}

impl SiagaConfig {
    /// The collector's URL must be `https://`: the admin API speaks mutual
    /// TLS only, and a plaintext connection would carry the user's requests
    /// (and a backup's whole store) unauthenticated and in clear.
    pub fn check(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        if let Err(e) = crate::zone::offset(&self.time_zone) {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line: line_of_top_key(text, "time_zone"),
                key: "time_zone".into(),
                message: e.to_string(),
            });
        }
        let url = self.collector.trim();
        let host = url
            .strip_prefix("https://")
            .map(|rest| rest.split('/').next().unwrap_or_default());
        let message = match host {
            Some(h) if !h.is_empty() => return Ok(()),
            Some(_) => format!("{url:?} has no host: write collector = \"https://HOST:PORT\""),
            None => {
                let rest = url.split_once("://").map_or(url, |(_, r)| r);
                format!(
                    "{url:?} is not an https:// URL; the collector speaks TLS only: \
                     write collector = \"https://{rest}\" (as `enroll user` wrote it)"
                )
            }
        };
        Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: line_of_top_key(text, "collector"),
            key: "collector".into(),
            message,
        })
    }
}

/// The config file to use: `--config`, else `SIAGA_CONFIG`, else `~/.config/siaga/siaga.toml`.
pub fn config_path(flag: Option<PathBuf>) -> Result<PathBuf, ClientError> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("SIAGA_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/siaga/siaga.toml")),
        None => Err(ClientError::Message(
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

/// When the certificate in `pem` stops being valid, local in `tz`
/// (`2020-12-31 07:00 WIB`).
fn not_after(pem: &Path, tz: chrono_tz::Tz) -> Option<String> {
    let bytes = std::fs::read(pem).ok()?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&bytes).ok()?;
    let cert = p.parse_x509().ok()?;
    let ts = cert.validity().not_after.timestamp();
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
}

/// The serial of the certificate in `pem`, as the ledger writes it.
fn serial_of(pem: &Path) -> Option<String> {
    let text = std::fs::read_to_string(pem).ok()?;
    let der = crate::cert::pem_to_der(&text).ok()?;
    crate::cert::serial_of(&der).ok()
}

/// One sentence for a TLS problem, ending in what to do about it.
pub fn tls_advice(p: crate::tls::TlsProblem, cfg: &SiagaConfig) -> String {
    use crate::tls::TlsProblem::*;
    let url = &cfg.collector;
    let user = if cfg.user.is_empty() {
        "NAME"
    } else {
        &cfg.user
    };
    let cert = cfg.tls.cert.display();
    match p {
        PeerNotSignedByOurCa => format!(
            "the collector at {url} presents a certificate not signed by the CA in siaga.toml \
             ({}): copy ca.pem from the collector's directory (or from a fresh \
             `siaga-collector enroll user`) over that file",
            cfg.tls.ca.display()
        ),
        PeerWrongName => format!(
            "the collector's certificate is not valid for the name {:?}: set server_name in \
             siaga.toml to a name given to `siaga-collector init --host`, or reach the collector \
             by that name",
            cfg.server_name.clone().unwrap_or_else(|| host_of(url))
        ),
        PeerExpired => format!(
            "the collector at {url} presents an expired certificate (or this machine's clock is \
             wrong): ask the collector's admin to renew the server certificate"
        ),
        OursExpired => format!(
            "your certificate ({cert}) expired{}: ask for a new one: \
             siaga-collector renew --dir COLLECTOR_DIR --user {user} --out DIR",
            not_after(&cfg.tls.cert, cfg.zone()).map_or(String::new(), |d| format!(" on {d}"))
        ),
        OursRevoked => revoked_advice(cfg, None),
        OursNotSignedByTheirCa => format!(
            "the collector at {url} refused your certificate ({cert}): it is not signed by this \
             collector's CA (issued by another collector?): ask for one from this collector: \
             siaga-collector enroll user --dir COLLECTOR_DIR --name {user} --role ROLE --out DIR"
        ),
        OursRefused => format!(
            "the collector at {url} refused your certificate ({cert}): ask for a new one: \
             siaga-collector renew --dir COLLECTOR_DIR --user {user} --out DIR"
        ),
    }
}

fn revoked_advice(cfg: &SiagaConfig, serial: Option<String>) -> String {
    let user = if cfg.user.is_empty() {
        "NAME"
    } else {
        &cfg.user
    };
    format!(
        "your certificate {} (siaga://user/{user}) has been revoked: ask the collector's \
         admin for a new one: \
         siaga-collector enroll user --dir COLLECTOR_DIR --name {user} --role ROLE --out DIR",
        serial
            .or_else(|| serial_of(&cfg.tls.cert))
            .unwrap_or_else(|| cfg.tls.cert.display().to_string())
    )
}

fn host_of(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_matches(['[', ']']).to_string(),
        None => authority.to_string(),
    }
}

/// Connects to the admin API with the user's certificate.
pub async fn connect(cfg: &SiagaConfig) -> Result<AdminClient<Channel>, ClientError> {
    Ok(
        AdminClient::new(channel_with(cfg, Some(Duration::from_secs(60))).await?)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES),
    )
}

/// A TLS channel to the collector with the user's certificate, for the
/// typed clients (`XClient::new(channel)`). Streams (history, following,
/// watching) have no overall deadline; a unary call sets its own.
pub async fn channel(cfg: &SiagaConfig) -> Result<Channel, ClientError> {
    channel_with(cfg, None).await
}

async fn channel_with(
    cfg: &SiagaConfig,
    timeout: Option<Duration>,
) -> Result<Channel, ClientError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| ClientError::Message(format!("{}: {}", p.display(), root_cause(&e))))
    };
    let url = &cfg.collector;
    let connector = crate::dial::Connector::new(
        url,
        &read(&cfg.tls.ca)?,
        &read(&cfg.tls.cert)?,
        &read(&cfg.tls.key)?,
        cfg.server_name.as_deref(),
    )
    .map_err(|e| ClientError::Message(format!("TLS setup: {e}")))?;
    let endpoint = Endpoint::from_shared(connector.endpoint_uri())
        .map_err(|e| ClientError::Message(format!("collector URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    let endpoint = match timeout {
        Some(t) => endpoint.timeout(t),
        None => endpoint,
    };
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            ClientError::Message(match crate::tls::diagnose(&e) {
                Some(p) => tls_advice(p, cfg),
                None => format!("cannot reach collector at {url}: {}", root_cause(&e)),
            })
        })
}

/// A gRPC status of a call made with `cfg` as one line (a refusal that
/// shows only on a call, such as a revoked certificate, in the words of
/// [`tls_advice`]).
pub fn status_error(cfg: &SiagaConfig, s: tonic::Status) -> ClientError {
    let url = &cfg.collector;
    if let Some(p) = crate::tls::diagnose(&s) {
        return ClientError::Message(tls_advice(p, cfg));
    }
    let msg = match s.code() {
        tonic::Code::Unavailable => {
            let cause = std::error::Error::source(&s)
                .map(root_cause)
                .unwrap_or_else(|| s.message().to_string());
            format!("cannot reach collector at {url}: {cause}")
        }
        tonic::Code::Unauthenticated
            if s.metadata().get(crate::REFUSAL_KEY).map(|v| v.as_bytes())
                == Some(crate::REFUSAL_REVOKED.as_bytes()) =>
        {
            let serial = s
                .metadata()
                .get(crate::SERIAL_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            revoked_advice(cfg, serial)
        }
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            format!("refused by the collector: {}", s.message())
        }
        _ => format!("collector: {}", s.message()),
    };
    ClientError::Message(msg)
}
