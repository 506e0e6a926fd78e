//! The event script busybox `udhcpc` runs in the initramfs: it configures
//! the lease on the interface with busybox `ip` (address, default route),
//! writes `/etc/resolv.conf`, and leaves the lease where the agent reads
//! it ([`DHCP_LEASE_PATH`]) so the console can name the address.
//!
//! Debian's busybox looks for `/etc/udhcpc/default.script` by default; the
//! agent passes the path explicitly anyway. The text is a constant, so the
//! archive stays deterministic.

/// Where the script lives in the initramfs (busybox 1.35 Debian default).
pub const UDHCPC_SCRIPT_PATH: &str = "etc/udhcpc/default.script";
/// Where the script writes the lease it configured (`key=value` lines:
/// interface, ip, mask, router, dns, server, lease-time).
pub const DHCP_LEASE_PATH: &str = "run/ironrack/dhcp.lease";

/// The script. `set -e`: the lease file is written only once the address
/// and route are in place, so its presence means the network is up.
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script of the ironrack initramfs (written by the builder).
# $1 is the event; the lease is in the environment (busybox udhcpc).
set -e
out=/run/ironrack/dhcp.lease
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set dev "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/${mask:-32}" dev "$interface"
	for r in $router; do
		ip -4 route replace default via "$r" dev "$interface"
		break
	done
	: > /etc/resolv.conf
	for d in $dns; do
		echo "nameserver $d" >> /etc/resolv.conf
	done
	mkdir -p /run/ironrack
	{
		echo "interface=$interface"
		echo "ip=$ip"
		echo "mask=$mask"
		echo "router=$router"
		echo "dns=$dns"
		echo "server=$serverid"
		echo "hostname=$hostname"
		echo "lease-time=$lease"
	} > "$out"
	;;
esac
exit 0
"#;
