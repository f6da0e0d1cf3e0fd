//! Revoked certificates: `siaga-collector revoke-cert` adds a certificate's serial
//! to `<data_dir>/revoked.toml`; the running collector refuses it from the next
//! call on and ends the streams already open with it within a second (the
//! list is re-read when the file changes, no restart or reload).
//!
//! On PostgreSQL (`[store] url`) the serial is also written to the database
//! that every collector on it reads each second ([`crate::trust`]): a
//! certificate revoked with one collector's directory is refused by all.
//!
//! Revocation is by serial, so the person can be enrolled again and get a new
//! certificate while the lost laptop's stays refused.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ConfigError;
use siaga_proto::cert::canonical_serial as canonical;
pub use siaga_proto::cert::{cert_serial, pem_to_der, serial_of};

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

/// A serial number as typed by a person, refused unless it is one of the
/// forms tools print: plain hex (`5ab3…`), colon-separated hex bytes
/// (`5A:B3:…`, as `openssl x509 -text` prints) or hex with a `0x` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{given:?} is not a serial number: give hex digits (5ab3…), hex bytes separated by colons (5A:B3:…) or 0x followed by hex digits"
)]
pub struct BadSerial {
    /// What was given.
    pub given: String,
}

/// Parses a serial in one of the accepted forms into its canonical form.
pub fn parse_serial(given: &str) -> Result<String, BadSerial> {
    let bad = || BadSerial {
        given: given.to_string(),
    };
    let s = given.trim();
    let hex_digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_hexdigit());
    let digits = if let Some(rest) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if !hex_digits(rest) {
            return Err(bad());
        }
        rest.to_string()
    } else if s.contains(':') {
        let groups: Vec<&str> = s.split(':').collect();
        if !groups.iter().all(|g| g.len() == 2 && hex_digits(g)) {
            return Err(bad());
        }
        groups.concat()
    } else if hex_digits(s) {
        s.to_string()
    } else {
        return Err(bad());
    };
    // 20 octets is the longest serial RFC 5280 allows; a little slack for a
    // leading zero byte.
    if digits.len() > 42 {
        return Err(bad());
    }
    Ok(canonical(&digits))
}

fn read_checked(path: &Path) -> Result<ListFile, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => crate::config::parse_toml(path, &t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ListFile::default()),
        Err(error) => Err(ConfigError::Read {
            file: path.to_path_buf(),
            error,
        }),
    }
}

fn read(path: &Path) -> Result<ListFile, String> {
    read_checked(path).map_err(|e| e.to_string())
}

/// The revoked certificates listed in `data_dir` (none when there is no list).
pub fn load(data_dir: &Path) -> Result<Vec<Revoked>, ConfigError> {
    read_checked(&data_dir.join(FILE)).map(|l| l.revoked)
}

/// Holds the lock that serialises changes to the files of `data_dir` that
/// several administrative commands may change at once (released on drop).
pub fn lock(data_dir: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let path = data_dir.join(".admin.lock");
    let f =
        crate::safe_file::append(&path, crate::safe_file::PRIVATE).map_err(|e| e.to_string())?;
    f.lock()
        .map_err(|e| format!("{}: cannot lock: {e}", path.display()))?;
    Ok(f)
}

fn write_list(data_dir: &Path, list: &ListFile) -> Result<(), String> {
    let text = format!(
        "# Certificates the collector refuses; written by `siaga-collector revoke-cert`.\n# The list only grows (`restore` merges, never replaces it).\n{}",
        toml::to_string(list).map_err(|e| e.to_string())?
    );
    crate::safe_file::write(
        &data_dir.join(FILE),
        text.as_bytes(),
        crate::safe_file::PUBLIC,
    )
    .map_err(|e| e.to_string())
}

/// Add a certificate (DER) to the list in `data_dir`; returns the entry.
pub fn revoke(data_dir: &Path, der: &[u8], reason: &str) -> Result<Revoked, String> {
    let (serial, identity) = cert_serial(der)?;
    revoke_serial(data_dir, &serial, &identity, reason)
}

/// Add a serial (any accepted form, see [`parse_serial`]) to the list in
/// `data_dir`. Revoking a revoked serial returns its entry unchanged.
pub fn revoke_serial(
    data_dir: &Path,
    serial: &str,
    identity: &str,
    reason: &str,
) -> Result<Revoked, String> {
    let serial = parse_serial(serial).map_err(|e| e.to_string())?;
    let _lock = lock(data_dir)?;
    let path = data_dir.join(FILE);
    let mut list = read(&path)?;
    if let Some(r) = list.revoked.iter().find(|r| canonical(&r.serial) == serial) {
        return Ok(r.clone());
    }
    let entry = Revoked {
        serial,
        identity: identity.to_string(),
        at: chrono::Utc::now().to_rfc3339(),
        reason: reason.to_string(),
    };
    list.revoked.push(entry.clone());
    write_list(data_dir, &list)?;
    Ok(entry)
}

