//! Every PostgreSQL connection of the collector opens here ([`connect`]),
//! with the TLS the URL asks for.
//!
//! The URL's `sslmode` has libpq's meaning:
//! - `disable`: no TLS.
//! - `prefer` (the default): TLS when the server offers it, the server's
//!   certificate not checked; plain otherwise.
//! - `require`: TLS or no connection; the certificate not checked, unless
//!   `sslrootcert` names a CA, which makes it `verify-ca` (as libpq does).
//! - `verify-ca`: TLS, and the server's certificate must be signed by the
//!   CA in `sslrootcert`.
//! - `verify-full`: as `verify-ca`, and the certificate must name the host
//!   the URL connects to (a DNS name, or an IP address in its SAN).
//!
//! `sslrootcert=PATH` is a PEM file of one or more CA certificates (a
//! bundle such as the system's works too). The collector runs as a service,
//! so the path must be absolute, and libpq's default
//! (`~/.postgresql/root.crt`) is not consulted: `verify-ca` and
//! `verify-full` need `sslrootcert` in the URL. Refused, each with the next
//! step: `sslmode=allow` (plain first: nothing `prefer` does not do better)
//! and client certificates (`sslcert`, `sslkey`).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, so the TLS
//! keys are taken out of the URL here ([`pg_config`] is the rest of it) and
//! the checks are rustls's (the provider and versions of the collector's
//! own listeners), through `tokio-postgres-rustls`, which also gives the
//! server's certificate hash for SCRAM channel binding. Unix sockets never
//! carry TLS (the server refuses it there); libpq connects over them
//! whatever `sslmode` says, and so does this.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres::config::{Host, SslMode as WireMode};
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// How a URL is written.
pub const URL_FORM: &str = "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=/PATH/ca.pem]";

/// A CA file larger than this is not a CA file (the system bundle is
/// about 200 KiB).
const MAX_ROOT_CERT_BYTES: u64 = 4 << 20;

/// The URL's `sslmode`, with libpq's meaning (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when offered, unverified.
    #[default]
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, the certificate signed by `sslrootcert`.
    VerifyCa,
    /// TLS, signed by `sslrootcert` and naming the host.
    VerifyFull,
}

impl SslMode {
    /// As written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (it tries without TLS first): \
                            write sslmode=prefer, or sslmode=disable"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The URL split: the part tokio-postgres reads, and the TLS keys.
struct Split {
    rest: String,
    mode: SslMode,
    root_cert: Option<PathBuf>,
}

/// `%XX` escapes of a URL's query value decoded.
fn percent_decode(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a `%` not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query. A string that
/// is not a `postgres://` URL is passed on as it is (tokio-postgres reads
/// `key=value` strings too, with its own three modes).
fn split(url: &str) -> Result<Split, String> {
    let mut out = Split {
        rest: url.to_string(),
        mode: SslMode::default(),
        root_cert: None,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(out);
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok(out);
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                let v = percent_decode(v).map_err(|e| format!("sslmode: {e}"))?;
                out.mode = SslMode::parse(&v)?;
            }
            "sslrootcert" => {
                let v = percent_decode(v).map_err(|e| format!("sslrootcert: {e}"))?;
                if v == "system" {
                    return Err("sslrootcert=system is not supported: name the CA bundle \
                                file instead, e.g. sslrootcert=/etc/ssl/certs/ca-certificates.crt"
                        .into());
                }
                let path = PathBuf::from(&v);
                if !path.is_absolute() {
                    return Err(format!(
                        "sslrootcert={v:?} is relative: write the CA file's absolute path \
                         (the collector runs as a service, from no particular directory)"
                    ));
                }
                out.root_cert = Some(path);
            }
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{k}: client certificates are not supported: let the server \
                     authenticate the collector's user by password (scram-sha-256 in pg_hba.conf)"
                ));
            }
            _ => kept.push(pair),
        }
    }
    if matches!(out.mode, SslMode::VerifyCa | SslMode::VerifyFull) && out.root_cert.is_none() {
        return Err(format!(
            "sslmode={} needs sslrootcert=/PATH/ca.pem: the CA that signed the server's \
             certificate",
            out.mode
        ));
    }
    out.rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(out)
}

