// host:port addresses from the config (streaming_address, metrics_address).

/** "127.0.0.1:0", "[::1]:10010", ":10010" → host and port; `key` names the setting in the error. */
export function splitAddress(address: string, key: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) throw new Error(`${key} ${JSON.stringify(address)} is not host:port`);
  return { host: m[1] ?? m[2] ?? '', port: Number(m[3]) };
}

/** The address a client dials for a server bound to host:port. */
export function urlHost(host: string, port: number): string {
  // An unspecified bind address is no address for a client: the loopback stands in.
  const h = host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}
