//! What went wrong in a TLS handshake, read from the error's causes.
//!
//! tonic reports a failed handshake as "transport error" or a status whose
//! cause, several wrappers down, is a [`rustls::Error`] (often inside an
//! [`std::io::Error`], whose `source()` skips it). [`diagnose`] finds it and
//! names the problem so that the CLI and the agent can say what to do.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

/// A TLS problem a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// The collector's certificate is not signed by the CA this side trusts.
    PeerNotSignedByOurCa,
    /// The collector's certificate does not hold the name this side asked for.
    PeerWrongName,
    /// The collector's certificate has expired (or is not valid yet).
    PeerExpired,
    /// The collector refused our certificate as expired (or not valid yet).
    OursExpired,
    /// The collector refused our certificate as revoked.
    OursRevoked,
    /// The collector refused our certificate: not signed by its CA.
    OursNotSignedByTheirCa,
    /// The collector asked for a client certificate and got none it took.
    OursRefused,
}

/// The first TLS problem among `e` and its causes, if any.
pub fn diagnose(e: &(dyn StdError + 'static)) -> Option<TlsProblem> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(p) = rustls_of(err).and_then(problem) {
            return Some(p);
        }
        cur = err.source();
    }
    None
}

/// The rustls error `e` is, or holds as an I/O error's payload.
fn rustls_of<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The problem one rustls error stands for.
pub fn problem(e: &rustls::Error) -> Option<TlsProblem> {
    use TlsProblem::*;
    match e {
        rustls::Error::InvalidCertificate(c) => Some(match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                PeerNotSignedByOurCa
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                PeerWrongName
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => PeerExpired,
            _ => PeerNotSignedByOurCa,
        }),
        rustls::Error::AlertReceived(a) => match a {
            AlertDescription::CertificateExpired => Some(OursExpired),
            AlertDescription::CertificateRevoked => Some(OursRevoked),
            // UnknownCA: no issuer of that name; DecryptError: an issuer of
            // that name whose key did not sign it (another `init`'s CA).
            AlertDescription::UnknownCA | AlertDescription::DecryptError => {
                Some(OursNotSignedByTheirCa)
            }
            AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRequired
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => Some(OursRefused),
            _ => None,
        },
        _ => None,
    }
}

/// Why a handshake a server took part in failed, as one of a small fixed
/// set (the `reason` label of the collector's refused-handshakes counter).
pub fn refusal_reason(e: &std::io::Error) -> &'static str {
    let Some(r) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof => "closed",
            _ => "other",
        };
    };
    match r {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "expired",
            CertificateError::Revoked => "revoked",
            _ => "unknown_ca",
        },
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::AlertReceived(_) => "refused_by_client",
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => "not_tls",
        _ => "other",
    }
}

/// Every value [`refusal_reason`] gives.
pub const REFUSAL_REASONS: [&str; 9] = [
    "expired",
    "revoked",
    "unknown_ca",
    "no_certificate",
    "refused_by_client",
    "not_tls",
    "timeout",
    "closed",
    "other",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_inside_an_io_error_under_wrappers() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
        );
        assert_eq!(diagnose(&Wrap(io)), Some(TlsProblem::PeerNotSignedByOurCa));
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired,
        ));
        assert_eq!(diagnose(&alert), Some(TlsProblem::OursExpired));
        assert_eq!(diagnose(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn refusal_reasons_are_of_the_fixed_set() {
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "unknown_ca",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "expired",
            ),
            (rustls::Error::NoCertificatesPresented, "no_certificate"),
        ];
        for (e, want) in cases {
            let got = refusal_reason(&std::io::Error::other(e));
            assert_eq!(got, want);
            assert!(REFUSAL_REASONS.contains(&got));
        }
    }
}
