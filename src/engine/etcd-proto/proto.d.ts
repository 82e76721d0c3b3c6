/** The .proto files are embedded as text (Bun's `with { type: 'text' }`), so a compiled binary needs no file at run time. */
declare module '*.proto' {
  const text: string;
  export default text;
}
