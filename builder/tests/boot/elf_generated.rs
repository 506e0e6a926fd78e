//! Generated ELF files: read by binutils readelf as we read them, and
//! closures over small generated trees exercising each step of ld.so's
//! search (RPATH, RUNPATH, $ORIGIN, ld.so.conf includes, SONAME, class).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::boot::elf::fixture::ElfFixture;
use ironrack_builder::boot::elf::{
    ClosureRequest, ElfInfo, FoundBy, ImageRoot, MissingLibrary, check_closure,
};

use super::debs::run;

fn write(root: &Path, path: &str, bytes: &[u8]) {
    let path = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn readelf_reads_the_fixture_as_we_do() {
    let mut f = ElfFixture::program(&["libfoo.so.1", "libc.so.6"]);
    f.runpath = vec!["$ORIGIN/../lib".into(), "/opt/x".into()];
    f.soname = Some("prog".into());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prog");
    std::fs::write(&path, f.build()).unwrap();
    let dynamic =
        String::from_utf8(run(Command::new("readelf").arg("-dlW").arg(&path)).stdout).unwrap();
    assert!(
        dynamic.contains("Shared library: [libfoo.so.1]"),
        "{dynamic}"
    );
    assert!(
        dynamic.contains("Library runpath: [$ORIGIN/../lib:/opt/x]"),
        "{dynamic}"
    );
    assert!(dynamic.contains("[Requesting program interpreter: /lib64/ld-linux-x86-64.so.2]"));
    assert!(dynamic.contains("Flags: PIE"), "{dynamic}");
    let info = ElfInfo::read(&path).unwrap();
    assert_eq!(info.needed, ["libfoo.so.1", "libc.so.6"]);
    assert_eq!(info.runpath, ["$ORIGIN/../lib", "/opt/x"]);
    assert_eq!(info.soname.as_deref(), Some("prog"));
    assert!(info.pie && !info.is_static());
}

fn tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    for d in ["usr/lib/x86_64-linux-gnu", "usr/bin", "etc/ld.so.conf.d"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("usr/lib", root.join("lib64")).unwrap();
    write(
        &root,
        "/usr/lib/ld-linux-x86-64.so.2",
        &ElfFixture::library("ld-linux-x86-64.so.2", &[]).build(),
    );
    write(
        &root,
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        &ElfFixture::library("libc.so.6", &[]).build(),
    );
    (dir, root)
}

fn request(files: &[&str]) -> ClosureRequest {
    ClosureRequest {
        files: files.iter().map(PathBuf::from).collect(),
        dlopen: Vec::new(),
        foreign: Vec::new(),
    }
}

#[test]
fn each_search_step() {
    let (_dir, root) = tree();
    let mut app =
        ElfFixture::program(&["libc.so.6", "libr.so.1", "libconf.so.2", "libsoname.so.3"]);
    app.rpath = vec!["$ORIGIN/../private".into()];
    write(&root, "/opt/app/bin/app", &app.build());
    write(
        &root,
        "/opt/app/private/libr.so.1",
        &ElfFixture::library("libr.so.1", &["libc.so.6"]).build(),
    );
    // libconf through ld.so.conf → include → conf.d/*.conf
    std::fs::write(
        root.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/ld.so.conf.d/app.conf"),
        "# app\n/opt/app/lib\n",
    )
    .unwrap();
    write(
        &root,
        "/opt/app/lib/libconf.so.2",
        &ElfFixture::library("libconf.so.2", &[]).build(),
    );
    // libsoname only as its real file name: ldconfig would link it.
    write(
        &root,
        "/usr/lib/x86_64-linux-gnu/libsoname.so.3.1.4",
        &ElfFixture::library("libsoname.so.3", &[]).build(),
    );
    let report = check_closure(&ImageRoot::new(&root), &request(&["/opt/app/bin/app"])).unwrap();
    assert!(report.is_complete(), "{:?}", report.missing);
    let how = |name: &str| {
        let r = report.resolved.iter().find(|r| r.name == name).unwrap();
        (r.path.to_string_lossy().into_owned(), r.found_by.clone())
    };
    assert_eq!(
        how("libr.so.1"),
        ("/opt/app/private/libr.so.1".into(), FoundBy::Rpath)
    );
    assert_eq!(
        how("libconf.so.2"),
        ("/opt/app/lib/libconf.so.2".into(), FoundBy::SearchPath)
    );
    assert_eq!(
        how("libsoname.so.3"),
        (
            "/usr/lib/x86_64-linux-gnu/libsoname.so.3.1.4".into(),
            FoundBy::Soname
        )
    );
    assert_eq!(
        how("libc.so.6"),
        (
            "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
            FoundBy::SearchPath
        )
    );
    assert_eq!(
        how("/lib64/ld-linux-x86-64.so.2"),
        ("/usr/lib/ld-linux-x86-64.so.2".into(), FoundBy::Interpreter)
    );
    assert_eq!(report.files.len(), 5);
}

#[test]
fn runpath_does_not_reach_grandchildren_and_names_the_needer() {
    let (_dir, root) = tree();
    let mut app = ElfFixture::program(&["liba.so.1"]);
    app.runpath = vec!["/opt/lib".into()];
    write(&root, "/usr/bin/app", &app.build());
    write(
        &root,
        "/opt/lib/liba.so.1",
        &ElfFixture::library("liba.so.1", &["libb.so.1"]).build(),
    );
    write(
        &root,
        "/opt/lib/libb.so.1",
        &ElfFixture::library("libb.so.1", &[]).build(),
    );
    let report = check_closure(&ImageRoot::new(&root), &request(&["/usr/bin/app"])).unwrap();
    // DT_RUNPATH applies to the object's own DT_NEEDED only (unlike RPATH).
    assert_eq!(report.missing.len(), 1, "{:?}", report.missing);
    let MissingLibrary {
        needed_by,
        name,
        searched,
    } = &report.missing[0];
    assert_eq!(
        (needed_by.as_path(), name.as_str()),
        (Path::new("/opt/lib/liba.so.1"), "libb.so.1")
    );
    assert!(searched.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu")));
    assert_eq!(
        report.missing[0].to_string(),
        "/opt/lib/liba.so.1 needs libb.so.1, not found in the image"
    );
}

#[test]
fn missing_interpreter_and_dlopen_are_reported() {
    let (_dir, root) = tree();
    let mut app = ElfFixture::program(&["libc.so.6"]);
    app.interpreter = Some("/lib/ld-musl-x86_64.so.1".into());
    write(&root, "/usr/bin/app", &app.build());
    let mut req = request(&["/usr/bin/app"]);
    req.dlopen
        .push(("/usr/bin/app".into(), "libplugin.so.7".into()));
    let report = check_closure(&ImageRoot::new(&root), &req).unwrap();
    let missing: Vec<&str> = report.missing.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(missing, ["/lib/ld-musl-x86_64.so.1", "libplugin.so.7"]);
}

#[test]
fn a_requested_file_that_is_absent_is_an_error() {
    let (_dir, root) = tree();
    let err = check_closure(&ImageRoot::new(&root), &request(&["/usr/bin/nothing"])).unwrap_err();
    assert!(err.to_string().contains("usr/bin/nothing"), "{err}");
}

#[test]
fn symbol_versions_of_a_foreign_program_are_checked_against_the_image() {
    let (_dir, root) = tree();
    // The image's libc defines up to GLIBC_2.36; a libm needs GLIBC_2.2.5
    // of it and has no version definitions of its own.
    write(
        &root,
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        &ElfFixture::library("libc.so.6", &["ld-linux-x86-64.so.2"])
            .defining_versions(&["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.36"])
            .build(),
    );
    write(
        &root,
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        &ElfFixture::library("libm.so.6", &["libc.so.6"])
            .needing_versions("libc.so.6", &["GLIBC_2.2.5"])
            .build(),
    );
    let host = tempfile::tempdir().unwrap();
    let agent = host.path().join("agent");
    let program = ElfFixture::program(&["libm.so.6", "libc.so.6"])
        .needing_versions("libm.so.6", &["GLIBC_2.29"])
        .needing_versions("libc.so.6", &["GLIBC_2.34", "GLIBC_2.38", "GLIBC_2.39"]);
    std::fs::write(&agent, program.build()).unwrap();

    let info = ElfInfo::read(&agent).unwrap();
    assert_eq!(info.version_needs.len(), 2);
    assert_eq!(info.version_needs[1].file, "libc.so.6");
    assert_eq!(
        info.version_needs[1].versions,
        ["GLIBC_2.34", "GLIBC_2.38", "GLIBC_2.39"]
    );
    let libc = ElfInfo::read(&root.join("usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
    assert_eq!(
        libc.version_defs,
        ["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.36"]
    );

    let request = ClosureRequest {
        foreign: vec![agent.clone()],
        ..ClosureRequest::default()
    };
    let report = check_closure(&ImageRoot::new(&root), &request).unwrap();
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert!(!report.is_complete());
    // libm defines no versions: ld.so only warns, so GLIBC_2.29 passes.
    let missing: Vec<(&Path, &str, &str)> = report
        .missing_versions
        .iter()
        .map(|m| (m.needed_by.as_path(), m.name.as_str(), m.version.as_str()))
        .collect();
    assert_eq!(
        missing,
        [
            (agent.as_path(), "libc.so.6", "GLIBC_2.38"),
            (agent.as_path(), "libc.so.6", "GLIBC_2.39")
        ]
    );
    assert_eq!(
        report.missing_versions[0].to_string(),
        format!(
            "{} needs GLIBC_2.38 from libc.so.6, which /usr/lib/x86_64-linux-gnu/libc.so.6 does not define",
            agent.display()
        )
    );
    // The foreign program is named by its host path; its libraries by image path.
    assert!(report.files.contains(&agent));
    assert!(
        report
            .files
            .contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu/libm.so.6"))
    );
}
