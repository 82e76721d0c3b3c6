/**
 * @module Flags and client of the commands that work on the cluster's KubeDR objects (`backup`, `status`), as kubectl
 * spells them, and the causes of their failures said so that a user can act on them.
 */
import { DEFAULT_NAMESPACE } from '../api/group.ts';
import { KubeClient } from '../kube/client.ts';
import { ApiError } from '../kube/errors.ts';
import type { FlagSpec } from '../util/flags.ts';
import { EXIT, ExitError } from './exit-codes.ts';

export const clusterFlags = {
  namespace: { type: 'string', short: 'n', help: 'namespace of the KubeDR objects', env: 'KUBEDR_NAMESPACE', default: DEFAULT_NAMESPACE },
  kubeconfig: { type: 'string', help: 'kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster ServiceAccount)' },
  context: { type: 'string', help: 'kubeconfig context (default: the kubeconfig\'s current context)' },
} satisfies Record<string, FlagSpec>;

export interface ClusterFlagValues {
  kubeconfig?: string;
  context?: string;
}

/** A command waits for one answer at most this long: a user at a terminal should hear of a hung API server soon. */
const REQUEST_TIMEOUT_MS = 15_000;

/** The client for the kubeconfig the flags name (or kubectl's default); a configuration that cannot be used is a usage error. */
export function clientFromFlags(f: ClusterFlagValues): KubeClient {
  try {
    return KubeClient.load({ kubeconfig: f.kubeconfig, context: f.context, fieldManager: 'kubedr-cli', requestTimeoutMs: REQUEST_TIMEOUT_MS });
  } catch (err) {
    throw new ExitError(err instanceof Error ? err.message : String(err), EXIT.usage);
  }
}

/** An API refusal of our credentials, said as such; any other error as it is. */
export function explainApiError(err: unknown, server: string): unknown {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    return new ExitError(`the API server at ${server} refused the request (${err.status} ${err.reason}): ${err.detail}`, EXIT.credentials);
  }
  return err;
}
