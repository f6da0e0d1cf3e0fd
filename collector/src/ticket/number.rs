//! Ticket numbers: `PJ-2026-0001`, sequential per year.

use std::fmt;
use std::str::FromStr;

/// A ticket number: prefix `PJ` (Pemeliharaan Jaringan), the year, and a
/// sequence that starts at 1 every year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketNumber {
    /// Year the ticket was opened.
    pub year: i32,
    /// Sequence within the year, from 1.
    pub seq: u32,
}

/// The prefix of every ticket number.
pub const PREFIX: &str = "PJ";

impl TicketNumber {
    /// The number after `last` for a ticket opened in `year`.
    pub fn next(year: i32, last: Option<TicketNumber>) -> TicketNumber {
        match last {
            Some(l) if l.year == year => TicketNumber {
                year,
                seq: l.seq.saturating_add(1),
            },
            _ => TicketNumber { year, seq: 1 },
        }
    }
}

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{}-{:04}", self.year, self.seq)
    }
}

/// Not a ticket number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ticket number (expected e.g. PJ-2026-0001)")]
pub struct BadTicketNumber(pub String);

impl FromStr for TicketNumber {
    type Err = BadTicketNumber;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadTicketNumber(s.to_string());
        let mut parts = s.trim().split('-');
        let (Some(p), Some(y), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if !p.eq_ignore_ascii_case(PREFIX) || y.len() != 4 || n.len() < 4 {
            return Err(bad());
        }
        if !y.bytes().all(|b| b.is_ascii_digit()) || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let seq: u32 = n.parse().map_err(|_| bad())?;
        if seq == 0 {
            return Err(bad());
        }
        Ok(TicketNumber { year, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(2026, None => "PJ-2026-0001"; "first ever")]
    #[test_case(2026, Some(TicketNumber { year: 2026, seq: 1 }) => "PJ-2026-0002"; "next in the year")]
    #[test_case(2027, Some(TicketNumber { year: 2026, seq: 812 }) => "PJ-2027-0001"; "new year starts at one")]
    #[test_case(2026, Some(TicketNumber { year: 2026, seq: 9999 }) => "PJ-2026-10000"; "past four digits")]
    fn next(year: i32, last: Option<TicketNumber>) -> String {
        TicketNumber::next(year, last).to_string()
    }

    #[test_case("PJ-2026-0001" => Ok(TicketNumber { year: 2026, seq: 1 }); "plain")]
    #[test_case("pj-2026-0042" => Ok(TicketNumber { year: 2026, seq: 42 }); "lower case")]
    #[test_case(" PJ-2026-10000 " => Ok(TicketNumber { year: 2026, seq: 10000 }); "five digits, spaces")]
    #[test_case("PJ-2026-1" => Err(BadTicketNumber("PJ-2026-1".into())); "too short")]
    #[test_case("PJ-2026-0000" => Err(BadTicketNumber("PJ-2026-0000".into())); "zero")]
    #[test_case("XX-2026-0001" => Err(BadTicketNumber("XX-2026-0001".into())); "prefix")]
    #[test_case("PJ-26-0001" => Err(BadTicketNumber("PJ-26-0001".into())); "short year")]
    #[test_case("PJ-2026-00a1" => Err(BadTicketNumber("PJ-2026-00a1".into())); "letters")]
    #[test_case("PJ-2026-0001-2" => Err(BadTicketNumber("PJ-2026-0001-2".into())); "extra part")]
    #[test_case("PJ-2026-+001" => Err(BadTicketNumber("PJ-2026-+001".into())); "sign")]
    fn parse(s: &str) -> Result<TicketNumber, BadTicketNumber> {
        s.parse()
    }

    #[test]
    fn round_trip() {
        for seq in [1, 9, 10, 999, 1000, 9999, 10000] {
            let n = TicketNumber { year: 2026, seq };
            assert_eq!(n.to_string().parse::<TicketNumber>(), Ok(n));
        }
    }
}
