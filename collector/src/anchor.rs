//! The audit trail anchored outside the store.
//!
//! Each ticket's trail is hash-chained in `tickets.redb` (`sop/audit.rs`),
//! but whoever can write that file can rewrite a trail and its head together,
//! and restoring an older backup rolls a trail back without a trace. So every
//! head the collector writes is also signed with a dedicated Ed25519 key
//! ([`AuditKey`], `audit.key` beside `collector.toml`, created by `init` or on
//! the first start) and appended to `<data_dir>/audit-heads.jsonl`, beside
//! the revocation list and outside the store. The documents that leave the
//! system print a ticket's head and its signature; `verify` checks every
//! signature and that each trail still runs through its newest signed head;
//! `restore` refuses a backup whose trails end before them unless forced.
//!
//! With several collectors on one PostgreSQL database each keeps its own
//! log, of the heads it wrote; every signed head is also written into the
//! database (`sop/store.rs`, table `sop_signed_heads`) in the transaction
//! that writes the head, and `verify` checks each trail against the newer
//! of the two ([`union`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AnchorError;
use crate::sop::audit::Head;

/// File name of the signed-heads log in the data directory.
pub const HEADS_FILE: &str = "audit-heads.jsonl";

/// Longest line of the log read back (a signed head is about 300 bytes).
const MAX_LINE: usize = 4096;

/// The collector's audit signing key.
pub struct AuditKey {
    pair: Ed25519KeyPair,
    /// Signatures made with it since it was loaded.
    signatures: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey").field("id", &self.id()).finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Short id of a public key: the first 16 hex digits of its sha256.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

impl AuditKey {
    /// Reads the key (PKCS#8, base64 in a text file).
    pub fn load(path: &Path) -> Result<Self, AnchorError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bad = |message: String| AnchorError::BadKey {
            path: path.to_path_buf(),
            message,
        };
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| bad(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
        Ok(AuditKey {
            pair,
            signatures: Default::default(),
        })
    }

    /// Creates a new key at `path` (mode 0600; never over an existing file
    /// or through a symlink) and returns it.
    pub fn create(path: &Path) -> Result<Self, AnchorError> {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| {
            AnchorError::BadKey {
                path: path.to_path_buf(),
                message: format!("cannot generate: {e}"),
            }
        })?;
        let text = format!(
            "# Siaga audit key (Ed25519, PKCS#8): signs the heads of the SOP audit trails.\n\
             # Keep it apart from backups of the data directory.\n{}\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        tmp.write_all(text.as_bytes()).map_err(io(path))?;
        tmp.as_file().sync_all().map_err(io(path))?;
        // NamedTempFile is created 0600 and persist_noclobber refuses to
        // replace anything already at `path` (a file or a planted link).
        tmp.persist_noclobber(path).map_err(|e| AnchorError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Self::load(path)
    }

    /// The key at `path`, created first when there is none; `true` when created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), AnchorError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Self::create(path)?, true)),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// The public key (32 bytes).
    pub fn public(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// [`key_id`] of this key.
    pub fn id(&self) -> String {
        key_id(self.public())
    }

    /// Signs a ticket's head. Ed25519 is deterministic: the same head always
    /// gets the same signature, so a frozen document renders to the same bytes.
    pub fn seal(&self, ticket: &str, head: &Head) -> SignedHead {
        self.signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sig = self.pair.sign(&message(ticket, head.len, &head.hash));
        SignedHead {
            ticket: ticket.to_string(),
            len: head.len,
            hash: head.hash.clone(),
            key: self.id(),
            sig: base64::engine::general_purpose::STANDARD.encode(sig.as_ref()),
            note: None,
        }
    }
}

/// What is signed: a domain tag, the ticket, the record count and the hash
/// of the last record.
fn message(ticket: &str, len: u64, hash: &str) -> Vec<u8> {
    format!("siaga-audit-head/1\n{ticket}\n{len}\n{hash}\n").into_bytes()
}

/// A ticket's trail head with the collector's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The ticket.
    pub ticket: String,
    /// Records in the trail.
    pub len: u64,
    /// Hash of the last record.
    pub hash: String,
    /// [`key_id`] of the signing key.
    pub key: String,
    /// Ed25519 signature, base64.
    pub sig: String,
    /// Why this head was written other than by an append (e.g. a forced restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl SignedHead {
    /// Whether the signature is `public`'s over this head.
    pub fn verify(&self, public: &[u8]) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(&self.sig) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&message(&self.ticket, self.len, &self.hash), &sig)
            .is_ok()
    }

