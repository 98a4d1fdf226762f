//! The local operator's reads: `stele get`, `stele export` and `stele
//! query`, read from the data directory the way `GET /v1/events/{i}`,
//! `GET /v1/export` and `GET /v1/query` read them (`stele_log::scan`),
//! authorized by the active policy.
//!
//! Every read goes through a [`LogReader`] opened on its own: no lock, no
//! recovery, nothing written, so it works on a read-only copy and beside a
//! running `stele serve`. Some reads are also recorded (method `local`,
//! client `cli`) durably before anything is shown: exports and queries
//! always (`events.exported`, `events.queried`), a single event from the
//! first applied policy on (`event.read`; without a policy the operator is
//! the log's admin, docs/cli.md). A recorded read needs the log's writer,
//! so it opens the log for writing first (and reads through that writer's
//! reader), and says how to read instead when the writer is taken by a
//! server or the directory cannot be written.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use stele_bundle::ManifestFields;
use stele_log::bundle::{self, BundleRequest};
use stele_log::scan::{self, Filters, MAX_QUERY_RESULTS};
use stele_log::system_event::{Caller, EventsExported, EventsQueried};
use stele_log::{Log, LogError, LogReader, SystemEvent};
use stele_policy::{Action, Resource};
use stele_store::StoreError;

use crate::{CliResult, DataArgs, Failure, local, open_options, print_out};
use stele_log::EntryIndex;

/// Whether a read is recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Always,
    /// From the first applied policy on.
    Governed,
}

/// A log opened for one of the operator's reads.
pub(crate) struct ReadAccess {
    pub reader: LogReader,
    /// The writer, open only when the read is recorded.
    writer: Option<Log>,
    pub operator: local::Operator,
}

impl ReadAccess {
    /// Opens `data` for a read `what` (the command, for messages).
    pub fn open(data: &DataArgs, what: &str, recorded: Recorded) -> CliResult<ReadAccess> {
        ReadAccess::open_with(data, what, recorded, false)
    }

