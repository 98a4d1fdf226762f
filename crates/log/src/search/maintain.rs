//! `stele index rebuild` and `stele index verify`: the search part files
//! written again from the log, or checked against it.

use std::collections::HashMap;
use std::path::PathBuf;

use stele_index::{EventTerms, Part};

use crate::error::{LogError, LogResult};
use crate::reader::LogReader;
use crate::search::index::{SearchIndex, build, check_against_index};
use crate::search::parts::{self, Loaded};

/// What [`rebuild`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Entries of the log read (the whole log).
    pub entries: u64,
    /// Segments indexed, and the part files written for the closed ones.
    pub segments: u64,
    pub files: u64,
    pub bytes: u64,
    /// Files of the search directory removed first.
    pub removed: u64,
}

/// Removes every file of the search directory, indexes the whole log
/// from its events, and writes the part file of every closed segment.
/// `progress` is told (entries done, entries in all). The caller holds
/// the log's writer, so that no server writes part files meanwhile.
pub fn rebuild(reader: &LogReader, progress: &mut dyn FnMut(u64, u64)) -> LogResult<RebuildReport> {
    let parts::Listing {
        parts: files,
        others,
    } = parts::list(reader.layout())?;
    let removed = (files.len() + others.len()) as u64;
    for path in files.iter().map(|(_, p)| p).chain(&others) {
        parts::remove(path)?;
    }
    let index = SearchIndex::persisting();
    let size = reader.size();
    progress(0, size);
    build(&index, reader, size, &mut |done| progress(done, size));
    index.persist_closed(reader);
    if let Some(why) = index.failure() {
        return Err(LogError::Internal(format!("the search index: {why}")));
    }
    let report = index.parts_report();
    if let Some(why) = report.write_error {
        return Err(LogError::Internal(why));
    }
    Ok(RebuildReport {
        entries: size,
        segments: index.segments().len() as u64,
        files: report.written,
        bytes: report.written_bytes,
        removed,
    })
}

/// What [`verify_parts`] found of one file of the search directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCheck {
    pub path: PathBuf,
    /// The entries it holds (0 when it did not open).
    pub entries: u64,
    pub outcome: PartOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    /// It opens under its segment's key and holds exactly the log's
    /// entries of its segment (their commitments; with the contents
    /// checked, the index the log's events give).
    Agrees,
    /// Nothing wrong with the log: a file the next writing open removes
    /// (a purged segment's, a `.tmp` a crash left), or one written after
    /// the entries being checked.
    Note(String),
    /// Changed, foreign, or at odds with the log (the next open refuses
    /// it and indexes its segment from the log).
    Problem(String),
}

/// Checks every file of the search directory against `reader`'s log,
/// over its first `size` entries. With `contents`, each part is also
/// built again from its segment's events and compared byte for byte;
/// `progress` is told (entries done, entries in all) as that goes.
pub fn verify_parts(
    reader: &LogReader,
    size: u64,
    contents: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> LogResult<Vec<PartCheck>> {
    let parts::Listing {
        parts: files,
        others,
    } = parts::list(reader.layout())?;
    let mut checks = Vec::new();
    for path in others {
        let is_tmp = path.extension().is_some_and(|e| e == "tmp");
        checks.push(PartCheck {
            outcome: if is_tmp {
                PartOutcome::Note("left by an interrupted write; the next open removes it".into())
            } else {
                PartOutcome::Problem("not a file Stele writes here".into())
            },
            path,
            entries: 0,
        });
    }
    let mut loaded: HashMap<u32, Loaded> = HashMap::new();
    for (id, path) in files {
        if reader.stored_segment(id).is_none() {
            let created_since = reader
                .live()
                .is_some_and(|l| l.stored_segment(id).is_some());
            let outcome = if reader.purge_records().contains_key(&id) {
                PartOutcome::Note("its segment is purged; the next open removes it".into())
            } else if created_since {
                PartOutcome::Note("of a segment created after the entries checked".into())
            } else {
                PartOutcome::Problem("names no segment of the log".into())
            };
            checks.push(PartCheck {
                path,
                entries: 0,
                outcome,
            });
            continue;
        }
        match parts::read(reader, id, &path) {
            Ok(file) if file.header.last >= size && file.header.entries > 0 => {
                checks.push(PartCheck {
                    path,
                    entries: file.header.entries,
                    outcome: PartOutcome::Note(format!(
                        "holds entries up to {}, written after the {size} entries checked",
                        file.header.last
                    )),
                });
            }
            Ok(file) => {
                loaded.insert(id, file);
            }
            Err(why) => checks.push(PartCheck {
                path,
                entries: 0,
                outcome: PartOutcome::Problem(why),
            }),
        }
    }
    let disagree = if loaded.is_empty() {
        HashMap::new()
    } else {
        check_against_index(&SearchIndex::default(), reader, &loaded, size)?
    };
    let total: u64 = loaded.values().map(|l| l.entries.len() as u64).sum();
    let mut done = 0;
    let mut ids: Vec<u32> = loaded.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let file = &loaded[&id];
        let outcome = match disagree.get(&id) {
            Some(why) => PartOutcome::Problem(why.clone()),
            None if contents => match same_as_the_log(reader, file)? {
                None => PartOutcome::Agrees,
                Some(why) => PartOutcome::Problem(why),
            },
            None => PartOutcome::Agrees,
        };
        done += file.entries.len() as u64;
        if contents {
            progress(done, total);
        }
        checks.push(PartCheck {
            path: file.path.clone(),
            entries: file.entries.len() as u64,
            outcome,
        });
    }
    checks.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(checks)
}

/// Builds the file's parts again from its entries' events (each entry
/// into the part that holds it in the file) and compares the bytes:
/// `None` when they are the same, else what differs.
fn same_as_the_log(reader: &LogReader, file: &Loaded) -> LogResult<Option<String>> {
    let mut owner: HashMap<u64, usize> = HashMap::with_capacity(file.entries.len());
    for (k, part) in file.parts.iter().enumerate() {
        for &entry in part.entries() {
            owner.insert(entry, k);
        }
    }
    let mut fresh: Vec<Part> = file.parts.iter().map(|_| Part::new()).collect();
    for &entry in &file.entries {
        let record = reader.index().read(entry)?;
        let stored = reader.read_record(entry, &record)?;
        fresh[owner[&entry]]
            .insert(entry, &EventTerms::of(&stored.envelope))
            .map_err(|e| LogError::Internal(format!("search part: {e}")))?;
    }
    for (k, (found, built)) in file.parts.iter().zip(&fresh).enumerate() {
        if found.encode() != built.encode() {
            return Ok(Some(format!(
                "part {k} (entries {} to {}) is not the index of the log's events",
                found.entries().first().copied().unwrap_or(0),
                found.last_entry().unwrap_or(0)
            )));
        }
    }
    Ok(None)
}
