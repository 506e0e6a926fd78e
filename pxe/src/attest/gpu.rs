//! The GPU inventory a node reports (NVIDIA PCI functions read from sysfs
//! by [`crate::agent::gpu`]) and the site's profile it must match.
//!
//! The agent measures [`GpuInventory::canonical_bytes`] into PCR 15, so the
//! server can re-hash the inventory it receives and find it in the replayed
//! agent log: the encoding is compact JSON with the devices sorted, and
//! [`GpuInventory::from_canonical`] refuses any other spelling of the same
//! inventory (two encodings of one inventory would be two digests).
//!
//! A [`GpuProfile`] counts device ids only (`8 x 0x2330`): link width and
//! speed travel in the evidence for operators, but a degraded link is not
//! a reason to withhold a node's secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The PCI vendor id of NVIDIA, the only vendor the inventory holds.
pub const NVIDIA_VENDOR: u16 = 0x10de;

/// One NVIDIA PCI function as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GpuDevice {
    /// PCI address, `0000:17:00.0` (the sysfs directory name).
    pub address: String,
    /// PCI device id (`device` file).
    pub device: u16,
    /// PCI class code, 24 bits (`class` file; 0x030200 for a 3D controller).
    pub class: u32,
    /// Negotiated PCIe link width (`current_link_width`); none when the
    /// function has no PCIe capability or the file is unreadable.
    pub link_width: Option<u8>,
    /// Negotiated link speed as sysfs spells it, `32.0 GT/s PCIe`.
    pub link_speed: Option<String>,
}

/// The NVIDIA functions of a node and the loaded driver's version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GpuInventory {
    /// Devices, sorted by address.
    pub devices: Vec<GpuDevice>,
    /// `nvidia` module version (`/sys/module/nvidia/version`), when loaded.
    pub driver: Option<String>,
}

/// Why bytes are not a canonical GPU inventory.
#[derive(Debug, thiserror::Error)]
pub enum GpuInventoryError {
    /// The bytes are not a GPU inventory in JSON.
    #[error("GPU inventory: not a valid inventory document")]
    Decode(#[source] serde_json::Error),
    /// The inventory parses but is spelled differently from its canonical
    /// encoding (whitespace, key order, unsorted devices, escapes).
    #[error(
        "GPU inventory: not in canonical form ({got} bytes, canonical form is {canonical} bytes); the digest measured into PCR 15 is over the canonical form"
    )]
    NotCanonical {
        /// Length of the bytes received.
        got: usize,
        /// Length of the canonical re-encoding.
        canonical: usize,
    },
    /// Two devices claim one PCI address.
    #[error("GPU inventory: device address {address} appears more than once")]
    DuplicateAddress {
        /// The address.
        address: String,
    },
}

impl GpuInventory {
    /// An inventory with its devices sorted by address.
    pub fn new(mut devices: Vec<GpuDevice>, driver: Option<String>) -> Self {
        devices.sort();
        GpuInventory { devices, driver }
    }

    /// The deterministic encoding the agent measures and the server
    /// re-hashes: compact JSON, fields in declaration order, devices sorted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut sorted = self.clone();
        sorted.devices.sort();
        serde_json::to_vec(&sorted).expect("a GPU inventory always serializes to JSON")
    }

    /// SHA-256 of [`Self::canonical_bytes`].
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Parses an inventory and refuses it unless `bytes` are exactly its
    /// canonical encoding, so the digest of `bytes` is the digest the
    /// agent measured.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, GpuInventoryError> {
        let inventory: GpuInventory =
            serde_json::from_slice(bytes).map_err(GpuInventoryError::Decode)?;
        if let Some(pair) = inventory
            .devices
            .windows(2)
            .find(|pair| pair[0].address == pair[1].address)
        {
            return Err(GpuInventoryError::DuplicateAddress {
                address: pair[0].address.clone(),
            });
        }
        let canonical = inventory.canonical_bytes();
        if canonical != bytes {
            return Err(GpuInventoryError::NotCanonical {
                got: bytes.len(),
                canonical: canonical.len(),
            });
        }
        Ok(inventory)
    }

    /// The devices grouped by device id, addresses in order.
    fn by_device_id(&self) -> BTreeMap<u16, Vec<&str>> {
        let mut ids: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for device in &self.devices {
            ids.entry(device.device).or_default().push(&device.address);
        }
        ids
    }
}

