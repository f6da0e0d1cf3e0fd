//! ICMP echo bursts: N paced echo requests per device, summarised as loss,
//! RTT min/avg/median/p95/max and jitter.
//!
//! One socket per address family is shared by every burst. One receiver
//! thread per socket blocks in `recvfrom` and stamps each reply the moment
//! the kernel hands it over, then wakes the waiting burst through a oneshot
//! keyed by (host, sequence). The send time is taken *before* `sendto`, so a
//! round trip can never read 0 (surge-ping takes it after the send future
//! completes). A sequence counter per host keeps (host, seq) unique even on
//! unprivileged DGRAM sockets, where the kernel rewrites the identifier.

use std::collections::HashMap;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use siaga_proto::v1::IcmpResult;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::oneshot;

use crate::error::ProbeError;

/// Receive buffer asked for: a reply burst from 1,000+ targets must not
/// overflow it (the kernel caps it at twice `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Send buffer asked for, so a cycle's worth of requests queues at once.
const SEND_BUFFER: usize = 4 * 1024 * 1024;
/// ICMP payload, as `ping`'s default (56 bytes): an 8-byte cookie, then a pattern.
const PAYLOAD_LEN: usize = 56;
/// How often a blocked receiver thread looks whether its prober is gone.
const RECV_POLL: Duration = Duration::from_millis(200);

/// How one burst is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurstOptions {
    /// Echo requests per burst.
    pub count: u32,
    /// Time between two requests to the same host.
    pub interval: Duration,
    /// How long to wait for each reply, from its request.
    pub timeout: Duration,
    /// Keep the individual round trips in `rtts_us` (on-demand measurements).
    pub keep_rtts: bool,
}

impl Default for BurstOptions {
    fn default() -> Self {
        Self {
            count: 5,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            keep_rtts: false,
        }
    }
}

/// Which kind of ICMP socket the prober got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    /// `SOCK_RAW`: root or CAP_NET_RAW. Sees every ICMP packet; ours are
    /// told apart by identifier and cookie.
    Raw,
    /// `SOCK_DGRAM` "ping socket": unprivileged, allowed by
    /// `net.ipv4.ping_group_range`. The kernel sets the identifier.
    Dgram,
}

/// Sends ICMP echo bursts. Cheap to clone; all clones share the sockets.
#[derive(Clone)]
pub struct IcmpProber {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for IcmpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpProber")
            .field("mode", &self.handle.shared.mode)
            .field("ipv6", &self.handle.shared.v6.is_some())
            .finish()
    }
}

/// Stops the receiver threads when the last clone of the prober is dropped.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

type Waiters = HashMap<(IpAddr, u16), oneshot::Sender<Instant>>;

struct Shared {
    mode: SocketMode,
    v4: Socket,
    v6: Option<Socket>,
    ident: u16,
    cookie: [u8; 8],
    waiters: Mutex<Waiters>,
    seqs: Mutex<HashMap<IpAddr, u16>>,
    stop: AtomicBool,
}

impl Shared {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_seq(&self, host: IpAddr) -> u16 {
        let mut seqs = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        let seq = seqs.entry(host).or_insert(0);
        let this = *seq;
        *seq = seq.wrapping_add(1);
        this
    }
}

impl IcmpProber {
    /// Opens the ICMP sockets: RAW if the process may, else an unprivileged
    /// DGRAM ping socket, else an error saying how to grant the right.
    pub fn new() -> Result<Self, ProbeError> {
        Self::open(None)
    }

    /// Opens the sockets of one given mode only (e.g. to check that the
    /// unprivileged path works).
    pub fn with_mode(mode: SocketMode) -> Result<Self, ProbeError> {
        Self::open(Some(mode))
    }

    /// The socket kind in use.
    pub fn mode(&self) -> SocketMode {
        self.handle.shared.mode
    }

