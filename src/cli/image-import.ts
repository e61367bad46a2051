// `capsa image import FILE [--name REPO] [--root DIR] [--config FILE]`:
// loads an OCI image layout (directory or tar) or a docker-archive tar
// (`docker save`, `skopeo copy … docker-archive:`) into the image store,
// for nodes without registry access.
//
// The import runs in this process, on the store files, and so takes the
// daemon's single-instance lock (<root>/capsa.lock) for its whole run:
// the daemon keeps its image index in memory and would neither see nor
// respect what another process writes under it (a GC could even delete
// the blobs of an import in progress). With the daemon running the command
// refuses with a message saying so; stopping the daemon never touches
// running containers. No CRI RPC carries an import, and an admin endpoint
// in the daemon is more surface than this needs (see the operator's guide).
import { promises as fs } from 'fs';
import * as path from 'path';
import pino from 'pino';
import { Config } from '../config/schema';
import { loadConfig } from '../config/load';
import { CapsaError, describeContext, FailedPreconditionError } from '../errors';
import { createLogger } from '../log';
import { Provisioner } from '../provisioner/provisioner';
import { ImageRecord } from '../provisioner/store/image-store';
import { parseNormalizedReference, repositoryName } from '../provisioner/store/reference';
import { acquireInstanceLock, InstanceLock } from '../server/instance-lock';
import { ImportProgressView } from './progress';

export const IMAGE_USAGE = `usage: capsa image import FILE [--name REPO] [--root DIR] [--config FILE]

Loads every image in FILE into the image store: an OCI image layout (a
directory, or a tar / tar.gz of one) or a docker-archive tar. The daemon
must be stopped (running containers are not affected); start it again
afterwards.

  --name REPO     repository for OCI layout images named only by a tag
                  ("latest" → REPO:latest), e.g. registry.k8s.io/pause
  --root DIR      the daemon's root directory (default from the config)
  --config FILE   config file (default /etc/capsa/capsa.toml)
`;

/** Printed with exit code 2. */
class ImageUsageError extends Error {}

export interface ImportArgs {
  file: string;
  /** Normalized repository ("docker.io/library/busybox"), from --name. */
  name?: string;
  configPath?: string;
  root?: string;
}

export function parseImportArgs(args: string[]): ImportArgs {
  let file: string | undefined;
  let name: string | undefined;
  let configPath: string | undefined;
  let root: string | undefined;
  let flagsDone = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--' && !flagsDone) {
      flagsDone = true;
      continue;
    }
    if (flagsDone || !arg.startsWith('--')) {
      if (file !== undefined) throw new ImageUsageError(`unexpected argument "${arg}" (one FILE per import)`);
      file = arg;
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new ImageUsageError(`flag --${flag} needs a value`);
    switch (flag) {
      case 'name':
        name = repositoryOf(value);
        break;
      case 'config':
        configPath = value;
        break;
      case 'root':
        root = value;
        break;
      default:
        throw new ImageUsageError(`unknown flag --${flag} for image import`);
    }
  }
  if (file === undefined) throw new ImageUsageError('image import needs a FILE');
  return { file, name, configPath, root };
}

/** --name must be a repository: no tag (the layout supplies it) and no digest. */
function repositoryOf(value: string): string {
  let ref;
  try {
    ref = parseNormalizedReference(value);
  } catch (err) {
    throw new ImageUsageError(`--name: ${(err as Error).message.replace(/^image: /, '')}`);
  }
  if (ref.tag !== undefined || ref.digest !== undefined)
    throw new ImageUsageError(`--name takes a repository without tag or digest, not "${value}"`);
  return repositoryName(ref);
}

export interface ImportOutput {
  /** Progress and messages (process.stderr). */
  err: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** One line per imported image: id and tags (process.stdout). */
  out: NodeJS.WritableStream;
}

