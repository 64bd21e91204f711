//! Atomic file writes: readers (and a crash) see either the old complete file or the new one.
//!
//! The bytes go to a temporary file in the target's own folder (a rename is only atomic within
//! one file system), which is synced and then renamed over the target; the folder is synced
//! last so that the rename itself survives a crash. Only regular files are ever replaced: a
//! rename over `/dev/null`, a FIFO or a folder would swap the node itself for a regular file
//! instead of writing to it, so such targets are refused.
//!
//! Temporary files are named `.<target>.facelens-tmp-<pid>-<random>`. A process killed between
//! creating and renaming one leaves it behind; the next write to the same target removes those
//! whose process is gone ([`write_atomic_with`] calls [`remove_stale_temps`] first), so kills never
//! accumulate garbage next to an output.
//!
//! Reading goes through [`read`], [`read_to_string`] and [`open_regular`]: they refuse anything that
//! is not a regular file *without blocking*, because a plain `open` of a FIFO waits for a writer
//! forever and reading a device node can be endless.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Marks our temporary files; followed by the writing process's id.
const TEMP_MARK: &str = ".facelens-tmp-";

/// Writes `bytes` to `path` atomically; see the module documentation.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], but `write` streams the content into a buffered writer. If `write`
/// (or anything after it) fails, the target is left as it was and no temporary file remains.
pub fn write_atomic_with<F>(path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let target = replaceable_target(path)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    remove_stale_temps(dir, &name);
    let prefix = format!(".{name}{TEMP_MARK}{}-", std::process::id());
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .map_err(|e| context(e, format!("cannot create a temporary file in {}", dir.display())))?;
    // From here on `tmp` deletes itself when dropped on any early return.
    let mut w = BufWriter::new(tmp);
    write(&mut w).map_err(|e| context(e, format!("cannot write {}", target.display())))?;
    let tmp = w.into_inner().map_err(|e| context(e.into_error(), format!("cannot write {}", target.display())))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| context(e, format!("cannot sync {}", target.display())))?;
    tmp.persist(&target)
        .map_err(|e| context(e.error, format!("cannot move the temporary file onto {}", target.display())))?;
    sync_dir(dir);
    Ok(())
}

/// Removes the temporary files that writers of `dir/<name>` left when they were killed: those
/// whose process no longer exists. Best effort (a folder that cannot be listed is left alone),
/// and a live writer's temporary file is never touched. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path, name: &str) -> usize {
    let prefix = format!(".{name}{TEMP_MARK}");
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}

/// A fresh, private folder in `dir` for building something that appears under its final name
/// only when complete (one rename). Named like the temporary files of [`write_atomic`] for
/// `name`, so [`remove_stale_temps`]`(dir, name)`, which this calls first, clears what a killed
/// process left.
pub fn staging_dir(dir: &Path, name: &str) -> io::Result<PathBuf> {
    remove_stale_temps(dir, name);
    let prefix = format!(".{name}{TEMP_MARK}{}-", std::process::id());
    let staged = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(dir)
        .map_err(|e| context(e, format!("cannot create a temporary folder in {}", dir.display())))?;
    Ok(staged.keep())
}

/// Syncs `dir` so that renames into it survive a crash (best effort).
pub fn sync_folder(dir: &Path) {
    sync_dir(dir)
}

/// Whether process `pid` still runs. Where that cannot be told (no `/proc`), every writer is
/// assumed alive so that nothing in use is deleted.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    !proc_root.join("self").exists() || proc_root.join(pid.to_string()).exists()
}

/// Opens `path` for reading if it is a regular file (after following links); anything else
/// (FIFO, device, socket, folder) is refused with an error saying what it is, without waiting
/// for a FIFO's writer.
pub fn open_regular(path: impl AsRef<Path>) -> io::Result<std::fs::File> {
    let path = path.as_ref();
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", kind(&meta)),
        ));
    }
    #[cfg(unix)]
    {
        // Back to blocking reads: O_NONBLOCK only had to cover the open itself.
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with flags it returned itself.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(file)
}

