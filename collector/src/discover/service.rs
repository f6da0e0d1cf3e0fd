//! Routing discoveries to the agents: a run goes down the OPD's live agent
//! stream (the route measurements take) as a `DiscoverCommand`; the agent's
//! parts come back through [`DiscoverService::answer`] to the caller waiting
//! in [`DiscoverService::run`]. Runs live in memory only: a discovery is
//! a question asked now, not a record.
//!
//! An agent runs one discovery at a time, so a second one for an OPD while
//! one runs is refused here, with who asked the first and how long it may
//! take, rather than waiting unseen at the agent. A run belongs to the
//! stream (agent session) it was sent on: only that stream's end cancels it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use siaga_proto::v1::collector_message::Msg as CollectorMsg;
use siaga_proto::v1::{CollectorMessage, DiscoverCommand, DiscoverResult, DiscoveredHost};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::measure::service::Downlink;

/// Most hosts one run takes (a /20).
pub const MAX_HOSTS: usize = 4096;
/// Encoded bytes of host details one run keeps (the answer to the person
/// must stay well inside the 16 MiB message cap); past it, hosts keep their
/// system group and lose their LLDP rows, with a note.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// How long the command may wait for room on a busy stream.
const SEND_PATIENCE: Duration = Duration::from_secs(5);

/// Why a discovery gave no result.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiscoverError {
    /// The agent refused or could not run it (its words).
    #[error("the agent {agent} could not discover: {error}")]
    Agent {
        /// The agent.
        agent: String,
        /// What it said.
        error: String,
    },
    /// The stream to the agent ended before the run did.
    #[error("the agent {0} disconnected before the discovery was done")]
    Disconnected(String),
    /// A discovery of the OPD is running already (an agent runs one at a
    /// time).
    #[error(
        "a discovery of OPD {opd} is running already ({subnet}, asked by {by}); its agent runs one at a time: try again when it is done, at most {left} from now"
    )]
    Busy {
        /// The OPD.
        opd: String,
        /// The subnet of the running one.
        subnet: String,
        /// Who asked for it.
        by: String,
        /// The longest it may still run.
        left: String,
    },
    /// No last part in time.
    #[error("the agent {agent} did not finish the discovery within {waited}")]
    TimedOut {
        /// The agent.
        agent: String,
        /// How long it was waited for.
        waited: String,
    },
}

/// What a finished run found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// The agent that swept.
    pub agent: String,
    /// Addresses swept.
    pub swept: u32,
    /// Addresses that answered.
    pub answered: u32,
    /// Hosts as the agent read them, in address order.
    pub hosts: Vec<DiscoveredHost>,
}

struct Run {
    agent: String,
    /// The agent's stream it was sent on.
    session: u64,
    opd: String,
    subnet: String,
    by: String,
    deadline: Instant,
    tx: mpsc::Sender<DiscoverResult>,
}

/// Where a discovery goes and who asks for it.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// The OPD.
    pub opd: &'a str,
    /// The person asking.
    pub by: &'a str,
    /// The OPD's agent.
    pub agent: &'a str,
    /// Its stream's session (see `MeasureService::route`).
    pub session: u64,
    /// Its stream.
    pub downlink: &'a Downlink,
}

/// The discoveries running now.
#[derive(Default)]
pub struct DiscoverService {
    next: AtomicU64,
    runs: Mutex<HashMap<String, Run>>,
    /// Discoveries refused because one of the OPD was running.
    busy: Counter,
}

impl std::fmt::Debug for DiscoverService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoverService").finish_non_exhaustive()
    }
}

