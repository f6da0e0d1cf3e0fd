//! ICMP echo bursts: N paced echo requests per device, summarised as loss,
//! RTT min/avg/median/p95/max and jitter.
//!
//! One engine thread owns one socket per address family and every burst in
//! flight, as `fping` does in its single loop: bursts are submitted as jobs
//! (one job may hold thousands of targets), their rounds and reply
//! deadlines sit in one timer heap, the requests due at the same moment go
//! out together with `sendmmsg` (whatever job they belong to) and replies
//! come in with `recvmmsg`, stamped by the kernel as they arrive. A job's
//! state is a few flat arrays: one 8-byte word and one sequence number per
//! request, one counter per target. A target's result is handed back the
//! moment its last reply is in or its last request has timed out, so a
//! silent target never holds up the others.
//!
//! A reply counts only if its identifier (RAW sockets) and cookie are ours,
//! its sequence number names a request still waiting, and it comes from the
//! address that request went to. Sequence numbers come from one counter for
//! the whole prober and are never given to two waiting requests, so they
//! stay unique across targets and across bursts to the same target (on
//! unprivileged DGRAM sockets the kernel rewrites the identifier, and the
//! sequence number is what is left).
//!
//! The send time is taken just before `sendmmsg` (and, within a batch,
//! spread over the call's duration in sending order), so a round trip can
//! never read 0; the receive time is the kernel's stamp, as `ping` uses.

use std::collections::BinaryHeap;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use siaga_proto::v1::IcmpResult;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::error::ProbeError;

/// Receive buffer asked for: the replies of a round to 10,000 targets may
/// arrive while the engine is still sending (the kernel caps it at twice
/// `net.core.rmem_max` unless the process may force it).
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Send buffer asked for, so a round's requests queue at once.
const SEND_BUFFER: usize = 4 * 1024 * 1024;
/// ICMP payload, as `ping`'s default (56 bytes): an 8-byte cookie, then a pattern.
const PAYLOAD_LEN: usize = 56;
/// An echo request: 8 bytes of header, then the payload.
const PACKET_LEN: usize = 8 + PAYLOAD_LEN;
/// Requests per `sendmmsg`: small enough that spreading the call's time over
/// its packets is accurate to a few microseconds.
const SEND_BATCH: usize = 32;
/// Replies per `recvmmsg`.
const RECV_BATCH: usize = 64;
/// Room for one received packet: the largest IPv4 header (60 bytes) and
/// our echo reply; anything longer is not ours.
const RECV_SLOT: usize = 60 + PACKET_LEN + 64;
/// How long a full send buffer is waited on before the requests fail.
const SEND_PATIENCE: Duration = Duration::from_secs(1);

/// How one burst is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Sends ICMP echo bursts. Cheap to clone; all clones share one engine
/// thread and its sockets, which stop when the last clone is dropped.
#[derive(Clone)]
pub struct IcmpProber {
    inner: Arc<Inner>,
}

struct Inner {
    mode: SocketMode,
    ipv6: bool,
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for IcmpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpProber")
            .field("mode", &self.inner.mode)
            .field("ipv6", &self.inner.ipv6)
            .finish()
    }
}

/// The results of [`IcmpProber::bursts`], each as soon as its target is
/// done, tagged with the target's position in the submitted list.
#[derive(Debug)]
pub struct Bursts {
    rx: mpsc::UnboundedReceiver<Results>,
    /// The rest of the last batch received.
    batch: std::vec::IntoIter<(usize, IcmpResult)>,
    /// Targets not yet reported.
    left: usize,
    /// Which were reported (to fill in the rest if the engine stops).
    seen: Vec<bool>,
}

impl Bursts {
    /// The next finished target and its result; `None` when all are in.
    pub async fn next(&mut self) -> Option<(usize, IcmpResult)> {
        if self.left == 0 {
            return None;
        }
        let next = match self.batch.next() {
            Some(r) => Some(r),
            None => match self.rx.recv().await {
                Some(batch) => {
                    self.batch = batch.into_iter();
                    self.batch.next()
                }
                None => None,
            },
        };
        match next {
            Some((i, r)) => {
                self.left -= 1;
                if let Some(s) = self.seen.get_mut(i) {
                    *s = true;
                }
                Some((i, r))
            }
            None => {
                // The engine is gone: what is missing is reported as an error.
                let i = self.seen.iter().position(|s| !s)?;
                self.seen[i] = true;
                self.left -= 1;
                Some((
                    i,
                    IcmpResult {
                        error: "the ICMP engine stopped".into(),
                        ..IcmpResult::default()
                    },
                ))
            }
        }
    }

