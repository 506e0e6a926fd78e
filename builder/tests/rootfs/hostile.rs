//! Hostile packages from the fixture generator: `../` entries, absolute
//! names, symlinks out of the tree followed by files through them, hard
//! links to the host's files, and maintainer scripts that reach for the
//! network or look around the sandbox. Each is contained and reported;
//! a canary directory next to the target root never changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ironrack_builder::fixtures::{DebBuilder, TarEntry, TarKind};
use ironrack_builder::rootfs::install::{PackageFile, unpack};
use ironrack_builder::rootfs::{EntryProblem, Error, InstallOptions, Target, install};

use super::support::{BASE, real_debs, root_or_skip, scratch};

/// A work directory with `root/` (the target) and `canary/` beside it.
struct Arena {
    work: PathBuf,
    root: PathBuf,
    canary: PathBuf,
}

impl Arena {
    fn new(name: &str) -> Self {
        let work = scratch(name);
        let (root, canary) = (work.join("root"), work.join("canary"));
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("untouched"), "canary\n").unwrap();
        Self { work, root, canary }
    }

    fn deb(&self, builder: &DebBuilder) -> PathBuf {
        let dir = self.work.join("debs");
        std::fs::create_dir_all(&dir).unwrap();
        builder.write_to(&dir).unwrap()
    }

    /// Everything next to the root (the work dir minus root/ and debs/)
    /// is as it was: the canary alone, unchanged.
    fn assert_contained(&self) {
        let mut seen = BTreeMap::new();
        for entry in walkdir(&self.work) {
            let rel = entry.strip_prefix(&self.work).unwrap().to_owned();
            if rel.starts_with("root")
                || rel.starts_with("debs")
                || rel.extension().is_some_and(|e| e == "log")
            {
                continue;
            }
            seen.insert(rel, std::fs::read(&entry).ok());
        }
        let expected: BTreeMap<PathBuf, Option<Vec<u8>>> = [
            (PathBuf::from("canary"), None),
            (
                PathBuf::from("canary/untouched"),
                Some(b"canary\n".to_vec()),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(seen, expected, "something was written outside the target");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(self.work.to_str().unwrap()),
            "mounts left behind:\n{mounts}"
        );
    }
}

/// Every path under `dir` (not following links).
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walkdir(&path));
        }
    }
    out
}

fn unpack_one(arena: &Arena, deb: &Path) -> Result<(), Error> {
    let target = Target::open(&arena.root).unwrap();
    unpack(
        &target,
        &PackageFile::open_all(&[deb.to_owned()]).unwrap(),
        1,
        &ProgressBar::hidden(),
    )
    .map(|_| ())
}

fn file(path: &str, data: &str) -> TarEntry {
    TarEntry::new(path, TarKind::File(data.as_bytes().to_vec()), 0o644)
}

#[test]
fn entries_climbing_out_or_absolute_are_refused() {
    if !root_or_skip("entries_climbing_out_or_absolute_are_refused") {
        return;
    }
    let host_path = format!("/tmp/ironrack-hostile-{}", std::process::id());
    let cases: Vec<(&str, TarEntry, EntryProblem)> = vec![
        (
            "dotdot",
            file("./../canary/pwned", "x"),
            EntryProblem::ParentComponent,
        ),
        (
            "deepdotdot",
            file("./usr/../../canary/pwned", "x"),
            EntryProblem::ParentComponent,
        ),
        (
            "absolute",
            file(&format!("{host_path}/pwned"), "x"),
            EntryProblem::AbsolutePath,
        ),
        (
            "hardlink-out",
            TarEntry::new(
                "./passwd",
                TarKind::HardLink(b"../canary/untouched".to_vec()),
                0o644,
            ),
            EntryProblem::UnsafeLinkTarget(PathBuf::from("../canary/untouched")),
        ),
        (
            "hardlink-absolute",
            TarEntry::new(
                "./shadow",
                TarKind::HardLink(b"/etc/shadow".to_vec()),
                0o644,
            ),
            EntryProblem::UnsafeLinkTarget(PathBuf::from("/etc/shadow")),
        ),
    ];
    for (name, entry, problem) in cases {
        let arena = Arena::new(&format!("hostile-{name}"));
        let deb = arena.deb(
            &DebBuilder::new(name, "1", "all")
                .file("usr/share/doc/x", b"", 0o644)
                .raw_entry(entry),
        );
        match unpack_one(&arena, &deb) {
            Err(Error::UnsafeEntry {
                package,
                problem: got,
                ..
            }) => {
                assert_eq!(package, name);
                assert_eq!(got, problem, "{name}");
            }
            other => panic!("{name}: expected a refused entry, got {other:?}"),
        }
        arena.assert_contained();
        assert!(
            !Path::new(&host_path).exists(),
            "{name} wrote {host_path} on the host"
        );
    }
}

