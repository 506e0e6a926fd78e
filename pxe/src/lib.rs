//! The PXE service (DHCP, TFTP, HTTP), inventory, the attestation server and
//! the node agent.
//!
//! Built so far: the site configuration ([`site`]), the DHCP/proxyDHCP
//! server ([`net::dhcp`]), the TFTP server ([`net::tftp`]), lease persistence ([`store`]) and the
//! attestation primitives ([`attest`]). See ARCHITECTURE.md for the map.

pub mod attest;
pub mod net;
pub mod site;
pub mod store;