    fn open(want: Option<SocketMode>) -> Result<Self, ProbeError> {
        let (mode, v4) = open_family(Domain::IPV4, want).map_err(permission_error)?;
        let v6 = match open_family(Domain::IPV6, Some(mode)) {
            Ok((_, s)) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "no ICMPv6 socket; IPv6 targets will report an error");
                None
            }
        };
        let shared = Arc::new(Shared {
            mode,
            v4,
            v6,
            ident: rand::random(),
            cookie: rand::random(),
            waiters: Mutex::new(HashMap::new()),
            seqs: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        spawn_receiver(&shared, false)?;
        if shared.v6.is_some() {
            spawn_receiver(&shared, true)?;
        }
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Sends `opts.count` echo requests to `addr`, `opts.interval` apart,
    /// and waits up to `opts.timeout` after each for its reply.
    pub async fn burst(&self, addr: IpAddr, opts: &BurstOptions) -> IcmpResult {
        let shared = &self.handle.shared;
        let (sock, v6) = match addr {
            IpAddr::V4(_) => (&shared.v4, false),
            IpAddr::V6(_) => match &shared.v6 {
                Some(s) => (s, true),
                None => {
                    return IcmpResult {
                        error: "IPv6 ICMP is not available on this host".into(),
                        ..IcmpResult::default()
                    };
                }
            },
        };
        let count = opts.count.max(1);
        let dest = SockAddr::from(SocketAddr::new(addr, 0));
        let start = tokio::time::Instant::now();
        let mut inflight = Vec::with_capacity(count as usize);
        let mut send_error = None;
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep_until(start + opts.interval * i).await;
            }
            let seq = shared.next_seq(addr);
            let packet = echo_request(v6, shared.ident, seq, &shared.cookie);
            let (tx, rx) = oneshot::channel();
            shared.waiters().insert((addr, seq), tx);
            match send(sock, &packet, &dest, opts.timeout).await {
                Ok(sent_at) => inflight.push((seq, sent_at, rx)),
                Err(e) => {
                    shared.waiters().remove(&(addr, seq));
                    send_error = Some(e);
                }
            }
        }
        let mut rtts = Vec::with_capacity(inflight.len());
        for (seq, sent_at, rx) in inflight {
            let deadline = tokio::time::Instant::from_std(sent_at + opts.timeout);
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(received_at)) => rtts.push(received_at.saturating_duration_since(sent_at)),
                _ => {
                    shared.waiters().remove(&(addr, seq));
                }
            }
        }
        let mut result = summarize(count, &rtts, opts.keep_rtts);
        if let Some(e) = send_error {
            result.error = format!("sending to {addr}: {e}");
        }
        result
    }
}

