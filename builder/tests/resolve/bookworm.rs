//! Debian bookworm's real indexes (main, contrib, non-free,
//! non-free-firmware of bookworm, bookworm-updates and bookworm-security),
//! fetched once by a private `apt-get update` and cached under
//! `target/tmp/bookworm-index`, merged into one local repository the way a
//! mirror snapshot merges suites: `dists/bookworm/COMPONENT/binary-amd64/
//! Packages` with every version of every suite. No .deb is fetched.
//!
//! Set IRONRACK_REFRESH_INDEX=1 to fetch the indexes again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ironrack_builder::source::catalog::Catalog;
use ironrack_builder::source::compress::Compression;
use sha2::{Digest, Sha256};

use crate::apt::Apt;
use crate::util::{require_tool, run};

pub const COMPONENTS: [&str; 4] = ["main", "contrib", "non-free", "non-free-firmware"];
const SUITES: [(&str, &str); 3] = [
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian", "bookworm-updates"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
];
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The merged repository, our catalog of it, and apt reading it.
pub struct Bookworm {
    pub root: PathBuf,
    pub catalog: Catalog,
    pub apt: Apt,
}

/// The shared real repository, or `None` (after a loud SKIP line) when the
/// indexes cannot be fetched and none are cached.
pub fn bookworm() -> Option<&'static Bookworm> {
    static REPO: OnceLock<Option<Bookworm>> = OnceLock::new();
    REPO.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bookworm-index");
        let root = match repository(&cache) {
            Ok(root) => root,
            Err(why) => {
                eprintln!("\n*** SKIP: real bookworm indexes unavailable: {why} ***\n");
                return None;
            }
        };
        let mut catalog = Catalog::new();
        for component in COMPONENTS {
            let path = root.join(format!("dists/bookworm/{component}/binary-amd64/Packages"));
            catalog.read_packages_file(&path).unwrap();
        }
        remove_stale_apt_dirs(&cache);
        let apt_dir = cache.join(format!("apt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&apt_dir);
        let apt = Apt::new(&apt_dir, &root, "bookworm", &COMPONENTS);
        Some(Bookworm { root, catalog, apt })
    })
    .as_ref()
}

/// Each test process gets its own apt state (`apt-PID`); those of
/// processes that have exited are removed.
fn remove_stale_apt_dirs(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("apt-")
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The merged repository under `cache`, fetched and built if missing.
pub fn repository(cache: &Path) -> Result<PathBuf, String> {
    let root = cache.join("repo");
    let refresh = std::env::var_os("IRONRACK_REFRESH_INDEX").is_some();
    if root.join("dists/bookworm/Release").is_file() && !refresh {
        return Ok(root);
    }
    require_tool("apt-get");
    let work = cache.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let lists = fetch_lists(&work)?;
    let staged = work.join("repo");
    merge(&lists, &staged);
    std::fs::create_dir_all(cache).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    // Another test binary may have won the race: theirs is as good.
    if std::fs::rename(&staged, &root).is_err() && !root.join("dists/bookworm/Release").is_file() {
        return Err(format!("could not publish {}", root.display()));
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(root)
}

/// `apt-get update` with a private configuration; returns the lists dir.
fn fetch_lists(work: &Path) -> Result<PathBuf, String> {
    let w = |p: &str| work.join(p);
    for d in [
        "sources.d",
        "conf.d",
        "lists/partial",
        "cache/archives/partial",
    ] {
        std::fs::create_dir_all(w(d)).unwrap();
    }
    std::fs::write(w("status"), "").unwrap();
    let sources: Vec<String> = SUITES
        .iter()
        .map(|(uri, suite)| {
            format!(
                "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: {}\nSigned-By: {KEYRING}\n",
                COMPONENTS.join(" ")
            )
        })
        .collect();
    std::fs::write(w("sources.d/bookworm.sources"), sources.join("\n")).unwrap();
    let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
    let out = Command::new("apt-get")
        .env("LC_ALL", "C")
        .args(["-q", "update", "-o", "Dir::Etc::SourceList=/dev/null"])
        .args(["-o", &opt("Dir::Etc::SourceParts", &w("sources.d"))])
        .args(["-o", &opt("Dir::Etc::Parts", &w("conf.d"))])
        .args(["-o", &opt("Dir::State::Lists", &w("lists"))])
        .args(["-o", &opt("Dir::State::status", &w("status"))])
        .args(["-o", &opt("Dir::Cache", &w("cache"))])
        .args(["-o", "Debug::NoLocking=1", "-o", "Acquire::Languages=none"])
        .args([
            "-o",
            "APT::Architecture=amd64",
            "-o",
            "APT::Architectures=amd64",
        ])
        .args([
            "-o",
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
        ])
        .output()
        .map_err(|e| format!("running apt-get update: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || text.contains("\nErr:") || text.starts_with("Err:") {
        return Err(format!("apt-get update failed:\n{text}"));
    }
    Ok(w("lists"))
}

/// One `Packages` per component holding every suite's paragraphs, and a
/// Release listing them.
fn merge(lists: &Path, root: &Path) {
    let dists = root.join("dists/bookworm");
    let mut release_files = Vec::new();
    for component in COMPONENTS {
        let mut text = String::new();
        for (_, suite) in SUITES {
            for path in list_files(lists, suite, component) {
                let part = list_text(&path);
                text.push_str(part.trim_end_matches('\n'));
                text.push_str("\n\n");
            }
        }
        let rel = format!("{component}/binary-amd64/Packages");
        std::fs::create_dir_all(dists.join(format!("{component}/binary-amd64"))).unwrap();
        std::fs::write(dists.join(&rel), &text).unwrap();
        release_files.push((
            rel,
            text.len(),
            hex::encode(Sha256::digest(text.as_bytes())),
        ));
    }
    let mut release = format!(
        "Origin: ironrack-test\nLabel: ironrack-test\nSuite: bookworm\nCodename: bookworm\n\
         Date: Sat, 10 Jun 2023 00:00:00 UTC\nArchitectures: amd64\nComponents: {}\nSHA256:\n",
        COMPONENTS.join(" ")
    );
    for (rel, size, sha) in release_files {
        release.push_str(&format!(" {sha} {size} {rel}\n"));
    }
    std::fs::write(dists.join("Release"), release).unwrap();
}

fn list_files(lists: &Path, suite: &str, component: &str) -> Vec<PathBuf> {
    let marker = format!("_dists_{suite}_{component}_binary-amd64_Packages");
    let mut found: Vec<PathBuf> = std::fs::read_dir(lists)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&marker))
        })
        .collect();
    found.sort();
    found
}

/// The text of an apt list file (apt may keep them lz4-compressed).
fn list_text(path: &Path) -> String {
    let bytes = if path.extension().is_some_and(|e| e == "lz4") {
        require_tool("lz4");
        run(Command::new("lz4").arg("-dc").arg(path)).stdout
    } else {
        let mut out = Vec::new();
        let file = std::fs::File::open(path).unwrap();
        let mut d = Compression::from_path(path).decoder(file).unwrap();
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        out
    };
    String::from_utf8(bytes).unwrap()
}
