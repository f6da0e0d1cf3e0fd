//! The client side of a connection to the collector: TCP and TLS done here
//! rather than inside tonic, so that a refusal of our certificate is an
//! error of the connection that [`crate::tls::diagnose`] can read.
//!
//! In TLS 1.3 a client finishes its handshake before the server has checked
//! the client's certificate; a refusal arrives afterwards as an alert, and
//! hyper, which reads it, reports only that the connection ended. So the
//! [`Connector`] waits for the server's first words (the collector speaks
//! first: its session tickets and HTTP/2 settings) before handing the
//! connection on: an alert then fails the connect with the rustls error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long to wait after the handshake for the server's first words; a
/// server that waits for the client to speak first is then used as is.
const FIRST_WORDS_WAIT: Duration = Duration::from_secs(3);

/// Connects to one collector with a client certificate, for
/// `Endpoint::connect_with_connector` (the endpoint's URI then is
/// [`Connector::endpoint_uri`], as TLS is done here).
#[derive(Clone)]
pub struct Connector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    host: String,
    port: u16,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// For the collector at `url` (`https://host[:port]`), trusting the CA
    /// certificates in `ca_pem`, showing the certificate and key in
    /// `cert_pem` and `key_pem`, and asking for `server_name` (the URL's
    /// host when `None`). The error says which part is unusable.
    pub fn new(
        url: &str,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        server_name: Option<&str>,
    ) -> Result<Self, String> {
        let (host, port) = address_of(url)?;
        let name = ServerName::try_from(server_name.unwrap_or(&host).to_string())
            .map_err(|e| format!("server name {:?}: {e}", server_name.unwrap_or(&host)))?;

        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            let ca = ca.map_err(|e| format!("the CA certificate: {e}"))?;
            roots
                .add(ca)
                .map_err(|e| format!("the CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA file holds no certificate".into());
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the certificate and key: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Connector {
            config: Arc::new(config),
            name,
            host,
            port,
        })
    }

    /// The URI to give the tonic `Endpoint` (plain `http`: the TLS is ours).
    pub fn endpoint_uri(&self) -> String {
        plain_uri(&self.host, self.port)
    }

    async fn dial(self) -> io::Result<TokioIo<Heard>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let mut tls = tokio_rustls::TlsConnector::from(self.config)
            .connect(self.name, tcp)
            .await?;
        let mut first = vec![0; 16 * 1024];
        match tokio::time::timeout(FIRST_WORDS_WAIT, tls.read(&mut first)).await {
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection right after the TLS handshake",
                ));
            }
            Ok(Ok(n)) => first.truncate(n),
            Ok(Err(e)) => return Err(e),
            // Reading is cancel-safe: nothing was taken from the stream.
            Err(_) => first.clear(),
        }
        Ok(TokioIo::new(Heard {
            first,
            at: 0,
            inner: tls,
        }))
    }
}

/// The host (IPv6 without brackets) and port of an `https://` URL.
fn address_of(url: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("collector URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("collector URL {url:?} must start with https://"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("collector URL {url:?} has no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

fn plain_uri(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<Heard>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        Box::pin(self.clone().dial())
    }
}

/// A TLS connection whose first bytes from the server were already read.
#[derive(Debug)]
pub struct Heard {
    first: Vec<u8>,
    at: usize,
    inner: TlsStream<TcpStream>,
}

impl AsyncRead for Heard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.first.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.at += n;
            if this.at == this.first.len() {
                this.first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Heard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gets_the_address_with_its_port() {
        for (url, want) in [
            ("http://collector:7443", Err("must start with https://")),
            ("https://", Err("collector URL")),
            ("collector:7443", Err("collector URL")),
            (
                "https://collector.example",
                Ok("http://collector.example:443"),
            ),
            ("https://10.0.0.5:7443/", Ok("http://10.0.0.5:7443")),
            ("https://[::1]:7443", Ok("http://[::1]:7443")),
        ] {
            let got = address_of(url).map(|(h, p)| plain_uri(&h, p));
            match (got, want) {
                (Ok(uri), Ok(want)) => assert_eq!(uri, want, "{url}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{url}: {e}"),
                (got, want) => panic!("{url}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