    /// Every result, in the order the targets were submitted.
    pub async fn all(mut self) -> Vec<IcmpResult> {
        let mut out = vec![IcmpResult::default(); self.seen.len()];
        while let Some((i, r)) = self.next().await {
            if let Some(slot) = out.get_mut(i) {
                *slot = r;
            }
        }
        out
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
        self.inner.mode
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
        let ipv6 = v6.is_some();
        // The engine runs its own small runtime so that it keeps time
        // whatever the callers' runtime is busy with (or if there is none).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ProbeError::io("starting the ICMP engine", e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let ident = if mode == SocketMode::Raw {
            Some(rand::random())
        } else {
            None
        };
        let cookie: [u8; 8] = rand::random();
        std::thread::Builder::new()
            .name("icmp".into())
            .spawn(move || {
                rt.block_on(async move {
                    match Engine::new(v4, v6, ident, cookie) {
                        Ok(engine) => engine.run(rx).await,
                        Err(e) => tracing::error!(error = %e, "the ICMP engine cannot start"),
                    }
                });
            })
            .map_err(|e| ProbeError::io("starting the ICMP engine", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                mode,
                ipv6,
                jobs: tx,
            }),
        })
    }

    /// Sends `opts.count` echo requests to `addr`, `opts.interval` apart,
    /// and waits up to `opts.timeout` after each for its reply.
    pub async fn burst(&self, addr: IpAddr, opts: &BurstOptions) -> IcmpResult {
        let mut bursts = self.bursts([(addr, opts.clone())]);
        match bursts.next().await {
            Some((_, r)) => r,
            None => IcmpResult::default(),
        }
    }

    /// Bursts to many targets at once, each with its own options; results
    /// come back as each target is done. Targets with the same options share
    /// one schedule (all their first requests go out together, and so on).
    pub fn bursts(&self, targets: impl IntoIterator<Item = (IpAddr, BurstOptions)>) -> Bursts {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut groups: Vec<(BurstOptions, Vec<IpAddr>, Vec<u32>)> = Vec::new();
        let mut n = 0usize;
        for (addr, opts) in targets {
            let index = u32::try_from(n).unwrap_or(u32::MAX);
            n += 1;
            if addr.is_ipv6() && !self.inner.ipv6 {
                let _ = tx.send(vec![(
                    index as usize,
                    IcmpResult {
                        error: "IPv6 ICMP is not available on this host".into(),
                        ..IcmpResult::default()
                    },
                )]);
                continue;
            }
            match groups.iter_mut().find(|(o, _, _)| *o == opts) {
                Some((_, addrs, indices)) => {
                    addrs.push(addr);
                    indices.push(index);
                }
                None => groups.push((opts, vec![addr], vec![index])),
            }
        }
        for (opts, addrs, indices) in groups {
            let job = Job::new(opts, addrs, indices, tx.clone());
            if let Err(mpsc::error::SendError(job)) = self.inner.jobs.send(job) {
                let _ = tx.send(
                    job.index
                        .iter()
                        .map(|&i| {
                            (
                                i as usize,
                                IcmpResult {
                                    error: "the ICMP engine stopped".into(),
                                    ..IcmpResult::default()
                                },
                            )
                        })
                        .collect(),
                );
            }
        }
        Bursts {
            rx,
            batch: Vec::new().into_iter(),
            left: n,
            seen: vec![false; n],
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
    // Past rmem_max where the process may (root); else as much as allowed.
    if setsockopt(s, sockopt::RcvBufForce, &RECV_BUFFER).is_err()
        && let Err(e) = s.set_recv_buffer_size(RECV_BUFFER)
    {
        tracing::warn!(error = %e, "cannot raise the ICMP receive buffer");
    }
    if let Err(e) = s.set_send_buffer_size(SEND_BUFFER) {
        tracing::warn!(error = %e, "cannot raise the ICMP send buffer");
    }
    if domain == Domain::IPV4 {
        // Don't fragment: a 64-byte request never needs it, and without the
        // flag the kernel draws a random IP identifier for every request
        // (`__ip_select_ident`: 4 % of a 10,000-host check's CPU).
        if let Err(e) = rustix::net::sockopt::set_ip_mtu_discover(
            s,
            rustix::net::sockopt::Ipv4PathMtuDiscovery::DO,
        ) {
            tracing::debug!(error = %e, "cannot set don't-fragment on the ICMP socket");
        }
    }
    s.set_nonblocking(true)?;
    // Kernel receive timestamps, as `ping` uses: the reply's time is when
    // the kernel took it in, not when the engine got to read it.
    if let Err(e) = setsockopt(s, sockopt::ReceiveTimestampns, &true) {
        tracing::debug!(error = %e, "no kernel receive timestamps; stamping in user space");
    }
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

// ---------------------------------------------------------------------------
// The bookkeeping: jobs, their requests, and which sequence number is whose.

/// State of one request, in one word: the top two bits say which, the rest
/// is a time in nanoseconds.
const TAG: u64 = 0b11 << 62;
/// Sent at (ns since the engine's epoch), waiting for its reply.
const SENT: u64 = 0;
/// Answered: the rest is the round trip.
const ANSWERED: u64 = 0b01 << 62;
/// Lost: timed out, or could not be sent.
const LOST: u64 = 0b10 << 62;
/// Not sent yet.
const UNSENT: u64 = u64::MAX;
/// An unused entry of the sequence table.
const FREE: u64 = u64::MAX;

/// One submitted burst over one or more targets sharing options.
struct Job {
    count: u32,
    interval: u64,
    timeout: u64,
    keep_rtts: bool,
    targets: Vec<IpAddr>,
    /// The caller's position of each target.
    index: Vec<u32>,
    /// Per request (target-major): its state word.
    state: Vec<u64>,
    /// Per request: the sequence number it went out with.
    seq: Vec<u16>,
    /// Per target: requests not yet answered or lost.
    open: Vec<u32>,
    /// Targets not yet reported.
    unreported: usize,
    /// First send error per target, if any (rare, so kept aside).
    errors: Vec<(u32, String)>,
    /// Results reported and not yet handed over (see [`Flight::deliver`]).
    done: Results,
    tx: mpsc::UnboundedSender<Results>,
}

/// Finished targets handed back together: one wake-up of the caller per
/// batch of replies, not per target.
type Results = Vec<(usize, IcmpResult)>;

impl Job {
    fn new(
        opts: BurstOptions,
        targets: Vec<IpAddr>,
        index: Vec<u32>,
        tx: mpsc::UnboundedSender<Results>,
    ) -> Self {
        let count = opts.count.max(1);
        let requests = targets.len() * count as usize;
        Self {
            count,
            interval: nanos(opts.interval),
            timeout: nanos(opts.timeout),
            keep_rtts: opts.keep_rtts,
            index,
            state: vec![UNSENT; requests],
            seq: vec![0; requests],
            open: vec![count; targets.len()],
            unreported: targets.len(),
            targets,
            errors: Vec::new(),
            done: Vec::new(),
            tx,
        }
    }

    fn slot(&self, target: usize, round: u32) -> usize {
        target * self.count as usize + round as usize
    }

    /// Hands back target `t`'s result.
    fn report(&mut self, t: usize) {
        let base = self.slot(t, 0);
        let rtts: Vec<Duration> = self.state[base..base + self.count as usize]
            .iter()
            .filter(|&&s| s & TAG == ANSWERED)
            .map(|&s| Duration::from_nanos(s & !TAG))
            .collect();
        let mut result = summarize(self.count, &rtts, self.keep_rtts);
        if let Some((_, e)) = self.errors.iter().find(|(i, _)| *i as usize == t) {
            result.error = format!("sending to {}: {e}", self.targets[t]);
        }
        self.unreported -= 1;
        self.done.push((self.index[t] as usize, result));
    }

    /// Hands the results reported so far to the caller (who may be gone:
    /// nothing to do then).
    fn deliver(&mut self) {
        if !self.done.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.done));
        }
    }

    /// Request `slot` is settled (answered or lost); reports its target if
    /// that was the last one open.
    fn settle(&mut self, slot: usize, state: u64) {
        self.state[slot] = state;
        let t = slot / self.count as usize;
        self.open[t] -= 1;
        if self.open[t] == 0 {
            self.report(t);
        }
    }
}

