//! Frozen work reports: their bytes, kept beside the tickets in the same
//! database, one entry per ticket, format and language. The hashes live in
//! the ticket's audit trail (a `report_frozen` record), written in the same
//! transaction as the bytes; [`verify`] recomputes them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::kv::{Db, Table, Tx};
use crate::sop::Lang;
use crate::sop::store::{SopStore, StoreError};
use crate::sop::workflow::{EventKind, FrozenDocument};

/// (ticket, `pdf/id`) → the document's bytes.
const FROZEN: Table<(String, String), Vec<u8>> = Table::new("report_frozen");

/// The key of one document: `pdf/id`, `html/en`, …
pub fn key(format: &str, lang: Lang) -> String {
    format!("{format}/{}", super::words::code(lang))
}

/// Hex sha256.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a ticket's frozen documents in `w` (the caller commits).
pub fn put(w: &Tx, ticket: &str, docs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
    for (k, bytes) in docs {
        w.insert(&FROZEN, (ticket, k.as_str()), bytes.as_slice())?;
    }
    Ok(())
}

/// Copies the frozen reports from `from` into `to` (a write
/// transaction): (table, rows).
pub fn copy_tables(
    from: &Tx,
    to: &Tx,
) -> Result<Vec<(&'static str, u64)>, crate::error::StoreError> {
    Ok(vec![crate::kv::copy_table(&FROZEN, from, to)?])
}

/// Creates the table, so reads before the first freeze find it.
pub fn init(db: &Db) -> Result<(), StoreError> {
    Ok(db.create(&[FROZEN])?)
}

/// The stored bytes of one document of a ticket.
pub fn get(db: &Db, ticket: &str, format: &str, lang: Lang) -> Result<Option<Vec<u8>>, StoreError> {
    let r = db.read()?;
    Ok(r.get(&FROZEN, (ticket, key(format, lang).as_str()))?)
}

/// The documents a ticket's trail says were frozen last: key → record.
pub fn recorded(
    store: &SopStore,
    ticket: &str,
) -> Result<BTreeMap<String, FrozenDocument>, StoreError> {
    let mut out = BTreeMap::new();
    for r in store.trail(ticket)? {
        if let EventKind::ReportFrozen { documents, .. } = r.event.kind {
            for d in documents {
                out.insert(key(&d.format, d.lang), d);
            }
        }
    }
    Ok(out)
}

/// One frozen document checked against the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Ticket.
    pub ticket: String,
    /// `pdf/id`, …
    pub document: String,
    /// What is wrong, or `None` when the bytes match their recorded hash.
    pub problem: Option<String>,
}

/// Recomputes the hash of every stored frozen report and compares it with the
/// one in its ticket's audit trail; also reports a recorded document whose
/// bytes are gone and bytes that no record speaks for.
pub fn verify(db: &Db, store: &SopStore) -> Result<Vec<Check>, StoreError> {
    let mut stored: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    {
        let r = db.read()?;
        for item in r.iter(&FROZEN)? {
            let (k, v) = item?;
            stored.insert(k, v);
        }
    }
    let mut out = Vec::new();
    let mut tickets: Vec<String> = store.list()?.into_iter().map(|t| t.info.number).collect();
    for (t, _) in stored.keys() {
        if !tickets.contains(t) {
            tickets.push(t.clone());
        }
    }
    for ticket in tickets {
        let recorded = recorded(store, &ticket)?;
        for (doc, rec) in &recorded {
            let problem = match stored.remove(&(ticket.clone(), doc.clone())) {
                None => Some("recorded in the audit trail but missing from the store".to_string()),
                Some(bytes) => {
                    let got = sha256(&bytes);
                    if got != rec.sha256 {
                        Some(format!(
                            "altered: its bytes hash to {got}, the audit trail recorded {} ({} bytes recorded, {} stored)",
                            rec.sha256,
                            rec.bytes,
                            bytes.len()
                        ))
                    } else {
                        None
                    }
                }
            };
            out.push(Check {
                ticket: ticket.clone(),
                document: doc.clone(),
                problem,
            });
        }
    }
    for (ticket, doc) in stored.into_keys() {
        out.push(Check {
            ticket,
            document: doc,
            problem: Some("stored, but the audit trail records no such frozen report".into()),
        });
    }
    Ok(out)
}
