//! `stele bench http`: a load generator for `stele serve` (filled in by the
//! HTTP benchmark work).

use crate::{CliResult, Failure};

#[derive(Debug, clap::Args)]
pub struct BenchHttpArgs {
    /// Base URL of the server, e.g. https://127.0.0.1:7800.
    #[arg(long)]
    url: String,
}

pub fn run(args: BenchHttpArgs) -> CliResult<u8> {
    Err(Failure::usage(format!(
        "stele bench http is not available yet ({})",
        args.url
    )))
}
