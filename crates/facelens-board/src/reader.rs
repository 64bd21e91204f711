//! Reading event files back, for tests and offline inspection.
//!
//! TensorBoard itself is the real consumer; this reader exists so that the
//! framing and protobuf encoding can be checked without Python, and so tools
//! can pull numbers out of old runs.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::Event;
use crate::record;

/// Decodes every event in the event file at `path`, verifying all CRCs.
pub fn read_event_file(path: &Path) -> Result<Vec<Event>> {
    let bytes = facelens_core::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_events(&bytes, path)
}

/// Decodes every event in an in-memory TFRecord stream. `path` is only used
/// in error messages.
pub fn decode_events(bytes: &[u8], path: &Path) -> Result<Vec<Event>> {
    match decode_valid_prefix(bytes, path) {
        (events, None) => Ok(events),
        (_, Some(err)) => Err(err),
    }
}

/// The events before the first bad record or undecodable payload, and that problem.
fn decode_valid_prefix(bytes: &[u8], path: &Path) -> (Vec<Event>, Option<Error>) {
    let (records, problem) = record::read_valid_prefix(bytes, path);
    let mut events = Vec::with_capacity(records.len());
    for rec in records {
        match Event::decode(rec.data) {
            Ok(event) => events.push(event),
            Err(source) => {
                let err = Error::DecodeEvent {
                    path: path.to_path_buf(),
                    offset: rec.offset,
                    source,
                };
                return (events, Some(err));
            }
        }
    }
    (events, problem)
}

/// Reads the events of a file that may still be being written: events up to
/// the first bad record (torn tail, CRC mismatch, undecodable payload) are
/// returned together with that problem instead of failing the whole file.
/// Only a file that cannot be read at all is an error.
pub fn read_event_file_prefix(path: &Path) -> Result<(Vec<Event>, Option<Error>)> {
    let bytes = facelens_core::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(decode_valid_prefix(&bytes, path))
}

/// Event files (`*tfevents*`) directly inside `logdir`, sorted by name.
pub fn event_files(logdir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(logdir).map_err(|e| Error::io(logdir, e))? {
        let entry = entry.map_err(|e| Error::io(logdir, e))?;
        let path = entry.path();
        let is_event_file = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("tfevents"));
        if is_event_file && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
