//! Helpers shared by the agent's integration tests.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// Certificates on disk, made the way the collector's CA makes them.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn make_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    let key = KeyPair::generate().expect("key");
    let cert = p.self_signed(&key).expect("self-signed");
    (cert.pem(), Issuer::new(p, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, sans: Vec<SanType>) -> (String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.subject_alt_names = sans;
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// A collector CA with a server certificate for `localhost` and an
    /// agent certificate; `agent_ca` names who signs the agent's one.
    pub fn new(agent_from_other_ca: bool) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, ca) = make_ca("test collector CA");
        let (srv, srv_key) = leaf(
            &ca,
            vec![SanType::DnsName("localhost".try_into().expect("dns"))],
        );
        let (_, other) = make_ca("some other CA");
        let agent_issuer = if agent_from_other_ca { &other } else { &ca };
        let (agent, agent_key) = leaf(
            agent_issuer,
            vec![SanType::URI(
                "siaga://agent/dinkes/a1".try_into().expect("uri"),
            )],
        );
        for (name, text) in [
            ("ca.pem", ca_pem),
            ("server.pem", srv),
            ("server.key", srv_key),
            ("agent.pem", agent),
            ("agent.key", agent_key),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        }
        Pki { dir }
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).expect("read pem")
    }
}
