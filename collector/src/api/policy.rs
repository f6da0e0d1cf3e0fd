//! The policy: per RPC, who may call it and how its answer is scoped.
//! One table, enforced by [`super::gate`] before any handler runs; a test
//! fails when an RPC of the proto has no entry (or an entry names no RPC).
//!
//! Two kinds of people: province roles (every role but `pemohon`) see every
//! OPD; a person whose roles are all OPD roles (`pemohon`) sees only their
//! own OPD. Within an RPC the handler applies [`Scope`] with the
//! [`super::Caller`] the gate hands it: a listing leaves out other OPDs'
//! items (and their counts), a request for another OPD's object answers
//! `NOT_FOUND`. Which SOP step a role may take is the SOP file's business
//! (the workflow checks it); the table says who may call the RPC at all.

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Agents only (their own certificate checks; people are refused).
    Agents,
    /// Anyone who can reach the port (the gRPC health check).
    Public,
    /// Every enrolled person.
    People,
    /// People holding one of these roles.
    Roles(&'static [Role]),
    /// People with a province role (not only OPD roles).
    Province,
}

/// How an RPC's answer or object is held to the caller's OPD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Not about OPD data (the caller's own identity, the agents' stream).
    None,
    /// OPD data: an OPD-held caller sees and acts only on their own OPD.
    Opd,
}

/// One RPC's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The gRPC path, `/package.Service/Method`.
    pub rpc: &'static str,
    /// Who may call it.
    pub allow: Allow,
    /// How it is scoped.
    pub scope: Scope,
    /// Whether it changes state: every such call goes to the API audit trail.
    pub changes: bool,
}

const fn rule(rpc: &'static str, allow: Allow, scope: Scope, changes: bool) -> Rule {
    Rule {
        rpc,
        allow,
        scope,
        changes,
    }
}

use crate::sop::workflow::LETTER_ROLES;
use crate::ticket::api::MAINTENANCE_ROLES;
use Allow::*;
use Scope::{None as Unscoped, Opd};

use crate::role::Role;

/// Only the administrator.
const ADMIN_ONLY: &[Role] = &[Role::ADMIN];