/// Merges `from` (e.g. the list of a backup being restored) into the list in
/// `data_dir`: the list only grows. Returns the entries that were added.
pub fn merge(data_dir: &Path, from: &[Revoked]) -> Result<Vec<Revoked>, String> {
    let _lock = lock(data_dir)?;
    let mut list = read(&data_dir.join(FILE))?;
    let mut added = Vec::new();
    for r in from {
        let serial = canonical(&r.serial);
        if !list
            .revoked
            .iter()
            .any(|have| canonical(&have.serial) == serial)
        {
            list.revoked.push(r.clone());
            added.push(r.clone());
        }
    }
    if !added.is_empty() {
        write_list(data_dir, &list)?;
    }
    Ok(added)
}

/// Identifies one version of the file: a change by rename (a new inode), a
/// change in place (mtime, size) or its removal all differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    mtime: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        mtime: m.modified().ok(),
        len: m.len(),
    })
}

/// The set of revoked serials (canonical form).
pub type Serials = Arc<HashSet<String>>;

/// The list as the server checks it, re-read whenever the file changes.
/// Open streams subscribe to it ([`RevocationList::subscribe`]) and end when
/// their certificate appears in it; [`RevocationList::refresh`] is called on
/// every check and by a timer, so a revocation reaches open streams within
/// the timer's period without any call.
#[derive(Debug)]
pub struct RevocationList {
    path: PathBuf,
    seen: Mutex<Option<Stamp>>,
    serials: watch::Sender<Serials>,
    /// The database shared with the other collectors, when there is one.
    shared: Option<crate::kv::Db>,
}

impl RevocationList {
    /// The list in `data_dir`. A list that exists but cannot be read is an
    /// error: the collector does not start without knowing what it must refuse.
    pub fn open(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(FILE);
        let seen = stamp(&path);
        let list = read(&path)?;
        let (serials, _) = watch::channel(Arc::new(
            list.revoked.iter().map(|r| canonical(&r.serial)).collect(),
        ));
        Ok(RevocationList {
            path,
            seen: Mutex::new(seen),
            serials,
            shared: None,
        })
    }

    /// The list of the file and of the database shared with the other
    /// collectors ([`crate::trust::REVOKED`]). The file's serials are added
    /// to the database first, so that one revoked on this collector alone
    /// (before it shared a database) is refused by every collector too. A
    /// database that cannot be read is an error, as an unreadable file is.
    pub fn with_shared(mut self, db: crate::kv::Db) -> Result<Self, String> {
        let mine = load(self.path.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
        let shared =
            |e: crate::error::StoreError| format!("the revoked certificates in the database: {e}");
        let added = crate::trust::put_all_revoked(&db, &mine).map_err(shared)?;
        if added > 0 {
            tracing::info!(
                added,
                "revoked certificates of this collector's list added to the database"
            );
        }
        self.shared = Some(db);
        self.refresh_shared().map_err(shared)?;
        Ok(self)
    }

    /// Adds the serials revoked in the shared database (no database: nothing
    /// to do). Called each second by the server; on an error the serials
    /// known so far stay revoked.
    pub fn refresh_shared(&self) -> Result<(), crate::error::StoreError> {
        let Some(db) = &self.shared else {
            return Ok(());
        };
        let there = crate::trust::revoked_serials(db)?;
        if self.add(there) {
            tracing::info!(
                revoked = self.serials.borrow().len(),
                "revoked certificates changed in the database"
            );
        }
        Ok(())
    }

    /// Adds `serials` to those revoked, in one step (the file's and the
    /// database's refreshes never undo each other); whether any was new.
    fn add(&self, serials: impl IntoIterator<Item = String>) -> bool {
        let serials: Vec<String> = serials.into_iter().collect();
        self.serials.send_if_modified(|known| {
            if serials.iter().all(|s| known.contains(s)) {
                return false;
            }
            let mut set: HashSet<String> = known.iter().cloned().collect();
            set.extend(serials);
            *known = Arc::new(set);
            true
        })
    }

    /// Re-reads the file if it changed. A file that cannot be read keeps the
    /// serials known so far (the list only grows) and is logged once per change.
    pub fn refresh(&self) {
        let now = stamp(&self.path);
        // The stamp is a plain value: a panic elsewhere cannot leave it half
        // written, so a poisoned lock is still usable.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return;
        }
        *seen = now;
        match read(&self.path) {
            // Only added to: never un-revoke what was seen revoked while running.
            Ok(l) => {
                if self.add(l.revoked.iter().map(|r| canonical(&r.serial))) {
                    tracing::info!(
                        revoked = self.serials.borrow().len(),
                        "revocation list changed"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation list unreadable; the serials known so far stay revoked")
            }
        }
    }

    /// Changes of the revoked serials.
    pub fn subscribe(&self) -> watch::Receiver<Serials> {
        self.serials.subscribe()
    }

    /// Whether `serial` (canonical form, see [`serial_of`]) is revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.refresh();
        self.serials.borrow().contains(serial)
    }

    /// `Err(message)` if the certificate (DER) is revoked or cannot be read
    /// (fails closed).
    pub fn check(&self, der: &[u8]) -> Result<(), String> {
        let (serial, identity) = cert_serial(der)?;
        if self.is_revoked(&canonical(&serial)) {
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
        let list = RevocationList::open(dir.path()).expect("list");
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

    #[test]
    fn serials_are_accepted_in_the_forms_tools_print_and_nothing_else() {
        for (given, want) in [
            ("5ab3c4", "5ab3c4"),
            ("5AB3C4", "5ab3c4"),
            ("5A:B3:C4", "5ab3c4"),
            ("05:ab:b3", "5abb3"),
            ("0x5AB3", "5ab3"),
            ("0X05ab3", "5ab3"),
            ("  7f0103\n", "7f0103"),
            ("00", "0"),
        ] {
            assert_eq!(parse_serial(given).as_deref(), Ok(want), "{given:?}");
        }
        // What the old normaliser turned into another serial and "revoked".
        for given in [
            "serial=5AB3",
            "0x",
            "",
            "5A:B3:",
            "5A::B3",
            "5:AB",
            "0x5A:B3",
            "5ab3g",
            "5a b3",
            "-5ab3",
            "0x-5ab3",
            &"ab".repeat(40),
        ] {
            let e = parse_serial(given).expect_err(given);
            assert!(e.to_string().contains("not a serial number"), "{e}");
        }
        let dir = tempfile::tempdir().expect("tmp");
        assert!(revoke_serial(dir.path(), "serial=5AB3", "", "").is_err());
        assert!(!dir.path().join(FILE).exists(), "nothing was revoked");
    }

    #[test]
    fn a_symlink_planted_at_the_old_temp_path_is_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let victim = tmp.path().join("shadow");
        std::fs::write(&victim, "root:x:0:0\n").expect("victim");
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("data");
        std::os::unix::fs::symlink(&victim, data.join("revoked.toml.tmp")).expect("link");
        revoke_serial(&data, "7f01", "siaga://user/budi", "lost").expect("revoke");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "root:x:0:0\n",
            "the file behind the link is unchanged"
        );
        assert_eq!(load(&data).expect("list").len(), 1);
        // Same for a user file's old temp name.
        let users = tmp.path().join("users");
        std::fs::create_dir(&users).expect("users");
        std::os::unix::fs::symlink(&victim, users.join(".budi.toml.tmp")).expect("link");
        crate::users::write_user(
            &users,
            &crate::users::User {
                name: "budi".into(),
                roles: vec![crate::role::Role::HELPDESK],
                ..Default::default()
            },
        )
        .expect("write");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "root:x:0:0\n"
        );
    }

