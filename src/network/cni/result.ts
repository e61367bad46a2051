// CNI ADD results, normalised. Spec versions:
//   0.1.0 / 0.2.0   { ip4: {ip, gateway, routes}, ip6: {...}, dns }
//   0.3.x / 0.4.0   { interfaces, ips: [{version, address, gateway, interface}], routes, dns }
//   1.0.0 / 1.1.0   as 0.4.0 without ips[].version
// The raw JSON is kept next to the normalised form: it is what a chained
// plugin and DEL get back as `prevResult`, in the version the plugin wrote.
import { isIP } from 'net';
import { InternalError } from '../../errors';

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** The netns path for an interface inside the sandbox; empty/absent on the host. */
  sandbox?: string;
}

export interface CniIpConfig {
  /** CIDR notation: the address and its prefix, e.g. "10.88.0.5/16". */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns: CniDns;
}

function fail(msg: string): never {
  throw new InternalError(`invalid CNI result: ${msg}`, { stage: 'network' });
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${where} is not an object`);
  return v as Record<string, unknown>;
}

function optString(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') fail(`${where} is not a string`);
  return v;
}

function list(v: unknown, where: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(`${where} is not a list`);
  return v;
}

function stringList(v: unknown, where: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  return list(v, where).map((s, i) => {
    if (typeof s !== 'string') fail(`${where}[${i}] is not a string`);
    return s;
  });
}

/** "10.0.0.5/24" (or a bare address in old results) → "10.0.0.5". */
export function addressOf(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

function checkCidr(v: unknown, where: string): string {
  if (typeof v !== 'string') fail(`${where} is not a string`);
  const [addr, bits, extra] = v.split('/');
  const family = isIP(addr);
  const max = family === 4 ? 32 : 128;
  if (!family || extra !== undefined || bits === undefined || !/^\d{1,3}$/.test(bits) || Number(bits) > max) {
    fail(`${where} "${v}" is not an address in CIDR notation`);
  }
  return v;
}

function checkIp(v: unknown, where: string): string | undefined {
  const s = optString(v, where);
  if (s !== undefined && !isIP(s)) fail(`${where} "${s}" is not an IP address`);
  return s;
}

function parseRoute(v: unknown, where: string): CniRoute {
  const r = obj(v, where);
  const route: CniRoute = { dst: checkCidr(r.dst, `${where}.dst`) };
  const gw = checkIp(r.gw, `${where}.gw`);
  if (gw) route.gw = gw;
  return route;
}

function parseDns(v: unknown): CniDns {
  if (v === undefined || v === null) return {};
  const d = obj(v, 'dns');
  const dns: CniDns = {};
  const ns = stringList(d.nameservers, 'dns.nameservers');
  if (ns?.length) dns.nameservers = ns;
  const domain = optString(d.domain, 'dns.domain');
  if (domain) dns.domain = domain;
  const search = stringList(d.search, 'dns.search');
  if (search?.length) dns.search = search;
  const options = stringList(d.options, 'dns.options');
  if (options?.length) dns.options = options;
  return dns;
}

function versionOf(raw: Record<string, unknown>, fallback: string): string {
  const v = raw.cniVersion;
  if (v === undefined || v === '') return fallback;
  if (typeof v !== 'string') fail('cniVersion is not a string');
  return v;
}

/** Normalises a result of any supported spec version. */
export function parseResult(raw: unknown, fallbackVersion = '1.0.0'): CniResult {
  const r = obj(raw, 'the result');
  const cniVersion = versionOf(r, fallbackVersion);
  if (/^0\.[12]\./.test(cniVersion)) return parseLegacy(r, cniVersion);
  if (!/^(0\.3\.\d+|0\.4\.\d+|1\.[01]\.\d+)$/.test(cniVersion)) fail(`unsupported cniVersion ${cniVersion}`);

  const interfaces = list(r.interfaces, 'interfaces').map((v, i) => {
    const o = obj(v, `interfaces[${i}]`);
    const name = optString(o.name, `interfaces[${i}].name`);
    if (!name) fail(`interfaces[${i}] has no name`);
    const iface: CniInterface = { name };
    const mac = optString(o.mac, `interfaces[${i}].mac`);
    if (mac) iface.mac = mac;
    const sandbox = optString(o.sandbox, `interfaces[${i}].sandbox`);
    if (sandbox) iface.sandbox = sandbox;
    if (typeof o.mtu === 'number') iface.mtu = o.mtu;
    return iface;
  });
  const ips = list(r.ips, 'ips').map((v, i) => {
    const o = obj(v, `ips[${i}]`);
    const ip: CniIpConfig = { address: checkCidr(o.address, `ips[${i}].address`) };
    const gw = checkIp(o.gateway, `ips[${i}].gateway`);
    if (gw) ip.gateway = gw;
    if (o.interface !== undefined && o.interface !== null) {
      const idx = o.interface;
      if (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0 || idx >= interfaces.length) {
        fail(`ips[${i}].interface ${String(idx)} is not an index into interfaces`);
      }
      ip.interface = idx;
    }
    return ip;
  });
  const routes = list(r.routes, 'routes').map((v, i) => parseRoute(v, `routes[${i}]`));
  return { cniVersion, interfaces, ips, routes, dns: parseDns(r.dns) };
}

function parseLegacy(r: Record<string, unknown>, cniVersion: string): CniResult {
  const ips: CniIpConfig[] = [];
  const routes: CniRoute[] = [];
  for (const fam of ['ip4', 'ip6'] as const) {
    if (r[fam] === undefined || r[fam] === null) continue;
    const o = obj(r[fam], fam);
    const ip: CniIpConfig = { address: checkCidr(o.ip, `${fam}.ip`) };
    const gw = checkIp(o.gateway, `${fam}.gateway`);
    if (gw) ip.gateway = gw;
    ips.push(ip);
    routes.push(...list(o.routes, `${fam}.routes`).map((v, i) => parseRoute(v, `${fam}.routes[${i}]`)));
  }
  return { cniVersion, interfaces: [], ips, routes, dns: parseDns(r.dns) };
}

/**
 * The addresses (CIDR) on the sandbox interface `ifName`. IPs with no
 * interface index count when no IP names that interface (0.2 results,
 * minimal plugins).
 */
export function sandboxAddresses(result: CniResult, ifName = 'eth0'): string[] {
  const onIface = result.ips.filter((ip) => {
    if (ip.interface === undefined) return false;
    const iface = result.interfaces[ip.interface];
    return iface.name === ifName && !!iface.sandbox;
  });
  const chosen = onIface.length ? onIface : result.ips.filter((ip) => ip.interface === undefined);
  return chosen.map((c) => c.address);
}

/**
 * The pod's addresses: those on the sandbox interface. The primary is the
 * first IPv4 address, else the first address; the others follow in result
 * order (dual stack).
 */
export function selectPodIps(result: CniResult, ifName = 'eth0'): { ip: string; additionalIps: string[] } {
  const addrs = sandboxAddresses(result, ifName).map(addressOf);
  const unique = addrs.filter((a, i) => addrs.indexOf(a) === i);
  if (unique.length === 0) return { ip: '', additionalIps: [] };
  const v4 = unique.findIndex((a) => isIP(a) === 4);
  const primary = v4 >= 0 ? v4 : 0;
  return { ip: unique[primary], additionalIps: unique.filter((_, i) => i !== primary) };
}

/** Spec: a result's cniVersion ≥ 0.4.0 is handed to DEL and CHECK as prevResult. */
export function versionAtLeast(v: string, min: string): boolean {
  const a = v.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}
