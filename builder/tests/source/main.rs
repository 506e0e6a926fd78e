//! Integration tests of the Debian-format layer against the real tools:
//! dpkg (`--compare-versions`), dpkg-deb (`--build`, `--info`,
//! `--contents`, `-x`, `-e`) and apt (`update`, `apt-cache show`,
//! `apt-get -s install`) with a private configuration.

// SKIP notices must be loud, on stderr.
#![allow(clippy::print_stderr)]

mod apt_repo;
mod deb_tools;
mod dpkg_relations;
mod dpkg_versions;
mod host_apt;
mod props;
mod util;
