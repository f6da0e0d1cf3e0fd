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

words!(
    v1::history_sample_kind::Kind,
    "sample kind",
    [Icmp, Snmp, Event]
);
words!(
    v1::snmp_poll_status::Status,
    "SNMP status",
    [Ok, Timeout, AuthFailure, Malformed, Error]
);
words!(
    v1::interface_status::Status,
    "interface status",
    [
        Up,
        Down,
        Testing,
        Unknown,
        Dormant,
        NotPresent,
        LowerLayerDown
    ]
);
words!(
    v1::agent_status::Status,
    "agent status",
    [Connected, Disconnected, NeverConnected, NoAgentEnrolled]
);
words!(v1::ticket::Origin, "ticket origin", [Detected, Letter]);
words!(v1::finding::Level, "level", [Up, Degraded, Down]);
words!(
    v1::ticket_note::Kind,
    "note kind",
    [
        Opened,
        Occurrence,
        Evidence,
        Affected,
        Recovered,
        Flapping,
        Settled,
        NotConfirmed,
        Closed,
        NotClosed
    ]
);

impl v1::interface_status::Status {
    /// An IF-MIB ifOperStatus / ifAdminStatus number as read from a
    /// device: one IF-MIB does not define is `unknown`.
    pub fn from_if_mib(v: u32) -> Self {
        i32::try_from(v)
            .ok()
            .and_then(|v| Self::try_from(v).ok())
            .filter(|s| s.is_set())
            .unwrap_or(Self::Unknown)
    }

    /// An IF-MIB ifAdminStatus number: up, down or testing; any other is
    /// `unknown`.
    pub fn from_if_mib_admin(v: u32) -> Self {
        match v {
            1..=3 => Self::from_if_mib(v),
            _ => Self::Unknown,
        }
    }
}

impl v1::agent_status::Status {
    /// The status as tables show it: the word with spaces ("never
    /// connected"); empty for unspecified.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::NeverConnected => "never connected",
            Self::NoAgentEnrolled => "no agent enrolled",
        }
    }
}

impl From<v1::SnmpStatus> for v1::snmp_poll_status::Status {
    fn from(s: v1::SnmpStatus) -> Self {
        use v1::SnmpStatus as U;
        match s {
            U::Unspecified => Self::Unspecified,
            U::Ok => Self::Ok,
            U::Timeout => Self::Timeout,
            U::AuthFailure => Self::AuthFailure,
            U::Malformed => Self::Malformed,
            U::Error => Self::Error,
        }
    }
}

