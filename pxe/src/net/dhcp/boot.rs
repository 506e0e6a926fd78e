//! What a network-booting client is told to load: the client-architecture
//! map of the design.
//!
//! | client says                                | answer                                  |
//! | ------------------------------------------ | --------------------------------------- |
//! | user class `iPXE` or option 175            | HTTP `<base>/boot/<mac>.ipxe`            |
//! | vendor class `HTTPClient`, arch 16         | HTTP `<base>/ipxe/<uefi-x64>`, class `HTTPClient` |
//! | vendor class `HTTPClient`, arch 19         | HTTP `<base>/ipxe/<uefi-arm64>` if configured |
//! | option 93 = 0 (or `PXEClient` without 93)  | TFTP `<bios>` (`undionly.kpxe`)          |
//! | option 93 = 6, 7, 9                        | TFTP `<uefi-x64>` (`snponly.efi`)        |
//! | option 93 = 11                             | TFTP `<uefi-arm64>` if configured        |
//!
//! iPXE is recognised before anything else, so the iPXE that the firmware
//! just loaded gets its script and never loads itself again. A node's
//! `boot-file` replaces the firmware-stage binary, never the script.

use crate::site::{MacAddr, Node, Site};

use super::packet::Request;

/// Client system architecture types (RFC 4578, IANA registry).
pub mod arch {
    /// x86 BIOS.
    pub const BIOS: u16 = 0;
    /// x86 (IA32) UEFI.
    pub const UEFI_IA32: u16 = 6;
    /// x86-64 UEFI (the EFI BC code some firmware sends).
    pub const UEFI_BC: u16 = 7;
    /// x86-64 UEFI.
    pub const UEFI_X64: u16 = 9;
    /// arm64 UEFI.
    pub const UEFI_ARM64: u16 = 11;
    /// x86-64 UEFI HTTP boot.
    pub const UEFI_X64_HTTP: u16 = 16;
    /// arm64 UEFI HTTP boot.
    pub const UEFI_ARM64_HTTP: u16 = 19;
}

/// How the boot file is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TFTP from next-server (siaddr, option 66).
    Tftp,
    /// An HTTP URL in the file field and option 67.
    Http,
}

/// Which stage of the chain the client is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Firmware (PXE ROM, UEFI PXE or UEFI HTTP): load an iPXE binary.
    Firmware,
    /// iPXE: fetch the node's script.
    Ipxe,
}

/// The boot answer for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootChoice {
    /// File name (TFTP) or URL (HTTP), as it goes in `file` and option 67.
    pub file: String,
    /// TFTP or HTTP.
    pub transport: Transport,
    /// Firmware or iPXE.
    pub stage: Stage,
    /// Option 60 to send back: `PXEClient`, `HTTPClient`, or none for a
    /// client that sent neither.
    pub vendor_class: Option<&'static str>,
    /// Legacy BIOS PXE: send PXE discovery control "boot the file in this
    /// offer" (option 43, sub-option 6 = 8) so the ROM skips boot server
    /// discovery and menus.
    pub bios_discovery_control: bool,
}

/// The outcome of looking at a client's boot identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// Boot this.
    Boot(BootChoice),
    /// Not a network-boot client (an OS or the agent doing plain DHCP).
    NotBooting,
    /// A boot client this site has nothing for (architecture with no
    /// binary configured).
    Unsupported {
        /// Option 93, if sent.
        arch: Option<u16>,
    },
}

/// Chooses the boot file for `req` from `node` (if the MAC is known) and the
/// site's `[boot]` table.
pub fn choose(req: &Request, site: &Site, node: Option<&Node>) -> BootOutcome {
    let class = reply_class(req);
    if req.ipxe {
        return BootOutcome::Boot(BootChoice {
            file: script_url(site, &req.mac),
            transport: Transport::Http,
            stage: Stage::Ipxe,
            vendor_class: class,
            bios_discovery_control: false,
        });
    }
    let boot = &site.config.boot;
    let override_file = node.and_then(|n| n.config.boot_file.as_deref());
    let pick = |default: Option<&String>| {
        override_file
            .or(default.map(String::as_str))
            .map(str::to_owned)
    };
    if req.is_http_client() {
        let file = match req.arch {
            Some(arch::UEFI_X64_HTTP) => pick(Some(&boot.uefi_x64)),
            Some(arch::UEFI_ARM64_HTTP) => pick(boot.uefi_arm64.as_ref()),
            _ => None,
        };
        return match file {
            Some(f) => BootOutcome::Boot(BootChoice {
                file: format!("{}/ipxe/{f}", site.http_base()),
                transport: Transport::Http,
                stage: Stage::Firmware,
                vendor_class: Some("HTTPClient"),
                bios_discovery_control: false,
            }),
            None => BootOutcome::Unsupported { arch: req.arch },
        };
    }
    let arch = match (req.arch, req.is_pxe_client()) {
        (Some(a), _) => a,
        (None, true) => arch::BIOS,
        (None, false) => return BootOutcome::NotBooting,
    };
    let file = match arch {
        arch::BIOS => pick(Some(&boot.bios)),
        arch::UEFI_IA32 | arch::UEFI_BC | arch::UEFI_X64 => pick(Some(&boot.uefi_x64)),
        arch::UEFI_ARM64 => pick(boot.uefi_arm64.as_ref()),
        _ => None,
    };
    match file {
        Some(file) => BootOutcome::Boot(BootChoice {
            file,
            transport: Transport::Tftp,
            stage: Stage::Firmware,
            vendor_class: class.or(Some("PXEClient")),
            bios_discovery_control: arch == arch::BIOS,
        }),
        None => BootOutcome::Unsupported { arch: Some(arch) },
    }
}

/// The per-node iPXE script URL: `<base>/boot/<mac>.ipxe`, MAC lowercase
/// with hyphens.
pub fn script_url(site: &Site, mac: &MacAddr) -> String {
    format!("{}/boot/{}.ipxe", site.http_base(), mac.to_hyphenated())
}

fn reply_class(req: &Request) -> Option<&'static str> {
    if req.is_http_client() {
        Some("HTTPClient")
    } else if req.is_pxe_client() {
        Some("PXEClient")
    } else {
        None
    }
}
