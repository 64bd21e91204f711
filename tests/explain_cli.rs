//! `facelens explain` as researchers use it: several methods side by side, photos with several
//! faces, and lists of pairs. They need `../shared` or the photos and detector `scripts/setup.sh`
//! fetches, so they are ignored by default (`-- --include-ignored` runs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{landmarks, lfw, repo};

fn facelens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facelens")).args(args).env("CI", "1").output().expect("run facelens")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("json")
}

/// A photo scripts/setup.sh copies from the insightface wheel; panics naming it when absent.
fn sample(name: &str) -> String {
    let p = repo().join("checkpoints/samples").join(name);
    assert!(p.is_file(), "{} is missing: run scripts/setup.sh", p.display());
    assert!(repo().join("checkpoints/scrfd_500m_bnkps.safetensors").is_file(), "the detector is missing: run scripts/setup.sh");
    p.display().to_string()
}

fn safetensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("maps");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn several_methods_give_one_comparison_panel_and_keyed_maps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let (a, b) = (lfw("Abel_Pacheco/Abel_Pacheco_0001.jpg"), lfw("Abel_Pacheco/Abel_Pacheco_0004.jpg"));
    let args = |methods: &str, out: &Path| {
        facelens(&["explain", &a, &b, "--landmarks", &landmarks(), "--method", methods, "--out", out.to_str().unwrap(), "--json"])
    };
    let o = args("score-gradient,random,xssab", &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["method"], "score-gradient,random,xssab");
    assert_eq!(r["decision"], "accept");
    let methods = r["methods"].as_array().expect("methods");
    assert_eq!(methods.iter().map(|m| m["method"].as_str().unwrap()).collect::<Vec<_>>(), ["score-gradient", "random", "xssab"]);
    for m in methods {
        assert!(m["seconds"].as_f64().expect("seconds") > 0.0);
        assert!(m["map_mass"]["sa_pos"].as_f64().expect("mass") > 0.0, "{m}");
    }
    assert!(r.get("map_mass").is_none(), "per-method masses only");
    let mut want: Vec<String> = ["score-gradient", "random", "xssab"]
        .iter()
        .flat_map(|m| ["sa_pos", "sa_neg", "sb_pos", "sb_neg"].map(|k| format!("{m}.{k}")))
        .collect();
    want.sort();
    assert_eq!(safetensor_names(&out.join("maps.safetensors")), want);
    // A row per method: the comparison panel is taller than the single-method panel.
    let panel = image::open(out.join("panel.png")).expect("panel").to_rgb8();
    let single = dir.path().join("single");
    let o = args("score-gradient", &single);
    assert!(o.status.success(), "{}", stderr(&o));
    let one = image::open(single.join("panel.png")).expect("panel").to_rgb8();
    assert!(panel.height() > 3 * 224 && panel.height() > one.height(), "{:?} vs {:?}", panel.dimensions(), one.dimensions());
    // The single-method outputs keep their format, and both runs score the pair the same.
    let s = json(&single.join("result.json"));
    assert_eq!(safetensor_names(&single.join("maps.safetensors")), ["sa_neg", "sa_pos", "sb_neg", "sb_pos"]);
    assert_eq!(s["score"], r["score"]);
    assert_eq!(s["map_mass"], r["methods"][0]["map_mass"], "the same method gives the same maps alone or compared");
    // Unknown names are refused before anything is computed or written.
    let bad = dir.path().join("bad");
    let o = args("score-gradient,nonsense", &bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nonsense") && stderr(&o).contains("fggb"), "{}", stderr(&o));
    assert!(!bad.exists());
}

