//! Integration tests of the TFTP server: real Debian clients, hostile
//! packets from raw sockets, and the engine's own windowed client.

mod clients;
mod engine;
mod hostile;
mod support;
