//! `stele index rebuild` and `stele index verify`: the search index's part
//! files (`DATA/search/`, docs/search.md "The index on disk"), written
//! again from the log, or checked against it.

use std::path::Path;

use clap::Subcommand;
use stele_log::search::{PartOutcome, rebuild, verify_parts};
use stele_log::{Log, LogError, LogReader};
use stele_policy::{Action, Resource};
use stele_store::StoreError;

use crate::{CliResult, DataArgs, Failure, local, open_options, print_out, terminal_bar};

#[derive(Debug, Subcommand)]
pub(crate) enum IndexAction {
    /// Remove the search part files and write them again from the log's
    /// events (needs the log's writer: stop the server first).
    Rebuild {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Check every search part file against the log: it opens under its
    /// segment's key, holds exactly its segment's entries, and is the
    /// index of their events. Read-only; runs beside a server.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
}

pub(crate) fn run(action: IndexAction) -> CliResult<u8> {
    match action {
        IndexAction::Rebuild { data } => rebuild_index(&data),
        IndexAction::Verify { data } => verify_index(&data),
    }
}

/// A progress callback over a bar (when standard error is a terminal).
fn progress(bar: &Option<indicatif::ProgressBar>) -> impl FnMut(u64, u64) + '_ {
    move |done, all| {
        if let Some(bar) = bar {
            bar.set_length(all);
            bar.set_position(done);
        }
    }
}

fn rebuild_index(data: &DataArgs) -> CliResult<u8> {
    let at = local::now()?;
    // (`open_options` starts no index of the open's own.)
    let mut log = match Log::open(&data.data, open_options(data)?) {
        Ok(log) => log,
        Err(LogError::Store(StoreError::Locked { .. })) => {
            return Err(Failure::usage(format!(
                "`stele index rebuild` writes the search index's files, which needs the log's writer: {}",
                crate::locked_message_with(
                    &data.data,
                    "stop the server first (while it runs, it writes the part files of closed days itself)"
                )
            )));
        }
        Err(e) => return Err(e.into()),
    };
    for kept in log.kept_at_open() {
        eprintln!("warning: {kept}");
    }
    let operator = local::Operator::of(&log);
    operator.authorize(&mut log, Action::Verify, Resource::Log, at)?;
    let started = std::time::Instant::now();
    let bar = terminal_bar("indexing {bar:40} {percent}% {per_sec} eta {eta}");
    let report = rebuild(log.reader(), &mut progress(&bar))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    print_out(&format!(
        "rebuilt the search index of {}: {} entries, {} segments; {} part files written ({} bytes) for the closed ones, {} files removed first; {:.2}s\n",
        show(&data.data),
        report.entries,
        report.segments,
        report.files,
        report.bytes,
        report.removed,
        started.elapsed().as_secs_f64()
    ))?;
    Ok(0)
}

fn verify_index(data: &DataArgs) -> CliResult<u8> {
    let at = local::now()?;
    let reader = LogReader::open(&data.data, open_options(data)?)?;
    local::Operator::of_reader(&reader).authorize_reading(
        &reader,
        Action::Verify,
        Resource::Log,
        at,
    )?;
    let bar = terminal_bar("checking {bar:40} {percent}% {per_sec} eta {eta}");
    let checks = verify_parts(&reader, reader.size(), true, &mut progress(&bar))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (mut agree, mut entries, mut problems) = (0u64, 0u64, 0u64);
    for check in &checks {
        match &check.outcome {
            PartOutcome::Agrees => {
                agree += 1;
                entries += check.entries;
            }
            PartOutcome::Note(what) => eprintln!("note: {}: {what}", show(&check.path)),
            PartOutcome::Problem(what) => {
                problems += 1;
                eprintln!("FAIL {}: {what}", show(&check.path));
            }
        }
    }
    if problems == 0 {
        print_out(&format!(
            "OK: {agree} search part files agree with the log ({entries} entries)\n"
        ))?;
        Ok(0)
    } else {
        print_out(&format!(
            "FAILED: {problems} search part files do not agree with the log ({agree} do); `stele index rebuild` writes them again\n"
        ))?;
        Ok(1)
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}
