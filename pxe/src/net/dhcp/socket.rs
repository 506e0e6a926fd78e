//! UDP sockets bound to one interface each.
//!
//! Every listener binds 0.0.0.0:<port> with SO_BINDTODEVICE, so it receives
//! the broadcasts of clients that have no address yet, only from its own
//! interface, and its broadcasts to 255.255.255.255 leave through that
//! interface (with the interface's address as source). SO_REUSEADDR lets
//! one listener per interface share the port. No raw sockets: a client that
//! has no address gets broadcast replies (see `policy::Cx::destination`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::DhcpError;

/// Kernel receive buffer asked for: a boot storm is a burst of broadcasts,
/// and what the buffer cannot hold is dropped (clients retransmit, but
/// seconds later).
const RECV_BUFFER: usize = 4 << 20;

/// Opens a UDP socket on `port`, bound to `interface`, broadcast enabled.
pub fn bind_on_interface(interface: &str, port: u16) -> Result<UdpSocket, DhcpError> {
    let err = |source| DhcpError::Bind {
        interface: interface.to_owned(),
        port,
        source,
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(err)?;
    socket.set_broadcast(true).map_err(err)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.set_nonblocking(true).map_err(err)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    socket.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(socket.into()).map_err(err)
}
