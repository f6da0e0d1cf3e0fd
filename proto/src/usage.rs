//! Bad command lines of `siaga` and `siaga-collector`: exit 64 (EX_USAGE)
//! with a sentence naming the flag and an example of what it takes.

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Exit code of a bad command line (EX_USAGE of sysexits.h).
pub const EX_USAGE: u8 = 64;

/// Parses the command line of `T`: `--help` and `--version` print and exit
/// 0; a bad command line prints clap's sentence, with the flag's own help
/// (which gives an example) when a value was refused, and exits 64.
pub fn parse<T: clap::Parser>() -> Result<T, ExitCode> {
    match T::try_parse() {
        Ok(t) => Ok(t),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let mut text = e.render().to_string().trim_end().to_string();
            if let Some(hint) = hint(&T::command(), &e) {
                text = match text.split_once("\n\n") {
                    Some((first, rest)) => format!("{first}\n  {hint}\n\n{rest}"),
                    None => format!("{text}\n  {hint}"),
                };
            }
            eprintln!("{text}");
            Err(ExitCode::from(EX_USAGE))
        }
    }
}

/// "--listen: Address to listen on, e.g. 0.0.0.0:7443." for a refused value
/// of a flag whose help gives an example.
fn hint(root: &clap::Command, e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    // The subcommand the flag belongs to, from the words of the command line.
    let mut cmd = root;
    for word in std::env::args().skip(1) {
        if let Some(sub) = cmd.find_subcommand(&word) {
            cmd = sub;
        }
    }
    let help = cmd
        .get_arguments()
        .chain(root.get_arguments())
        .find(|a| a.get_long() == Some(long))?
        .get_help()?
        .to_string();
    help.contains("e.g.")
        .then(|| format!("--{long}: {}", help.trim_end_matches('.')))
}
