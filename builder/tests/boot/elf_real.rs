//! Closures over real Debian packages: libc6 and NVIDIA 535 userspace
//! (non-free), unpacked with merged /usr, checked against glibc's own
//! loader (`ld.so --list` in a chroot of the tree) and ldconfig; static
//! and static-pie programs built by the host gcc.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::boot::elf::{ClosureRequest, ElfInfo, FoundBy, ImageRoot, check_closure};

use super::debs::{self, NVIDIA_VERSION, Sources, run};

const SMI: &str = "/usr/lib/nvidia/current/nvidia-smi";
const LIBCUDA: &str = "/usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.1";
const ML_DIR: &str = "/usr/lib/x86_64-linux-gnu/nvidia/current";

fn nvidia_root() -> PathBuf {
    let pin = |p: &str| format!("{p}={NVIDIA_VERSION}");
    debs::root(
        "nvidia-userspace",
        &[
            "libc6",
            &pin("libcuda1"),
            &pin("nvidia-smi"),
            &pin("libnvidia-ml1"),
        ],
        Sources::NonFree,
    )
}

/// A copy of the cached tree the test may change (hard links: cheap, and
/// new or removed names never touch the cache).
fn scratch_copy(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg("-l")
        .arg(format!("{}/.", root.display()))
        .arg(dir.path()));
    dir
}

fn request() -> ClosureRequest {
    ClosureRequest {
        files: vec![SMI.into(), LIBCUDA.into()],
        // nvidia-smi dlopens NVML; it is not in its DT_NEEDED.
        dlopen: vec![(SMI.into(), "libnvidia-ml.so.1".into())],
        foreign: Vec::new(),
    }
}

#[test]
fn unpacked_nvidia_userspace_names_the_library_the_alternatives_would_link() {
    let root = ImageRoot::new(nvidia_root());
    let report = check_closure(&root, &request()).unwrap();
    // The packages put NVML under nvidia/current/; only the
    // nvidia-alternative postinst links it into the search path.
    assert_eq!(report.missing.len(), 1, "{:?}", report.missing);
    assert_eq!(report.missing[0].needed_by, Path::new(SMI));
    assert_eq!(report.missing[0].name, "libnvidia-ml.so.1");
    assert!(
        report.missing[0]
            .searched
            .contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu"))
    );
    // Everything in DT_NEEDED resolves to libc6's files.
    for r in report
        .resolved
        .iter()
        .filter(|r| r.needed_by == Path::new(SMI))
    {
        assert!(
            r.path.starts_with("/usr/lib/x86_64-linux-gnu") || r.path.starts_with("/usr/lib64"),
            "{r:?}"
        );
    }
}

#[test]
fn alternatives_links_complete_the_closure() {
    let copy = scratch_copy(&nvidia_root());
    let root = copy.path();
    // What `update-alternatives` leaves for the nvidia alternative's
    // libnvidia-ml.so.1 slave: two absolute links through /etc/alternatives.
    std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
    symlink(
        format!("{ML_DIR}/libnvidia-ml.so.1"),
        root.join("etc/alternatives/libnvidia-ml.so.1-x86_64-linux-gnu"),
    )
    .unwrap();
    symlink(
        "/etc/alternatives/libnvidia-ml.so.1-x86_64-linux-gnu",
        root.join("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
    )
    .unwrap();
    let report = check_closure(&ImageRoot::new(root), &request()).unwrap();
    assert!(report.is_complete(), "{:?}", report.missing);
    let ml = report
        .resolved
        .iter()
        .find(|r| r.name == "libnvidia-ml.so.1")
        .unwrap();
    assert_eq!(
        ml.path,
        Path::new(&format!("{ML_DIR}/libnvidia-ml.so.535.261.03"))
    );
    assert_eq!(ml.found_by, FoundBy::SearchPath);
}

#[test]
fn ld_so_conf_and_ldconfig_agree_with_us() {
    let copy = scratch_copy(&nvidia_root());
    let root = copy.path();
    std::fs::write(
        root.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/ld.so.conf.d/nvidia.conf"),
        format!("{ML_DIR}\n"),
    )
    .unwrap();
    // Drop the SONAME link the package ships: only ldconfig would make it.
    std::fs::remove_file(root.join(format!("{}/libnvidia-ml.so.1", &ML_DIR[1..]))).unwrap();
    let report = check_closure(&ImageRoot::new(root), &request()).unwrap();
    assert!(report.is_complete(), "{:?}", report.missing);
    let ml = report
        .resolved
        .iter()
        .find(|r| r.name == "libnvidia-ml.so.1")
        .unwrap();
    assert_eq!(ml.found_by, FoundBy::Soname);
    // The real ldconfig, run on the tree, makes exactly that link.
    run(Command::new("ldconfig").arg("-r").arg(root));
    let link =
        std::fs::read_link(root.join(format!("{}/libnvidia-ml.so.1", &ML_DIR[1..]))).unwrap();
    assert_eq!(Path::new(ML_DIR).join(link), ml.path);
}

/// `name => path` of glibc's loader listing a file's dependencies inside
/// the tree (a chroot, so it sees only the image).
fn ld_so_list(root: &Path, file: &str) -> BTreeMap<String, PathBuf> {
    let out =
        run(Command::new("chroot")
            .arg(root)
            .args(["/lib64/ld-linux-x86-64.so.2", "--list", file]));
    let image = ImageRoot::new(root);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(" => ")?;
            let path = rest.split(" (").next()?;
            Some((name.to_owned(), image.resolve(Path::new(path)).unwrap().1))
        })
        .collect()
}

