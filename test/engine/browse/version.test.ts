/** Which kube-apiserver may serve a backup: the decision `kubedr browse`, `diff` and `restore-objects` make before serving. */
import { describe, expect, test } from 'bun:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiserverVersion, matchVersions, minorOf, parseApiserverVersion } from '../../../src/engine/browse/version.ts';
import { EngineError } from '../../../src/engine/errors.ts';

describe('versions', () => {
  test('major and minor of a Kubernetes version, with or without v, pre-release and build parts', () => {
    expect(minorOf('v1.20.2')).toEqual([1, 20]);
    expect(minorOf('1.29.0-rc.1')).toEqual([1, 29]);
    expect(minorOf('v1.30.1+k3s1')).toEqual([1, 30]);
    expect(minorOf('latest')).toBeUndefined();
  });

  test('kube-apiserver --version output; anything else is refused, saying what it printed', () => {
    expect(parseApiserverVersion('Kubernetes v1.20.2\n')).toBe('v1.20.2');
    expect(() => parseApiserverVersion('etcd Version: 3.5.16')).toThrow(/cannot tell the kube-apiserver's version: "--version" printed "etcd Version: 3.5.16"/);
  });
});

describe('may it serve the backup', () => {
  test('same minor: yes, whatever the patch', () => {
    expect(matchVersions('v1.20.2', 'v1.20.15', false)).toEqual({ ok: true });
  });

  test('another minor, either way: refused, naming both and what to give', () => {
    for (const [backup, server] of [['v1.21.3', 'v1.20.2'], ['v1.19.0', 'v1.20.2'], ['v2.20.0', 'v1.20.2']] as const) {
      const m = matchVersions(backup, server, false);
      expect(m.ok).toBe(false);
      if (!m.ok) {
        expect(m.message).toContain(`the backup is of a cluster at Kubernetes ${backup}, the kube-apiserver given is ${server}`);
        expect(m.message).toContain(`Give a kube-apiserver of ${backup.replace(/\.\d+$/, '')}.x with --kube-apiserver`);
        expect(m.message).toContain('--allow-version-skew');
      }
    }
  });

  test('another minor with --allow-version-skew: served, with a note of what may be missing', () => {
    const m = matchVersions('v1.21.3', 'v1.20.2', true);
    expect(m).toEqual({ ok: true, note: expect.stringContaining('will be missing or fail to decode') });
  });

  test('a backup that does not record its version: served, and said so', () => {
    expect(matchVersions(undefined, 'v1.20.2', false)).toEqual({ ok: true, note: expect.stringContaining('does not record its cluster\'s Kubernetes version') });
  });
});

describe('the binary given', () => {
  const dir = mkdtempSync(join(tmpdir(), 'version-test-'));
  const script = (name: string, body: string) => {
    const f = join(dir, name);
    writeFileSync(f, `#!/bin/sh\n${body}\n`);
    chmodSync(f, 0o755);
    return f;
  };

  test('its --version is read; a missing binary is a plain error naming the flag', async () => {
    expect(await apiserverVersion(script('kube-apiserver', 'echo "Kubernetes v1.20.2"'))).toBe('v1.20.2');
    const err = await apiserverVersion(join(dir, 'no-such-binary')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as Error).message).toMatch(/cannot run kube-apiserver ".*no-such-binary".*--kube-apiserver/);
    rmSync(dir, { recursive: true, force: true });
  });
});
