//! Where the collector's log lines go decides how they look.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// Whether log lines on stderr get ANSI colours: only when a person reads
/// them on a terminal. Under systemd (the journal), in a file or a pipe the
/// escape sequences would be noise; `NO_COLOR` set to anything non-empty
/// turns them off everywhere (<https://no-color.org>).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// [`colour`] for this process's stderr and environment.
pub fn colour_for_stderr() -> bool {
    colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(true, None => true; "terminal")]
    #[test_case(false, None => false; "file, pipe or journal")]
    #[test_case(true, Some("1") => false; "terminal with NO_COLOR")]
    #[test_case(true, Some("") => true; "empty NO_COLOR does not count")]
    #[test_case(false, Some("1") => false; "file with NO_COLOR")]
    fn colour_only_on_a_terminal(tty: bool, no_color: Option<&str>) -> bool {
        colour(tty, no_color.map(OsStr::new))
    }
}
