//! Boot artifacts against the real thing: kernel modules of the Debian
//! cloud kernel checked against its headers and kmod's tools, userspace
//! closures of real NVIDIA packages, cpio archives read by GNU cpio and
//! the kernel, UKIs read by objdump/sbverify and booted under qemu.

mod boot {
    pub mod artifacts;
    pub mod cpio_props;
    pub mod cpio_tools;
    pub mod debs;
    pub mod elf_generated;
    pub mod elf_props;
    pub mod elf_real;
    pub mod initramfs_real;
    pub mod kmod_depmod;
    pub mod kmod_fixture;
    pub mod kmod_image;
    pub mod kmod_props;
    pub mod kmod_real;
    pub mod nvidia_real;
    pub mod qemu;
    pub mod qemu_support;
    pub mod uki_real;
}