/// The NVIDIA devices a node must have: a count per PCI device id.
///
/// Written in site.toml as `8 x 0x2330`, `8x0x2330`, `8 x 0x2330 + 4 x
/// 0x22a3`, or `none` (no NVIDIA function at all). Every NVIDIA function
/// counts, so a profile lists NVSwitches and audio functions too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GpuProfile {
    counts: BTreeMap<u16, u32>,
}

/// Why a GPU profile string does not parse; each variant names the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuProfileError {
    /// The profile is empty (write `none` for a node without NVIDIA devices).
    #[error("GPU profile is empty; write `none` for a node without NVIDIA devices")]
    Empty,
    /// A term is not `<count> x 0x<device id>`.
    #[error("GPU profile term `{term}`: expected `<count> x 0x<device id>`, e.g. `8 x 0x2330`")]
    Term {
        /// The term.
        term: String,
    },
    /// The count is not a positive decimal number.
    #[error(
        "GPU profile term `{term}`: count `{count}` is not a positive decimal number (leave the device out, or write `none`)"
    )]
    Count {
        /// The term.
        term: String,
        /// The count as written.
        count: String,
    },
    /// The device id is not `0x` and one to four hex digits.
    #[error(
        "GPU profile term `{term}`: device id `{id}` is not `0x` followed by 1 to 4 hex digits"
    )]
    DeviceId {
        /// The term.
        term: String,
        /// The id as written.
        id: String,
    },
    /// One device id appears in two terms.
    #[error("GPU profile: device id {id:#06x} appears in more than one term")]
    DuplicateId {
        /// The id.
        id: u16,
    },
    /// `none` combined with other terms.
    #[error("GPU profile `{profile}`: `none` cannot be combined with other terms")]
    NoneWithOthers {
        /// The whole profile.
        profile: String,
    },
}

impl GpuProfile {
    /// A profile from `(device id, count)` pairs; zero counts are dropped
    /// and repeated ids add up.
    pub fn new(counts: impl IntoIterator<Item = (u16, u32)>) -> Self {
        let mut map: BTreeMap<u16, u32> = BTreeMap::new();
        for (id, count) in counts.into_iter().filter(|(_, count)| *count > 0) {
            let total = map.entry(id).or_default();
            *total = total.saturating_add(count);
        }
        GpuProfile { counts: map }
    }

    /// The required count per device id, in id order.
    pub fn counts(&self) -> impl Iterator<Item = (u16, u32)> + '_ {
        self.counts.iter().map(|(id, count)| (*id, *count))
    }

    /// Whether the inventory has exactly the profile's count of every
    /// device id and no other NVIDIA device.
    pub fn check(&self, inventory: &GpuInventory) -> Result<(), GpuMismatch> {
        let found = inventory.by_device_id();
        let mut problems = Vec::new();
        for (&id, &expected) in &self.counts {
            let addresses = found.get(&id).cloned().unwrap_or_default();
            if addresses.len() != expected as usize {
                problems.push(GpuDiscrepancy::Count {
                    device: id,
                    expected,
                    addresses: addresses.into_iter().map(str::to_owned).collect(),
                });
            }
        }
        for (&id, addresses) in &found {
            if !self.counts.contains_key(&id) {
                problems.push(GpuDiscrepancy::Unexpected {
                    device: id,
                    addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GpuMismatch {
                profile: self.clone(),
                problems,
            })
        }
    }
}

impl fmt::Display for GpuProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("none");
        }
        for (i, (id, count)) in self.counts.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{count} x {id:#06x}")?;
        }
        Ok(())
    }
}

impl FromStr for GpuProfile {
    type Err = GpuProfileError;

    fn from_str(profile: &str) -> Result<Self, Self::Err> {
        let trimmed = profile.trim();
        if trimmed.is_empty() {
            return Err(GpuProfileError::Empty);
        }
        if trimmed == "none" {
            return Ok(GpuProfile::default());
        }
        let mut counts = BTreeMap::new();
        for term in trimmed.split('+').map(str::trim) {
            if term == "none" {
                return Err(GpuProfileError::NoneWithOthers {
                    profile: trimmed.to_owned(),
                });
            }
            let (id, count) = parse_term(term)?;
            if counts.insert(id, count).is_some() {
                return Err(GpuProfileError::DuplicateId { id });
            }
        }
        Ok(GpuProfile { counts })
    }
}

