//! The collector's small CA: `init` makes the CA and the server certificate,
//! `enroll` issues certificates for agents and people. Identities are carried
//! as URI SANs: `siaga://agent/<opd>/<agent-id>` and `siaga://user/<name>`.
//! Private keys are written mode 0600. No external tools are needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration as ChronoDuration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::config::CollectorConfig;
use crate::error::{ConfigError, IdentityError, PkiError};
use crate::inventory::check_id;
use crate::ledger::{Issued, Kind, Ledger};
use crate::users::User;

/// Who a client certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An agent bound to one OPD.
    Agent {
        /// The OPD it speaks for.
        opd: String,
        /// The agent's id.
        id: String,
    },
    /// A person.
    User {
        /// The user's name.
        name: String,
    },
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

impl Identity {
    /// The URI SAN form of this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Agent { opd, id } => format!("siaga://agent/{opd}/{id}"),
            Identity::User { name } => format!("siaga://user/{name}"),
        }
    }

    /// Parses a `siaga://` URI.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("siaga://")?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["agent", opd, id] if check_id(opd).is_ok() && check_id(id).is_ok() => {
                Some(Identity::Agent {
                    opd: (*opd).to_string(),
                    id: (*id).to_string(),
                })
            }
            ["user", name] if check_id(name).is_ok() => Some(Identity::User {
                name: (*name).to_string(),
            }),
            _ => None,
        }
    }

    /// The identity in a DER certificate (the first `siaga://` URI SAN).
    pub fn from_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?
            .ok_or_else(|| IdentityError::NoIdentity("no subjectAltName".into()))?;
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && uri.starts_with("siaga://")
            {
                return Identity::from_uri(uri)
                    .ok_or_else(|| IdentityError::NoIdentity(format!("malformed {uri:?}")));
            }
        }
        Err(IdentityError::NoIdentity("no siaga:// URI".into()))
    }
}

fn safe_write(path: &Path, data: &str, mode: u32) -> Result<(), PkiError> {
    crate::safe_file::write(path, data.as_bytes(), mode).map_err(|e| PkiError::Io {
        path: e.path,
        error: e.error,
    })
}

/// Writes `data` to `path` with mode 0600 (private keys).
pub fn write_private(path: &Path, data: &str) -> Result<(), PkiError> {
    safe_write(path, data, crate::safe_file::PRIVATE)
}

/// Writes a public file (certificates, configs).
pub fn write_public(path: &Path, data: &str) -> Result<(), PkiError> {
    safe_write(path, data, crate::safe_file::PUBLIC)
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            PkiError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            PkiError::Io {
                path: path.to_path_buf(),
                error,
            }
        }
    })
}

fn mkdir(path: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(path).map_err(|error| PkiError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn validity(params: &mut CertificateParams, days: u32) {
    let from = Utc::now() - ChronoDuration::days(1);
    let to = Utc::now() + ChronoDuration::days(i64::from(days));
    let ymd = |d: chrono::DateTime<Utc>| {
        rcgen::date_time_ymd(
            d.year(),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    params.not_before = ymd(from);
    params.not_after = ymd(to);
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    s.try_into()
        .map_err(|_| PkiError::InvalidName(format!("{s:?} cannot be used in a certificate")))
}

/// The CA: its certificate (PEM) and the issuer that signs with its key.
pub struct Ca {
    /// CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Makes a new CA. Returns it and its key (PEM).
    pub fn generate(common_name: &str) -> Result<(Ca, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Siaga");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 20 * 365);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok((
            Ca {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            },
            key_pem,
        ))
    }

    /// Loads a CA from its certificate and key files.
    pub fn load(cert: &Path, key: &Path) -> Result<Ca, PkiError> {
        let cert_pem = read(cert)?;
        let key = KeyPair::from_pem(&read(key)?)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Ca { cert_pem, issuer })
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        days: u32,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A server certificate for `hosts` and `ips` (plus localhost and 127.0.0.1). Returns (cert, key) PEM.
    pub fn server_cert(
        &self,
        hosts: &[String],
        ips: &[IpAddr],
    ) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().map(String::as_str).unwrap_or("localhost"),
        );
        let mut sans = Vec::new();
        let mut names: Vec<String> = hosts.to_vec();
        names.push("localhost".into());
        for h in names {
            let san = match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(ia5(&h)?),
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        let mut ips = ips.to_vec();
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for ip in ips {
            let san = SanType::IpAddress(ip);
            if !ip.is_unspecified() && !sans.contains(&san) {
                sans.push(san);
            }
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, 10 * 365)
    }

    /// A client certificate carrying `identity`, valid for `days`. Returns (cert, key) PEM.
    pub fn client_cert(
        &self,
        identity: &Identity,
        days: u32,
    ) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::default();
        let cn = match identity {
            Identity::Agent { id, .. } => id.clone(),
            Identity::User { name } => name.clone(),
        };
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Siaga");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![SanType::URI(ia5(&identity.uri())?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, days)
    }
}

