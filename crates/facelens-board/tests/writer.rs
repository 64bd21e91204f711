//! Writer behaviour that needs no Python: file naming, errors, flushing.

use facelens_board::{reader, Error, SummaryWriter};

#[test]
fn two_writers_never_share_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = SummaryWriter::create(dir.path()).expect("a");
    let mut b = SummaryWriter::create(dir.path()).expect("b");
    assert_ne!(a.path(), b.path());
    a.add_scalar("x", 1.0, 1).expect("a scalar");
    b.add_scalar("x", 2.0, 1).expect("b scalar");
    drop(a); // Drop flushes.
    b.flush().expect("flush");

    let files = reader::event_files(dir.path()).expect("list");
    assert_eq!(files.len(), 2);
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        // file version + one scalar each.
        assert_eq!(reader::read_event_file(f).expect("readable").len(), 2);
    }
}

#[test]
fn header_is_visible_before_first_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = SummaryWriter::create(dir.path()).expect("writer");
    // Not closed yet: the file-version record must already be on disk.
    let events = reader::read_event_file(w.path()).expect("readable");
    assert_eq!(events.len(), 1);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = SummaryWriter::create(dir.path()).expect("writer");

    let err = w.add_image_rgb("img", 4, 3, &[0u8; 35], 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImageShape {
                expected: 36,
                len: 35,
                ..
            }
        ),
        "{err}"
    );

    let err = w.add_histogram("w", &[], 0).unwrap_err();
    assert!(matches!(err, Error::Histogram { .. }), "{err}");
    let err = w.add_histogram("w", &[1.0, f32::NAN], 0).unwrap_err();
    assert!(err.to_string().contains("'w'"), "{err}");

    w.close().expect("close");
}

#[test]
fn unwritable_logdir_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = SummaryWriter::create(file.join("run")).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn corrupted_file_is_reported_with_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = SummaryWriter::create(dir.path()).expect("writer");
    w.add_scalar("x", 1.0, 1).expect("scalar");
    let path = w.path().to_path_buf();
    w.close().expect("close");

    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 6;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let err = reader::read_event_file(&path).unwrap_err();
    assert!(
        matches!(err, Error::CorruptRecord { offset, .. } if offset > 0),
        "{err}"
    );
}
