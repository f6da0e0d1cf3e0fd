//! The sample size limit: whatever a device answers, one sample stays under
//! [`siaga_proto::MAX_SAMPLE_BYTES`] encoded, so that it fits a batch, the
//! collector takes it and it cannot fill the spool or the agent's memory.
//!
//! Over the limit a sample is cut, keeping as much as is useful: strings are
//! cut to the 255 octets of an SNMP DisplayString, then interfaces are
//! dropped (those named as inventory links last), and the cut is written
//! into the sample's `error` so that whoever reads it knows. What still does
//! not fit becomes a small `sample_too_large` event for the same device.

use prost::Message;
use siaga_proto::v1::{Event, Sample, sample};

/// Kind of the marker event that replaces a sample too large to cut.
pub const TOO_LARGE_EVENT: &str = "sample_too_large";
/// Octets kept of a string that had to be cut (SNMP DisplayString size).
pub const STRING_OCTETS: usize = 255;

/// What [`fit`] did to a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// It was under the limit and is unchanged.
    Whole,
    /// It was cut to fit: `was` encoded bytes, `dropped_interfaces` removed.
    Cut {
        /// Encoded size before.
        was: usize,
        /// Interfaces removed (0 when cutting strings was enough).
        dropped_interfaces: usize,
    },
    /// It was replaced by a [`TOO_LARGE_EVENT`] marker.
    Replaced {
        /// Encoded size before.
        was: usize,
    },
}

impl Fit {
    /// Whether the sample was changed.
    pub fn changed(&self) -> bool {
        !matches!(self, Fit::Whole)
    }
}

/// Cuts `s` (in place) to at most `limit` encoded bytes.
pub fn fit(s: &mut Sample, limit: usize) -> Fit {
    let was = s.encoded_len();
    if was <= limit {
        return Fit::Whole;
    }
    let note = format!("sample of {} over the {} limit", human(was), human(limit));
    cut(&mut s.device, STRING_OCTETS);
    let head = Sample {
        kind: None,
        device: s.device.clone(),
        ..*s
    }
    .encoded_len();
    let mut dropped_interfaces = 0;
    match &mut s.kind {
        Some(sample::Kind::Snmp(r)) => {
            for field in [&mut r.sys_name, &mut r.sys_descr, &mut r.error] {
                cut(field, STRING_OCTETS);
            }
            for i in &mut r.interfaces {
                for field in [
                    &mut i.if_name,
                    &mut i.if_descr,
                    &mut i.if_alias,
                    &mut i.link_name,
                ] {
                    cut(field, STRING_OCTETS);
                }
            }
            // Inventory links first, then by position: the links are what
            // the health engine and the tickets look at.
            r.interfaces.sort_by_key(|i| i.link_name.is_empty());
            let total = r.interfaces.len();
            let flag_room = note.len() + 80;
            // The SNMP result is field 11: a one-byte tag and its length.
            let len = |r: &siaga_proto::v1::SnmpResult| {
                let n = prost::Message::encoded_len(r);
                head + 1 + prost::length_delimiter_len(n) + n + flag_room
            };
            while len(r) > limit && !r.interfaces.is_empty() {
                // Drop a share at a time rather than one by one: each step
                // re-measures the whole result.
                let excess = len(r) - limit;
                let per = r.interfaces.iter().map(prost::Message::encoded_len).max();
                let n = (excess / per.unwrap_or(1).max(1)).max(1);
                let keep = r.interfaces.len().saturating_sub(n);
                r.interfaces.truncate(keep);
            }
            r.interfaces.sort_by_key(|i| i.if_index);
            dropped_interfaces = total - r.interfaces.len();
            let flag = if dropped_interfaces > 0 {
                format!(
                    "{note}: strings cut to {STRING_OCTETS} octets, {dropped_interfaces} of {total} interfaces dropped"
                )
            } else {
                format!("{note}: strings cut to {STRING_OCTETS} octets")
            };
            r.error = if r.error.is_empty() {
                flag
            } else {
                format!("{}; {flag}", r.error)
            };
        }
        Some(sample::Kind::Icmp(r)) => {
            r.rtts_us.clear();
            r.rtts_us.shrink_to_fit();
            cut(&mut r.error, STRING_OCTETS);
        }
        Some(sample::Kind::Event(e)) => {
            for field in [&mut e.kind, &mut e.link, &mut e.detail, &mut e.source] {
                cut(field, STRING_OCTETS);
            }
        }
        None => {}
    }
    if s.encoded_len() <= limit {
        return Fit::Cut {
            was,
            dropped_interfaces,
        };
    }
    s.kind = Some(sample::Kind::Event(Event {
        kind: TOO_LARGE_EVENT.into(),
        detail: note,
        source: "agent".into(),
        ..Default::default()
    }));
    Fit::Replaced { was }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.shrink_to_fit();
}

