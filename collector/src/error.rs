//! Error types of the collector library.

use std::path::PathBuf;

pub use siaga_proto::config::ConfigError;

/// Creating or reading certificates and keys failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Certificate generation or signing failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A name cannot be used in a certificate or identity.
    #[error("{0}")]
    InvalidName(String),
    /// A file that should already exist (e.g. the CA) is missing: wrong directory?
    #[error("{}: not found (run `siaga-collector init` first?)", path.display())]
    Missing {
        /// The expected file.
        path: PathBuf,
    },
    /// A configuration file was wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Identity taken from a client certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The TLS layer presented no client certificate.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("unreadable client certificate: {0}")]
    Unparsable(String),
    /// The certificate has no `siaga://` URI SAN, or a malformed one.
    #[error("client certificate carries no siaga identity ({0})")]
    NoIdentity(String),
}

/// The collector's store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database reported an error.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A stored record could not be decoded (corruption or a newer format).
    #[error("store: cannot decode {what}: {message}")]
    Decode {
        /// Which record.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The data directory could not be created.
    #[error("store: {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A store file could not be opened.
    #[error("{}: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A store file is damaged: its pages do not match their checksums.
    #[error(
        "{}: the store is damaged ({message}); the collector will not run on it: \
         restore the last backup (`siaga-collector restore --from BACKUP.tar --config collector.toml --force`)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What redb found.
        message: String,
    },
    /// A store file was written by a newer collector.
    #[error(
        "{}: store schema version {found} is newer than this collector supports ({supported}); \
         run a collector of that version or newer, or restore a backup taken with this one",
        path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u64,
        /// The version this collector reads and writes.
        supported: u64,
    },
    /// Migrating a store file to the next schema version failed.
    #[error("{}: migrating the store from version {from} to {to} failed: {message}", path.display())]
    Migrate {
        /// The file.
        path: PathBuf,
        /// Version before.
        from: u64,
        /// Version after.
        to: u64,
        /// Why.
        message: String,
    },
    /// The store is being opened again after a write error.
    #[error("{}: being reopened after a write error (disk full?); try again shortly", path.display())]
    Reopening {
        /// The file.
        path: PathBuf,
    },
    /// The ingest writer has stopped (shutdown in progress).
    #[error("store: writer has stopped")]
    WriterGone,
    /// PostgreSQL (`[store] url`) refused or failed a request.
    #[error("store (PostgreSQL): {doing}: {}", pg_message(.source))]
    Postgres {
        /// What the store was doing.
        doing: &'static str,
        /// The client's error (with the server's message, if any).
        source: tokio_postgres::Error,
    },
    /// `[store] url` cannot be used as written (the message never repeats
    /// the URL: it may hold a password).
    #[error("store (PostgreSQL): the URL: {0}")]
    PostgresUrl(String),
    /// The URL's `sslrootcert` file cannot be read or holds no CA certificate.
    #[error(
        "store (PostgreSQL): sslrootcert {}: {message}; name the PEM file of the CA that \
         signed the server's certificate",
        path.display()
    )]
    PostgresRootCert {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A connection to PostgreSQL could not be opened.
    #[error("store (PostgreSQL): connecting with sslmode={sslmode}: {}{next}", pg_message(.source))]
    PostgresConnect {
        /// The URL's `sslmode`.
        sslmode: &'static str,
        /// The client's error.
        source: tokio_postgres::Error,
        /// What to do about it ("; …"), or empty when the message says it.
        next: String,
    },
    /// The PostgreSQL database holds a schema newer than this collector's.
    #[error(
        "store (PostgreSQL): schema version {found} is newer than this collector supports \
         ({supported}); run a collector of that version or newer"
    )]
    PostgresTooNew {
        /// Its version.
        found: i32,
        /// The version this collector reads and writes.
        supported: i32,
    },
    /// The PostgreSQL store's own runtime could not be started.
    #[error("store (PostgreSQL): starting its runtime: {0}")]
    Runtime(std::io::Error),
}

/// What PostgreSQL said, or why the client could not ask: the client's own
/// `Display` is only the kind ("db error").
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            m.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            m.push_str(&format!("; hint: {h}"));
        }
        return m;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
redb_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The audit anchor (the signing key and the log of signed trail heads) failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not an Ed25519 key.
    #[error("{}: not an Ed25519 audit key ({message})", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A line of the signed-heads log cannot be read.
    #[error("{}:{line}: {message}", path.display())]
    BadLog {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        message: String,
    },
}
