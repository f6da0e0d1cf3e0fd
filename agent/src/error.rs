//! Errors of the agent library, one enum per concern.

use std::path::PathBuf;

/// A configuration file that cannot be used.
///
/// Every variant names the file; parse and validation errors also name the
/// line (1-based) and the key, so that `siaga-agent validate` can print
/// `agent.toml:12: spool.max_age: invalid duration`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{}:{line}: {key}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// Dotted key, e.g. `spool.max_age`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file parses but a value is not usable (e.g. a URL without host).
    #[error("{}:{line}: {key}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key (0 when the key is absent from the file).
        line: usize,
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file the configuration points to (certificate, key, CA) is unusable.
    #[error("{}:{line}: {key}: {}: {message}", config.display(), file.display())]
    File {
        /// The configuration file.
        config: PathBuf,
        /// 1-based line of the key in the configuration file.
        line: usize,
        /// The key that names the file, e.g. `tls.cert`.
        key: String,
        /// The file it names.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Failure of the local sample spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool database could not be opened or created.
    #[error("cannot open spool {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
    /// A read or write transaction failed.
    #[error("spool storage error: {0}")]
    Storage(#[from] Box<redb::Error>),
    /// A stored record could not be decoded (corruption or a foreign file).
    #[error("spool record {seq} is corrupt: {message}")]
    Corrupt {
        /// Sequence number (or 0 for metadata).
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// The spool writer has stopped (the agent is shutting down or the
    /// writer hit a fatal error earlier).
    #[error("spool writer has stopped")]
    Closed,
}

impl SpoolError {
    pub(crate) fn storage(e: impl Into<redb::Error>) -> Self {
        SpoolError::Storage(Box::new(e.into()))
    }
}

/// Failure to set up a prober.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No ICMP socket could be opened: the process lacks the rights.
    #[error(
        "cannot open an ICMP{version} socket: {source}. Run the agent as root, \
         grant it CAP_NET_RAW (`setcap cap_net_raw+ep siaga-agent`, or \
         `AmbientCapabilities=CAP_NET_RAW` in its systemd unit), or allow \
         unprivileged ping for its group with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`"
    )]
    IcmpSocket {
        /// "v4" or "v6".
        version: &'static str,
        /// The error from the operating system.
        source: std::io::Error,
    },
    /// Neither a RAW nor a DGRAM ICMP socket is allowed to this process.
    #[error(
        "cannot open an ICMP socket ({source}); ICMP probing needs one of: run as root, \
         grant CAP_NET_RAW (e.g. `setcap cap_net_raw+ep siaga-agent` or \
         `AmbientCapabilities=CAP_NET_RAW` in the systemd unit), or allow unprivileged ping \
         for the agent's group with `sysctl -w net.ipv4.ping_group_range=\"{gid} {gid}\"` \
         (now \"{range}\")"
    )]
    IcmpPermission {
        /// The error of the last attempt (DGRAM socket).
        source: std::io::Error,
        /// The process's group id, for the sysctl hint.
        gid: u32,
        /// The current value of `net.ipv4.ping_group_range`.
        range: String,
    },
    /// Any other socket error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The trap receiver could not bind its address.
    #[error("cannot listen for SNMP traps on {addr}: {source}")]
    TrapBind {
        /// The configured listen address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ProbeError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Failure of the uplink to the collector.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The TLS material could not be read or is invalid.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The collector URL is not usable.
    #[error("collector address {url:?}: {message}")]
    Address {
        /// The configured URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Connecting failed (TCP, TLS handshake, HTTP/2).
    #[error("connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The stream ended with a gRPC status.
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    /// The collector closed the stream.
    #[error("collector closed the stream")]
    Closed,
    /// A batch stayed unacknowledged too long.
    #[error("no acknowledgement for {0:?}; reconnecting to send again")]
    AckTimeout(std::time::Duration),
    /// The collector did not welcome this agent: its first answer was
    /// something else, or none came in time.
    #[error("no Welcome from the collector ({0}); trying again")]
    NoWelcome(String),
    /// The collector speaks an incompatible protocol version.
    #[error("collector speaks protocol {major}.{minor}, this agent speaks {ours}")]
    Version {
        /// Collector's major version.
        major: u32,
        /// Collector's minor version.
        minor: u32,
        /// Ours, `major.minor`.
        ours: String,
    },
    /// The spool failed underneath the uplink.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Failure of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address from the configuration.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound address could not be written to the data directory.
    #[error("cannot write {}: {source}", path.display())]
    AddrFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
