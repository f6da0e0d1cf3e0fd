//! A Diskominfo office for the SOP tests: one enrolled user per role, each
//! with its own `siaga` CLI, and the collector they work with.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::harness::{Collector, Inventory, Siaga, secs, wait_until};

/// The OPD whose letters the office's requester (`opd`) writes.
pub const OFFICE_OPD: &str = "dinkes";

/// The office's people: (user name, SOP role), one per role.
pub const OFFICE_USERS: [(&str, &str); 8] = [
    ("opd", "pemohon"),
    ("kadis", "kepala_dinas"),
    ("sekdis", "sekretaris_dinas"),
    ("kabid", "kabid_aptika"),
    ("prakom", "pranata_komputer"),
    ("hd", "helpdesk"),
    ("teknisi", "tim_teknis"),
    ("root", "admin"),
];

/// What some of the office's people sign with: (user, full name, NIP,
/// jabatan), recorded by `enroll user --full-name --nip --jabatan`.
pub const OFFICE_PEOPLE: [(&str, &str, &str, &str); 2] = [
    (
        "kadis",
        "Dr. Hendra Wijaya, M.Si.",
        "197003152000031002",
        "Kepala Dinas Kominfo",
    ),
    (
        "teknisi",
        "Budi Santoso, S.Kom.",
        "198001012005011001",
        "Pranata Komputer Ahli Pertama",
    ),
];

/// [`OFFICE_USERS`] without the users named in `left_out`.
pub fn office_users_but(left_out: &[&str]) -> Vec<(&'static str, &'static str)> {
    OFFICE_USERS
        .into_iter()
        .filter(|(name, _)| !left_out.contains(name))
        .collect()
}

/// A serving collector and the `siaga` CLI of each enrolled user.
pub struct Office {
    pub collector: Collector,
    users: HashMap<&'static str, Siaga>,
}

impl Office {
    /// A collector with the OPD dinkes (no devices), `users` (name, role)
    /// enrolled, serving.
    pub fn start(users: &[(&'static str, &str)]) -> Result<Office> {
        let collector = Collector::init()?;
        collector.write_inventory(&Inventory::new("10s").opd(OFFICE_OPD))?;
        Office::serve(collector, users)
    }

    /// Enrolls `users` (name, role) in `collector`, which is not serving
    /// yet, then starts it. The office's requester (`pemohon`) works for
    /// [`OFFICE_OPD`], which the collector's inventory must have.
    pub fn serve(collector: Collector, users: &[(&'static str, &str)]) -> Result<Office> {
        Office::serve_people(collector, users, &[])
    }

    /// A collector with the OPD dinkes, `users` enrolled, those in `people`
    /// (user, full name, NIP, jabatan) with what they sign with, serving.
    pub fn start_people(
        users: &[(&'static str, &str)],
        people: &[(&str, &str, &str, &str)],
    ) -> Result<Office> {
        let collector = Collector::init()?;
        collector.write_inventory(&Inventory::new("10s").opd(OFFICE_OPD))?;
        Office::serve_people(collector, users, people)
    }

    /// [`Office::serve`], enrolling those in `people` with their full name,
    /// NIP and jabatan.
    pub fn serve_people(
        mut collector: Collector,
        users: &[(&'static str, &str)],
        people: &[(&str, &str, &str, &str)],
    ) -> Result<Office> {
        let mut enrolled = HashMap::new();
        for &(name, role) in users {
            let mut extra = Vec::new();
            if role == "pemohon" {
                extra.extend(["--opd", OFFICE_OPD]);
            }
            if let Some((_, full, nip, jabatan)) = people.iter().find(|p| p.0 == name) {
                extra.extend(["--full-name", *full, "--nip", *nip, "--jabatan", *jabatan]);
            }
            enrolled.insert(name, collector.enroll_user_with(name, role, &extra)?);
        }
        collector.serve()?;
        Ok(Office {
            collector,
            users: enrolled,
        })
    }

    /// The `siaga` CLI of user `name`.
    pub fn user(&self, name: &str) -> Result<&Siaga> {
        self.users
            .get(name)
            .ok_or_else(|| anyhow!("no user {name}"))
    }

    /// A path in the office's own scratch directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.collector.root().join(name)
    }

    /// `siaga <args>` as `who`; must succeed; its standard output.
    pub fn ok(&self, who: &str, args: &[&str]) -> Result<String> {
        let out = self.user(who)?.run(args)?;
        if !out.status.success() {
            bail!(
                "{who}: siaga {args:?} failed: {}\ncollector log:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.collector.log_tail(20)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `siaga <args>` as `who`; must fail; its error line.
    pub fn refused(&self, who: &str, args: &[&str]) -> Result<String> {
        let out = self.user(who)?.run(args)?;
        ensure!(
            !out.status.success(),
            "{who}: siaga {args:?} should have been refused: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }

    /// `siaga <args>` as `who`; must succeed and print JSON.
    pub fn json(&self, who: &str, args: &[&str]) -> Result<Value> {
        self.user(who)?.json(args)
    }

    /// A letter ticket for OPD dinkes entered by the helpdesk (`siaga ticket
    /// new` with `extra` arguments after the letter's); its number.
    pub fn new_letter(
        &self,
        number: &str,
        date: &str,
        subject: &str,
        extra: &[&str],
    ) -> Result<String> {
        let mut args = letter_args(number, date, subject);
        args.extend_from_slice(extra);
        opened_ticket(&self.ok("hd", &args)?)
    }

    /// `siaga ticket turn ID` as the helpdesk.
    pub fn turn(&self, id: &str) -> Result<Value> {
        self.json("hd", &["ticket", "turn", id, "--json"])
    }
}

/// Today in WIB ("YYYY-MM-DD"): a letter date the collector accepts
/// whenever the test runs (one older than `tickets.max_letter_age` is refused).
pub fn letter_date() -> String {
    let now = chrono::Utc::now();
    chrono::FixedOffset::east_opt(7 * 3600)
        .map_or(now.date_naive(), |wib| now.with_timezone(&wib).date_naive())
        .format("%Y-%m-%d")
        .to_string()
}

/// `siaga ticket new` for a letter of the office's OPD.
pub fn letter_args<'a>(number: &'a str, date: &'a str, subject: &'a str) -> Vec<&'a str> {
    vec![
        "ticket",
        "new",
        "--opd",
        OFFICE_OPD,
        "--letter-number",
        number,
        "--letter-date",
        date,
        "--subject",
        subject,
    ]
}

/// The ticket number in what `siaga ticket new` printed ("opened ID: …").
pub fn opened_ticket(out: &str) -> Result<String> {
    out.strip_prefix("opened ")
        .and_then(|r| r.split(':').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("unexpected output of ticket new: {out}"))
}

/// Waits up to a minute until `siaga devices` shows `device` up.
pub fn wait_device_up(siaga: &Siaga, device: &str) -> Result<()> {
    wait_until(secs(60), &format!("{device} up"), || {
        Ok(siaga
            .devices()?
            .iter()
            .any(|d| d["id"] == device && d["state"] == "up"))
    })
}

/// Waits up to a minute until `siaga tickets` lists a ticket for which
/// `wanted` holds; the first such ticket.
pub fn wait_for_ticket(
    siaga: &Siaga,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let find = || -> Result<Option<Value>> {
        Ok(siaga
            .json(&["tickets", "--json"])?
            .as_array()
            .and_then(|t| t.iter().find(|t| wanted(t)).cloned()))
    };
    wait_until(secs(60), what, || Ok(find()?.is_some()))?;
    find()?.ok_or_else(|| anyhow!("{what}: gone from siaga tickets"))
}
