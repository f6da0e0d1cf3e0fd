//! Per-minute rollups of a device's readings: for each device and each
//! minute, the count, lowest, highest and sum of its round trip, loss and
//! jitter, and of each of its links' utilisation in and out and errors.
//!
//! The ingest writer folds every newly stored sample into its minute in
//! the same transaction as the sample itself (a resend, which the store
//! drops, is never folded), so a chart over a day or a week reads 1,440 or
//! 10,080 rows instead of every raw sample. What a sample adds is decided
//! here once, for the rollups and for charts folded from raw samples alike
//! ([`icmp_readings`]): the two give the same buckets.
//!
//! I/O-free: the store keeps the bytes ([`Minute::encode`]).

use siaga_proto::v1;

use crate::error::StoreError;

/// The length of a rollup, µs.
pub const MINUTE_US: i64 = 60_000_000;

/// The start of the minute that holds `ts_us`.
pub fn minute_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(MINUTE_US) * MINUTE_US
}

/// Readings folded: how many, the lowest, the highest and their sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fold {
    /// Lowest (of each reading's own low end).
    pub min: f64,
    /// Highest (of each reading's own high end).
    pub max: f64,
    /// Sum of the readings.
    pub sum: f64,
    /// How many.
    pub n: u32,
}

impl Default for Fold {
    fn default() -> Self {
        Fold {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        }
    }
}

impl Fold {
    /// Adds reading `v` whose own spread is `lo..=hi` (a probe's minimum,
    /// average and maximum round trip); a reading that is not a number is
    /// left out.
    pub fn add_span(&mut self, lo: f64, v: f64, hi: f64) {
        if !(lo.is_finite() && v.is_finite() && hi.is_finite()) {
            return;
        }
        self.min = self.min.min(lo.min(v));
        self.max = self.max.max(hi.max(v));
        self.sum += v;
        self.n = self.n.saturating_add(1);
    }

    /// Adds reading `v`.
    pub fn add(&mut self, v: f64) {
        self.add_span(v, v, v);
    }

    /// Adds what `other` folded.
    pub fn merge(&mut self, other: &Fold) {
        if other.n == 0 {
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.n = self.n.saturating_add(other.n);
    }
}

/// What one ICMP reading adds to the round trip (low, average, high, ms),
/// loss (%) and jitter (ms) charts: a probe that failed before it sent
/// anything has no loss to show; absent round trips add nothing.
pub fn icmp_readings(i: &v1::IcmpResult) -> [Option<(f64, f64, f64)>; 3] {
    let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
    let rtt = ms(i.rtt_avg_us).map(|avg| {
        let lo = ms(i.rtt_min_us).unwrap_or(avg);
        let hi = ms(i.rtt_max_us).unwrap_or(avg);
        (lo, avg, hi)
    });
    let loss = (i.error.is_empty() || i.sent > 0).then_some((i.loss_pct, i.loss_pct, i.loss_pct));
    let jitter = ms(i.jitter_us).map(|j| (j, j, j));
    [rtt, loss, jitter]
}

/// One link's minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkMinute {
    /// The inventory link's name, as the agent named the interface.
    pub name: String,
    /// Utilisation in, percent.
    pub util_in: Fold,
    /// Utilisation out, percent.
    pub util_out: Fold,
    /// Errors per second.
    pub errors: Fold,
}

/// One device's minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minute {
    /// Its start, µs since the epoch (a whole minute).
    pub start_us: i64,
    /// Round trip, ms.
    pub rtt: Fold,
    /// Loss, percent.
    pub loss: Fold,
    /// Jitter, ms.
    pub jitter: Fold,
    /// Per link the agent named on an interface, by name.
    pub links: Vec<LinkMinute>,
}

/// The form of [`Minute::encode`].
const FORM: u8 = 1;

impl Minute {
    /// An empty minute starting at `start_us`.
    pub fn new(start_us: i64) -> Minute {
        Minute {
            start_us,
            ..Default::default()
        }
    }

    /// Whether `s` adds anything to a rollup (ICMP and SNMP readings do).
    pub fn takes(s: &v1::Sample) -> bool {
        matches!(
            s.kind,
            Some(v1::sample::Kind::Icmp(_) | v1::sample::Kind::Snmp(_))
        )
    }

    /// Folds sample `s` in. An SNMP sample adds each interface the agent
    /// named as a link (the first of that name, as the link's chart reads
    /// it).
    pub fn add(&mut self, s: &v1::Sample) {
        match &s.kind {
            Some(v1::sample::Kind::Icmp(i)) => {
                let [rtt, loss, jitter] = icmp_readings(i);
                for (fold, r) in [
                    (&mut self.rtt, rtt),
                    (&mut self.loss, loss),
                    (&mut self.jitter, jitter),
                ] {
                    if let Some((lo, v, hi)) = r {
                        fold.add_span(lo, v, hi);
                    }
                }
            }
            Some(v1::sample::Kind::Snmp(snmp)) => {
                let mut seen: Vec<&str> = Vec::new();
                for i in &snmp.interfaces {
                    if i.link_name.is_empty() || seen.contains(&i.link_name.as_str()) {
                        continue;
                    }
                    seen.push(&i.link_name);
                    let l = self.link_mut(&i.link_name);
                    if let Some(v) = i.util_in_pct {
                        l.util_in.add(v);
                    }
                    if let Some(v) = i.util_out_pct {
                        l.util_out.add(v);
                    }
                    if let Some(v) = i.errors_per_s {
                        l.errors.add(v);
                    }
                }
            }
            _ => {}
        }
    }