impl v1::snmp_poll_status::Status {
    /// The status of an uplink `SnmpResult.status` number; one this build
    /// does not know is unspecified.
    pub fn from_uplink(status: i32) -> Self {
        v1::SnmpStatus::try_from(status).map_or(Self::Unspecified, Self::from)
    }
}

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

    /// Every word of every enum reads back through `FromStr`, prints
    /// through `Display`, and is what proto3 JSON prints; the zero value is
    /// no word.
    macro_rules! round_trip {
        ($ty:ty) => {{
            type T = $ty;
            assert!(!T::ALL.is_empty());
            for v in T::ALL {
                assert_eq!(v.word().parse::<T>(), Ok(*v), "{}", v.word());
                assert_eq!(v.to_string(), v.word());
                let json = serde_json::to_value(v).unwrap();
                assert_eq!(json, v.word());
                assert_eq!(serde_json::from_value::<T>(json).unwrap(), *v);
            }
            assert!(T::Unspecified.word().parse::<T>().is_err());
            assert!("no such word".parse::<T>().is_err());
            // From a newer peer: unspecified, not an error.
            assert_eq!(T::try_from(99).unwrap_or_default(), T::Unspecified);
        }};
    }

    #[test]
    fn every_enum_reads_back_through_its_words_and_json() {
        round_trip!(State);
        round_trip!(v1::list_tickets_request::State);
        round_trip!(v1::measurement::Phase);
        round_trip!(v1::measurement::State);
        round_trip!(v1::audit_event_kind::Kind);
        round_trip!(v1::maintenance_scope_kind::Kind);
        round_trip!(v1::maintenance_schedule::Kind);
        round_trip!(v1::log_event_kind::Kind);
        round_trip!(v1::history_sample_kind::Kind);
        round_trip!(v1::snmp_poll_status::Status);
        round_trip!(v1::interface_status::Status);
        round_trip!(v1::agent_status::Status);
        round_trip!(v1::ticket::Origin);
        round_trip!(v1::finding::Level);
        round_trip!(v1::ticket_note::Kind);
    }

    #[test]
    fn the_new_enums_print_their_words_in_their_messages() {
        use v1::{history_sample_kind, interface_status, snmp_poll_status};
        let h = v1::HistorySample {
            kind: history_sample_kind::Kind::Snmp.into(),
            status: snmp_poll_status::Status::AuthFailure.into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(
            (&v["kind"], &v["status"]),
            (&"snmp".into(), &"auth_failure".into())
        );
        let l = v1::LinkInfo {
            oper_status: interface_status::Status::LowerLayerDown.into(),
            admin_status: interface_status::Status::Up.into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["oper_status"], "lower_layer_down");
        assert_eq!(v["admin_status"], "up");
        // Unset is left out, as an empty string was.
        assert!(v.get("snmp_status").is_none());
        let a = v1::AgentInfo {
            status: v1::agent_status::Status::NeverConnected.into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap()["status"],
            "never_connected"
        );
        let t = v1::Ticket {
            origin: v1::ticket::Origin::Letter.into(),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&t).unwrap()["origin"], "letter");
        let f = v1::Finding {
            level: v1::finding::Level::Degraded.into(),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&f).unwrap()["level"], "degraded");
        let n = v1::TicketNote {
            kind: v1::ticket_note::Kind::NotConfirmed.into(),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&n).unwrap()["kind"], "not_confirmed");
    }

    #[test]
    fn unknown_values_of_the_new_enums_read_as_unspecified() {
        let h = v1::HistorySample {
            kind: 77,
            status: 77,
            ..Default::default()
        };
        assert_eq!(h.kind(), v1::history_sample_kind::Kind::Unspecified);
        assert_eq!(h.status(), v1::snmp_poll_status::Status::Unspecified);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["kind"], "KIND_UNSPECIFIED");
        assert_eq!(v["status"], "STATUS_UNSPECIFIED");
        let n = v1::TicketNote {
            kind: 77,
            ..Default::default()
        };
        assert_eq!(n.kind().to_string(), "?");
        let t = v1::Ticket {
            origin: 77,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&t).unwrap()["origin"],
            "ORIGIN_UNSPECIFIED"
        );
        // A word on the wire that this build does not know decodes as
        // unspecified too (proto3 JSON read leniently is not needed: the
        // wire carries numbers).
        let bytes = prost::Message::encode_to_vec(&v1::Finding {
            level: 42,
            ..Default::default()
        });
        let f = <v1::Finding as prost::Message>::decode(bytes.as_slice()).unwrap();
        assert_eq!(f.level(), v1::finding::Level::Unspecified);
    }

    #[test]
    fn if_mib_numbers_read_as_their_words() {
        use v1::interface_status::Status;
        assert_eq!(Status::from_if_mib(1), Status::Up);
        assert_eq!(Status::from_if_mib(7), Status::LowerLayerDown);
        assert_eq!(Status::from_if_mib(0), Status::Unknown);
        assert_eq!(Status::from_if_mib(8), Status::Unknown);
        assert_eq!(Status::from_if_mib(u32::MAX), Status::Unknown);
        assert_eq!(Status::from_if_mib_admin(3), Status::Testing);
        assert_eq!(Status::from_if_mib_admin(5), Status::Unknown);
    }

    #[test]
    fn uplink_snmp_statuses_read_as_their_words() {
        use v1::snmp_poll_status::Status;
        assert_eq!(Status::from_uplink(v1::SnmpStatus::Ok as i32).word(), "ok");
        assert_eq!(
            Status::from_uplink(v1::SnmpStatus::AuthFailure as i32).word(),
            "auth_failure"
        );
        assert_eq!(Status::from_uplink(99), Status::Unspecified);
    }
}
