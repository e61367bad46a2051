// Image references, parsed and normalized the way Docker (and containerd's
// CRI plugin) do: `busybox` is `docker.io/library/busybox:latest`.
//
// Grammar (distribution's reference package):
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [domain "/"] path-component ["/" path-component]*
//   domain     := host [":" port]        host: DNS name, or [IPv6]
//   path-comp  := [a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*
//   tag        := [\w][\w.-]{0,127}
//   digest     := algorithm ":" hex       (sha256/sha384/sha512, lowercase hex)
import { InvalidArgumentError } from '../../errors';
import { isDigest } from './digest';

export const DEFAULT_DOMAIN = 'docker.io';
export const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
export const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
export const NAME_MAX_LENGTH = 255;

const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[[a-fA-F0-9:]+\\]';
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})`;
const DOMAIN = `${HOST}(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const NAME = `(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;

const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const ID_RE = /^[a-f0-9]{64}$/;

/** A parsed, normalized reference. `domain` and `path` are always set. */
export interface ImageReference {
  /** Registry host[:port], e.g. "docker.io", "localhost:5000". */
  domain: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  path: string;
  tag?: string;
  digest?: string;
}

function invalid(input: string, why?: string): InvalidArgumentError {
  return new InvalidArgumentError('image', `invalid reference "${input}"${why ? `: ${why}` : ''}`, { image: input });
}

/** Splits a name into domain and path with Docker's rule: the first component is a domain only if it looks like one. */
function splitDomain(name: string): { domain: string; path: string } {
  const i = name.indexOf('/');
  let domain: string;
  let path: string;
  const first = i === -1 ? '' : name.slice(0, i);
  if (
    i === -1 ||
    (!first.includes('.') && !first.includes(':') && first !== 'localhost' && first.toLowerCase() === first)
  ) {
    domain = DEFAULT_DOMAIN;
    path = name;
  } else {
    domain = first;
    path = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_REPO_PREFIX + path;
  return { domain, path };
}

/**
 * Parses a reference as the user typed it and normalizes it: default
 * domain, `library/` for official images. It does NOT add a default tag
 * (see {@link parseDockerRef}). Malformed → InvalidArgument('image').
 */
export function parseNormalizedReference(input: string): ImageReference {
  if (typeof input !== 'string' || input.length === 0) throw invalid(String(input ?? ''), 'empty reference');
  if (ID_RE.test(input)) throw invalid(input, 'cannot specify 64-byte hexadecimal strings');
  // Split off digest and tag first, so that the domain test sees only the name.
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon !== -1 && !rest.slice(colon + 1).includes('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const { domain, path } = splitDomain(rest);
  if (path.toLowerCase() !== path) throw invalid(input, 'repository name must be lowercase');
  const full = `${domain}/${path}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
  const m = REFERENCE_RE.exec(full);
  if (!m) throw invalid(input);
  if (m[1].length > NAME_MAX_LENGTH)
    throw invalid(input, `repository name must not be more than ${NAME_MAX_LENGTH} characters`);
  if (!DOMAIN_RE.test(domain) || !PATH_RE.test(path)) throw invalid(input);
  if (tag !== undefined && !TAG_RE.test(tag)) throw invalid(input);
  if (digest !== undefined && !isDigest(digest)) throw invalid(input, `invalid digest "${digest}"`);
  const ref: ImageReference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * The reference a pull or lookup uses, as containerd's ParseDockerRef makes
 * it: normalized, `:latest` when neither tag nor digest is given, and the
 * tag dropped when a digest is given (the digest alone names the content).
 */
export function parseDockerRef(input: string): ImageReference {
  const ref = parseNormalizedReference(input);
  if (ref.digest !== undefined) delete ref.tag;
  else if (ref.tag === undefined) ref.tag = DEFAULT_TAG;
  return ref;
}

/** "domain/path" — the repository the reference lives in. */
export function repositoryName(ref: Pick<ImageReference, 'domain' | 'path'>): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalized string: "docker.io/library/busybox:latest", "host/a@sha256:…". */
export function formatReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** "docker.io/library/busybox:1.36" for a repository and tag. */
export function tagReference(ref: Pick<ImageReference, 'domain' | 'path'>, tag: string): string {
  return `${repositoryName(ref)}:${tag}`;
}

/** "docker.io/library/busybox@sha256:…" for a repository and digest. */
export function digestReference(ref: Pick<ImageReference, 'domain' | 'path'>, digest: string): string {
  return `${repositoryName(ref)}@${digest}`;
}

/** The short form Docker prints: "busybox:latest", "someone/app:1", "localhost:5000/x:y". */
export function familiarString(ref: ImageReference): string {
  let name = repositoryName(ref);
  if (ref.domain === DEFAULT_DOMAIN) {
    name =
      ref.path.startsWith(OFFICIAL_REPO_PREFIX) && ref.path.indexOf('/', OFFICIAL_REPO_PREFIX.length) === -1
        ? ref.path.slice(OFFICIAL_REPO_PREFIX.length)
        : ref.path;
  }
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** Normalizes a reference string: `busybox` → `docker.io/library/busybox:latest`. */
export function normalizeReference(input: string): string {
  return formatReference(parseDockerRef(input));
}

/** True when `value` is a valid tag. */
export function isValidTag(value: string): boolean {
  return TAG_RE.test(value);
}
