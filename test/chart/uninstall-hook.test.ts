/**
 * helm uninstall's pre-delete hook as the chart renders it: a Job Helm runs (and waits for) before it deletes the
 * release's objects, running `kubedr release-records` from the controller's image under the chart's ServiceAccount,
 * placed where the controller runs, bounded in time, and switched off by uninstall.releaseRecords=false.
 */
import { describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { render } from '../support/helm.ts';

const base = ['--name', 'kubedr', '--namespace', 'kubedr-system'];
const hook = (extra: string[] = []) => render([...base, ...extra]).one('Job');

describe('the pre-delete hook', () => {
  const chart = render(base);
  const job = chart.one('Job');
  const pod = job.spec.template.spec;
  const container = pod.containers[0];
  const deployment = chart.one('Deployment');

  test('is a pre-delete hook, replaced by a new uninstall and deleted once it succeeded', () => {
    expect(job.metadata.name).toBe('kubedr-release-records');
    expect(job.metadata.namespace).toBe('kubedr-system');
    expect(job.metadata.annotations).toEqual({
      'helm.sh/hook': 'pre-delete',
      'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded',
    });
    // Only the hook: nothing else of the chart is a hook, so nothing else is left out of what Helm deletes.
    expect(chart.docs.filter((d) => d.metadata.annotations?.['helm.sh/hook']).map((d) => d.kind)).toEqual(['Job']);
  });

  test('runs release-records for the release namespace from the controller\'s image, stopping the chart\'s Deployment first', () => {
    expect(container.image).toBe(deployment.spec.template.spec.containers[0].image);
    expect(container.imagePullPolicy).toBe(deployment.spec.template.spec.containers[0].imagePullPolicy);
    expect(container.args).toEqual(['release-records', '--namespace=kubedr-system', `--stop-deployment=${deployment.metadata.name}`, '--timeout=70s']);
    expect(pod.serviceAccountName).toBe(deployment.spec.template.spec.serviceAccountName);
    expect(pod.restartPolicy).toBe('Never');
  });

  test('cannot hold an uninstall: one retry, a deadline past the controller\'s grace period and its own --timeout', () => {
    expect(job.spec.backoffLimit).toBe(1);
    const grace = deployment.spec.template.spec.terminationGracePeriodSeconds as number;
    expect(job.spec.activeDeadlineSeconds).toBe(grace + 60);
    const longer = hook(['--set', 'shutdownTimeoutSeconds=120']);
    expect(longer.spec.activeDeadlineSeconds).toBe(190);
    expect(longer.spec.template.spec.containers[0].args).toContain('--timeout=160s');
  });

  test('placed as the controller (nodeSelector, tolerations, affinity, priority, pull secrets), with resources of its own', () => {
    const d = deployment.spec.template.spec;
    expect(pod.nodeSelector).toEqual(d.nodeSelector);
    expect(pod.nodeSelector).toEqual({ 'node-role.kubernetes.io/control-plane': '' });
    expect(pod.tolerations).toEqual(d.tolerations);
    expect(pod.tolerations.length).toBe(2);
    expect(container.resources).toEqual({ requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '256Mi' } });
    const dir = mkdtempSync(join(tmpdir(), 'uninstall-hook-'));
    const values = join(dir, 'values.yaml');
    writeFileSync(values, dump({ nodeSelector: { disk: 'ssd' }, priorityClassName: 'system-cluster-critical', imagePullSecrets: [{ name: 'regcred' }],
      affinity: { nodeAffinity: { x: 'y' } }, uninstall: { resources: { limits: { memory: '1Gi' } } } }));
    const placed = hook(['-f', values]);
    rmSync(dir, { recursive: true });
    expect(placed.spec.template.spec.nodeSelector).toEqual({ 'node-role.kubernetes.io/control-plane': '', disk: 'ssd' });
    expect(placed.spec.template.spec.priorityClassName).toBe('system-cluster-critical');
    expect(placed.spec.template.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(placed.spec.template.spec.affinity).toEqual({ nodeAffinity: { x: 'y' } });
    expect(placed.spec.template.spec.containers[0].resources.limits.memory).toBe('1Gi');
  });

  test('no host access, no root, a read-only root filesystem', () => {
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: {} }]);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  });

  test('its pods are not the Deployment\'s (it waits for those to be gone)', () => {
    expect(job.spec.template.metadata.labels['app.kubernetes.io/component']).toBe('uninstall');
    expect(deployment.spec.template.metadata.labels['app.kubernetes.io/component']).toBe('controller');
  });

  test('the Role lets it scale the chart\'s own Deployment, and no other', () => {
    const rules = chart.one('Role').rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[];
    expect(rules.filter((r) => r.apiGroups.includes('apps'))).toEqual([
      { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['kubedr'], verbs: ['get', 'patch'] },
    ]);
    const named = render(['--name', 'dr', '--namespace', 'x', '--set', 'fullnameOverride=backup-ctl']);
    expect(named.one('Job').spec.template.spec.containers[0].args).toContain('--stop-deployment=backup-ctl');
    expect((named.one('Role').rules as { resourceNames?: string[]; apiGroups: string[] }[]).find((r) => r.apiGroups.includes('apps'))?.resourceNames)
      .toEqual(['backup-ctl']);
  });

  test('uninstall.releaseRecords=false: no hook, and no grant on Deployments', () => {
    const off = render([...base, '--set', 'uninstall.releaseRecords=false']);
    expect(off.all('Job')).toEqual([]);
    expect(off.text).not.toContain('deployments');
  });
});
