//! What a kernel offers modules: its release, the vermagic flags its
//! configuration implies, and the symbols it exports with their CRCs.
//!
//! Sources, best first:
//! - the linux-headers flavour directory (`/usr/src/linux-headers-REL`):
//!   `include/generated/utsrelease.h`, `.config`, `Module.symvers`
//!   (`CRC<TAB>symbol<TAB>module<TAB>export-type<TAB>namespace`, every
//!   export of vmlinux and of every in-tree module);
//! - the image's `/boot/config-REL` and `/boot/System.map-REL`: names of
//!   vmlinux's exports only, no CRCs, no GPL flag, so CRC, GPL-only and
//!   namespace checks cannot be made (the report says so). Debian's
//!   System.map is a placeholder (the real one is in linux-image-*-dbg):
//!   refused with [`KmodError::NoExports`], so Debian images need the
//!   headers package.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::KmodError;

/// A vermagic string, split: `6.1.0-50-cloud-amd64 SMP preempt mod_unload
/// modversions ` is release `6.1.0-50-cloud-amd64` and four flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vermagic {
    /// The kernel release (UTS_RELEASE).
    pub release: String,
    /// The flags, in order.
    pub flags: Vec<String>,
}

impl Vermagic {
    /// Splits a vermagic string on whitespace; `None` when it is empty.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let release = words.next()?.to_owned();
        Some(Self {
            release,
            flags: words.map(str::to_owned).collect(),
        })
    }

    /// The flags `include/linux/vermagic.h` (Linux 6.1, x86-64) derives
    /// from a kernel `.config`. `CONFIG_RANDSTRUCT` adds a per-build hash
    /// that the configuration does not hold: refused.
    pub fn from_config(release: &str, config: &str, path: &Path) -> Result<Self, KmodError> {
        let enabled = |option: &str| {
            config
                .lines()
                .any(|l| l.strip_prefix(option).is_some_and(|rest| rest == "=y"))
        };
        if enabled("CONFIG_RANDSTRUCT_FULL") || enabled("CONFIG_RANDSTRUCT_PERFORMANCE") {
            return Err(KmodError::Syntax {
                path: path.to_owned(),
                line: 0,
                what: "CONFIG_RANDSTRUCT: the vermagic carries a build hash the configuration does not hold",
            });
        }
        let mut flags = Vec::new();
        let mut flag = |on: bool, name: &str| {
            if on {
                flags.push(name.to_owned());
            }
        };
        flag(enabled("CONFIG_SMP"), "SMP");
        if enabled("CONFIG_PREEMPT_BUILD") {
            flag(true, "preempt");
        } else {
            flag(enabled("CONFIG_PREEMPT_RT"), "preempt_rt");
        }
        flag(enabled("CONFIG_MODULE_UNLOAD"), "mod_unload");
        flag(enabled("CONFIG_MODVERSIONS"), "modversions");
        Ok(Self {
            release: release.to_owned(),
            flags,
        })
    }

    /// Whether modules were built with symbol CRCs (`modversions`).
    pub fn modversions(&self) -> bool {
        self.flags.iter().any(|f| f == "modversions")
    }
}

impl fmt::Display for Vermagic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.release)?;
        for flag in &self.flags {
            write!(f, " {flag}")?;
        }
        Ok(())
    }
}

/// Who exports a symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportSource {
    /// The kernel image itself.
    Vmlinux,
    /// An in-tree module, by its path without `.ko` (`fs/fat/fat`).
    InTreeModule(String),
}

impl fmt::Display for ExportSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vmlinux => f.write_str("vmlinux"),
            Self::InTreeModule(path) => f.write_str(path),
        }
    }
}

/// One symbol the kernel build exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelExport {
    /// Who exports it.
    pub source: ExportSource,
    /// Its CRC; `None` when the source has none (System.map).
    pub crc: Option<u32>,
    /// `EXPORT_SYMBOL_GPL`; `None` when the source does not say.
    pub gpl_only: Option<bool>,
    /// Its namespace, if any.
    pub namespace: Option<String>,
}

