//! Transactions over the collector's few and precious records (tickets,
//! their SOP trail, health records, events, maintenance windows,
//! measurements, frozen reports), in the embedded `tickets.redb` or in
//! PostgreSQL, behind one API.
//!
//! The records are ordered tables of keys and values, which is what redb
//! is; [`Table`] names one and gives its key and value types. [`Db`] opens
//! a transaction on either backend, [`Tx`] reads and writes inside it:
//!
//! - **redb**: each table is the typed redb table it always was (the same
//!   names and types, so a `tickets.redb` written before this module reads
//!   as it did); a transaction is a redb transaction.
//! - **PostgreSQL** (`kv/postgres.rs`): one table `kv (tbl, k, v)` whose
//!   keys are the redb keys encoded as bytes that sort as redb sorts them
//!   (see [`Codec`]), so ranges read in the same order. A write transaction
//!   takes one transaction-scoped advisory lock first: writers run one at
//!   a time across every collector on the database, as redb's do within
//!   one process, so a read-then-write in a transaction (the next ticket
//!   number, "is this incident open already?") is never raced.
//!
//! A write transaction not committed is rolled back when dropped, on
//! either backend.

use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::StoreError;

pub mod postgres;

/// A type a table's key or value holds: stored natively by redb, and as
/// bytes in PostgreSQL that sort as redb sorts the value (strings escaped
/// and terminated, integers big-endian with the sign flipped, tuples
/// element by element).
pub trait Codec: Sized + 'static {
    /// The type redb stores.
    type Redb: redb::Value + 'static;
    /// From what redb read.
    fn from_redb(v: <Self::Redb as redb::Value>::SelfType<'_>) -> Self;
    /// From the bytes [`Arg::encode`] wrote; `None` when they are not such bytes.
    fn decode(b: &mut &[u8]) -> Option<Self>;
}

/// Something a table's key or value of type `T` can be given as (a `&str`
/// for a `String` key, a `&[u8]` for a `Vec<u8>` value, …), without
/// allocating it as a `T` first.
pub trait Arg<T: Codec> {
    /// As redb stores it.
    fn redb(&self) -> <T::Redb as redb::Value>::SelfType<'_>;
    /// As PostgreSQL stores it (order-preserving for keys).
    fn encode(&self, out: &mut Vec<u8>);
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn decode_str(b: &mut &[u8]) -> Option<String> {
    let mut s = Vec::new();
    let mut i = 0;
    loop {
        match (b.get(i), b.get(i + 1)) {
            (Some(0), Some(0)) => {
                *b = &b[i + 2..];
                return String::from_utf8(s).ok();
            }
            (Some(0), Some(0xff)) => {
                s.push(0);
                i += 2;
            }
            (Some(&c), _) if c != 0 => {
                s.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
}

fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = b.split_at_checked(N)?;
    *b = rest;
    head.try_into().ok()
}

impl Codec for String {
    type Redb = &'static str;
    fn from_redb(v: &str) -> Self {
        v.to_string()
    }
    fn decode(b: &mut &[u8]) -> Option<Self> {
        decode_str(b)
    }
}

impl Arg<String> for &str {
    fn redb(&self) -> &str {
        self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_str(self, out)
    }
}

impl Arg<String> for String {
    fn redb(&self) -> &str {
        self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_str(self, out)
    }
}

/// Bytes: only ever a table's value (they take the rest of the encoding).
impl Codec for Vec<u8> {
    type Redb = &'static [u8];
    fn from_redb(v: &[u8]) -> Self {
        v.to_vec()
    }
    fn decode(b: &mut &[u8]) -> Option<Self> {
        let v = b.to_vec();
        *b = &[];
        Some(v)
    }
}

impl Arg<Vec<u8>> for &[u8] {
    fn redb(&self) -> &[u8] {
        self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

impl Arg<Vec<u8>> for Vec<u8> {
    fn redb(&self) -> &[u8] {
        self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            type Redb = $t;
            fn from_redb(v: $t) -> Self {
                v
            }
            fn decode(b: &mut &[u8]) -> Option<Self> {
                take(b).map(<$t>::from_be_bytes)
            }
        }
        impl Arg<$t> for $t {
            fn redb(&self) -> $t {
                *self
            }
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes())
            }
        }
    )*};
}
unsigned!(u32, u64);

impl Codec for i64 {
    type Redb = i64;
    fn from_redb(v: i64) -> Self {
        v
    }
    fn decode(b: &mut &[u8]) -> Option<Self> {
        take(b).map(|a| (u64::from_be_bytes(a) ^ (1 << 63)) as i64)
    }
}

impl Arg<i64> for i64 {
    fn redb(&self) -> i64 {
        *self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((*self as u64) ^ (1 << 63)).to_be_bytes())
    }
}

