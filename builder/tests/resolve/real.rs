//! Our closures against apt's on Debian bookworm's real indexes: names and
//! versions must be equal, for each request, with an empty dpkg status.

use std::collections::BTreeMap;

use ironrack_builder::source::resolve::{BaseSet, Request, Resolution, resolve};
use ironrack_builder::source::{Catalog, Version};

use crate::bookworm::{Bookworm, bookworm};

fn v(text: &str) -> Option<Version> {
    Some(Version::parse(text).unwrap())
}

fn request(base: BaseSet, include: &[(&str, Option<Version>)]) -> Request {
    let mut r = Request::new("amd64");
    r.base = base;
    r.include = include
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    r
}

fn closure(catalog: &Catalog, r: &Resolution) -> BTreeMap<String, String> {
    r.packages
        .iter()
        .map(|&id| {
            let p = catalog.package(id);
            (
                catalog.names().resolve(p.name).to_owned(),
                p.version.to_string(),
            )
        })
        .collect()
}

/// The apt command line equivalent to a resolution's requests.
fn apt_args(catalog: &Catalog, r: &Resolution, pinned: &[&str]) -> Vec<String> {
    r.requested
        .iter()
        .map(|&id| {
            let p = catalog.package(id);
            let name = catalog.names().resolve(p.name);
            if pinned.contains(&name) {
                format!("{name}={}", p.version)
            } else {
                name.to_owned()
            }
        })
        .collect()
}

fn diff(ours: &BTreeMap<String, String>, apts: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (n, v) in ours {
        match apts.get(n) {
            None => out.push_str(&format!("  only ours: {n} {v}\n")),
            Some(w) if w != v => out.push_str(&format!("  {n}: ours {v}, apt {w}\n")),
            _ => {}
        }
    }
    for (n, v) in apts {
        if !ours.contains_key(n) {
            out.push_str(&format!("  only apt's: {n} {v}\n"));
        }
    }
    out
}

/// Resolves, runs apt on the same request, returns a mismatch report.
fn compare(b: &Bookworm, label: &str, req: &Request, pinned: &[&str]) -> Option<String> {
    let ours = match resolve(&b.catalog, req) {
        Ok(r) => r,
        Err(e) => return Some(format!("{label}: our resolver failed: {e}")),
    };
    let prefer: Vec<(String, String)> = ours
        .switched
        .iter()
        .map(|s| {
            let p = b.catalog.package(s.package);
            (
                b.catalog.names().resolve(p.name).to_owned(),
                p.version.to_string(),
            )
        })
        .collect();
    b.apt.set_preferences(&prefer);
    let args = apt_args(&b.catalog, &ours, pinned);
    let sim = b.apt.simulate(&args, req.recommends);
    b.apt.set_preferences(&[]);
    if !sim.ok {
        return Some(format!("{label}: apt failed:\n{}", sim.output));
    }
    if sim.resolver_broken.iter().any(|&n| n > 0) {
        return Some(format!(
            "{label}: apt needed its problem resolver:\n{}",
            sim.output
        ));
    }
    let ours = closure(&b.catalog, &ours);
    let report = diff(&ours, &sim.installs);
    eprintln!(
        "{label}: {} packages, apt {}",
        ours.len(),
        sim.installs.len()
    );
    (!report.is_empty()).then(|| format!("{label}: closures differ:\n{report}"))
}

#[test]
fn closures_equal_apts_on_real_bookworm() {
    let Some(b) = bookworm() else { return };
    let mut cases: Vec<(&str, Request, Vec<&str>)> = vec![
        ("required set", request(BaseSet::Required, &[]), vec![]),
        ("essential set", request(BaseSet::Essential, &[]), vec![]),
    ];
    for name in [
        "apt",
        "busybox-static",
        "kmod",
        "linux-image-cloud-amd64",
        "firmware-nvidia-gsp",
        "libcuda1",
        "nvidia-smi",
        "openssh-server",
        "systemd-sysv",
        "nvidia-open-kernel-source",
        "linux-headers-cloud-amd64",
    ] {
        cases.push((name, request(BaseSet::None, &[(name, None)]), vec![]));
    }
    cases.push((
        "node: required + systemd-sysv, udev, kmod, openssh-server, kernel",
        request(
            BaseSet::Required,
            &[
                ("systemd-sysv", None),
                ("udev", None),
                ("kmod", None),
                ("iproute2", None),
                ("openssh-server", None),
                ("linux-image-cloud-amd64", None),
            ],
        ),
        vec![],
    ));
    let mut with_recommends = request(BaseSet::None, &[("openssh-server", None), ("apt", None)]);
    with_recommends.recommends = true;
    cases.push((
        "openssh-server + apt with Recommends",
        with_recommends,
        vec![],
    ));
    let pinned = ["firmware-nvidia-gsp", "libcuda1", "nvidia-smi"];
    cases.push((
        "pinned NVIDIA 535.261.03-1",
        request(
            BaseSet::None,
            &[
                ("firmware-nvidia-gsp", v("535.261.03-1")),
                ("libcuda1", v("535.261.03-1")),
                ("nvidia-smi", v("535.261.03-1")),
            ],
        ),
        pinned.to_vec(),
    ));
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(label, req, pinned)| compare(b, label, req, pinned))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
