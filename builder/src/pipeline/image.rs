//! The image files a build writes from the finished root: which ones,
//! with which settings, and the writers' calls.

use std::fs;
use std::path::Path;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{Artifact, Error};
use crate::rootfs::Target;
use crate::rootfs::fsimage::{erofs, squashfs, tar};
use crate::spec::FsFormat;

/// An image file the build can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// `rootfs.squashfs`: what nodes boot (compressed, read-only).
    Squashfs,
    /// `rootfs.erofs`: uncompressed, for kernels or tools that prefer it.
    Erofs,
    /// `rootfs.tar`: for inspection.
    Tar,
}

impl ImageFormat {
    /// The output file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Squashfs => "rootfs.squashfs",
            Self::Erofs => "rootfs.erofs",
            Self::Tar => "rootfs.tar",
        }
    }

    /// The spec's `[rootfs] formats`, sorted, once each; squashfs when the
    /// spec names none.
    pub fn from_spec(formats: &[FsFormat]) -> Vec<Self> {
        let mut out: Vec<Self> = formats
            .iter()
            .map(|f| match f {
                FsFormat::Squashfs => Self::Squashfs,
                FsFormat::Erofs => Self::Erofs,
                FsFormat::Tar => Self::Tar,
            })
            .collect();
        if out.is_empty() {
            out.push(Self::Squashfs);
        }
        out.sort();
        out.dedup();
        out
    }
}

/// SquashFS compression, from the spec's `[rootfs] compression`:
/// `zstd` (level 3), `zstd:LEVEL`, `xz` (level 6) or `xz:LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageCompression(pub squashfs::Compression);

impl Default for ImageCompression {
    fn default() -> Self {
        Self(squashfs::Compression::Zstd { level: 3 })
    }
}

impl ImageCompression {
    /// Parses the spec's value; `None` if it is not one of the forms above.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, level) = match text.split_once(':') {
            Some((name, level)) => (name, Some(level.parse::<u32>().ok()?)),
            None => (text, None),
        };
        let compression = match name {
            "zstd" => {
                let level = i32::try_from(level.unwrap_or(3)).ok()?;
                (1..=22).contains(&level).then_some(())?;
                squashfs::Compression::Zstd { level }
            }
            "xz" => {
                let level = level.unwrap_or(6);
                (level <= 9).then_some(())?;
                squashfs::Compression::Xz { level }
            }
            _ => return None,
        };
        Some(Self(compression))
    }

    /// The canonical spelling (`zstd:3`), as the build key records it.
    pub fn to_key(self) -> String {
        match self.0 {
            squashfs::Compression::Zstd { level } => format!("zstd:{level}"),
            squashfs::Compression::Xz { level } => format!("xz:{level}"),
        }
    }
}

/// How the images of one build are written.
pub(super) struct ImageSettings<'a> {
    pub epoch: u32,
    pub compression: ImageCompression,
    /// The build key: the EROFS volume UUID is derived from it, so the
    /// same inputs give the same UUID.
    pub key: &'a str,
    pub threads: usize,
}

/// Writes one image of `target` at `path`.
pub(super) fn write(
    format: ImageFormat,
    target: &Target,
    path: &Path,
    settings: &ImageSettings<'_>,
    bar: &ProgressBar,
) -> Result<Artifact, Error> {
    let image_error = |source| Error::Image {
        path: path.to_owned(),
        source,
    };
    let progress = |bytes: u64| bar.set_position(bytes);
    let (size, sha256) = match format {
        ImageFormat::Tar => write_tar(target, path, bar)?,
        ImageFormat::Squashfs => {
            let options = squashfs::Options {
                compression: settings.compression.0,
                threads: settings.threads,
                ..squashfs::Options::new(settings.epoch)
            };
            let summary = squashfs::write_dir(target.path(), path, &options, &progress)
                .map_err(image_error)?;
            // The writer warns for each attribute it drops (POSIX ACLs).
            (summary.bytes_out, summary.sha256_hex())
        }
        ImageFormat::Erofs => {
            let options = erofs::Options {
                uuid: erofs_uuid(settings.key),
                ..erofs::Options::new(settings.epoch)
            };
            let summary =
                erofs::write_dir(target.path(), path, &options, &progress).map_err(image_error)?;
            (summary.bytes_out, summary.sha256_hex())
        }
    };
    Ok(Artifact {
        file: format.file_name().into(),
        size,
        sha256,
    })
}

/// A version-4 style UUID from the build key (not random: reproducible).
fn erofs_uuid(key: &str) -> [u8; 16] {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("ironrack erofs uuid {key}"));
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

fn write_tar(target: &Target, path: &Path, bar: &ProgressBar) -> Result<(u64, String), Error> {
    let io = |operation| {
        move |source| Error::Io {
            operation,
            path: path.to_owned(),
            source,
        }
    };
    let file = fs::File::create(path).map_err(io("creating"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let summary = tar::write(target, &mut out, path, bar)?;
    let file = out
        .into_inner()
        .map_err(|e| io("writing")(e.into_error()))?;
    file.sync_all().map_err(io("syncing"))?;
    Ok((summary.bytes, summary.sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_spellings() {
        assert_eq!(
            ImageCompression::parse("zstd"),
            Some(ImageCompression::default())
        );
        assert_eq!(
            ImageCompression::parse("xz:9").map(ImageCompression::to_key),
            Some("xz:9".into())
        );
        for bad in ["lz4", "zstd:0", "zstd:23", "xz:10", "zstd:", "gzip:3"] {
            assert_eq!(ImageCompression::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_default_to_squashfs_and_are_ordered_once() {
        assert_eq!(ImageFormat::from_spec(&[]), vec![ImageFormat::Squashfs]);
        assert_eq!(
            ImageFormat::from_spec(&[FsFormat::Tar, FsFormat::Squashfs, FsFormat::Tar]),
            vec![ImageFormat::Squashfs, ImageFormat::Tar]
        );
    }

    #[test]
    fn the_erofs_uuid_follows_the_key() {
        assert_eq!(erofs_uuid("a"), erofs_uuid("a"));
        assert_ne!(erofs_uuid("a"), erofs_uuid("b"));
        assert_eq!(erofs_uuid("a")[6] >> 4, 4);
    }
}
