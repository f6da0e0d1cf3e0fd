//! Limits on what a person sends and on how much one answer carries.
//!
//! Each text field's limit is named in its .proto comment and checked with
//! [`text`]; a request as a whole is capped by [`MAX_REQUEST_BYTES`]
//! (separate from answers, which may be up to the message cap).

use super::ApiError;

/// Largest request message a people's service decodes (64 KiB): the
/// longest text a person sends (a ticket's description, 16 KiB) fits
/// with room; anything larger is refused before it is decoded.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Calls one person may have in flight at once (streams count until they
/// end); more are refused with `RESOURCE_EXHAUSTED` and a retry hint.
pub const MAX_CALLS_PER_USER: usize = 8;

/// Common limits, in characters (Unicode scalar values).
pub mod len {
    /// Ids and names: devices, links, OPDs, users, roles.
    pub const ID: usize = 64;
    /// A subject or title line.
    pub const SUBJECT: usize = 200;
    /// A letter number (`nomor surat`).
    pub const LETTER_NUMBER: usize = 100;
    /// A reason, a note or an instruction.
    pub const NOTE: usize = 2_000;
    /// A description.
    pub const DESCRIPTION: usize = 16_000;
}

/// `value` of `field` is at most `max` characters and has no control
/// characters other than newline and tab.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    // Bytes first: a long string is refused without counting it.
    if value.len() > max * 4 || value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("{} characters; the limit is {max}", value.chars().count()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(ApiError::invalid(
            field,
            format!(
                "contains the control character U+{:04X}; remove it",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// [`text`] for a field that must not be empty.
pub fn required(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    text(field, value, max)
}

/// A ticket number a person sent in `field` (required, at most
/// [`len::ID`] characters; trimmed, any case).
pub fn ticket_number(field: &str, value: &str) -> Result<crate::sop::TicketNumber, ApiError> {
    required(field, value, len::ID)?;
    Ok(crate::sop::TicketNumber::typed(value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_field_over_its_limit_is_named_with_the_limit() {
        assert!(text("subject", &"x".repeat(200), len::SUBJECT).is_ok());
        let e = text("subject", &"x".repeat(201), len::SUBJECT).unwrap_err();
        assert_eq!(e.to_string(), "subject: 201 characters; the limit is 200");
        // Characters, not bytes: 200 × "é" fits.
        assert!(text("subject", &"é".repeat(200), len::SUBJECT).is_ok());
        let e = text("note", "a\u{1b}[31m", len::NOTE).unwrap_err();
        assert!(e.to_string().contains("U+001B"), "{e}");
        assert!(text("note", "two\nlines\tand a tab", len::NOTE).is_ok());
        assert!(required("reason", "  ", len::NOTE).is_err());
    }

    #[test]
    fn a_ticket_number_is_read_once_as_the_store_keys_it() {
        let n = ticket_number("id", " pj-2026-0001 ").unwrap();
        assert_eq!(n.as_str(), "PJ-2026-0001");
        let e = ticket_number("ticket", " ").unwrap_err();
        assert_eq!(e.to_string(), "ticket: is required");
        let e = ticket_number("id", &"P".repeat(65)).unwrap_err();
        assert_eq!(e.to_string(), "id: 65 characters; the limit is 64");
    }
}
