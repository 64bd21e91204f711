//! Landmark CSVs and pair lists: good inputs parse, bad ones fail with the line that is wrong.

mod common;

use std::path::{Path, PathBuf};

use facelens_data::{
    check_pair_images, lfw_image_path, load_pairs, parse_pairs, DataError, LandmarkStatus,
    LandmarkTable,
};

const HEADER: &str = "file,status,score,box_x1,box_y1,box_x2,box_y2,lm0_x,lm0_y,lm1_x,lm1_y,lm2_x,lm2_y,lm3_x,lm3_y,lm4_x,lm4_y";


#[test]
fn landmark_csv_parses_ok_and_nodet_rows() {
    let text = format!(
        "{HEADER}\nA/A_0001.jpg,ok,0.8,1,2,3,4,10,11,20,21,15,30,12,40,19,41\nB/B_0001.jpg,nodet,,,,,,,,,,,,,,,\n"
    );
    let t = LandmarkTable::parse(&text, Path::new("lm.csv")).expect("parse");
    assert_eq!(t.len(), 2);
    let a = t.get("A/A_0001.jpg").expect("row A");
    assert_eq!(a.status, LandmarkStatus::Ok);
    assert_eq!(a.bbox, Some([1.0, 2.0, 3.0, 4.0]));
    assert_eq!(a.keypoints.expect("kps")[4], [19.0, 41.0]);
    let b = t
        .get_path(Path::new("B").join("B_0001.jpg").as_path())
        .expect("row B");
    assert_eq!(b.status, LandmarkStatus::NoDet);
    assert_eq!(b.keypoints, None);
}

