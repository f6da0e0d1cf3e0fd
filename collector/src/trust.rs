//! Revocations, users and the CA's ledger shared by every collector on one
//! PostgreSQL database (`[store] url`).
//!
//! Each collector keeps its files (`revoked.toml`, `users/NAME.toml`,
//! `certificates.toml`) as with the embedded store; on PostgreSQL every
//! command that writes one of them also writes the record into a table of
//! the database (see [`crate::kv`]), and every collector reads those tables
//! as well as its files:
//!
//! - **revocations** ([`REVOKED`], key: the canonical serial): a serial in
//!   the table is refused as one in the file; the table is read each second
//!   so open streams with it end within about two. The list only grows,
//!   here as in the file; `restore` never touches the table.
//! - **users** ([`USERS`], key: the name): the database's record wins over
//!   a user file of the same name. Every change (`enroll user`, `renew`,
//!   roles, password, second factor) is written to both, so the database
//!   holds the newest; a collector's file may be a copy older than a
//!   change made on another collector.
//! - **certificates** ([`CERTIFICATES`], key: the serial): what `certs`
//!   lists and `revoke-cert --agent`/`--name` revoke, on any collector.
//!
//! Values are JSON. Reads are bounded ([`MAX_ROWS`]): a table beyond it is
//! an error, never a silently partial list.

use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use crate::error::StoreError;
use crate::kv::{Db, Table};
use crate::ledger::Issued;
use crate::revoke::Revoked;
use crate::users::User;

/// Revoked certificates by canonical serial.
pub const REVOKED: Table<String, Vec<u8>> = Table::new("trust_revoked");
/// Enrolled people by name.
pub const USERS: Table<String, Vec<u8>> = Table::new("trust_users");
/// Certificates the CA issued, by canonical serial.
pub const CERTIFICATES: Table<String, Vec<u8>> = Table::new("trust_certificates");

/// Rows read from one of these tables at most.
pub const MAX_ROWS: usize = 100_000;

/// The database shared with the other collectors: `Some` with
/// `[store] url`, `None` on the embedded store (files only).
pub fn open(cfg: &crate::config::CollectorConfig) -> Result<Option<Db>, StoreError> {
    match &cfg.store.url {
        // Not `kv::open`: revoking must work beside a `tickets.redb` left
        // behind, which that refuses.
        Some(url) => Ok(Some(Db::Pg(Arc::new(crate::kv::postgres::PgKv::open(
            url,
        )?)))),
        None => Ok(None),
    }
}

fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Decode {
        what,
        message: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode {
        what,
        message: e.to_string(),
    })
}

/// Every row of `t`, at most [`MAX_ROWS`].
fn rows(db: &Db, t: &Table<String, Vec<u8>>) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    rows_at_most(db, t, MAX_ROWS)
}

/// Every row of `t`; more than `max` is an error.
fn rows_at_most(
    db: &Db,
    t: &Table<String, Vec<u8>>,
    max: usize,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let tx = db.read()?;
    let mut out = Vec::new();
    for row in tx.iter(t)? {
        if out.len() == max {
            return Err(StoreError::Decode {
                what: t.name,
                message: format!(
                    "more than {max} rows; this many is not a list of people or \
                     certificates: look at the table `kv` where tbl = '{}'",
                    t.name
                ),
            });
        }
        out.push(row?);
    }
    Ok(out)
}

/// Adds `r` to the revoked certificates unless its serial is there already
/// (the first revocation's time and reason are kept). Whether it was added.
pub fn put_revoked(db: &Db, r: &Revoked) -> Result<bool, StoreError> {
    Ok(put_all_revoked(db, std::slice::from_ref(r))? == 1)
}

