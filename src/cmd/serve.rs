//! `ironrack serve`: the PXE service of a site.

use std::path::PathBuf;

use anyhow::Context;

/// Serve a site: DHCP (authoritative or proxy), TFTP (iPXE binaries from
/// the site's `ipxe` package) and HTTP (per-node iPXE scripts, signed image
/// artifacts, JSON API, /metrics), with every boot recorded in the state
/// database.
///
/// Only images whose manifest verifies against the trust root, and whose
/// artifacts match it, are served; refused ones are listed with their
/// reason by `ironrack nodes` and /api/images.
///
/// Signals: SIGHUP reloads site.toml, the trust root, the images and the
/// iPXE package without dropping transfers in flight (a site file that
/// does not load is refused and the old one keeps serving); SIGTERM or
/// SIGINT stop after transfers in flight end.
///
/// A complete example site file is docs/site.example.toml; the smallest:
///
///   [server]
///   http-base-url = "http://198.18.0.1:8080"
///   database = "state.db"              # relative to this file
///   unknown-nodes = "enroll"           # ignore | discover | enroll
///
///   [images]
///   dirs = ["out"]                     # out/<name>/<version>/manifest.json ...
///   trust-root = "trust.json"
///
///   [dhcp]
///   mode = "authoritative"             # or "proxy" beside the site's DHCP
///
///   [[interface]]
///   name = "br0"
///   address = "198.18.0.1/24"
///
///   [boot]
///   ipxe-deb = "ipxe_1.0.0+git-20190125.36a4c85-5.1_all.deb"
///
///   [[rack]]
///   name = "r1"
///   [[rack.node]]
///   mac = "52:54:00:12:00:01"
///   hostname = "gpu-r1-n1"
///   ip = "198.18.0.11"
///   image = "gpu-node"
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// The site file.
    #[arg(long, value_name = "SITE.TOML")]
    pub site: PathBuf,
}

/// Runs until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    ironrack_pxe::server::run(&args.site)
        .with_context(|| format!("serving site {}", args.site.display()))
}
