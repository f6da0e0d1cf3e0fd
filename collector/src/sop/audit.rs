//! The audit trail: append-only events per ticket, hash-chained.
//!
//! Each record holds its index, the ticket, the event, the previous record's hash
//! and its own: `sha256(prev_hash || canonical bytes)`, where the canonical bytes
//! are the JSON of (index, ticket, event) with fields in declaration order. An
//! altered record no longer matches its hash; a deleted, inserted or reordered one
//! breaks the index sequence or the link to its predecessor. Deleting records at
//! the end is caught by comparing with the [`Head`] kept beside the trail (the
//! ticket's record count and last hash).
//!
//! Without a secret, someone who rewrites the whole trail *and* the head
//! consistently is not caught; the chain makes any edit of a stored record visible
//! to `verify`, which is what the trail is for.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::workflow::Event;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record of a ticket's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 0-based position in the ticket's trail.
    pub index: u64,
    /// The ticket.
    pub ticket: String,
    /// What happened.
    pub event: Event,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

/// The end of a trail: kept beside it to detect records removed from the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Number of records.
    pub len: u64,
    /// Hash of the last record ([`GENESIS`] when empty).
    pub hash: String,
}

/// Where and how a trail was tampered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit trail tampered at record {index}: {reason}")]
pub struct Tamper {
    /// Index of the first bad record.
    pub index: u64,
    /// What is wrong.
    pub reason: String,
}

fn canonical(index: u64, ticket: &str, event: &Event) -> Vec<u8> {
    // Structs serialize their fields in declaration order and hold no maps, so
    // the same record always gives the same bytes.
    serde_json::to_vec(&(index, ticket, event)).unwrap_or_default()
}

fn digest(prev: &str, index: u64, ticket: &str, event: &Event) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical(index, ticket, event));
    hex::encode(h.finalize())
}

impl AuditRecord {
    /// The record that follows `prev` (or starts the trail).
    pub fn next(prev: Option<&AuditRecord>, ticket: &str, event: Event) -> AuditRecord {
        let (index, prev_hash) = match prev {
            Some(p) => (p.index + 1, p.hash.clone()),
            None => (0, GENESIS.to_string()),
        };
        let hash = digest(&prev_hash, index, ticket, &event);
        AuditRecord {
            index,
            ticket: ticket.to_string(),
            event,
            prev_hash,
            hash,
        }
    }
}

/// Append an event to a trail held in memory; returns the new record.
pub fn append<'a>(trail: &'a mut Vec<AuditRecord>, ticket: &str, event: Event) -> &'a AuditRecord {
    let rec = AuditRecord::next(trail.last(), ticket, event);
    trail.push(rec);
    let last = trail.len() - 1;
    &trail[last]
}

/// The head of a trail.
pub fn head(trail: &[AuditRecord]) -> Head {
    Head {
        len: trail.len() as u64,
        hash: trail
            .last()
            .map_or_else(|| GENESIS.to_string(), |r| r.hash.clone()),
    }
}

/// Check a ticket's trail: indexes in order, every link and every hash.
pub fn verify(trail: &[AuditRecord]) -> Result<(), Tamper> {
    let mut prev = GENESIS.to_string();
    let ticket = trail.first().map(|r| r.ticket.as_str()).unwrap_or_default();
    for (i, r) in trail.iter().enumerate() {
        let index = i as u64;
        let bad = |reason: String| Err(Tamper { index, reason });
        if r.index != index {
            return bad(format!(
                "record says it is number {} (records deleted, inserted or reordered)",
                r.index
            ));
        }
        if r.ticket != ticket {
            return bad(format!(
                "record belongs to ticket {}, not {ticket}",
                r.ticket
            ));
        }
        if r.prev_hash != prev {
            return bad("link to the previous record is broken (a record was deleted, inserted or reordered)".into());
        }
        if digest(&r.prev_hash, r.index, &r.ticket, &r.event) != r.hash {
            return bad("content does not match its hash (the record was altered)".into());
        }
        prev = r.hash.clone();
    }
    Ok(())
}

/// [`verify`], and check the trail ends where its head says.
pub fn verify_with_head(trail: &[AuditRecord], expected: &Head) -> Result<(), Tamper> {
    verify(trail)?;
    let got = head(trail);
    if got.len < expected.len {
        return Err(Tamper {
            index: got.len,
            reason: format!("{} record(s) missing at the end", expected.len - got.len),
        });
    }
    if got != *expected {
        return Err(Tamper {
            index: got.len.saturating_sub(1),
            reason: "the trail does not end where its head says".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sop::calendar::Calendar;
    use crate::sop::file::default_sop;
    use crate::sop::workflow::tests::{walk, wib};
    use crate::sop::workflow::{EventKind, Workflow};
    use test_case::test_case;

    fn trail() -> Vec<AuditRecord> {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (_, events) = walk(&wf, wib("2026-11-23 08:00"), chrono::Duration::minutes(10));
        let mut trail = Vec::new();
        for e in events {
            append(&mut trail, "PJ-2026-0001", e);
        }
        trail
    }

    #[test]
    fn an_untouched_trail_verifies() {
        let t = trail();
        assert!(t.len() > 10);
        assert_eq!(verify(&t), Ok(()));
        assert_eq!(verify_with_head(&t, &head(&t)), Ok(()));
        assert_eq!(verify(&[]), Ok(()));
    }

    type Edit = fn(&mut Vec<AuditRecord>);

    #[test_case(|t| t[3].event.user = "someone-else".into(), 3, "altered" ; "user altered")]
    #[test_case(|t| t[5].event.at += chrono::Duration::minutes(1), 5, "altered" ; "time altered")]
    #[test_case(|t| if let EventKind::Disposed { note, .. } = &mut t[4].event.kind { *note = Some("x".into()) }, 4, "altered" ; "note altered")]
    #[test_case(|t| { t.remove(2); }, 2, "number 3" ; "deleted")]
    #[test_case(|t| t.swap(6, 7), 6, "number 7" ; "reordered")]
    #[test_case(|t| { let r = t[2].clone(); t.insert(3, r); }, 3, "number 2" ; "duplicated")]
    #[test_case(|t| { let mut r = t[2].clone(); r.index = 3; t.insert(3, r); }, 3, "link" ; "inserted with a plausible index")]
    #[test_case(|t| {
        // Deleted and renumbered (an editor that knows the format but not the hashes).
        t.remove(2);
        for (i, r) in t.iter_mut().enumerate() { r.index = i as u64; }
    }, 2, "link" ; "deleted and renumbered")]
    #[test_case(|t| {
        // Altered and rehashed, without rewriting the rest of the chain.
        t[4].event.user = "x".into();
        t[4].hash = super::digest(&t[4].prev_hash, t[4].index, &t[4].ticket, &t[4].event);
    }, 5, "link" ; "altered and rehashed")]
    fn tampering_is_detected(edit: Edit, index: u64, words: &str) {
        let mut t = trail();
        edit(&mut t);
        let err = verify(&t).expect_err("tampered");
        assert_eq!(err.index, index, "{err}");
        assert!(err.reason.contains(words), "{err}");
    }

    #[test]
    fn truncation_is_detected_by_the_head() {
        let mut t = trail();
        let h = head(&t);
        t.pop();
        assert_eq!(
            verify(&t),
            Ok(()),
            "a shorter prefix is a valid chain by itself"
        );
        let err = verify_with_head(&t, &h).expect_err("truncated");
        assert!(err.reason.contains("1 record(s) missing"), "{err}");
    }
}
