//! The node's GPU inventory, read from sysfs: every PCI function of vendor
//! 0x10de under `bus/pci/devices`, and the `nvidia` module's version.
//!
//! A missing `bus/pci/devices` is an error, not an empty inventory: a node
//! that cannot read its PCI bus must not pass for a node without GPUs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::attest::gpu::{GpuDevice, GpuInventory, NVIDIA_VENDOR};

/// Why the GPU inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GpuReadError {
    /// A directory of the PCI bus could not be listed.
    #[error("listing PCI devices in {path}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A device directory's name is not UTF-8, so it is no PCI address.
    #[error("PCI device entry {path} is not a UTF-8 name")]
    Address {
        /// The entry.
        path: PathBuf,
    },
    /// A file every PCI device has could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A sysfs file does not hold what the kernel writes there.
    #[error("{path}: expected {expected}, found {found:?}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the kernel writes there.
        expected: &'static str,
        /// What the file holds (at most 64 bytes of it).
        found: String,
    },
}

/// Reads the NVIDIA PCI functions and driver version under `sysfs`
/// (normally `/sys`), devices sorted by address.
pub fn read_inventory(sysfs: &Path) -> Result<GpuInventory, GpuReadError> {
    let devices = read_pci_devices(sysfs, NVIDIA_VENDOR)?;
    let driver = read_driver_version(sysfs)?;
    let inventory = GpuInventory::new(devices, driver);
    tracing::debug!(
        devices = inventory.devices.len(),
        driver = inventory.driver.as_deref().unwrap_or("none"),
        "GPU inventory"
    );
    Ok(inventory)
}

/// The PCI functions of one vendor under `<sysfs>/bus/pci/devices`, in
/// directory order. Entries are symlinks into `devices/`; reading through
/// them follows them.
fn read_pci_devices(sysfs: &Path, vendor: u16) -> Result<Vec<GpuDevice>, GpuReadError> {
    let bus = sysfs.join("bus/pci/devices");
    let list = |source| GpuReadError::List {
        path: bus.clone(),
        source,
    };
    let mut devices = Vec::new();
    for entry in fs::read_dir(&bus).map_err(list)? {
        let dir = entry.map_err(list)?.path();
        if let Some(device) = read_pci_device(&dir, vendor)? {
            devices.push(device);
        }
    }
    Ok(devices)
}

/// One function, or none when it belongs to another vendor.
fn read_pci_device(dir: &Path, vendor: u16) -> Result<Option<GpuDevice>, GpuReadError> {
    if read_hex(&dir.join("vendor"), 4)? != u32::from(vendor) {
        return Ok(None);
    }
    let address = dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| GpuReadError::Address {
            path: dir.to_owned(),
        })?
        .to_owned();
    let device =
        u16::try_from(read_hex(&dir.join("device"), 4)?).expect("four hex digits fit in 16 bits");
    let class = read_hex(&dir.join("class"), 6)?;
    let width_path = dir.join("current_link_width");
    let link_width = match read_optional(&width_path) {
        Some(text) => Some(
            text.parse::<u8>()
                .map_err(|_| malformed(&width_path, "a lane count", &text))?,
        ),
        None => None,
    };
    let link_speed = read_optional(&dir.join("current_link_speed"));
    Ok(Some(GpuDevice {
        address,
        device,
        class,
        link_width,
        link_speed,
    }))
}

/// `<sysfs>/module/nvidia/version`, absent when the module is not loaded.
fn read_driver_version(sysfs: &Path) -> Result<Option<String>, GpuReadError> {
    let path = sysfs.join("module/nvidia/version");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let version = text.trim();
            if version.is_empty() || version.contains(char::is_whitespace) {
                return Err(malformed(&path, "a driver version", &text));
            }
            Ok(Some(version.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(GpuReadError::Read { path, source }),
    }
}

/// A link attribute: absent on functions without a PCIe capability, and
/// unreadable when the kernel cannot read the link status (a device in
/// D3cold), so both are "unknown", not an error.
fn read_optional(path: &Path) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(text) => Some(text.trim_end_matches('\n').to_owned()),
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "PCI link attribute unreadable");
            }
            None
        }
    }
}

