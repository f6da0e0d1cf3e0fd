//! The CA's ledger: every certificate `init`, `enroll` and `renew` issue —
//! kind, agent id or user name, OPD, serial, notAfter — in
//! `<data_dir>/certificates.toml`. `revoke-cert --agent` and `--name` revoke
//! from it, `--serial` checks against it, `certs` lists it with each
//! certificate's revocation state, `validate` warns of what expires soon.
//!
//! Installations older than the ledger: when the file does not exist yet it
//! is seeded from what is on disk — the serials recorded in `users/*.toml`
//! and the revoked certificates — and written with the next certificate
//! issued. Agent certificates issued before the ledger are known to it once
//! revoked or renewed, or recorded from their file (`revoke-cert --cert`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::pki::Identity;

/// File name of the ledger in the data directory.
pub const FILE: &str = "certificates.toml";

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The collector's TLS server certificate.
    Server,
    /// An agent bound to one OPD.
    Agent,
    /// A person.
    User,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Server => "server",
            Kind::Agent => "agent",
            Kind::User => "user",
        })
    }
}

/// One certificate issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// What it is for.
    pub kind: Kind,
    /// The agent id, the user name, or the server's first host name.
    pub name: String,
    /// The OPD of an agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opd: Option<String>,
    /// Serial number, canonical hex (lowercase, no leading zeros).
    pub serial: String,
    /// When it was issued (unknown for certificates found on disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// notAfter (unknown for serials found in `users/` before the ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
    /// Recorded from what was on disk, not when it was issued.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seeded: bool,
}

impl Issued {
    /// The entry for a certificate about to be recorded.
    pub fn new(identity: &Identity, serial: &str, not_after: DateTime<Utc>) -> Issued {
        let (kind, name, opd) = match identity {
            Identity::Agent { opd, id } => (Kind::Agent, id.clone(), Some(opd.clone())),
            Identity::User { name } => (Kind::User, name.clone(), None),
        };
        Issued {
            kind,
            name,
            opd,
            serial: serial.to_string(),
            issued_at: Some(Utc::now()),
            not_after: Some(not_after),
            seeded: false,
        }
    }

    /// The identity it carries, as written in the revocation list.
    pub fn identity_uri(&self) -> String {
        match (self.kind, &self.opd) {
            (Kind::Agent, Some(opd)) => Identity::Agent {
                opd: opd.clone(),
                id: self.name.clone(),
            }
            .uri(),
            (Kind::Agent, None) => format!("siaga://agent/?/{}", self.name),
            (Kind::User, _) => Identity::User {
                name: self.name.clone(),
            }
            .uri(),
            (Kind::Server, _) => format!("server {}", self.name),
        }
    }

    /// Days until notAfter from `now` (negative once expired).
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.not_after.map(|t| (t - now).num_days())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    #[serde(default)]
    certificate: Vec<Issued>,
}

/// The ledger of one collector.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    /// Every certificate recorded, oldest first.
    pub entries: Vec<Issued>,
    /// Whether the entries were seeded from disk (no ledger file yet).
    pub seeded: bool,
}

