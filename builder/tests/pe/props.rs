//! Property tests: the PE parser and the measurements never panic on
//! arbitrary or mutated bytes, and whenever the goblin-based code accepts an
//! image, the reference implementation computes the same ranges.

use ironrack_builder::boot::measure::{SYSTEMD_STUB_252, predict_pcr11};
use ironrack_builder::boot::pe::{PeError, PeImage};
use ironrack_builder::boot::pe_fixture::{FixtureSection, PeFixture, PeFormat};
use proptest::prelude::*;

use super::reference;

/// What the builder runs on a file; checks agreement when it accepts it.
fn exercise(bytes: &[u8]) {
    let Ok(image) = PeImage::parse(bytes) else {
        return;
    };
    let ranges = image.authenticode_ranges();
    let digest = image.authenticode_sha256();
    let _ = image
        .sections()
        .iter()
        .map(|s| image.loaded_data(s).map_or(0, <[u8]>::len))
        .sum::<usize>();
    let _ = predict_pcr11(&image, &SYSTEMD_STUB_252);
    let reference =
        reference::authenticode(bytes).expect("the reference accepts what goblin accepted");
    assert_eq!(ranges, reference.ranges);
    assert_eq!(digest, reference.digest);
}

fn section() -> impl Strategy<Value = FixtureSection> {
    (
        prop_oneof![
            Just(".text"),
            Just(".linux"),
            Just(".initrd"),
            Just(".cmdline"),
            Just(".data"),
            Just(".linuxXY")
        ],
        proptest::collection::vec(any::<u8>(), 0..700),
        proptest::option::of(0u32..2000),
    )
        .prop_map(|(name, data, virtual_size)| FixtureSection {
            name: name.to_owned(),
            data,
            virtual_size,
        })
}

fn fixture() -> impl Strategy<Value = PeFixture> {
    (
        prop_oneof![Just(PeFormat::Pe32Plus), Just(PeFormat::Pe32)],
        prop_oneof![Just(1u32), Just(8), Just(0x200)],
        proptest::collection::vec(section(), 0..6),
        any::<bool>(),
        prop_oneof![4 => Just(16u32), 1 => 0u32..16],
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        any::<u32>(),
    )
        .prop_map(
            |(
                format,
                file_alignment,
                sections,
                reverse_file_order,
                dirs,
                trailing,
                certificate,
                checksum,
            )| {
                PeFixture {
                    format,
                    file_alignment,
                    sections,
                    reverse_file_order,
                    number_of_rva_and_sizes: dirs,
                    trailing,
                    certificate,
                    checksum,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn generated_images_agree_with_the_reference(fixture in fixture()) {
        let bytes = fixture.build();
        let reference = reference::authenticode(&bytes);
        match PeImage::parse(&bytes) {
            Ok(image) => {
                let reference = reference.expect("reference accepts generated images");
                prop_assert_eq!(image.authenticode_ranges(), reference.ranges);
                prop_assert_eq!(image.authenticode_sha256(), reference.digest);
            }
            // Documented limit: with ≤ 4 data directories and headers too
            // short to hold a certificate entry, the goblin path refuses.
            Err(PeError::HeadersOutOfBounds { .. }) => prop_assert!(fixture.number_of_rva_and_sizes <= 4),
            Err(e) => prop_assert!(false, "generated image refused: {e}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_images_never_panic(
        fixture in fixture(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut bytes = fixture.build();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        exercise(&bytes);
    }

    #[test]
    fn mutated_headers_never_panic(
        flips in proptest::collection::vec((0usize..0x300, any::<u8>()), 1..6),
    ) {
        // Aim at the headers, where the lengths and offsets live.
        let mut bytes = PeFixture::uki_like(&[1; 300], &[2; 77], "x").build();
        for (at, value) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = value;
            }
        }
        exercise(&bytes);
    }
}