/// `0x` and exactly `digits` lowercase hex digits, then a newline: the
/// kernel's `%#06x` / `%#08x` spelling of vendor, device and class.
fn read_hex(path: &Path, digits: usize) -> Result<u32, GpuReadError> {
    let text = fs::read_to_string(path).map_err(|source| GpuReadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let expected = if digits == 4 {
        "0x and 4 hex digits"
    } else {
        "0x and 6 hex digits"
    };
    text.strip_suffix('\n')
        .unwrap_or(&text)
        .strip_prefix("0x")
        .filter(|hex| hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| malformed(path, expected, &text))
}

fn malformed(path: &Path, expected: &'static str, text: &str) -> GpuReadError {
    GpuReadError::Malformed {
        path: path.to_owned(),
        expected,
        found: text.chars().take(64).collect(),
    }
}

/// Writes a sysfs-shaped tree under `root` holding `devices` (vendor
/// 0x10de), a virtio NIC (vendor 0x1af4, which the reader must skip) and,
/// when given, the `nvidia` module's version: the real layout, with
/// `bus/pci/devices/<address>` symlinks into `devices/pci0000:00/`.
#[cfg(any(test, feature = "testkit"))]
pub fn write_fixture(root: &Path, devices: &[GpuDevice], driver: Option<&str>) -> io::Result<()> {
    const NIC_ADDRESS: &str = "0000:00:03.0";
    if devices.iter().any(|d| d.address == NIC_ADDRESS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("GPU fixture: {NIC_ADDRESS} is the fixture's virtio NIC"),
        ));
    }
    let nic = GpuDevice {
        address: NIC_ADDRESS.to_owned(),
        device: 0x1041,
        class: 0x020000,
        link_width: None,
        link_speed: None,
    };
    write_fixture_device(root, 0x1af4, &nic)?;
    for device in devices {
        write_fixture_device(root, NVIDIA_VENDOR, device)?;
    }
    if let Some(version) = driver {
        let module = root.join("module/nvidia");
        fs::create_dir_all(&module)?;
        fs::write(module.join("version"), format!("{version}\n"))?;
    }
    Ok(())
}