/// [`put_revoked`] of each of `list`, in one transaction; how many were added.
pub fn put_all_revoked(db: &Db, list: &[Revoked]) -> Result<usize, StoreError> {
    let tx = db.write()?;
    let mut added = 0;
    for r in list {
        let serial = crate::revoke::parse_serial(&r.serial).map_err(|e| StoreError::Decode {
            what: REVOKED.name,
            message: e.to_string(),
        })?;
        if tx.contains(&REVOKED, serial.as_str())? {
            continue;
        }
        let entry = Revoked {
            serial: serial.clone(),
            ..r.clone()
        };
        tx.insert(&REVOKED, serial.as_str(), encode(REVOKED.name, &entry)?)?;
        added += 1;
    }
    if added > 0 {
        tx.commit()?;
    }
    Ok(added)
}

/// The revoked serials (canonical form): the keys, so that a value that
/// does not decode still revokes its serial.
pub fn revoked_serials(db: &Db) -> Result<Vec<String>, StoreError> {
    Ok(rows(db, &REVOKED)?.into_iter().map(|(k, _)| k).collect())
}

/// The revoked certificates; a value that does not decode is given with
/// its serial only.
pub fn revoked(db: &Db) -> Result<Vec<Revoked>, StoreError> {
    Ok(rows(db, &REVOKED)?
        .into_iter()
        .map(|(serial, v)| {
            decode::<Revoked>(REVOKED.name, &v).unwrap_or(Revoked {
                serial,
                identity: String::new(),
                at: String::new(),
                reason: String::new(),
            })
        })
        .collect())
}

/// Writes `user`'s record (replacing the one there).
pub fn put_user(db: &Db, user: &User) -> Result<(), StoreError> {
    let tx = db.write()?;
    tx.insert(&USERS, user.name.as_str(), encode(USERS.name, user)?)?;
    tx.commit()
}

/// The record of user `name`.
pub fn user(db: &Db, name: &str) -> Result<Option<User>, StoreError> {
    db.read()?
        .get(&USERS, name)?
        .map(|v| decode(USERS.name, &v))
        .transpose()
}

/// Every user's record; one that does not decode is an error naming it.
pub fn users(db: &Db) -> Result<Vec<User>, StoreError> {
    rows(db, &USERS)?
        .into_iter()
        .map(|(name, v)| {
            decode::<User>(USERS.name, &v).map_err(|e| StoreError::Decode {
                what: USERS.name,
                message: format!("user {name:?}: {e}"),
            })
        })
        .collect()
}

