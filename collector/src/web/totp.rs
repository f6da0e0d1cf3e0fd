//! The console's optional second factor: RFC 6238 time-based codes (six
//! digits, 30-second steps, SHA-1 — what every authenticator app reads
//! from an `otpauth://` URI), computed by `totp-rs`. `siaga user totp NAME`
//! enrols a secret (kept base32 in the user's file, beside the password
//! hash); a person who has one must give the current code at login. A code
//! is taken one step early or late (clock drift), and each step's code
//! only once per person: the step of the last code used is kept in the
//! user's file too ([`crate::users::take_totp_step`]), so a restart does
//! not make a used code good again.

use totp_rs::{Builder, Secret, Totp};

/// The issuer authenticator apps show beside the account.
pub const ISSUER: &str = "Siaga";
/// Random bytes of a new secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;

/// A new secret, base32 (as the user file keeps it).
pub fn new_secret() -> String {
    Secret::from(rand::random::<[u8; SECRET_BYTES]>()).to_base32()
}

fn totp(secret_b32: &str, account: &str) -> Result<Totp, String> {
    let secret = Secret::try_from_base32(secret_b32.trim())
        .map_err(|e| format!("the second-factor secret cannot be read: {e}"))?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| format!("the second-factor secret: {e}"))
}

/// The `otpauth://` URI an authenticator app enrols `account` from.
pub fn uri(secret_b32: &str, account: &str) -> Result<String, String> {
    totp(secret_b32, account)?
        .to_url()
        .map_err(|e| e.to_string())
}

/// The step whose code `code` is, within one step of `now_s` (seconds
/// since the epoch); `None` for a wrong code or an unreadable secret.
pub fn step_of(secret_b32: &str, code: &str, now_s: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret_b32, "x").ok()?.check(code, now_s)
}

/// The code of `secret_b32` at `now_s` (for tests and the CLI's check).
pub fn code_at(secret_b32: &str, now_s: u64) -> Option<String> {
    Some(totp(secret_b32, "x").ok()?.generate(now_s).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    /// RFC 6238 appendix B's SHA-1 secret ("12345678901234567890").
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test_case(59, "287082"; "first vector")]
    #[test_case(1_111_111_109, "081804"; "second vector")]
    #[test_case(1_234_567_890, "005924"; "third vector")]
    fn codes_are_the_rfc_6238_ones(at: u64, code: &str) {
        // Six-digit tails of the RFC's eight-digit values.
        assert_eq!(code_at(RFC_SECRET, at).unwrap(), code);
    }

    #[test]
    fn a_code_is_good_one_step_either_side() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(step_of(&secret, &code, now), Some(now / 30));
        assert!(step_of(&secret, &code, now + 30).is_some());
        assert!(step_of(&secret, &code, now - 30).is_some());
        assert_eq!(step_of(&secret, &code, now + 90), None);
        assert_eq!(step_of(&secret, "12345", now), None);
        assert_eq!(step_of(&secret, "abcdef", now), None);
    }

    #[test]
    fn the_uri_names_the_issuer_and_the_account() {
        let u = uri(RFC_SECRET, "budi").unwrap();
        assert!(u.starts_with("otpauth://totp/Siaga:budi?"), "{u}");
        assert!(u.contains(&format!("secret={RFC_SECRET}")), "{u}");
        assert!(u.contains("issuer=Siaga"), "{u}");
    }
}
