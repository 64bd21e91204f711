//! Scratch files for targets whose entry point takes a path: one folder per process, in memory
//! (`/dev/shm`) where there is one.

use std::path::PathBuf;
use std::sync::OnceLock;

pub fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let d = base.join(format!("facelens-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    });
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("scratch file");
    p
}
