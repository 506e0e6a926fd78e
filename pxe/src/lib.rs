//! The PXE service (DHCP, TFTP, HTTP), inventory, the attestation server and
//! the node agent.
//!
//! Built so far: the site configuration ([`site`]), the DHCP/proxyDHCP
//! server ([`net::dhcp`]) and lease persistence ([`store`]).

pub mod net;
pub mod site;
pub mod store;
