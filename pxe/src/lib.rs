//! The PXE service (DHCP, TFTP, HTTP), inventory, the attestation server and
//! the node agent.
//!
//! Built so far: the TFTP server ([`net::tftp`]). See ARCHITECTURE.md for
//! the planned parts.

pub mod net;