    /// The label of [`SignedHead::value`] in documents.
    pub fn label(lang: crate::sop::model::Lang) -> &'static str {
        match lang {
            crate::sop::model::Lang::Id => "Jejak audit (tertanda)",
            crate::sop::model::Lang::En => "Audit trail (signed)",
        }
    }

    /// For documents: records, head hash, key and signature, so that a
    /// reader can later check the store against the paper.
    pub fn value(&self, lang: crate::sop::model::Lang) -> String {
        match lang {
            crate::sop::model::Lang::Id => format!(
                "{} catatan; kepala {}; kunci {}; tanda tangan {}",
                self.len, self.hash, self.key, self.sig
            ),
            crate::sop::model::Lang::En => format!(
                "{} records; head {}; key {}; signature {}",
                self.len, self.hash, self.key, self.sig
            ),
        }
    }
}

/// The signed-heads log: read, newest per ticket.
pub fn read_heads(data_dir: &Path) -> Result<BTreeMap<String, SignedHead>, AnchorError> {
    let path = data_dir.join(HEADS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| AnchorError::BadLog {
            path: path.clone(),
            line: i + 1,
            message,
        };
        if line.len() > MAX_LINE {
            return Err(bad(format!("line longer than {MAX_LINE} bytes")));
        }
        let h: SignedHead = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        out.insert(h.ticket.clone(), h);
    }
    Ok(out)
}

/// Of two signed heads of one ticket (this collector's log's and the
/// shared database's), the newer: the one that counts more records; the
/// log's when they count the same. A database rolled back by a restore
/// then still meets the log's newer head of the trails this collector
/// wrote.
pub fn newer(log: Option<SignedHead>, shared: Option<SignedHead>) -> Option<SignedHead> {
    match (log, shared) {
        (Some(l), Some(s)) => Some(if s.len > l.len { s } else { l }),
        (l, s) => l.or(s),
    }
}

/// [`newer`] of each ticket of the log's heads and the shared database's.
pub fn union(
    log: BTreeMap<String, SignedHead>,
    shared: BTreeMap<String, SignedHead>,
) -> BTreeMap<String, SignedHead> {
    let mut out = log;
    for (ticket, s) in shared {
        let l = out.remove(&ticket);
        if let Some(n) = newer(l, Some(s)) {
            out.insert(ticket, n);
        }
    }
    out
}

/// The running collector's anchor: its key and the log it appends to.
#[derive(Debug)]
pub struct Anchor {
    key: AuditKey,
    path: PathBuf,
    newest: Mutex<BTreeMap<String, SignedHead>>,
}

impl Anchor {
    /// Opens the log in `data_dir` (created on the first append).
    pub fn open(key: AuditKey, data_dir: &Path) -> Result<Self, AnchorError> {
        let newest = read_heads(data_dir)?;
        Ok(Anchor {
            key,
            path: data_dir.join(HEADS_FILE),
            newest: Mutex::new(newest),
        })
    }

    /// The key.
    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    /// Signatures made with the key since it was loaded.
    pub fn signatures(&self) -> u64 {
        self.key
            .signatures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `head` of `ticket` signed: the signature logged when that head was
    /// written, or (a head not logged yet, or logged with another key) a
    /// new one. The same bytes either way, Ed25519 being deterministic; a
    /// document that prints every ticket's head (the register) then signs
    /// nothing again.
    pub fn sealed(&self, ticket: &str, head: &Head) -> SignedHead {
        if let Some(s) = self.newest(ticket)
            && s.len == head.len
            && s.hash == head.hash
            && s.key == self.key.id()
        {
            return SignedHead { note: None, ..s };
        }
        self.key.seal(ticket, head)
    }

    /// The newest signed head of `ticket`, if any.
    pub fn newest(&self, ticket: &str) -> Option<SignedHead> {
        self.newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ticket)
            .cloned()
    }