/// `<count> x 0x<id>`, spaces around `x` optional (`8x0x2330`).
fn parse_term(term: &str) -> Result<(u16, u32), GpuProfileError> {
    let split = term
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(term.len());
    let (count_text, rest) = term.split_at(split);
    let Some(id_text) = rest.trim_start().strip_prefix('x') else {
        return Err(GpuProfileError::Term {
            term: term.to_owned(),
        });
    };
    let id_text = id_text.trim_start();
    let count = count_text
        .parse::<u32>()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| GpuProfileError::Count {
            term: term.to_owned(),
            count: count_text.to_owned(),
        })?;
    let id = parse_device_id(id_text).ok_or_else(|| GpuProfileError::DeviceId {
        term: term.to_owned(),
        id: id_text.to_owned(),
    })?;
    Ok((id, count))
}

/// `0x` and 1 to 4 hex digits (no sign, which `from_str_radix` would take).
fn parse_device_id(text: &str) -> Option<u16> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

impl TryFrom<String> for GpuProfile {
    type Error = GpuProfileError;

    fn try_from(profile: String) -> Result<Self, Self::Error> {
        profile.parse()
    }
}

impl From<GpuProfile> for String {
    fn from(profile: GpuProfile) -> String {
        profile.to_string()
    }
}

/// One way an inventory differs from its profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuDiscrepancy {
    /// A device id of the profile is present too few or too many times.
    #[error("expected {expected} x {device:#06x}, found {}", found(*device, addresses))]
    Count {
        /// The device id.
        device: u16,
        /// The profile's count.
        expected: u32,
        /// Addresses of the devices found with this id.
        addresses: Vec<String>,
    },
    /// A device id the profile does not list.
    #[error("unexpected device {device:#06x} x {} ({})", addresses.len(), addresses.join(", "))]
    Unexpected {
        /// The device id.
        device: u16,
        /// Where the devices are.
        addresses: Vec<String>,
    },
}

/// `7 x 0x2330 (0000:17:00.0, ...)`, or `none`.
fn found(device: u16, addresses: &[String]) -> String {
    if addresses.is_empty() {
        "none".to_owned()
    } else {
        format!(
            "{} x {device:#06x} ({})",
            addresses.len(),
            addresses.join(", ")
        )
    }
}

/// A node's GPU inventory does not match its profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "GPU inventory does not match the profile `{profile}`: {}",
    join(problems)
)]
pub struct GpuMismatch {
    /// The profile checked against.
    pub profile: GpuProfile,
    /// Every difference, profile ids first (in id order), then unexpected ids.
    pub problems: Vec<GpuDiscrepancy>,
}

