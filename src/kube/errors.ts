/** @module Errors from the Kubernetes API, classified by HTTP status. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    /** The API server's own message (Status.message), for messages users read; `message` adds method and path for logs. */
    readonly detail: string,
    readonly method: string,
    readonly path: string,
    /**
     * A 404 for the kind, not the object: the API server does not serve this resource (yet). A kube-apiserver that
     * has just started answers so for every custom resource until it has loaded the CRDs; that says nothing of
     * whether the object exists, so it is not isNotFound but worth asking again.
     */
    readonly notServed = false,
  ) {
    super(`${method} ${path}: ${status} ${reason}: ${detail}`);
    this.name = 'ApiError';
  }
}

/** The API server could not be reached at all (refused, reset, TLS). */
export class ConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectionError';
  }
}

/**
 * The kubeconfig's credentials could not be had: an exec plugin failed, printed nothing usable, or took too long. Its
 * message names the plugin and what it said, so the person who set up the kubeconfig can act.
 */
export class CredentialError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CredentialError';
  }
}

const hasStatus = (err: unknown, status: number): boolean => err instanceof ApiError && err.status === status;

/** 404 for the object itself: it does not exist (not a resource the server does not serve at the moment). */
export const isNotFound = (err: unknown): boolean => hasStatus(err, 404) && !(err as ApiError).notServed;
/** 404 for the kind: this API server does not serve the resource (a CRD not installed, or not loaded yet). */
export const isNotServed = (err: unknown): boolean => err instanceof ApiError && err.notServed;
export const isConflict = (err: unknown): boolean => hasStatus(err, 409);
/** 410 Gone: a watch's resourceVersion is too old; relist. */
export const isGone = (err: unknown): boolean => hasStatus(err, 410);
/**
 * The API server refused the request itself: 400 BadRequest (an admission webhook's denial), 403 Forbidden (RBAC, a
 * ResourceQuota, Pod Security, OwnerReferencesPermissionEnforcement), 422 Invalid. Sent again unchanged, it gets the same
 * answer until someone changes something, unlike 5xx, 429 or a lost connection.
 */
export const isRefused = (err: unknown): err is ApiError => err instanceof ApiError && [400, 403, 422].includes(err.status);
/** Worth asking again after a while: the API server was unreachable, overloaded (429) or failed (5xx). */
export const isTransient = (err: unknown): boolean =>
  err instanceof ConnectionError || (err instanceof ApiError && (err.status >= 500 || err.status === 429 || err.notServed));
/** For `.catch()`: an object that is not there is `undefined`; any other error is thrown on (controller-runtime's IgnoreNotFound). */
export function ignoreNotFound(err: unknown): undefined {
  if (isNotFound(err)) return undefined;
  throw err;
}
export const isAlreadyExists = (err: unknown): boolean => isConflict(err) && (err as ApiError).reason === 'AlreadyExists';
