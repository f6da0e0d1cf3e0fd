//! The README's command line reference is the binaries' own `--help`: each
//! block between `<!-- BIN --help -->` and `<!-- end BIN --help -->` must be
//! what the built binary prints, so the README cannot drift from it.
//! `SIAGA_BLESS_README=1 cargo test -p siaga-tests --test readme` rewrites
//! the blocks from the binaries after a change to the command line.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use siaga_tests::harness::bin;

const BINARIES: [&str; 3] = ["siaga", "siaga-collector", "siaga-agent"];

fn readme() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

/// What `name --help` prints, as a fenced block.
fn help_block(name: &str) -> Result<String> {
    let out = Command::new(bin(name)?)
        .arg("--help")
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {name} --help"))?;
    ensure!(out.status.success(), "{name} --help failed");
    let text = String::from_utf8(out.stdout)?;
    Ok(format!(
        "<!-- {name} --help -->\n```text\n$ {name} --help\n{}\n```\n<!-- end {name} --help -->",
        text.trim_end()
    ))
}

/// The README's block for `name` (from its opening to its closing marker).
fn block_in(readme: &str, name: &str) -> Option<(usize, usize)> {
    let open = format!("<!-- {name} --help -->");
    let close = format!("<!-- end {name} --help -->");
    let a = readme.find(&open)?;
    let b = readme[a..].find(&close)? + a + close.len();
    Some((a, b))
}

#[test]
fn the_readme_command_line_reference_is_the_binaries_own_help() -> Result<()> {
    let path = readme();
    let mut text = std::fs::read_to_string(&path)?;
    let bless = std::env::var_os("SIAGA_BLESS_README").is_some();
    let mut stale = Vec::new();
    for name in BINARIES {
        let want = help_block(name)?;
        let (a, b) = block_in(&text, name)
            .with_context(|| format!("README.md has no `<!-- {name} --help -->` block"))?;
        if text[a..b] != want {
            if bless {
                text.replace_range(a..b, &want);
            } else {
                stale.push(format!("{name}:\n{want}"));
            }
        }
    }
    if bless {
        std::fs::write(&path, text)?;
    }
    ensure!(
        stale.is_empty(),
        "README.md's command line reference differs from --help; run \
         SIAGA_BLESS_README=1 cargo test -p siaga-tests --test readme, or paste:\n{}",
        stale.join("\n\n")
    );
    Ok(())
}