    /// [`ReadAccess::open`] for a search: the writer's open also starts a
    /// search index, which reads the part files of closed segments (it
    /// writes none) and indexes the other entries from the log; this waits
    /// until it covers the log, so that a search reads from the log only
    /// what no part file holds (at ten million entries, seconds instead of
    /// minutes).
    pub fn open_searching(data: &DataArgs, what: &str) -> CliResult<ReadAccess> {
        let access = ReadAccess::open_with(data, what, Recorded::Always, true)?;
        if let Some(index) = access.reader.search_index() {
            // Until it covers the log, fails, or makes no progress for a
            // minute (reading part files makes none for a while): the
            // search then reads what it lacks from the log.
            let size = access.reader.size();
            let (mut behind, mut since) = (index.behind(size), std::time::Instant::now());
            while behind > 0
                && index.failure().is_none()
                && since.elapsed() < std::time::Duration::from_secs(60)
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
                let now_behind = index.behind(size);
                if now_behind < behind {
                    (behind, since) = (now_behind, std::time::Instant::now());
                }
            }
        }
        Ok(access)
    }

    fn open_with(
        data: &DataArgs,
        what: &str,
        recorded: Recorded,
        index: bool,
    ) -> CliResult<ReadAccess> {
        let reader = LogReader::open(&data.data, open_options(data)?)?;
        let operator = local::Operator::of_reader(&reader);
        if recorded == Recorded::Governed && operator.ungoverned {
            return Ok(ReadAccess {
                reader,
                writer: None,
                operator,
            });
        }
        drop(reader);
        // A read opens the writer only to record itself (with a search
        // index for a search: see `open_searching`).
        let options = stele_log::OpenOptions {
            no_search_index: !index,
            ..open_options(data)?
        };
        let log = match Log::open(&data.data, options) {
            Ok(log) => log,
            Err(LogError::Store(StoreError::Locked { .. })) => {
                return Err(Failure::usage(format!(
                    "`stele {what}` is recorded in the log{}, which needs the log's writer: {}",
                    why(recorded),
                    crate::locked_message(&data.data)
                )));
            }
            Err(LogError::Store(StoreError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    || source.raw_os_error() == Some(30) =>
            {
                return Err(Failure::usage(format!(
                    "`stele {what}` is recorded in the log{}, but {} cannot be written ({source}); read it where it can be written, or through the server's HTTP API",
                    why(recorded),
                    data.data.display()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        for kept in log.kept_at_open() {
            eprintln!("warning: {kept}");
        }
        let operator = local::Operator::of(&log);
        Ok(ReadAccess {
            reader: log.reader().clone(),
            writer: Some(log),
            operator,
        })
    }

    /// Allows the read or fails with exit code 1; a denial is recorded
    /// when the writer is open.
    pub fn authorize(
        &mut self,
        action: Action,
        resource: Resource<'_>,
        at: jiff::Timestamp,
    ) -> CliResult<()> {
        match self.writer.as_mut() {
            Some(log) => self.operator.authorize(log, action, resource, at),
            None => self
                .operator
                .authorize_reading(&self.reader, action, resource, at),
        }
    }

    /// Records the read (a `_system` event) durably, when reads are
    /// recorded; before anything is shown.
    pub fn record(&mut self, event: &SystemEvent, at: jiff::Timestamp) -> CliResult<()> {
        if let Some(log) = self.writer.as_mut() {
            local::append_system_event(log, event, at)?;
        }
        Ok(())
    }
}

fn why(recorded: Recorded) -> &'static str {
    match recorded {
        Recorded::Always => "",
        Recorded::Governed => " (a policy is applied)",
    }
}

/// Prints entry `index` with its salt and commitment.
pub fn get(data: &DataArgs, index: u64) -> CliResult<u8> {
    let at = local::now()?;
    let mut access = ReadAccess::open(data, "get", Recorded::Governed)?;
    let event = match access.reader.get(EntryIndex(index)) {
        Ok(event) => event,
        Err(LogError::Purged { index, tombstone }) => {
            // Whether it was purged is itself read access to the event.
            access.authorize(
                Action::Read,
                Resource::Event {
                    stream: &tombstone.stream,
                    index,
                },
                at,
            )?;
            let record = json!({"index": index, "purged": &*tombstone});
            let text =
                serde_json::to_string_pretty(&record).map_err(|e| Failure::usage(e.to_string()))?;
            print_out(&format!("{text}\n"))?;
            return Err(Failure::refused(
                LogError::Purged { index, tombstone }.to_string(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Decided on the stream the event is stored in, before anything is shown.
    access.authorize(
        Action::Read,
        Resource::Event {
            stream: &event.envelope.stream,
            index,
        },
        at,
    )?;
    if let Some(log) = access.writer.as_mut() {
        local::record_read(log, &access.operator, index, &event.envelope.stream, at)?;
    }
    let out = json!({
        "index": event.index,
        "commitment": B64.encode(event.commitment),
        "salt": B64.encode(event.salt),
        "event": event.envelope.to_json(),
    });
    let text = serde_json::to_string_pretty(&out).map_err(|e| Failure::usage(e.to_string()))?;
    print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// Which entries: a stream and a range of indices.
#[derive(Debug, clap::Args)]
pub struct StreamRange {
    #[arg(long, value_parser = stream_name)]
    pub stream: String,
    /// First index of the range.
    #[arg(long)]
    pub from: u64,
    /// End of the range (exclusive; default and at most the log size).
    #[arg(long)]
    pub to: Option<u64>,
}

/// A `--stream` value: a stream name (checked as the server checks it).
fn stream_name(text: &str) -> Result<String, String> {
    scan::check_stream(text).map(|()| text.to_owned())
}

/// Prints the entries of the range's stream in the range as NDJSON.
pub fn export(data: &DataArgs, range: &StreamRange) -> CliResult<u8> {
    let (stream, from) = (range.stream.as_str(), range.from);
    let at = local::now()?;
    let mut access = ReadAccess::open(data, "export", Recorded::Always)?;
    access.authorize(Action::Export, Resource::Stream(stream), at)?;
    let to = scan::range_end(access.reader.size(), from, range.to).map_err(Failure::usage)?;
    let export = scan::export(&access.reader, stream, from, to)?;
    let event = exported_event(&access, stream, (from, to), export.exported, export.purged);
    // Recorded durably before any content is shown.
    access.record(&event, at)?;
    print_out(&String::from_utf8_lossy(&export.ndjson))?;
    Ok(0)
}

/// The `events.exported` event of the operator's export of `stream`'s
/// entries in `[from, to)`: how many were exported, and how many were
/// purged.
fn exported_event(
    access: &ReadAccess,
    stream: &str,
    (from, to): (u64, u64),
    exported: u64,
    purged: u64,
) -> SystemEvent {
    let caller = Caller::local();
    SystemEvent::EventsExported {
        actor: access.operator.principal.clone(),
        attributes: EventsExported {
            stream: stream.to_string(),
            from,
            to,
            exported,
            purged,
            method: caller.method,
            client: caller.client,
        },
    }
}

/// Writes the entries of the range's stream in the range (at most the
/// latest published checkpoint) as an evidence bundle to `out`, with a
/// consistency proof from `known_size` when given. The bundle is written
/// beside `out` first and takes its name only once the export is recorded
/// (`events.exported`), so nothing is shown before that.
pub fn export_bundle(
    data: &DataArgs,
    range: &StreamRange,
    out: &std::path::Path,
    known_size: Option<u64>,
) -> CliResult<u8> {
    let (stream, from) = (range.stream.as_str(), range.from);
    let at = local::now()?;
    let mut access = ReadAccess::open(data, "export", Recorded::Always)?;
    access.authorize(Action::Export, Resource::Stream(stream), at)?;
    let published = access.reader.published_size();
    let to = range.to.unwrap_or(published).min(published);
    if from > to {
        return Err(Failure::usage(format!(
            "need --from <= --to (the latest checkpoint has {published} entries)"
        )));
    }
    let (partial, file) = PartialFile::create(out)?;
    let request = BundleRequest {
        fields: ManifestFields {
            query: format!("stream={stream} from={from} to={to}"),
            by: access.operator.principal.clone(),
            at: at.to_string(),
        },
        known_size,
    };
    let written = bundle::write_stream_bundle(
        &access.reader,
        stream,
        (from, to),
        &request,
        std::io::BufWriter::new(file),
    );
    let summary = match written {
        Ok((_, summary)) => summary,
        Err(e) => {
            partial.discard();
            return Err(e.into());
        }
    };
    let event = exported_event(&access, stream, (from, to), summary.events, summary.purged);
    if let Err(e) = access.record(&event, at) {
        partial.discard();
        return Err(e);
    }
    partial.keep()?;
    print_out(&format!(
        "wrote {}: {} events and {} purged entries of stream {stream:?} in [{from}, {to}), proven at tree size {} ({} bytes)\n",
        out.display(),
        summary.events,
        summary.purged,
        summary.checkpoint.size,
        summary.bytes
    ))?;
    Ok(0)
}

/// A file an export is written to under a name of its own
/// (`FILE.partial`), which takes its real name only once complete and
/// recorded: nothing half-written ever bears the name asked for.
pub(crate) struct PartialFile {
    partial: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl PartialFile {
    /// Creates `out`'s partial file.
    pub fn create(out: &std::path::Path) -> CliResult<(PartialFile, std::fs::File)> {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = out.with_file_name(format!("{name}.partial"));
        let file = std::fs::File::create(&partial)
            .map_err(|e| Failure::usage(format!("{}: {e}", partial.display())))?;
        Ok((
            PartialFile {
                partial,
                out: out.to_path_buf(),
            },
            file,
        ))
    }

    /// Removes the partial file (the export failed).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.partial);
    }

    /// Gives the finished file its name.
    pub fn keep(self) -> CliResult<()> {
        std::fs::rename(&self.partial, &self.out)
            .map_err(|e| Failure::usage(format!("{}: {e}", self.out.display())))
    }
}

/// Prints the events of the range's stream in the range whose fields
/// equal `filters`, at most `limit`, as one JSON object.
pub fn query(
    data: &DataArgs,
    range: &StreamRange,
    filters: &Filters,
    limit: usize,
) -> CliResult<u8> {
    let (stream, from) = (range.stream.as_str(), range.from);
    if limit == 0 || limit > MAX_QUERY_RESULTS {
        return Err(Failure::usage(format!(
            "--limit must be 1 to {MAX_QUERY_RESULTS}"
        )));
    }
    let at = local::now()?;
    let mut access = ReadAccess::open(data, "query", Recorded::Always)?;
    access.authorize(Action::Query, Resource::Stream(stream), at)?;
    let to = scan::range_end(access.reader.size(), from, range.to).map_err(Failure::usage)?;
    let found = scan::query(&access.reader, stream, from, to, filters, limit)?;
    let caller = Caller::local();
    let event = SystemEvent::EventsQueried {
        actor: access.operator.principal.clone(),
        attributes: EventsQueried {
            stream: stream.to_string(),
            from,
            to: found.scanned_to,
            filters: filters.to_json(),
            matched: found.events.len() as u64,
            purged: found.purged,
            method: caller.method,
            client: caller.client,
        },
    };
    // Recorded durably before any content is shown.
    access.record(&event, at)?;
    let answer = scan::found_json(from, to, found);
    let text = serde_json::to_string_pretty(&answer).map_err(|e| Failure::usage(e.to_string()))?;
    print_out(&format!("{text}\n"))?;
    Ok(0)
}
