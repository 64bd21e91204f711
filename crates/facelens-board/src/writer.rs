//! [`SummaryWriter`]: appends TensorBoard events to one event file.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::{codecs::png::PngEncoder, ExtendedColorType, ImageEncoder, RgbImage};
use prost::Message;

use crate::error::{Error, Result};
use crate::histogram;
use crate::hparams::{self, HParamValue};
use crate::machine;
use crate::proto::{
    event, summary, summary_metadata::PluginData, DataType, Event, Summary, SummaryMetadata,
    TensorProto, TensorShapeProto,
};
use crate::record;

/// File header every TensorBoard reader checks for.
pub const FILE_VERSION: &str = "brain.Event:2";

/// `Summary.Image.colorspace` for RGB.
const COLORSPACE_RGB: i32 = 3;

/// Per-process sequence number so two writers created within the same second
/// in one process (and thus with identical time/host/pid) get distinct files.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many file names to try before giving up on `create_new` collisions.
const MAX_NAME_ATTEMPTS: u32 = 64;

/// Writes TensorBoard summaries for one run into an event file under `logdir`.
///
/// Events are buffered; call [`flush`](Self::flush) to make them visible to a
/// running TensorBoard. Dropping the writer flushes too, but swallows errors,
/// so prefer [`close`](Self::close) at the end of a run.
///
/// Each writer owns a fresh file named
/// `events.out.tfevents.<unix secs>.<hostname>.<pid>.<counter>`, created with
/// `create_new`, so concurrent writers (threads, processes) never clobber
/// each other's data.
#[derive(Debug)]
pub struct SummaryWriter {
    logdir: PathBuf,
    path: PathBuf,
    file: BufWriter<File>,
    /// Tags whose `SummaryMetadata` was already written. TensorBoard only
    /// reads the metadata of a tag's first value, so repeating it is waste.
    tags_with_metadata: HashSet<String>,
}