/// What the timer heap holds: a job's round to send, or a round's replies
/// to give up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Send,
    Expire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: u64,
    job: u32,
    generation: u32,
    round: u32,
    event: Event,
}

/// Every job in flight and the sequence table; free of sockets, so the
/// matching rules are tested on their own.
struct Flight {
    jobs: Vec<Option<Job>>,
    generations: Vec<u32>,
    free_jobs: Vec<u32>,
    /// Per sequence number: (job << 32 | request slot) of the request
    /// waiting on it, or FREE.
    owners: Vec<u64>,
    /// Sequence numbers given out and not yet free.
    owned: usize,
    next_seq: u16,
    timers: BinaryHeap<std::cmp::Reverse<Timer>>,
    /// Jobs with results to hand over at the end of this turn.
    dirty: Vec<u32>,
    /// Jobs in `jobs`.
    live: usize,
}

impl Flight {
    /// Hands every job's new results to its caller: called once per turn
    /// of the engine's loop.
    fn deliver(&mut self) {
        for j in std::mem::take(&mut self.dirty) {
            if let Some(Some(job)) = self.jobs.get_mut(j as usize) {
                job.deliver();
            }
        }
    }

    /// Job `j` may have results to hand over.
    fn touch(&mut self, j: usize) {
        if let Some(Some(job)) = self.jobs.get(j)
            && !job.done.is_empty()
        {
            self.dirty.push(u32::try_from(j).unwrap_or(u32::MAX));
        }
    }
}

