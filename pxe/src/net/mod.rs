//! The network services of a PXE boot: each module serves one protocol.

pub mod dhcp;
pub mod http;
pub mod tftp;
mod sys;
