//! The words of the wire's domain enums: each value's name in the .proto
//! file is the word people and scripts see (`down`), so proto3 JSON, the
//! CLI's tables and a person's `--state down` all read the same. Here they
//! get `Display` and `FromStr`, for both ends of the wire.

use std::fmt;

use crate::v1;

/// A word that names no value of an enum (a person's typo, or a value
/// only a newer peer knows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    /// What the word was meant to be ("state").
    pub what: &'static str,
    /// The word as given.
    pub word: String,
    /// Every word that would have done, in order.
    pub known: Vec<&'static str>,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a {}; one of {}",
            self.word,
            self.what,
            self.known.join(", ")
        )
    }
}

impl std::error::Error for UnknownWord {}

/// What the generated proto3 JSON prints for an enum value this build does
/// not know (see `build.rs`): the enum's zero value, unspecified, instead
/// of refusing the whole answer.
pub(crate) fn unspecified<T: TryFrom<i32>, E: serde::ser::Error>(value: i32) -> Result<T, E> {
    T::try_from(0).map_err(|_| E::custom(format!("enum value {value} unknown, and no zero value")))
}

/// Gives a wire enum its words: `word`, `ALL`, `Display` and `FromStr`.
/// The zero value (unspecified: not set, or a value from a newer peer) is
/// shown as `?` and is no word a person can give.
macro_rules! words {
    ($ty:ty, $what:literal, [$($v:ident),+ $(,)?]) => {
        impl $ty {
            /// Every value a person can name, in the .proto file's order.
            pub const ALL: &'static [Self] = &[$(Self::$v),+];

            /// The word people and scripts see (the value's .proto name);
            /// `?` for unspecified.
            pub fn word(self) -> &'static str {
                match self {
                    Self::Unspecified => "?",
                    v => v.as_str_name(),
                }
            }

            /// Whether this is a value at all (not unspecified).
            pub fn is_set(self) -> bool {
                self != Self::Unspecified
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.word() == s)
                    .ok_or_else(|| UnknownWord {
                        what: $what,
                        word: s.to_string(),
                        known: Self::ALL.iter().map(|v| v.word()).collect(),
                    })
            }
        }
    };
}

words!(
    v1::device_info::State,
    "state",
    [Up, Degraded, Down, Unreachable, Unknown, Stale]
);
words!(
    v1::list_tickets_request::State,
    "ticket state",
    [Open, Closed, Recovered]
);
words!(v1::measurement::Phase, "phase", [Before, After]);
words!(
    v1::measurement::State,
    "measurement state",
    [Queued, Running, Done, Failed, Expired]
);
words!(
    v1::audit_event_kind::Kind,
    "ticket event kind",
    [
        Opened,
        Disposed,
        Returned,
        StatusUpdated,
        Acknowledged,
        Refused,
        Escalated,
        Voided,
        ReportFrozen
    ]
);
words!(
    v1::maintenance_scope_kind::Kind,
    "scope kind",
    [Opd, Device, Link]
);
words!(
    v1::maintenance_schedule::Kind,
    "schedule kind",
    [Once, Weekly]
);
words!(
    v1::log_event_kind::Kind,
    "kind",
    [
        State,
        Opened,
        Occurrence,
        Affected,
        Recovered,
        Flapping,
        NotConfirmed,
        Closed,
        NotClosed,
        Suppressed
    ]
);

/// An SNMP version as the inventory and the uplink's `SnmpTarget.version`
/// write it. Not a wire enum: `SnmpTarget.version` stays a string so that a
/// deployed agent keeps reading what a newer collector sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnmpVersion {
    /// SNMPv1 (community).
    V1,
    /// SNMPv2c (community).
    V2c,
    /// SNMPv3 (USM user).
    V3,
}

impl SnmpVersion {
    /// Every version, oldest first.
    pub const ALL: &'static [Self] = &[Self::V1, Self::V2c, Self::V3];

    /// "1", "2c" or "3".
    pub fn word(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2c => "2c",
            Self::V3 => "3",
        }
    }
}

impl fmt::Display for SnmpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl std::str::FromStr for SnmpVersion {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.word() == s)
            .ok_or_else(|| UnknownWord {
                what: "SNMP version",
                word: s.to_string(),
                known: Self::ALL.iter().map(|v| v.word()).collect(),
            })
    }
}

impl v1::SnmpTarget {
    /// The target's SNMP version; `None` when unset or not one this build
    /// knows.
    pub fn snmp_version(&self) -> Option<SnmpVersion> {
        self.version.parse().ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use v1::device_info::State;

    #[test]
    fn every_word_reads_back() {
        for s in State::ALL {
            assert_eq!(s.word().parse::<State>(), Ok(*s));
            assert_eq!(s.to_string(), s.word());
        }
        assert_eq!(State::Down.word(), "down");
    }

    #[test]
    fn a_typo_names_the_words() {
        let e = "dwn".parse::<State>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"dwn\" is not a state; one of up, degraded, down, unreachable, unknown, stale"
        );
        assert!("?".parse::<State>().is_err());
        assert!("STATE_UNSPECIFIED".parse::<State>().is_err());
    }

    #[test]
    fn snmp_versions_read_as_the_inventory_writes_them() {
        for v in SnmpVersion::ALL {
            assert_eq!(v.word().parse::<SnmpVersion>(), Ok(*v));
        }
        let t = |version: &str| v1::SnmpTarget {
            version: version.into(),
            ..Default::default()
        };
        assert_eq!(t("2c").snmp_version(), Some(SnmpVersion::V2c));
        assert_eq!(t("").snmp_version(), None);
        assert_eq!(t("v2c").snmp_version(), None);
    }

    #[test]
    fn json_prints_the_word() {
        let d = v1::DeviceInfo {
            state: State::Down.into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["state"], "down");
    }

    #[test]
    fn json_of_a_value_from_a_newer_peer_is_unspecified_not_an_error() {
        let d = v1::DeviceInfo {
            state: 99,
            ..Default::default()
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["state"], "STATE_UNSPECIFIED");
        assert_eq!(d.state(), State::Unspecified);
        assert_eq!(d.state().to_string(), "?");
    }
}