/// Sends one packet without blocking the runtime; a full send buffer is
/// retried for up to `patience`. Returns the time taken just before the
/// successful `sendto`.
async fn send(
    sock: &Socket,
    packet: &[u8],
    dest: &SockAddr,
    patience: Duration,
) -> io::Result<Instant> {
    let give_up = Instant::now() + patience;
    loop {
        let sent_at = Instant::now();
        match sock.send_to_with_flags(packet, dest, libc::MSG_DONTWAIT) {
            Ok(_) => return Ok(sent_at),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn open_family(domain: Domain, want: Option<SocketMode>) -> io::Result<(SocketMode, Socket)> {
    let proto = if domain == Domain::IPV6 {
        Protocol::ICMPV6
    } else {
        Protocol::ICMPV4
    };
    let socket = match want {
        Some(SocketMode::Raw) => (
            SocketMode::Raw,
            Socket::new(domain, Type::RAW, Some(proto))?,
        ),
        Some(SocketMode::Dgram) => (
            SocketMode::Dgram,
            Socket::new(domain, Type::DGRAM, Some(proto))?,
        ),
        None => match Socket::new(domain, Type::RAW, Some(proto)) {
            Ok(s) => (SocketMode::Raw, s),
            Err(raw) => match Socket::new(domain, Type::DGRAM, Some(proto)) {
                Ok(s) => (SocketMode::Dgram, s),
                Err(dgram) => {
                    tracing::debug!(raw = %raw, dgram = %dgram, "no ICMP socket");
                    return Err(dgram);
                }
            },
        },
    };
    let (_, s) = &socket;
    if let Err(e) = s.set_recv_buffer_size(RECV_BUFFER) {
        tracing::warn!(error = %e, "cannot raise the ICMP receive buffer");
    }
    if let Err(e) = s.set_send_buffer_size(SEND_BUFFER) {
        tracing::warn!(error = %e, "cannot raise the ICMP send buffer");
    }
    s.set_read_timeout(Some(RECV_POLL))?;
    Ok(socket)
}

fn permission_error(e: io::Error) -> ProbeError {
    if matches!(e.kind(), io::ErrorKind::PermissionDenied) || e.raw_os_error() == Some(libc::EPERM)
    {
        ProbeError::IcmpPermission {
            source: e,
            gid: process_gid().unwrap_or(0),
            range: std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        }
    } else {
        ProbeError::io("opening the ICMP socket", e)
    }
}

/// The real group id, read from /proc (no unsafe libc call).
fn process_gid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Gid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn spawn_receiver(shared: &Arc<Shared>, v6: bool) -> Result<(), ProbeError> {
    let sock = if v6 {
        shared.v6.as_ref()
    } else {
        Some(&shared.v4)
    };
    let Some(sock) = sock else { return Ok(()) };
    let sock: UdpSocket = sock
        .try_clone()
        .map_err(|e| ProbeError::io("cloning the ICMP socket", e))?
        .into();
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(if v6 { "icmp6-recv" } else { "icmp-recv" }.into())
        .spawn(move || receive_loop(&shared, &sock, v6))
        .map_err(|e| ProbeError::io("starting the ICMP receiver", e))?;
    Ok(())
}

fn receive_loop(shared: &Shared, sock: &UdpSocket, v6: bool) {
    // Kernel receive timestamps, as `ping` uses: the reply's time is when
    // the kernel took it in, not when this thread got to run.
    let kernel_stamps = setsockopt(sock, sockopt::ReceiveTimestampns, &true)
        .map_err(
            |e| tracing::debug!(error = %e, "no kernel receive timestamps; stamping in user space"),
        )
        .is_ok();
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    while !shared.stop.load(Ordering::Relaxed) {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let received = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            kernel_stamps.then_some(&mut cmsg),
            MsgFlags::empty(),
        );
        let (len, from, stamp) = match received {
            Ok(msg) => {
                let stamp = msg.cmsgs().ok().and_then(|mut it| {
                    it.find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                        _ => None,
                    })
                });
                (msg.bytes, msg.address.and_then(|a| socket_ip(&a)), stamp)
            }
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ICMP receive failed");
                std::thread::sleep(RECV_POLL);
                continue;
            }
        };
        let received_at = received_at(stamp);
        let Some(from) = from else { continue };
        let Some(reply) = parse_echo_reply(
            &buf[..len.min(buf.len())],
            v6,
            shared.mode == SocketMode::Raw,
        ) else {
            continue;
        };
        if reply.payload.get(..8) != Some(&shared.cookie[..]) {
            continue;
        }
        if shared.mode == SocketMode::Raw && reply.ident != shared.ident {
            continue;
        }
        if let Some(tx) = shared.waiters().remove(&(from, reply.seq)) {
            // The burst may have given up on this packet already.
            let _ = tx.send(received_at);
        }
    }
}

fn socket_ip(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// The monotonic instant of a kernel (wall clock) receive timestamp: now,
/// less how long ago the kernel stamped it. Without a stamp, now.
fn received_at(stamp: Option<TimeSpec>) -> Instant {
    let now = Instant::now();
    let Some(ts) = stamp else { return now };
    let stamped = UNIX_EPOCH + Duration::from(ts);
    match SystemTime::now().duration_since(stamped) {
        // A clock step between the two readings would make this absurd.
        Ok(lag) if lag < Duration::from_secs(1) => now.checked_sub(lag).unwrap_or(now),
        _ => now,
    }
}

/// An echo reply's fields.
#[derive(Debug, PartialEq, Eq)]
struct EchoReply<'a> {
    ident: u16,
    seq: u16,
    payload: &'a [u8],
}

/// Parses an echo reply; `with_ip_header` for IPv4 RAW sockets, which
/// deliver the IP header too. Anything else (other ICMP types, short or
/// odd packets) is `None`.
fn parse_echo_reply(buf: &[u8], v6: bool, with_ip_header: bool) -> Option<EchoReply<'_>> {
    let icmp = if with_ip_header && !v6 {
        let first = *buf.first()?;
        if first >> 4 != 4 {
            return None;
        }
        buf.get(usize::from(first & 0x0f) * 4..)?
    } else {
        buf
    };
    let reply_type = if v6 { 129 } else { 0 };
    if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    Some(EchoReply {
        ident: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: &icmp[8..],
    })
}

