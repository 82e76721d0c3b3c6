/** Whose a snapshot is, from its tags alone: the decision every sync, retention and "latest" rests on in a shared bucket. */
import { describe, expect, test } from 'bun:test';
import { type BackupOrigin, backupTags, clusterLabel, kubernetesVersionOf, matchesCluster, originOf, originTags, ownership } from '../../src/engine/origin.ts';

const prod: BackupOrigin = { clusterId: '4f1c0a9e-1111-4222-8333-944455556666', clusterName: 'prod', namespace: 'kubedr-system' };

describe('origin tags', () => {
  test('round-trip after the policy name, which stays the first tag', () => {
    const tags = ['daily', ...originTags(prod)];
    expect(tags[0]).toBe('daily');
    expect(originOf(tags)).toEqual(prod);
    expect(tags.some((t) => t.includes(','))).toBe(false);
  });

  test('a backup\'s tags: policy first, origin, and the cluster\'s Kubernetes version when it was read', () => {
    const tags = backupTags('daily', prod, 'v1.20.2');
    expect(tags[0]).toBe('daily');
    expect(originOf(tags)).toEqual(prod);
    expect(kubernetesVersionOf(tags)).toBe('v1.20.2');
    expect(backupTags('daily', prod, undefined)).toEqual(['daily', ...originTags(prod)]);
    expect(kubernetesVersionOf(['daily', ...originTags(prod)])).toBeUndefined();
  });

  test('a snapshot without them has no origin', () => {
    expect(originOf(['daily'])).toBeUndefined();
    expect(clusterLabel(['daily'])).toBe('-');
  });

  test('ownership: own only with the same cluster and namespace', () => {
    expect(ownership(['p', ...originTags(prod)], prod)).toBe('own');
    expect(ownership(['p', ...originTags({ ...prod, namespace: 'other' })], prod)).toBe('foreign');
    expect(ownership(['p', ...originTags({ ...prod, clusterId: 'ffffffff-0000' })], prod)).toBe('foreign');
    // The readable name decides nothing: two clusters may both be called "prod".
    expect(ownership(['p', ...originTags({ ...prod, clusterName: 'renamed' })], prod)).toBe('own');
    expect(ownership(['p'], prod)).toBe('unmarked');
  });

  test('a person names a cluster by name, id or id prefix, optionally with /namespace; "-" for no identity', () => {
    const tags = ['p', ...originTags(prod)];
    expect(clusterLabel(tags)).toBe('prod (4f1c0a9e)');
    for (const wanted of ['prod', prod.clusterId, '4f1c', '4f1c0a9e/kubedr-system', 'prod/kubedr-system']) expect(matchesCluster(tags, wanted)).toBe(true);
    for (const wanted of ['staging', '4f1', 'prod/other', '-']) expect(matchesCluster(tags, wanted)).toBe(false);
    expect(matchesCluster(['p'], '-')).toBe(true);
    expect(matchesCluster(['p'], 'prod')).toBe(false);
  });
});
