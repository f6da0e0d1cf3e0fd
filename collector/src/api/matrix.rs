//! The policy matrix: every role × every RPC × the own and the other OPD,
//! on one in-process collector ([`super::testing::Fixture`]).
//!
//! Each concern lists a [`Case`] per RPC in its `api.rs` tests
//! (`pub const CASES`), added to [`all_cases`]. A case calls its RPC as a
//! person against an object of one OPD (or a listing filtered to it) and
//! says what came back as an [`Outcome`]. The matrix asserts, from the
//! policy table alone:
//! - a role the table refuses gets exactly `PERMISSION_DENIED`;
//! - an OPD-held person (pemohon) asking about the other OPD gets
//!   `NOT_FOUND` or a listing without it ([`Outcome::Hidden`]) — never the
//!   object, never `PERMISSION_DENIED` (which would confirm it exists);
//! - everyone else gets past the policy: the object ([`Outcome::Seen`]) or
//!   a refusal of the domain (`FAILED_PRECONDITION`, a workflow's step
//!   role …), never `NOT_FOUND` for an object that exists.

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use siaga_proto::v1::{self, admin_client::AdminClient};
use tonic::{Code, Status};

use super::gate::{Caller, allowed};
use super::policy::{RULES, Scope, rule_of};
use super::testing::{Fixture, OTHER, OWN, PEOPLE};

/// What a case's call gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The object, or a listing with the OPD's items.
    Seen,
    /// A listing without the OPD's items.
    Hidden,
    /// The call was refused with this code.
    Refused(Code, String),
}

impl From<Status> for Outcome {
    fn from(s: Status) -> Outcome {
        Outcome::Refused(s.code(), s.message().to_string())
    }
}

/// The future a case returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One RPC's case: `call(fixture, person, opd)` calls the RPC as `person`
/// (`fixture.channel(person)`) about `opd`'s object. Objects the case
/// needs (a ticket in each OPD …) are made once with [`Fixture::once`].
#[derive(Clone, Copy)]
pub struct Case {
    /// The RPC, as in the policy table.
    pub rpc: &'static str,
    /// Makes the call.
    pub call: fn(Arc<Fixture>, &'static str, &'static str) -> CaseFuture,
}

/// The `Admin` service's cases (what stays on it: who am I, backup).
const ADMIN_CASES: &[Case] = &[
    Case {
        rpc: "/siaga.v1.Admin/WhoAmI",
        call: |f, person, _opd| {
            Box::pin(async move {
                let mut c = AdminClient::new(f.channel(person));
                match c.who_am_i(v1::WhoAmIRequest {}).await {
                    Ok(r) if r.get_ref().user == person => Outcome::Seen,
                    Ok(r) => Outcome::Refused(Code::Unknown, format!("{:?}", r.get_ref())),
                    Err(s) => s.into(),
                }
            })
        },
    },
    Case {
        rpc: "/siaga.v1.Admin/Backup",
        call: |f, person, _opd| {
            Box::pin(async move {
                let mut c = AdminClient::new(f.channel(person));
                match c.backup(v1::BackupRequest {}).await {
                    Ok(r) => {
                        let mut s = r.into_inner();
                        match s.message().await {
                            Ok(Some(_)) => Outcome::Seen,
                            Ok(None) => Outcome::Hidden,
                            Err(e) => e.into(),
                        }
                    }
                    Err(s) => s.into(),
                }
            })
        },
    },
];

/// Every concern's cases.
pub fn all_cases() -> Vec<Case> {
    let lists: &[&[Case]] = &[
        ADMIN_CASES,
        crate::users::tests::CASES,
        // Each concern adds its `CASES` here.
        crate::devices::api::tests::CASES,
        crate::events::api::tests::CASES,
        crate::sop::documents::tests::CASES,
        crate::report::api::matrix::CASES,
        crate::ticket::api::tests::CASES,
        crate::measure::api::matrix::CASES,
        crate::discover::api::matrix::CASES,
        crate::sop::api::service_tests::CASES,
    ];
    lists.iter().flat_map(|l| l.iter().copied()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_rpc_for_the_own_and_the_other_opd() {
    let cases = all_cases();
    let f = Arc::new(Fixture::start().await);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let rule = rule_of(case.rpc).unwrap_or_else(|| panic!("{} has no rule", case.rpc));
        for (name, role) in PEOPLE {
            let caller = Caller {
                name: name.to_string(),
                roles: vec![crate::role::Role::sop_id(role)],
                opd: (*role == "pemohon").then(|| OWN.to_string()),
            };
            for opd in [OWN, OTHER] {
                let got = (case.call)(f.clone(), name, opd).await;
                checked += 1;
                let role_ok = allowed(rule, &caller).is_ok();
                let hidden = rule.scope == Scope::Opd && !caller.sees(opd);
                let ok = match (&got, role_ok, hidden) {
                    (Outcome::Refused(Code::PermissionDenied, _), false, _) => true,
                    (_, false, _) => false,
                    (Outcome::Hidden | Outcome::Refused(Code::NotFound, _), true, true) => true,
                    (_, true, true) => false,
                    (Outcome::Seen, true, false) => true,
                    (Outcome::Refused(c, _), true, false) => {
                        !matches!(c, Code::NotFound | Code::Internal | Code::Unimplemented)
                    }
                    (Outcome::Hidden, true, false) => false,
                };
                if !ok {
                    failures.push(format!(
                        "{} as {role} about {opd}: got {got:?} (role allowed: {role_ok}, \
                         other OPD hidden: {hidden})",
                        case.rpc
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "policy matrix: {} RPCs × {} roles × 2 OPDs = {checked} checks",
        cases.len(),
        PEOPLE.len()
    );
}

#[test]
fn every_rule_of_a_people_service_has_a_case_once_converted() {
    // An RPC with a case is in the table; the reverse is the goal (every
    // people's RPC has a case) and is listed here until it holds.
    let cases = all_cases();
    for c in &cases {
        assert!(rule_of(c.rpc).is_some(), "{} has a case but no rule", c.rpc);
    }
    let without: Vec<_> = RULES
        .iter()
        .filter(|r| r.rpc.starts_with("/siaga.v1.") && !r.rpc.starts_with("/siaga.v1.Uplink/"))
        .filter(|r| !r.rpc.starts_with("/siaga.v1.Admin/"))
        .filter(|r| !cases.iter().any(|c| c.rpc == r.rpc))
        .map(|r| r.rpc)
        .collect();
    assert!(
        without.is_empty(),
        "people's RPCs without a matrix case: {without:?}"
    );
}
