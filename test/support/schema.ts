/**
 * @module Checks a value against one of our OpenAPI schemas (src/api/schema.ts) as the API server checks a custom
 * resource with `kubectl apply --validate=strict`: types, required fields, enums, minimums and unknown fields.
 */
import type { Schema } from '../../src/api/schema.ts';

/** Every violation of `schema` by `value`, each as `<path>: <what>`; empty when the value is valid. */
export function violations(schema: Schema, value: unknown, path = ''): string[] {
  const at = path || '.';
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return [`${at}: not a string`];
      if (schema.minLength !== undefined && value.length < schema.minLength) return [`${at}: shorter than ${schema.minLength}`];
      if (schema.enum && !schema.enum.includes(value)) return [`${at}: not one of ${schema.enum.join(', ')}`];
      return [];
    case 'integer':
      if (!Number.isInteger(value)) return [`${at}: not an integer`];
      return schema.minimum !== undefined && (value as number) < schema.minimum ? [`${at}: below ${schema.minimum}`] : [];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at}: not a boolean`];
    case 'array':
      return Array.isArray(value) ? value.flatMap((v, i) => violations(schema.items, v, `${path}[${i}]`)) : [`${at}: not an array`];
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${at}: not an object`];
      const o = value as Record<string, unknown>;
      const missing = (schema.required ?? []).filter((k) => o[k] === undefined).map((k) => `${path}.${k}: required`);
      return [...missing, ...Object.entries(o).flatMap(([k, v]) => {
        const sub = schema.properties?.[k] ?? schema.additionalProperties;
        return sub ? violations(sub, v, `${path}.${k}`) : [`${path}.${k}: unknown field`];
      })];
    }
  }
}