/// An echo request. The ICMPv6 checksum is left to the kernel (it covers a
/// pseudo-header only the kernel knows); ICMPv4's is computed here.
fn echo_request(v6: bool, ident: u16, seq: u16, cookie: &[u8; 8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + PAYLOAD_LEN);
    p.extend_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(cookie);
    p.extend((0..PAYLOAD_LEN - cookie.len()).map(|i| (i % 256) as u8));
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Round trip in whole microseconds, rounded up so that no reply reads 0.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Loss and RTT statistics of one burst; `rtts` in sending order.
pub fn summarize(sent: u32, rtts: &[Duration], keep_rtts: bool) -> IcmpResult {
    let us: Vec<u64> = rtts.iter().map(|d| micros(*d)).collect();
    let received = u32::try_from(us.len()).unwrap_or(u32::MAX).min(sent);
    let loss_pct = if sent == 0 {
        0.0
    } else {
        f64::from(sent - received) * 100.0 / f64::from(sent)
    };
    let mut result = IcmpResult {
        sent,
        received,
        loss_pct,
        ..IcmpResult::default()
    };
    if us.is_empty() {
        return result;
    }
    let mut sorted = us.clone();
    sorted.sort_unstable();
    let n = sorted.len();
    let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
    result.rtt_min_us = Some(sorted[0]);
    result.rtt_max_us = Some(sorted[n - 1]);
    result.rtt_avg_us = Some(u64::try_from(sum / n as u128).unwrap_or(u64::MAX));
    result.rtt_median_us = Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    });
    // Nearest rank: the smallest value with at least 95 % of samples at or below it.
    let rank = (95 * n).div_ceil(100).max(1);
    result.rtt_p95_us = Some(sorted[rank - 1]);
    result.jitter_us = Some(if n < 2 {
        0
    } else {
        let diffs: u128 = us.windows(2).map(|w| u128::from(w[0].abs_diff(w[1]))).sum();
        u64::try_from(diffs / (n as u128 - 1)).unwrap_or(u64::MAX)
    });
    if keep_rtts {
        result.rtts_us = us;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&u| Duration::from_micros(u)).collect()
    }

    #[test]
    fn summary_of_a_full_burst() {
        let r = summarize(5, &ms(&[100, 300, 200, 500, 400]), true);
        assert_eq!((r.sent, r.received), (5, 5));
        assert_eq!(r.loss_pct, 0.0);
        assert_eq!(r.rtt_min_us, Some(100));
        assert_eq!(r.rtt_max_us, Some(500));
        assert_eq!(r.rtt_avg_us, Some(300));
        assert_eq!(r.rtt_median_us, Some(300));
        assert_eq!(r.rtt_p95_us, Some(500));
        // |300-100| + |200-300| + |500-200| + |400-500| = 700, over 4 pairs
        assert_eq!(r.jitter_us, Some(175));
        assert_eq!(r.rtts_us, vec![100, 300, 200, 500, 400]);
    }

    #[test_case(5, &[], 100.0 ; "all lost")]
    #[test_case(5, &[10, 20], 60.0 ; "three of five lost")]
    #[test_case(4, &[10, 20, 30, 40], 0.0 ; "none lost")]
    fn loss(sent: u32, rtts: &[u64], loss: f64) {
        let r = summarize(sent, &ms(rtts), false);
        assert_eq!(r.loss_pct, loss);
        assert!(r.rtts_us.is_empty());
        assert_eq!(r.rtt_min_us.is_some(), !rtts.is_empty());
    }

    #[test]
    fn even_median_and_no_zero_rtt() {
        let r = summarize(
            2,
            &[Duration::from_nanos(10), Duration::from_micros(3)],
            false,
        );
        assert_eq!(r.rtt_min_us, Some(1));
        assert_eq!(r.rtt_median_us, Some(2));
    }

    #[test]
    fn request_checksum_verifies() {
        let p = echo_request(false, 0x1234, 7, &[1; 8]);
        assert_eq!(p.len(), 64);
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn parses_raw_ipv4_reply_and_ignores_others() {
        let mut reply = echo_request(false, 0xbeef, 42, &[9; 8]);
        reply[0] = 0;
        let mut ip = vec![0x45u8];
        ip.extend_from_slice(&[0; 19]);
        ip.extend_from_slice(&reply);
        let r = parse_echo_reply(&ip, false, true).expect("reply");
        assert_eq!((r.ident, r.seq), (0xbeef, 42));
        assert_eq!(&r.payload[..8], &[9; 8]);
        // our own request looped back, a truncated packet, garbage
        let req = echo_request(false, 1, 1, &[0; 8]);
        assert_eq!(parse_echo_reply(&req, false, false), None);
        assert_eq!(parse_echo_reply(&ip[..24], false, true), None);
        assert_eq!(parse_echo_reply(&[0x4f], false, true), None);
        assert_eq!(parse_echo_reply(&[], false, true), None);
    }
}
