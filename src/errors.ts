// One error hierarchy for the whole daemon. Code below the server layer
// throws these; src/server/instrument.ts is the only place that turns them
// into gRPC status codes. Each carries the context an operator needs:
// which stage failed and for which object.

export type ErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'DeadlineExceeded'
  | 'Unimplemented'
  | 'Unavailable'
  | 'ResourceExhausted'
  | 'Internal';

export interface ErrorContext {
  /** Lifecycle stage or operation that failed, e.g. "pull", "unpack", "isolate". */
  stage?: string;
  /** Container, sandbox or image the error is about. */
  containerId?: string;
  sandboxId?: string;
  image?: string;
  /** The offending request field, for InvalidArgument. */
  field?: string;
  /** Any other path or object the error names. */
  path?: string;
}

export class CapsaError extends Error {
  readonly kind: ErrorKind;
  readonly context: ErrorContext;

  constructor(kind: ErrorKind, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = `${kind}Error`;
    this.kind = kind;
    this.context = context;
  }
}

export class InvalidArgumentError extends CapsaError {
  constructor(field: string, message: string, context: ErrorContext = {}) {
    super('InvalidArgument', `${field}: ${message}`, { ...context, field });
  }
}

export class NotFoundError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}) {
    super('NotFound', message, context);
  }
}

export class AlreadyExistsError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}) {
    super('AlreadyExists', message, context);
  }
}

export class FailedPreconditionError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}) {
    super('FailedPrecondition', message, context);
  }
}

export class DeadlineExceededError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}) {
    super('DeadlineExceeded', message, context);
  }
}

export class UnimplementedError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}) {
    super('Unimplemented', message, context);
  }
}

export class UnavailableError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('Unavailable', message, context, options);
  }
}

export class InternalError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('Internal', message, context, options);
  }
}

/** Wraps any thrown value as a CapsaError, keeping typed errors as they are. */
export function asCapsaError(err: unknown, context: ErrorContext = {}): CapsaError {
  if (err instanceof CapsaError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(message, context, { cause: err });
}

/** Formats the context as " (stage=pull, image=...)" for log and status messages. */
export function describeContext(context: ErrorContext): string {
  const parts = Object.entries(context)
    .filter(([k, v]) => v !== undefined && k !== 'field')
    .map(([k, v]) => `${k}=${String(v)}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}
