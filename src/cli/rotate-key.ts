/**
 * @module `kubedr rotate-key`: the repository password rotated without a cluster (the disaster-recovery path), in two
 * runs so nothing is locked out in between: the first adds the new password as a key and proves it opens the
 * repository; `--remove-old`, once everything that reads the old password has the new one, removes the old key and
 * proves the old password opens nothing. Each run is safe to repeat: a step already done is found done.
 */
import { readFileSync } from 'node:fs';
import { EngineError } from '../engine/errors.ts';
import { addKey, keyOf, listKeys, removeKey } from '../engine/keys.ts';
import { withBucketCheck } from '../engine/repository.ts';
import { Restic } from '../engine/restic.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from '../util/flags.ts';
import { registerSecret } from '../util/redact.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { forProgram } from './program.ts';
import { repositoryFlags, repositoryFromFlags } from './repository-flags.ts';

const flags = {
  ...repositoryFlags,
  'new-password-file': { type: 'string', help: 'file holding the new repository password (as restic reads a password file: without surrounding white space)' },
  'remove-old': { type: 'boolean', help: 'also remove the old key: run this once everything that reads the old password (the location\'s Secret) has the new one', default: false },
} satisfies Record<string, FlagSpec>;

export const rotateKeyHelp = helpText('kubedr rotate-key --url URL --bucket BUCKET [--credentials FILE] --new-password-file FILE [--remove-old]',
  'Rotates the repository password. Without --remove-old: adds the new password as a key and proves that it opens the\n' +
  'repository; the old password still opens it. With --remove-old: also removes the old key and proves that the old\n' +
  'password opens nothing. The current password comes from --credentials or RESTIC_PASSWORD[_FILE], as for the other\n' +
  'commands. With a controller running, rotate through the location\'s Secret instead (docs/key-rotation.md).', flags) + `\n${exitCodesHelp}`;

/** The new password as restic itself would read that file (it trims white space), so both agree on what it is. */
function readNewPassword(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--new-password-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const password = text.trim();
  if (!password) throw new UsageError(`--new-password-file ${file} is empty`);
  registerSecret(password);
  return password;
}

export async function runRotateKey(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(rotateKeyHelp));
    return 0;
  }
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}"`);
  if (!parsed.flags['new-password-file']) throw new UsageError('--new-password-file is required (a file holding the new password)');
  const repo = repositoryFromFlags(parsed.flags);
  const newPassword = readNewPassword(parsed.flags['new-password-file']);
  if (newPassword === repo.password) throw new UsageError('the new password is the current one');
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const restic = new Restic();
  await withBucketCheck(repo, async (signal) => {
    const run = { signal };
    let oldKey: string | undefined;
    try {
      oldKey = (await listKeys(restic, repo, run)).find((k) => k.current)?.id;
    } catch (err) {
      if (!(err instanceof EngineError && err.kind === 'WrongPassword')) throw err;
    }
    const newKey = await keyOf(restic, repo, newPassword, run);
    if (!oldKey) {
      // A second run after --remove-old: the old key is gone, which is what was asked.
      if (newKey && parsed.flags['remove-old']) {
        say(`The old password opens nothing; the new password opens key ${newKey.slice(0, 8)}. Nothing to do.`);
        return;
      }
      throw new EngineError('WrongPassword', 'the current password (restic_repo_password or RESTIC_PASSWORD) does not open the repository' +
        (newKey ? '; the new password does: the rotation is done, put the new password in the Secret' : ''));
    }
    let added = newKey;
    if (added) say(`The new password already opens the repository (key ${added.slice(0, 8)}).`);
    else {
      added = await addKey(restic, repo, newPassword, { host: 'kubedr', user: 'rotate-key' }, run);
      say(`Added the new password as key ${added.slice(0, 8)}; it opens the repository.`);
    }
    if (!parsed.flags['remove-old']) {
      say(`The old password (key ${oldKey.slice(0, 8)}) still opens it. Put the new password in restic_repo_password of the location's Secret ` +
        '(and wherever else it is kept), then run again with --remove-old.');
      return;
    }
    await removeKey(restic, { ...repo, password: newPassword }, oldKey, run);
    if (await keyOf(restic, repo, repo.password, run)) throw new EngineError('Failed', `removed key ${oldKey.slice(0, 8)}, but the old password still opens the repository`);
    say(`Removed the old key ${oldKey.slice(0, 8)}: the old password opens nothing now.`);
  });
  return 0;
}
