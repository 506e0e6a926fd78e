//! Network servers of the PXE service.

pub mod dhcp;