    #[test]
    fn merge_only_adds_and_says_what() {
        let dir = tempfile::tempdir().expect("tmp");
        revoke_serial(dir.path(), "aa01", "siaga://user/budi", "now").expect("revoke");
        let archived = vec![
            Revoked {
                serial: "00aa01".into(),
                identity: "siaga://user/budi".into(),
                at: "2026-01-01T00:00:00Z".into(),
                reason: "old".into(),
            },
            Revoked {
                serial: "bb02".into(),
                identity: "siaga://agent/a/a-agent".into(),
                at: "2026-01-01T00:00:00Z".into(),
                reason: "stolen".into(),
            },
        ];
        let added = merge(dir.path(), &archived).expect("merge");
        assert_eq!(added, archived[1..]);
        let all: Vec<String> = load(dir.path())
            .expect("load")
            .into_iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(all, ["aa01", "bb02"]);
        assert!(merge(dir.path(), &archived).expect("again").is_empty());
    }

    #[test]
    fn the_check_fails_closed_and_streams_hear_of_a_revocation() {
        let dir = tempfile::tempdir().expect("tmp");
        let list = Arc::new(RevocationList::open(dir.path()).expect("list"));
        let mut rx = list.subscribe();
        let lost = cert(1, "budi");
        revoke(dir.path(), &lost, "").expect("revoke");
        list.refresh();
        assert!(rx.has_changed().expect("open"));
        assert!(rx.borrow_and_update().contains("7f0103"));
        // A panic while the lock is held does not open the door.
        let l = list.clone();
        let _ = std::thread::spawn(move || {
            let _g = l.seen.lock();
            panic!("poison");
        })
        .join();
        assert!(list.seen.is_poisoned());
        assert!(list.check(&lost).is_err());
        revoke(dir.path(), &cert(9, "eve"), "").expect("revoke");
        assert!(list.check(&cert(9, "eve")).is_err(), "still re-read");
        // A garbled list keeps every serial known so far.
        std::fs::write(dir.path().join(FILE), "garbage = [").expect("write");
        assert!(list.check(&lost).is_err());
        assert!(list.check(&cert(9, "eve")).is_err());
        // An unparsable certificate is refused.
        assert!(list.check(b"junk").is_err());
        // A collector does not start on a list it cannot read.
        assert!(RevocationList::open(dir.path()).is_err());
    }
}
