//! Real Debian indexes: the host apt's own lists (from `apt-get update`).
//!
//! InRelease files are split by our clear-signed parser and the extracted
//! text is verified by the real `gpgv` against the Debian archive keyring
//! as a *detached* signature: it only verifies if we extracted exactly the
//! signed bytes. Packages indexes are parsed whole.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::source::catalog::Catalog;
use ironrack_builder::source::control;
use ironrack_builder::source::index::parse_packages_parallel;
use ironrack_builder::source::names::Interner;
use ironrack_builder::source::release::ClearSigned;

use crate::util::{read, require_tool, run};

const LISTS: &str = "/var/lib/apt/lists";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

fn lists(suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(LISTS)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.starts_with("deb.debian.org_") && name.contains(suffix)
    });
    found.sort();
    if found.is_empty() {
        eprintln!("\n*** SKIP: no Debian {suffix} files in {LISTS}: run `apt-get update` ***\n");
    }
    found
}

/// The text of an apt list file (apt may store them lz4-compressed).
fn list_text(path: &Path) -> String {
    let bytes = if path.extension().is_some_and(|e| e == "lz4") {
        require_tool("lz4");
        run(Command::new("lz4").arg("-dc").arg(path)).stdout
    } else {
        let mut out = Vec::new();
        let c = ironrack_builder::source::compress::Compression::from_path(path);
        std::io::copy(
            &mut c.decoder(std::fs::File::open(path).unwrap()).unwrap(),
            &mut out,
        )
        .unwrap();
        out
    };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn inrelease_signed_text_verifies_with_gpgv() {
    require_tool("gpgv");
    assert!(
        Path::new(KEYRING).exists(),
        "{KEYRING} missing: run scripts/deps.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    for path in lists("_InRelease") {
        let text = String::from_utf8(read(&path)).unwrap();
        let origin = path.display().to_string();
        let msg = ClearSigned::parse(&text, &origin).unwrap();
        let release = msg.release(&origin).unwrap();
        assert!(
            release
                .codename
                .as_deref()
                .is_some_and(|c| c.starts_with("bookworm")),
            "{origin}"
        );
        assert!(
            !release.sha256.is_empty() && release.date_unix.is_some(),
            "{origin}"
        );

        let (data, sig) = (dir.path().join("data"), dir.path().join("data.asc"));
        std::fs::write(&data, msg.signed_data()).unwrap();
        std::fs::write(&sig, &msg.signature).unwrap();
        let verify = |data: &Path| {
            Command::new("gpgv")
                .args(["--keyring", KEYRING])
                .arg(&sig)
                .arg(data)
                .output()
                .unwrap()
        };
        let ok = verify(&data);
        assert!(
            ok.status.success(),
            "{origin}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        // One changed byte and the same signature no longer verifies.
        let mut tampered = msg.signed_data();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        std::fs::write(&data, tampered).unwrap();
        assert!(
            !verify(&data).status.success(),
            "{origin}: tampered text verified"
        );
    }
}

#[test]
fn parses_whole_debian_packages_indexes() {
    for path in lists("_Packages") {
        let text = list_text(&path);
        let origin = path.display().to_string();
        let want = text.lines().filter(|l| l.starts_with("Package:")).count();
        let mut catalog = Catalog::new();
        let got = catalog.add_packages_text(&text, &origin).unwrap();
        assert_eq!(got, want, "{origin}");
        // A parse split over threads gives the same records and the same
        // name numbering as one pass.
        let mut names = Interner::new();
        let parallel = parse_packages_parallel(&text, &origin, &mut names, 3).unwrap();
        assert!(
            parallel == catalog.packages(),
            "{origin}: parallel parse differs"
        );
        assert!(
            names.iter().eq(catalog.names().iter()),
            "{origin}: name numbering differs"
        );
        // Spot-check typed fields against a generic parse of the same text.
        let generic = control::parse_paragraphs(&text, &origin, Default::default()).unwrap();
        for (p, g) in catalog.packages().iter().zip(&generic).step_by(97) {
            let names = catalog.names();
            assert_eq!(names.resolve(p.name), g.get("Package").unwrap());
            assert_eq!(p.version.as_str(), g.get("Version").unwrap());
            assert_eq!(p.filename(), g.get("Filename").unwrap());
            assert_eq!(p.section(), g.get("Section"));
            assert_eq!(
                Some(p.description()),
                g.get("Description").and_then(|d| d.lines().next())
            );
            assert_eq!(p.size.to_string(), g.get("Size").unwrap());
            assert_eq!(
                p.depends.display(names).to_string().is_empty(),
                g.get("Depends").is_none()
            );
            assert_eq!(p.other_fields().get("Maintainer"), g.get("Maintainer"));
        }
    }
}
