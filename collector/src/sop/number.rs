//! Ticket numbers (`PJ-2026-0001`): read once where a person gives one
//! (trimmed, any case), so the handlers and the store get the number
//! itself, never the text as typed.

use std::fmt;

/// A ticket number as the store keys it: upper case, no spaces around.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketNumber(String);

impl TicketNumber {
    /// The number a person typed (`" pj-2026-0001 "` is `PJ-2026-0001`).
    /// Whether such a ticket exists is the store's to say.
    pub fn typed(raw: &str) -> TicketNumber {
        TicketNumber(raw.trim().to_ascii_uppercase())
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TicketNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_number_is_the_stored_number() {
        for typed in ["PJ-2026-0001", " pj-2026-0001\t", "Pj-2026-0001"] {
            assert_eq!(TicketNumber::typed(typed).as_str(), "PJ-2026-0001");
        }
        assert_eq!(
            TicketNumber::typed("pj-2026-0001").to_string(),
            "PJ-2026-0001"
        );
    }
}
