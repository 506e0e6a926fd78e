//! UEFI device paths (UEFI 2.10, chapter 10) as found in image-load events:
//! a chain of nodes `u8 type | u8 subtype | u16 length | data`, ended by
//! the end node (0x7F, 0xFF). Rendered in the UEFI text form for the node
//! kinds a network boot shows (PCI, MAC, IP, URI, file, memory, vendor).

use std::fmt;

use super::data::Guid;

const END_TYPE: u8 = 0x7F;
const END_ENTIRE: u8 = 0xFF;
const NODE_HEADER: usize = 4;

/// A device path: its raw bytes, checked to be a well-formed node chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicePath {
    bytes: Vec<u8>,
}

/// One node of a device path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePathNode<'a> {
    /// Node type (1 hardware, 2 ACPI, 3 messaging, 4 media, 5 BIOS, 0x7F end).
    pub node_type: u8,
    /// Node subtype.
    pub subtype: u8,
    /// Node data after the 4-byte header.
    pub data: &'a [u8],
}

impl DevicePath {
    /// Checks that `bytes` is a chain of nodes whose lengths fit, ending
    /// with an end-of-path node exactly at the end (an empty path is allowed).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (node, tail) = split_node(rest)?;
            if node.node_type == END_TYPE && node.subtype == END_ENTIRE && !tail.is_empty() {
                return Err(format!("{} bytes after the end-of-path node", tail.len()));
            }
            rest = tail;
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    /// A path from nodes; the end node is appended.
    pub fn from_nodes(nodes: &[(u8, u8, &[u8])]) -> Self {
        let mut bytes = Vec::new();
        for &(node_type, subtype, data) in
            nodes.iter().chain([(END_TYPE, END_ENTIRE, &[][..])].iter())
        {
            bytes.extend_from_slice(&[node_type, subtype]);
            bytes.extend_from_slice(&((data.len() + NODE_HEADER) as u16).to_le_bytes());
            bytes.extend_from_slice(data);
        }
        Self { bytes }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The nodes, end node excluded.
    pub fn nodes(&self) -> impl Iterator<Item = DevicePathNode<'_>> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (node, tail) = split_node(rest).ok()?;
            rest = tail;
            (node.node_type != END_TYPE).then_some(node)
        })
    }

    /// The file name of the last media file-path node, if any.
    pub fn file_name(&self) -> Option<String> {
        self.nodes()
            .filter(|n| (n.node_type, n.subtype) == (4, 4))
            .last()
            .map(|n| utf16z(n.data))
    }
}

fn split_node(bytes: &[u8]) -> Result<(DevicePathNode<'_>, &[u8]), String> {
    if bytes.len() < NODE_HEADER {
        return Err(format!(
            "device path node header needs 4 bytes, {} left",
            bytes.len()
        ));
    }
    let len = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
    if len < NODE_HEADER || len > bytes.len() {
        return Err(format!(
            "device path node length {len} with {} bytes left",
            bytes.len()
        ));
    }
    let node = DevicePathNode {
        node_type: bytes[0],
        subtype: bytes[1],
        data: &bytes[NODE_HEADER..len],
    };
    Ok((node, &bytes[len..]))
}

fn utf16z(data: &[u8]) -> String {
    let units = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .take_while(|&c| c != '\0')
        .collect()
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn guid_at(data: &[u8], at: usize) -> Option<Guid> {
    Some(Guid(data.get(at..at + 16)?.try_into().ok()?))
}

impl fmt::Display for DevicePathNode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.data;
        let text = match (self.node_type, self.subtype) {
            (1, 1) if d.len() == 2 => Some(format!("Pci({:#x},{:#x})", d[1], d[0])),
            (1, 3) => le_u32(d, 0)
                .zip(le_u64(d, 4).zip(le_u64(d, 12)))
                .map(|(t, (s, e))| format!("MemoryMapped({t:#x},{s:#x},{e:#x})")),
            (2, 1) => match (le_u32(d, 0), le_u32(d, 4)) {
                (Some(0x0A03_41D0), Some(uid)) => Some(format!("PciRoot({uid:#x})")),
                (Some(hid), Some(uid)) => Some(format!("Acpi({hid:#x},{uid:#x})")),
                _ => None,
            },
            (3, 11) if d.len() >= 33 => Some(format!("MAC({},{:#x})", hex::encode(&d[..6]), d[32])),
            (3, 12) if d.len() >= 8 => Some(format!("IPv4({}.{}.{}.{})", d[4], d[5], d[6], d[7])),
            (3, 24) => Some(format!(
                "Uri({})",
                String::from_utf8_lossy(d).trim_end_matches('\0')
            )),
            (4, 3) => guid_at(d, 0).map(|g| format!("VenMedia({g})")),
            (4, 4) => Some(utf16z(d)),
            (4, 6) => guid_at(d, 0).map(|g| format!("FvFile({g})")),
            (4, 7) => guid_at(d, 0).map(|g| format!("Fv({g})")),
            _ => None,
        };
        match text {
            Some(text) => f.write_str(&text),
            None => write!(
                f,
                "Path({},{},{})",
                self.node_type,
                self.subtype,
                hex::encode(d)
            ),
        }
    }
}

impl fmt::Display for DevicePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for node in self.nodes() {
            if !first {
                f.write_str("/")?;
            }
            first = false;
            write!(f, "{node}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_network_path() {
        let mut mac = vec![0u8; 33];
        mac[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        mac[32] = 1;
        let name: Vec<u8> = "node.efi\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let path = DevicePath::from_nodes(&[
            (2, 1, &[0xD0, 0x41, 0x03, 0x0A, 0, 0, 0, 0]),
            (1, 1, &[0, 2]),
            (3, 11, &mac),
            (4, 4, &name),
        ]);
        assert_eq!(DevicePath::parse(path.as_bytes()).unwrap(), path);
        assert_eq!(
            path.to_string(),
            "PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,0x1)/node.efi"
        );
        assert_eq!(path.file_name().as_deref(), Some("node.efi"));
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(DevicePath::parse(&[4, 4, 2, 0]).is_err());
        assert!(DevicePath::parse(&[4, 4, 9, 0, 0]).is_err());
        assert!(DevicePath::parse(&[0x7F, 0xFF, 4, 0, 1, 1, 4, 0]).is_err());
    }
}