fn join(problems: &[GpuDiscrepancy]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h100(address: &str) -> GpuDevice {
        GpuDevice {
            address: address.to_owned(),
            device: 0x2330,
            class: 0x030200,
            link_width: Some(16),
            link_speed: Some("32.0 GT/s PCIe".to_owned()),
        }
    }

    fn eight_h100() -> GpuInventory {
        let buses = ["17", "3d", "63", "86", "99", "b8", "cc", "e0"];
        let devices = buses
            .iter()
            .rev()
            .map(|bus| h100(&format!("0000:{bus}:00.0")));
        GpuInventory::new(devices.collect(), Some("535.261.03".to_owned()))
    }

    fn profile(text: &str) -> GpuProfile {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn profiles_parse_in_the_site_spellings() {
        let compact = profile("8x0x2330");
        assert_eq!(compact.counts().collect::<Vec<_>>(), [(0x2330, 8)]);
        assert_eq!(compact, profile("  8 x 0x2330 "));
        let mixed = profile("8 x 0x2330 + 2 x 0x1EB8");
        assert_eq!(
            mixed.counts().collect::<Vec<_>>(),
            [(0x1eb8, 2), (0x2330, 8)]
        );
        assert_eq!(mixed.to_string(), "2 x 0x1eb8 + 8 x 0x2330");
        assert_eq!(profile("none").counts().count(), 0);
        assert_eq!(profile("none").to_string(), "none");
        assert_eq!(profile("1 x 0x1").to_string(), "1 x 0x0001");
        assert_eq!(
            GpuProfile::new([(0x2330, 4), (0x1eb8, 0), (0x2330, 4)]),
            compact
        );
    }

    #[test]
    fn profile_errors_name_the_bad_token() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("8 x 0x23g0", "device id `0x23g0`"),
            ("8 x 2330", "device id `2330`"),
            ("8 x 0x12345", "device id `0x12345`"),
            ("8 x 0x-233", "device id `0x-233`"),
            ("8 x 0x2330 + 0 x 0x1eb8", "count `0`"),
            ("99999999999 x 0x2330", "count `99999999999`"),
            ("x 0x2330", "term `x 0x2330`: count ``"),
            ("8 0x2330", "term `8 0x2330`"),
            ("eight x 0x2330", "term `eight x 0x2330`"),
            ("8 x 0x2330 +", "term ``"),
            (
                "8 x 0x2330 + 1 x 0x2330",
                "0x2330 appears in more than one term",
            ),
            ("none + 8 x 0x2330", "`none` cannot be combined"),
        ];
        for (text, needle) in cases {
            let error = text.parse::<GpuProfile>().expect_err(text).to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn profiles_come_from_site_toml_as_strings() {
        #[derive(Debug, Deserialize)]
        struct Node {
            gpus: GpuProfile,
        }
        let node: Node = toml::from_str("gpus = \"8 x 0x2330\"").unwrap();
        assert_eq!(node.gpus, profile("8x0x2330"));
        let error = toml::from_str::<Node>("gpus = \"8 x 0xzz\"").unwrap_err();
        assert!(error.to_string().contains("`0xzz`"), "{error}");
        let back = serde_json::to_string(&node.gpus).unwrap();
        assert_eq!(back, "\"8 x 0x2330\"");
    }

    #[test]
    fn check_accepts_the_profile_and_nothing_else() {
        let inventory = eight_h100();
        profile("8 x 0x2330").check(&inventory).unwrap();
        profile("none").check(&GpuInventory::default()).unwrap();

        let mut missing = inventory.clone();
        missing.devices.remove(0);
        let error = profile("8 x 0x2330").check(&missing).unwrap_err();
        assert_eq!(
            error.to_string(),
            "GPU inventory does not match the profile `8 x 0x2330`: expected 8 x 0x2330, \
             found 7 x 0x2330 (0000:3d:00.0, 0000:63:00.0, 0000:86:00.0, 0000:99:00.0, \
             0000:b8:00.0, 0000:cc:00.0, 0000:e0:00.0)"
        );

        let mut extra = inventory.clone();
        extra.devices.push(GpuDevice {
            device: 0x1eb8,
            class: 0x030200,
            ..h100("0000:f0:00.0")
        });
        let error = profile("8 x 0x2330").check(&extra).unwrap_err();
        assert_eq!(
            error.problems,
            [GpuDiscrepancy::Unexpected {
                device: 0x1eb8,
                addresses: vec!["0000:f0:00.0".to_owned()],
            }]
        );
        assert!(
            error
                .to_string()
                .ends_with("unexpected device 0x1eb8 x 1 (0000:f0:00.0)"),
            "{error}"
        );

        let error = profile("8 x 0x2330 + 2 x 0x22a3")
            .check(&GpuInventory::default())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("expected 2 x 0x22a3, found none; expected 8 x 0x2330, found none"),
            "{error}"
        );
        assert!(profile("none").check(&inventory).is_err());
        assert!(profile("9 x 0x2330").check(&inventory).is_err());
    }

    #[test]
    fn canonical_bytes_are_compact_sorted_json() {
        let inventory = eight_h100();
        let bytes = inventory.canonical_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with(
                "{\"devices\":[{\"address\":\"0000:17:00.0\",\"device\":9008,\"class\":197120,\
                 \"link-width\":16,\"link-speed\":\"32.0 GT/s PCIe\"}"
            ),
            "{text}"
        );
        assert!(text.ends_with("],\"driver\":\"535.261.03\"}"), "{text}");
        assert_eq!(GpuInventory::from_canonical(&bytes).unwrap(), inventory);
        assert_eq!(inventory.sha256(), <[u8; 32]>::from(Sha256::digest(&bytes)));

        // Unsorted devices encode as the sorted inventory would.
        let mut shuffled = inventory.clone();
        shuffled.devices.reverse();
        assert_eq!(shuffled.canonical_bytes(), bytes);
        let mut slower = inventory.clone();
        slower.devices[3].link_speed = Some("16.0 GT/s PCIe".to_owned());
        assert_ne!(slower.sha256(), inventory.sha256());
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let inventory = eight_h100();
        let pretty = serde_json::to_vec_pretty(&inventory).unwrap();
        let unsorted = {
            let mut reversed = inventory.clone();
            reversed.devices.reverse();
            serde_json::to_vec(&reversed).unwrap()
        };
        let escaped = String::from_utf8(inventory.canonical_bytes())
            .unwrap()
            .replace("535.261.03", "535\\u002e261.03");
        for bytes in [pretty, unsorted, escaped.into_bytes()] {
            let error = GpuInventory::from_canonical(&bytes).unwrap_err();
            assert!(
                matches!(error, GpuInventoryError::NotCanonical { .. }),
                "{error}"
            );
        }

        let mut twice = inventory.clone();
        twice.devices.insert(0, inventory.devices[0].clone());
        let error = GpuInventory::from_canonical(&twice.canonical_bytes()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("0000:17:00.0 appears more than once"),
            "{error}"
        );

        for bytes in [
            &b""[..],
            b"{\"devices\":[],\"driver\":null,\"vendor\":4318}",
            b"{\"devices\":[{\"address\":\"0000:17:00.0\",\"device\":70000,\"class\":0,\"link-width\":null,\"link-speed\":null}],\"driver\":null}",
        ] {
            assert!(matches!(
                GpuInventory::from_canonical(bytes),
                Err(GpuInventoryError::Decode(_))
            ));
        }
    }

    fn any_device() -> impl Strategy<Value = GpuDevice> {
        (
            "[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]",
            any::<u16>(),
            0u32..0x100_0000,
            proptest::option::of(any::<u8>()),
            proptest::option::of("\\PC{0,24}"),
        )
            .prop_map(
                |(address, device, class, link_width, link_speed)| GpuDevice {
                    address,
                    device,
                    class,
                    link_width,
                    link_speed,
                },
            )
    }

    proptest! {
        #[test]
        fn profile_parse_never_panics(text in "\\PC{0,64}") {
            let _ = text.parse::<GpuProfile>();
        }

        #[test]
        fn profile_parse_never_panics_on_near_misses(text in "[0-9x +a-fA-FnoeX]{0,40}") {
            if let Ok(parsed) = text.parse::<GpuProfile>() {
                prop_assert_eq!(parsed.to_string().parse::<GpuProfile>(), Ok(parsed));
            }
        }

        #[test]
        fn profile_display_round_trips(
            counts in proptest::collection::btree_map(any::<u16>(), 1u32.., 0..6)
        ) {
            let profile = GpuProfile::new(counts);
            prop_assert_eq!(profile.to_string().parse::<GpuProfile>(), Ok(profile));
        }

        #[test]
        fn canonical_bytes_round_trip(
            devices in proptest::collection::btree_map(
                "[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]", any_device(), 0..10),
            driver in proptest::option::of("\\PC{0,16}"),
        ) {
            let devices = devices
                .into_iter()
                .map(|(address, device)| GpuDevice { address, ..device })
                .collect();
            let inventory = GpuInventory::new(devices, driver);
            let bytes = inventory.canonical_bytes();
            prop_assert_eq!(GpuInventory::from_canonical(&bytes).unwrap(), inventory);
        }

        #[test]
        fn from_canonical_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(inventory) = GpuInventory::from_canonical(&bytes) {
                prop_assert_eq!(inventory.canonical_bytes(), bytes);
            }
        }

        #[test]
        fn check_passes_exactly_when_counts_match(
            devices in proptest::collection::vec(any_device(), 0..8),
            counts in proptest::collection::btree_map(any::<u16>(), 1u32..4, 0..3),
        ) {
            let inventory = GpuInventory::new(devices, None);
            let profile = GpuProfile::new(counts);
            let mut found: BTreeMap<u16, u32> = BTreeMap::new();
            for device in &inventory.devices {
                *found.entry(device.device).or_default() += 1;
            }
            let expected: BTreeMap<u16, u32> = profile.counts().collect();
            prop_assert_eq!(profile.check(&inventory).is_ok(), found == expected);
            let exact = GpuProfile::new(found);
            prop_assert!(exact.check(&inventory).is_ok());
        }
    }
}
