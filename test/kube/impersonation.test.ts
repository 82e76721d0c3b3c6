/** Impersonation fields of a kubeconfig user as Impersonate-* headers, and what cannot be sent as asked. */
import { expect, test } from 'bun:test';
import { impersonationHeaders } from '../../src/kube/impersonation.ts';

test('as, as-uid, one group and one value per extra become the API server\'s headers; an extra\'s key is escaped as client-go does', () => {
  expect(impersonationHeaders('u1', {
    as: 'jane', 'as-uid': '1234', 'as-groups': ['system:masters'],
    'as-user-extra': { scopes: ['view'], 'acme.com/project': ['p1'], 'ключ (x)': ['v'] },
  })).toEqual({
    'Impersonate-User': 'jane',
    'Impersonate-Uid': '1234',
    'Impersonate-Group': 'system:masters',
    'Impersonate-Extra-scopes': 'view',
    'Impersonate-Extra-acme.com%2Fproject': 'p1',
    'Impersonate-Extra-%D0%BA%D0%BB%D1%8E%D1%87%20%28x%29': 'v',
  });
});

test('no impersonation: no headers', () => {
  expect(impersonationHeaders('u1', {})).toEqual({});
  expect(impersonationHeaders('u1', { 'as-groups': [], 'as-user-extra': {} })).toEqual({});
});

test('what the API server or our HTTP client cannot do as asked is refused, naming the field', () => {
  expect(() => impersonationHeaders('u1', { 'as-groups': ['g'] }))
    .toThrow('user "u1" of the kubeconfig sets as-groups without as: the API server impersonates groups, a uid or extras only together with a user name');
  expect(() => impersonationHeaders('u1', { 'as-uid': '1' })).toThrow('sets as-uid without as');
  expect(() => impersonationHeaders('u1', { as: 'jane', 'as-groups': ['a', 'b'] }))
    .toThrow('user "u1" of the kubeconfig sets 2 as-groups (a, b); kubedr can impersonate one group only');
  expect(() => impersonationHeaders('u1', { as: 'jane', 'as-user-extra': { scopes: ['a', 'b'] } }))
    .toThrow('sets 2 values of as-user-extra "scopes"; kubedr can send one value per key');
});