/// `url`'s connection settings without its TLS keys, as tokio-postgres
/// reads them (hosts, ports, user, database, options). The message of an
/// error never repeats the URL: it may hold a password.
pub fn pg_config(url: &str) -> Result<Config, StoreError> {
    let s = split(url).map_err(StoreError::PostgresUrl)?;
    let config: Config = s.rest.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::PostgresUrl(format!(
            "not a PostgreSQL URL ({}): write it as {URL_FORM}",
            crate::error::pg_message(&e)
        ))
    })?;
    Ok(config)
}

/// The TLS of a URL: its mode and, when it connects with TLS, the rustls
/// client that checks what the mode asks. Built once per URL
/// ([`PgTls::from_url`]: reads the CA file), cloned cheaply.
#[derive(Clone)]
pub struct PgTls {
    mode: SslMode,
    /// Whether `sslrootcert` is checked (`verify-*`, or `require` with a CA).
    verifies: bool,
    /// `None` for `disable`.
    connector: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls")
            .field("mode", &self.mode)
            .field("verifies", &self.verifies)
            .finish_non_exhaustive()
    }
}

impl PgTls {
    /// The TLS `url` asks for (`sslmode`, `sslrootcert`), its CA file read.
    pub fn from_url(url: &str) -> Result<PgTls, StoreError> {
        let s = split(url).map_err(StoreError::PostgresUrl)?;
        let roots = s.root_cert.as_deref().map(read_roots).transpose()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (s.mode, roots) {
            (SslMode::Disable, _) => {
                return Ok(PgTls {
                    mode: s.mode,
                    verifies: false,
                    connector: None,
                });
            }
            (SslMode::VerifyFull, Some(roots)) => {
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| StoreError::PostgresRootCert {
                    path: s.root_cert.clone().unwrap_or_default(),
                    message: e.to_string(),
                })?
            }
            // libpq: "if a root CA file exists, sslmode=require behaves as
            // verify-ca".
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(SignedBy {
                roots: Arc::new(roots),
                provider: provider.clone(),
            }),
            // Encryption against a passive listener only, as libpq's
            // prefer and require: the certificate is not checked.
            (_, _) => Arc::new(Unchecked(provider.clone())),
        };
        let verifies = !matches!(s.mode, SslMode::Prefer) && s.root_cert.is_some();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::PostgresUrl(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What libpq 17 sends; a server with sslnegotiation=direct wants it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(PgTls {
            mode: s.mode,
            verifies,
            connector: Some(MakeRustlsConnect::new(config)),
        })
    }

    /// The URL's `sslmode`.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// What a TLS connection of this mode proves about the server, for
    /// `validate`.
    pub fn checks(&self) -> &'static str {
        match (self.mode, self.verifies) {
            (SslMode::VerifyFull, _) => {
                "the server's certificate checked against sslrootcert and the host name"
            }
            (_, true) => "the server's certificate checked against sslrootcert, not its host name",
            _ => {
                "the server's certificate not checked: use sslmode=verify-full with \
                 sslrootcert=PATH to know it is your server"
            }
        }
    }

    /// What tokio-postgres is told: it asks for TLS and refuses a plain
    /// answer; what the certificate must be is the verifier's part.
    fn wire_mode(&self, config: &Config) -> WireMode {
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        match self.mode {
            _ if unix_only => WireMode::Disable,
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }

    /// A failed connection with the next step where one is known.
    fn connect_error(&self, source: tokio_postgres::Error) -> StoreError {
        let message = crate::error::pg_message(&source);
        let next = if let Some(db) = source.as_db_error() {
            if db.message().contains("no encryption") {
                format!(
                    "; the server accepts only TLS from here (hostssl in pg_hba.conf): set \
                     sslmode=verify-full and sslrootcert=/PATH/ca.pem in the URL \
                     (sslmode={} asked for none)",
                    self.mode
                )
            } else {
                String::new()
            }
        } else if message.contains("server does not support TLS") {
            format!(
                "; the server offers no TLS: turn ssl on in its postgresql.conf (with \
                 ssl_cert_file and ssl_key_file), or connect over a network you trust with \
                 sslmode=prefer (sslmode={} refuses a plain connection)",
                self.mode
            )
        } else if let Some(cert) = certificate_error(&source) {
            use rustls::CertificateError as C;
            match cert {
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "; the server's certificate does not name the host in the URL: connect by \
                     a name or address its certificate holds (`openssl x509 -noout -ext \
                     subjectAltName`), or check the CA only with sslmode=verify-ca"
                }
                C::UnknownIssuer | C::BadSignature => {
                    "; the server's certificate is not signed by the CA in sslrootcert: name \
                     the CA that signed it"
                }
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => {
                    "; the server's certificate is outside its validity (or this host's clock \
                     is wrong): renew it on the server"
                }
                _ => "; check the server's certificate against the URL's sslrootcert",
            }
            .to_string()
        } else if message.contains("TLS") {
            "; the TLS handshake failed: check the server's ssl settings and the URL's sslmode \
             and sslrootcert"
                .to_string()
        } else {
            String::new()
        };
        StoreError::PostgresConnect {
            sslmode: self.mode.as_str(),
            source,
            next,
        }
    }
}

