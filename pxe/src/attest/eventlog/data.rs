//! Typed event data (PFP 1.06, section 10.2 and 10.4): what each event type
//! carries, decoded, and encoders for the generator.

use std::fmt;

use super::device_path::DevicePath;
use super::event_type::EventType;
use super::parse::Reader;

/// Signature of the StartupLocality EV_NO_ACTION event.
pub const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

/// An EFI GUID, stored as its 16 bytes on the wire (mixed-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            hex::encode(&b[10..])
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Event data decoded according to the event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// EV_NO_ACTION "StartupLocality": the locality TPM2_Startup ran at,
    /// which is PCR 0's initial last byte.
    StartupLocality(u8),
    /// Any other EV_NO_ACTION event: its 16-byte signature and the rest.
    NoAction {
        /// The leading signature (e.g. "SP800-155 Event").
        signature: Vec<u8>,
        /// The bytes after it.
        payload: Vec<u8>,
    },
    /// EV_SEPARATOR: 0 or 0xFFFFFFFF normally, 1 when the firmware hit an error.
    Separator(u32),
    /// EV_ACTION / EV_EFI_ACTION: an ASCII string.
    Action(String),
    /// EV_POST_CODE, EV_IPL, EV_S_CRTM_*, EV_EFI_HCRTM_EVENT and other
    /// description-carrying types.
    Text(EventText),
    /// EV_EFI_VARIABLE_*: a UEFI variable.
    Variable(VariableData),
    /// EV_EFI_BOOT_SERVICES_APPLICATION / _DRIVER / EV_EFI_RUNTIME_SERVICES_DRIVER.
    ImageLoad(ImageLoadEvent),
    /// EV_EFI_GPT_EVENT(2): the boot disk's partition table.
    Gpt(GptData),
    /// EV_EFI_PLATFORM_FIRMWARE_BLOB(2), or EV_POST_CODE carrying a blob.
    FirmwareBlob(FirmwareBlob),
    /// EV_EFI_HANDOFF_TABLES(2).
    HandoffTables(HandoffTables),
    /// EV_EVENT_TAG.
    Tagged(TaggedEvent),
    /// A type without a structured decoding (EV_COMPACT_HASH, microcode,
    /// non-host info, ...) or an unknown type: the raw bytes.
    Opaque(Vec<u8>),
}

/// A string found in event data, with the encoding it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventText {
    /// ASCII/UTF-8 (trailing NULs removed).
    Utf8(String),
    /// UTF-16LE, as systemd-stub and EDK2 write (trailing NULs removed).
    Utf16(String),
    /// Not a string: the raw bytes.
    Binary(Vec<u8>),
}

impl EventText {
    /// Decodes a description: UTF-16LE when it looks like one (even length,
    /// NUL-terminated, valid UTF-16), else UTF-8, else raw bytes.
    pub fn decode(bytes: &[u8]) -> Self {
        if let Some(text) = decode_utf16_terminated(bytes) {
            return Self::Utf16(text);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::Utf8(text.trim_end_matches('\0').to_owned()),
            Err(_) => Self::Binary(bytes.to_vec()),
        }
    }

    /// The text, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Utf8(s) | Self::Utf16(s) => Some(s),
            Self::Binary(_) => None,
        }
    }
}

fn decode_utf16_terminated(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 2 || !bytes.len().is_multiple_of(2) || !bytes.ends_with(&[0, 0]) {
        return None;
    }
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let text: String = char::decode_utf16(units).collect::<Result<_, _>>().ok()?;
    Some(text.trim_end_matches('\0').to_owned())
}

/// `UEFI_VARIABLE_DATA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableData {
    /// The vendor GUID (e.g. EFI_GLOBAL_VARIABLE).
    pub vendor: Guid,
    /// The variable name.
    pub name: String,
    /// The variable's contents.
    pub data: Vec<u8>,
}

impl VariableData {
    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let name: Vec<u16> = self.name.encode_utf16().collect();
        let mut out = self.vendor.0.to_vec();
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        for unit in name {
            out.extend_from_slice(&unit.to_le_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let vendor = Guid(r.array("VariableName GUID").map_err(reason)?);
        let name_len = r.u64("UnicodeNameLength").map_err(reason)?;
        let data_len = r.u64("VariableDataLength").map_err(reason)?;
        let name_bytes = name_len
            .checked_mul(2)
            .ok_or("UnicodeNameLength overflows")?;
        let name = r.take(name_bytes, "UnicodeName").map_err(reason)?;
        let data = r.take(data_len, "VariableData").map_err(reason)?.to_vec();
        trailing(&r)?;
        let units = name
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let name = char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| "variable name is not valid UTF-16")?;
        Ok(Self { vendor, name, data })
    }
}

