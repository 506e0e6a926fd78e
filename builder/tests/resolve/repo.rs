//! Small repositories written as Packages text (apt simulates without the
//! .debs), read by our catalog and by a private apt.

use std::collections::BTreeMap;
use std::path::Path;

use ironrack_builder::source::Catalog;
use ironrack_builder::source::resolve::{Request, ResolveError, resolve};
use sha2::{Digest, Sha256};

use crate::apt::{Apt, Simulation};

/// One package paragraph: `fields` are extra `Name: value` lines;
/// Architecture defaults to amd64.
pub fn pkg(name: &str, version: &str, fields: &[(&str, &str)]) -> String {
    let mut out = format!("Package: {name}\nVersion: {version}\n");
    if !fields.iter().any(|(k, _)| *k == "Architecture") {
        out.push_str("Architecture: amd64\n");
    }
    for (k, v) in fields {
        out.push_str(&format!("{k}: {v}\n"));
    }
    let arch = fields
        .iter()
        .find(|(k, _)| *k == "Architecture")
        .map_or("amd64", |(_, v)| v);
    let file = format!(
        "pool/main/{name}_{}_{arch}.deb",
        version.replace(':', "%3a")
    );
    let sha = hex::encode(Sha256::digest(file.as_bytes()));
    out.push_str(&format!(
        "Maintainer: t <t@example.invalid>\nDescription: {name}\nFilename: {file}\nSize: 1000\nSHA256: {sha}\n"
    ));
    out
}

/// Writes `dists/test/main/binary-amd64/Packages` and a Release.
pub fn write_repo(root: &Path, paragraphs: &[String]) {
    let text = paragraphs.join("\n");
    let dir = root.join("dists/test/main/binary-amd64");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Packages"), &text).unwrap();
    let release = format!(
        "Suite: test\nCodename: test\nDate: Sat, 10 Jun 2023 00:00:00 UTC\nArchitectures: amd64\n\
         Components: main\nSHA256:\n {} {} main/binary-amd64/Packages\n",
        hex::encode(Sha256::digest(text.as_bytes())),
        text.len()
    );
    std::fs::write(root.join("dists/test/Release"), release).unwrap();
}

/// A catalog of paragraphs.
pub fn catalog(paragraphs: &[String]) -> Catalog {
    let mut c = Catalog::new();
    c.add_packages_text(&paragraphs.join("\n"), "Packages")
        .unwrap();
    c
}

/// name → version of a resolution.
pub fn closure(c: &Catalog, request: &Request) -> Result<BTreeMap<String, String>, ResolveError> {
    let r = resolve(c, request)?;
    Ok(r.packages
        .iter()
        .map(|&id| {
            let p = c.package(id);
            (c.names().resolve(p.name).to_owned(), p.version.to_string())
        })
        .collect())
}

/// A repository in a temporary directory with apt reading it.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub catalog: Catalog,
    pub apt: Apt,
}

impl Fixture {
    pub fn new(paragraphs: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_repo(&dir.path().join("repo"), paragraphs);
        let apt = Apt::new(
            &dir.path().join("apt"),
            &dir.path().join("repo"),
            "test",
            &["main"],
        );
        Self {
            catalog: catalog(paragraphs),
            apt,
            _dir: dir,
        }
    }

    /// apt on the request's names (`name` or `name=version`), in order.
    pub fn apt(&self, request: &Request) -> Simulation {
        let args: Vec<String> = request
            .include
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}={v}"),
                None => n.clone(),
            })
            .collect();
        self.apt.simulate(&args, request.recommends)
    }

    /// Our closure, asserting apt computes the same one on its own.
    pub fn agree(&self, request: &Request) -> BTreeMap<String, String> {
        let ours = closure(&self.catalog, request).unwrap_or_else(|e| panic!("ours failed: {e}"));
        let sim = self.apt(request);
        assert!(sim.ok, "apt failed:\n{}", sim.output);
        assert!(
            sim.resolver_broken.iter().all(|&n| n == 0),
            "apt needed its problem resolver:\n{}",
            sim.output
        );
        assert_eq!(ours, sim.installs, "ours vs apt\n{}", sim.output);
        ours
    }
}

/// A request for names, unpinned.
pub fn request(names: &[&str]) -> Request {
    let mut r = Request::new("amd64");
    for n in names {
        r = r.with(n, None);
    }
    r
}

/// The names of a closure.
pub fn names(c: &BTreeMap<String, String>) -> Vec<&str> {
    c.keys().map(String::as_str).collect()
}