/** `capsa image …`; resolves to the exit code. Configuration errors propagate as ConfigError. */
export async function imageCommand(args: string[], io?: ImportOutput): Promise<number> {
  const o: ImportOutput = io ?? { err: process.stderr, out: process.stdout };
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    o.err.write(IMAGE_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'import') {
    o.err.write(`capsa: unknown command "image ${sub}"\n${IMAGE_USAGE}`);
    return 2;
  }
  if (rest.some((a) => a === '--help' || a === '-h')) {
    o.err.write(IMAGE_USAGE);
    return 0;
  }
  let parsed: ImportArgs;
  try {
    parsed = parseImportArgs(rest);
  } catch (err) {
    if (!(err instanceof ImageUsageError)) throw err;
    o.err.write(`capsa: ${err.message}\n`);
    return 2;
  }
  const { config } = loadConfig({
    configPath: parsed.configPath,
    overrides: parsed.root !== undefined ? { root: parsed.root } : {},
  });
  return runImport(config, parsed, o);
}

async function runImport(config: Config, args: ImportArgs, o: ImportOutput): Promise<number> {
  const file = path.resolve(args.file);
  const fail = (msg: string): number => {
    o.err.write(`capsa: image import: ${msg}\n`);
    return 1;
  };
  // Before taking the lock: a typo should not need the daemon stopped to be reported.
  try {
    await fs.stat(file);
  } catch (err) {
    return fail(`cannot read ${file}: ${(err as Error).message}`);
  }

  let lock: InstanceLock;
  try {
    await fs.mkdir(config.root, { recursive: true, mode: 0o711 });
    lock = await acquireInstanceLock(config.root);
  } catch (err) {
    if (!(err instanceof FailedPreconditionError))
      return fail(`cannot lock the root dir ${config.root}: ${(err as Error).message}`);
    return fail(
      `${err.message}.\nThe daemon keeps its image index in memory, so images are imported while it is ` +
        `stopped: stop it (running containers are not affected), run the import again, then start it.`,
    );
  }

  // Warnings only, as JSON lines on stderr: the store logs what a person should know (e.g. crash leftovers).
  const log = createLogger('warn', pino.destination({ fd: 2, sync: true }));
  const view = new ImportProgressView(o.err, { tty: Boolean(o.err.isTTY) });
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!abort.signal.aborted) abort.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let provisioner: Provisioner | undefined;
  try {
    provisioner = await Provisioner.open({ config, log });
    const records = await provisioner.store.import(file, {
      baseName: args.name,
      signal: abort.signal,
      onProgress: (p) => view.update(p),
    });
    view.finish();
    if (records.length === 0) return fail(`${file} holds no images`);
    for (const rec of records) {
      o.out.write(`${[rec.id, ...currentTags(provisioner, rec)].join(' ')}\n`);
      if (rec.repoTags.length === 0)
        o.err.write(
          `note: ${rec.id} has no name; refer to it by id${args.name ? '' : ', or import again with --name REPO if the layout tags it'}\n`,
        );
    }
    return 0;
  } catch (err) {
    view.finish();
    // Free at once what the failed image had stored (the daemon's start would do it otherwise),
    // once the layer unpacks it started have landed or failed.
    await provisioner?.layers.idle();
    await provisioner?.store.images
      .gc()
      .catch((gcErr: unknown) =>
        log.warn({ err: (gcErr as Error).message }, 'gc after the failed import failed; the daemon collects at start'),
      );
    if (abort.signal.aborted) {
      fail('interrupted; images completed before the interruption were kept, the unfinished one was discarded');
      return 130;
    }
    const msg =
      err instanceof CapsaError
        ? err.message + (err.kind === 'InvalidArgument' ? '' : describeContext(err.context))
        : String((err as Error)?.message ?? err);
    return fail(msg);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await provisioner?.close();
    await lock.release();
  }
}

/** Tags the image has now (an earlier import may have given it more than this archive did). */
function currentTags(p: Provisioner, rec: ImageRecord): string[] {
  return p.store.images.get(rec.id)?.repoTags ?? rec.repoTags;
}
