//! The people documents name: a login (as in the certificate and the audit
//! trail) mapped to what is printed where that person signs — full name,
//! NIP and jabatan, from their user file. A login with no full name on record
//! is printed as the login, flagged, so an unsigned-for name is never taken
//! for a real one.

use std::collections::BTreeMap;

use super::model::Lang;

/// What a user file says about a person, for signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Full name with titles ("Budi Santoso, S.Kom.").
    pub full_name: Option<String>,
    /// NIP, 18 digits.
    pub nip: Option<String>,
    /// Position (jabatan).
    pub jabatan: Option<String>,
}

/// A person as a signature block prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The full name, or the login flagged.
    pub name: String,
    /// "NIP 19800101 200501 1 001", or empty.
    pub nip: String,
    /// The jabatan, or empty.
    pub jabatan: String,
    /// No full name on record: `name` is the login.
    pub flagged: bool,
}

/// People by login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct People(BTreeMap<String, Person>);

/// An NIP as printed: `YYYYMMDD YYYYMM G NNN` (birth date, appointment,
/// gender, number); anything else as it is.
pub fn format_nip(nip: &str) -> String {
    let nip = nip.trim();
    match (nip.get(..8), nip.get(8..14), nip.get(14..15), nip.get(15..)) {
        (Some(a), Some(b), Some(c), Some(d)) if nip.len() == 18 => format!("{a} {b} {c} {d}"),
        _ => nip.to_string(),
    }
}

impl People {
    /// Adds or replaces a person.
    pub fn insert(&mut self, login: impl Into<String>, p: Person) {
        self.0.insert(login.into(), p);
    }

    /// What is on record for `login`.
    pub fn get(&self, login: &str) -> Option<&Person> {
        self.0.get(login)
    }

    /// The name to print for `login`: the full name, else the login with a
    /// note that no full name is on record.
    pub fn name(&self, login: &str, lang: Lang) -> String {
        self.signer(login, lang).name
    }

    /// How `login` is printed where they sign.
    pub fn signer(&self, login: &str, lang: Lang) -> Signer {
        let p = self.get(login);
        let full = p
            .and_then(|p| p.full_name.as_deref())
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let (name, flagged) = match full {
            Some(n) => (n.to_string(), false),
            None => (
                format!(
                    "{login} ({})",
                    match lang {
                        Lang::Id => "nama lengkap belum tercatat",
                        Lang::En => "full name not on record",
                    }
                ),
                true,
            ),
        };
        Signer {
            name,
            nip: p
                .and_then(|p| p.nip.as_deref())
                .filter(|n| !n.trim().is_empty())
                .map(|n| format!("NIP {}", format_nip(n)))
                .unwrap_or_default(),
            jabatan: p
                .and_then(|p| p.jabatan.clone())
                .map(|j| j.trim().to_string())
                .unwrap_or_default(),
            flagged,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The test office's people (the logins of `workflow::tests::user_for`);
    /// the helpdesk has no full name on record.
    pub(crate) fn office() -> People {
        let mut p = People::default();
        for (login, name, nip, jabatan) in [
            (
                "kadis",
                "Dr. Hendra Wijaya, M.Si.",
                "197003152000031002",
                "Kepala Dinas Komunikasi dan Informatika",
            ),
            (
                "sekdis",
                "Sri Rahayu, S.E.",
                "197511202001122001",
                "Sekretaris Dinas",
            ),
            (
                "kabid",
                "Agus Salim, S.T.",
                "197808082005011003",
                "Kepala Bidang Aplikasi dan Informatika",
            ),
            (
                "prakom",
                "Dewi Lestari, S.Kom.",
                "198504142010012004",
                "Pranata Komputer Ahli Muda",
            ),
            (
                "teknisi",
                "Budi Santoso, S.Kom.",
                "198001012005011001",
                "Pranata Komputer Ahli Pertama",
            ),
        ] {
            p.insert(
                login,
                Person {
                    full_name: Some(name.into()),
                    nip: Some(nip.into()),
                    jabatan: Some(jabatan.into()),
                },
            );
        }
        p
    }

    #[test]
    fn a_person_signs_with_full_name_nip_and_jabatan_else_the_login_flagged() {
        let mut people = People::default();
        people.insert(
            "budi",
            Person {
                full_name: Some("Budi Santoso, S.Kom.".into()),
                nip: Some("198001012005011001".into()),
                jabatan: Some("Pranata Komputer Ahli Pertama".into()),
            },
        );
        let s = people.signer("budi", Lang::Id);
        assert_eq!(s.name, "Budi Santoso, S.Kom.");
        assert_eq!(s.nip, "NIP 19800101 200501 1 001");
        assert_eq!(s.jabatan, "Pranata Komputer Ahli Pertama");
        assert!(!s.flagged);
        let s = people.signer("andi", Lang::Id);
        assert_eq!(s.name, "andi (nama lengkap belum tercatat)");
        assert!(s.flagged && s.nip.is_empty() && s.jabatan.is_empty());
        assert_eq!(
            people.name("andi", Lang::En),
            "andi (full name not on record)"
        );
    }
}
