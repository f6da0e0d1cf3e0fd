//! A person's role: a word checked once where it comes in (a user file, a
//! request, the SOP file) against the roles there are, then compared as a
//! value. The roles of the built-in rules (the administrator, the OPD's
//! requester, the defaults of the letter, maintenance and void rules) are
//! constants here, so no rule spells a role by hand.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One role id: `admin`, or one of the SOP file's `[[role]]` ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Role(Cow<'static, str>);

/// A word that is no role (not `admin`, not one of the SOP file's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{word}` is not a role ({known})")]
pub struct UnknownRole {
    /// The word as given.
    pub word: String,
    /// The roles there are, ", " between them.
    pub known: String,
}

impl Role {
    /// The administrator of the system itself (not an SOP role).
    pub const ADMIN: Role = Role::builtin("admin");
    /// The OPD's requester: held to their own OPD (SOP step 1).
    pub const PEMOHON: Role = Role::builtin("pemohon");
    /// The helpdesk (files letters beside the pemohon).
    pub const HELPDESK: Role = Role::builtin("helpdesk");
    /// The technical team.
    pub const TIM_TEKNIS: Role = Role::builtin("tim_teknis");
    /// The head of division.
    pub const KABID_APTIKA: Role = Role::builtin("kabid_aptika");
    /// The head of agency.
    pub const KEPALA_DINAS: Role = Role::builtin("kepala_dinas");
    /// The secretary of the agency (acts for the head of agency).
    pub const SEKRETARIS_DINAS: Role = Role::builtin("sekretaris_dinas");
    /// The Pranata Komputer (computer officer).
    pub const PRANATA_KOMPUTER: Role = Role::builtin("pranata_komputer");

    const fn builtin(id: &'static str) -> Role {
        Role(Cow::Borrowed(id))
    }

    /// `word` as a role, when it is one of `known` (which lists `admin`
    /// where the administrator may be named).
    pub fn parse(word: &str, known: &[Role]) -> Result<Role, UnknownRole> {
        known
            .iter()
            .find(|k| **k == *word)
            .cloned()
            .ok_or_else(|| UnknownRole {
                word: word.to_string(),
                known: join(known, ", "),
            })
    }

    /// A role id as the SOP file writes it (its `[[role]]` ids are checked
    /// there, in `sop::file`).
    pub fn sop_id(id: &str) -> Role {
        Role(Cow::Owned(id.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `roles`' ids, as the wire and the SOP workflow's records carry them.
pub fn ids(roles: &[Role]) -> Vec<String> {
    roles.iter().map(Role::to_string).collect()
}

/// `roles`' ids with `sep` between them.
pub fn join(roles: &[Role], sep: &str) -> String {
    roles.iter().map(Role::as_str).collect::<Vec<_>>().join(sep)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Role {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Role {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Role> for str {
    fn eq(&self, other: &Role) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Role> for &str {
    fn eq(&self, other: &Role) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Role> for String {
    fn eq(&self, other: &Role) -> bool {
        **self == *other.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_parsed_against_the_roles_there_are() {
        let known = [
            Role::sop_id("helpdesk"),
            Role::sop_id("auditor"),
            Role::ADMIN,
        ];
        assert_eq!(Role::parse("auditor", &known).unwrap(), "auditor");
        assert_eq!(Role::parse("admin", &known).unwrap(), Role::ADMIN);
        assert_eq!(Role::parse("helpdesk", &known).unwrap(), Role::HELPDESK);
        let e = Role::parse("Admin", &known).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`Admin` is not a role (helpdesk, auditor, admin)"
        );
        assert!(Role::parse("", &known).is_err());
        // Not named where only the SOP's roles count.
        assert!(Role::parse("admin", &known[..2]).is_err());
    }

    #[test]
    fn a_role_compares_with_its_id_and_keeps_its_json() {
        assert!(Role::ADMIN == "admin" && "pemohon" == Role::PEMOHON);
        assert!(Role::ADMIN != *"admin2");
        assert_eq!(serde_json::to_value(Role::ADMIN).unwrap(), "admin");
        let r: Role = serde_json::from_value("kabid_aptika".into()).unwrap();
        assert_eq!(r, Role::KABID_APTIKA);
        assert_eq!(
            join(&[Role::PEMOHON, Role::HELPDESK], " or "),
            "pemohon or helpdesk"
        );
    }
}