impl Ledger {
    /// The ledger in `data_dir`; without a ledger file, seeded from the
    /// serials in `users_dir` and the revocation list. A user file that does
    /// not parse is an error naming it (its serials would be lost).
    pub fn load(data_dir: &Path, users_dir: &Path) -> Result<Ledger, ConfigError> {
        let path = data_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file: LedgerFile = crate::config::parse_toml(&path, &text)?;
                return Ok(Ledger {
                    path,
                    entries: file.certificate,
                    seeded: false,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(ConfigError::Read { file: path, error }),
        }
        let mut ledger = Ledger {
            path,
            entries: Vec::new(),
            seeded: true,
        };
        let mut users: Vec<_> = crate::users::load_users(users_dir)?.into_values().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        for u in users {
            for s in &u.certificates {
                if let Ok(serial) = crate::revoke::parse_serial(s) {
                    ledger.seed(Kind::User, &u.name, None, &serial);
                }
            }
        }
        for r in crate::revoke::load(data_dir)? {
            let Ok(serial) = crate::revoke::parse_serial(&r.serial) else {
                continue;
            };
            match Identity::from_uri(&r.identity) {
                Some(Identity::Agent { opd, id }) => {
                    ledger.seed(Kind::Agent, &id, Some(opd), &serial)
                }
                Some(Identity::User { name }) => ledger.seed(Kind::User, &name, None, &serial),
                None => {}
            }
        }
        Ok(ledger)
    }

    fn seed(&mut self, kind: Kind, name: &str, opd: Option<String>, serial: &str) {
        if self.by_serial(serial).is_none() {
            self.entries.push(Issued {
                kind,
                name: name.to_string(),
                opd,
                serial: serial.to_string(),
                issued_at: None,
                not_after: None,
                seeded: true,
            });
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificate with this serial (canonical form).
    pub fn by_serial(&self, serial: &str) -> Option<&Issued> {
        self.entries.iter().find(|e| e.serial == serial)
    }

    /// Every certificate of one agent or user, oldest first.
    pub fn of(&self, kind: Kind, name: &str) -> Vec<&Issued> {
        self.entries
            .iter()
            .filter(|e| e.kind == kind && e.name == name)
            .collect()
    }

    /// The last unrevoked certificate issued to each agent, user and server that
    /// expires within `days` of `now` (or has expired): what `validate`
    /// warns about. Renewing adds a newer certificate and ends the warning.
    pub fn expiring(
        &self,
        revoked: &std::collections::HashSet<String>,
        now: DateTime<Utc>,
        days: i64,
    ) -> Vec<&Issued> {
        // The last one issued is the one in use (entries are in issue order).
        let mut newest: std::collections::BTreeMap<(Kind, &str), &Issued> = Default::default();
        for e in &self.entries {
            if revoked.contains(&e.serial) || e.not_after.is_none() {
                continue;
            }
            newest.insert((e.kind, e.name.as_str()), e);
        }
        newest
            .into_values()
            .filter(|e| {
                e.not_after
                    .is_some_and(|t| t <= now + chrono::Duration::days(days))
            })
            .collect()
    }

    /// Adds the certificates of `others` (another collector's, read from
    /// the shared database) whose serial is not recorded here yet; in
    /// memory only (the file gets them with the next [`Ledger::record`]).
    pub fn absorb(&mut self, others: Vec<Issued>) {
        for e in others {
            if self.by_serial(&e.serial).is_none() {
                self.entries.push(e);
            }
        }
    }

    /// Adds `entry` (replacing a seeded entry of the same serial) and writes
    /// the file. The caller holds [`crate::revoke::lock`].
    pub fn record(&mut self, entry: Issued) -> Result<(), String> {
        self.entries.retain(|e| e.serial != entry.serial);
        self.entries.push(entry);
        self.save()
    }

    /// Writes the file (a new file renamed into place).
    pub fn save(&self) -> Result<(), String> {
        let text = toml::to_string(&LedgerFile {
            certificate: self.entries.clone(),
        })
        .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(self.path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let text = format!(
            "# Every certificate this collector's CA issued; written by `siaga-collector init`,\n# `enroll` and `renew`. `siaga-collector certs` lists it with revocation state.\n{text}"
        );
        crate::safe_file::write(&self.path, text.as_bytes(), crate::safe_file::PUBLIC)
            .map_err(|e| e.to_string())
    }
}

/// Merges the ledger file `from` (e.g. a backup's) into the ledger of
/// `data_dir`: the ledger only grows. Returns how many certificates were added.
pub fn merge(data_dir: &Path, from: &Path) -> Result<usize, String> {
    let read = |path: &Path| -> Result<Option<LedgerFile>, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => crate::config::parse_toml(path, &t)
                .map(Some)
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    };
    let incoming = read(from)?.unwrap_or_default().certificate;
    let _lock = crate::revoke::lock(data_dir)?;
    let path = data_dir.join(FILE);
    let existed = path.exists();
    let mut ledger = Ledger {
        entries: read(&path)?.unwrap_or_default().certificate,
        path,
        seeded: false,
    };
    let mut added = 0;
    for e in incoming {
        if ledger.by_serial(&e.serial).is_none() {
            ledger.entries.push(e);
            added += 1;
        }
    }
    if added > 0 || !existed {
        ledger.save()?;
    }
    Ok(added)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_installation_without_a_ledger_is_seeded_from_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let users = tmp.path().join("users");
        std::fs::create_dir_all(&users).unwrap();
        std::fs::write(
            users.join("budi.toml"),
            "name = \"budi\"\nroles = [\"helpdesk\"]\ncertificates = [\"7f01\", \"0a02\"]\n",
        )
        .unwrap();
        crate::revoke::revoke_serial(&data, "bb", "siaga://agent/dinkes/dinkes-agent", "").unwrap();
        let l = Ledger::load(&data, &users).unwrap();
        assert!(l.seeded);
        let got: Vec<(Kind, &str, Option<&str>, &str)> = l
            .entries
            .iter()
            .map(|e| (e.kind, e.name.as_str(), e.opd.as_deref(), e.serial.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::User, "budi", None, "7f01"),
                (Kind::User, "budi", None, "a02"),
                (Kind::Agent, "dinkes-agent", Some("dinkes"), "bb"),
            ]
        );
        assert!(
            !data.join(FILE).exists(),
            "written with the next issue only"
        );

        // A user file that does not parse fails the load, naming the file.
        std::fs::write(users.join("siti.toml"), "name = \"siti\"\nroles = [\n").unwrap();
        let e = Ledger::load(&data, &users).unwrap_err().to_string();
        assert!(e.contains("siti.toml"), "{e}");
    }

    #[test]
    fn the_newest_unrevoked_certificate_near_its_end_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let mut l = Ledger::load(tmp.path(), &tmp.path().join("users")).unwrap();
        let now = Utc::now();
        let day = chrono::Duration::days(1);
        let agent = |id: &str| Identity::Agent {
            opd: "a".into(),
            id: id.into(),
        };
        let user = Identity::User {
            name: "budi".into(),
        };
        for (who, serial, left) in [
            (agent("a1"), "1", 10),  // expiring
            (agent("a2"), "2", 10),  // renewed below
            (agent("a2"), "3", 700), //
            (agent("a3"), "4", 31),  // not yet
            (user.clone(), "5", -2), // expired
            (agent("a4"), "6", 5),   // revoked
        ] {
            l.record(Issued::new(&who, serial, now + day * left))
                .unwrap();
        }
        let revoked = std::collections::HashSet::from(["6".to_string()]);
        let got: Vec<&str> = l
            .expiring(&revoked, now, 30)
            .iter()
            .map(|e| e.serial.as_str())
            .collect();
        assert_eq!(got, ["1", "5"]);
        assert_eq!(
            l.by_serial("5").unwrap().identity_uri(),
            "siaga://user/budi"
        );
        assert_eq!(
            l.by_serial("1").unwrap().identity_uri(),
            "siaga://agent/a/a1"
        );
    }

