//! The `Discovery` service (discovery.proto): a subnet of an OPD swept by
//! its agent, answered with what was found and the proposal against the
//! inventory in force. For the OPD's Tim Teknis and admin (the policy
//! table); another OPD is `NOT_FOUND` to a person held to their own.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use siaga_proto::v1;
use tonic::{Request, Response, Status};
use tracing::info;

use super::proposal::{propose, snmp_sections};
use super::service::{DiscoverError, Route};
use crate::api::ApiError;
use crate::api::limits::{self, len};
use crate::role::Role;

/// Who may discover (with the OPD scope of the policy table).
pub const DISCOVER_ROLES: &[Role] = &[Role::TIM_TEKNIS, Role::ADMIN];
/// The largest subnet one run sweeps: a /20 of IPv4 (host bits).
pub const MAX_HOST_BITS: u8 = 12;
/// How long the agent is waited for when the caller names no time, s.
pub const DEFAULT_TIMEOUT_S: u64 = 300;
/// The longest wait, s.
pub const MAX_TIMEOUT_S: u64 = 1800;

/// The subnet, checked (the agent checks it again).
pub fn subnet(s: &str) -> Result<IpNet, ApiError> {
    limits::required("subnet", s, len::ID)?;
    let net: IpNet = s.trim().parse().map_err(|_| {
        ApiError::invalid(
            "subnet",
            format!("{s:?} is not a subnet in CIDR notation (e.g. 198.18.40.0/24)"),
        )
    })?;
    if net.max_prefix_len() - net.prefix_len() > MAX_HOST_BITS {
        return Err(ApiError::invalid(
            "subnet",
            format!(
                "{net} is larger than a /{}: discovery sweeps at most {} addresses per run; split it",
                net.max_prefix_len() - MAX_HOST_BITS,
                1u32 << MAX_HOST_BITS
            ),
        ));
    }
    Ok(net.trunc())
}

fn timeout(s: u64) -> Result<Duration, ApiError> {
    match s {
        0 => Ok(Duration::from_secs(DEFAULT_TIMEOUT_S)),
        s if s > MAX_TIMEOUT_S => Err(ApiError::invalid(
            "timeout_s",
            format!("{s} s: at most {MAX_TIMEOUT_S} s"),
        )),
        s => Ok(Duration::from_secs(s)),
    }
}

/// The `Discovery` gRPC service.
#[derive(Debug, Clone)]
pub struct DiscoveryApi {
    hub: Arc<crate::hub::Hub>,
}

impl DiscoveryApi {
    /// The service on `hub`.
    pub fn new(hub: Arc<crate::hub::Hub>) -> Self {
        Self { hub }
    }
}

#[tonic::async_trait]
impl v1::discovery_server::Discovery for DiscoveryApi {
    async fn discover(
        &self,
        req: Request<v1::DiscoverRequest>,
    ) -> Result<Response<v1::DiscoverResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::required("opd", &r.opd, len::ID)?;
        let opd = r.opd.trim().to_string();
        let inv = self.hub.inventory();
        let missing = || format!("unknown OPD {opd:?}");
        caller.see(&opd, missing)?;
        if !inv.opds.contains_key(&opd) {
            return Err(ApiError::NotFound(missing()).into());
        }
        let net = subnet(&r.subnet)?;
        let wait = timeout(r.timeout_s)?;
        if let Some(t) = &r.snmp
            && !matches!(t.version.as_str(), "1" | "2c" | "3")
        {
            return Err(ApiError::invalid("snmp.version", "give 1, 2c or 3").into());
        }
        let Some((agent, session, downlink)) = self.hub.measure.route(&opd) else {
            return Err(ApiError::Refused(format!(
                "the agent of OPD {opd} is not connected; discovery runs on it"
            ))
            .into());
        };
        info!(user = %caller.name, %opd, subnet = %net, %agent, "discovery asked");
        let used = r.snmp.clone();
        let cmd = v1::DiscoverCommand {
            id: String::new(),
            subnet: net.to_string(),
            snmp: r.snmp,
            rate_pps: r.rate_pps,
        };
        let found = self
            .hub
            .discover
            .run(
                Route {
                    opd: &opd,
                    by: &caller.name,
                    agent: &agent,
                    session,
                    downlink: &downlink,
                },
                cmd,
                wait,
            )
            .await
            .map_err(|e| match e {
                DiscoverError::Agent { .. }
                | DiscoverError::Disconnected(_)
                | DiscoverError::Busy { .. } => ApiError::Refused(e.to_string()),
                DiscoverError::TimedOut { .. } => ApiError::Unavailable(e.to_string()),
            })?;
        let mut proposal = propose(&inv, &opd, &net.to_string(), &found.hosts);
        snmp_sections(&inv, used.as_ref(), &mut proposal);
        Ok(Response::new(v1::DiscoverResponse {
            opd,
            subnet: net.to_string(),
            agent: found.agent,
            swept: found.swept,
            answered: found.answered,
            hosts: found.hosts,
            proposal: Some(proposal),
        }))
    }
}

#[cfg(test)]
pub mod matrix {
    use std::sync::Arc;

    use siaga_proto::v1;
    use siaga_proto::v1::discovery_client::DiscoveryClient;

    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::Fixture;

    /// The `Discovery` service: no agent runs in the fixture, so whoever
    /// may discover is told the agent is not connected.
    pub const CASES: &[Case] = &[Case {
        rpc: "/siaga.v1.Discovery/Discover",
        call: |f: Arc<Fixture>, p, opd| {
            Box::pin(async move {
                let mut c = DiscoveryClient::new(f.channel(p));
                match c
                    .discover(v1::DiscoverRequest {
                        opd: opd.into(),
                        subnet: "198.18.40.0/24".into(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => Outcome::Seen,
                    Err(s) => s.into(),
                }
            })
        },
    }];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked_before_anything_is_sent() {
        assert_eq!(
            subnet("198.18.40.9/24").map(|n| n.to_string()).ok(),
            Some("198.18.40.0/24".to_string())
        );
        let e = subnet("10.0.0.0/8")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "subnet: 10.0.0.0/8 is larger than a /20: discovery sweeps at most 4096 addresses per run; split it"
        );
        assert!(subnet("nope").is_err());
        assert!(timeout(MAX_TIMEOUT_S + 1).is_err());
    }
}