impl DiscoverService {
    /// The service, counting refusals of a second discovery on `busy`.
    pub fn new(busy: Counter) -> Self {
        Self {
            busy,
            ..Self::default()
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `cmd` (its id is set here) to the agent of `to` and waits up
    /// to `timeout` for its last part; refused while a discovery of the
    /// same OPD runs.
    pub async fn run(
        &self,
        to: Route<'_>,
        mut cmd: DiscoverCommand,
        timeout: Duration,
    ) -> Result<Found, DiscoverError> {
        let agent = to.agent;
        cmd.id = format!("D-{:06}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let id = cmd.id.clone();
        let (tx, mut rx) = mpsc::channel(16);
        {
            let mut runs = self.runs();
            if let Some(r) = runs.values().find(|r| r.opd == to.opd) {
                self.busy.inc();
                let left = r.deadline.saturating_duration_since(Instant::now());
                return Err(DiscoverError::Busy {
                    opd: r.opd.clone(),
                    subnet: r.subnet.clone(),
                    by: r.by.clone(),
                    left: humantime::format_duration(Duration::from_secs(left.as_secs()))
                        .to_string(),
                });
            }
            runs.insert(
                id.clone(),
                Run {
                    agent: agent.to_string(),
                    session: to.session,
                    opd: to.opd.to_string(),
                    subnet: cmd.subnet.clone(),
                    by: to.by.to_string(),
                    deadline: Instant::now() + SEND_PATIENCE + timeout,
                    tx,
                },
            );
        }
        // Whatever ends the wait, the run is forgotten.
        struct Forget<'a>(&'a DiscoverService, String);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.runs().remove(&self.1);
            }
        }
        let _forget = Forget(self, id.clone());
        info!(%id, %agent, subnet = %cmd.subnet, "discovery sent to the agent");
        let msg = Ok(CollectorMessage {
            msg: Some(CollectorMsg::Discover(cmd)),
        });
        if !matches!(
            tokio::time::timeout(SEND_PATIENCE, to.downlink.send(msg)).await,
            Ok(Ok(()))
        ) {
            return Err(DiscoverError::Disconnected(agent.to_string()));
        }
        let mut found = Found {
            agent: agent.to_string(),
            ..Found::default()
        };
        let mut bytes = 0;
        let collect = async {
            while let Some(part) = rx.recv().await {
                for h in part.hosts {
                    admit(&mut found.hosts, &mut bytes, h, MAX_ANSWER_BYTES);
                }
                if part.done {
                    if !part.error.is_empty() {
                        return Err(DiscoverError::Agent {
                            agent: agent.to_string(),
                            error: part.error,
                        });
                    }
                    found.swept = part.swept;
                    found.answered = part.answered;
                    return Ok(());
                }
            }
            Err(DiscoverError::Disconnected(agent.to_string()))
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(%id, error = %e, "discovery failed");
                return Err(e);
            }
            Err(_) => {
                return Err(DiscoverError::TimedOut {
                    agent: agent.to_string(),
                    waited: humantime::format_duration(timeout).to_string(),
                });
            }
        }
        found
            .hosts
            .sort_by_key(|h| h.address.parse::<std::net::IpAddr>().ok());
        info!(%id, %agent, answered = found.answered, hosts = found.hosts.len(), "discovery done");
        Ok(found)
    }

    /// A part of an agent's answer: taken only from the agent the run is on.
    pub async fn answer(&self, agent: &str, part: DiscoverResult) {
        let tx = match self.runs().get(&part.id) {
            Some(r) if r.agent == agent => r.tx.clone(),
            _ => {
                warn!(%agent, id = %part.id, "discovery result for a run not on this agent; ignored");
                return;
            }
        };
        // The caller may have given up meanwhile: then it is dropped.
        let _ = tx.send(part).await;
    }

    /// An agent's stream (`session`) ended: the runs sent on it cannot be
    /// answered any more. Runs on a newer stream of the agent go on.
    pub fn detach(&self, agent: &str, session: u64) {
        self.runs()
            .retain(|_, r| !(r.agent == agent && r.session == session));
    }
}

