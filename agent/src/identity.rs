//! What `siaga-agent validate` checks in the TLS files before the collector
//! would refuse them: the key belongs to the certificate, the certificate is
//! valid now, it was issued by the configured CA, and it names this agent.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, Error as TlsError, InconsistentKeys};

/// One thing wrong with the agent's TLS files: the config key that names the
/// file at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `tls.ca`, `tls.cert` or `tls.key`.
    pub key: &'static str,
    /// What is wrong, for the operator.
    pub message: String,
    /// Only a connection can tell which file is at fault: the certificate
    /// and the CA come from different CAs, and either may be the stray one.
    pub undecided: bool,
}

fn problem(key: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        key,
        message: message.into(),
        undecided: false,
    }
}

/// The URI SAN a certificate issued to agent `id` of `opd` carries.
pub fn agent_uri(opd: &str, id: &str) -> String {
    format!("siaga://agent/{opd}/{id}")
}

/// Checks the PEM texts of the CA, the certificate and the key against the
/// agent's `opd` and `id`, at time `now`.
pub fn check(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    opd: &str,
    id: &str,
    now: UnixTime,
) -> Result<(), Problem> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem("tls.ca", format!("not a PEM certificate: {e}")))?;
    if cas.is_empty() {
        return Err(problem("tls.ca", "holds no certificate"));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem("tls.cert", format!("not a PEM certificate: {e}")))?;
    let Some(leaf) = chain.first().cloned() else {
        return Err(problem("tls.cert", "holds no certificate"));
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| problem("tls.key", format!("not a PEM private key: {e}")))?;

    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| problem("tls.key", format!("unusable private key: {e}")))?;
    match CertifiedKey::new(chain.clone(), signing).keys_match() {
        Ok(()) => {}
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(problem(
                "tls.key",
                "does not belong to the certificate in tls.cert (a key from another enrolment?)",
            ));
        }
        Err(e) => return Err(problem("tls.key", format!("cannot be checked: {e}"))),
    }

    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| problem("tls.ca", format!("not a usable CA certificate: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| problem("tls.ca", format!("not a usable CA: {e}")))?;
    let intermediates = chain.get(1..).unwrap_or_default();
    let other_ca = match verifier.verify_client_cert(&leaf, intermediates, now) {
        Ok(_) => None,
        // Either file may be the stray one: the name is still checked, and
        // the uplink tells which once it connects.
        Err(TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => Some(Problem {
            undecided: true,
            ..problem(
                "tls.cert",
                "was not issued by the CA in tls.ca: one of the two comes from another \
                 collector: copy ca.pem from the collector, or enroll this agent on it again \
                 (`siaga-agent run` says which once it connects)",
            )
        }),
        Err(e) => {
            let message = match e {
                TlsError::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => "has expired: renew it (`siaga-collector enroll agent` again)".to_string(),
                TlsError::InvalidCertificate(
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                ) => "is not valid yet (is this host's clock right?)".to_string(),
                other => format!("is refused: {other}"),
            };
            return Err(problem("tls.cert", message));
        }
    };

    let want = agent_uri(opd, id);
    let uris = uri_sans(&leaf).map_err(|m| problem("tls.cert", m))?;
    if !uris.contains(&want) {
        let names = if uris.is_empty() {
            "no siaga:// name".to_string()
        } else {
            uris.join(", ")
        };
        return Err(problem(
            "tls.cert",
            format!(
                "names {names}, not this agent ({want}): id and opd in the configuration \
                 must be the ones it was enrolled with"
            ),
        ));
    }
    other_ca.map_or(Ok(()), Err)
}

fn uri_sans(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| format!("not a certificate: {e}"))?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::URI(u) = n {
                out.push(u.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        SanType,
    };
    use test_case::test_case;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, uri: &str, expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![SanType::URI(
            rcgen::string::Ia5String::try_from(uri.to_string()).unwrap(),
        )];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = if expired {
            rcgen::date_time_ymd(2021, 1, 1)
        } else {
            rcgen::date_time_ymd(2099, 1, 1)
        };
        let cert = p.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    enum Case {
        Good,
        WrongKey,
        Expired,
        OtherCa,
        OtherId,
        OtherOpd,
    }

    #[test_case(Case::Good, None ; "good")]
    #[test_case(Case::WrongKey, Some(("tls.key", "does not belong to the certificate")) ; "key of another certificate")]
    #[test_case(Case::Expired, Some(("tls.cert", "has expired")) ; "expired")]
    #[test_case(Case::OtherCa, Some(("tls.cert", "not issued by the CA in tls.ca")) ; "another ca")]
    #[test_case(Case::OtherId, Some(("tls.cert", "names siaga://agent/dinkes/other-agent, not this agent (siaga://agent/dinkes/dinkes-agent)")) ; "another agent id")]
    #[test_case(Case::OtherOpd, Some(("tls.cert", "not this agent")) ; "another opd")]
    fn identity_checks(case: Case, refused: Option<(&str, &str)>) {
        let ours = ca();
        let me = agent_uri("dinkes", "dinkes-agent");
        let other_ca = matches!(case, Case::OtherCa);
        let (cert, key) = match case {
            Case::Good => leaf(&ours, &me, false),
            Case::WrongKey => {
                let (c, _) = leaf(&ours, &me, false);
                let (_, k) = leaf(&ours, &me, false);
                (c, k)
            }
            Case::Expired => leaf(&ours, &me, true),
            Case::OtherCa => leaf(&ca(), &me, false),
            Case::OtherId => leaf(&ours, &agent_uri("dinkes", "other-agent"), false),
            Case::OtherOpd => leaf(&ours, &agent_uri("bappeda", "dinkes-agent"), false),
        };
        let got = check(
            ours.pem.as_bytes(),
            cert.as_bytes(),
            key.as_bytes(),
            "dinkes",
            "dinkes-agent",
            UnixTime::now(),
        );
        match refused {
            None => assert_eq!(got, Ok(())),
            Some((key, words)) => {
                let p = got.unwrap_err();
                assert_eq!(p.key, key, "{p:?}");
                assert!(p.message.contains(words), "{p:?}");
                // Only the certificate of another CA waits for the
                // connection to say which file is the stray one.
                assert_eq!(p.undecided, other_ca, "{p:?}");
            }
        }
    }

    #[test]
    fn not_pem_at_all() {
        let ours = ca();
        let (cert, key) = leaf(&ours, &agent_uri("a", "b"), false);
        let p = check(
            b"hello",
            cert.as_bytes(),
            key.as_bytes(),
            "a",
            "b",
            UnixTime::now(),
        )
        .unwrap_err();
        assert_eq!(p.key, "tls.ca");
        let p = check(
            ours.pem.as_bytes(),
            cert.as_bytes(),
            b"nope",
            "a",
            "b",
            UnixTime::now(),
        )
        .unwrap_err();
        assert_eq!(p.key, "tls.key");
    }
}
