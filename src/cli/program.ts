/**
 * @module The name the user typed to run this binary. Installed on PATH as `kubectl-kubedr` it runs as a kubectl plugin
 * (`kubectl kubedr status`; kubectl passes only the arguments after the plugin name), and help and hints must then
 * say `kubectl kubedr`, or a user who copies them runs a command that does not exist.
 */
import { basename } from 'node:path';

/**
 * `kubectl kubedr` when started as `kubectl-kubedr`, else `kubedr`. `argv0` is what was executed: through a symlink it
 * keeps the link's name, while a compiled binary's execPath resolves the link (/proc/self/exe); execPath still names
 * a renamed copy whose argv0 a launcher replaced.
 */
export function detectProgramName(argv0: string, execPath: string): string {
  for (const path of [argv0, execPath]) {
    const base = basename(path);
    // kubectl's plugin naming: dashes separate subcommand words, an underscore stands for a dash within one.
    if (base.startsWith('kubectl-') && base.length > 'kubectl-'.length) {
      return `kubectl ${base.slice('kubectl-'.length).split('-').map((w) => w.replace(/_/g, '-')).join(' ')}`;
    }
  }
  return 'kubedr';
}

let cached: string | undefined;
/** The name this process was started as (see detectProgramName). */
export function programName(): string {
  cached ??= detectProgramName(process.argv0, process.execPath);
  return cached;
}

/** Help text written for `kubedr` with each command line spelled the way this process was started. */
export function forProgram(text: string, name = programName()): string {
  return name === 'kubedr' ? text : text.replace(/(?<![\w./-]|kubectl )kubedr(?= [a-z<-]|')/g, name);
}