/// `UEFI_IMAGE_LOAD_EVENT`: where an image was loaded and its device path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLoadEvent {
    /// ImageLocationInMemory.
    pub location: u64,
    /// ImageLengthInMemory.
    pub length: u64,
    /// ImageLinkTimeAddress.
    pub link_time_address: u64,
    /// The device path the image was loaded from (may be empty for images
    /// loaded from memory).
    pub device_path: DevicePath,
}

impl ImageLoadEvent {
    /// The wire form; `uintn_bytes` is 8 for 64-bit firmware, 4 for 32-bit.
    pub fn to_bytes(&self, uintn_bytes: usize) -> Vec<u8> {
        let mut out = self.location.to_le_bytes().to_vec();
        for value in [
            self.length,
            self.link_time_address,
            self.device_path.as_bytes().len() as u64,
        ] {
            out.extend_from_slice(&value.to_le_bytes()[..uintn_bytes]);
        }
        out.extend_from_slice(self.device_path.as_bytes());
        out
    }

    fn decode(bytes: &[u8], uintn_bytes: usize) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let location = r.u64("ImageLocationInMemory").map_err(reason)?;
        let length = read_uintn(&mut r, uintn_bytes, "ImageLengthInMemory")?;
        let link_time_address = read_uintn(&mut r, uintn_bytes, "ImageLinkTimeAddress")?;
        let path_len = read_uintn(&mut r, uintn_bytes, "LengthOfDevicePath")?;
        let path = r.take(path_len, "DevicePath").map_err(reason)?;
        trailing(&r)?;
        let device_path = DevicePath::parse(path)?;
        Ok(Self {
            location,
            length,
            link_time_address,
            device_path,
        })
    }
}

fn read_uintn(r: &mut Reader<'_>, uintn_bytes: usize, what: &'static str) -> Result<u64, String> {
    if uintn_bytes == 4 {
        r.u32(what).map(u64::from)
    } else {
        r.u64(what)
    }
    .map_err(reason)
}

/// `UEFI_GPT_DATA`: the partition table header and the partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptData {
    /// The 92-byte `EFI_PARTITION_TABLE_HEADER`, raw.
    pub header: Vec<u8>,
    /// DiskGUID from the header.
    pub disk_guid: Guid,
    /// The partitions.
    pub partitions: Vec<GptPartition>,
}

/// One `EFI_PARTITION_ENTRY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// PartitionTypeGUID.
    pub type_guid: Guid,
    /// UniquePartitionGUID.
    pub unique_guid: Guid,
    /// StartingLBA.
    pub first_lba: u64,
    /// EndingLBA.
    pub last_lba: u64,
    /// Attributes.
    pub attributes: u64,
    /// PartitionName.
    pub name: String,
}

const GPT_HEADER_SIZE: u64 = 92;
const GPT_ENTRY_MIN_SIZE: u32 = 128;

impl GptData {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let header = r
            .take(GPT_HEADER_SIZE, "EFI_PARTITION_TABLE_HEADER")
            .map_err(reason)?;
        let mut disk_guid = [0u8; 16];
        disk_guid.copy_from_slice(&header[56..72]);
        let entry_size = u32::from_le_bytes([header[84], header[85], header[86], header[87]]);
        let count = r.u64("NumberOfPartitions").map_err(reason)?;
        if entry_size < GPT_ENTRY_MIN_SIZE {
            return Err(format!(
                "SizeOfPartitionEntry {entry_size} < {GPT_ENTRY_MIN_SIZE}"
            ));
        }
        let total = count
            .checked_mul(u64::from(entry_size))
            .ok_or("partition array size overflows")?;
        let entries = r.take(total, "partition entries").map_err(reason)?;
        trailing(&r)?;
        let partitions = entries
            .chunks_exact(entry_size as usize)
            .map(GptPartition::decode)
            .collect();
        Ok(Self {
            header: header.to_vec(),
            disk_guid: Guid(disk_guid),
            partitions,
        })
    }
}