impl Flight {
    fn new() -> Self {
        Self {
            jobs: Vec::new(),
            generations: Vec::new(),
            free_jobs: Vec::new(),
            owners: Vec::new(),
            owned: 0,
            next_seq: rand::random(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            live: 0,
        }
    }

    fn add(&mut self, job: Job, now: u64) {
        if job.targets.is_empty() {
            return;
        }
        self.live += 1;
        let id = match self.free_jobs.pop() {
            Some(id) => {
                self.jobs[id as usize] = Some(job);
                id
            }
            None => {
                self.jobs.push(Some(job));
                let id = self.jobs.len() - 1;
                // Generations outlive an idle engine's tables (see
                // `finish_if_done`): a slot used before keeps counting.
                if self.generations.len() <= id {
                    self.generations.push(0);
                }
                u32::try_from(id).unwrap_or(u32::MAX)
            }
        };
        self.timers.push(std::cmp::Reverse(Timer {
            at: now,
            job: id,
            generation: self.generations[id as usize],
            round: 0,
            event: Event::Send,
        }));
    }

    fn job_mut(&mut self, t: &Timer) -> Option<&mut Job> {
        if self.generations.get(t.job as usize) != Some(&t.generation) {
            return None;
        }
        self.jobs.get_mut(t.job as usize)?.as_mut()
    }

    /// The next timer, if due at `now`.
    fn due(&mut self, now: u64) -> Option<Timer> {
        match self.timers.peek() {
            Some(std::cmp::Reverse(t)) if t.at <= now => {
                let t = *t;
                self.timers.pop();
                Some(t)
            }
            _ => None,
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.timers.peek().map(|std::cmp::Reverse(t)| t.at)
    }

    /// A sequence number no waiting request holds, given to `owner`.
    fn take_seq(&mut self, owner: u64) -> Option<u16> {
        if self.owners.is_empty() {
            self.owners = vec![FREE; 1 << 16];
        }
        if self.owned >= self.owners.len() {
            return None;
        }
        loop {
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            if self.owners[usize::from(seq)] == FREE {
                self.owners[usize::from(seq)] = owner;
                self.owned += 1;
                return Some(seq);
            }
        }
    }

    fn release_seq(&mut self, seq: u16) {
        if let Some(o) = self.owners.get_mut(usize::from(seq))
            && *o != FREE
        {
            *o = FREE;
            self.owned -= 1;
        }
    }

    /// A reply from `from` with sequence number `seq`, received at `at`:
    /// whether it answered a waiting request.
    fn reply(&mut self, from: IpAddr, seq: u16, at: u64) -> bool {
        let Some(&owner) = self.owners.get(usize::from(seq)) else {
            return false;
        };
        if owner == FREE {
            return false;
        }
        let (j, slot) = ((owner >> 32) as usize, (owner & 0xffff_ffff) as usize);
        let Some(Some(job)) = self.jobs.get_mut(j) else {
            return false;
        };
        let Some(&state) = job.state.get(slot) else {
            return false;
        };
        if state & TAG != SENT
            || job.seq[slot] != seq
            || job.targets[slot / job.count as usize] != from
        {
            return false;
        }
        let rtt = at.saturating_sub(state);
        if rtt > job.timeout {
            // Too late: left to its deadline, as if it had not come.
            return false;
        }
        job.settle(slot, ANSWERED | rtt.max(1));
        self.release_seq(seq);
        self.touch(j);
        self.finish_if_done(j);
        true
    }

    /// Gives up on the replies of timer `t`'s round still missing.
    fn expire(&mut self, t: &Timer) {
        let Some(job) = self.job_mut(t) else { return };
        let mut freed = Vec::new();
        for target in 0..job.targets.len() {
            let slot = job.slot(target, t.round);
            if job.state.get(slot).is_some_and(|s| s & TAG == SENT) {
                freed.push(job.seq[slot]);
                job.settle(slot, LOST);
            }
        }
        for seq in freed {
            self.release_seq(seq);
        }
        self.touch(t.job as usize);
        self.finish_if_done(t.job as usize);
    }

    /// Drops job `j` once every target is reported, or when its caller is
    /// gone (freeing the sequence numbers it still held).
    fn finish_if_done(&mut self, j: usize) {
        let Some(Some(job)) = self.jobs.get_mut(j) else {
            return;
        };
        if job.unreported > 0 && !job.tx.is_closed() {
            return;
        }
        job.deliver();
        // Every number this job still holds (sent and waiting, or queued).
        let owners = &self.owners;
        let waiting: Vec<u16> = job
            .seq
            .iter()
            .enumerate()
            .filter(|&(slot, &q)| {
                owners.get(usize::from(q)) == Some(&(((j as u64) << 32) | slot as u64))
            })
            .map(|(_, &q)| q)
            .collect();
        for seq in waiting {
            self.release_seq(seq);
        }
        self.jobs[j] = None;
        self.live -= 1;
        self.generations[j] = self.generations[j].wrapping_add(1);
        self.free_jobs.push(u32::try_from(j).unwrap_or(u32::MAX));
        if self.live == 0 {
            // Idle: give the tables' memory back. Not the generations: a
            // round's timers can be scheduled after its job finished within
            // the same turn (the heap is cleared here, they are pushed
            // after), and a new job in a reset slot would take them for its
            // own (expiring its requests early, or a round it does not have).
            self.jobs = Vec::new();
            self.free_jobs = Vec::new();
            self.owners = Vec::new();
            self.timers = BinaryHeap::new();
            self.dirty = Vec::new();
        }
    }

    fn is_idle(&self) -> bool {
        self.live == 0
    }
}

// ---------------------------------------------------------------------------
// The engine: sockets, batches, the loop.

/// One address family's socket and its batch buffers.
struct Family {
    /// The ICMP socket, held as a tokio `UdpSocket` for its readiness only
    /// (every read and write is a `recvmmsg`/`sendmmsg` on its descriptor).
    sock: UdpSocket,
    v6: bool,
    /// The echo request with sequence number 0 (and, for IPv4, its checksum).
    template: [u8; PACKET_LEN],
    /// Requests waiting for the next `sendmmsg`: (job, slot, seq).
    pending: Vec<(u32, u32, u16)>,
    packets: Box<[[u8; PACKET_LEN]; SEND_BATCH]>,
    addrs: Vec<Option<SockaddrStorage>>,
    send_headers: MultiHeaders<SockaddrStorage>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    recv_bufs: Box<[[u8; RECV_SLOT]; RECV_BATCH]>,
}

impl Family {
    fn new(sock: Socket, v6: bool, ident: u16, cookie: &[u8; 8]) -> io::Result<Self> {
        Ok(Self {
            sock: UdpSocket::from_std(std::net::UdpSocket::from(sock))?,
            v6,
            template: echo_request(v6, ident, 0, cookie),
            pending: Vec::with_capacity(SEND_BATCH),
            packets: Box::new([[0; PACKET_LEN]; SEND_BATCH]),
            addrs: Vec::with_capacity(SEND_BATCH),
            send_headers: MultiHeaders::preallocate(SEND_BATCH, None),
            recv_headers: MultiHeaders::preallocate(RECV_BATCH, Some(nix::cmsg_space!(TimeSpec))),
            recv_bufs: Box::new([[0; RECV_SLOT]; RECV_BATCH]),
        })
    }
}

struct Engine {
    v4: Family,
    v6: Option<Family>,
    /// Our identifier on RAW sockets; `None` on DGRAM ones (the kernel's).
    ident: Option<u16>,
    cookie: [u8; 8],
    epoch: Instant,
    flight: Flight,
}

impl Engine {
    fn new(
        v4: Socket,
        v6: Option<Socket>,
        ident: Option<u16>,
        cookie: [u8; 8],
    ) -> io::Result<Self> {
        let id = ident.unwrap_or(0);
        Ok(Self {
            v4: Family::new(v4, false, id, &cookie)?,
            v6: v6.map(|s| Family::new(s, true, id, &cookie)).transpose()?,
            ident,
            cookie,
            epoch: Instant::now(),
            flight: Flight::new(),
        })
    }

    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }

    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let mut closed = false;
        loop {
            self.advance();
            self.flight.deliver();
            if closed && self.flight.is_idle() {
                return;
            }
            let wake = self
                .flight
                .next_timer()
                .map(|at| tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(at)));
            let v6 = self.v6.as_ref().map(|f| &f.sock);
            tokio::select! {
                job = jobs.recv(), if !closed => match job {
                    Some(job) => {
                        let now = self.now();
                        self.flight.add(job, now);
                        // Take whatever else was submitted at the same time.
                        while let Ok(job) = jobs.try_recv() {
                            self.flight.add(job, now);
                        }
                    }
                    None => closed = true,
                },
                r = self.v4.sock.readable() => {
                    if r.is_ok() {
                        clear_readable(&self.v4.sock);
                    }
                    self.receive(false);
                }
                r = async { match v6 { Some(s) => s.readable().await, None => std::future::pending().await } } => {
                    if let (Ok(()), Some(fam)) = (r, &self.v6) {
                        clear_readable(&fam.sock);
                    }
                    self.receive(true);
                }
                () = async { match wake { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {}
            }
        }
    }

    /// Sends every round that is due and gives up on every deadline passed.
    fn advance(&mut self) {
        let mut expired = false;
        while let Some(t) = self.flight.due(self.now()) {
            match t.event {
                Event::Send => self.send_round(&t),
                Event::Expire => {
                    if !expired {
                        // Replies already in the queue are in time.
                        self.flush();
                        self.receive(false);
                        self.receive(true);
                        expired = true;
                    }
                    self.flight.expire(&t);
                }
            }
        }
        self.flush();
    }

    /// Queues round `t.round` of a job, then schedules its next round and
    /// its deadline.
    fn send_round(&mut self, t: &Timer) {
        let Some(job) = self.flight.job_mut(t) else {
            return;
        };
        if job.tx.is_closed() {
            self.flight.finish_if_done(t.job as usize);
            return;
        }
        let (count, n, interval, timeout) =
            (job.count, job.targets.len(), job.interval, job.timeout);
        for target in 0..n {
            let Some(job) = self.flight.job_mut(t) else {
                return;
            };
            let slot = job.slot(target, t.round);
            let v6 = job.targets[target].is_ipv6();
            let owner = (u64::from(t.job) << 32) | slot as u64;
            let Some(seq) = self.flight.take_seq(owner) else {
                // 65,536 requests waiting: this one is lost rather than
                // given a number that another request holds.
                if let Some(job) = self.flight.job_mut(t) {
                    job.errors
                        .push((target as u32, "too many requests in flight".into()));
                    job.settle(slot, LOST);
                }
                continue;
            };
            if let Some(job) = self.flight.job_mut(t) {
                job.seq[slot] = seq;
            }
            let full = {
                let fam = if v6 {
                    self.v6.as_mut()
                } else {
                    Some(&mut self.v4)
                };
                match fam {
                    Some(fam) => {
                        fam.pending.push((t.job, slot as u32, seq));
                        fam.pending.len() >= SEND_BATCH
                    }
                    None => false,
                }
            };
            if full {
                self.flush_family(v6);
            }
        }
        // The round's requests go out now: its deadline counts from the last.
        self.flush();
        let now = self.now();
        if t.round + 1 < count {
            self.flight.timers.push(std::cmp::Reverse(Timer {
                at: t.at + interval,
                round: t.round + 1,
                event: Event::Send,
                ..*t
            }));
        }
        self.flight.timers.push(std::cmp::Reverse(Timer {
            at: now + timeout,
            event: Event::Expire,
            ..*t
        }));
        self.flight.touch(t.job as usize);
        self.flight.finish_if_done(t.job as usize);
    }

    fn flush(&mut self) {
        self.flush_family(false);
        self.flush_family(true);
    }

    /// Sends the queued requests of one family with `sendmmsg`, waiting out
    /// a full send buffer for up to [`SEND_PATIENCE`].
    fn flush_family(&mut self, v6: bool) {
        let Some(fam) = (if v6 {
            self.v6.as_mut()
        } else {
            Some(&mut self.v4)
        }) else {
            return;
        };
        if fam.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut fam.pending);
        let mut first = 0;
        let mut blocked_since = None;
        while first < pending.len() {
            let Some(fam) = (if v6 {
                self.v6.as_mut()
            } else {
                Some(&mut self.v4)
            }) else {
                return;
            };
            let batch = &pending[first..];
            fam.addrs.clear();
            for (k, &(j, slot, seq)) in batch.iter().enumerate() {
                let addr = self
                    .flight
                    .jobs
                    .get(j as usize)
                    .and_then(Option::as_ref)
                    .map(|job| job.targets[slot as usize / job.count as usize]);
                fam.addrs
                    .push(addr.map(|a| SockaddrStorage::from(SocketAddr::new(a, 0))));
                fam.packets[k] = fam.template;
                set_seq(&mut fam.packets[k], seq, fam.v6);
            }
            let iovs: Vec<[IoSlice<'_>; 1]> = fam.packets[..batch.len()]
                .iter()
                .map(|p| [IoSlice::new(p)])
                .collect();
            let before = self.epoch.elapsed();
            let sent = sendmmsg(
                fam.sock.as_raw_fd(),
                &mut fam.send_headers,
                &iovs,
                &fam.addrs,
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(Iterator::count);
            let after = self.epoch.elapsed();
            drop(iovs);
            match sent {
                Ok(n) if n > 0 => {
                    // Packets leave one after the other within the call.
                    let (b, a) = (nanos(before), nanos(after));
                    for (k, &(j, slot, _)) in batch[..n].iter().enumerate() {
                        let at = b + (a - b) * k as u64 / n as u64;
                        if let Some(Some(job)) = self.flight.jobs.get_mut(j as usize) {
                            job.state[slot as usize] = SENT | at;
                        }
                    }
                    first += n;
                    blocked_since = None;
                    // Their replies arrive while the round goes out; read
                    // them now, or a round to 10,000 hosts overflows the
                    // receive buffer (16 MB holds about 10,000 replies).
                    self.receive(v6);
                }
                Ok(_) | Err(Errno::EAGAIN | Errno::ENOBUFS) => {
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > SEND_PATIENCE {
                        let rest: Vec<_> = pending.drain(first..).collect();
                        for (j, slot, seq) in rest {
                            self.fail(j, slot, seq, "the send buffer stayed full");
                        }
                        break;
                    }
                    // Replies keep arriving while the queue drains.
                    self.receive(v6);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // The first request of the batch failed (unreachable,
                    // no route...): it is lost with the error, the rest go on.
                    let (j, slot, seq) = pending[first];
                    self.fail(j, slot, seq, e.desc());
                    first += 1;
                }
            }
        }
        // Keep the queue's allocation for the next round.
        pending.clear();
        let fam = if v6 {
            self.v6.as_mut()
        } else {
            Some(&mut self.v4)
        };
        if let Some(fam) = fam
            && fam.pending.is_empty()
        {
            fam.pending = pending;
        }
    }

    /// A request that could not be sent: lost, with the reason.
    fn fail(&mut self, j: u32, slot: u32, seq: u16, why: &str) {
        self.flight.release_seq(seq);
        if let Some(Some(job)) = self.flight.jobs.get_mut(j as usize) {
            let t = slot / job.count;
            if !job.errors.iter().any(|(i, _)| *i == t) {
                job.errors.push((t, why.to_string()));
            }
            job.settle(slot as usize, LOST);
        }
        self.flight.touch(j as usize);
        self.flight.finish_if_done(j as usize);
    }

    /// Reads every reply waiting on one family's socket.
    fn receive(&mut self, v6: bool) {
        let raw = self.ident.is_some();
        loop {
            let Some(fam) = (if v6 {
                self.v6.as_mut()
            } else {
                Some(&mut self.v4)
            }) else {
                return;
            };
            let fd = fam.sock.as_fd().as_raw_fd();
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = fam
                .recv_bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(b)])
                .collect();
            let got = recvmmsg(
                fd,
                &mut fam.recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            );
            let msgs = match got {
                Ok(msgs) => msgs,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "ICMP receive failed");
                    return;
                }
            };
            // One reading of both clocks turns every kernel stamp of the
            // batch into the engine's monotonic time.
            let (mono, real) = (nanos(self.epoch.elapsed()), SystemTime::now());
            let mut n = 0;
            for msg in msgs {
                n += 1;
                let Some(from) = msg.address.as_ref().and_then(socket_ip) else {
                    continue;
                };
                let stamp = msg.cmsgs().ok().and_then(|mut it| {
                    it.find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                        _ => None,
                    })
                });
                let Some(data) = msg.iovs().next() else {
                    continue;
                };
                let Some(reply) = parse_echo_reply(data, v6, raw) else {
                    continue;
                };
                if reply.payload.get(..8) != Some(&self.cookie[..]) {
                    continue;
                }
                if self.ident.is_some_and(|id| id != reply.ident) {
                    continue;
                }
                let at = received_at(stamp, mono, real);
                self.flight.reply(from, reply.seq, at);
            }
            if n < RECV_BATCH {
                return;
            }
        }
    }
}