/// A kernel as modules see it.
#[derive(Debug, Clone)]
pub struct KernelAbi {
    /// The vermagic modules must carry.
    pub vermagic: Vermagic,
    /// Exports by symbol name.
    pub exports: HashMap<String, KernelExport>,
    /// Whether the export list carries CRCs (Module.symvers does).
    pub has_crcs: bool,
    /// Where the exports were read from (for reports).
    pub symbols_from: PathBuf,
}

fn read_text(path: &Path) -> Result<String, KmodError> {
    let bytes = std::fs::read(path).map_err(|source| KmodError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl KernelAbi {
    /// From a linux-headers flavour directory
    /// (`usr/src/linux-headers-6.1.0-50-cloud-amd64` of the headers
    /// package, unpacked anywhere).
    pub fn from_headers(dir: &Path) -> Result<Self, KmodError> {
        let uts_path = dir.join("include/generated/utsrelease.h");
        let uts = read_text(&uts_path)?;
        let release = uts
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("#define UTS_RELEASE")?.trim();
                rest.strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
            })
            .ok_or(KmodError::Syntax {
                path: uts_path,
                line: 1,
                what: "expected #define UTS_RELEASE \"...\"",
            })?;
        let config_path = dir.join(".config");
        let vermagic = Vermagic::from_config(&release, &read_text(&config_path)?, &config_path)?;
        let symvers_path = dir.join("Module.symvers");
        let exports = parse_symvers(&read_text(&symvers_path)?, &symvers_path)?;
        Ok(Self {
            vermagic,
            exports,
            has_crcs: true,
            symbols_from: symvers_path,
        })
    }

    /// From an installed image root: `/boot/config-REL` and
    /// `/boot/System.map-REL` (vmlinux's export names only, no CRCs).
    pub fn from_image(root: &Path, release: &str) -> Result<Self, KmodError> {
        let config_path = root.join(format!("boot/config-{release}"));
        let vermagic = Vermagic::from_config(release, &read_text(&config_path)?, &config_path)?;
        let map_path = root.join(format!("boot/System.map-{release}"));
        let exports = parse_system_map(&read_text(&map_path)?, &map_path)?;
        Ok(Self {
            vermagic,
            exports,
            has_crcs: false,
            symbols_from: map_path,
        })
    }

    /// From parts (Module.symvers text), for kernels known otherwise.
    pub fn from_symvers(vermagic: Vermagic, symvers: &str, path: &Path) -> Result<Self, KmodError> {
        Ok(Self {
            vermagic,
            exports: parse_symvers(symvers, path)?,
            has_crcs: true,
            symbols_from: path.to_owned(),
        })
    }

    /// The kernel release.
    pub fn release(&self) -> &str {
        &self.vermagic.release
    }
}

/// Parses Module.symvers: `0xCRC<TAB>name<TAB>module<TAB>type[<TAB>ns]`.
pub fn parse_symvers(text: &str, path: &Path) -> Result<HashMap<String, KernelExport>, KmodError> {
    let mut exports = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let syntax = |what| KmodError::Syntax {
            path: path.to_owned(),
            line: index + 1,
            what,
        };
        let fields: Vec<&str> = line.split('\t').collect();
        let [crc, name, module, kind, rest @ ..] = fields.as_slice() else {
            return Err(syntax("expected CRC, symbol, module and export type"));
        };
        let crc = crc
            .strip_prefix("0x")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or(syntax("CRC is not 0x followed by 32-bit hex"))?;
        let gpl_only = match *kind {
            "EXPORT_SYMBOL" => false,
            "EXPORT_SYMBOL_GPL" => true,
            _ => {
                return Err(syntax(
                    "export type is not EXPORT_SYMBOL or EXPORT_SYMBOL_GPL",
                ));
            }
        };
        if name.is_empty() {
            return Err(syntax("empty symbol name"));
        }
        let source = match *module {
            "vmlinux" => ExportSource::Vmlinux,
            other => ExportSource::InTreeModule(other.to_owned()),
        };
        let namespace = rest
            .first()
            .filter(|ns| !ns.is_empty())
            .map(|ns| (*ns).to_owned());
        exports.insert(
            (*name).to_owned(),
            KernelExport {
                source,
                crc: Some(crc),
                gpl_only: Some(gpl_only),
                namespace,
            },
        );
    }
    Ok(exports)
}

