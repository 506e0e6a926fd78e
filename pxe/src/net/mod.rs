//! The network services of a PXE boot: each module serves one protocol.

pub mod dhcp;
pub mod http;
mod sys;
pub mod tftp;