impl Codec for (String, u64) {
    type Redb = (&'static str, u64);
    fn from_redb(v: (&str, u64)) -> Self {
        (v.0.to_string(), v.1)
    }
    fn decode(b: &mut &[u8]) -> Option<Self> {
        Some((String::decode(b)?, u64::decode(b)?))
    }
}

impl Arg<(String, u64)> for (&str, u64) {
    fn redb(&self) -> (&str, u64) {
        (self.0, self.1)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_str(self.0, out);
        self.1.encode(out);
    }
}

impl Arg<(String, u64)> for (String, u64) {
    fn redb(&self) -> (&str, u64) {
        (self.0.as_str(), self.1)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_str(&self.0, out);
        self.1.encode(out);
    }
}

impl Codec for (String, String) {
    type Redb = (&'static str, &'static str);
    fn from_redb(v: (&str, &str)) -> Self {
        (v.0.to_string(), v.1.to_string())
    }
    fn decode(b: &mut &[u8]) -> Option<Self> {
        Some((String::decode(b)?, String::decode(b)?))
    }
}

impl Arg<(String, String)> for (&str, &str) {
    fn redb(&self) -> (&str, &str) {
        (self.0, self.1)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_str(self.0, out);
        encode_str(self.1, out);
    }
}

impl Arg<(String, String)> for (String, String) {
    fn redb(&self) -> (&str, &str) {
        (self.0.as_str(), self.1.as_str())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_str(&self.0, out);
        encode_str(&self.1, out);
    }
}

impl Codec for (i64, u64) {
    type Redb = (i64, u64);
    fn from_redb(v: (i64, u64)) -> Self {
        v
    }
    fn decode(b: &mut &[u8]) -> Option<Self> {
        Some((i64::decode(b)?, u64::decode(b)?))
    }
}

impl Arg<(i64, u64)> for (i64, u64) {
    fn redb(&self) -> (i64, u64) {
        *self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

/// The bytes of `a` as PostgreSQL keeps them.
pub fn bytes<T: Codec>(a: &impl Arg<T>) -> Vec<u8> {
    let mut out = Vec::new();
    a.encode(&mut out);
    out
}

/// `T` from the bytes PostgreSQL kept; all of them must be used.
pub fn from_bytes<T: Codec>(table: &'static str, mut b: &[u8]) -> Result<T, StoreError> {
    match T::decode(&mut b) {
        Some(v) if b.is_empty() => Ok(v),
        _ => Err(StoreError::Decode {
            what: table,
            message: "a key or value that is not the table's type".into(),
        }),
    }
}

/// A table: its name (the redb table's) and its key and value types.
pub struct Table<K, V> {
    /// The name, as redb and the `kv` table's `tbl` column know it.
    pub name: &'static str,
    kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Table<K, V> {}

impl<K: Codec, V: Codec> Table<K, V>
where
    K::Redb: redb::Key,
{
    /// The table called `name`.
    pub const fn new(name: &'static str) -> Self {
        Table {
            name,
            kv: PhantomData,
        }
    }

    fn redb(&self) -> TableDefinition<'static, K::Redb, V::Redb> {
        TableDefinition::new(self.name)
    }
}

/// Where the records live.
#[derive(Clone)]
pub enum Db {
    /// `tickets.redb` in the data directory.
    Redb(Arc<redb::Database>),
    /// The `kv` table of a PostgreSQL database.
    Pg(Arc<postgres::PgKv>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Db::Redb(_) => f.write_str("Db::Redb"),
            Db::Pg(p) => write!(f, "Db::Pg({p:?})"),
        }
    }
}

impl From<Arc<redb::Database>> for Db {
    fn from(db: Arc<redb::Database>) -> Self {
        Db::Redb(db)
    }
}

impl Db {
    /// A transaction that only reads: a snapshot as of its start.
    pub fn read(&self) -> Result<Tx, StoreError> {
        Ok(Tx(match self {
            Db::Redb(db) => Inner::RedbRead(db.begin_read()?),
            Db::Pg(p) => Inner::Pg(p.begin(false)?),
        }))
    }

