//! TFRecord framing, the container format of TensorBoard event files.
//!
//! Each record is
//!
//! ```text
//! u64 length (little endian)
//! u32 masked_crc32c(length bytes)
//! [u8; length] data
//! u32 masked_crc32c(data)
//! ```
//!
//! The CRC is "masked" because TensorFlow stores CRCs of data that may itself
//! contain CRCs; the rotation plus constant keeps a CRC of a CRC from being
//! trivially zero. Readers (TensorBoard included) verify both checksums and
//! drop a file's tail at the first mismatch, so getting this bit-exact is what
//! makes the data visible at all.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Constant added after rotation, from TensorFlow's `crc32c::Mask`.
const MASK_DELTA: u32 = 0xa282_ead8;

/// Size of the fixed header (length + its CRC) and footer (data CRC).
const HEADER_LEN: usize = 8 + 4;
const FOOTER_LEN: usize = 4;

/// Masks a raw CRC32C value the way TensorFlow does.
///
/// TensorFlow writes this as `((crc >> 15) | (crc << 17)) + 0xa282ead8`,
/// i.e. a right rotation by 15 bits.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// CRC32C (Castagnoli) of `data`, masked for TFRecord storage.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c(data))
}

/// Frames `data` as one TFRecord.
pub fn encode_record(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len() + FOOTER_LEN);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Writes `data` as one TFRecord to `w`.
///
/// The record is assembled in memory first and written with a single
/// `write_all`, so a reader tailing the file never sees a header without
/// its payload inside one buffered flush.
pub fn write_record<W: Write>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    w.write_all(&encode_record(data))
}

/// One decoded record: its byte offset in the stream and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the record header within the stream.
    pub offset: u64,
    /// The record payload.
    pub data: &'a [u8],
}

/// Splits a TFRecord stream into records, verifying both CRCs of each.
///
/// `path` is only used in error messages.
pub fn read_records<'a>(bytes: &'a [u8], path: &Path) -> Result<Vec<Record<'a>>> {
    match read_valid_prefix(bytes, path) {
        (records, None) => Ok(records),
        (_, Some(err)) => Err(err),
    }
}

/// Like [`read_records`], but keeps the records before the first bad one and
/// returns the problem beside them, as TensorBoard does with a file that is
/// still being written (its tail may be a half-flushed record).
pub fn read_valid_prefix<'a>(bytes: &'a [u8], path: &Path) -> (Vec<Record<'a>>, Option<Error>) {
    let corrupt = |offset: usize, reason: String| Error::CorruptRecord {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let read_u32 = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(b)
    };

    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        if bytes.len() - pos < HEADER_LEN {
            return (records, Some(corrupt(pos, "truncated header".into())));
        }
        let len_bytes = &bytes[pos..pos + 8];
        let stored = read_u32(pos + 8);
        let computed = masked_crc32c(len_bytes);
        if stored != computed {
            let reason =
                format!("length CRC mismatch (stored {stored:#010x}, computed {computed:#010x})");
            return (records, Some(corrupt(pos, reason)));
        }
        let mut len_arr = [0u8; 8];
        len_arr.copy_from_slice(len_bytes);
        let Ok(len) = usize::try_from(u64::from_le_bytes(len_arr)) else {
            let reason = "record length does not fit in memory".into();
            return (records, Some(corrupt(pos, reason)));
        };
        let data_start = pos + HEADER_LEN;
        let available = bytes.len() - data_start;
        if available < FOOTER_LEN || available - FOOTER_LEN < len {
            let reason = format!("truncated record of {len} bytes");
            return (records, Some(corrupt(pos, reason)));
        }
        let data = &bytes[data_start..data_start + len];
        let stored = read_u32(data_start + len);
        let computed = masked_crc32c(data);
        if stored != computed {
            let reason =
                format!("data CRC mismatch (stored {stored:#010x}, computed {computed:#010x})");
            return (records, Some(corrupt(pos, reason)));
        }
        records.push(Record {
            offset: pos as u64,
            data,
        });
        pos = data_start + len + FOOTER_LEN;
    }
    (records, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> &'static Path {
        Path::new("<memory>")
    }

    #[test]
    fn crc32c_known_vector() {
        // The standard CRC-32C check value (RFC 3720, appendix B.4).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    #[allow(clippy::manual_rotate)] // spelled out exactly as TensorFlow does
    fn mask_matches_tensorflow_formula() {
        let crc = 0xE306_9283u32;
        let expected = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(mask_crc(crc), expected);
        assert_eq!(masked_crc32c(b"123456789"), expected);
        // Rotation must not lose bits: masking is a bijection.
        assert_ne!(mask_crc(0), mask_crc(1));
        assert_eq!(mask_crc(0), MASK_DELTA);
    }

    #[test]
    fn record_layout() {
        let rec = encode_record(b"hello");
        assert_eq!(rec.len(), 8 + 4 + 5 + 4);
        assert_eq!(&rec[..8], &5u64.to_le_bytes());
        assert_eq!(
            &rec[8..12],
            &masked_crc32c(&5u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&rec[12..17], b"hello");
        assert_eq!(&rec[17..], &masked_crc32c(b"hello").to_le_bytes());
    }

    #[test]
    fn roundtrip_several_records() {
        let mut buf = Vec::new();
        for payload in [&b""[..], b"a", b"second record", &[0u8; 300]] {
            write_record(&mut buf, payload).expect("write to Vec");
        }
        let recs = read_records(&buf, mem()).expect("valid stream");
        let payloads: Vec<&[u8]> = recs.iter().map(|r| r.data).collect();
        assert_eq!(
            payloads,
            vec![&b""[..], b"a", b"second record", &[0u8; 300]]
        );
        assert_eq!(recs[0].offset, 0);
        assert_eq!(recs[1].offset, 16);
    }

    #[test]
    fn detects_corruption() {
        let good = encode_record(b"payload");

        let mut bad_data = good.clone();
        bad_data[13] ^= 0x01;
        let err = read_records(&bad_data, mem()).unwrap_err();
        assert!(err.to_string().contains("data CRC mismatch"), "{err}");

        let mut bad_len = good.clone();
        bad_len[0] ^= 0x01;
        let err = read_records(&bad_len, mem()).unwrap_err();
        assert!(err.to_string().contains("length CRC mismatch"), "{err}");

        let err = read_records(&good[..good.len() - 1], mem()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let err = read_records(&good[..5], mem()).unwrap_err();
        assert!(err.to_string().contains("truncated header"), "{err}");
    }

    #[test]
    fn valid_prefix_survives_a_torn_tail() {
        let mut buf = encode_record(b"first");
        buf.extend_from_slice(&encode_record(b"second"));
        let whole = buf.len();
        buf.extend_from_slice(&encode_record(b"third, half written")[..10]);
        let (recs, err) = read_valid_prefix(&buf, mem());
        let payloads: Vec<&[u8]> = recs.iter().map(|r| r.data).collect();
        assert_eq!(payloads, vec![&b"first"[..], b"second"]);
        match err {
            Some(Error::CorruptRecord { offset, .. }) => assert_eq!(offset, whole as u64),
            other => panic!("expected a corrupt tail, got {other:?}"),
        }
        assert!(read_valid_prefix(&buf[..whole], mem()).1.is_none());
    }
}
