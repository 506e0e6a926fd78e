//! How command bytes reach a TPM: the kernel's character device, or
//! swtpm's socket (tests, and labs that run swtpm without qemu).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::constants::MAX_MESSAGE;

/// Sends one marshalled command and returns the marshalled response.
pub trait Transport {
    /// One command/response exchange.
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>>;

    /// Where the TPM is, for error messages.
    fn describe(&self) -> String;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        (**self).transmit(command)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// The size field of a response header, checked to be plausible.
fn response_size(header: &[u8]) -> io::Result<usize> {
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if !(10..=MAX_MESSAGE).contains(&size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response header claims {size} bytes"),
        ));
    }
    Ok(size)
}

/// A TPM character device: /dev/tpmrm0 (kernel resource manager, which
/// flushes our transient objects and sessions if we die) or /dev/tpm0.
/// Each write is one command; the next read returns the whole response.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    /// The kernel's resource-managed device, the one the agent uses.
    pub const RESOURCE_MANAGED: &'static str = "/dev/tpmrm0";
    /// The raw device (a single user at a time).
    pub const RAW: &'static str = "/dev/tpm0";

    /// Opens a TPM device for reading and writing.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Device {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens /dev/tpmrm0, or /dev/tpm0 when the kernel has no resource
    /// manager device. The error is the one for /dev/tpmrm0.
    pub fn open_default() -> io::Result<Self> {
        Self::open(Path::new(Self::RESOURCE_MANAGED))
            .or_else(|e| Self::open(Path::new(Self::RAW)).map_err(|_| e))
    }

    /// Wraps an already open file with device semantics (one write, one
    /// read per exchange), e.g. one end of a datagram socket pair whose
    /// other end is `swtpm chardev --fd`.
    pub fn from_file(file: File, label: impl Into<PathBuf>) -> Self {
        Device {
            file,
            path: label.into(),
        }
    }
}

impl Transport for Device {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.file.write_all(command)?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut got = self.file.read(&mut buf)?;
        if got < 10 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short response: {got} bytes"),
            ));
        }
        let size = response_size(&buf[..10])?;
        // A device hands over the whole response in one read; keep reading
        // only in case a driver splits it.
        while got < size {
            let n = self.file.read(&mut buf[got..size])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("response ended after {got} of {size} bytes"),
                ));
            }
            got += n;
        }
        if got > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("read {got} bytes for a {size}-byte response"),
            ));
        }
        buf.truncate(size);
        Ok(buf)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// swtpm's data socket (`swtpm socket --server type=unixio,path=...`): a
/// byte stream carrying plain TPM commands and responses, framed by the
/// size in the header.
#[derive(Debug)]
pub struct SwtpmSocket {
    stream: UnixStream,
    path: PathBuf,
}

impl SwtpmSocket {
    /// Connects to swtpm's server socket.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        // A TPM can take seconds for RSA key generation; minutes means hung.
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(SwtpmSocket {
            stream,
            path: path.to_path_buf(),
        })
    }
}

impl Transport for SwtpmSocket {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.stream.write_all(command)?;
        let mut header = [0u8; 10];
        self.stream.read_exact(&mut header)?;
        let size = response_size(&header)?;
        let mut out = vec![0u8; size];
        out[..10].copy_from_slice(&header);
        self.stream.read_exact(&mut out[10..])?;
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("swtpm socket {}", self.path.display())
    }
}