#[cfg(any(test, feature = "testkit"))]
fn write_fixture_device(root: &Path, vendor: u16, device: &GpuDevice) -> io::Result<()> {
    let dir = root.join("devices/pci0000:00").join(&device.address);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("vendor"), format!("{vendor:#06x}\n"))?;
    fs::write(dir.join("device"), format!("{:#06x}\n", device.device))?;
    fs::write(dir.join("class"), format!("{:#08x}\n", device.class))?;
    if let Some(width) = device.link_width {
        fs::write(dir.join("current_link_width"), format!("{width}\n"))?;
    }
    if let Some(speed) = &device.link_speed {
        fs::write(dir.join("current_link_speed"), format!("{speed}\n"))?;
    }
    let bus = root.join("bus/pci/devices");
    fs::create_dir_all(&bus)?;
    let target = Path::new("../../../devices/pci0000:00").join(&device.address);
    std::os::unix::fs::symlink(target, bus.join(&device.address))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::attest::gpu::GpuProfile;

    fn h100(bus: u8) -> GpuDevice {
        GpuDevice {
            address: format!("0000:{bus:02x}:00.0"),
            device: 0x2330,
            class: 0x030200,
            link_width: Some(16),
            link_speed: Some("32.0 GT/s PCIe".to_owned()),
        }
    }

    fn fixture(devices: &[GpuDevice], driver: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        write_fixture(root.path(), devices, driver).unwrap();
        root
    }

    #[test]
    fn eight_h100_fixture_reads_back_exactly() {
        let devices: Vec<GpuDevice> = [0xe0, 0x17, 0x3d, 0x63, 0x86, 0x99, 0xb8, 0xcc]
            .into_iter()
            .map(h100)
            .collect();
        let root = fixture(&devices, Some("535.261.03"));
        // The virtio NIC is on the bus too, and every entry is a symlink.
        let entries: Vec<_> = fs::read_dir(root.path().join("bus/pci/devices"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 9);
        assert!(entries.iter().all(|e| e.is_symlink()));

        let inventory = read_inventory(root.path()).unwrap();
        assert_eq!(
            inventory,
            GpuInventory::new(devices, Some("535.261.03".to_owned()))
        );
        assert_eq!(inventory.devices[0].address, "0000:17:00.0");
        "8 x 0x2330"
            .parse::<GpuProfile>()
            .unwrap()
            .check(&inventory)
            .unwrap();
        let error = "8 x 0x2330"
            .parse::<GpuProfile>()
            .unwrap()
            .check(&read_inventory(fixture(&[h100(0x17)], None).path()).unwrap())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("found 1 x 0x2330 (0000:17:00.0)"),
            "{error}"
        );
    }

    #[test]
    fn absent_and_unreadable_link_files_are_unknown() {
        let bare = GpuDevice {
            address: "0000:41:00.1".to_owned(),
            device: 0x22a3,
            class: 0x068000,
            link_width: None,
            link_speed: None,
        };
        let root = fixture(&[bare.clone(), h100(0x17)], None);
        // A directory where the file should be: read fails (EISDIR) even
        // as root, as a link status the kernel cannot read would.
        let dir = root.path().join("devices/pci0000:00/0000:17:00.0");
        fs::remove_file(dir.join("current_link_width")).unwrap();
        fs::create_dir(dir.join("current_link_width")).unwrap();

        let inventory = read_inventory(root.path()).unwrap();
        assert_eq!(inventory.driver, None);
        assert_eq!(
            inventory.devices,
            [
                GpuDevice {
                    link_width: None,
                    ..h100(0x17)
                },
                bare
            ]
        );
    }

    #[test]
    fn malformed_files_are_named() {
        let root = fixture(&[h100(0x17), h100(0x3d)], Some("535.261.03"));
        let dir = root.path().join("bus/pci/devices/0000:3d:00.0");
        let cases = [
            ("vendor", "10de\n", "0000:3d:00.0/vendor"),
            ("vendor", "0x10de0\n", "0000:3d:00.0/vendor"),
            ("device", "0x23g0\n", "0000:3d:00.0/device"),
            ("class", "0x0302\n", "0000:3d:00.0/class"),
            (
                "current_link_width",
                "x16\n",
                "0000:3d:00.0/current_link_width",
            ),
        ];
        for (file, content, named) in cases {
            let original = fs::read(dir.join(file)).unwrap();
            fs::write(dir.join(file), content).unwrap();
            let error = read_inventory(root.path()).unwrap_err();
            assert!(matches!(error, GpuReadError::Malformed { .. }), "{error}");
            let message = error.to_string();
            assert!(message.contains(named), "{file}: {message}");
            assert!(message.contains(content.trim_end()), "{message}");
            fs::write(dir.join(file), original).unwrap();
        }
        read_inventory(root.path()).unwrap();

        fs::write(root.path().join("module/nvidia/version"), "\n").unwrap();
        let error = read_inventory(root.path()).unwrap_err().to_string();
        assert!(error.contains("module/nvidia/version"), "{error}");

        fs::remove_file(dir.join("device")).unwrap();
        let error = read_inventory(root.path()).unwrap_err();
        assert!(matches!(error, GpuReadError::Read { .. }), "{error}");
        assert!(error.to_string().contains("0000:3d:00.0/device"), "{error}");
    }

    #[test]
    fn a_missing_pci_bus_is_an_error_not_an_empty_inventory() {
        let root = tempfile::tempdir().unwrap();
        let error = read_inventory(root.path()).unwrap_err();
        assert!(matches!(error, GpuReadError::List { .. }), "{error}");
        assert!(error.to_string().contains("bus/pci/devices"), "{error}");
    }

    #[test]
    fn fixture_refuses_to_overwrite_its_nic() {
        let root = tempfile::tempdir().unwrap();
        let clash = GpuDevice {
            address: "0000:00:03.0".to_owned(),
            ..h100(0)
        };
        let error = write_fixture(root.path(), &[clash], None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    /// Every PCI function per `lspci -mm -n -D`: (vendor, address,
    /// device, class >> 8), sorted.
    fn lspci() -> Vec<(u16, String, u16, u16)> {
        let out = Command::new("lspci")
            .args(["-mm", "-n", "-D"])
            .output()
            .expect("lspci (pciutils, scripts/deps.sh) runs");
        assert!(out.status.success(), "lspci: {out:?}");
        let mut devices: Vec<_> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let hex = |i: usize| u16::from_str_radix(fields[i].trim_matches('"'), 16).unwrap();
                (hex(2), fields[0].to_owned(), hex(3), hex(1))
            })
            .collect();
        devices.sort();
        devices
    }

    fn summary(vendor: u16, devices: &[GpuDevice]) -> Vec<(u16, String, u16, u16)> {
        let mut summary: Vec<_> = devices
            .iter()
            .map(|d| (vendor, d.address.clone(), d.device, (d.class >> 8) as u16))
            .collect();
        summary.sort();
        summary
    }

    #[test]
    fn real_sysfs_agrees_with_lspci() {
        // This machine has no NVIDIA GPU, so the inventory is lspci's
        // (empty) list; reading every other vendor's functions the same
        // way proves the walk itself copes with real sysfs (symlinked
        // entries, functions without PCIe link files).
        let all = lspci();
        assert!(!all.is_empty(), "lspci lists no PCI function at all");
        let inventory = read_inventory(Path::new("/sys")).unwrap();
        let nvidia: Vec<_> = all
            .iter()
            .filter(|d| d.0 == NVIDIA_VENDOR)
            .cloned()
            .collect();
        assert_eq!(summary(NVIDIA_VENDOR, &inventory.devices), nvidia);

        let mut vendors: Vec<u16> = all.iter().map(|d| d.0).collect();
        vendors.dedup();
        let mut read = Vec::new();
        for vendor in vendors {
            read.extend(summary(
                vendor,
                &read_pci_devices(Path::new("/sys"), vendor).unwrap(),
            ));
        }
        read.sort();
        assert_eq!(read, all);
    }
}
