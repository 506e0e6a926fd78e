//! Property tests: userspace ELF parsing never panics.

use std::path::Path;

use ironrack_builder::boot::elf::ElfInfo;
use ironrack_builder::boot::elf::fixture::ElfFixture;
use proptest::prelude::*;

fn fixture() -> Vec<u8> {
    let mut f = ElfFixture::program(&["libc.so.6", "libm.so.6"]);
    f.rpath = vec!["$ORIGIN".into()];
    f.soname = Some("x".into());
    f.build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ElfInfo::parse(&bytes, Path::new("x"));
    }

    #[test]
    fn header_then_noise(tail in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut bytes = fixture()[..64].to_vec();
        bytes.extend_from_slice(&tail);
        let _ = ElfInfo::parse(&bytes, Path::new("x"));
    }

    #[test]
    fn truncated(cut in 0usize..1024) {
        let bytes = fixture();
        let _ = ElfInfo::parse(&bytes[..cut.min(bytes.len())], Path::new("x"));
    }

    #[test]
    fn corrupted(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12)) {
        let mut bytes = fixture();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = ElfInfo::parse(&bytes, Path::new("x"));
    }
}

#[test]
fn the_fixture_parses() {
    let info = ElfInfo::parse(&fixture(), Path::new("x")).unwrap();
    assert_eq!(info.needed, ["libc.so.6", "libm.so.6"]);
    assert_eq!(info.rpath, ["$ORIGIN"]);
}