/// What `init` wrote.
#[derive(Debug)]
pub struct InitReport {
    /// The collector.toml written.
    pub config: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// `siaga-collector init`: CA, server certificate, collector.toml, inventory.toml, sop.toml.
/// Refuses to overwrite an existing CA.
pub fn init(dir: &Path, listen: SocketAddr, hosts: &[String]) -> Result<InitReport, PkiError> {
    init_with_store(dir, listen, hosts, None)
}

/// [`init`], with `[store] url` set to `store_url` when given (checked
/// before anything is written). A collector.toml holding a URL with a
/// password is readable by its owner only.
pub fn init_with_store(
    dir: &Path,
    listen: SocketAddr,
    hosts: &[String],
    store_url: Option<&str>,
) -> Result<InitReport, PkiError> {
    let store = crate::config::StoreConfig {
        url: store_url.map(str::to_string),
    };
    store
        .check()
        .map_err(|e| PkiError::InvalidName(format!("--store: {e}")))?;
    let secret = store_url
        .and_then(|u| crate::store::pg_config(u).ok())
        .is_some_and(|c| c.get_password().is_some());
    mkdir(dir)?;
    let defaults = CollectorConfig::default();
    let ca_path = dir.join(&defaults.tls.ca);
    if ca_path.exists() {
        return Err(PkiError::InvalidName(format!(
            "{} already exists: refusing to replace the CA of an existing collector",
            ca_path.display()
        )));
    }
    for h in hosts {
        if h.parse::<IpAddr>().is_err() {
            ia5(h)?;
        }
    }
    let (ca, ca_key) = Ca::generate("Siaga collector CA")?;
    let (srv, srv_key) = ca.server_cert(hosts, &[listen.ip()])?;
    let mut files = Vec::new();
    let mut put = |name: &Path, data: &str, private: bool| -> Result<(), PkiError> {
        let p = dir.join(name);
        if private {
            write_private(&p, data)?;
        } else {
            write_public(&p, data)?;
        }
        files.push(p);
        Ok(())
    };
    put(&defaults.tls.ca_key, &ca_key, true)?;
    put(&defaults.tls.ca, &ca.cert_pem, false)?;
    put(&defaults.tls.key, &srv_key, true)?;
    put(&defaults.tls.cert, &srv, false)?;
    put(
        Path::new("collector.toml"),
        &CollectorConfig::example_with_store(listen, store_url),
        secret,
    )?;
    for (name, data) in [
        (
            &defaults.inventory,
            include_str!("../assets/inventory.toml"),
        ),
        (&defaults.sop, include_str!("../assets/sop.toml")),
    ] {
        // Keep an inventory or SOP the office already edited.
        if !dir.join(name).exists() {
            put(name, data, false)?;
        }
    }
    mkdir(&dir.join(&defaults.users))?;
    let data_dir = dir.join(&defaults.data_dir);
    mkdir(&data_dir)?;
    // The ledger starts with the server's certificate.
    let mut ledger = Ledger::load(&data_dir, &dir.join(&defaults.users))?;
    let (serial, not_after) = serial_and_expiry(&srv)?;
    ledger
        .record(Issued {
            kind: Kind::Server,
            name: hosts.first().cloned().unwrap_or_else(|| "localhost".into()),
            opd: None,
            serial,
            issued_at: Some(Utc::now()),
            not_after: Some(not_after),
            seeded: false,
        })
        .map_err(PkiError::InvalidName)?;
    files.push(ledger.path().to_path_buf());
    // The key that signs the audit trails' heads (see `anchor.rs`).
    let audit_key = dir.join(&defaults.audit_key);
    if !audit_key.exists() {
        crate::anchor::AuditKey::create(&audit_key)
            .map_err(|e| PkiError::InvalidName(e.to_string()))?;
        files.push(audit_key);
    }
    Ok(InitReport {
        config: dir.join("collector.toml"),
        files,
    })
}

/// The collector as seen from a client: its URL and the TLS name to verify.
fn collector_endpoint(cfg: &CollectorConfig) -> Result<(String, String), PkiError> {
    let pem = read(&cfg.tls.cert)?;
    let der = rustls_pem_first(&pem).ok_or_else(|| {
        PkiError::InvalidName(format!("{}: no certificate", cfg.tls.cert.display()))
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::InvalidName(format!("{}: {e}", cfg.tls.cert.display())))?;
    let mut first_dns = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                first_dns = Some((*d).to_string());
                break;
            }
        }
    }
    let server_name = first_dns.unwrap_or_else(|| "localhost".into());
    let ip = cfg.listen.ip();
    let host = if ip.is_unspecified() {
        server_name.clone()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Ok((format!("https://{host}:{}", cfg.listen.port()), server_name))
}

fn rustls_pem_first(pem: &str) -> Option<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(p.contents)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The serial (canonical hex) and notAfter of a PEM certificate.
pub fn serial_and_expiry(pem: &str) -> Result<(String, DateTime<Utc>), PkiError> {
    let der = crate::revoke::pem_to_der(pem).map_err(PkiError::InvalidName)?;
    let serial = crate::revoke::serial_of(&der).map_err(PkiError::InvalidName)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::InvalidName(format!("not a certificate: {e}")))?;
    let not_after =
        DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0).unwrap_or_default();
    Ok((serial, not_after))
}