/// [`std::fs::read`] for regular files only; see [`open_regular`].
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::with_capacity(file.metadata().map(|m| m.len() as usize).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read`] refusing files over `max` bytes before allocating for them (and reading no more than
/// `max + 1` bytes should the file grow meanwhile).
pub fn read_at_most(path: impl AsRef<Path>, max: u64) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    let too_big = |n: u64| io::Error::new(io::ErrorKind::InvalidData, format!("{} is {n} bytes, more than the {max} expected", path.display()));
    if len > max {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`std::fs::read_to_string`] for regular files only; see [`open_regular`].
pub fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// Fails now if [`write_atomic`] would refuse `path` later (it exists and is not a regular file,
/// or is a dangling link, or its folder cannot be inspected), so that a command can refuse its
/// `--out` before doing the work. `write_atomic` checks again when it writes.
pub fn check_target(path: &Path) -> io::Result<()> {
    replaceable_target(path).map(|_| ())
}

/// The path to rename onto: `path` itself, or, if it is a link, the file it points to (so the
/// link survives). Fails when the (resolved) target exists and is not a regular file.
fn replaceable_target(path: &Path) -> io::Result<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A dangling link would be replaced by a file; anything else does not exist yet.
            return match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("refusing to replace {}: it is a link to nothing", path.display()),
                )),
                _ => Ok(path.to_path_buf()),
            };
        }
        Err(e) => return Err(context(e, format!("cannot inspect {}", path.display()))),
    };
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to replace {}: it exists and is not a regular file ({})", path.display(), kind(&meta)),
        ));
    }
    let is_link = std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false);
    if is_link {
        std::fs::canonicalize(path).map_err(|e| context(e, format!("cannot resolve {}", path.display())))
    } else {
        Ok(path.to_path_buf())
    }
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Makes a rename in `dir` durable. Best effort: some file systems (and Windows) cannot open or
/// sync a folder, and the data itself is already synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn read_at_most_refuses_larger_files_before_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_at_most(&p, 5).unwrap(), b"12345");
        let e = read_at_most(&p, 4).unwrap_err();
        assert!(e.to_string().contains("a.bin") && e.to_string().contains("5 bytes"), "{e}");
        std::fs::File::options().append(true).open(&p).unwrap().set_len(1 << 40).unwrap();
        assert!(read_at_most(&p, 1 << 20).is_err());
        assert!(read_at_most(dir.path(), 10).is_err(), "a folder is refused");
    }

    #[test]
    fn writes_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"first version").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first version");
        write_atomic(&p, b"2nd").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"2nd");
        write_atomic_with(&p, |w| {
            w.write_all(b"stre")?;
            w.write_all(b"amed")
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"streamed");
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn a_failing_write_keeps_the_old_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom") && err.to_string().contains("a.txt"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/a.txt");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("no/such"), "{err}");
    }

    #[test]
    fn refuses_to_replace_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = write_atomic(&sub, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(sub.is_dir());
        assert_eq!(names(dir.path()), ["sub"]);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_to_replace_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        let err = write_atomic(&fifo, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains("pipe") && msg.contains("FIFO"), "{msg}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(names(dir.path()), ["pipe"]);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_to_replace_a_device_node() {
        let err = write_atomic(Path::new("/dev/null"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("/dev/null"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn reading_a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.png");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
        let err = read(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("FIFO"), "{err}");
        let err = read_to_string(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        assert!(read(dir.path()).unwrap_err().to_string().contains("folder"));
        let f = dir.path().join("f.txt");
        std::fs::write(&f, "text").unwrap();
        assert_eq!(read_to_string(&f).unwrap(), "text");
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!(".a.bin{TEMP_MARK}4000000000-abc"));
        let live = dir.path().join(format!(".a.bin{TEMP_MARK}{}-abc", std::process::id()));
        let other = dir.path().join(format!(".b.bin{TEMP_MARK}4000000000-abc"));
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"partial").unwrap();
        }
        write_atomic(&dir.path().join("a.bin"), b"done").unwrap();
        assert!(!dead.exists() && live.exists() && other.exists());
        assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), b"done");
    }

    #[cfg(unix)]
    #[test]
    fn writes_through_a_link_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        let link = dir.path().join("link.txt");
        std::fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }
}
