/**
 * Socket addresses as every adapter reports them, and as messages print them.
 * Pure; shared by the adapters, the server and the command line.
 *
 * @module
 */

import type { SocketAddress } from "./types.ts";

/**
 * A `SocketAddress` from a runtime's host and port. IPv4 peers seen through a
 * dual-stack socket (`::ffff:127.0.0.1`) are reported as plain IPv4, the same
 * on every runtime.
 */
export function socketAddress(host: string | undefined, port: number | undefined): SocketAddress {
  return { host: (host ?? "").replace(/^::ffff:(?=\d+\.)/, ""), port: port ?? 0 };
}

/** `host:port`, with an IPv6 host in brackets. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
