//! Boot artifacts: what the firmware and the UKI stub will see and measure.
//!
//! - [`pe`]: PE/COFF images read with goblin: section tables and the
//!   Authenticode digest (EDK2's algorithm) firmware extends into PCR 4.
//! - [`measure`]: predicted PCR values (PCR 11 from a UKI's sections,
//!   PCR 12 from the command line iPXE passes, PCR 9 from the Linux EFI
//!   stub) and the SHA-256 extend arithmetic.
//! - [`pe_fixture`]: minimal PE images made in code, for tests.
//! - [`uki`]: node.efi assembled from systemd-stub, and its measurements.
//! - [`kmod`]: kernel modules (modinfo, signatures, symbols, CRCs) and the
//!   check that a set loads into a kernel; modules.dep and closures.
//! - [`cpio`]: deterministic cpio `newc` archives (initramfs) and their
//!   compression.
//! - [`initramfs`]: the agent, busybox, module closure, firmware and
//!   configuration as a deterministic compressed archive.
//! - [`elf`]: userspace ELF (DT_NEEDED, SONAME, static or not) and the
//!   library closure inside an image root.
//! - [`nvidia`]: the NVIDIA modules built from the mirror's source
//!   package, and the driver/kernel/firmware/userspace version chain.

pub mod cpio;
pub mod elf;
pub mod initramfs;
pub mod kmod;
pub mod measure;
pub mod nvidia;
pub mod pe;
pub mod pe_fixture;
pub mod uki;
