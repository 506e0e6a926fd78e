//! The one registration tokio makes `unsafe`: a socket given to the
//! runtime with the readiness the caller chooses.
//!
//! Everything `unsafe` in the network services lives here, with the
//! reason it is sound.

use std::io;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers a non-blocking UDP socket with the runtime for `interest`
/// only. Must be called inside a tokio runtime.
#[allow(unsafe_code)]
pub(crate) fn register_udp(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: `AsyncFd` takes ownership of the socket, which owns its
    // descriptor: it stays open, and `as_raw_fd` names the same descriptor,
    // until the `AsyncFd` is dropped (then deregistered before the close).
    let registered = unsafe { AsyncFd::register_with_interest(socket, interest) };
    registered.map_err(io::Error::from)
}
