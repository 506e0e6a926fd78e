//! The on-disk structures of SquashFS 4.0 that this writer emits, as
//! little-endian byte encoders. Field order follows the kernel's
//! `squashfs_fs.h`; see the module docs for the choices made.

/// "hsqs".
pub(crate) const MAGIC: u32 = 0x7371_7368;
/// Size of the superblock; the data area starts right after it.
pub(crate) const SUPERBLOCK_SIZE: u64 = 96;
/// "No such table / no fragment / no xattrs".
pub(crate) const INVALID_TABLE: u64 = u64::MAX;
pub(crate) const NO_FRAGMENT: u32 = u32::MAX;
pub(crate) const NO_XATTR: u32 = u32::MAX;
/// Bit 24 of a data or fragment block size: stored uncompressed.
pub(crate) const DATA_RAW: u32 = 1 << 24;
/// Entries in one directory header run (kernel limit).
pub(crate) const DIR_RUN_MAX: usize = 256;

/// Superblock flags we set.
pub(crate) const FLAG_ALWAYS_FRAGMENTS: u16 = 0x0020;
pub(crate) const FLAG_DUPLICATES: u16 = 0x0040;

/// Compressor ids.
pub(crate) const COMP_XZ: u16 = 4;
pub(crate) const COMP_ZSTD: u16 = 6;

/// Basic inode types; the extended type is basic + 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum InodeType {
    Dir = 1,
    File = 2,
    Symlink = 3,
    BlockDev = 4,
    CharDev = 5,
    Fifo = 6,
    Socket = 7,
}

impl InodeType {
    pub(crate) fn basic(self) -> u16 {
        self as u16
    }
    pub(crate) fn extended(self) -> u16 {
        self as u16 + 7
    }
}

/// Append little-endian integers.
pub(crate) trait Put {
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn u64(&mut self, v: u64);
}

impl Put for Vec<u8> {
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// The fields every inode starts with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub mode: u16,
    pub uid_index: u16,
    pub gid_index: u16,
    pub mtime: u32,
    pub number: u32,
}

impl Header {
    pub(crate) fn put(&self, out: &mut Vec<u8>, inode_type: u16) {
        out.u16(inode_type);
        out.u16(self.mode);
        out.u16(self.uid_index);
        out.u16(self.gid_index);
        out.u32(self.mtime);
        out.u32(self.number);
    }
}

/// The superblock's variable fields.
#[derive(Debug, Default)]
pub(crate) struct Superblock {
    pub inode_count: u32,
    pub modification_time: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compression: u16,
    pub flags: u16,
    pub id_count: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_id_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

impl Superblock {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUPERBLOCK_SIZE as usize);
        out.u32(MAGIC);
        out.u32(self.inode_count);
        out.u32(self.modification_time);
        out.u32(self.block_size);
        out.u32(self.fragment_count);
        out.u16(self.compression);
        out.u16(self.block_size.trailing_zeros() as u16);
        out.u16(self.flags);
        out.u16(self.id_count);
        out.u16(4); // version major
        out.u16(0); // version minor
        out.u64(self.root_inode);
        out.u64(self.bytes_used);
        out.u64(self.id_table);
        out.u64(self.xattr_id_table);
        out.u64(self.inode_table);
        out.u64(self.directory_table);
        out.u64(self.fragment_table);
        out.u64(self.export_table);
        out
    }
}

/// Linux's `new_encode_dev`: the 32-bit device number SquashFS stores.
pub(crate) fn encode_device(major: u64, minor: u64) -> Option<u32> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    let (major, minor) = (major as u32, minor as u32);
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// glibc's `major()`/`minor()` of a `dev_t`.
pub(crate) fn split_device(dev: u64) -> (u64, u64) {
    // Both halves are 32-bit in glibc: the truncations are the encoding.
    let major = ((dev >> 8) & 0xfff) | u64::from((dev >> 32) as u32 & !0xfff);
    let minor = (dev & 0xff) | u64::from((dev >> 12) as u32 & !0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_encode_like_the_kernel_decodes() {
        for (major, minor) in [(0, 0), (8, 1), (259, 3), (4095, 0xfffff), (1, 256)] {
            let dev = encode_device(major, minor).unwrap();
            // The kernel's new_decode_dev.
            let back_major = u64::from((dev & 0xfff00) >> 8);
            let back_minor = u64::from((dev & 0xff) | ((dev >> 12) & 0xfff00));
            assert_eq!((back_major, back_minor), (major, minor));
        }
        assert_eq!(encode_device(4096, 0), None);
        assert_eq!(encode_device(0, 1 << 20), None);
        // glibc makedev(259, 3) = 0x10303
        assert_eq!(split_device(0x10303), (259, 3));
        // glibc's makedev, inverted.
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        };
        for (major, minor) in [(0x123007, 0x456089), (1, 0xfffff), (4095, 255)] {
            assert_eq!(split_device(makedev(major, minor)), (major, minor));
        }
    }

    #[test]
    fn superblock_is_96_bytes_with_block_log() {
        let sb = Superblock {
            block_size: 131072,
            ..Default::default()
        };
        let bytes = sb.encode();
        assert_eq!(bytes.len() as u64, SUPERBLOCK_SIZE);
        assert_eq!(&bytes[0..4], b"hsqs");
        assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 17);
    }
}
