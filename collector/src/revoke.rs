//! Revoked certificates: `siaga-collector revoke-cert` adds a certificate's serial
//! to `<data_dir>/revoked.toml`; the running collector refuses it from the next
//! call on (the list is re-read when the file changes, no restart or reload).
//!
//! Revocation is by serial, so the person can be enrolled again and get a new
//! certificate while the lost laptop's stays refused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// File name of the list in the data directory.
pub const FILE: &str = "revoked.toml";

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// Who the certificate was for (its URI SAN), informative.
    #[serde(default)]
    pub identity: String,
    /// When it was revoked (RFC 3339).
    pub at: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(default)]
    revoked: Vec<Revoked>,
}

/// Serial (lowercase hex) and URI SAN of a DER certificate.
pub fn cert_serial(der: &[u8]) -> Result<(String, String), String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    let serial = hex::encode(cert.tbs_certificate.raw_serial());
    let mut uri = String::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::URI(u) = n {
                uri = u.to_string();
            }
        }
    }
    Ok((serial, uri))
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    Ok(p.contents)
}

fn normalize(serial: &str) -> String {
    serial
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
        .trim_start_matches("00")
        .to_string()
}

fn read(path: &Path) -> Result<ListFile, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => toml::from_str(&t).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ListFile::default()),
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

/// Add a certificate (DER) to the list in `data_dir`; returns the entry.
pub fn revoke(data_dir: &Path, der: &[u8], reason: &str) -> Result<Revoked, String> {
    let (serial, identity) = cert_serial(der)?;
    revoke_serial(data_dir, &serial, &identity, reason)
}

/// Add a serial to the list in `data_dir`.
pub fn revoke_serial(
    data_dir: &Path,
    serial: &str,
    identity: &str,
    reason: &str,
) -> Result<Revoked, String> {
    let serial = normalize(serial);
    if serial.is_empty() {
        return Err("the serial must be hexadecimal, e.g. 3f9a…".into());
    }
    let path = data_dir.join(FILE);
    let mut list = read(&path)?;
    if let Some(r) = list.revoked.iter().find(|r| normalize(&r.serial) == serial) {
        return Ok(r.clone());
    }
    let entry = Revoked {
        serial,
        identity: identity.to_string(),
        at: chrono::Utc::now().to_rfc3339(),
        reason: reason.to_string(),
    };
    list.revoked.push(entry.clone());
    let text = format!(
        "# Certificates the collector refuses; written by `siaga-collector revoke-cert`.\n{}",
        toml::to_string(&list).map_err(|e| e.to_string())?
    );
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    Ok(entry)
}

/// The list as the server checks it, re-read whenever the file changes.
#[derive(Debug)]
pub struct RevocationList {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, Vec<String>)>,
}

impl RevocationList {
    /// The list in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        RevocationList {
            path: data_dir.join(FILE),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    /// `Err(message)` if the certificate (DER) is revoked. A list that cannot be
    /// read refuses nothing new but keeps what it knew (and logs why).
    pub fn check(&self, der: &[u8]) -> Result<(), String> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let Ok(mut cache) = self.cache.lock() else {
            return Ok(());
        };
        if cache.0 != mtime {
            match read(&self.path) {
                Ok(l) => {
                    *cache = (
                        mtime,
                        l.revoked.iter().map(|r| normalize(&r.serial)).collect(),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation list unreadable; keeping the previous one")
                }
            }
        }
        if cache.1.is_empty() {
            return Ok(());
        }
        let (serial, identity) = cert_serial(der)?;
        if cache.1.contains(&normalize(&serial)) {
            return Err(format!(
                "certificate {serial} ({identity}) has been revoked"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType, SerialNumber};

    fn cert(serial: u8, name: &str) -> Vec<u8> {
        let mut p = CertificateParams::default();
        p.serial_number = Some(SerialNumber::from_slice(&[0x7f, serial, 3]));
        p.subject_alt_names = vec![SanType::URI(
            format!("siaga://user/{name}").try_into().expect("uri"),
        )];
        let key = KeyPair::generate().expect("key");
        p.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn a_revoked_certificate_is_refused_from_the_next_check_on() {
        let dir = tempfile::tempdir().expect("tmp");
        let list = RevocationList::new(dir.path());
        let lost = cert(1, "budi");
        let new = cert(2, "budi");
        assert_eq!(list.check(&lost), Ok(()));
        let e = revoke(dir.path(), &lost, "laptop hilang").expect("revoke");
        assert_eq!(e.serial, "7f0103");
        assert_eq!(e.identity, "siaga://user/budi");
        let err = list.check(&lost).expect_err("refused");
        assert_eq!(
            err,
            "certificate 7f0103 (siaga://user/budi) has been revoked"
        );
        assert_eq!(
            list.check(&new),
            Ok(()),
            "a new certificate for the same person works"
        );
        // Twice is once.
        revoke(dir.path(), &lost, "again").expect("revoke");
        let text = std::fs::read_to_string(dir.path().join(FILE)).expect("file");
        assert_eq!(text.matches("[[revoked]]").count(), 1, "{text}");
        revoke_serial(dir.path(), "7F:01:02", "", "").expect("by serial");
        let other = cert(2, "x");
        // 7f0203 is not 7f0102.
        assert_eq!(list.check(&other), Ok(()));
    }

    #[test]
    fn bad_input_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(
            revoke(dir.path(), b"junk", "")
                .expect_err("junk")
                .starts_with("not a certificate")
        );
        assert!(revoke_serial(dir.path(), "xyz", "", "").is_err());
        assert!(pem_to_der("nope").is_err());
    }
}
