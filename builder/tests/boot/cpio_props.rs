//! Property tests: the newc reader never panics, and whatever the writer
//! writes reads back as written.

use ironrack_builder::boot::cpio::{Archive, EntryKind, read_newc};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-c]{1,3}", 1..4).prop_map(|parts| parts.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = read_newc(&bytes);
    }

    #[test]
    fn header_prefix_then_noise(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"070701".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = read_newc(&bytes);
    }

    #[test]
    fn round_trip(files in proptest::collection::btree_map(path(), proptest::collection::vec(any::<u8>(), 0..64), 0..12),
                  mtime in any::<u32>()) {
        let mut archive = Archive::new();
        let mut added = Vec::new();
        for (path, data) in &files {
            // A path may collide with an implicit parent of another: skip.
            if archive.file(path, 0o644, data.clone()).is_ok() {
                added.push(path.clone());
            }
        }
        let mut bytes = Vec::new();
        archive.write_newc(mtime, &mut bytes).unwrap();
        let read = read_newc(&bytes).unwrap();
        let names: Vec<&str> = read.iter().map(|e| e.name.as_str()).collect();
        let expected: Vec<&str> = archive.entries().map(|(p, _)| p).collect();
        prop_assert_eq!(names, expected);
        for entry in &read {
            prop_assert_eq!(entry.mtime, mtime);
            prop_assert_eq!((entry.uid, entry.gid), (0, 0));
            match archive.get(&entry.name).map(|e| &e.kind) {
                Some(EntryKind::File(ironrack_builder::boot::cpio::FileData::Bytes(data))) => {
                    prop_assert!(entry.is_file());
                    prop_assert_eq!(&entry.data, data);
                }
                Some(EntryKind::Directory) => prop_assert!(entry.is_dir()),
                other => prop_assert!(false, "{:?}", other),
            }
        }
        // Truncating anywhere is an error, never a panic or a short read
        // that claims success.
        for cut in [0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                prop_assert!(read_newc(&bytes[..cut]).is_err());
            }
        }
        let _ = added;
    }
}
