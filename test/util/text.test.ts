import { expect, test } from 'bun:test';
import { plainText } from '../../src/util/text.ts';

test('terminal escapes and control characters go; the words stay', () => {
  // What restic 0.14 wrote to a pipe when it was stopped mid-upload (the backupErrorMessage).
  expect(plainText('\u001b[2Ksignal interrupt received, cleaning up\n')).toBe('signal interrupt received, cleaning up\n');
  expect(plainText('\u001b[1;31mFatal:\u001b[0m wrong password')).toBe('Fatal: wrong password');
  expect(plainText('\u001b]0;restic\u0007title set')).toBe('title set');
  expect(plainText('bell\u0007 and\u0000 nul, tab\tkept')).toBe('bell and nul, tab\tkept');
});

test('a carriage return starts a new line, as a terminal would have drawn it', () => {
  expect(plainText('[0:01] 10%\r[0:02] 20%\r\nFatal: gone')).toBe('[0:01] 10%\n[0:02] 20%\nFatal: gone');
});
