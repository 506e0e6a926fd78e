//! The virtual rack: a network namespace with a bridge, qemu nodes (UEFI
//! with a manufactured swtpm each, or SeaBIOS) on taps in it, and the
//! bookkeeping that lets `lab status` and `lab down` find every process a
//! `lab up` started, from another process, by PID.
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range) and
//! live only inside the namespace; nothing here touches the host's
//! interfaces. Network plumbing uses `ip` (iproute2), as an operator would.

mod error;
pub mod net;
pub mod node;
pub mod state;
pub mod storm;
pub mod up;

pub use error::LabError;
pub use net::LabNet;
pub use node::{Firmware, NodeConfig};
pub use state::{LabState, NodeState, Proc};
