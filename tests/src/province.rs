//! The shape of a province that the benchmarks build: 60 OPDs of 50
//! devices (3,000) with 50 tickets each, named `opd01` … and `opd01-d01` ….

use anyhow::{Context, Result};

/// OPDs in the province.
pub const OPDS: usize = 60;
/// Devices of each OPD.
pub const DEVICES_PER_OPD: usize = 50;
/// Tickets of each OPD.
pub const TICKETS_PER_OPD: usize = 50;

/// The id of OPD number `i` (from 0).
pub fn opd(i: usize) -> String {
    format!("opd{:02}", i + 1)
}

/// The name of device `d` of OPD `o` (both from 0).
pub fn device(o: usize, d: usize) -> String {
    format!("opd{:02}-d{:02}", o + 1, d + 1)
}

/// The bench's `--rounds N` (default `default`); any other argument is an
/// error naming the known one.
pub fn rounds(default: usize) -> Result<usize> {
    let mut rounds = default;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            other => anyhow::bail!("unknown argument {other:?} (known: --rounds N)"),
        }
    }
    Ok(rounds)
}
