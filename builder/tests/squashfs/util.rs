//! Running the real tools, and describing a tree so two can be compared.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use ironrack_builder::rootfs::fsimage::squashfs::{
    Compression, Mtime, Options, Summary, write_dir,
};
use sha2::{Digest, Sha256};

pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `true` when the tool exists; otherwise a loud SKIP line.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP: {tool} not installed (scripts/deps.sh installs it)");
    }
    found
}

/// Run a command; panic with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn options(epoch: u32, level: i32, threads: usize) -> Options {
    Options {
        compression: Compression::Zstd { level },
        threads,
        ..Options::new(epoch)
    }
}

pub fn write(root: &Path, image: &Path, options: &Options) -> Summary {
    write_dir(root, image, options, &|_| {})
        .unwrap_or_else(|e| panic!("writing {}: {e}", image.display()))
}

/// Extract with unsquashfs into `dest` (created by unsquashfs).
pub fn unsquash(image: &Path, dest: &Path) {
    run(Command::new("unsquashfs")
        .arg("-no-progress")
        .arg("-d")
        .arg(dest)
        .arg(image));
}

/// One line per entry: path, type, permissions, owner, mtime, size,
/// content digest / link target / device, hard-link group, link count.
/// `mtime` maps the source's mtimes to what the image should hold.
pub fn manifest(
    root: &Path,
    mtime: Option<Mtime>,
    with_nlink: bool,
    with_symlink_mtime: bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut groups: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap();
        let rel = format!("/{}", String::from_utf8_lossy(rel.as_os_str().as_bytes()));
        let t = meta.file_type();
        let what = if t.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            stack.extend(names);
            "dir".to_string()
        } else if t.is_file() {
            format!(
                "file {} {}",
                meta.len(),
                hex::encode(Sha256::digest(fs::read(&path).unwrap()))
            )
        } else if t.is_symlink() {
            format!("link {:?}", fs::read_link(&path).unwrap())
        } else if t.is_block_device() || t.is_char_device() {
            format!(
                "{} {:x}",
                if t.is_block_device() { "blk" } else { "chr" },
                meta.rdev()
            )
        } else if t.is_fifo() {
            "fifo".to_string()
        } else {
            "sock".to_string()
        };
        let group = if !t.is_dir() && meta.nlink() > 1 {
            groups
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            String::new()
        };
        let mtime = match (mtime, t.is_symlink() && !with_symlink_mtime) {
            (_, true) => "-".to_string(),
            (None, _) => meta.mtime().to_string(),
            (Some(Mtime::Clamp(limit)), _) => meta.mtime().clamp(0, i64::from(limit)).to_string(),
            (Some(Mtime::Fixed(t)), _) => t.to_string(),
        };
        let nlink = if with_nlink {
            meta.nlink().to_string()
        } else {
            "-".to_string()
        };
        lines.push(format!(
            "{rel} {what} {:o} {}:{} mtime={mtime} nlink={nlink} group={group}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        ));
    }
    lines.sort();
    lines
}

/// `getfattr` of every entry (all namespaces, values in hex), relative
/// paths, one block per entry, sorted (getfattr walks in readdir order).
pub fn getfattr(root: &Path) -> Vec<String> {
    let out = run(Command::new("getfattr")
        .current_dir(root)
        .args(["-R", "-h", "-d", "-m", "-", "-e", "hex", "."]));
    let mut blocks: Vec<String> = out
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(str::to_owned)
        .collect();
    blocks.sort();
    blocks
}

/// `getcap -r`, relative paths, sorted.
pub fn getcap(root: &Path) -> Vec<String> {
    let out = run(Command::new("getcap").current_dir(root).args(["-r", "."]));
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Assert two manifests are equal, showing the lines that differ.
pub fn assert_same(what: &str, want: &[String], got: &[String]) {
    if want != got {
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(20).collect();
        let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(20).collect();
        panic!(
            "{what}: trees differ\nexpected but missing:\n{missing:#?}\nunexpected:\n{extra:#?}"
        );
    }
}

/// A mounted image, unmounted on drop.
pub struct Mount<'a>(pub &'a Path);

impl<'a> Mount<'a> {
    pub fn new(image: &Path, at: &'a Path) -> Self {
        Self::of_type("squashfs", image, at)
    }

    pub fn of_type(fstype: &str, image: &Path, at: &'a Path) -> Self {
        fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", fstype, "-o", "loop,ro"])
            .arg(image)
            .arg(at));
        Mount(at)
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}