impl GptPartition {
    fn decode(entry: &[u8]) -> Self {
        let guid = |at: usize| {
            let mut g = [0u8; 16];
            g.copy_from_slice(&entry[at..at + 16]);
            Guid(g)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&entry[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let units = entry[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let name = char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .take_while(|&c| c != '\0')
            .collect();
        Self {
            type_guid: guid(0),
            unique_guid: guid(16),
            first_lba: u64_at(32),
            last_lba: u64_at(40),
            attributes: u64_at(48),
            name,
        }
    }
}

/// `UEFI_PLATFORM_FIRMWARE_BLOB(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareBlob {
    /// The description (BLOB2 only).
    pub description: Option<String>,
    /// BlobBase.
    pub base: u64,
    /// BlobLength.
    pub length: u64,
}

impl FirmwareBlob {
    fn decode(bytes: &[u8], with_description: bool) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let description = if with_description {
            Some(read_description(&mut r)?)
        } else {
            None
        };
        let base = r.u64("BlobBase").map_err(reason)?;
        let length = r.u64("BlobLength").map_err(reason)?;
        trailing(&r)?;
        Ok(Self {
            description,
            base,
            length,
        })
    }
}

/// `UEFI_HANDOFF_TABLE_POINTERS(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffTables {
    /// The description (TABLES2 only).
    pub description: Option<String>,
    /// (VendorGuid, VendorTable address) of each table.
    pub tables: Vec<(Guid, u64)>,
}

impl HandoffTables {
    fn decode(bytes: &[u8], with_description: bool, uintn_bytes: usize) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let description = if with_description {
            Some(read_description(&mut r)?)
        } else {
            None
        };
        let count = read_uintn(&mut r, uintn_bytes, "NumberOfTables")?;
        let entry = 16 + uintn_bytes as u64;
        // Bounded by the data: no allocation beyond what the bytes hold.
        if count
            .checked_mul(entry)
            .is_none_or(|total| total > r.remaining() as u64)
        {
            return Err(format!(
                "{count} tables do not fit in {} bytes",
                r.remaining()
            ));
        }
        let mut tables = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let guid = Guid(r.array("VendorGuid").map_err(reason)?);
            tables.push((guid, read_uintn(&mut r, uintn_bytes, "VendorTable")?));
        }
        trailing(&r)?;
        Ok(Self {
            description,
            tables,
        })
    }
}

fn read_description(r: &mut Reader<'_>) -> Result<String, String> {
    let size = r.u8("description size").map_err(reason)?;
    let text = r.take(u64::from(size), "description").map_err(reason)?;
    Ok(String::from_utf8_lossy(text)
        .trim_end_matches('\0')
        .to_owned())
}

/// `TCG_PCClientTaggedEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedEvent {
    /// taggedEventID.
    pub id: u32,
    /// taggedEventData.
    pub data: Vec<u8>,
}

impl TaggedEvent {
    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.id.to_le_bytes().to_vec();
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let id = r.u32("taggedEventID").map_err(reason)?;
        let size = r.u32("taggedEventDataSize").map_err(reason)?;
        let data = r
            .take(u64::from(size), "taggedEventData")
            .map_err(reason)?
            .to_vec();
        trailing(&r)?;
        Ok(Self { id, data })
    }
}

fn reason(e: super::EventLogError) -> String {
    e.to_string()
}

fn trailing(r: &Reader<'_>) -> Result<(), String> {
    match r.remaining() {
        0 => Ok(()),
        n => Err(format!("{n} unexpected bytes after the structure")),
    }
}