#[test]
fn glibc_loader_resolves_what_we_resolve() {
    if debs::skip_unless_root("glibc_loader_resolves_what_we_resolve", "chroot") {
        return;
    }
    let root = nvidia_root();
    let report = check_closure(&ImageRoot::new(&root), &request()).unwrap();
    for file in [SMI, LIBCUDA] {
        let resolved_file = ImageRoot::new(&root).resolve(Path::new(file)).unwrap().1;
        let ours: BTreeMap<String, PathBuf> = report
            .resolved
            .iter()
            .filter(|r| r.needed_by == resolved_file && r.found_by != FoundBy::Interpreter)
            .filter(|r| r.name != "libnvidia-ml.so.1")
            .map(|r| (r.name.clone(), r.path.clone()))
            .collect();
        assert!(!ours.is_empty());
        assert_eq!(ours, ld_so_list(&root, file), "{file}");
    }
}

#[test]
fn static_and_static_pie_programs() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("t.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let build = |name: &str, flags: &[&str]| {
        let out = dir.path().join(name);
        run(Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&source));
        ElfInfo::read(&out).unwrap()
    };
    let dynamic = build("dynamic", &[]);
    assert!(!dynamic.is_static());
    assert_eq!(dynamic.needed, ["libc.so.6"]);
    assert_eq!(
        dynamic.interpreter.as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    assert!(dynamic.require_static(Path::new("dynamic")).is_err());

    let fully = build("static", &["-static"]);
    assert!(fully.is_static() && !fully.pie);

    // static-pie: ET_DYN with a dynamic section and DF_1_PIE, but no
    // interpreter and no libraries (what `ironrack` is built as).
    let pie = build("static-pie", &["-static-pie"]);
    assert!(pie.is_static() && pie.pie, "{pie:?}");
    pie.require_static(Path::new("static-pie")).unwrap();
}

#[test]
fn busybox_static_is_static() {
    let info = ElfInfo::read(&debs::kernel_root().join("usr/bin/busybox")).unwrap();
    assert!(info.is_static(), "{info:?}");
}

/// binutils' view of a file's symbol versions (`readelf -V`, read through
/// the section headers): (definitions without the base, needs by file
/// without weak ones).
fn readelf_versions(path: &Path) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let out = String::from_utf8(run(Command::new("readelf").arg("-VW").arg(path)).stdout).unwrap();
    let mut defs = Vec::new();
    let mut needs: Vec<(String, Vec<String>)> = Vec::new();
    let mut section = "";
    for line in out.lines() {
        if line.starts_with("Version definition section") {
            section = "defs";
        } else if line.starts_with("Version needs section") {
            section = "needs";
        } else if line.starts_with("Version symbols section") {
            section = "";
        }
        let field = |name: &str| {
            line.split("  ")
                .find_map(|part| part.trim().strip_prefix(name))
                .map(str::to_owned)
        };
        match section {
            "defs" if line.contains("Rev: 1") && !line.contains("Flags: BASE") => {
                defs.push(field("Name: ").unwrap());
            }
            "needs" => {
                if let Some(file) = field("File: ") {
                    needs.push((
                        file.split_whitespace().next().unwrap().to_owned(),
                        Vec::new(),
                    ));
                } else if let Some(name) = field("Name: ")
                    && !line.contains("WEAK")
                {
                    needs.last_mut().unwrap().1.push(name);
                }
            }
            _ => {}
        }
    }
    (defs, needs)
}

#[test]
fn symbol_versions_agree_with_readelf_on_glibc_and_gcc_output() {
    let root = debs::kernel_libc_root();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hello.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
    )
    .unwrap();
    let program = dir.path().join("hello");
    run(Command::new("gcc").arg("-o").arg(&program).arg(&source));
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    for file in [
        lib.join("libc.so.6"),
        lib.join("libm.so.6"),
        lib.join("libgcc_s.so.1"),
        lib.join("ld-linux-x86-64.so.2"),
        program,
    ] {
        let info = ElfInfo::read(&file).unwrap();
        let (defs, needs) = readelf_versions(&file);
        assert_eq!(info.version_defs, defs, "{}", file.display());
        let ours: Vec<(String, Vec<String>)> = info
            .version_needs
            .iter()
            .map(|n| (n.file.clone(), n.versions.clone()))
            .collect();
        assert_eq!(ours, needs, "{}", file.display());
    }
    // Real files have both; the check above would pass on empty lists.
    let libc = ElfInfo::read(&lib.join("libc.so.6")).unwrap();
    assert!(libc.version_defs.iter().any(|v| v == "GLIBC_2.34"));
    assert!(
        libc.version_needs
            .iter()
            .any(|n| n.file == "ld-linux-x86-64.so.2")
    );
}
