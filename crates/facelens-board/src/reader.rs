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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_events(&bytes, path)
}

/// Decodes every event in an in-memory TFRecord stream. `path` is only used
/// in error messages.
pub fn decode_events(bytes: &[u8], path: &Path) -> Result<Vec<Event>> {
    record::read_records(bytes, path)?
        .into_iter()
        .map(|rec| {
            Event::decode(rec.data).map_err(|source| Error::DecodeEvent {
                path: path.to_path_buf(),
                offset: rec.offset,
                source,
            })
        })
        .collect()
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