impl EventData {
    /// Decodes `data` as `event_type` says. `uintn_bytes` is 8 for 64-bit
    /// firmware (the Spec ID header's uintnSize), 4 for 32-bit.
    pub fn decode(event_type: EventType, data: &[u8], uintn_bytes: usize) -> Result<Self, String> {
        Ok(match event_type {
            EventType::NO_ACTION => decode_no_action(data)?,
            EventType::SEPARATOR => {
                let bytes: [u8; 4] = data
                    .try_into()
                    .map_err(|_| format!("separator of {} bytes, not 4", data.len()))?;
                Self::Separator(u32::from_le_bytes(bytes))
            }
            EventType::ACTION | EventType::EFI_ACTION => match std::str::from_utf8(data) {
                Ok(text) if text.is_ascii() => Self::Action(text.to_owned()),
                _ => return Err("action string is not ASCII".into()),
            },
            EventType::POST_CODE
                if data.len() == 16 && EventText::decode(data).as_str().is_none() =>
            {
                Self::FirmwareBlob(FirmwareBlob::decode(data, false)?)
            }
            EventType::POST_CODE
            | EventType::POST_CODE2
            | EventType::IPL
            | EventType::S_CRTM_VERSION
            | EventType::S_CRTM_CONTENTS
            | EventType::EFI_HCRTM_EVENT => Self::Text(EventText::decode(data)),
            EventType::EFI_VARIABLE_DRIVER_CONFIG
            | EventType::EFI_VARIABLE_BOOT
            | EventType::EFI_VARIABLE_BOOT2
            | EventType::EFI_VARIABLE_AUTHORITY => Self::Variable(VariableData::decode(data)?),
            EventType::EFI_BOOT_SERVICES_APPLICATION
            | EventType::EFI_BOOT_SERVICES_DRIVER
            | EventType::EFI_RUNTIME_SERVICES_DRIVER => {
                Self::ImageLoad(ImageLoadEvent::decode(data, uintn_bytes)?)
            }
            EventType::EFI_GPT_EVENT | EventType::EFI_GPT_EVENT2 => {
                Self::Gpt(GptData::decode(data)?)
            }
            EventType::EFI_PLATFORM_FIRMWARE_BLOB => {
                Self::FirmwareBlob(FirmwareBlob::decode(data, false)?)
            }
            EventType::EFI_PLATFORM_FIRMWARE_BLOB2 => {
                Self::FirmwareBlob(FirmwareBlob::decode(data, true)?)
            }
            EventType::EFI_HANDOFF_TABLES => {
                Self::HandoffTables(HandoffTables::decode(data, false, uintn_bytes)?)
            }
            EventType::EFI_HANDOFF_TABLES2 => {
                Self::HandoffTables(HandoffTables::decode(data, true, uintn_bytes)?)
            }
            EventType::EVENT_TAG => Self::Tagged(TaggedEvent::decode(data)?),
            _ => Self::Opaque(data.to_vec()),
        })
    }
}

fn decode_no_action(data: &[u8]) -> Result<EventData, String> {
    if let Some(rest) = data.strip_prefix(STARTUP_LOCALITY_SIGNATURE.as_slice()) {
        return match rest {
            [locality] => Ok(EventData::StartupLocality(*locality)),
            _ => Err(format!(
                "StartupLocality with {} bytes after the signature, not 1",
                rest.len()
            )),
        };
    }
    let split = data.len().min(16);
    Ok(EventData::NoAction {
        signature: data[..split].to_vec(),
        payload: data[split..].to_vec(),
    })
}

/// The StartupLocality EV_NO_ACTION event data for `locality`.
pub fn startup_locality_data(locality: u8) -> Vec<u8> {
    let mut data = STARTUP_LOCALITY_SIGNATURE.to_vec();
    data.push(locality);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_round_trip() {
        let var = VariableData {
            vendor: Guid([7; 16]),
            name: "SecureBoot".into(),
            data: vec![1],
        };
        let decoded =
            EventData::decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, &var.to_bytes(), 8).unwrap();
        assert_eq!(decoded, EventData::Variable(var));
    }

    #[test]
    fn huge_lengths_are_errors_not_allocations() {
        let mut bytes = vec![0u8; 16];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(VariableData::decode(&bytes).is_err());
        let mut tables = u64::MAX.to_le_bytes().to_vec();
        tables.extend_from_slice(&[0; 24]);
        assert!(HandoffTables::decode(&tables, false, 8).is_err());
    }

    #[test]
    fn startup_locality() {
        assert_eq!(
            EventData::decode(EventType::NO_ACTION, &startup_locality_data(3), 8).unwrap(),
            EventData::StartupLocality(3)
        );
    }

    #[test]
    fn guid_formats_like_uefi() {
        // EFI_GLOBAL_VARIABLE 8be4df61-93ca-11d2-aa0d-00e098032b8c
        let wire = [
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c,
        ];
        assert_eq!(
            Guid(wire).to_string(),
            "8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
    }
}