#[test]
fn symlinks_out_of_the_tree_do_not_carry_files_out() {
    if !root_or_skip("symlinks_out_of_the_tree_do_not_carry_files_out") {
        return;
    }
    // A relative link climbing to the canary, then a file through it: the
    // link resolves inside the root, where there is no such directory.
    let arena = Arena::new("hostile-symlink-relative");
    let deb = arena.deb(
        &DebBuilder::new("climber", "1", "all")
            .symlink("usr/share/evil", "../../../canary")
            .raw_entry(file("./usr/share/evil/pwned", "x")),
    );
    match unpack_one(&arena, &deb) {
        Err(Error::UnsafeEntry {
            package,
            entry,
            problem,
        }) => {
            assert_eq!(package, "climber");
            assert_eq!(entry, Path::new("./usr/share/evil/pwned"));
            assert_eq!(problem, EntryProblem::MissingParent);
        }
        other => panic!("expected a refused entry, got {other:?}"),
    }
    arena.assert_contained();

    // An absolute link to the canary's host path, shipped by one package
    // and already in the tree (which also has that path) when another
    // package's file goes through it: the file lands inside the root, and
    // is reported.
    let arena = Arena::new("hostile-symlink-absolute");
    let inside = arena.root.join(arena.canary.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let linker = arena.deb(
        &DebBuilder::new("linker", "1", "all")
            .symlink("usr/share/evil", arena.canary.to_str().unwrap()),
    );
    let jumper = arena.deb(
        &DebBuilder::new("jumper", "1", "all")
            .raw_entry(file("./usr/share/evil/pwned", "contained\n")),
    );
    let target = Target::open(&arena.root).unwrap();
    unpack(
        &target,
        &PackageFile::open_all(&[linker]).unwrap(),
        1,
        &ProgressBar::hidden(),
    )
    .unwrap();
    let unpacked = unpack(
        &target,
        &PackageFile::open_all(&[jumper]).unwrap(),
        1,
        &ProgressBar::hidden(),
    )
    .unwrap();
    assert_eq!(
        unpacked.redirected,
        vec![("jumper".to_owned(), PathBuf::from("usr/share/evil/pwned"))]
    );
    assert_eq!(
        std::fs::read_to_string(inside.join("pwned")).unwrap(),
        "contained\n"
    );
    arena.assert_contained();

    // Within one package the link comes last (as with dpkg), so a file
    // through it finds no directory there.
    let arena = Arena::new("hostile-symlink-same-package");
    let inside = arena.root.join(arena.canary.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let deb = arena.deb(
        &DebBuilder::new("oneshot", "1", "all")
            .symlink("usr/share/evil", arena.canary.to_str().unwrap())
            .raw_entry(file("./usr/share/evil/pwned", "x")),
    );
    assert!(matches!(
        unpack_one(&arena, &deb),
        Err(Error::UnsafeEntry {
            problem: EntryProblem::MissingParent,
            ..
        })
    ));
    assert!(!inside.join("pwned").exists());
    arena.assert_contained();
}

fn install_with(arena: &Arena, extra: &DebBuilder) -> Result<(), Error> {
    let mut debs = real_debs("required", BASE);
    debs.push(arena.deb(extra));
    let target = Target::open(&arena.root).unwrap();
    let options = InstallOptions {
        jobs: 2,
        architecture: "amd64".into(),
        epoch: 1_717_200_000,
        log_dir: arena.work.clone(),
    };
    install(
        &target,
        &PackageFile::open_all(&debs).unwrap(),
        &options,
        &ProgressBar::hidden(),
    )
    .map(|_| ())
}

#[test]
fn a_maintainer_script_reaching_for_the_network_fails_the_build_clearly() {
    if !root_or_skip("a_maintainer_script_reaching_for_the_network_fails_the_build_clearly") {
        return;
    }
    let arena = Arena::new("hostile-network");
    let probe = DebBuilder::new("netprobe", "1", "all")
        .field("Depends", "bash")
        .script(
            "postinst",
            "#!/bin/bash\nset -e\necho \"netprobe: connecting to 198.18.0.1:80\"\n\
         echo probe > /dev/tcp/198.18.0.1/80\necho netprobe: connected\n",
        );
    match install_with(&arena, &probe) {
        Err(Error::MaintainerScript {
            step,
            package,
            output,
            ..
        }) => {
            assert_eq!(step, "dpkg --configure");
            assert_eq!(package, "netprobe");
            assert!(output.contains("Network is unreachable"), "{output}");
            assert!(!output.contains("netprobe: connected"), "{output}");
        }
        other => panic!("expected the netprobe postinst to fail, got {other:?}"),
    }
    arena.assert_contained();
}

#[test]
fn maintainer_scripts_see_only_the_sandbox() {
    if !root_or_skip("maintainer_scripts_see_only_the_sandbox") {
        return;
    }
    let arena = Arena::new("hostile-look-around");
    let probe = DebBuilder::new("lookaround", "1", "all").script(
        "postinst",
        "#!/bin/sh\nset -e\nout=/var/lib/lookaround\nmkdir -p $out\n\
         ls /sys/class/net > $out/interfaces\ncat /sys/class/net/lo/operstate > $out/lo-state\n\
         echo $$ > $out/pid\nhostname > $out/hostname\nenv | sort > $out/env\n\
         umask > $out/umask\nls /dev > $out/dev\n\
         echo escaped > /../../../canary-probe 2>/dev/null || true\n",
    );
    install_with(&arena, &probe).unwrap_or_else(|e| panic!("install: {e}"));
    let read = |name: &str| {
        std::fs::read_to_string(arena.root.join("var/lib/lookaround").join(name)).unwrap()
    };
    assert_eq!(read("interfaces"), "lo\n", "only the loopback interface");
    assert_eq!(read("lo-state"), "down\n");
    let pid: u32 = read("pid").trim().parse().unwrap();
    assert!(
        pid < 1000,
        "maintainer scripts run in a fresh PID namespace (pid {pid})"
    );
    assert_eq!(read("hostname"), "localhost\n");
    assert_eq!(read("umask"), "0022\n");
    let env = read("env");
    for wanted in [
        "LC_ALL=C\n",
        "TZ=UTC\n",
        "SOURCE_DATE_EPOCH=1717200000\n",
        "DEBIAN_FRONTEND=noninteractive\n",
    ] {
        assert!(env.contains(wanted), "{wanted:?} missing from:\n{env}");
    }
    // cargo sets CARGO_* for this test process: none may reach the scripts.
    for host_var in ["CARGO", "RUST_", "USER=", "SSH_"] {
        assert!(
            !env.lines().any(|l| l.starts_with(host_var)),
            "{host_var} leaked:\n{env}"
        );
    }
    let dev_listing = read("dev");
    let dev: Vec<&str> = dev_listing.lines().collect();
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
    ] {
        assert!(dev.contains(&node), "/dev/{node} missing: {dev:?}");
    }
    // Writing "above" / stayed inside the root.
    assert!(arena.root.join("canary-probe").exists());
    // The sandbox's /dev was a tmpfs: nothing of it is left in the image.
    assert_eq!(
        std::fs::read_dir(arena.root.join("dev")).unwrap().count(),
        0
    );
    arena.assert_contained();
}
