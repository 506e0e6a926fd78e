//! The PXE service (DHCP, TFTP, HTTP), inventory, the attestation server and
//! the node agent.
//!
//! See ARCHITECTURE.md for the planned parts.

pub mod attest;