    #[test]
    fn a_merge_only_adds() {
        let tmp = tempfile::tempdir().unwrap();
        let (here, there) = (tmp.path().join("here"), tmp.path().join("there"));
        let id = |n: &str| Identity::Agent {
            opd: "a".into(),
            id: n.into(),
        };
        let mut a = Ledger::load(&here, &here.join("users")).unwrap();
        a.record(Issued::new(&id("a1"), "1", Utc::now())).unwrap();
        let mut b = Ledger::load(&there, &there.join("users")).unwrap();
        b.record(Issued::new(&id("a1"), "1", Utc::now())).unwrap();
        b.record(Issued::new(&id("a2"), "2", Utc::now())).unwrap();
        assert_eq!(merge(&here, &there.join(FILE)).unwrap(), 1);
        assert_eq!(merge(&here, &there.join(FILE)).unwrap(), 0);
        let got = Ledger::load(&here, &here.join("users")).unwrap();
        let serials: Vec<&str> = got.entries.iter().map(|e| e.serial.as_str()).collect();
        assert_eq!(serials, ["1", "2"]);
    }

    #[test]
    fn records_survive_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let mut l = Ledger::load(tmp.path(), &tmp.path().join("users")).unwrap();
        let id = Identity::Agent {
            opd: "a".into(),
            id: "a-agent".into(),
        };
        l.record(Issued::new(&id, "abc", Utc::now())).unwrap();
        let l = Ledger::load(tmp.path(), &tmp.path().join("users")).unwrap();
        assert!(!l.seeded);
        assert_eq!(l.of(Kind::Agent, "a-agent").len(), 1);
        assert_eq!(l.by_serial("abc").unwrap().opd.as_deref(), Some("a"));
    }
}