/// Bytes for people: "29.1 MiB", "4 MiB", "812 B".
pub fn human(n: usize) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n >= 1 << 20 {
        if n.is_multiple_of(1 << 20) {
            format!("{} MiB", n >> 20)
        } else {
            format!("{:.1} MiB", f / MIB)
        }
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use siaga_proto::v1::{IcmpResult, Interface, SnmpResult, SnmpStatus};
    use test_case::test_case;

    fn snmp(interfaces: usize, descr: usize, links: &[u32]) -> Sample {
        Sample {
            seq: 7,
            ts_us: 1_700_000_000_000_000,
            device: "sw-big".into(),
            kind: Some(sample::Kind::Snmp(SnmpResult {
                status: SnmpStatus::Ok as i32,
                sys_name: "sw-big".into(),
                interfaces: (1..=interfaces as u32)
                    .map(|i| Interface {
                        if_index: i,
                        if_name: format!("ge-{i}"),
                        if_descr: "d".repeat(descr),
                        oper_status: 1,
                        in_octets: Some(u64::from(i) * 1000),
                        link_name: if links.contains(&i) {
                            format!("link-{i}")
                        } else {
                            String::new()
                        },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
        }
    }

    fn interfaces(s: &Sample) -> Vec<&Interface> {
        match &s.kind {
            Some(sample::Kind::Snmp(r)) => r.interfaces.iter().collect(),
            _ => vec![],
        }
    }

    // (interfaces, ifDescr bytes, limit, interfaces kept at least, replaced)
    #[test_case(10, 20, 4 << 20, 10 ; "small sample untouched")]
    #[test_case(490, 60_000, 4 << 20, 490 ; "issue 13: 490 x 60 KB ifDescr, strings cut")]
    #[test_case(4096, 255, 4 << 20, 4096 ; "chassis switch at the string size fits whole")]
    #[test_case(20_000, 255, 4 << 20, 1 ; "more interfaces than fit are dropped")]
    #[test_case(490, 60_000, 64 << 10, 1 ; "small limit")]
    fn snmp_samples_fit(n: usize, descr: usize, limit: usize, at_least: usize) {
        let mut s = snmp(n, descr, &[3, n as u32]);
        let before = s.encoded_len();
        let fit = fit(&mut s, limit);
        assert!(s.encoded_len() <= limit, "{} > {limit}", s.encoded_len());
        let kept = interfaces(&s);
        assert!(kept.len() >= at_least.min(n), "{} kept", kept.len());
        if before <= limit {
            assert_eq!(fit, Fit::Whole);
            return;
        }
        assert!(fit.changed());
        // Links survive a cut; order stays by ifIndex.
        for l in [3u32, n as u32] {
            assert!(kept.iter().any(|i| i.if_index == l), "link {l} dropped");
        }
        assert!(kept.windows(2).all(|w| w[0].if_index < w[1].if_index));
        let Some(sample::Kind::Snmp(r)) = &s.kind else {
            panic!("kind changed: {fit:?}")
        };
        assert!(r.error.contains("over the"), "not flagged: {}", r.error);
        assert!(kept.iter().all(|i| i.if_descr.len() <= STRING_OCTETS));
        if let Fit::Cut {
            dropped_interfaces, ..
        } = fit
        {
            assert_eq!(dropped_interfaces, n - kept.len());
            if dropped_interfaces > 0 {
                assert!(r.error.contains(&format!("{dropped_interfaces} of {n}")));
            }
        }
    }

    #[test]
    fn uncuttable_becomes_a_marker() {
        let mut s = Sample {
            seq: 1,
            ts_us: 1,
            device: "x".repeat(10_000),
            kind: Some(sample::Kind::Event(Event {
                kind: "link_down".into(),
                detail: "y".repeat(100_000),
                ..Default::default()
            })),
        };
        // Even the cut strings are over a tiny limit: a marker remains.
        let fit = fit(&mut s, 300);
        assert!(
            matches!(fit, Fit::Replaced { was } if was > 110_000),
            "{fit:?}"
        );
        assert!(s.encoded_len() <= 400);
        let Some(sample::Kind::Event(e)) = &s.kind else {
            panic!()
        };
        assert_eq!(e.kind, TOO_LARGE_EVENT);
        assert_eq!(s.device.len(), STRING_OCTETS);
    }

    #[test]
    fn icmp_keeps_its_figures() {
        let mut s = Sample {
            seq: 1,
            ts_us: 1,
            device: "d".into(),
            kind: Some(sample::Kind::Icmp(IcmpResult {
                sent: 1_000_000,
                received: 999_999,
                rtt_avg_us: Some(800),
                rtts_us: vec![800; 1_000_000],
                ..Default::default()
            })),
        };
        assert!(matches!(fit(&mut s, 1 << 20), Fit::Cut { .. }));
        let Some(sample::Kind::Icmp(r)) = &s.kind else {
            panic!()
        };
        assert_eq!(
            (r.sent, r.received, r.rtt_avg_us),
            (1_000_000, 999_999, Some(800))
        );
        assert!(r.rtts_us.is_empty());
    }

    #[test]
    fn strings_cut_at_char_boundaries() {
        let mut s = "é".repeat(200);
        cut(&mut s, 255);
        assert_eq!(s.len(), 254);
        assert_eq!(human(29 << 20), "29 MiB");
        assert_eq!(human(4_500_000), "4.3 MiB");
    }
}