/// Why rustls refused the server's certificate, if that is why `e` failed.
fn certificate_error(e: &tokio_postgres::Error) -> Option<&rustls::CertificateError> {
    let mut at: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = at {
        // An io::Error's `source` skips the error it wraps: look inside.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(c)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(c);
            }
        }
        at = err.source();
    }
    None
}

/// Reads a PEM file of CA certificates into a root store.
fn read_roots(path: &Path) -> Result<rustls::RootCertStore, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let fail = |message: String| StoreError::PostgresRootCert {
        path: path.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > MAX_ROOT_CERT_BYTES {
        return Err(fail(format!(
            "{size} bytes, more than a CA file holds ({MAX_ROOT_CERT_BYTES} at most)"
        )));
    }
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not PEM ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("a certificate rustls cannot use ({e})")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no certificate (no BEGIN CERTIFICATE)".into()));
    }
    Ok(roots)
}

/// A one-thread runtime of a store's own that runs its PostgreSQL
/// connections, and what they connect with: a caller's runtime is never
/// the one a connection depends on (`PgStore`, `kv::postgres::PgKv`).
pub struct PgRuntime {
    /// Taken only by `drop`.
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// The URL's settings.
    pub config: Config,
    /// The URL's TLS: every connection is opened with it.
    pub tls: PgTls,
}

impl std::fmt::Debug for PgRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRuntime")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl Drop for PgRuntime {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) inside another's context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgRuntime {
    /// For `url`, its thread named `thread`.
    pub fn new(url: &str, thread: &str) -> Result<Self, StoreError> {
        let config = pg_config(url)?;
        let tls = PgTls::from_url(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread)
            .enable_all()
            .build()
            .map_err(StoreError::Runtime)?;
        Ok(PgRuntime {
            handle: rt.handle().clone(),
            rt: Some(rt),
            config,
            tls,
        })
    }

    /// A new connection, driven on this runtime.
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        self.handle
            .spawn(async move { connect(&config, &tls).await })
            .await
            .map_err(|e| StoreError::Runtime(std::io::Error::other(e)))?
    }
}

/// Opens a connection with `config`'s settings and `tls`'s TLS, and runs
/// it on the current runtime until the client is dropped or it breaks.
pub(crate) async fn connect(config: &Config, tls: &PgTls) -> Result<Client, StoreError> {
    let mut config = config.clone();
    config.ssl_mode(tls.wire_mode(&config));
    let ended = |e: tokio_postgres::Error| {
        tracing::warn!(error = %crate::error::pg_message(&e), "PostgreSQL connection ended");
    };
    match &tls.connector {
        Some(c) if config.get_ssl_mode() != WireMode::Disable => {
            let (client, conn) = config
                .connect(c.clone())
                .await
                .map_err(|e| tls.connect_error(e))?;
            tokio::spawn(async move { conn.await.map_err(ended) });
            Ok(client)
        }
        _ => {
            let (client, conn) = config
                .connect(NoTls)
                .await
                .map_err(|e| tls.connect_error(e))?;
            tokio::spawn(async move { conn.await.map_err(ended) });
            Ok(client)
        }
    }
}