impl SummaryWriter {
    /// Creates `logdir` (and parents) and a new event file inside it.
    ///
    /// The file-version header is flushed immediately, so TensorBoard
    /// recognises the run even before the first summary arrives.
    pub fn create(logdir: impl AsRef<Path>) -> Result<Self> {
        let logdir = logdir.as_ref().to_path_buf();
        std::fs::create_dir_all(&logdir).map_err(|e| Error::io(&logdir, e))?;
        let (path, file) = create_event_file(&logdir)?;
        let mut writer = SummaryWriter {
            logdir,
            path,
            file: BufWriter::new(file),
            tags_with_metadata: HashSet::new(),
        };
        writer.write_event(Event {
            wall_time: machine::unix_time_f64(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_owned())),
        })?;
        writer.flush()?;
        Ok(writer)
    }

    /// The directory this writer logs to (a TensorBoard "run").
    pub fn logdir(&self) -> &Path {
        &self.logdir
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs a scalar. TensorBoard stores scalars as f32, so `value` is
    /// narrowed; NaN and infinities are kept (TensorBoard displays them).
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        // Narrowing is the format's precision, not an accident.
        let kind = summary::value::Kind::SimpleValue(value as f32);
        self.write_value(tag, None, kind, step)
    }

    /// Logs an RGB image, PNG-encoded.
    pub fn add_image(&mut self, tag: &str, image: &RgbImage, step: i64) -> Result<()> {
        self.add_image_rgb(tag, image.width(), image.height(), image.as_raw(), step)
    }

    /// Logs an image given as a row-major `height x width x 3` (HWC) RGB buffer.
    pub fn add_image_rgb(
        &mut self,
        tag: &str,
        width: u32,
        height: u32,
        rgb: &[u8],
        step: i64,
    ) -> Result<()> {
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3));
        // The proto stores dimensions as int32.
        let dims = (i32::try_from(width), i32::try_from(height));
        let (w, h) = match (expected, dims) {
            (Some(n), (Ok(w), Ok(h))) if rgb.len() == n => (w, h),
            _ => {
                return Err(Error::ImageShape {
                    tag: tag.to_owned(),
                    width,
                    height,
                    len: rgb.len(),
                    expected: expected.unwrap_or(usize::MAX),
                })
            }
        };
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(rgb, width, height, ExtendedColorType::Rgb8)
            .map_err(|source| Error::ImageEncode {
                tag: tag.to_owned(),
                source,
            })?;
        let image = summary::Image {
            height: h,
            width: w,
            colorspace: COLORSPACE_RGB,
            encoded_image_string: png,
        };
        self.write_value(tag, None, summary::value::Kind::Image(image), step)
    }

    /// Logs a histogram of `values` with [`histogram::DEFAULT_BUCKETS`]
    /// equal-width buckets (see [`crate::histogram`] for the layout).
    ///
    /// Errors on empty input or NaN/infinite values.
    pub fn add_histogram(&mut self, tag: &str, values: &[f32], step: i64) -> Result<()> {
        self.add_histogram_with_buckets(tag, values, histogram::DEFAULT_BUCKETS, step)
    }

    /// Like [`add_histogram`](Self::add_histogram) with an explicit bucket count.
    pub fn add_histogram_with_buckets(
        &mut self,
        tag: &str,
        values: &[f32],
        buckets: usize,
        step: i64,
    ) -> Result<()> {
        let histo = histogram::build(tag, values, buckets)?;
        self.write_value(tag, None, summary::value::Kind::Histo(histo), step)
    }

    /// Logs a Markdown text for the Text dashboard.
    pub fn add_text(&mut self, tag: &str, text: &str, step: i64) -> Result<()> {
        // Same encoding as `tensorboard.plugins.text.summary_v2.text_pb`: a
        // scalar DT_STRING tensor plus metadata naming the "text" plugin. The
        // plugin's content is `TextPluginData { version: 0 }`, which
        // serializes to zero bytes.
        let metadata = SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "text".to_owned(),
                content: Vec::new(),
            }),
            ..Default::default()
        };
        let tensor = TensorProto {
            dtype: DataType::DtString as i32,
            tensor_shape: Some(TensorShapeProto { dim: Vec::new() }),
            string_val: vec![text.as_bytes().to_vec()],
        };
        self.write_value(
            tag,
            Some(metadata),
            summary::value::Kind::Tensor(tensor),
            step,
        )
    }

    /// Records this run's hyperparameters for the HParams dashboard.
    ///
    /// `metrics` are scalar tags (logged with [`add_scalar`](Self::add_scalar)
    /// in this same writer) that the dashboard should show next to the
    /// hyperparameters. Call once per run.
    pub fn add_hparams(
        &mut self,
        hparams: &BTreeMap<String, HParamValue>,
        metrics: &[&str],
    ) -> Result<()> {
        let now = machine::unix_time_f64();
        let values = hparams::summary_values(hparams, metrics, now);
        self.write_event(Event {
            wall_time: now,
            step: 0,
            what: Some(event::What::Summary(Summary { value: values })),
        })
    }

    /// Pushes buffered events to the OS so TensorBoard can read them.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and closes the file, reporting any error (unlike `Drop`).
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    fn write_value(
        &mut self,
        tag: &str,
        metadata: Option<SummaryMetadata>,
        kind: summary::value::Kind,
        step: i64,
    ) -> Result<()> {
        let metadata = metadata.filter(|_| !self.tags_with_metadata.contains(tag));
        if metadata.is_some() {
            self.tags_with_metadata.insert(tag.to_owned());
        }
        let value = summary::Value {
            tag: tag.to_owned(),
            metadata,
            kind: Some(kind),
        };
        self.write_event(Event {
            wall_time: machine::unix_time_f64(),
            step,
            what: Some(event::What::Summary(Summary { value: vec![value] })),
        })
    }

    fn write_event(&mut self, event: Event) -> Result<()> {
        record::write_record(&mut self.file, &event.encode_to_vec())
            .map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for SummaryWriter {
    fn drop(&mut self) {
        // Best effort: Drop cannot report errors; `close` exists for that.
        let _ = self.file.flush();
    }
}

/// Creates a fresh, uniquely named event file in `logdir`.
fn create_event_file(logdir: &Path) -> Result<(PathBuf, File)> {
    let secs = machine::unix_time_secs();
    let host = sanitize_for_file_name(&machine::hostname());
    let pid = std::process::id();
    let mut last_err = None;
    for _ in 0..MAX_NAME_ATTEMPTS {
        let counter = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = logdir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{counter}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            // Another process with a recycled pid got there first: next name.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last_err = Some((path, e)),
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let (path, e) = last_err.unwrap_or_else(|| {
        (
            logdir.to_path_buf(),
            std::io::Error::new(ErrorKind::AlreadyExists, "no free event file name"),
        )
    });
    Err(Error::io(path, e))
}

/// Keeps host names from introducing path separators or spaces into file names.
fn sanitize_for_file_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_host_names() {
        assert_eq!(sanitize_for_file_name("gpu-01.lab"), "gpu-01.lab");
        assert_eq!(sanitize_for_file_name("a/b c"), "a_b_c");
    }
}