/// The people documents name: the user files of `dir` read afresh and,
/// with a shared database, its users (which win, as everywhere); a database
/// that cannot be read leaves the files' people, with a warning.
pub fn people(dir: &std::path::Path, shared: Option<&Db>) -> crate::sop::People {
    let mut out = crate::users::people(dir);
    if let Some(db) = shared {
        match users(db) {
            Ok(all) => {
                for u in all {
                    out.insert(u.name.clone(), u.person());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the users in the database for the documents failed")
            }
        }
    }
    out
}

/// Records a certificate issued (replacing a record of the same serial).
pub fn put_issued(db: &Db, issued: &Issued) -> Result<(), StoreError> {
    let tx = db.write()?;
    tx.insert(
        &CERTIFICATES,
        issued.serial.as_str(),
        encode(CERTIFICATES.name, issued)?,
    )?;
    tx.commit()
}

/// Every certificate recorded, oldest first (by issue time; those of
/// unknown time first).
pub fn issued(db: &Db) -> Result<Vec<Issued>, StoreError> {
    let mut all = rows(db, &CERTIFICATES)?
        .into_iter()
        .map(|(_, v)| decode::<Issued>(CERTIFICATES.name, &v))
        .collect::<Result<Vec<_>, _>>()?;
    all.sort_by_key(|e| e.issued_at);
    Ok(all)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::revoke::RevocationList;

    /// The tables on an in-memory redb: the same `kv` API as PostgreSQL.
    fn db() -> Db {
        let memory = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        Db::Redb(Arc::new(memory))
    }

    fn revoked_entry(serial: &str) -> Revoked {
        Revoked {
            serial: serial.into(),
            identity: "siaga://user/budi".into(),
            at: "2026-01-01T00:00:00Z".into(),
            reason: "lost".into(),
        }
    }

    /// A table over its bound is an error naming it, never a list cut
    /// short (a revocation missing from a cut list would let its
    /// certificate in).
    #[test]
    fn a_table_over_its_bound_is_an_error_not_a_shorter_list() {
        let db = db();
        db.create(&[REVOKED]).unwrap();
        let r: Vec<Revoked> = (0..4)
            .map(|i| revoked_entry(&format!("bb{i:02}")))
            .collect();
        assert_eq!(put_all_revoked(&db, &r).unwrap(), 4);
        assert_eq!(rows_at_most(&db, &REVOKED, 4).unwrap().len(), 4);
        let e = rows_at_most(&db, &REVOKED, 3).unwrap_err().to_string();
        assert!(
            e.contains("more than 3 rows") && e.contains("trust_revoked"),
            "{e}"
        );
    }

    #[test]
    fn a_serial_revoked_in_the_database_is_refused_and_stays_so() {
        let db = db();
        let dir = tempfile::tempdir().unwrap();
        // One revoked in this collector's file only reaches the database.
        crate::revoke::revoke_serial(dir.path(), "aa01", "siaga://user/old", "").unwrap();
        let list = RevocationList::open(dir.path())
            .unwrap()
            .with_shared(db.clone())
            .unwrap();
        assert_eq!(revoked_serials(&db).unwrap(), ["aa01"]);
        assert!(list.is_revoked("aa01"));
        let rx = list.subscribe();
        // Another collector revokes (in its own file and the database).
        assert!(put_revoked(&db, &revoked_entry("0B:02")).unwrap());
        assert!(!put_revoked(&db, &revoked_entry("b02")).unwrap(), "once");
        assert!(!list.is_revoked("b02"), "not before the database is read");
        list.refresh_shared().unwrap();
        assert!(rx.has_changed().unwrap(), "open streams hear of it");
        assert!(list.is_revoked("b02"));
        // A change of the file re-reads it; the database's serial stays.
        crate::revoke::revoke_serial(dir.path(), "cc03", "", "").unwrap();
        assert!(list.is_revoked("cc03"));
        assert!(list.is_revoked("b02"));
        let all = revoked(&db).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|r| r.serial == "b02" && r.reason == "lost"));
    }

    #[test]
    fn users_and_certificates_round_trip() {
        let db = db();
        assert_eq!(user(&db, "budi").unwrap(), None);
        let budi = User {
            name: "budi".into(),
            roles: vec![crate::role::Role::HELPDESK],
            certificates: vec!["7f01".into()],
            ..Default::default()
        };
        put_user(&db, &budi).unwrap();
        let changed = User {
            roles: vec![crate::role::Role::ADMIN],
            ..budi.clone()
        };
        put_user(&db, &changed).unwrap();
        assert_eq!(user(&db, "budi").unwrap(), Some(changed.clone()));
        assert_eq!(users(&db).unwrap(), std::slice::from_ref(&changed));
        // Documents name the database's people as well as the files'.
        let dir = tempfile::tempdir().unwrap();
        let named = User {
            full_name: Some("Budi Santoso, S.Kom.".into()),
            ..changed
        };
        put_user(&db, &named).unwrap();
        assert_eq!(
            people(dir.path(), Some(&db)).get("budi"),
            Some(&named.person())
        );
        assert_eq!(people(dir.path(), None).get("budi"), None);
        let identity = crate::pki::Identity::User {
            name: "budi".into(),
        };
        let e = Issued::new(&identity, "7f01", chrono::Utc::now());
        put_issued(&db, &e).unwrap();
        put_issued(&db, &e).unwrap();
        assert_eq!(issued(&db).unwrap(), [e]);
    }
}