    fn link_mut(&mut self, name: &str) -> &mut LinkMinute {
        let at = match self.links.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(at) => at,
            Err(at) => {
                self.links.insert(
                    at,
                    LinkMinute {
                        name: name.to_string(),
                        ..Default::default()
                    },
                );
                at
            }
        };
        &mut self.links[at]
    }

    /// The link named `name`, if this minute has it.
    pub fn link(&self, name: &str) -> Option<&LinkMinute> {
        self.links
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|at| &self.links[at])
    }

    /// Adds what `other` (the same minute) folded.
    pub fn merge(&mut self, other: &Minute) {
        self.rtt.merge(&other.rtt);
        self.loss.merge(&other.loss);
        self.jitter.merge(&other.jitter);
        for o in &other.links {
            let l = self.link_mut(&o.name);
            l.util_in.merge(&o.util_in);
            l.util_out.merge(&o.util_out);
            l.errors.merge(&o.errors);
        }
    }

    /// The stored form (the start lives in the key): a form byte, the
    /// three folds, the number of links and each link's name and folds;
    /// numbers little-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORM);
        for f in [&self.rtt, &self.loss, &self.jitter] {
            push_fold(out, f);
        }
        let n = u16::try_from(self.links.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for l in self.links.iter().take(usize::from(n)) {
            let name = &l.name.as_bytes()[..l.name.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            for f in [&l.util_in, &l.util_out, &l.errors] {
                push_fold(out, f);
            }
        }
    }

    /// Reads the stored form of the minute starting at `start_us`.
    pub fn decode(start_us: i64, bytes: &[u8]) -> Result<Minute, StoreError> {
        let mut r = Reader(bytes);
        if r.take::<1>()? != [FORM] {
            return Err(bad("a rollup of an unknown form"));
        }
        let mut m = Minute::new(start_us);
        m.rtt = r.fold()?;
        m.loss = r.fold()?;
        m.jitter = r.fold()?;
        let n = u16::from_le_bytes(r.take()?);
        for _ in 0..n {
            let len = usize::from(u16::from_le_bytes(r.take()?));
            let name = r.bytes(len)?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| bad("a link name that is not UTF-8"))?;
            m.links.push(LinkMinute {
                name,
                util_in: r.fold()?,
                util_out: r.fold()?,
                errors: r.fold()?,
            });
        }
        if !r.0.is_empty() {
            return Err(bad("bytes after the last link"));
        }
        Ok(m)
    }
}

fn push_fold(out: &mut Vec<u8>, f: &Fold) {
    out.extend_from_slice(&f.n.to_le_bytes());
    out.extend_from_slice(&f.min.to_le_bytes());
    out.extend_from_slice(&f.max.to_le_bytes());
    out.extend_from_slice(&f.sum.to_le_bytes());
}

fn bad(message: &str) -> StoreError {
    StoreError::Decode {
        what: "rollup",
        message: message.into(),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| bad("cut short"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(bad("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn fold(&mut self) -> Result<Fold, StoreError> {
        Ok(Fold {
            n: u32::from_le_bytes(self.take()?),
            min: f64::from_le_bytes(self.take()?),
            max: f64::from_le_bytes(self.take()?),
            sum: f64::from_le_bytes(self.take()?),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn snmp(links: &[(&str, f64)]) -> v1::Sample {
        v1::Sample {
            kind: Some(v1::sample::Kind::Snmp(v1::SnmpResult {
                interfaces: links
                    .iter()
                    .map(|(name, v)| v1::Interface {
                        link_name: name.to_string(),
                        util_in_pct: Some(*v),
                        util_out_pct: Some(v * 2.0),
                        errors_per_s: Some(0.0),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn minutes_start_on_whole_minutes_also_before_the_epoch() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999_999), 0);
        assert_eq!(minute_of(60_000_000), 60_000_000);
        assert_eq!(minute_of(-1), -60_000_000);
    }

    #[test]
    fn a_minute_reads_back_as_written_and_merges_like_its_samples() {
        let mut m = Minute::new(120_000_000);
        m.add(&v1::Sample {
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent: 4,
                rtt_min_us: Some(500),
                rtt_avg_us: Some(1_500),
                rtt_max_us: Some(4_000),
                loss_pct: 25.0,
                ..Default::default()
            })),
            ..Default::default()
        });
        // The second interface of one name is not the link's.
        m.add(&snmp(&[
            ("wan", 10.0),
            ("lan", 3.0),
            ("wan", 99.0),
            ("", 1.0),
        ]));
        let mut other = Minute::new(120_000_000);
        other.add(&snmp(&[("wan", 30.0)]));
        m.merge(&other);
        assert_eq!(
            (m.rtt.min, m.rtt.max, m.rtt.sum, m.rtt.n),
            (0.5, 4.0, 1.5, 1)
        );
        assert_eq!((m.loss.n, m.jitter.n), (1, 0));
        let names: Vec<&str> = m.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lan", "wan"]);
        let wan = m.link("wan").unwrap();
        assert_eq!(
            (wan.util_in.min, wan.util_in.max, wan.util_in.n),
            (10.0, 30.0, 2)
        );
        assert_eq!(wan.util_out.sum, 80.0);
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        assert_eq!(Minute::decode(120_000_000, &bytes).unwrap(), m);
        assert!(Minute::decode(0, &bytes[..bytes.len() - 1]).is_err());
        assert!(Minute::decode(0, &[9]).is_err());
    }
}