    /// Signs `head` and appends it to the log (synced before this returns).
    pub fn record(&self, ticket: &str, head: &Head, note: Option<&str>) -> Result<(), AnchorError> {
        let mut signed = self.key.seal(ticket, head);
        signed.note = note.map(str::to_string);
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if newest.get(ticket) == Some(&signed) {
            return Ok(());
        }
        let mut line = serde_json::to_string(&signed).map_err(|e| AnchorError::BadLog {
            path: self.path.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags_nofollow()
            .open(&self.path)
            .map_err(io(&self.path))?;
        f.write_all(line.as_bytes()).map_err(io(&self.path))?;
        f.sync_data().map_err(io(&self.path))?;
        newest.insert(ticket.to_string(), signed);
        Ok(())
    }
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    /// The log is never written through a symlink planted in its place.
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW).mode(0o600)
    }
}

/// How a trail stands against its newest signed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchored {
    /// The trail runs through the signed head and ends there.
    Ok,
    /// The signed head's signature is not the audit key's.
    BadSignature,
    /// Fewer records than the signed head counts: records removed, or an
    /// older trail restored.
    RolledBack {
        /// Records the signed head counts.
        signed: u64,
        /// Records the trail has.
        now: u64,
    },
    /// The record at the signed head's position is not the one signed: the
    /// trail was rewritten.
    Rewritten {
        /// 0-based index of the record that differs.
        index: u64,
    },
    /// Records after the newest signed head, which the collector did not sign.
    Unsigned {
        /// How many.
        count: u64,
    },
    /// A trail in the store with no signed head at all.
    NeverSigned,
}

impl std::fmt::Display for Anchored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anchored::Ok => write!(f, "runs through its signed head"),
            Anchored::BadSignature => write!(
                f,
                "its signed head does not carry the audit key's signature (forged or another key)"
            ),
            Anchored::RolledBack { signed, now } => write!(
                f,
                "has {now} records but a head of {signed} was signed: {} record(s) removed \
                 or an older trail restored",
                signed - now
            ),
            Anchored::Rewritten { index } => write!(
                f,
                "record {index} is not the one the collector signed: the trail was rewritten"
            ),
            Anchored::Unsigned { count } => write!(
                f,
                "{count} record(s) after the newest signed head were not signed by the collector"
            ),
            Anchored::NeverSigned => write!(f, "no head of this trail was ever signed"),
        }
    }
}

