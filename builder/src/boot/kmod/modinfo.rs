//! The `.modinfo` section: NUL-separated `key=value` strings that
//! `MODULE_LICENSE`, `MODULE_FIRMWARE`, `MODULE_ALIAS`, modpost (`depends`,
//! `vermagic`, `name`, `intree`, `retpoline`, `srcversion`) and friends
//! leave in every module.

/// What a module declares about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`: the module name (underscores; the file may use dashes).
    pub name: Option<String>,
    /// `vermagic=`: kernel release and flags the module was built for.
    pub vermagic: Option<String>,
    /// `depends=`: modules whose symbols it uses (modpost's list).
    pub depends: Vec<String>,
    /// `firmware=`: files under /lib/firmware it may request.
    pub firmware: Vec<String>,
    /// `alias=`: device and name aliases (modules.alias).
    pub alias: Vec<String>,
    /// `softdep=`: soft dependencies (`pre: a b post: c`).
    pub softdep: Vec<String>,
    /// `import_ns=`: symbol namespaces it imports.
    pub import_ns: Vec<String>,
    /// `license=`.
    pub license: Option<String>,
    /// `srcversion=`: digest of the sources (out-of-tree and some in-tree).
    pub srcversion: Option<String>,
    /// `version=`.
    pub version: Option<String>,
    /// `intree=Y`.
    pub intree: bool,
    /// `retpoline=Y`.
    pub retpoline: bool,
    /// Every entry, in section order (lossy UTF-8), including `parm`,
    /// `author`, `description` and keys not listed above.
    pub fields: Vec<(String, String)>,
}

impl ModInfo {
    /// Parses the raw section. Entries without `=` and empty padding are
    /// skipped (modinfo(8) does the same); never fails.
    pub fn parse(section: &[u8]) -> Self {
        let mut info = Self::default();
        for raw in section.split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let entry = String::from_utf8_lossy(raw);
            let Some((key, value)) = entry.split_once('=') else {
                continue;
            };
            info.add(key, value);
            info.fields.push((key.to_owned(), value.to_owned()));
        }
        info
    }

    fn add(&mut self, key: &str, value: &str) {
        let one = |slot: &mut Option<String>| *slot = Some(value.to_owned());
        match key {
            "name" => one(&mut self.name),
            "vermagic" => one(&mut self.vermagic),
            "license" => one(&mut self.license),
            "srcversion" => one(&mut self.srcversion),
            "version" => one(&mut self.version),
            "depends" => self
                .depends
                .extend(value.split(',').filter(|d| !d.is_empty()).map(module_name)),
            "firmware" => self.firmware.push(value.to_owned()),
            "alias" => self.alias.push(value.to_owned()),
            "softdep" => self.softdep.push(value.to_owned()),
            "import_ns" => self.import_ns.push(value.to_owned()),
            "intree" => self.intree = value == "Y",
            "retpoline" => self.retpoline = value == "Y",
            _ => {}
        }
    }

    /// Whether the license lets the module use `EXPORT_SYMBOL_GPL` symbols
    /// (the kernel's `license_is_gpl_compatible`).
    pub fn is_gpl_compatible(&self) -> bool {
        matches!(
            self.license.as_deref(),
            Some(
                "GPL"
                    | "GPL v2"
                    | "GPL and additional rights"
                    | "Dual BSD/GPL"
                    | "Dual MIT/GPL"
                    | "Dual MPL/GPL"
            )
        )
    }
}

/// A module's canonical name: dashes become underscores, as the kernel and
/// kmod compare them (`pci-hyperv-intf` is `pci_hyperv_intf`).
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name a file path implies: the file name without `.ko` and a
/// compression suffix, canonicalised.
pub fn module_name_from_path(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))
        .unwrap_or(file);
    module_name(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_lists() {
        let raw = b"license=GPL\0\0depends=pci-hyperv-intf,mlxfw\0firmware=a.bin\0firmware=b.bin\0\
intree=Y\0name=mlx5_core\0vermagic=6.1.0 SMP \0junk\0\0\0";
        let info = ModInfo::parse(raw);
        assert_eq!(info.name.as_deref(), Some("mlx5_core"));
        assert_eq!(info.depends, ["pci_hyperv_intf", "mlxfw"]);
        assert_eq!(info.firmware, ["a.bin", "b.bin"]);
        assert_eq!(info.vermagic.as_deref(), Some("6.1.0 SMP "));
        assert!(info.intree && !info.retpoline && info.is_gpl_compatible());
        assert_eq!(info.fields.len(), 7);
    }

    #[test]
    fn empty_depends_is_no_dependency() {
        assert!(ModInfo::parse(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name_from_path("kernel/a/nvidia-uvm.ko.zst"),
            "nvidia_uvm"
        );
        assert_eq!(module_name_from_path("x.ko"), "x");
    }
}
