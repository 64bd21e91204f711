//! Loader rules (landmarks → align, 112x112 → as is, resize only on request, nodet → black) and the
//! on-disk cache.

use std::path::Path;

use facelens_data::{
    align_many, cache_key, load_aligned, load_face, Cache, DataError, FaceSource, LandmarkRecord,
    LandmarkStatus, LandmarkTable, LoadOptions, ARCFACE_TEMPLATE,
};
use image::{Rgb, RgbImage};

fn write_png(path: &Path, img: &RgbImage) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    img.save(path).expect("save png");
}

fn record(file: &str, status: LandmarkStatus, keypoints: Option<[[f32; 2]; 5]>) -> LandmarkRecord {
    LandmarkRecord {
        file: file.into(),
        status,
        score: None,
        bbox: None,
        keypoints,
    }
}

#[test]
fn loader_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let big = RgbImage::from_fn(200, 150, |x, y| Rgb([x as u8, y as u8, 90]));
    let crop = RgbImage::from_pixel(112, 112, Rgb([1, 2, 3]));
    write_png(&root.join("P/with_lm.png"), &big);
    write_png(&root.join("P/no_lm.png"), &big);
    write_png(&root.join("P/aligned.png"), &crop);
    write_png(&root.join("P/nodet.png"), &big);
    let kps = ARCFACE_TEMPLATE.map(|[x, y]| [x + 40.0, y + 20.0]);
    let table = LandmarkTable::from_records([
        record("P/with_lm.png", LandmarkStatus::Ok, Some(kps)),
        record("P/nodet.png", LandmarkStatus::NoDet, None),
    ]);

    // Landmarks: a pure translation by (40, 20), so the crop is a window of the source.
    let out =
        load_aligned(&root.join("P/with_lm.png"), Some(&table), root, false).expect("aligned");
    assert_eq!(out.dimensions(), (112, 112));
    assert_eq!(out.get_pixel(10, 5), big.get_pixel(50, 25));

    // Relative paths are looked up under the images root.
    let rel =
        load_aligned(Path::new("P/with_lm.png"), Some(&table), root, false).expect("relative");
    assert_eq!(rel, out);

    let as_is =
        load_aligned(&root.join("P/aligned.png"), Some(&table), root, false).expect("as is");
    assert_eq!(as_is, crop);

    let err = load_aligned(&root.join("P/no_lm.png"), Some(&table), root, false).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::NotAligned {
                width: 200,
                height: 150,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("no_lm.png") && msg.contains("--landmarks") && msg.contains("--resize"),
        "{msg}"
    );

    let resized = load_aligned(&root.join("P/no_lm.png"), None, root, true).expect("resize");
    assert_eq!(resized.dimensions(), (112, 112));

    let err = load_aligned(&root.join("P/nodet.png"), Some(&table), root, true).unwrap_err();
    assert!(err.is_no_detection(), "{err:?}");

    let opts = LoadOptions {
        black_for_nodet: true,
        ..LoadOptions::new(root, Some(&table))
    };
    let black = load_face(&root.join("P/nodet.png"), &opts).expect("black");
    assert_eq!(black.source, FaceSource::BlackNoDetection);
    assert!(black.image.as_raw().iter().all(|&v| v == 0));

    // Parallel loading keeps the input order and per-file errors.
    let paths = [
        "P/aligned.png",
        "P/with_lm.png",
        "P/missing.png",
        "P/nodet.png",
    ];
    let results = align_many(&paths, &opts);
    let sources: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().map(|f| f.source).ok())
        .collect();
    assert_eq!(
        sources,
        vec![
            Some(FaceSource::AlreadyAligned),
            Some(FaceSource::Landmarks),
            None,
            Some(FaceSource::BlackNoDetection)
        ]
    );
    assert!(matches!(results[2], Err(DataError::Io { .. })));
}

#[test]
fn cache_round_trips_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().join("cache")).expect("cache");
    let key = cache_key("w600k_mbf", b"image bytes");
    assert_eq!(key.len(), 64);
    assert_ne!(key, cache_key("sface", b"image bytes"));
    assert_eq!(key, cache_key("w600k_mbf", b"image bytes"));

    assert!(cache.load_crop(&key).expect("miss").is_none());
    assert!(cache.load_embedding(&key).expect("miss").is_none());

    let crop = RgbImage::from_fn(112, 112, |x, y| Rgb([x as u8, y as u8, 5]));
    cache.store_crop(&key, &crop).expect("store crop");
    assert_eq!(cache.load_crop(&key).expect("load").expect("hit"), crop);

    let emb = vec![0.5f32, -1.25, 3.0e-8, f32::MAX];
    cache.store_embedding(&key, &emb).expect("store emb");
    assert_eq!(cache.load_embedding(&key).expect("load").expect("hit"), emb);
    let raw = std::fs::read(cache.embedding_path(&key).expect("path")).expect("read");
    assert_eq!(&raw[..4], &0.5f32.to_le_bytes());

    // Only the two entries are left: no temporary files.
    assert_eq!(std::fs::read_dir(cache.dir()).expect("ls").count(), 2);

    std::fs::write(cache.embedding_path(&key).expect("path"), [1u8, 2, 3]).expect("corrupt");
    assert!(matches!(
        cache.load_embedding(&key),
        Err(DataError::CorruptCache { .. })
    ));
    assert!(cache.store_embedding("../escape", &emb).is_err());
}