/// Forgets that the socket was readable: the loop that follows reads until
/// the kernel says there is nothing left, and a packet arriving after that
/// marks it readable again.
fn clear_readable(sock: &UdpSocket) {
    let _ = sock.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX >> 2) & !TAG
}

fn socket_ip(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// A kernel (wall clock) receive stamp in the engine's monotonic time:
/// `mono` less how long before `real` the kernel stamped it. Without a
/// stamp, or across a clock step, `mono`.
fn received_at(stamp: Option<TimeSpec>, mono: u64, real: SystemTime) -> u64 {
    let Some(ts) = stamp else { return mono };
    let stamped = UNIX_EPOCH + Duration::from(ts);
    match real.duration_since(stamped) {
        Ok(lag) if lag < Duration::from_secs(1) => mono.saturating_sub(nanos(lag)),
        _ => mono,
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
fn echo_request(v6: bool, ident: u16, seq: u16, cookie: &[u8; 8]) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = if v6 { 128 } else { 8 };
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[8..16].copy_from_slice(cookie);
    for (i, b) in p[16..].iter_mut().enumerate() {
        *b = (i % 256) as u8;
    }
    set_seq(&mut p, seq, v6);
    p
}

/// Writes the sequence number into a request built by [`echo_request`]
/// (with any sequence number) and fixes its ICMPv4 checksum.
fn set_seq(p: &mut [u8; PACKET_LEN], seq: u16, v6: bool) {
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    if !v6 {
        p[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&p[..]);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
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
    fn request_checksum_verifies_for_every_sequence_number() {
        let mut p = echo_request(false, 0x1234, 7, &[1; 8]);
        assert_eq!(p.len(), 64);
        assert_eq!(checksum(&p), 0);
        for seq in [0, 1, 0xff, 0x8000, 0xffff] {
            set_seq(&mut p, seq, false);
            assert_eq!(checksum(&p), 0, "seq {seq}");
            assert_eq!(u16::from_be_bytes([p[6], p[7]]), seq);
        }
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

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// A flight with one job over `targets`, its first round "sent" at 0:
    /// returns the sequence number of each target's first request.
    fn flight_with(
        targets: &[&str],
        count: u32,
    ) -> (Flight, Vec<u16>, mpsc::UnboundedReceiver<Results>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut f = Flight::new();
        let opts = BurstOptions {
            count,
            timeout: Duration::from_millis(500),
            ..BurstOptions::default()
        };
        let addrs: Vec<IpAddr> = targets.iter().map(|t| ip(t)).collect();
        let index = (0..addrs.len() as u32).collect();
        f.add(Job::new(opts, addrs, index, tx), 0);
        let t = f.due(0).expect("first round due");
        let mut seqs = Vec::new();
        for target in 0..targets.len() {
            let job = f.job_mut(&t).expect("job");
            let slot = job.slot(target, 0);
            let seq = f.take_seq(slot as u64).expect("seq");
            let job = f.job_mut(&t).expect("job");
            job.seq[slot] = seq;
            job.state[slot] = SENT | 1_000;
            seqs.push(seq);
        }
        (f, seqs, rx)
    }

    /// What the engine would hand over at the end of this turn.
    fn reported(f: &mut Flight, rx: &mut mpsc::UnboundedReceiver<Results>) -> Results {
        f.deliver();
        let mut all = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            all.extend(batch);
        }
        all
    }

    #[test]
    fn a_reply_counts_only_from_the_address_its_request_went_to() {
        let (mut f, seqs, mut rx) = flight_with(&["198.18.0.1", "198.18.0.2"], 1);
        // the right sequence number from the other target, from a stranger
        assert!(!f.reply(ip("198.18.0.2"), seqs[0], 2_000));
        assert!(!f.reply(ip("198.18.9.9"), seqs[0], 2_000));
        // a number nobody holds
        assert!(!f.reply(ip("198.18.0.1"), seqs[1].wrapping_add(1), 2_000));
        assert!(reported(&mut f, &mut rx).is_empty(), "nothing reported yet");
        // the real one, then its duplicate
        assert!(f.reply(ip("198.18.0.1"), seqs[0], 301_000));
        assert!(!f.reply(ip("198.18.0.1"), seqs[0], 302_000));
        let got = reported(&mut f, &mut rx);
        let (i, r) = &got[0];
        assert_eq!((*i, r.sent, r.received, r.rtt_min_us), (0, 1, 1, Some(300)));
        // too late: past the timeout, left to the deadline
        assert!(!f.reply(ip("198.18.0.2"), seqs[1], 600_000_000));
        assert_eq!(f.owned, 1);
    }

    /// A timer of a finished job never acts on the next job in its slot,
    /// also after the engine went idle in between: a stale deadline once
    /// expired the new job's request early (a false loss), or a round the
    /// new job does not have (index out of bounds: the engine thread died).
    #[test]
    fn a_stale_timer_of_a_finished_job_never_touches_the_next_one() {
        let (mut f, _seqs, rx) = flight_with(&["198.18.0.1"], 2);
        let stale = |round| Timer {
            at: 0,
            job: 0,
            generation: 0,
            round,
            event: Event::Expire,
        };
        // Its caller goes away: the job ends, the engine is idle.
        drop(rx);
        f.finish_if_done(0);
        assert!(f.is_idle());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let one = BurstOptions {
            count: 1,
            ..BurstOptions::default()
        };
        f.add(Job::new(one, vec![ip("198.18.0.2")], vec![0], tx), 0);
        let t = f.due(0).expect("first round due");
        let job = f.job_mut(&t).expect("job");
        let slot = job.slot(0, 0);
        let seq = f.take_seq(slot as u64).expect("seq");
        let job = f.job_mut(&t).expect("job");
        job.seq[slot] = seq;
        job.state[slot] = SENT | 1_000;
        f.expire(&stale(0));
        f.expire(&stale(1));
        assert!(
            reported(&mut f, &mut rx).is_empty(),
            "the new request is not lost"
        );
        assert!(f.reply(ip("198.18.0.2"), seq, 2_000));
        let got = reported(&mut f, &mut rx);
        assert_eq!((got[0].1.sent, got[0].1.received), (1, 1));
    }

    #[test]
    fn an_expired_round_is_lost_and_frees_its_numbers() {
        let (mut f, seqs, mut rx) = flight_with(&["198.18.0.1", "198.18.0.2"], 1);
        assert!(f.reply(ip("198.18.0.2"), seqs[1], 5_000));
        let got = reported(&mut f, &mut rx);
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
        f.expire(&Timer {
            at: 0,
            job: 0,
            generation: 0,
            round: 0,
            event: Event::Expire,
        });
        let got = reported(&mut f, &mut rx);
        let (i, r) = &got[0];
        assert_eq!((*i, r.sent, r.received, r.loss_pct), (0, 1, 0, 100.0));
        assert!(f.is_idle());
        assert_eq!(f.owned, 0);
        // its late reply finds nobody
        assert!(!f.reply(ip("198.18.0.1"), seqs[0], 6_000));
    }

    #[test]
    fn sequence_numbers_are_never_shared_while_waiting() {
        let mut f = Flight::new();
        let mut seen = std::collections::HashSet::new();
        for owner in 0..65_536u64 {
            let seq = f.take_seq(owner).expect("a free number");
            assert!(seen.insert(seq), "{seq} given twice");
        }
        assert_eq!(f.take_seq(1), None, "all 65,536 numbers are waiting");
        f.release_seq(7);
        assert_eq!(f.take_seq(1), Some(7));
    }
}
