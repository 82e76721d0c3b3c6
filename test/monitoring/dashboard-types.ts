/**
 * @module Type-checks the Grafana dashboard (helm/kubedr/dashboards/kubedr.json) against Grafana's published Dashboard
 * type (@grafana/schema), as part of `tsc --noEmit -p .`; there is nothing to run. A field of the wrong type, a
 * missing required field (a panel's `type`, a field config's `defaults`, a mapping's `options`, …) or a wrongly shaped
 * object fails the typecheck.
 *
 * TypeScript types an imported JSON file with string literals widened to `string` (there is no `as const` for JSON
 * imports), so no JSON value can match a literal type such as a mapping's `type: 'value' | 'range' | …` or a numeric
 * enum such as `VariableHide`. Widened<T> widens exactly those literal types in Grafana's types and leaves every other
 * part of them (fields, optionality, nesting, arrays, unions of shapes) as Grafana declares it. What this cannot check
 * is the enum values themselves (a misspelt `"type": "vaule"` passes), nor fields Grafana does not know (the JSON is
 * not a fresh object literal, so TypeScript's excess-property check does not apply).
 */
import type { Dashboard } from '@grafana/schema';
import dashboard from '../../helm/kubedr/dashboards/kubedr.json';

/** T with string, number and boolean literal types (enums, literal unions) widened to their primitive types. */
type Widened<T> =
  T extends string ? string
    : T extends number ? number
      : T extends boolean ? boolean
        : T extends readonly (infer U)[] ? Widened<U>[]
          : T extends object ? { [K in keyof T]: Widened<T[K]> }
            : T;

export const checked: Widened<Dashboard> = dashboard;