#[test]
#[ignore = "needs the sample photos and detector of scripts/setup.sh"]
fn group_photos_say_how_many_faces_and_let_the_user_choose() {
    let dir = tempfile::tempdir().unwrap();
    let (players, yao) = (sample("players.jpg"), sample("yaoming.jpg"));
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec!["explain", &players, &yao, "--method", "score-gradient", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        facelens(&args)
    };
    let default = dir.path().join("default");
    let o = run(&[], &default);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&default.join("result.json"));
    let faces = &r["faces"]["a"];
    let found = faces["found"].as_u64().expect("found") as usize;
    assert!(found > 5, "players.jpg is a team photo: {faces}");
    assert_eq!(faces["rule"], "largest-central");
    assert_eq!(faces["overview"], "faces-a.png");
    assert!(stderr(&o).contains(&format!("{found} faces found")), "{}", stderr(&o));
    let boxes = faces["faces"].as_array().expect("boxes");
    let centres: Vec<f64> = boxes.iter().map(|f| f["bbox"][0].as_f64().unwrap() + f["bbox"][2].as_f64().unwrap()).collect();
    assert!(centres.windows(2).all(|w| w[0] <= w[1]), "numbered left to right");
    let overview = image::open(default.join("faces-a.png")).expect("overview PNG").to_rgb8();
    assert!(overview.width() >= 900);
    // One face in yaoming.jpg: no overview, but the report.
    assert_eq!(r["faces"]["b"]["found"], 1);
    assert!(r["faces"]["b"].get("overview").is_none() && !default.join("faces-b.png").exists());

    // Yao Ming is in the team photo: choosing his face turns the reject into an accept.
    let scores: Vec<(usize, f64)> = (1..=found)
        .map(|n| {
            let out = dir.path().join(format!("face{n}"));
            let o = run(&["--face-a", &n.to_string()], &out);
            assert!(o.status.success(), "face {n}: {}", stderr(&o));
            let r = json(&out.join("result.json"));
            assert_eq!((r["faces"]["a"]["used"].as_u64(), r["faces"]["a"]["rule"].as_str()), (Some(n as u64), Some("--face")));
            (n, r["score"].as_f64().unwrap())
        })
        .collect();
    let best = scores.iter().copied().fold((0, f64::MIN), |b, s| if s.1 > b.1 { s } else { b });
    assert!(best.1 > 0.5, "the same person scores high: {scores:?}");
    assert!(scores.iter().filter(|s| s.0 != best.0).all(|s| s.1 < 0.3), "everyone else is someone else: {scores:?}");

    // A face that is not there: a clear error naming the photo and the count, nothing written.
    let missing = dir.path().join("missing");
    let o = run(&["--face-a", &(found + 1).to_string()], &missing);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("players.jpg") && err.contains(&format!("has {found} faces")) && err.contains("--face-a"), "{err}");
    assert!(!missing.exists());
    // A choice other than 1 on an aligned crop is refused; 0 is a usage error.
    let crop = lfw("Abel_Pacheco/Abel_Pacheco_0001.jpg");
    let o = facelens(&["verify", &crop, &crop, "--landmarks", &landmarks(), "--face-b", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--face-b 2") && stderr(&o).contains("one face"), "{}", stderr(&o));
    let o = facelens(&["verify", &players, &yao, "--face-a", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // verify takes the same choice and reports it.
    let o = facelens(&["verify", &players, &yao, "--face-a", &best.0.to_string(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!((v["decision"].as_str(), v["faces"]["a"]["used"].as_u64()), (Some("accept"), Some(best.0 as u64)));
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn a_pair_list_is_explained_by_one_process_and_a_bad_pair_does_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let images = PathBuf::from(lfw(""));
    let list = dir.path().join("pairs.txt");
    let rel = |p: &str| images.join(p).display().to_string();
    std::fs::write(
        &list,
        format!(
            "# A B label\n{} {} same\n{}\t{}\n\n{} missing.jpg broken\n",
            rel("Abel_Pacheco/Abel_Pacheco_0001.jpg"),
            rel("Abel_Pacheco/Abel_Pacheco_0004.jpg"),
            rel("Abel_Pacheco/Abel_Pacheco_0001.jpg"),
            rel("Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg"),
            rel("Abel_Pacheco/Abel_Pacheco_0001.jpg"),
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = facelens(&[
        "explain", "--pairs", list.to_str().unwrap(), "--landmarks", &landmarks(), "--method", "score-gradient,random",
        "--out", out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "one pair failed: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("1 of 3 pairs failed") && err.contains("missing.jpg") && err.contains("line 5"), "{err}");
    let summary = json(&out.join("summary.json"));
    let entries = summary.as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["folder"], "001-same");
    assert_eq!(entries[0]["result"]["decision"], "accept");
    assert_eq!(entries[1]["result"]["decision"], "reject");
    assert!(entries[2]["error"].as_str().expect("error").contains("missing.jpg"));
    for folder in ["001-same", "002-Abel_Pacheco_0001_Akhmed_Zakayev_0001"] {
        for f in ["panel.png", "maps.safetensors", "result.json"] {
            assert!(out.join(folder).join(f).is_file(), "{folder}/{f}");
        }
    }
    assert!(!out.join("003-broken").exists(), "a failed pair leaves no folder");
    let csv = std::fs::read_to_string(out.join("summary.csv")).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,line,label,a,b,method,score,threshold,decision,sa_pos,sa_neg,sb_pos,sb_neg,seconds,folder,error");
    assert_eq!(lines.len(), 1 + 2 * 2 + 1, "a row per pair and method, one for the failure");
    assert!(lines[1].starts_with("1,2,same,") && lines[1].contains(",score-gradient,") && lines[1].contains(",accept,"), "{}", lines[1]);
    assert!(lines[5].starts_with("3,5,broken,") && lines[5].contains("missing.jpg"), "{}", lines[5]);
    // The same pair explained alone gives the same maps.
    let alone = dir.path().join("alone");
    let o = facelens(&[
        "explain", &rel("Abel_Pacheco/Abel_Pacheco_0001.jpg"), &rel("Abel_Pacheco/Abel_Pacheco_0004.jpg"), "--landmarks", &landmarks(),
        "--method", "score-gradient,random", "--out", alone.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (x, y) = (std::fs::read(alone.join("maps.safetensors")).unwrap(), std::fs::read(out.join("001-same/maps.safetensors")).unwrap());
    let (x, y) = (safetensors::SafeTensors::deserialize(&x).unwrap(), safetensors::SafeTensors::deserialize(&y).unwrap());
    assert_eq!(safetensor_names(&alone.join("maps.safetensors")).len(), 8);
    for name in safetensor_names(&alone.join("maps.safetensors")) {
        assert!(x.tensor(&name).unwrap().data() == y.tensor(&name).unwrap().data(), "{name} differs between the list and a single call");
    }
    // A malformed list is refused before any work, naming the line.
    std::fs::write(&list, "a.jpg\n").unwrap();
    let o = facelens(&["explain", "--pairs", list.to_str().unwrap(), "--out", dir.path().join("none").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pairs.txt:1"), "{}", stderr(&o));
    assert!(!dir.path().join("none").exists());
}