fn agent_toml(id: &str, opd: &str, url: &str, server_name: &str) -> String {
    format!(
        r#"# Siaga agent configuration, written by `siaga-collector enroll agent`.
# Relative paths are relative to the directory of this file.
id = {id}                      # agent id (as in the certificate)
opd = {opd}                     # the OPD it speaks for
collector = {url}   # the collector's uplink URL
server_name = {server_name}            # TLS name to verify
data_dir = "data"                 # spool and cached inventory
interval = "10s"                  # probe cycle until the inventory says otherwise
# metrics_listen = "127.0.0.1:9465" # optional Prometheus endpoint

[tls]
ca = "ca.pem"
cert = "agent.pem"
key = "agent.key"

[spool]
max_bytes = 268435456             # oldest samples dropped (and counted) beyond this
max_age = "7d"
"#,
        id = toml_str(id),
        opd = toml_str(opd),
        url = toml_str(url),
        server_name = toml_str(server_name),
    )
}

fn user_toml(name: &str, url: &str, server_name: &str, time_zone: &str) -> String {
    format!(
        r#"# Siaga CLI configuration, written by `siaga-collector enroll user`.
# Relative paths are relative to the directory of this file.
collector = {url}
server_name = {server_name}
user = {name}     # informative; the identity is the certificate
time_zone = {time_zone}   # the province's time: local times you type are read in it

[tls]
ca = "ca.pem"
cert = "user.pem"
key = "user.key"
"#,
        url = toml_str(url),
        server_name = toml_str(server_name),
        name = toml_str(name),
        time_zone = toml_str(time_zone),
    )
}

/// A certificate just issued and recorded in the ledger.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// Who it speaks for.
    pub identity: Identity,
    /// Its ledger entry (serial, notAfter).
    pub issued: Issued,
    /// Earlier certificates of the same identity (`renew`), still valid
    /// until revoked or expired.
    pub earlier: Vec<Issued>,
}

/// The collector directory's configuration, CA and ledger, with the lock on
/// the data directory held while a certificate is issued and recorded.
struct Issuing {
    cfg: CollectorConfig,
    ca: Ca,
    ledger: Ledger,
    /// The database shared with the other collectors (`[store] url`): the
    /// certificates and users are recorded there too (`trust.rs`).
    shared: Option<crate::kv::Db>,
    _lock: std::fs::File,
}

/// A record the files got and the shared database did not.
fn not_shared(what: &str, e: crate::error::StoreError) -> PkiError {
    PkiError::InvalidName(format!(
        "{what} written to this collector's files but not to the database the other \
         collectors read ({e}); when the database answers, run the command again"
    ))
}

impl Issuing {
    fn open(dir: &Path) -> Result<Issuing, PkiError> {
        let cfg = CollectorConfig::load(&dir.join("collector.toml"))?;
        let ca = Ca::load(&cfg.tls.ca, &cfg.tls.ca_key)?;
        let lock = crate::revoke::lock(&cfg.data_dir).map_err(PkiError::InvalidName)?;
        // Reads every user file: one that does not parse stops here, naming
        // it, instead of losing the serials it holds.
        let mut ledger = Ledger::load(&cfg.data_dir, &cfg.users)?;
        let shared = crate::trust::open(&cfg).map_err(|e| {
            PkiError::InvalidName(format!(
                "[store] url in {}: {e}; nothing was issued",
                dir.join("collector.toml").display()
            ))
        })?;
        if let Some(db) = &shared {
            // Certificates issued with another collector's directory: an
            // agent id is unique across all of them.
            let there = crate::trust::issued(db)
                .map_err(|e| PkiError::InvalidName(format!("{e}; nothing was issued")))?;
            ledger.absorb(there);
        }
        Ok(Issuing {
            cfg,
            ca,
            ledger,
            shared,
            _lock: lock,
        })
    }

    /// Issues a certificate for `identity`, writes its key, certificate and
    /// the CA into `out` (with `KIND.toml` from `config` unless `keep_config`
    /// and one is there), and records it.
    fn issue(
        &mut self,
        identity: &Identity,
        days: u32,
        out: &Path,
        keep_config: bool,
    ) -> Result<Issued, PkiError> {
        let (cert, key) = self.ca.client_cert(identity, days)?;
        let (serial, not_after) = serial_and_expiry(&cert)?;
        let (url, server_name) = collector_endpoint(&self.cfg)?;
        let (stem, config, text) = match identity {
            Identity::Agent { opd, id } => (
                "agent",
                "agent.toml",
                agent_toml(id, opd, &url, &server_name),
            ),
            Identity::User { name } => (
                "user",
                "siaga.toml",
                user_toml(name, &url, &server_name, &self.cfg.calendar.time_zone),
            ),
        };
        mkdir(out)?;
        write_private(&out.join(format!("{stem}.key")), &key)?;
        write_public(&out.join(format!("{stem}.pem")), &cert)?;
        write_public(&out.join("ca.pem"), &self.ca.cert_pem)?;
        if !(keep_config && out.join(config).exists()) {
            write_public(&out.join(config), &text)?;
        }
        let issued = Issued::new(identity, &serial, not_after);
        self.ledger
            .record(issued.clone())
            .map_err(PkiError::InvalidName)?;
        if let Some(db) = &self.shared {
            crate::trust::put_issued(db, &issued)
                .map_err(|e| not_shared("the certificate was issued and", e))?;
        }
        Ok(issued)
    }

