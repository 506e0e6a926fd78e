//! Property tests: kernel module parsing never panics, on arbitrary bytes
//! and on generated modules that are truncated or corrupted.

use std::path::Path;

use ironrack_builder::boot::kmod::Module;
use ironrack_builder::boot::kmod::fixture::ModuleFixture;
use ironrack_builder::boot::kmod::modinfo::ModInfo;
use proptest::prelude::*;

fn fixture() -> Vec<u8> {
    let mut f = ModuleFixture::new("prop", "6.1.0 SMP ")
        .needs("printk", 1)
        .exports("exported", 2, true);
    f.signature = Some(vec![7; 40]);
    f.build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Module::parse(&bytes, Path::new("x.ko"));
        let _ = ModInfo::parse(&bytes);
    }

    #[test]
    fn elf_header_then_noise(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = fixture()[..64].to_vec();
        bytes.extend_from_slice(&tail);
        let _ = Module::parse(&bytes, Path::new("x.ko"));
    }

    #[test]
    fn truncated(cut in 0usize..4096) {
        let bytes = fixture();
        let cut = cut.min(bytes.len());
        let _ = Module::parse(&bytes[..cut], Path::new("x.ko"));
    }

    #[test]
    fn corrupted(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let mut bytes = fixture();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = Module::parse(&bytes, Path::new("x.ko"));
    }
}

#[test]
fn the_fixture_itself_parses() {
    let m = Module::parse(&fixture(), Path::new("prop.ko")).unwrap();
    assert_eq!(m.name, "prop");
    assert_eq!(m.exports.len(), 1);
}

#[test]
fn truncations_are_errors_not_garbage() {
    let bytes = fixture();
    // Cutting into the section headers at the end leaves no valid module.
    for cut in [0, 10, 63, 64, bytes.len() / 2, bytes.len() - 200] {
        assert!(
            Module::parse(&bytes[..cut], Path::new("t.ko")).is_err(),
            "cut at {cut}"
        );
    }
}