/// Keeps `h` within the run's budget: at most [`MAX_HOSTS`] hosts and
/// `budget` encoded bytes (`used` so far); over it, its LLDP rows go.
fn admit(hosts: &mut Vec<DiscoveredHost>, used: &mut usize, mut h: DiscoveredHost, budget: usize) {
    use prost::Message as _;
    if hosts.len() >= MAX_HOSTS {
        return;
    }
    if *used + h.encoded_len() > budget {
        let (p, n) = (h.ports.len(), h.neighbours.len());
        h.ports.clear();
        h.neighbours.clear();
        h.sys_descr.clear();
        h.notes = vec![format!(
            "details left out ({p} port(s), {n} neighbour(s)): the discovery's answer is over {} MiB",
            budget / (1024 * 1024)
        )];
    }
    *used += h.encoded_len();
    hosts.push(h);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn command_of(m: Option<Result<CollectorMessage, tonic::Status>>) -> DiscoverCommand {
        match m {
            Some(Ok(CollectorMessage {
                msg: Some(CollectorMsg::Discover(c)),
            })) => c,
            other => panic!("expected a discover command, got {other:?}"),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn route<'a>(opd: &'a str, agent: &'a str, session: u64, tx: &'a Downlink) -> Route<'a> {
        Route {
            opd,
            by: "teknisi",
            agent,
            session,
            downlink: tx,
        }
    }

    fn done(id: &str) -> DiscoverResult {
        DiscoverResult {
            id: id.into(),
            done: true,
            ..Default::default()
        }
    }

    /// Starts a discovery of `opd` on (`agent`, `session`) and returns its
    /// task and the command the agent got.
    async fn start(
        s: &Arc<DiscoverService>,
        opd: &'static str,
        agent: &'static str,
        session: u64,
    ) -> (
        tokio::task::JoinHandle<Result<Found, DiscoverError>>,
        DiscoverCommand,
    ) {
        let (tx, mut rx) = mpsc::channel(4);
        let run = {
            let s = s.clone();
            tokio::spawn(async move {
                let cmd = DiscoverCommand {
                    subnet: "198.18.40.0/24".into(),
                    ..Default::default()
                };
                s.run(route(opd, agent, session, &tx), cmd, secs(300)).await
            })
        };
        let cmd = command_of(rx.recv().await);
        (run, cmd)
    }

    #[tokio::test]
    async fn a_second_discovery_of_an_opd_is_refused_and_counted_while_one_runs() {
        let mut metrics = crate::metrics::Metrics::new();
        let s = Arc::new(DiscoverService::new(metrics.discoveries_busy.clone()));
        let (first, cmd) = start(&s, "dinkes", "dinkes-agent", 1).await;
        let (tx, mut rx) = mpsc::channel(4);
        let second = s
            .run(
                route("dinkes", "dinkes-agent", 1, &tx),
                DiscoverCommand {
                    subnet: "198.18.41.0/24".into(),
                    ..Default::default()
                },
                secs(300),
            )
            .await
            .unwrap_err();
        let text = second.to_string();
        assert!(
            text.starts_with(
                "a discovery of OPD dinkes is running already (198.18.40.0/24, asked by teknisi); \
                 its agent runs one at a time: try again when it is done, at most "
            ),
            "{text}"
        );
        // Nothing went to the agent, and /metrics counts it.
        assert!(rx.try_recv().is_err());
        let exposed = metrics.registry_mut();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, exposed).unwrap();
        assert!(
            out.contains("siaga_collector_discoveries_busy_total 1\n"),
            "{out}"
        );
        // Another OPD is not held up by it.
        let (other, other_cmd) = start(&s, "bappeda", "bappeda-agent", 2).await;
        s.answer("bappeda-agent", done(&other_cmd.id)).await;
        assert!(other.await.unwrap().is_ok());
        // Once the first is done, the OPD may discover again.
        s.answer("dinkes-agent", done(&cmd.id)).await;
        assert!(first.await.unwrap().is_ok());
        let (again, cmd) = start(&s, "dinkes", "dinkes-agent", 1).await;
        s.answer("dinkes-agent", done(&cmd.id)).await;
        assert!(again.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn the_end_of_an_old_stream_leaves_a_run_on_the_agents_new_stream() {
        let s = Arc::new(DiscoverService::default());
        // The agent reconnected (stream 2) before the server noticed its
        // old stream (1) ended; a discovery went down the new one.
        let (run, cmd) = start(&s, "dinkes", "dinkes-agent", 2).await;
        s.detach("dinkes-agent", 1);
        s.answer(
            "dinkes-agent",
            DiscoverResult {
                hosts: vec![host("198.18.40.2")],
                ..done(&cmd.id)
            },
        )
        .await;
        let found = run.await.unwrap().unwrap();
        assert_eq!(found.hosts.len(), 1);
        // Its own stream's end does cancel it.
        let (run, _) = start(&s, "dinkes", "dinkes-agent", 2).await;
        s.detach("dinkes-agent", 2);
        assert_eq!(
            run.await.unwrap().unwrap_err(),
            DiscoverError::Disconnected("dinkes-agent".into())
        );
    }

    fn host(addr: &str) -> DiscoveredHost {
        DiscoveredHost {
            address: addr.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn parts_from_the_right_agent_make_the_result() {
        let s = Arc::new(DiscoverService::default());
        let (tx, mut rx) = mpsc::channel(4);
        let run = {
            let s = s.clone();
            tokio::spawn(async move {
                let cmd = DiscoverCommand {
                    subnet: "198.18.40.0/29".into(),
                    ..Default::default()
                };
                s.run(route("dinkes", "dinkes-agent", 1, &tx), cmd, secs(30))
                    .await
            })
        };
        let cmd = command_of(rx.recv().await);
        assert_eq!(cmd.subnet, "198.18.40.0/29");
        let part = |hosts: Vec<DiscoveredHost>, done: bool| DiscoverResult {
            id: cmd.id.clone(),
            hosts,
            done,
            swept: 6,
            answered: 2,
            ..Default::default()
        };
        // Another agent cannot answer it.
        s.answer("bappeda-agent", part(vec![host("198.18.40.9")], false))
            .await;
        s.answer("dinkes-agent", part(vec![host("198.18.40.3")], false))
            .await;
        s.answer("dinkes-agent", part(vec![host("198.18.40.2")], false))
            .await;
        s.answer("dinkes-agent", part(vec![], true)).await;
        let found = run.await.unwrap().unwrap();
        let addrs: Vec<_> = found.hosts.iter().map(|h| h.address.as_str()).collect();
        assert_eq!(addrs, ["198.18.40.2", "198.18.40.3"]);
        assert_eq!((found.swept, found.answered), (6, 2));
        assert!(s.runs().is_empty());
    }

    #[test]
    fn host_details_past_the_budget_are_left_out_with_a_note() {
        let big = |addr: &str| DiscoveredHost {
            address: addr.into(),
            sys_name: "sw".into(),
            neighbours: vec![
                siaga_proto::v1::LldpNeighbour {
                    sys_name: "n".repeat(200),
                    ..Default::default()
                };
                10
            ],
            ..Default::default()
        };
        let (mut hosts, mut used) = (Vec::new(), 0);
        for a in ["198.18.40.1", "198.18.40.2", "198.18.40.3"] {
            admit(&mut hosts, &mut used, big(a), 5000);
        }
        let kept: Vec<_> = hosts.iter().map(|h| h.neighbours.len()).collect();
        // 5000 bytes (a big host is about 2,100): the third loses its rows.
        assert_eq!(kept, [10, 10, 0]);
        assert_eq!(hosts[2].sys_name, "sw");
        assert!(hosts[2].notes[0].starts_with("details left out (0 port(s), 10 neighbour(s))"));
    }

    #[tokio::test]
    async fn an_agent_error_or_a_lost_stream_ends_the_wait() {
        let s = Arc::new(DiscoverService::default());
        let (tx, mut rx) = mpsc::channel(4);
        let run = {
            let (s, tx) = (s.clone(), tx.clone());
            tokio::spawn(async move {
                s.run(
                    route("dinkes", "a", 1, &tx),
                    DiscoverCommand::default(),
                    secs(30),
                )
                .await
            })
        };
        let cmd = command_of(rx.recv().await);
        s.answer(
            "a",
            DiscoverResult {
                id: cmd.id,
                done: true,
                error: "subnet too large".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            run.await.unwrap().unwrap_err().to_string(),
            "the agent a could not discover: subnet too large"
        );

        let run = {
            let (s, tx) = (s.clone(), tx.clone());
            tokio::spawn(async move {
                s.run(
                    route("dinkes", "a", 1, &tx),
                    DiscoverCommand::default(),
                    secs(30),
                )
                .await
            })
        };
        command_of(rx.recv().await);
        s.detach("a", 1);
        assert_eq!(
            run.await.unwrap().unwrap_err(),
            DiscoverError::Disconnected("a".into())
        );
    }
}
