//! The PXE service (DHCP, TFTP, HTTP), inventory, the attestation server and
//! the node agent.
//!
//! Built so far: the site configuration ([`site`]), the DHCP/proxyDHCP
//! server ([`net::dhcp`]), the TFTP server ([`net::tftp`]), HTTP boot
//! ([`net::http`]), the signed image store ([`images`]), the inventory and
//! boot timelines ([`inventory`], [`store`]), the `serve` process
//! ([`server`]), the virtual rack for tests and demos ([`lab`]) and the
//! attestation primitives ([`attest`]). See ARCHITECTURE.md for the map.

pub mod attest;
pub mod images;
pub mod inventory;
pub mod lab;
pub mod net;
pub mod server;
pub mod site;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