    /// Adds `serial` to the user's file, keeping the earlier ones, so that
    /// `revoke-cert --name` still finds them. The OPD, full name, NIP and
    /// jabatan already on file are kept unless told others.
    fn record_user(
        &self,
        name: &str,
        roles: Vec<crate::role::Role>,
        opd: Option<String>,
        serial: &str,
        person: Option<&crate::sop::Person>,
    ) -> Result<(), PkiError> {
        mkdir(&self.cfg.users)?;
        let mut before = crate::users::load_users(&self.cfg.users)?.remove(name);
        if let Some(db) = &self.shared
            && let Some(there) = crate::trust::user(db, name)
                .map_err(|e| PkiError::InvalidName(format!("{e}; the user was not recorded")))?
        {
            // The database's record is the newest (`trust.rs`); the serials
            // of both are kept, so `revoke-cert --name` finds every one.
            let mut there = there;
            for s in before.map(|b| b.certificates).unwrap_or_default() {
                if !there.certificates.contains(&s) {
                    there.certificates.push(s);
                }
            }
            before = Some(there);
        }
        let mut certificates = before
            .as_ref()
            .map(|u| u.certificates.clone())
            .unwrap_or_default();
        certificates.push(serial.to_string());
        let kept = before.unwrap_or_default();
        let person = person.cloned().unwrap_or_default();
        let user = User {
            name: name.to_string(),
            roles,
            // A new certificate keeps the OPD already on file unless told another.
            opd: opd.or(kept.opd),
            certificates,
            full_name: person.full_name.or(kept.full_name),
            nip: person.nip.or(kept.nip),
            jabatan: person.jabatan.or(kept.jabatan),
            // A new certificate does not change the web console password
            // nor its second factor.
            password_hash: kept.password_hash,
            totp_secret: kept.totp_secret,
            totp_last_step: kept.totp_last_step,
        };
        crate::users::write_user(&self.cfg.users, &user).map_err(PkiError::InvalidName)?;
        if let Some(db) = &self.shared {
            crate::trust::put_user(db, &user).map_err(|e| not_shared("the user was", e))?;
        }
        Ok(())
    }
}

/// An agent enrolled with the collector's CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledAgent {
    /// Agent id.
    pub id: String,
    /// The OPD its certificate speaks for.
    pub opd: String,
}

/// The agents enrolled with this collector's CA, sorted by id: every agent
/// in the CA's ledger with a certificate that is not revoked. The one place
/// the collector learns which agents exist before they connect.
pub fn enrolled_agents(cfg: &CollectorConfig) -> Result<Vec<EnrolledAgent>, ConfigError> {
    enrolled_agents_with(cfg, None)
}

/// [`enrolled_agents`], with the certificates issued and revoked with the
/// other collectors' directories, as recorded in the database `shared`
/// with them; one that cannot be read leaves this collector's files'
/// agents, with a warning.
pub fn enrolled_agents_with(
    cfg: &CollectorConfig,
    shared: Option<&crate::kv::Db>,
) -> Result<Vec<EnrolledAgent>, ConfigError> {
    let mut ledger = Ledger::load(&cfg.data_dir, &cfg.users)?;
    let mut revoked: std::collections::BTreeSet<String> = crate::revoke::load(&cfg.data_dir)?
        .into_iter()
        .map(|r| crate::revoke::parse_serial(&r.serial).unwrap_or(r.serial))
        .collect();
    if let Some(db) = shared {
        match (crate::trust::issued(db), crate::trust::revoked_serials(db)) {
            (Ok(issued), Ok(serials)) => {
                ledger.absorb(issued);
                revoked.extend(serials);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "the certificates in the database unreadable; the agents of this collector's ledger only")
            }
        }
    }
    let mut out: std::collections::BTreeMap<String, String> = Default::default();
    for e in &ledger.entries {
        let serial = crate::revoke::parse_serial(&e.serial).unwrap_or_else(|_| e.serial.clone());
        if e.kind != Kind::Agent || revoked.contains(&serial) {
            continue;
        }
        if let Some(opd) = &e.opd {
            // A later certificate of the same id (renew) speaks for its OPD.
            out.insert(e.name.clone(), opd.clone());
        }
    }
    Ok(out
        .into_iter()
        .map(|(id, opd)| EnrolledAgent { id, opd })
        .collect())
}

/// `siaga-collector enroll agent`: writes OUT/agent.toml, agent.key, agent.pem,
/// ca.pem and records the certificate in the ledger. Agent ids are unique
/// across OPDs: an id already issued is refused (`renew` gives an agent a new
/// certificate). `days` overrides `tls.agent_cert_days`.
pub fn enroll_agent(
    dir: &Path,
    opd: &str,
    id: Option<&str>,
    out: &Path,
    days: Option<u32>,
) -> Result<Identity, PkiError> {
    check_id(opd).map_err(|m| PkiError::InvalidName(format!("--opd: {m}")))?;
    let id = id
        .map(str::to_string)
        .unwrap_or_else(|| format!("{opd}-agent"));
    check_id(&id).map_err(|m| PkiError::InvalidName(format!("--id: {m}")))?;
    let mut issuing = Issuing::open(dir)?;
    if let Some(e) = issuing.ledger.of(Kind::Agent, &id).last() {
        return Err(PkiError::InvalidName(format!(
            "--id: agent id {id:?} was already issued (OPD {}, certificate {}; {}); agent ids are unique across OPDs: choose another --id, or give this agent a new certificate with `siaga-collector renew --agent {id}`",
            e.opd.as_deref().unwrap_or("?"),
            e.serial,
            issuing.ledger.path().display()
        )));
    }
    let identity = Identity::Agent {
        opd: opd.to_string(),
        id,
    };
    let days = days.unwrap_or(issuing.cfg.tls.agent_cert_days);
    issuing.issue(&identity, check_days(days)?, out, false)?;
    Ok(identity)
}