#[test]
fn landmark_csv_missing_column() {
    let header = HEADER.replace(",lm3_x", "");
    let err = LandmarkTable::parse(&format!("{header}\n"), Path::new("lm.csv")).unwrap_err();
    match &err {
        DataError::MissingColumn { line, column, .. } => {
            assert_eq!((*line, column.as_str()), (1, "lm3_x"))
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    assert!(err.to_string().starts_with("lm.csv:1:"), "{err}");
}

#[test]
fn landmark_csv_bad_number_and_field_count() {
    let bad = format!("{HEADER}\nA.jpg,ok,0.8,1,2,3,4,10,11,20,21,15,x3,12,40,19,41\n");
    let err = LandmarkTable::parse(&bad, Path::new("lm.csv")).unwrap_err();
    assert!(
        err.to_string().contains("lm.csv:2:") && err.to_string().contains("lm2_y"),
        "{err}"
    );

    let short = format!("{HEADER}\nA.jpg,ok,0.8\n");
    let err = LandmarkTable::parse(&short, Path::new("lm.csv")).unwrap_err();
    assert!(
        err.to_string()
            .contains("lm.csv:2: expected 17 fields, found 3"),
        "{err}"
    );

    let status = format!("{HEADER}\nA.jpg,maybe,,,,,,,,,,,,,,,\n");
    assert!(LandmarkTable::parse(&status, Path::new("lm.csv")).is_err());

    let no_kps = format!("{HEADER}\nA.jpg,ok,0.9,,,,,,,,,,,,,,\n");
    let err = LandmarkTable::parse(&no_kps, Path::new("lm.csv")).unwrap_err();
    assert!(err.to_string().contains("keypoints are empty"), "{err}");

    let partial = format!("{HEADER}\nA.jpg,ok,0.8,1,2,3,4,10,11,20,21,15,30,12,40,19,\n");
    assert!(LandmarkTable::parse(&partial, Path::new("lm.csv")).is_err());

    assert!(LandmarkTable::parse("", Path::new("lm.csv")).is_err());
}

#[test]
fn pairs_parse_folds_and_kinds() {
    let text = "2 1\nAl\t1\t2\nBo 1 Cy 3\nDi 2 4\nEd 1 Fa 1\n";
    let pairs = parse_pairs(text, Path::new("pairs.txt")).expect("parse");
    assert_eq!(pairs.len(), 4);
    assert_eq!(pairs[0].a, PathBuf::from("Al/Al_0001.jpg"));
    assert_eq!(pairs[0].b, PathBuf::from("Al/Al_0002.jpg"));
    assert!(pairs[0].genuine && !pairs[1].genuine);
    assert_eq!(pairs[1].b, PathBuf::from("Cy/Cy_0003.jpg"));
    assert_eq!(
        pairs.iter().map(|p| p.fold).collect::<Vec<_>>(),
        vec![0, 0, 1, 1]
    );
    assert_eq!(pairs[3].line, 5);
    assert_eq!(lfw_image_path("X", 12), PathBuf::from("X/X_0012.jpg"));
}

#[test]
fn pairs_bad_lines_report_line_numbers() {
    let cases = [
        ("", "pairs.txt:1:"),
        ("ten 300\n", "pairs.txt:1:"),
        (
            "1 1\nAl 1\nBo 1 Cy 3\n",
            "pairs.txt:2: expected a genuine line",
        ),
        (
            "1 1\nAl 1 2\nBo 1 3\n",
            "pairs.txt:3: expected an impostor line",
        ),
        (
            "1 1\nAl 1 x\nBo 1 Cy 3\n",
            "pairs.txt:2: `x` is not a positive image number",
        ),
        ("1 1\nAl 1 0\nBo 1 Cy 3\n", "pairs.txt:2:"),
        ("1 1\nAl 1 2\n", "pairs.txt:3: the header promises 2 pairs"),
        (
            "1 1\nAl 1 2\nBo 1 Cy 3\nEd 1 2\n",
            "pairs.txt:4: unexpected extra line",
        ),
        ("1 1\n../x 1 2\nBo 1 Cy 3\n", "pairs.txt:2:"),
    ];
    for (text, want) in cases {
        let err = parse_pairs(text, Path::new("pairs.txt")).expect_err(text);
        assert!(
            err.to_string().starts_with(want),
            "input {text:?}: got `{err}`, want prefix `{want}`"
        );
    }
}

#[test]
fn pairs_unknown_name_and_missing_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    std::fs::create_dir_all(images.join("Al")).expect("mkdir");
    std::fs::write(images.join("Al/Al_0001.jpg"), b"x").expect("write");
    std::fs::write(images.join("Al/Al_0002.jpg"), b"x").expect("write");
    let list = dir.path().join("pairs.txt");

    std::fs::write(&list, "1 1\nAl 1 2\nAl 1 Zed 1\n").expect("write");
    let pairs = load_pairs(&list).expect("parse");
    let err = check_pair_images(&pairs, &list, &images).unwrap_err();
    match &err {
        DataError::UnknownName { line, name, .. } => assert_eq!((*line, name.as_str()), (3, "Zed")),
        other => panic!("expected UnknownName, got {other:?}"),
    }
    assert!(
        err.to_string().contains("pairs.txt:3: unknown name `Zed`"),
        "{err}"
    );

    std::fs::write(&list, "1 1\nAl 1 7\nAl 1 Al 2\n").expect("write");
    let pairs = load_pairs(&list).expect("parse");
    let err = check_pair_images(&pairs, &list, &images).unwrap_err();
    assert!(
        matches!(err, DataError::MissingImage { line: 2, .. }),
        "{err:?}"
    );

    std::fs::write(&list, "1 1\nAl 1 2\nAl 1 Al 2\n").expect("write");
    let pairs = load_pairs(&list).expect("parse");
    check_pair_images(&pairs, &list, &images).expect("all present");
}

#[test]
#[ignore = "needs ../shared"]
fn shared_lfw_lists_are_consistent() {
    let lfw = common::shared("data/lfw");
    let pairs = load_pairs(&lfw.join("pairs.txt")).expect("pairs.txt");
    assert_eq!(pairs.len(), 6000);
    assert_eq!(pairs.iter().filter(|p| p.genuine).count(), 3000);
    assert_eq!(pairs.iter().map(|p| p.fold).max(), Some(9));
    check_pair_images(&pairs, &lfw.join("pairs.txt"), &lfw.join("images"))
        .expect("all images exist");

    let table = LandmarkTable::load(&lfw.join("landmarks.csv")).expect("landmarks");
    let nodet_in_pairs: std::collections::BTreeSet<_> = pairs
        .iter()
        .flat_map(|p| [&p.a, &p.b])
        .filter(|rel| {
            table
                .get_path(rel)
                .is_some_and(|r| r.status == LandmarkStatus::NoDet)
        })
        .collect();
    eprintln!(
        "LFW: {} landmark rows, {} undetected images used by pairs.txt",
        table.len(),
        nodet_in_pairs.len()
    );
    assert_eq!(table.len(), 7701);
}
