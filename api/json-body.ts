/**
 * JSON bodies are read by Fastify's prototype-poisoning-safe parser (secure-json-parse): a
 * member named `__proto__`, or a `constructor` object with a `prototype` member, anywhere in a
 * body is refused. Its refusal says "not valid JSON" either way; this one tells the two apart,
 * so a client that sent valid JSON learns which name it may not use.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { fail } from '../core/error-catalog.js';

type BodyParser = Parameters<FastifyInstance['addContentTypeParser']>[2];

/** Fastify's JSON parser, with a 400 `forbidden_json_member` naming the member where it refuses valid JSON. */
export function jsonBodyParser(app: FastifyInstance): BodyParser {
  const parse = app.getDefaultJsonParser('error', 'error');
  return (request, body, done) => {
    const text = body.toString();
    parse(request, text, (error: Error | null, value?: unknown) => {
      const at = (error as FastifyError | null)?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? forbiddenMemberAt(text) : undefined;
      if (at === undefined) return done(error, value);
      done(fail('forbidden_json_member', `The body is valid JSON but holds a member PIR does not accept, at ${at}: a member named __proto__, or a constructor object with a prototype member, is refused anywhere in a body (a guard against prototype pollution). Rename it.`), undefined);
    });
  };
}

/** The JSON pointer of the first member secure-json-parse refuses, or undefined (not JSON, or none). */
export function forbiddenMemberAt(text: string): string | undefined {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    return undefined;
  }
  // Breadth first, as secure-json-parse looks.
  let level: [unknown, string][] = [[root, '']];
  while (level.length) {
    const next: [unknown, string][] = [];
    for (const [node, path] of level) {
      if (node === null || typeof node !== 'object') continue;
      const members = node as Record<string, unknown>;
      if (Object.hasOwn(members, '__proto__')) return `${path}/__proto__`;
      const ctor = Object.hasOwn(members, 'constructor') ? members.constructor : undefined;
      if (ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) return `${path}/constructor/prototype`;
      for (const key of Object.keys(members)) next.push([members[key], `${path}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`]);
    }
    level = next;
  }
  return undefined;
}