/// `siaga-collector enroll user`: writes OUT/siaga.toml, user.key, user.pem, ca.pem and
/// records the user with its roles in the collector's users directory, and
/// the certificate in the ledger. `days` overrides `tls.user_cert_days`.
pub fn enroll_user(
    dir: &Path,
    name: &str,
    roles: &[String],
    opd: Option<&str>,
    out: &Path,
    days: Option<u32>,
) -> Result<Identity, PkiError> {
    enroll_person(
        dir,
        name,
        roles,
        opd,
        &crate::sop::Person::default(),
        out,
        days,
    )
}

/// [`enroll_user`] with what documents print where the person signs: full
/// name, NIP (18 digits, checked) and jabatan, written to their user file.
pub fn enroll_person(
    dir: &Path,
    name: &str,
    roles: &[String],
    opd: Option<&str>,
    person: &crate::sop::Person,
    out: &Path,
    days: Option<u32>,
) -> Result<Identity, PkiError> {
    check_id(name).map_err(|m| PkiError::InvalidName(format!("--name: {m}")))?;
    let person = check_person(person)?;
    if name == crate::sop::workflow::SYSTEM_USER {
        // The trail records the collector's own actions under this name,
        // and the workflow lets it void an untouched ticket it opened.
        return Err(PkiError::InvalidName(format!(
            "--name: {name:?} is the collector's own name in the audit trail; choose another"
        )));
    }
    let cfg = CollectorConfig::load(&dir.join("collector.toml"))?;
    let known = crate::users::known_roles(&cfg.sop);
    let roles = roles
        .iter()
        .map(|r| {
            crate::role::Role::parse(r, &known).map_err(|_| {
                PkiError::InvalidName(format!(
                    "--role {r:?} is not a role of the SOP ({})",
                    crate::role::join(&known, ", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opd = check_user_opd(&cfg, name, &roles, opd)?;
    let mut issuing = Issuing::open(dir)?;
    let identity = Identity::User {
        name: name.to_string(),
    };
    let days = days.unwrap_or(issuing.cfg.tls.user_cert_days);
    let issued = issuing.issue(&identity, check_days(days)?, out, false)?;
    issuing.record_user(name, roles, opd, &issued.serial, Some(&person))?;
    Ok(identity)
}

/// The person's details as given on the command line, trimmed and checked:
/// no empty or multi-line text, an NIP of 18 digits.
fn check_person(p: &crate::sop::Person) -> Result<crate::sop::Person, PkiError> {
    let text =
        |flag: &str, v: &Option<String>, example: &str| -> Result<Option<String>, PkiError> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some(t) if t.is_empty() || t.chars().any(char::is_control) => {
                    Err(PkiError::InvalidName(format!(
                        "{flag}: must be one line of text, e.g. {flag} {example:?}"
                    )))
                }
                Some(t) => Ok(Some(t.to_string())),
            }
        };
    let nip = match p.nip.as_deref() {
        None => None,
        Some(n) => {
            crate::users::check_nip(n).map_err(|m| PkiError::InvalidName(format!("--nip: {m}")))?;
            Some(crate::users::normalise_nip(n))
        }
    };
    Ok(crate::sop::Person {
        full_name: text("--full-name", &p.full_name, "Budi Santoso, S.Kom.")?,
        nip,
        jabatan: text("--jabatan", &p.jabatan, "Pranata Komputer Ahli Pertama")?,
    })
}

/// `--opd` of `enroll user`: an OPD of the inventory; required when every
/// role the person gets is an OPD role (a `pemohon` must belong somewhere).
/// Without `--opd`, an OPD already on file for the person is kept.
fn check_user_opd(
    cfg: &CollectorConfig,
    name: &str,
    roles: &[crate::role::Role],
    opd: Option<&str>,
) -> Result<Option<String>, PkiError> {
    let inventory = crate::inventory::Inventory::load(&cfg.inventory)?;
    match opd {
        Some(opd) if !inventory.opds.contains_key(opd) => Err(PkiError::InvalidName(format!(
            "--opd {opd:?} is not an OPD of {} ({})",
            cfg.inventory.display(),
            inventory
                .opds
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Some(opd) => Ok(Some(opd.to_string())),
        None => {
            let on_file = crate::users::load_users(&cfg.users)
                .ok()
                .and_then(|mut u| u.remove(name))
                .and_then(|u| u.opd);
            if on_file.is_none() && crate::users::only_opd_roles(roles) {
                return Err(PkiError::InvalidName(format!(
                    "--opd is needed: {} sees only its own OPD's devices and tickets \
                     (e.g. --opd {})",
                    crate::role::join(roles, ", "),
                    inventory
                        .opds
                        .keys()
                        .next()
                        .map_or("dinkes", String::as_str)
                )));
            }
            Ok(None)
        }
    }
}

fn check_days(days: u32) -> Result<u32, PkiError> {
    if (1..=3650).contains(&days) {
        Ok(days)
    } else {
        Err(PkiError::InvalidName(format!(
            "--days {days}: a certificate lifetime is 1 to 3650 days"
        )))
    }
}

/// Whom `renew` gives a new certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewWho {
    /// An agent; `opd` is needed only for an agent enrolled before the ledger.
    Agent {
        /// Agent id.
        id: String,
        /// Its OPD, when the ledger does not know the agent.
        opd: Option<String>,
    },
    /// A person (keeps their roles).
    User {
        /// User name.
        name: String,
    },
}

/// `siaga-collector renew`: a new certificate (and key) for an agent or a
/// person already enrolled, into OUT (a `agent.toml`/`siaga.toml` there is
/// kept). The earlier certificates stay valid until they expire or are
/// revoked, so the new one can be put in place first.
pub fn renew(
    dir: &Path,
    who: &RenewWho,
    out: &Path,
    days: Option<u32>,
) -> Result<Enrolled, PkiError> {
    let mut issuing = Issuing::open(dir)?;
    let (identity, earlier, days) = match who {
        RenewWho::Agent { id, opd } => {
            check_id(id).map_err(|m| PkiError::InvalidName(format!("--agent: {m}")))?;
            let earlier: Vec<Issued> = issuing
                .ledger
                .of(Kind::Agent, id)
                .into_iter()
                .cloned()
                .collect();
            let known = earlier.iter().rev().find_map(|e| e.opd.clone());
            let opd = match (known, opd) {
                (Some(k), Some(o)) if &k != o => {
                    return Err(PkiError::InvalidName(format!(
                        "--opd: agent {id:?} speaks for OPD {k:?}, not {o:?}; agent ids are unique across OPDs"
                    )));
                }
                (Some(k), _) => k,
                (None, Some(o)) => {
                    check_id(o).map_err(|m| PkiError::InvalidName(format!("--opd: {m}")))?;
                    o.clone()
                }
                (None, None) => {
                    return Err(PkiError::InvalidName(format!(
                        "--agent: no certificate of agent {id:?} in {} (enrolled before the ledger?): give its --opd",
                        issuing.ledger.path().display()
                    )));
                }
            };
            let days = days.unwrap_or(issuing.cfg.tls.agent_cert_days);
            (
                Identity::Agent {
                    opd,
                    id: id.clone(),
                },
                earlier,
                days,
            )
        }
        RenewWho::User { name } => {
            check_id(name).map_err(|m| PkiError::InvalidName(format!("--user: {m}")))?;
            let earlier: Vec<Issued> = issuing
                .ledger
                .of(Kind::User, name)
                .into_iter()
                .cloned()
                .collect();
            let days = days.unwrap_or(issuing.cfg.tls.user_cert_days);
            (Identity::User { name: name.clone() }, earlier, days)
        }
    };
    let roles = match &identity {
        Identity::User { name } => Some(
            crate::users::load_users(&issuing.cfg.users)?
                .remove(name)
                .map(|u| u.roles)
                .ok_or_else(|| {
                    PkiError::InvalidName(format!(
                        "--user: no user {name:?} in {} (enroll them with `siaga-collector enroll user`)",
                        issuing.cfg.users.display()
                    ))
                })?,
        ),
        Identity::Agent { .. } => None,
    };
    let issued = issuing.issue(&identity, check_days(days)?, out, true)?;
    if let (Identity::User { name }, Some(roles)) = (&identity, roles) {
        issuing.record_user(name, roles, None, &issued.serial, None)?;
    }
    Ok(Enrolled {
        identity,
        issued,
        earlier,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::*;

    fn der(pem: &str) -> Vec<u8> {
        rustls_pem_first(pem).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn verify_chain(leaf_pem: &str, ca_pem: &str) {
        let ca_der = der(ca_pem);
        let leaf_der = der(leaf_pem);
        let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key()))
            .expect("signed by the CA");
        assert!(ca.is_ca());
    }

    #[test]
    fn init_and_enroll_write_chained_certs_with_identities() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("collector");
        let report = init(
            &dir,
            "198.18.0.1:7443".parse().unwrap(),
            &["kominfo.example".into()],
        )
        .unwrap();
        assert!(report.config.exists());
        for f in ["ca.key", "server.key"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let srv_pem = std::fs::read_to_string(dir.join("server.pem")).unwrap();
        verify_chain(&srv_pem, &ca_pem);
        let srv_der = der(&srv_pem);
        let (_, srv) = parse_x509_certificate(&srv_der).unwrap();
        let sans: Vec<String> = srv
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                }
                other => other.to_string(),
            })
            .collect();
        for want in ["kominfo.example", "localhost", "198.18.0.1", "127.0.0.1"] {
            assert!(sans.iter().any(|s| s.contains(want)), "{want} in {sans:?}");
        }
        // The inventory and SOP the collector starts with.
        assert!(crate::inventory::Inventory::load(&dir.join("inventory.toml")).is_ok());
        assert!(dir.join("sop.toml").exists());
        // A second init does not replace the CA.
        assert!(init(&dir, "127.0.0.1:1".parse().unwrap(), &[]).is_err());

        let out = tmp.path().join("agent");
        let id = enroll_agent(&dir, "demo", None, &out, None).unwrap();
        assert_eq!(
            id,
            Identity::Agent {
                opd: "demo".into(),
                id: "demo-agent".into()
            }
        );
        assert_eq!(mode(&out.join("agent.key")), 0o600);
        let agent_pem = std::fs::read_to_string(out.join("agent.pem")).unwrap();
        verify_chain(&agent_pem, &ca_pem);
        assert_eq!(Identity::from_der(&der(&agent_pem)).unwrap(), id);
        // The collector knows the agent is enrolled before it ever connects;
        // once its certificate is revoked it is not.
        let cfg = CollectorConfig::load(&dir.join("collector.toml")).unwrap();
        let enrolled = enrolled_agents(&cfg).unwrap();
        assert_eq!(
            enrolled
                .iter()
                .map(|a| (a.id.as_str(), a.opd.as_str()))
                .collect::<Vec<_>>(),
            [("demo-agent", "demo")]
        );
        let der_agent = der(&agent_pem);
        crate::revoke::revoke(&cfg.data_dir, &der_agent, "lost").unwrap();
        assert!(enrolled_agents(&cfg).unwrap().is_empty());
        let agent_toml = std::fs::read_to_string(out.join("agent.toml")).unwrap();
        let v: toml::Table = toml::from_str(&agent_toml).unwrap();
        assert_eq!(v["collector"].as_str(), Some("https://198.18.0.1:7443"));
        assert_eq!(v["server_name"].as_str(), Some("kominfo.example"));
        assert_eq!(v["opd"].as_str(), Some("demo"));
        assert_eq!(std::fs::read_to_string(out.join("ca.pem")).unwrap(), ca_pem);

        let uout = tmp.path().join("budi");
        let uid = enroll_user(
            &dir,
            "budi",
            &["helpdesk".into(), "tim_teknis".into()],
            None,
            &uout,
            None,
        )
        .unwrap();
        assert_eq!(mode(&uout.join("user.key")), 0o600);
        let user_pem = std::fs::read_to_string(uout.join("user.pem")).unwrap();
        verify_chain(&user_pem, &ca_pem);
        assert_eq!(Identity::from_der(&der(&user_pem)).unwrap(), uid);
        let users = crate::users::load_users(&dir.join("users")).unwrap();
        assert_eq!(users["budi"].roles, ["helpdesk", "tim_teknis"]);
        assert!(enroll_user(&dir, "eve", &["wizard".into()], None, &uout, None).is_err());
    }

    fn days_left(pem: &str) -> i64 {
        let (_, t) = serial_and_expiry(pem).unwrap();
        (t - Utc::now()).num_days()
    }

    #[test]
    fn the_ledger_records_each_certificate_and_agent_ids_are_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        init(&dir, "127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        let data = dir.join("data");
        let a1 = tmp.path().join("a1");
        enroll_agent(&dir, "dinkes", None, &a1, None).unwrap();
        let pem = std::fs::read_to_string(a1.join("agent.pem")).unwrap();
        // Two years for an agent, one for a person, unless configured.
        assert!(
            (729..=730).contains(&days_left(&pem)),
            "{}",
            days_left(&pem)
        );
        let u = tmp.path().join("u");
        enroll_user(&dir, "budi", &["helpdesk".into()], None, &u, None).unwrap();
        let upem = std::fs::read_to_string(u.join("user.pem")).unwrap();
        assert!((364..=365).contains(&days_left(&upem)));
        enroll_user(&dir, "siti", &["helpdesk".into()], None, &u, Some(7)).unwrap();
        assert!((6..=7).contains(&days_left(
            &std::fs::read_to_string(u.join("user.pem")).unwrap()
        )));
        assert!(enroll_user(&dir, "x", &["helpdesk".into()], None, &u, Some(0)).is_err());

        let ledger = Ledger::load(&data, &dir.join("users")).unwrap();
        let (serial, not_after) = serial_and_expiry(&pem).unwrap();
        let e = ledger.by_serial(&serial).unwrap();
        assert_eq!(
            (e.kind, e.name.as_str(), e.opd.as_deref(), e.not_after),
            (Kind::Agent, "dinkes-agent", Some("dinkes"), Some(not_after))
        );
        assert_eq!(ledger.of(Kind::Server, "localhost").len(), 1);
        assert_eq!(ledger.of(Kind::User, "budi").len(), 1);

        // The same id again, in this OPD or another, is refused.
        for opd in ["dinkes", "bappeda"] {
            let e = enroll_agent(
                &dir,
                opd,
                Some("dinkes-agent"),
                &tmp.path().join("a2"),
                None,
            )
            .unwrap_err();
            assert!(matches!(e, PkiError::InvalidName(_)), "{e}");
            assert!(e.to_string().contains("already issued"), "{e}");
        }
        assert!(!tmp.path().join("a2").exists());

        // Renewing gives the same agent a new certificate; its config stays.
        std::fs::write(a1.join("agent.toml"), "# edited by the OPD\n").unwrap();
        let r = renew(
            &dir,
            &RenewWho::Agent {
                id: "dinkes-agent".into(),
                opd: None,
            },
            &a1,
            None,
        )
        .unwrap();
        assert_eq!(r.earlier.len(), 1);
        assert_ne!(r.issued.serial, serial);
        let new_pem = std::fs::read_to_string(a1.join("agent.pem")).unwrap();
        assert_eq!(serial_and_expiry(&new_pem).unwrap().0, r.issued.serial);
        assert_eq!(
            std::fs::read_to_string(a1.join("agent.toml")).unwrap(),
            "# edited by the OPD\n"
        );
        let e = renew(
            &dir,
            &RenewWho::Agent {
                id: "dinkes-agent".into(),
                opd: Some("bappeda".into()),
            },
            &a1,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("speaks for OPD"), "{e}");
        // A person renewed keeps their roles and every serial.
        renew(
            &dir,
            &RenewWho::User {
                name: "budi".into(),
            },
            &u,
            None,
        )
        .unwrap();
        let users = crate::users::load_users(&dir.join("users")).unwrap();
        assert_eq!(users["budi"].roles, ["helpdesk"]);
        assert_eq!(users["budi"].certificates.len(), 2);
        assert!(
            renew(
                &dir,
                &RenewWho::User {
                    name: "nobody".into()
                },
                &u,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn a_person_enrolled_with_name_nip_and_jabatan_keeps_them_when_renewed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        init(&dir, "127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        let u = tmp.path().join("u");
        let person = |nip: &str| crate::sop::Person {
            full_name: Some(" Budi Santoso, S.Kom. ".into()),
            nip: Some(nip.into()),
            jabatan: Some("Pranata Komputer Ahli Pertama".into()),
        };
        for (nip, why) in [
            ("19800101200501100", "18 digits"),
            ("1980010120050110AB", "18 digits"),
            ("198013012005011001", "date of birth"),
        ] {
            let e = enroll_person(
                &dir,
                "budi",
                &["tim_teknis".into()],
                None,
                &person(nip),
                &u,
                None,
            )
            .unwrap_err();
            assert!(matches!(e, PkiError::InvalidName(_)), "{e:?}");
            let e = e.to_string();
            assert!(e.starts_with("--nip: ") && e.contains(why), "{e}");
            assert!(!u.exists(), "nothing issued for a bad NIP");
        }
        let e = enroll_person(
            &dir,
            "budi",
            &["tim_teknis".into()],
            None,
            &crate::sop::Person {
                jabatan: Some(" ".into()),
                ..Default::default()
            },
            &u,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("--jabatan: "), "{e}");
        enroll_person(
            &dir,
            "budi",
            &["tim_teknis".into()],
            None,
            &person("19800101 200501 1 001"),
            &u,
            None,
        )
        .unwrap();
        renew(
            &dir,
            &RenewWho::User {
                name: "budi".into(),
            },
            &u,
            None,
        )
        .unwrap();
        let users = crate::users::load_users(&dir.join("users")).unwrap();
        let b = &users["budi"];
        assert_eq!(b.full_name.as_deref(), Some("Budi Santoso, S.Kom."));
        assert_eq!(b.nip.as_deref(), Some("198001012005011001"));
        assert_eq!(b.jabatan.as_deref(), Some("Pranata Komputer Ahli Pertama"));
        assert_eq!(b.certificates.len(), 2, "renewed, the details kept");
    }

    #[test]
    fn the_collectors_own_trail_name_cannot_be_enrolled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        init(&dir, "127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        let e = enroll_user(&dir, "siaga", &[], None, &tmp.path().join("u"), None).unwrap_err();
        assert!(matches!(e, PkiError::InvalidName(_)), "{e:?}");
        assert!(e.to_string().contains("the collector's own name"), "{e}");
        assert!(!tmp.path().join("u").exists());
    }

    #[test]
    fn a_broken_user_file_fails_the_enrolment_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        init(&dir, "127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        let u = tmp.path().join("u");
        enroll_user(&dir, "budi", &["helpdesk".into()], None, &u, None).unwrap();
        let first = crate::users::load_users(&dir.join("users")).unwrap()["budi"]
            .certificates
            .clone();
        std::fs::write(
            dir.join("users").join("siti.toml"),
            "name = \"siti\"\nroles = [\n",
        )
        .unwrap();
        let e = enroll_user(&dir, "budi", &["helpdesk".into()], None, &u, None).unwrap_err();
        assert!(matches!(e, PkiError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("siti.toml"), "{e}");
        // budi's earlier serials are still there to be revoked.
        std::fs::remove_file(dir.join("users").join("siti.toml")).unwrap();
        let users = crate::users::load_users(&dir.join("users")).unwrap();
        assert_eq!(users["budi"].certificates, first);
    }

    #[test]
    fn identity_uris_round_trip_and_reject_garbage() {
        for id in [
            Identity::Agent {
                opd: "a".into(),
                id: "x-1".into(),
            },
            Identity::User {
                name: "budi".into(),
            },
        ] {
            assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        }
        for bad in [
            "siaga://agent/a",
            "siaga://user/",
            "siaga://agent/A/../x",
            "http://user/x",
            "siaga://user/a/b",
        ] {
            assert_eq!(Identity::from_uri(bad), None, "{bad}");
        }
    }
}
