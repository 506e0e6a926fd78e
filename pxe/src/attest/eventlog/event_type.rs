//! The registry of event types: TCG PC Client Platform Firmware Profile
//! (PFP) 1.06, section 10.4.1, plus the EFI types of section 10.4.2.
//!
//! The event type is *not* covered by an event's digest (facts.md): a log
//! can relabel an event freely. A verifier therefore rejects types it does
//! not know in any PCR its policy checks; [`EventType::is_known`] is that
//! registry.

use std::fmt;

/// An event type (`TCG_EVENTTYPE`), known or not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

macro_rules! event_types {
    ($($(#[$doc:meta])* $konst:ident = $value:expr;)*) => {
        impl EventType {
            $( $(#[$doc])* pub const $konst: Self = Self($value); )*
        }
        /// Every type this crate knows, with its spec name.
        const REGISTRY: &[(EventType, &str)] = &[
            $( (EventType::$konst, concat!("EV_", stringify!($konst))), )*
        ];
    };
}

event_types! {
    /// Reserved; the spec says platforms do not use it.
    PREBOOT_CERT = 0x0000_0000;
    /// A POST code, or a description of an embedded firmware blob.
    POST_CODE = 0x0000_0001;
    /// Not extended: informational (Spec ID, StartupLocality, ...).
    NO_ACTION = 0x0000_0003;
    /// The boundary between pre-OS and OS-present measurements.
    SEPARATOR = 0x0000_0004;
    /// An ASCII action string (pre-EFI).
    ACTION = 0x0000_0005;
    /// A tagged event (`TCG_PCClientTaggedEvent`): vendor data under an ID.
    EVENT_TAG = 0x0000_0006;
    /// The S-CRTM's contents.
    S_CRTM_CONTENTS = 0x0000_0007;
    /// The S-CRTM's version (UTF-16 string or GUID).
    S_CRTM_VERSION = 0x0000_0008;
    /// CPU microcode.
    CPU_MICROCODE = 0x0000_0009;
    /// Platform configuration flags.
    PLATFORM_CONFIG_FLAGS = 0x0000_000A;
    /// A table of devices.
    TABLE_OF_DEVICES = 0x0000_000B;
    /// A compact hash (opaque data).
    COMPACT_HASH = 0x0000_000C;
    /// Initial program loader code (deprecated by the PFP; used by
    /// systemd-stub and GRUB for PCRs 8-12).
    IPL = 0x0000_000D;
    /// IPL partition data (deprecated).
    IPL_PARTITION_DATA = 0x0000_000E;
    /// Code of a non-host environment (e.g. a management engine).
    NONHOST_CODE = 0x0000_000F;
    /// Configuration of a non-host environment.
    NONHOST_CONFIG = 0x0000_0010;
    /// Information about a non-host environment.
    NONHOST_INFO = 0x0000_0011;
    /// Boot device events are omitted from PCR 4/5.
    OMIT_BOOT_DEVICE_EVENTS = 0x0000_0012;
    /// A POST code with a description (PFP 1.06).
    POST_CODE2 = 0x0000_0013;
    /// A UEFI variable of the platform configuration (Secure Boot keys, ...).
    EFI_VARIABLE_DRIVER_CONFIG = 0x8000_0001;
    /// A boot variable (BootOrder, Boot####); the digest covers the
    /// variable data only.
    EFI_VARIABLE_BOOT = 0x8000_0002;
    /// An EFI application loaded from a boot option (PCR 4).
    EFI_BOOT_SERVICES_APPLICATION = 0x8000_0003;
    /// A boot services driver (PCR 2 for option ROMs).
    EFI_BOOT_SERVICES_DRIVER = 0x8000_0004;
    /// A runtime services driver.
    EFI_RUNTIME_SERVICES_DRIVER = 0x8000_0005;
    /// The GPT of the boot disk (PCR 5).
    EFI_GPT_EVENT = 0x8000_0006;
    /// An EFI action string (PCR 4/5/7).
    EFI_ACTION = 0x8000_0007;
    /// A firmware blob: base and length.
    EFI_PLATFORM_FIRMWARE_BLOB = 0x8000_0008;
    /// UEFI configuration tables handed to the OS.
    EFI_HANDOFF_TABLES = 0x8000_0009;
    /// A firmware blob with a description (PFP 1.05+).
    EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000_000A;
    /// Handoff tables with a description (PFP 1.05+).
    EFI_HANDOFF_TABLES2 = 0x8000_000B;
    /// A boot variable whose digest covers the whole `UEFI_VARIABLE_DATA`.
    EFI_VARIABLE_BOOT2 = 0x8000_000C;
    /// The GPT with disk and partition GUIDs zeroed (PFP 1.06).
    EFI_GPT_EVENT2 = 0x8000_000D;
    /// The H-CRTM measured data.
    EFI_HCRTM_EVENT = 0x8000_0010;
    /// The Secure Boot database entry that authorised an image (PCR 7).
    EFI_VARIABLE_AUTHORITY = 0x8000_00E0;
    /// An SPDM device firmware measurement.
    EFI_SPDM_FIRMWARE_BLOB = 0x8000_00E1;
    /// An SPDM device configuration measurement.
    EFI_SPDM_FIRMWARE_CONFIG = 0x8000_00E2;
    /// An SPDM device policy (PFP 1.06).
    EFI_SPDM_DEVICE_POLICY = 0x8000_00E3;
    /// The SPDM authority for a device (PFP 1.06).
    EFI_SPDM_DEVICE_AUTHORITY = 0x8000_00E4;
}

impl EventType {
    /// The spec name (`EV_...`) of a known type.
    pub fn name(self) -> Option<&'static str> {
        REGISTRY
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, name)| *name)
    }

    /// Whether the type is in the registry.
    pub fn is_known(self) -> bool {
        self.name().is_some()
    }

    /// Every known type.
    pub fn known() -> impl Iterator<Item = EventType> {
        REGISTRY.iter().map(|(t, _)| *t)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown event type {:#010x}", self.0),
        }
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_and_values_agree_with_the_spec() {
        assert_eq!(
            EventType(0x8000_0003).name(),
            Some("EV_EFI_BOOT_SERVICES_APPLICATION")
        );
        assert_eq!(EventType(0x0000_000D).name(), Some("EV_IPL"));
        assert_eq!(
            EventType(0x8000_00E0).name(),
            Some("EV_EFI_VARIABLE_AUTHORITY")
        );
        // EV_UNUSED and the EFI base value are not events.
        assert!(!EventType(0x0000_0002).is_known());
        assert!(!EventType(0x8000_0000).is_known());
        let mut values: Vec<u32> = EventType::known().map(|t| t.0).collect();
        let count = values.len();
        values.dedup();
        assert_eq!(values.len(), count, "no value registered twice");
    }
}
