/** @module Child-process output made fit for a message a user reads: no terminal escapes, no control characters. */

// CSI (`ESC [ … final`, e.g. `\u001b[2K` clear-line), OSC (`ESC ] … BEL|ST`), then any other two-byte escape.
const ESCAPES = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-_]?/g;
// Every C0 control but newline and tab, and DEL.
const CONTROLS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;

/**
 * Text without terminal escapes and control characters. A carriage return starts a new line: a terminal would have
 * drawn what follows it over what precedes it, and both halves may matter (a progress line, then the error).
 */
export function plainText(text: string): string {
  return text.replace(ESCAPES, '').replace(/\r\n?/g, '\n').replace(CONTROLS, '');
}
