//! One UDP socket per SNMP device, which takes an answer only from the
//! address and port the request went to, carrying an id that request carried.
//!
//! async-snmp's shared `UdpTransport` matches answers by request id alone
//! unless `strict_source` is set, and draws the ids from one process-wide
//! counter (random start, then +1): whoever sees one request can predict the
//! next ones, for every device. This transport replaces it under the same
//! client: a socket of its own per device (a forger cannot see, or answer,
//! another device's exchanges on it), a random request id and SNMPv3 msgID
//! for every request, the source checked against the target, and every
//! datagram that fails those checks counted as forged for that device. A
//! socket `connect`ed to the device would let the kernel drop the forgeries,
//! but uncounted; here they are seen, dropped and counted.
//!
//! It also tells the poller what the library cannot: that an answer came
//! but was larger than the receive buffer, or did not decode, so that such a
//! device is reported as `answer too large` / `malformed answer`, not as a
//! silent one whose community was refused.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_snmp::{Candidate, Error, RequestRegistration, ResponseIdentity, Transport};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::net::UdpSocket;

/// The largest UDP payload over IPv4 or IPv6 without jumbograms: the
/// default receive buffer takes any answer a device can send.
pub const RECEIVE_BUFFER: usize = 65_535;

/// Request ids remembered to tell a device's late answer from a forgery.
const RECENT_IDS: usize = 64;

/// What the last exchange saw besides accepted answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// The device answered with a datagram larger than the receive buffer.
    TooLarge {
        /// The buffer, in bytes.
        buffer: usize,
    },
    /// The device answered with bytes that are not an SNMP message.
    Undecodable {
        /// Size of the answer.
        bytes: usize,
        /// The decoder's complaint.
        error: String,
    },
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diagnosis::TooLarge { buffer } => write!(
                f,
                "answer too large: the device sent a datagram larger than the {buffer}-byte receive buffer"
            ),
            Diagnosis::Undecodable { bytes, error } => {
                write!(
                    f,
                    "malformed answer: {bytes} bytes that do not decode ({error})"
                )
            }
        }
    }
}

/// A per-device SNMP transport; cheap to clone (clones share the socket).
#[derive(Clone)]
pub struct DeviceSocket {
    inner: Arc<Inner>,
}

struct Inner {
    socket: UdpSocket,
    target: SocketAddr,
    local: SocketAddr,
    buffer: usize,
    /// One exchange at a time: the answer to a request is read by the
    /// request's own exchange.
    exchange: tokio::sync::Mutex<Vec<u8>>,
    recent: Mutex<VecDeque<i32>>,
    diagnosis: Mutex<Option<Diagnosis>>,
    forged: Counter,
}

