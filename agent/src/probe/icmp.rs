//! ICMP echo bursts against one address (surge-ping).
//!
//! One socket per address family is shared by every burst. Each echo request
//! carries a process-wide sequence number so that concurrent bursts to the
//! same host never collide: on unprivileged (DGRAM) sockets the kernel
//! rewrites the identifier and replies can only be told apart by sequence.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use siaga_proto::v1::IcmpResult;
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

use crate::error::ProbeError;

/// Shape of one burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurstOptions {
    /// Echo requests to send.
    pub count: u32,
    /// Time between two requests.
    pub interval: std::time::Duration,
    /// How long to wait for each reply.
    pub timeout: std::time::Duration,
    /// Whether to return every round trip in `rtts_us`.
    pub keep_rtts: bool,
}

impl Default for BurstOptions {
    fn default() -> Self {
        BurstOptions {
            count: 3,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            keep_rtts: false,
        }
    }
}

/// Sends ICMP echo bursts. Share it (`Arc`) between tasks.
pub struct IcmpProber {
    v4: Client,
    v6: Option<Client>,
    seq: AtomicU16,
}

impl std::fmt::Debug for IcmpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpProber")
            .field("v6", &self.v6.is_some())
            .finish()
    }
}

const PAYLOAD: [u8; 56] = [0x5a; 56];

impl IcmpProber {
    /// Opens the ICMP sockets (raw when allowed, else unprivileged datagram).
    ///
    /// Fails with a message that says how to get ICMP rights (root,
    /// CAP_NET_RAW, or net.ipv4.ping_group_range). Must be called inside a
    /// tokio runtime.
    pub fn new() -> Result<Self, crate::error::ProbeError> {
        let open = |kind: ICMP| {
            Client::new(
                &Config::builder()
                    .kind(kind)
                    .sock_type_hint(socket2::Type::RAW)
                    .build(),
            )
        };
        let v4 = open(ICMP::V4).map_err(|source| ProbeError::IcmpSocket {
            version: "v4",
            source,
        })?;
        // A host without IPv6 still probes IPv4 devices.
        let v6 = match open(ICMP::V6) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no ICMPv6 socket: IPv6 devices cannot be pinged");
                None
            }
        };
        Ok(IcmpProber {
            v4,
            v6,
            seq: AtomicU16::new(rand::random()),
        })
    }

    /// Sends `opts.count` echo requests to `addr`, `opts.interval` apart, and
    /// summarises the replies. Never fails: a probe that cannot run at all
    /// says so in `error`.
    pub async fn burst(&self, addr: IpAddr, opts: &BurstOptions) -> siaga_proto::v1::IcmpResult {
        let client = match addr {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => match &self.v6 {
                Some(c) => c,
                None => {
                    return IcmpResult {
                        sent: 0,
                        error: "no ICMPv6 socket on this host".into(),
                        ..Default::default()
                    };
                }
            },
        };
        if opts.count == 0 {
            return IcmpResult {
                error: "burst count must be at least 1".into(),
                ..Default::default()
            };
        }
        let ident = PingIdentifier(rand::random());
        let mut pings = Vec::with_capacity(opts.count as usize);
        for i in 0..opts.count {
            let seq = PingSequence(self.seq.fetch_add(1, Ordering::Relaxed));
            let delay = opts.interval.saturating_mul(i);
            let timeout = opts.timeout;
            pings.push(async move {
                tokio::time::sleep(delay).await;
                let mut pinger = client.pinger(addr, ident).await;
                pinger.timeout(timeout);
                // Timed from before the send: surge-ping starts its clock
                // after `send_to` returns, which can read 0 on loopback.
                let t0 = Instant::now();
                pinger.ping(seq, &PAYLOAD).await.map(|_| t0.elapsed())
            });
        }
        let results = futures::future::join_all(pings).await;
        summarise(&results, opts.keep_rtts)
    }
}

