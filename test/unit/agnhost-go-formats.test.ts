import { describe, expect, it } from 'vitest';
import { formatHostPort, joinHostPort, splitHostPort } from '../../src/devcluster/agnhost/go-address.js';
import { goJsonMarshal } from '../../src/devcluster/agnhost/go-json.js';
import {
  canonicalHeaderKey,
  cleanGoPath,
  detectContentType,
  serveMuxRedirectPath,
} from '../../src/devcluster/agnhost/go-net-http.js';

describe('what agnhost clients see is what Go would write', () => {
  it.each([
    [{ responses: ['a'], errors: ['b'] }, '{"errors":["b"],"responses":["a"]}'],
    [{ output: '<b>&</b>' }, '{"output":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"}'],
    [{}, '{}'],
    [{ line: 'a\u2028b' }, '{"line":"a\\u2028b"}'],
  ])('json.Marshal(%j) = %s', (value, text) => {
    expect(goJsonMarshal(value)).toBe(text);
  });

  it.each([
    ['pod-1', 'text/plain; charset=utf-8'],
    ['{"a":1}', 'text/plain; charset=utf-8'],
    ['  <html><body>', 'text/html; charset=utf-8'],
    ['<p>hi', 'text/html; charset=utf-8'],
    ['<pod>', 'text/plain; charset=utf-8'],
    ['<?xml version="1.0"?>', 'text/xml; charset=utf-8'],
    ['\u0000\u0001binary', 'application/octet-stream'],
  ])('http.DetectContentType(%j) = %s', (body, type) => {
    expect(detectContentType(Buffer.from(body))).toBe(type);
  });

  it.each([
    ['x-forwarded-for', 'X-Forwarded-For'],
    ['user-agent', 'User-Agent'],
    ['ACCEPT', 'Accept'],
    ['x_weird', 'X_weird'],
  ])('textproto.CanonicalMIMEHeaderKey(%j) = %j', (key, canonical) => {
    expect(canonicalHeaderKey(key)).toBe(canonical);
  });

  it.each([
    ['/hostname', undefined],
    ['/', undefined],
    ['//hostname', '/hostname'],
    ['/a/../hostname', '/hostname'],
    ['/echo/', undefined],
    ['/x/./y/', '/x/y/'],
  ])('ServeMux redirects %j to %j', (path, target) => {
    expect(serveMuxRedirectPath(path)).toBe(target);
  });

  it('cleans paths like path.Clean', () => {
    expect(cleanGoPath('a/b/../../../c')).toBe('/c');
  });

  it.each([
    ['10.0.0.1:80', { host: '10.0.0.1', port: '80' }],
    ['[fd00::1]:80', { host: 'fd00::1', port: '80' }],
    ['svc.ns:8080', { host: 'svc.ns', port: '8080' }],
    [':80', { host: '', port: '80' }],
  ])('net.SplitHostPort(%j)', (hostport, parts) => {
    expect(splitHostPort(hostport)).toEqual(parts);
  });

  it.each([
    ['10.0.0.1', 'address 10.0.0.1: missing port in address'],
    ['fd00::1:80', 'address fd00::1:80: too many colons in address'],
    ['[fd00::1]', 'address [fd00::1]: missing port in address'],
    ['[fd00::1:80', "address [fd00::1:80: missing ']' in address"],
  ])('net.SplitHostPort(%j) fails with %j', (hostport, message) => {
    expect(() => splitHostPort(hostport)).toThrow(message);
  });

  it.each([
    ['::ffff:10.1.2.3', 5000, '10.1.2.3:5000'],
    ['fd00::5', 80, '[fd00::5]:80'],
    ['127.0.0.1', 1, '127.0.0.1:1'],
  ])('net.Addr(%s, %d).String() = %s', (address, port, text) => {
    expect(formatHostPort(address, port)).toBe(text);
  });

  it('joins IPv6 hosts in brackets', () => {
    expect(joinHostPort('fd00::1', 53)).toBe('[fd00::1]:53');
  });
});