/// Parses System.map (`ADDRESS TYPE NAME`) for `__ksymtab_NAME` entries.
pub fn parse_system_map(
    text: &str,
    path: &Path,
) -> Result<HashMap<String, KernelExport>, KmodError> {
    let mut exports = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let (Some(_address), Some(_kind), Some(name)) = (words.next(), words.next(), words.next())
        else {
            return Err(KmodError::Syntax {
                path: path.to_owned(),
                line: index + 1,
                what: "expected ADDRESS TYPE NAME",
            });
        };
        if let Some(symbol) = name.strip_prefix("__ksymtab_") {
            exports.insert(
                symbol.to_owned(),
                KernelExport {
                    source: ExportSource::Vmlinux,
                    crc: None,
                    gpl_only: None,
                    namespace: None,
                },
            );
        }
    }
    if exports.is_empty() {
        return Err(KmodError::NoExports {
            path: path.to_owned(),
        });
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vermagic_round_trip() {
        let v =
            Vermagic::parse("6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions ").unwrap();
        assert_eq!(v.release, "6.1.0-50-cloud-amd64");
        assert!(v.modversions());
        assert_eq!(
            v.to_string(),
            "6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions"
        );
        assert_eq!(Vermagic::parse("  "), None);
    }

    #[test]
    fn flags_from_config() {
        let config = "CONFIG_SMP=y\n# CONFIG_PREEMPT_BUILD is not set\nCONFIG_PREEMPT_RT=y\nCONFIG_MODVERSIONS=y\nCONFIG_MODULE_UNLOAD=m\n";
        let v = Vermagic::from_config("r", config, Path::new("c")).unwrap();
        assert_eq!(v.flags, ["SMP", "preempt_rt", "modversions"]);
        assert!(Vermagic::from_config("r", "CONFIG_RANDSTRUCT_FULL=y\n", Path::new("c")).is_err());
    }

    #[test]
    fn system_map_lines() {
        let text = "ffffffff81000000 T _stext\nffffffff82a0b8e0 r __ksymtab_printk\nffffffff82a0b8ec r __ksymtab_kfree\n";
        let map = parse_system_map(text, Path::new("System.map")).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["printk"].crc, None);
        let placeholder =
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n";
        assert!(matches!(
            parse_system_map(placeholder, Path::new("System.map")),
            Err(KmodError::NoExports { .. })
        ));
    }

    #[test]
    fn symvers_lines() {
        let text = "0x0000abcd\tfoo\tvmlinux\tEXPORT_SYMBOL\t\n0x00000001\tbar\tfs/fat/fat\tEXPORT_SYMBOL_GPL\tNS\n";
        let map = parse_symvers(text, Path::new("Module.symvers")).unwrap();
        assert_eq!(map["foo"].crc, Some(0xabcd));
        assert_eq!(map["foo"].namespace, None);
        assert_eq!(map["bar"].namespace.as_deref(), Some("NS"));
        assert_eq!(
            map["bar"].source,
            ExportSource::InTreeModule("fs/fat/fat".into())
        );
        for bad in [
            "0xzz\ta\tvmlinux\tEXPORT_SYMBOL",
            "0x1\ta\tvmlinux",
            "0x1\ta\tvmlinux\tEXPORT_FOO",
        ] {
            assert!(matches!(
                parse_symvers(bad, Path::new("m")),
                Err(KmodError::Syntax { line: 1, .. })
            ));
        }
    }
}