fn summarise(results: &[Result<Duration, SurgeError>], keep_rtts: bool) -> IcmpResult {
    let sent = u32::try_from(results.len()).unwrap_or(u32::MAX);
    let rtts: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1))
        .collect();
    let received = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    let loss_pct = if sent == 0 {
        100.0
    } else {
        f64::from(sent - received) * 100.0 / f64::from(sent)
    };
    // An error other than a timeout (unreachable network, send failure) with
    // no reply at all means the probe could not run.
    let error = if received == 0 {
        results
            .iter()
            .find_map(|r| match r {
                Err(SurgeError::Timeout { .. }) | Ok(_) => None,
                Err(e) => Some(e.to_string()),
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut r = IcmpResult {
        sent,
        received,
        loss_pct,
        error,
        ..Default::default()
    };
    if !rtts.is_empty() {
        let mut sorted = rtts.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        r.rtt_min_us = sorted.first().copied();
        r.rtt_max_us = sorted.last().copied();
        r.rtt_avg_us = u64::try_from(sum / n as u128).ok();
        r.rtt_median_us = Some(if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        });
        // Nearest-rank percentile.
        let rank = (95 * n).div_ceil(100).clamp(1, n);
        r.rtt_p95_us = Some(sorted[rank - 1]);
        // Mean absolute difference of consecutive round trips, in send order.
        r.jitter_us = if n >= 2 {
            let diffs: u64 = rtts.windows(2).map(|w| w[0].abs_diff(w[1])).sum();
            Some(diffs / (n as u64 - 1))
        } else {
            None
        };
        if keep_rtts {
            r.rtts_us = rtts;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Result<Duration, SurgeError> {
        Ok(Duration::from_millis(v))
    }
    fn lost() -> Result<Duration, SurgeError> {
        Err(SurgeError::Timeout {
            seq: PingSequence(0),
        })
    }

    #[test]
    fn summary_of_a_lossy_burst() {
        let r = summarise(&[ms(10), lost(), ms(30), ms(20)], true);
        assert_eq!((r.sent, r.received), (4, 3));
        assert_eq!(r.loss_pct, 25.0);
        assert_eq!(r.rtt_min_us, Some(10_000));
        assert_eq!(r.rtt_max_us, Some(30_000));
        assert_eq!(r.rtt_avg_us, Some(20_000));
        assert_eq!(r.rtt_median_us, Some(20_000));
        assert_eq!(r.rtt_p95_us, Some(30_000));
        // |10-30| + |30-20| over 2 gaps.
        assert_eq!(r.jitter_us, Some(15_000));
        assert_eq!(r.rtts_us, vec![10_000, 30_000, 20_000]);
        assert!(r.error.is_empty());
    }

    #[test]
    fn all_lost_is_full_loss_without_rtts() {
        let r = summarise(&[lost(), lost()], false);
        assert_eq!((r.sent, r.received, r.loss_pct), (2, 0, 100.0));
        assert_eq!(r.rtt_avg_us, None);
        assert!(r.error.is_empty(), "a timeout is loss, not an error");
    }

    #[test]
    fn send_failure_without_replies_is_an_error() {
        let r = summarise(
            &[Err(SurgeError::IOError(std::io::Error::other(
                "unreachable",
            )))],
            false,
        );
        assert_eq!(r.received, 0);
        assert!(r.error.contains("unreachable"), "{}", r.error);
    }

    /// Real ICMP to loopback. Needs ICMP rights (root or CAP_NET_RAW);
    /// without them it checks that the error says how to get them.
    #[tokio::test]
    async fn loopback_answers() {
        let prober = match IcmpProber::new() {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("CAP_NET_RAW") && msg.contains("ping_group_range"));
                return;
            }
        };
        let opts = BurstOptions {
            count: 4,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            keep_rtts: true,
        };
        // Two bursts at once to the same host must not steal each other's replies.
        let (a, b) = tokio::join!(
            prober.burst("127.0.0.1".parse().expect("addr"), &opts),
            prober.burst("127.0.0.1".parse().expect("addr"), &opts)
        );
        for r in [a, b] {
            assert_eq!((r.sent, r.received), (4, 4), "{r:?}");
            assert_eq!(r.loss_pct, 0.0);
            assert_eq!(r.rtts_us.len(), 4);
            assert!(r.rtt_min_us.is_some_and(|v| v > 0));
        }
    }
}
