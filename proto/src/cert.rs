//! Certificates as both sides name them: a PEM file's DER, and the serial
//! in the form the revocation list and the refusals use.

/// Serial (lowercase hex) and URI SAN of a DER certificate.
pub fn cert_serial(der: &[u8]) -> Result<(String, String), String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    let serial = hex::encode(cert.tbs_certificate.raw_serial());
    let mut uri = String::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::URI(u) = n {
                uri = u.to_string();
            }
        }
    }
    Ok((serial, uri))
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    Ok(p.contents)
}

/// The canonical form of a serial: lowercase hex of its value, no leading
/// zeros (so `00:7f:01` and `7f01` are the same certificate).
pub fn canonical_serial(hex: &str) -> String {
    let t = hex.trim_start_matches('0').to_ascii_lowercase();
    if t.is_empty() { "0".into() } else { t }
}

/// The serial of a DER certificate in canonical form.
pub fn serial_of(der: &[u8]) -> Result<String, String> {
    cert_serial(der).map(|(s, _)| canonical_serial(&s))
}
