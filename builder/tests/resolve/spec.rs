//! Image specs: the demo spec, its requests, and errors that name file,
//! line, column and key.

use std::path::Path;

use ironrack_builder::source::resolve::BaseSet;
use ironrack_builder::spec::{Flavour, ImageSpec, PackageSet, SpecError};

const DEMO: &str = include_str!("../../../images/gpu-node.toml");

fn parse(text: &str) -> Result<ImageSpec, SpecError> {
    ImageSpec::parse(text, Path::new("images/x.toml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// The demo spec with one line replaced (the first that starts with `from`).
fn demo_with(from: &str, to: &str) -> String {
    let mut done = false;
    let lines: Vec<String> = DEMO
        .lines()
        .map(|l| {
            if !done && l.starts_with(from) {
                done = true;
                to.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(done, "no line starts with {from:?}");
    lines.join("\n") + "\n"
}

fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

#[test]
fn the_demo_spec_reads_and_makes_two_requests() {
    let spec = parse(DEMO).unwrap();
    assert_eq!((spec.name.as_str(), spec.version), ("gpu-node", 1));
    assert_eq!(spec.kernel.release, "6.1.0-50-cloud-amd64");
    let nvidia = spec.nvidia.as_ref().unwrap();
    assert_eq!(
        (nvidia.flavour, nvidia.source_package().as_str()),
        (Flavour::Open, "nvidia-open-kernel-source")
    );
    assert_eq!(
        spec.mirror_root(Path::new("images/gpu-node.toml")),
        Path::new("images/../mirror")
    );
    let sets = spec.requests().unwrap();
    assert_eq!(sets.len(), 2);
    let (set, image) = &sets[0];
    assert_eq!(
        (*set, image.base, image.recommends),
        (PackageSet::Image, BaseSet::Required, false)
    );
    let find = |name: &str| {
        image
            .include
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        find("firmware-nvidia-gsp").unwrap().unwrap().as_str(),
        "535.261.03-1"
    );
    assert_eq!(find("libcuda1").unwrap().unwrap().as_str(), "535.261.03-1");
    assert_eq!(find("nvidia-persistenced"), Some(None));
    assert_eq!(find("linux-image-6.1.0-50-cloud-amd64"), Some(None));
    assert_eq!(find("busybox-static"), Some(None));
    let (set, build) = &sets[1];
    assert_eq!(*set, PackageSet::Build);
    let names: Vec<&str> = build.include.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "linux-headers-6.1.0-50-cloud-amd64",
            "nvidia-open-kernel-source",
            "make",
            "binutils",
            "libc6-dev",
            "kmod",
            // [initramfs]: the UKI's stub, read from its .deb.
            "systemd-boot-efi"
        ]
    );
    assert!(
        build
            .prefer
            .iter()
            .any(|(n, v)| n == "libcuda1" && v.as_str() == "535.261.03-1")
    );
}

#[test]
fn shape_errors_name_line_column_and_key() {
    let text = demo_with("cmdline", "cmdlime = \"console=ttyS0\"");
    let line = line_of(&text, "cmdlime");
    let msg = error(&text);
    assert!(
        msg.starts_with(&format!(
            "images/x.toml:{line}:1: kernel.cmdlime: unknown field `cmdlime`"
        )),
        "{msg}"
    );

    let text = demo_with("version = 1", "version = \"one\"");
    assert!(
        error(&text).starts_with(&format!(
            "images/x.toml:{}:11: version: ",
            line_of(&text, "version = \"one")
        )),
        "{}",
        error(&text)
    );

    let text = demo_with("release = ", "");
    let msg = error(&text);
    assert!(
        msg.contains(": kernel.release: missing field `release`"),
        "{msg}"
    );

    let text = demo_with("flavour = ", "flavour = \"closed\"");
    let msg = error(&text);
    assert!(
        msg.starts_with(&format!(
            "images/x.toml:{}:11: nvidia.flavour: unknown variant `closed`",
            line_of(&text, "flavour")
        )),
        "{msg}"
    );

    let msg = error("name = \"x\"\n[kernel\n");
    assert!(msg.starts_with("images/x.toml:2:"), "{msg}");

    let msg = ImageSpec::parse_bytes(b"name = \"\xff\"", Path::new("images/x.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "images/x.toml:1:9: (document): not UTF-8 text");
}

#[test]
fn meaning_errors_name_line_column_and_key() {
    let text = demo_with("libcuda1 = ", "libcuda1 = \"1:\"");
    assert_eq!(
        error(&text),
        format!(
            "images/x.toml:{}:12: packages.pin.libcuda1: \"1:\" is not a Debian version: bad version \"1:\": nothing after colon in version number",
            line_of(&text, "libcuda1 = ")
        )
    );

    let text = demo_with("release = ", "release = \"6.1.0-56-cloud-amd64\"");
    assert_eq!(
        error(&text),
        format!(
            "images/x.toml:{}:11: kernel.release: kernel release 6.1.0-56-cloud-amd64 does not belong to package linux-image-6.1.0-50-cloud-amd64 (expected linux-image-6.1.0-56-cloud-amd64 or linux-image-6.1.0-56-cloud-amd64-unsigned)",
            line_of(&text, "release = ")
        )
    );

    let text = demo_with("release = ", "release = \"cloud\"");
    assert!(
        error(&text).contains("kernel.release: \"cloud\" does not look like a kernel release"),
        "{}",
        error(&text)
    );

    let text = demo_with(
        "flavour = ",
        "flavour = \"open\"\nsource = \"nvidia-kernel-source\"",
    );
    assert!(
        error(&text).contains("nvidia.source: source package nvidia-kernel-source does not build the open modules (default: nvidia-open-kernel-source)"),
        "{}",
        error(&text)
    );

    let text = demo_with("version = \"535", "version = \"535\"");
    assert!(
        error(&text).contains("nvidia.version: \"535\" is not an NVIDIA driver release"),
        "{}",
        error(&text)
    );

    let text = demo_with("name = ", "name = \"GPU node\"");
    assert!(
        error(&text).starts_with("images/x.toml:4:8: name: \"GPU node\" is not an image name"),
        "{}",
        error(&text)
    );

    let text = demo_with(
        "  \"usr-is-merged\"",
        "  \"usr-is-merged\", \"kmod\", \"kmod\",",
    );
    let msg = error(&text);
    assert!(
        msg.contains(":30:28: packages.include.2: kmod is listed twice"),
        "{msg}"
    );
    let text = demo_with("  \"usr-is-merged\"", "  \"usr-is-merged\", \"-kmod\",");
    let msg = error(&text);
    assert!(
        msg.contains(":30:20: packages.include.1: \"-kmod\" is not a Debian package name"),
        "{msg}"
    );

    let text = demo_with("patches = ", "patches = [\"../../etc/passwd\"]");
    assert!(
        error(&text).contains("nvidia.patches.0: \"../../etc/passwd\" must be a relative path"),
        "{}",
        error(&text)
    );
}
