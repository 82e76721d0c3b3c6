import { describe, expect, test } from 'bun:test';
import { detectProgramName, forProgram } from '../../src/cli/program.ts';

describe('detectProgramName', () => {
  test('a symlink named kubectl-kubedr is seen in argv0, though a compiled binary\'s execPath resolves the link', () => {
    expect(detectProgramName('/usr/local/bin/kubectl-kubedr', '/usr/local/bin/kubedr')).toBe('kubectl kubedr');
    expect(detectProgramName('kubectl-kubedr', '/opt/kubedr/kubedr')).toBe('kubectl kubedr');
  });
  test('a renamed copy is seen in execPath', () => {
    expect(detectProgramName('bun', '/home/u/.krew/bin/kubectl-kubedr')).toBe('kubectl kubedr');
  });
  test('kubedr, or bun running the source, is kubedr', () => {
    expect(detectProgramName('./kubedr', '/tmp/kubedr')).toBe('kubedr');
    expect(detectProgramName('/work/node_modules/.bin/bun', '/work/node_modules/bun/bin/bun.exe')).toBe('kubedr');
    expect(detectProgramName('kubectl-', '/x/kubedr')).toBe('kubedr');
  });
  test('kubectl\'s plugin naming: dashes separate words, underscores stand for dashes', () => {
    expect(detectProgramName('kubectl-kube_dr', 'x')).toBe('kubectl kube-dr');
    expect(detectProgramName('kubectl-backup-kubedr', 'x')).toBe('kubectl backup kubedr');
  });
});

describe('forProgram', () => {
  const help = 'Usage: kubedr backup POLICY [flags]\nRun \'kubedr <command> --help\'. See \'kubedr restore\'.\n' +
    'As a plugin, \'kubectl kubedr\', when on PATH as kubectl-kubedr; namespace kubedr-system; image localhost/kubedr:0.1.0\n';
  test('command lines say kubectl kubedr; names that are not commands stay', () => {
    expect(forProgram(help, 'kubectl kubedr')).toBe('Usage: kubectl kubedr backup POLICY [flags]\nRun \'kubectl kubedr <command> --help\'. ' +
      'See \'kubectl kubedr restore\'.\nAs a plugin, \'kubectl kubedr\', when on PATH as kubectl-kubedr; namespace kubedr-system; image localhost/kubedr:0.1.0\n');
  });
  test('unchanged when run as kubedr', () => {
    expect(forProgram(help, 'kubedr')).toBe(help);
  });
});