impl std::fmt::Debug for DeviceSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSocket")
            .field("target", &self.inner.target)
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl DeviceSocket {
    /// A socket on an ephemeral port for `target`; dropped answers count in
    /// `forged`.
    pub async fn bind(target: SocketAddr, forged: Counter) -> std::io::Result<Self> {
        Self::bind_with_buffer(target, forged, RECEIVE_BUFFER).await
    }

    /// The same with a receive buffer of `buffer` bytes.
    pub async fn bind_with_buffer(
        target: SocketAddr,
        forged: Counter,
        buffer: usize,
    ) -> std::io::Result<Self> {
        let any: IpAddr = if target.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
        let local = socket.local_addr()?;
        Ok(Self {
            inner: Arc::new(Inner {
                socket,
                target,
                local,
                buffer,
                // One byte more than the buffer: a datagram that fills it
                // whole was larger than the buffer.
                exchange: tokio::sync::Mutex::new(vec![0; buffer + 1]),
                recent: Mutex::new(VecDeque::with_capacity(RECENT_IDS)),
                diagnosis: Mutex::new(None),
                forged,
            }),
        })
    }

    /// What the last exchange saw that explains its failure, if anything;
    /// cleared by reading it.
    pub fn take_diagnosis(&self) -> Option<Diagnosis> {
        self.inner
            .diagnosis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Answers dropped as forged so far.
    pub fn forged(&self) -> u64 {
        self.inner.forged.get()
    }

    fn diagnose(&self, d: Diagnosis) {
        *self
            .inner
            .diagnosis
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(d);
    }

    fn remember(&self, registration: &RequestRegistration) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        for id in
            std::iter::once(registration.request_id()).chain(registration.aliases().iter().copied())
        {
            if !recent.contains(&id) {
                if recent.len() == RECENT_IDS {
                    recent.pop_front();
                }
                recent.push_back(id);
            }
        }
    }

    fn was_ours(&self, data: &[u8]) -> bool {
        let Some(id) = outer_id(data) else {
            return false;
        };
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// Files one datagram that is not the answer being waited for.
    fn drop_datagram(&self, data: &[u8], source: SocketAddr, why: &'static str) {
        if source == self.inner.target && why == "unknown id" && self.was_ours(data) {
            // A late answer to one of our earlier requests: not a forgery.
            tracing::debug!(target = %self.inner.target, "late SNMP answer dropped");
            return;
        }
        self.inner.forged.inc();
        tracing::debug!(target = %self.inner.target, %source, why, "SNMP answer dropped as forged");
    }

    /// Reads datagrams left from an earlier exchange without waiting.
    fn drain(&self, buf: &mut [u8]) {
        while let Ok((n, source)) = self.inner.socket.try_recv_from(buf) {
            let why = if source == self.inner.target {
                "unknown id"
            } else {
                "wrong source"
            };
            self.drop_datagram(&buf[..n.min(self.inner.buffer)], source, why);
        }
    }

    fn timeout(&self, started: tokio::time::Instant) -> Box<Error> {
        Error::Timeout {
            target: self.inner.target,
            elapsed: started.elapsed(),
            retries: 0,
        }
        .boxed()
    }
}

/// The request id (v1/v2c) or msgID (v3) of a message, if it has one.
fn outer_id(data: &[u8]) -> Option<i32> {
    let msg = async_snmp::message::Message::decode(
        Bytes::copy_from_slice(data),
        async_snmp::DecodeConfig::default(),
    )
    .ok()?;
    match msg.value {
        async_snmp::message::Message::V3(m) => Some(m.msg_id()),
        m => m.into_pdu().map(|p| p.into_raw_parts().0),
    }
}

/// A random request id or msgID in 1..=2^31-1 (RFC 3416, RFC 3412).
fn random_id() -> i32 {
    loop {
        let id = (rand::random::<u32>() & 0x7fff_ffff) as i32;
        if id != 0 {
            return id;
        }
    }
}

impl Transport for DeviceSocket {
    async fn send(&self, data: &[u8]) -> async_snmp::Result<()> {
        self.inner
            .socket
            .send_to(data, self.inner.target)
            .await
            .map(|_| ())
            .map_err(|source| {
                Error::Network {
                    target: self.inner.target,
                    source,
                }
                .boxed()
            })
    }

    async fn request_with<T, F>(
        &self,
        data: &[u8],
        registration: RequestRegistration,
        mut validate: F,
    ) -> async_snmp::Result<T>
    where
        T: Send,
        F: FnMut(Bytes, SocketAddr) -> async_snmp::Result<Candidate<T>> + Send,
    {
        let started = tokio::time::Instant::now();
        let deadline = registration.deadline();
        let mut buf = tokio::time::timeout_at(deadline, self.inner.exchange.lock())
            .await
            .map_err(|_| self.timeout(started))?;
        self.drain(&mut buf);
        self.remember(&registration);
        tokio::time::timeout_at(deadline, self.send(data))
            .await
            .map_err(|_| self.timeout(started))??;
        let mut undecodable = None;
        loop {
            let (n, source) = match tokio::time::timeout_at(
                deadline,
                self.inner.socket.recv_from(&mut buf),
            )
            .await
            {
                Ok(Ok(x)) => x,
                Ok(Err(source)) => {
                    // ICMP port unreachable and the like: nobody answers there.
                    tracing::debug!(target = %self.inner.target, error = %source, "SNMP receive error");
                    continue;
                }
                Err(_) => {
                    if let Some(d) = undecodable {
                        self.diagnose(d);
                        return Err(Error::MalformedResponse {
                            target: self.inner.target,
                        }
                        .boxed());
                    }
                    return Err(self.timeout(started));
                }
            };
            if source != self.inner.target {
                self.drop_datagram(&buf[..n.min(self.inner.buffer)], source, "wrong source");
                continue;
            }
            if n > self.inner.buffer {
                self.diagnose(Diagnosis::TooLarge {
                    buffer: self.inner.buffer,
                });
                return Err(Error::MalformedResponse {
                    target: self.inner.target,
                }
                .boxed());
            }
            let data = Bytes::copy_from_slice(&buf[..n]);
            if registration.evaluate_response_identity(&data, true) == ResponseIdentity::Reject {
                match async_snmp::message::Message::decode(
                    data.clone(),
                    registration.decode_config(),
                ) {
                    Err(e) => {
                        undecodable = Some(Diagnosis::Undecodable {
                            bytes: n,
                            error: e.to_string(),
                        });
                    }
                    Ok(_) => self.drop_datagram(&data, source, "unknown id"),
                }
                continue;
            }
            match validate(data, source)? {
                Candidate::Accept(v) => return Ok(v),
                Candidate::Reject => {
                    self.drop_datagram(&[], source, "failed the message's checks");
                }
            }
        }
    }

    fn peer_addr(&self) -> SocketAddr {
        self.inner.target
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    fn alloc_request_id(&self) -> i32 {
        random_id()
    }

    fn is_reliable(&self) -> bool {
        false
    }

    fn send_capacity(&self) -> usize {
        async_snmp::MAX_UDP_PAYLOAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How long a test waits for a datagram that should come.
    const TEST_WAIT: Duration = Duration::from_secs(5);
    use async_snmp::{Auth, ClientBuilder, Oid, Retry, Value};

    /// A v2c GetResponse for `request_id` with one varbind sysDescr.0 = `descr`.
    fn response(request_id: i32, community: &[u8], descr: &[u8]) -> Vec<u8> {
        let pdu = async_snmp::pdu::ResponsePdu::success(
            async_snmp::Version::V2c,
            request_id,
            vec![async_snmp::VarBind::new(
                Oid::from_slice(&[1, 3, 6, 1, 2, 1, 1, 1, 0]),
                Value::OctetString(descr.to_vec().into()),
            )],
        )
        .expect("pdu")
        .into_raw();
        async_snmp::message::CommunityMessage::v2c(community.to_vec(), pdu)
            .and_then(|m| m.encode())
            .expect("encode")
            .to_vec()
    }

    fn request_id_of(data: &[u8]) -> i32 {
        outer_id(data).expect("a request id")
    }

    async fn client(
        target: SocketAddr,
        forged: Counter,
        buffer: usize,
    ) -> (async_snmp::Client<DeviceSocket>, DeviceSocket) {
        let socket = DeviceSocket::bind_with_buffer(target, forged, buffer)
            .await
            .expect("bind");
        let client = ClientBuilder::new(Auth::v2c("public"))
            .request_timeout(Duration::from_millis(700))
            .retry(Retry::none())
            .build_with_transport(socket.clone())
            .expect("client");
        (client, socket)
    }

    fn sys_descr() -> Oid {
        Oid::from_slice(&[1, 3, 6, 1, 2, 1, 1, 1, 0])
    }

    #[tokio::test]
    async fn answers_from_another_port_or_with_another_id_are_dropped_and_counted() {
        let device = UdpSocket::bind("127.0.0.1:0").await.expect("device");
        let forger = UdpSocket::bind("127.0.0.1:0").await.expect("forger");
        let forged = Counter::default();
        let (client, _) = client(
            device.local_addr().expect("addr"),
            forged.clone(),
            RECEIVE_BUFFER,
        )
        .await;
        let ask = tokio::spawn(async move { client.get(&sys_descr()).await });
        let mut buf = vec![0; 2048];
        let (n, agent) = tokio::time::timeout(TEST_WAIT, device.recv_from(&mut buf))
            .await
            .expect("a request")
            .expect("recv");
        let id = request_id_of(&buf[..n]);
        // The forger sees the request and answers first, from its own port,
        // then the device's own port answers with a guessed id.
        forger
            .send_to(&response(id, b"public", b"forged"), agent)
            .await
            .expect("send");
        device
            .send_to(&response(id.wrapping_add(1), b"public", b"guessed"), agent)
            .await
            .expect("send");
        device
            .send_to(&response(id, b"public", b"real"), agent)
            .await
            .expect("send");
        let vb = ask.await.expect("task").expect("the real answer");
        assert_eq!(vb.varbinds[0].value.as_bytes(), Some(&b"real"[..]));
        assert_eq!(forged.get(), 2);
    }

    #[tokio::test]
    async fn request_ids_are_not_sequential() {
        let ids: Vec<i32> = (0..64).map(|_| random_id()).collect();
        assert!(ids.iter().all(|i| *i > 0));
        let sequential = ids
            .windows(2)
            .filter(|w| w[1].wrapping_sub(w[0]) == 1)
            .count();
        assert!(sequential < 2, "{ids:?}");
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_buffer_is_diagnosed_as_such() {
        let device = UdpSocket::bind("127.0.0.1:0").await.expect("device");
        let (client, socket) =
            client(device.local_addr().expect("addr"), Counter::default(), 1024).await;
        let ask = tokio::spawn(async move { client.get(&sys_descr()).await });
        let mut buf = vec![0; 2048];
        let (n, agent) = tokio::time::timeout(TEST_WAIT, device.recv_from(&mut buf))
            .await
            .expect("a request")
            .expect("recv");
        let id = request_id_of(&buf[..n]);
        device
            .send_to(&response(id, b"public", &[b'x'; 4000]), agent)
            .await
            .expect("send");
        assert!(ask.await.expect("task").is_err());
        assert_eq!(
            socket.take_diagnosis(),
            Some(Diagnosis::TooLarge { buffer: 1024 })
        );
    }

    #[tokio::test]
    async fn an_undecodable_answer_is_diagnosed_as_malformed() {
        let device = UdpSocket::bind("127.0.0.1:0").await.expect("device");
        let (client, socket) = client(
            device.local_addr().expect("addr"),
            Counter::default(),
            RECEIVE_BUFFER,
        )
        .await;
        let ask = tokio::spawn(async move { client.get(&sys_descr()).await });
        let mut buf = vec![0; 2048];
        let (_, agent) = tokio::time::timeout(TEST_WAIT, device.recv_from(&mut buf))
            .await
            .expect("a request")
            .expect("recv");
        device
            .send_to(b"\x30\x82\xff\xffnot snmp", agent)
            .await
            .expect("send");
        assert!(ask.await.expect("task").is_err());
        let d = socket.take_diagnosis();
        assert!(matches!(d, Some(Diagnosis::Undecodable { .. })), "{d:?}");
        assert!(d.expect("some").to_string().starts_with("malformed answer"));
    }
}