    /// A transaction that writes: one at a time (on PostgreSQL, one at a
    /// time across every collector of the database).
    pub fn write(&self) -> Result<Tx, StoreError> {
        Ok(Tx(match self {
            Db::Redb(db) => Inner::RedbWrite(Box::new(db.begin_write()?)),
            Db::Pg(p) => Inner::Pg(p.begin(true)?),
        }))
    }

    /// Creates the tables `names` where that is needed (redb: a read of a
    /// table never written fails; PostgreSQL: nothing to do).
    pub fn create<K: Codec, V: Codec>(&self, tables: &[Table<K, V>]) -> Result<(), StoreError>
    where
        K::Redb: redb::Key,
    {
        if let Db::Redb(db) = self {
            let w = db.begin_write()?;
            for t in tables {
                w.open_table(t.redb())?;
            }
            w.commit()?;
        }
        Ok(())
    }

    /// The redb database, when that is where the records live.
    pub fn redb(&self) -> Option<&Arc<redb::Database>> {
        match self {
            Db::Redb(db) => Some(db),
            Db::Pg(_) => None,
        }
    }
}

/// The records' database of a collector configured as `cfg` says:
/// `tickets.redb` in its data directory, or the PostgreSQL database of
/// `[store] url`. On PostgreSQL, a `tickets.redb` that holds tickets is
/// refused (they would silently disappear from view): it is moved first,
/// with `siaga-collector migrate`.
pub fn open(cfg: &crate::config::CollectorConfig) -> Result<Db, StoreError> {
    match &cfg.store.url {
        None => Ok(Db::Redb(Arc::new(crate::schema::open_tickets(
            &cfg.data_dir,
        )?))),
        Some(url) => {
            if let Some((path, tickets)) = tickets_left_in(&cfg.data_dir)? {
                return Err(StoreError::Open {
                    path,
                    message: format!(
                        "holds {tickets} ticket(s), and [store] url says the tickets are in \
                         PostgreSQL: move them there first with `siaga-collector migrate \
                         --config collector.toml --to URL`, or remove [store] url"
                    ),
                });
            }
            Ok(Db::Pg(Arc::new(postgres::PgKv::open(url)?)))
        }
    }
}

/// The data directory's `tickets.redb` and how many tickets it holds, when
/// it holds any: what a collector on PostgreSQL would no longer read
/// (`serve` and `validate` refuse it).
pub fn tickets_left_in(
    data_dir: &std::path::Path,
) -> Result<Option<(std::path::PathBuf, usize)>, StoreError> {
    let path = data_dir.join(crate::schema::TICKETS_FILE.name);
    if !path.exists() {
        return Ok(None);
    }
    let db = Db::Redb(Arc::new(crate::schema::open_checked(&path)?));
    let n = crate::sop::store::ticket_count(&db).map_err(|e| StoreError::Open {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((n > 0).then_some((path, n)))
}

/// What [`move_records`] moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// (table, rows) of each table copied.
    pub tables: Vec<(&'static str, u64)>,
    /// Tickets whose trail verified in PostgreSQL after the move.
    pub verified: usize,
    /// Where `tickets.redb` was kept after the move (`None`: there was none).
    pub kept_as: Option<std::path::PathBuf>,
}

/// Moves the records of the data directory's `tickets.redb` (tickets, SOP
/// trails, health records, events, windows, measurements, frozen reports)
/// into the PostgreSQL database at `url`, in one transaction there; then
/// checks the result (the same tickets, every trail verifying against its
/// head) and keeps the file as `tickets.redb.moved` so that the collector,
/// now on PostgreSQL, does not refuse to start beside it. A database that
/// holds tickets already is refused (another collector's: nothing is
/// mixed). Nothing to do without the file. `dry_run` counts what would
/// move and writes nothing anywhere.
pub fn move_records(
    cfg: &crate::config::CollectorConfig,
    url: &str,
    dry_run: bool,
) -> Result<Moved, String> {
    let path = cfg.data_dir.join(crate::schema::TICKETS_FILE.name);
    if !path.exists() {
        return Ok(Moved::default());
    }
    let from = Db::Redb(Arc::new(
        crate::schema::open_tickets(&cfg.data_dir).map_err(|e| e.to_string())?,
    ));
    if dry_run {
        // Counted by a copy into memory: nothing is written to PostgreSQL,
        // not even the schema.
        let memory = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| e.to_string())?;
        let scratch = Db::Redb(Arc::new(memory));
        let (r, w) = (
            from.read().map_err(|e| e.to_string())?,
            scratch.write().map_err(|e| e.to_string())?,
        );
        return Ok(Moved {
            tables: copy_records(&r, &w).map_err(|e| e.to_string())?,
            verified: 0,
            kept_as: None,
        });
    }
    let to = Db::Pg(Arc::new(
        postgres::PgKv::open(url).map_err(|e| e.to_string())?,
    ));
    let there = crate::sop::store::ticket_count(&to).map_err(|e| e.to_string())?;
    if there > 0 {
        return Err(format!(
            "the database already holds {there} ticket(s) (another collector's?): the tickets of \
             {} are not mixed into them; use an empty database",
            path.display()
        ));
    }
    let r = from.read().map_err(|e| e.to_string())?;
    let w = to.write().map_err(|e| e.to_string())?;
    let tables = copy_records(&r, &w).map_err(|e| e.to_string())?;
    drop(r);
    w.commit().map_err(|e| e.to_string())?;
    // The same tickets on both sides, and every trail intact there.
    let sop_text =
        std::fs::read_to_string(&cfg.sop).map_err(|e| format!("{}: {e}", cfg.sop.display()))?;
    let calendar = crate::sop::Calendar::new(&cfg.calendar).map_err(|e| e.to_string())?;
    let open = |db: &Db| {
        crate::sop::store::SopStore::new(db.clone(), &sop_text, &cfg.sop, calendar.clone())
            .map_err(|e| e.to_string())
    };
    let (before, after) = (open(&from)?, open(&to)?);
    let (a, b) = (
        before.list().map_err(|e| e.to_string())?,
        after.list().map_err(|e| e.to_string())?,
    );
    if a != b {
        return Err(format!(
            "after the copy PostgreSQL lists {} ticket(s), {} {}; {} is left in place",
            b.len(),
            path.display(),
            a.len(),
            path.display()
        ));
    }
    let verified = after.verify().map_err(|e| e.to_string())?;
    if let Some((ticket, Err(t))) = verified.iter().find(|(_, r)| r.is_err()) {
        return Err(format!(
            "after the copy the trail of {ticket} does not verify in PostgreSQL ({t}); {} is \
             left in place",
            path.display()
        ));
    }
    drop((before, from));
    let kept = path.with_extension("redb.moved");
    std::fs::rename(&path, &kept).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Moved {
        tables,
        verified: verified.len(),
        kept_as: Some(kept),
    })
}

/// A transaction on either backend.
pub struct Tx(Inner);

enum Inner {
    RedbRead(redb::ReadTransaction),
    // Boxed: a redb write transaction is several times the others' size.
    RedbWrite(Box<redb::WriteTransaction>),
    Pg(postgres::PgTx),
}

/// Rows of a range, in order.
pub type Rows<'a, K, V> = Box<dyn Iterator<Item = Result<(K, V), StoreError>> + 'a>;

fn get_in<K: Codec, V: Codec, T: ReadableTable<K::Redb, V::Redb>>(
    t: &T,
    k: &impl Arg<K>,
) -> Result<Option<V>, StoreError>
where
    K::Redb: redb::Key,
{
    Ok(t.get(k.redb())?.map(|g| V::from_redb(g.value())))
}

fn redb_bound<'a, K: Codec, A: Arg<K>>(
    b: &'a Bound<A>,
) -> Bound<<K::Redb as redb::Value>::SelfType<'a>> {
    match b {
        Bound::Included(a) => Bound::Included(a.redb()),
        Bound::Excluded(a) => Bound::Excluded(a.redb()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A row as redb's range yields it.
type RedbRow<'a, K, V> =
    Result<(redb::AccessGuard<'a, K>, redb::AccessGuard<'a, V>), redb::StorageError>;

fn owned<K: Codec, V: Codec>(item: RedbRow<'_, K::Redb, V::Redb>) -> Result<(K, V), StoreError>
where
    K::Redb: redb::Key,
{
    let (k, v) = item?;
    Ok((K::from_redb(k.value()), V::from_redb(v.value())))
}

impl Tx {
    /// The value of key `k` in `t`.
    pub fn get<K: Codec, V: Codec>(
        &self,
        t: &Table<K, V>,
        k: impl Arg<K>,
    ) -> Result<Option<V>, StoreError>
    where
        K::Redb: redb::Key,
    {
        match &self.0 {
            Inner::RedbRead(r) => match r.open_table(t.redb()) {
                Ok(tb) => get_in(&tb, &k),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Inner::RedbWrite(w) => get_in(&w.open_table(t.redb())?, &k),
            Inner::Pg(p) => p
                .get(t.name, &bytes(&k))?
                .map(|b| from_bytes(t.name, &b))
                .transpose(),
        }
    }

    /// Whether `t` has key `k`.
    pub fn contains<K: Codec, V: Codec>(
        &self,
        t: &Table<K, V>,
        k: impl Arg<K>,
    ) -> Result<bool, StoreError>
    where
        K::Redb: redb::Key,
    {
        Ok(self.get(t, k)?.is_some())
    }

    /// Sets key `k` of `t` to `v` (a write transaction).
    pub fn insert<K: Codec, V: Codec>(
        &self,
        t: &Table<K, V>,
        k: impl Arg<K>,
        v: impl Arg<V>,
    ) -> Result<(), StoreError>
    where
        K::Redb: redb::Key,
    {
        match &self.0 {
            Inner::RedbRead(_) => Err(read_only(t.name)),
            Inner::RedbWrite(w) => {
                w.open_table(t.redb())?.insert(k.redb(), v.redb())?;
                Ok(())
            }
            Inner::Pg(p) => p.insert(t.name, &bytes(&k), &bytes(&v)),
        }
    }

    /// Removes key `k` of `t`; whether it was there.
    pub fn remove<K: Codec, V: Codec>(
        &self,
        t: &Table<K, V>,
        k: impl Arg<K>,
    ) -> Result<bool, StoreError>
    where
        K::Redb: redb::Key,
    {
        match &self.0 {
            Inner::RedbRead(_) => Err(read_only(t.name)),
            Inner::RedbWrite(w) => Ok(w.open_table(t.redb())?.remove(k.redb())?.is_some()),
            Inner::Pg(p) => p.remove(t.name, &bytes(&k)),
        }
    }

    /// The rows of `t` with keys between `from` and `to`, in key order
    /// (`rev`: newest first). Read lazily in a read transaction; in a
    /// write transaction the range is read first (writers read small ones).
    pub fn range<K: Codec, V: Codec, A: Arg<K>>(
        &self,
        t: &Table<K, V>,
        from: Bound<A>,
        to: Bound<A>,
        rev: bool,
    ) -> Result<Rows<'_, K, V>, StoreError>
    where
        K::Redb: redb::Key,
    {
        let bounds = || (redb_bound::<K, A>(&from), redb_bound::<K, A>(&to));
        match &self.0 {
            Inner::RedbRead(r) => {
                let tb = match r.open_table(t.redb()) {
                    Ok(tb) => tb,
                    Err(redb::TableError::TableDoesNotExist(_)) => {
                        return Ok(Box::new(std::iter::empty()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let range = tb.range(bounds())?;
                Ok(if rev {
                    Box::new(range.rev().map(owned::<K, V>))
                } else {
                    Box::new(range.map(owned::<K, V>))
                })
            }
            Inner::RedbWrite(w) => {
                let tb = w.open_table(t.redb())?;
                let range = tb.range(bounds())?;
                let rows: Vec<_> = if rev {
                    range.rev().map(owned::<K, V>).collect()
                } else {
                    range.map(owned::<K, V>).collect()
                };
                Ok(Box::new(rows.into_iter()))
            }
            Inner::Pg(p) => {
                let enc = |b: &Bound<A>| match b {
                    Bound::Included(a) => Bound::Included(bytes(a)),
                    Bound::Excluded(a) => Bound::Excluded(bytes(a)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let name = t.name;
                Ok(Box::new(p.range(name, enc(&from), enc(&to), rev).map(
                    move |row| {
                        let (k, v) = row?;
                        Ok((from_bytes(name, &k)?, from_bytes(name, &v)?))
                    },
                )))
            }
        }
    }

    /// Every row of `t`, in key order.
    pub fn iter<K: Codec, V: Codec>(&self, t: &Table<K, V>) -> Result<Rows<'_, K, V>, StoreError>
    where
        K::Redb: redb::Key,
    {
        self.range::<K, V, NoArg>(t, Bound::Unbounded, Bound::Unbounded, false)
    }

    /// Makes the writes durable (a read transaction just ends).
    pub fn commit(self) -> Result<(), StoreError> {
        match self.0 {
            Inner::RedbRead(_) => Ok(()),
            Inner::RedbWrite(w) => Ok((*w).commit()?),
            Inner::Pg(p) => p.commit(),
        }
    }
}

/// Copies every row of `t` read in `from` into `to` (a write transaction),
/// as it is; the rows copied (what `migrate` moves).
pub fn copy_table<K: Codec + Arg<K>, V: Codec + Arg<V>>(
    t: &Table<K, V>,
    from: &Tx,
    to: &Tx,
) -> Result<(&'static str, u64), StoreError>
where
    K::Redb: redb::Key,
{
    let mut n = 0;
    for row in from.iter(t)? {
        let (k, v) = row?;
        to.insert(t, k, v)?;
        n += 1;
    }
    Ok((t.name, n))
}

/// Copies every record table (tickets, SOP trails, health records,
/// events, windows, measurements, frozen reports) read in `from` into `to`,
/// a write transaction the caller commits: (table, rows) of each.
pub fn copy_records(from: &Tx, to: &Tx) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let mut out = crate::sop::store::copy_tables(from, to)?;
    out.extend(crate::ticket::store::copy_tables(from, to)?);
    out.extend(crate::measure::store::copy_tables(from, to)?);
    out.extend(crate::report::store::copy_tables(from, to)?);
    Ok(out)
}

fn read_only(table: &'static str) -> StoreError {
    StoreError::Decode {
        what: table,
        message: "a write in a read transaction".into(),
    }
}

/// The bound of an unbounded range (never encoded).
enum NoArg {}

impl<T: Codec> Arg<T> for NoArg {
    fn redb(&self) -> <T::Redb as redb::Value>::SelfType<'_> {
        match *self {}
    }
    fn encode(&self, _: &mut Vec<u8>) {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_keys_sort_as_redb_sorts_them() {
        let strs = ["", "\0", "\0a", "a", "a\0", "a\0b", "ab", "b", "é"];
        for a in strs {
            for b in strs {
                assert_eq!(
                    bytes::<String>(&a).cmp(&bytes::<String>(&b)),
                    a.as_bytes().cmp(b.as_bytes()),
                    "{a:?} {b:?}"
                );
                let (x, y) = ((a, 7u64), (b, 3u64));
                assert_eq!(
                    bytes::<(String, u64)>(&x).cmp(&bytes::<(String, u64)>(&y)),
                    (a.as_bytes(), 7).cmp(&(b.as_bytes(), 3)),
                    "{a:?} {b:?}"
                );
                assert_eq!(
                    from_bytes::<String>("t", &bytes::<String>(&a)).expect("decodes"),
                    a
                );
            }
        }
        let ints = [i64::MIN, -2, -1, 0, 1, i64::MAX];
        for a in ints {
            for b in ints {
                let (x, y) = ((a, 1u64), (b, 0u64));
                assert_eq!(
                    bytes::<(i64, u64)>(&x).cmp(&bytes::<(i64, u64)>(&y)),
                    x.cmp(&y)
                );
            }
            assert_eq!(
                from_bytes::<i64>("t", &bytes::<i64>(&a)).expect("decodes"),
                a
            );
        }
        assert!(from_bytes::<u64>("t", &[1, 2]).is_err());
        assert!(from_bytes::<String>("t", b"abc").is_err());
    }
}