/// `prefer` and `require` without a CA: any certificate, as libpq. The
/// handshake's signatures are still checked (the server holds the key of
/// the certificate it shows).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the certificate chains to a root of `sslrootcert`, whatever
/// host it names.
#[derive(Debug)]
struct SignedBy {
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SignedBy {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_keys_are_taken_out_of_the_url() {
        let s = split(
            "postgres://u:s3cret@db:5433/siaga?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fsiaga%2Fpg%20ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(
            s.root_cert.as_deref(),
            Some(Path::new("/etc/siaga/pg ca.pem"))
        );
        assert_eq!(
            s.rest,
            "postgres://u:s3cret@db:5433/siaga?application_name=x&connect_timeout=5"
        );
        let s = split("postgresql://u@db/siaga?sslmode=require").unwrap();
        assert_eq!(
            (s.mode, s.rest.as_str()),
            (SslMode::Require, "postgresql://u@db/siaga")
        );
        let s = split("postgres://u@db/siaga").unwrap();
        assert_eq!(s.mode, SslMode::Prefer);
        assert!(pg_config("postgres://u@db/siaga?sslmode=verify-ca&sslrootcert=/ca.pem").is_ok());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_next_step() {
        for (url, why) in [
            ("postgres://u@db/x?sslmode=allow", "write sslmode=prefer"),
            ("postgres://u@db/x?sslmode=verify", "is not one of"),
            (
                "postgres://u@db/x?sslmode=verify-full",
                "needs sslrootcert=",
            ),
            ("postgres://u@db/x?sslmode=verify-ca", "needs sslrootcert="),
            (
                "postgres://u@db/x?sslmode=verify-full&sslrootcert=ca.pem",
                "absolute path",
            ),
            (
                "postgres://u@db/x?sslmode=verify-full&sslrootcert=system",
                "name the CA bundle",
            ),
            ("postgres://u@db/x?sslcert=/c.pem", "client certificates"),
            ("postgres://u@db/x?sslrootcert=%2", "two hex digits"),
        ] {
            let err = split(url).err().unwrap();
            assert!(err.contains(why), "{url}: {err}");
        }
        let err = PgTls::from_url(
            "postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sslrootcert /nonexistent/ca.pem: ") && err.contains("name the PEM file"),
            "{err}"
        );
        let empty = tempfile::NamedTempFile::new().unwrap();
        let url = format!(
            "postgres://u@db/x?sslmode=verify-full&sslrootcert={}",
            empty.path().display()
        );
        let err = PgTls::from_url(&url).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
    }

    #[test]
    fn a_ca_file_makes_require_check_the_chain_as_libpq_does() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), ca.pem()).unwrap();
        let at = |q: &str| {
            format!(
                "postgres://u@db/x?{q}&sslrootcert={}",
                file.path().display()
            )
        };
        for (q, mode, verifies) in [
            ("sslmode=prefer", SslMode::Prefer, false),
            ("sslmode=require", SslMode::Require, true),
            ("sslmode=verify-ca", SslMode::VerifyCa, true),
            ("sslmode=verify-full", SslMode::VerifyFull, true),
        ] {
            let tls = PgTls::from_url(&at(q)).unwrap();
            assert_eq!((tls.mode(), tls.verifies), (mode, verifies), "{q}");
        }
        let tls = PgTls::from_url("postgres://u@db/x?sslmode=require").unwrap();
        assert!(tls.checks().contains("not checked"), "{}", tls.checks());
        let tls = PgTls::from_url("postgres://u@db/x?sslmode=disable").unwrap();
        assert!(tls.connector.is_none());
        // Over a unix socket there is no TLS, whatever the mode.
        let unix: Config = "host=/run/postgresql user=u dbname=x".parse().unwrap();
        let tls = PgTls::from_url("postgres://u@db/x?sslmode=require").unwrap();
        assert_eq!(tls.wire_mode(&unix), WireMode::Disable);
        let tcp = pg_config("postgres://u@db/x").unwrap();
        assert_eq!(tls.wire_mode(&tcp), WireMode::Require);
    }
}