/// The table. Keep it sorted by service; one line per RPC.
pub const RULES: &[Rule] = &[
    // --- infrastructure
    rule("/grpc.health.v1.Health/Check", Public, Unscoped, false),
    rule("/grpc.health.v1.Health/Watch", Public, Unscoped, false),
    rule("/siaga.v1.Uplink/Stream", Agents, Unscoped, true),
    // --- Admin (admin.proto)
    rule("/siaga.v1.Admin/WhoAmI", People, Unscoped, false),
    rule("/siaga.v1.Admin/Backup", Roles(ADMIN_ONLY), Unscoped, false),
    // --- Devices (devices.proto)
    rule("/siaga.v1.Devices/ListAgents", People, Opd, false),
    rule("/siaga.v1.Devices/ListDevices", People, Opd, false),
    rule("/siaga.v1.Devices/ListLinks", People, Opd, false),
    rule("/siaga.v1.Devices/GetDevice", People, Opd, false),
    rule("/siaga.v1.Devices/History", People, Opd, false),
    rule("/siaga.v1.Devices/WatchDevices", People, Opd, false),
    // --- Events (events.proto)
    rule("/siaga.v1.Events/ListEvents", People, Opd, false),
    rule("/siaga.v1.Events/FollowEvents", People, Opd, false),
    // --- Tickets (tickets.proto): which SOP step a role may take (update,
    // void) is the workflow's business, as on every SOP action.
    rule("/siaga.v1.Tickets/ListTickets", People, Opd, false),
    rule("/siaga.v1.Tickets/GetTicket", People, Opd, false),
    rule(
        "/siaga.v1.Tickets/NewTicket",
        Roles(LETTER_ROLES),
        Opd,
        true,
    ),
    rule("/siaga.v1.Tickets/UpdateTicket", People, Opd, true),
    rule("/siaga.v1.Tickets/VoidTicket", People, Opd, true),
    rule("/siaga.v1.Tickets/ListAuditRecords", People, Opd, false),
    rule(
        "/siaga.v1.Tickets/ListMaintenanceWindows",
        People,
        Opd,
        false,
    ),
    rule(
        "/siaga.v1.Tickets/AddMaintenanceWindow",
        Roles(MAINTENANCE_ROLES),
        Opd,
        true,
    ),
    rule(
        "/siaga.v1.Tickets/RemoveMaintenanceWindow",
        Roles(MAINTENANCE_ROLES),
        Opd,
        true,
    ),
    // --- Sop (sop.proto): which step a role may take is the SOP file's
    // business (the workflow checks it and puts a refusal on the trail).
    rule("/siaga.v1.Sop/DisposeTicket", People, Opd, true),
    rule("/siaga.v1.Sop/ReturnTicket", People, Opd, true),
    rule("/siaga.v1.Sop/AcknowledgeTicket", People, Opd, true),
    rule("/siaga.v1.Sop/GetTurn", People, Opd, false),
    rule("/siaga.v1.Sop/ListInbox", People, Opd, false),
    rule(
        "/siaga.v1.Sop/VerifyAuditTrails",
        Roles(ADMIN_ONLY),
        Unscoped,
        false,
    ),
    // --- Documents (documents.proto)
    rule("/siaga.v1.Documents/GetCard", People, Opd, false),
    rule("/siaga.v1.Documents/GetRegister", People, Opd, false),
    // --- Measure (measure.proto): who may measure is the SOP file's
    // measuring step (and admin, for a device outside a ticket), checked by
    // the service once the ticket or device is one the caller sees.
    rule("/siaga.v1.Measure/MeasureTicket", People, Opd, true),
    rule("/siaga.v1.Measure/MeasureDevice", People, Opd, true),
    rule("/siaga.v1.Measure/GetMeasurement", People, Opd, false),
    rule(
        "/siaga.v1.Measure/ListTicketMeasurements",
        People,
        Opd,
        false,
    ),
    // --- Discovery (discovery.proto): the OPD's technical team and admin
    // (an OPD-held caller only in their own OPD). It sends packets into an
    // OPD's network: on the audit trail.
    rule(
        "/siaga.v1.Discovery/Discover",
        Roles(crate::discover::api::DISCOVER_ROLES),
        Opd,
        true,
    ),
    // --- Reports (reports.proto)
    rule("/siaga.v1.Reports/GetReport", People, Opd, false),
    rule("/siaga.v1.Reports/GetAvailability", People, Opd, false),
    // --- Users (users.proto)
    rule(
        "/siaga.v1.Users/ListUsers",
        Roles(ADMIN_ONLY),
        Unscoped,
        false,
    ),
    rule(
        "/siaga.v1.Users/GrantRole",
        Roles(ADMIN_ONLY),
        Unscoped,
        true,
    ),
    rule(
        "/siaga.v1.Users/RevokeRole",
        Roles(ADMIN_ONLY),
        Unscoped,
        true,
    ),
    // Anyone for themself; the service lets only the admin set another's.
    rule("/siaga.v1.Users/SetPassword", People, Unscoped, true),
    // Likewise: anyone for themself, the admin for anyone.
    rule("/siaga.v1.Users/EnrollTotp", People, Unscoped, true),
];

/// The entry of `path`, if any (none: the gate refuses the call).
pub fn rule_of(path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.rpc == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Every RPC of every service in the proto, as `/package.Service/Method`.
    fn rpcs_of_the_proto() -> Vec<String> {
        let fds = prost_types::FileDescriptorSet::decode(siaga_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut out = Vec::new();
        for f in &fds.file {
            for s in &f.service {
                for m in &s.method {
                    out.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
        out
    }

    #[test]
    fn every_rpc_of_the_proto_has_exactly_one_policy_entry() {
        let rpcs = rpcs_of_the_proto();
        assert!(rpcs.len() > 5, "{rpcs:?}");
        let missing: Vec<_> = rpcs.iter().filter(|r| rule_of(r).is_none()).collect();
        assert!(
            missing.is_empty(),
            "RPCs without a policy entry: {missing:?}"
        );
        for r in RULES {
            let n = RULES.iter().filter(|o| o.rpc == r.rpc).count();
            assert_eq!(n, 1, "{} has {n} entries", r.rpc);
            assert!(
                r.rpc.starts_with("/grpc.health.v1.") || rpcs.iter().any(|p| p == r.rpc),
                "{} is in the policy but not in the proto",
                r.rpc
            );
        }
    }
}