/// Checks a trail (the hashes of its records in order) against its newest
/// signed head, if there is one, with the audit key's `public` key.
pub fn check(hashes: &[&str], signed: Option<&SignedHead>, public: &[u8]) -> Anchored {
    let Some(s) = signed else {
        return Anchored::NeverSigned;
    };
    if !s.verify(public) {
        return Anchored::BadSignature;
    }
    let now = hashes.len() as u64;
    if now < s.len {
        return Anchored::RolledBack { signed: s.len, now };
    }
    if s.len > 0 {
        let at = s.len - 1;
        let here = usize::try_from(at).ok().and_then(|i| hashes.get(i));
        if here != Some(&s.hash.as_str()) {
            return Anchored::Rewritten { index: at };
        }
    }
    if now > s.len {
        return Anchored::Unsigned { count: now - s.len };
    }
    Anchored::Ok
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn head(len: u64, hash: &str) -> Head {
        Head {
            len,
            hash: hash.to_string(),
        }
    }

    #[test]
    fn a_key_is_created_once_private_and_reloads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.key");
        let (k, created) = AuditKey::load_or_create(&p).unwrap();
        assert!(created);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = AuditKey::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(k.public(), again.public());
        // Never over something already there.
        assert!(AuditKey::create(&p).is_err());
        std::fs::write(dir.path().join("bad.key"), "not a key\n").unwrap();
        let err = AuditKey::load(&dir.path().join("bad.key")).unwrap_err();
        assert!(
            err.to_string().contains("not an Ed25519 audit key"),
            "{err}"
        );
    }

    #[test]
    fn seals_are_deterministic_and_bound_to_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let k = AuditKey::create(&dir.path().join("audit.key")).unwrap();
        let a = k.seal("PJ-2026-0001", &head(3, "aa"));
        assert_eq!(a, k.seal("PJ-2026-0001", &head(3, "aa")));
        assert!(a.verify(k.public()));
        for changed in [
            SignedHead {
                len: 4,
                ..a.clone()
            },
            SignedHead {
                hash: "ab".into(),
                ..a.clone()
            },
            SignedHead {
                ticket: "PJ-2026-0002".into(),
                ..a.clone()
            },
        ] {
            assert!(!changed.verify(k.public()), "{changed:?}");
        }
        let other = AuditKey::create(&dir.path().join("other.key")).unwrap();
        assert!(!a.verify(other.public()));
    }

    #[test_case(&["a", "b", "c"], Some((3, "c")), Anchored::Ok ; "ends at the signed head")]
    #[test_case(&["a", "b"], Some((3, "c")), Anchored::RolledBack { signed: 3, now: 2 } ; "rolled back")]
    #[test_case(&["a", "x", "y"], Some((3, "c")), Anchored::Rewritten { index: 2 } ; "rewritten")]
    #[test_case(&["a", "b", "c", "d"], Some((3, "c")), Anchored::Unsigned { count: 1 } ; "records after")]
    #[test_case(&["a"], None, Anchored::NeverSigned ; "never signed")]
    fn trails_against_their_signed_heads(
        hashes: &[&str],
        signed: Option<(u64, &str)>,
        want: Anchored,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let k = AuditKey::create(&dir.path().join("audit.key")).unwrap();
        let s = signed.map(|(len, h)| k.seal("T", &head(len, h)));
        assert_eq!(check(hashes, s.as_ref(), k.public()), want);
    }

    #[test]
    fn a_forged_signature_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let k = AuditKey::create(&dir.path().join("audit.key")).unwrap();
        let forger = AuditKey::create(&dir.path().join("forger.key")).unwrap();
        let s = forger.seal("T", &head(1, "a"));
        assert_eq!(check(&["a"], Some(&s), k.public()), Anchored::BadSignature);
    }

    #[test]
    fn a_logged_head_is_sealed_again_without_signing() {
        let dir = tempfile::tempdir().unwrap();
        let k = AuditKey::create(&dir.path().join("audit.key")).unwrap();
        let fresh = |len, hash| k.seal("T1", &head(len, hash));
        let (logged, newer) = (fresh(2, "b"), fresh(3, "c"));
        let a = Anchor::open(
            AuditKey::load(&dir.path().join("audit.key")).unwrap(),
            dir.path(),
        )
        .unwrap();
        a.record("T1", &head(2, "b"), Some("first signature"))
            .unwrap();
        let signed = a.signatures();
        assert_eq!(a.sealed("T1", &head(2, "b")), logged);
        assert_eq!(a.signatures(), signed);
        // A head the log has not seen yet is signed.
        assert_eq!(a.sealed("T1", &head(3, "c")), newer);
        assert_eq!(a.signatures(), signed + 1);
    }

    #[test]
    fn of_the_log_and_the_shared_heads_the_longer_counts() {
        let dir = tempfile::tempdir().unwrap();
        let k = AuditKey::create(&dir.path().join("audit.key")).unwrap();
        let map = |heads: &[(&str, u64, &str)]| -> BTreeMap<String, SignedHead> {
            heads
                .iter()
                .map(|(t, len, h)| (t.to_string(), k.seal(t, &head(*len, h))))
                .collect()
        };
        let log = map(&[("T1", 2, "b"), ("T2", 5, "e"), ("T3", 1, "a")]);
        // T1 walked on by another collector; T2 rolled back in the database.
        let shared = map(&[
            ("T1", 4, "d"),
            ("T2", 3, "c"),
            ("T3", 1, "a"),
            ("T4", 1, "z"),
        ]);
        let all = union(log, shared);
        let lens: Vec<(&str, u64)> = all.iter().map(|(t, s)| (t.as_str(), s.len)).collect();
        assert_eq!(lens, [("T1", 4), ("T2", 5), ("T3", 1), ("T4", 1)]);
    }

    #[test]
    fn the_log_keeps_the_newest_head_per_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let k = AuditKey::create(&dir.path().join("audit.key")).unwrap();
        let a = Anchor::open(k, dir.path()).unwrap();
        a.record("T1", &head(1, "a"), None).unwrap();
        a.record("T1", &head(2, "b"), None).unwrap();
        a.record("T1", &head(2, "b"), None).unwrap();
        a.record("T2", &head(1, "z"), None).unwrap();
        let text = std::fs::read_to_string(dir.path().join(HEADS_FILE)).unwrap();
        assert_eq!(
            text.lines().count(),
            3,
            "a head already signed is not repeated"
        );
        let heads = read_heads(dir.path()).unwrap();
        assert_eq!(heads["T1"].len, 2);
        assert_eq!(heads["T2"].hash, "z");
        assert_eq!(a.newest("T1"), Some(heads["T1"].clone()));
    }
}
