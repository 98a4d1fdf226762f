//! `stele search QUERY --export bundle|ndjson|csv`: every event of the
//! streams the operator may `export` that matches QUERY, oldest first, up
//! to the latest checkpoint (`stele_log::search::export`), as one
//! evidence bundle (`--out FILE`) or as NDJSON or CSV labelled unverified
//! views. Recorded as an `events.searched` event with its `export` format
//! and count before anything is written where it can be read.

use std::io::Write;

use stele_log::SystemEvent;
use stele_log::search::export::{self, Format, Selection};
use stele_log::search::{Order, parse_streams};
use stele_log::system_event::{Caller, EventsSearched};
use stele_policy::Action;
use stele_query::Query;

use crate::read::{PartialFile, ReadAccess};
use crate::search::{Readable, SearchArgs};
use crate::{CliResult, DataArgs, Failure, local, print_out};

/// Runs `stele search --export FORMAT`.
pub fn run(data: &DataArgs, args: &SearchArgs, format: &str) -> CliResult<u8> {
    let format = Format::parse(format).map_err(|e| Failure::usage(format!("--export: {e}")))?;
    if format == Format::Bundle && args.out.is_none() {
        return Err(Failure::usage("--export bundle needs --out FILE"));
    }
    if args.cursor.is_some() || args.aggregate.is_some() {
        return Err(Failure::usage(
            "--export writes every match: --cursor and --aggregate do not apply",
        ));
    }
    let streams = parse_streams(args.streams.as_deref().unwrap_or(""))
        .map_err(|e| Failure::usage(format!("--streams: {e}")))?;
    let at = local::now()?;
    let query = Query::parse(&args.query, at).map_err(|e| Failure::usage(format!("query: {e}")))?;
    let mut access = ReadAccess::open_searching(data, "search")?;
    let readable = Readable::check(&mut access, Action::Export, &streams, at)?;
    let size = access.reader.published_size();
    let by = access.operator.principal.clone();
    // The count first: the record says how many events the export holds
    // before any of them is written where it can be read.
    let count = {
        let may_read = |stream: &str| readable.may(&access, stream);
        let selection = selection(&query, size, &may_read, &by, at);
        export::count(&access.reader, &selection)?
    };
    let caller = Caller::local();
    let event = SystemEvent::EventsSearched {
        actor: by.clone(),
        attributes: EventsSearched {
            query: query.to_string(),
            streams,
            order: Order::Oldest.as_str().to_string(),
            size,
            continued: false,
            matched: count,
            returned: count,
            export: Some(format.name().to_string()),
            method: caller.method,
            client: caller.client,
        },
    };
    access.record(&event, at)?;
    let may_read = |stream: &str| readable.may(&access, stream);
    let selection = selection(&query, size, &may_read, &by, at);
    match &args.out {
        Some(out) => {
            let (partial, file) = PartialFile::create(out)?;
            let mut file = std::io::BufWriter::new(file);
            let written = export::write(
                &access.reader,
                &selection,
                format,
                args.known_size,
                &mut file,
            );
            let n = match written {
                Ok(n) => n,
                Err(e) => {
                    partial.discard();
                    return Err(e.into());
                }
            };
            drop(file);
            partial.keep()?;
            let proof = if format == Format::Bundle {
                ", with their proofs (stele verify-bundle checks it)"
            } else {
                " (an unverified view)"
            };
            print_out(&format!(
                "wrote {}: {n} events matching {query} up to tree size {size}{proof}\n",
                out.display()
            ))?;
        }
        None => {
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            export::write(&access.reader, &selection, format, None, &mut stdout)?;
            stdout.flush()?;
        }
    }
    Ok(0)
}

fn selection<'a>(
    query: &'a Query,
    size: u64,
    may_read: &'a dyn Fn(&str) -> bool,
    by: &'a str,
    at: jiff::Timestamp,
) -> Selection<'a> {
    Selection {
        query,
        size,
        may_read,
        by,
        at,
        max_unindexed: None,
    }
}
