/**
 * A small, strict, non-validating XML 1.0 parser for OVF descriptors from untrusted uploads.
 *
 * Safe by construction: no DTD support at all (a DOCTYPE is an error, so no internal/external
 * entities, no entity expansion, no external fetches); only the five predefined entities and
 * numeric character references are understood; input size, depth, element and attribute counts
 * are bounded. Namespaces are resolved (xmlns / xmlns:prefix, scoped); an undeclared prefix is an
 * error. Produces a small DOM, which is fine because the input is bounded (1 MiB by default).
 */

export interface XmlAttribute {
  name: string;
  prefix: string;
  local: string;
  /** Namespace URI ('' for unprefixed attributes). */
  ns: string;
  value: string;
}

export interface XmlElement {
  name: string;
  prefix: string;
  local: string;
  ns: string;
  attributes: XmlAttribute[];
  children: XmlElement[];
  /** Concatenated character data directly inside this element. */
  text: string;
}

export interface XmlLimits {
  maxChars: number;
  maxDepth: number;
  maxElements: number;
  maxAttributes: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = { maxChars: 1024 * 1024, maxDepth: 64, maxElements: 50_000, maxAttributes: 256 };

export type XmlErrorKind = 'doctype' | 'limit' | 'syntax' | 'entity' | 'encoding';

export class XmlError extends Error {
  constructor(
    readonly kind: XmlErrorKind,
    message: string,
    readonly offset: number,
  ) {
    super(`${message} (at character ${offset})`);
    this.name = 'XmlError';
  }
}

const XML_NS = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';
const NAME_START = /[A-Za-z_:\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C-\u200D\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]/;
const NAME_CHAR = /[-.0-9A-Za-z_:\u00B7\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u037D\u037F-\u1FFF\u200C-\u200D\u203F-\u2040\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]/;
// Characters XML 1.0 forbids anywhere (C0 controls except TAB/LF/CR, lone surrogates, U+FFFE/U+FFFF).
// eslint-disable-next-line no-control-regex
const FORBIDDEN_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

interface RawAttribute {
  name: string;
  value: string;
}

interface Frame {
  element: XmlElement;
  namespaces: Map<string, string>;
  rawAttributes: RawAttribute[];
}

/** Decode UTF-8 bytes of an XML document (BOM allowed); refuse UTF-16/32 and other encodings. */
export function decodeXmlBytes(bytes: Uint8Array): string {
  if ((bytes[0] === 0xfe && bytes[1] === 0xff) || (bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0 && bytes[1] !== 0) || (bytes[0] !== 0 && bytes[1] === 0)) {
    throw new XmlError('encoding', 'only UTF-8 XML is accepted (this looks like UTF-16 or UTF-32)', 0);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new XmlError('encoding', 'the XML is not valid UTF-8', 0);
  }
  return text;
}

export function parseXml(input: string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
  return new Parser(input, limits).parse();
}

class Parser {
  private i = 0;
  private elements = 0;
  private readonly stack: Frame[] = [];
  private root: XmlElement | null = null;

  constructor(
    private readonly s: string,
    private readonly limits: XmlLimits,
  ) {}

  private fail(kind: XmlErrorKind, message: string): never {
    throw new XmlError(kind, message, this.i);
  }

  parse(): XmlElement {
    const s = this.s;
    if (s.length > this.limits.maxChars) this.fail('limit', `the document is larger than ${this.limits.maxChars} characters`);
    const bad = FORBIDDEN_CHAR.exec(s);
    if (bad) {
      this.i = bad.index;
      this.fail('syntax', 'the document contains a character not allowed in XML');
    }
    if (s.startsWith('\uFEFF')) this.i = 1;
    if (s.startsWith('<?xml', this.i) && /[\s?]/.test(s[this.i + 5] ?? '')) this.xmlDecl();
    for (;;) {
      this.skipSpace();
      if (this.i >= s.length) break;
      if (s.startsWith('<!--', this.i)) this.comment();
      else if (s.startsWith('<?', this.i)) this.pi();
      else if (s.startsWith('<!DOCTYPE', this.i) || s.startsWith('<!doctype', this.i)) {
        this.fail('doctype', 'a DOCTYPE declaration is not allowed (no DTDs or entity declarations are accepted)');
      } else if (s.startsWith('<!', this.i)) this.fail('syntax', 'unexpected markup declaration outside the root element');
      else if (s[this.i] === '<') {
        if (this.root) this.fail('syntax', 'more than one root element');
        this.element();
      } else this.fail('syntax', 'text outside the root element');
    }
    if (!this.root) this.fail('syntax', 'no root element');
    return this.root;
  }

  private skipSpace(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else break;
    }
  }

  private xmlDecl(): void {
    const end = this.s.indexOf('?>', this.i);
    if (end === -1) this.fail('syntax', 'unterminated XML declaration');
    const body = this.s.slice(this.i + 5, end);
    const encoding = /\bencoding\s*=\s*(["'])([^"']*)\1/.exec(body)?.[2];
    if (encoding !== undefined && !/^(utf-?8|us-ascii|ascii)$/i.test(encoding)) {
      this.fail('encoding', `the XML declares encoding "${encoding.slice(0, 40)}"; only UTF-8 is accepted`);
    }
    const version = /\bversion\s*=\s*(["'])([^"']*)\1/.exec(body)?.[2];
    if (version !== '1.0') this.fail('syntax', 'only XML version 1.0 is accepted');
    this.i = end + 2;
  }

  private comment(): void {
    const end = this.s.indexOf('-->', this.i + 4);
    if (end === -1) this.fail('syntax', 'unterminated comment');
    this.i = end + 3;
  }

  private pi(): void {
    const end = this.s.indexOf('?>', this.i + 2);
    if (end === -1) this.fail('syntax', 'unterminated processing instruction');
    const target = /^[^\s?]*/.exec(this.s.slice(this.i + 2, end))![0];
    if (target.toLowerCase() === 'xml') this.fail('syntax', 'misplaced XML declaration');
    this.i = end + 2;
  }

  private name(): string {
    const s = this.s;
    const start = this.i;
    if (!NAME_START.test(s[this.i] ?? '')) this.fail('syntax', 'expected a name');
    this.i++;
    while (this.i < s.length && NAME_CHAR.test(s[this.i]!)) this.i++;
    return s.slice(start, this.i);
  }

  /** Expand references in character data or an attribute value. */
  private unescape(raw: string, start: number): string {
    let out = '';
    let last = 0;
    for (let p = raw.indexOf('&'); p !== -1; p = raw.indexOf('&', last)) {
      out += raw.slice(last, p);
      const semi = raw.indexOf(';', p);
      if (semi === -1 || semi - p > 12) {
        this.i = start + p;
        this.fail('entity', 'a bare "&" or an unterminated reference');
      }
      const ref = raw.slice(p + 1, semi);
      switch (ref) {
        case 'lt':
          out += '<';
          break;
        case 'gt':
          out += '>';
          break;
        case 'amp':
          out += '&';
          break;
        case 'quot':
          out += '"';
          break;
        case 'apos':
          out += "'";
          break;
        default: {
          const m = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(ref);
          if (!m) {
            this.i = start + p;
            this.fail('entity', `the entity reference "&${ref.slice(0, 20)};" is not allowed (only &lt; &gt; &amp; &quot; &apos; and character references)`);
          }
          const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
          const allowed = cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
          if (!allowed) {
            this.i = start + p;
            this.fail('entity', `the character reference "&${ref};" is not a legal XML character`);
          }
          out += String.fromCodePoint(cp);
        }
      }
      last = semi + 1;
    }
    out += raw.slice(last);
    return out;
  }

  private element(): void {
    const s = this.s;
    if (this.stack.length >= this.limits.maxDepth) this.fail('limit', `elements are nested deeper than ${this.limits.maxDepth} levels`);
    if (++this.elements > this.limits.maxElements) this.fail('limit', `more than ${this.limits.maxElements} elements`);
    this.i++; // '<'
    const qname = this.name();
    const rawAttributes: RawAttribute[] = [];
    for (;;) {
      const before = this.i;
      this.skipSpace();
      if (s.startsWith('/>', this.i) || s[this.i] === '>') break;
      if (this.i === before) this.fail('syntax', 'expected whitespace before an attribute');
      const an = this.name();
      this.skipSpace();
      if (s[this.i] !== '=') this.fail('syntax', `attribute "${an}" has no value`);
      this.i++;
      this.skipSpace();
      const quote = s[this.i];
      if (quote !== '"' && quote !== "'") this.fail('syntax', `attribute "${an}" value is not quoted`);
      const end = s.indexOf(quote, this.i + 1);
      if (end === -1) this.fail('syntax', 'unterminated attribute value');
      const raw = s.slice(this.i + 1, end);
      if (raw.includes('<')) this.fail('syntax', `"<" in the value of attribute "${an}"`);
      // Attribute-value normalization: literal TAB/LF/CR become spaces; character references keep theirs.
      const value = this.unescape(raw.replace(/[\t\n\r]/g, ' '), this.i + 1);
      this.i = end + 1;
      if (rawAttributes.some((a) => a.name === an)) this.fail('syntax', `duplicate attribute "${an}"`);
      rawAttributes.push({ name: an, value });
      if (rawAttributes.length > this.limits.maxAttributes) this.fail('limit', `more than ${this.limits.maxAttributes} attributes on one element`);
    }
    const selfClosing = s[this.i] === '/';
    this.i += selfClosing ? 2 : 1;

    const parentNs = this.stack.length ? this.stack[this.stack.length - 1]!.namespaces : new Map([['xml', XML_NS]]);
    let namespaces = parentNs;
    for (const a of rawAttributes) {
      if (a.name === 'xmlns' || a.name.startsWith('xmlns:')) {
        if (namespaces === parentNs) namespaces = new Map(parentNs);
        const prefix = a.name === 'xmlns' ? '' : a.name.slice(6);
        if (prefix === 'xmlns' || (prefix === 'xml' && a.value !== XML_NS)) this.fail('syntax', `cannot redeclare the "${prefix}" prefix`);
        if (prefix !== '' && a.value === '') this.fail('syntax', `empty namespace for prefix "${prefix}"`);
        namespaces.set(prefix, a.value);
      }
    }
    const [prefix, local] = this.split(qname);
    const ns = namespaces.get(prefix) ?? (prefix === '' ? '' : this.fail('syntax', `undeclared namespace prefix "${prefix}"`));
    const attributes: XmlAttribute[] = [];
    for (const a of rawAttributes) {
      const [ap, al] = this.split(a.name);
      let ans = '';
      if (a.name === 'xmlns' || ap === 'xmlns') ans = XMLNS_NS;
      else if (ap !== '') ans = namespaces.get(ap) ?? this.fail('syntax', `undeclared namespace prefix "${ap}"`);
      attributes.push({ name: a.name, prefix: ap, local: al, ns: ans, value: a.value });
    }
    const element: XmlElement = { name: qname, prefix, local, ns, attributes, children: [], text: '' };
    if (this.stack.length) this.stack[this.stack.length - 1]!.element.children.push(element);
    else this.root = element;
    if (selfClosing) return;
    this.stack.push({ element, namespaces, rawAttributes });
    this.content(qname);
    this.stack.pop();
  }

  private split(qname: string): [string, string] {
    const colon = qname.indexOf(':');
    if (colon === -1) return ['', qname];
    if (colon === 0 || colon === qname.length - 1 || qname.indexOf(':', colon + 1) !== -1) this.fail('syntax', `malformed qualified name "${qname}"`);
    return [qname.slice(0, colon), qname.slice(colon + 1)];
  }

  private content(qname: string): void {
    const s = this.s;
    const frame = this.stack[this.stack.length - 1]!;
    let text = '';
    for (;;) {
      const lt = s.indexOf('<', this.i);
      if (lt === -1) this.fail('syntax', `element "${qname}" is not closed`);
      if (lt > this.i) text += this.unescape(s.slice(this.i, lt), this.i);
      this.i = lt;
      if (s.startsWith('</', this.i)) {
        this.i += 2;
        const closing = this.name();
        this.skipSpace();
        if (s[this.i] !== '>') this.fail('syntax', 'malformed end tag');
        this.i++;
        if (closing !== qname) this.fail('syntax', `end tag "${closing}" does not match "${qname}"`);
        frame.element.text = text;
        return;
      }
      if (s.startsWith('<!--', this.i)) this.comment();
      else if (s.startsWith('<![CDATA[', this.i)) {
        const end = s.indexOf(']]>', this.i + 9);
        if (end === -1) this.fail('syntax', 'unterminated CDATA section');
        text += s.slice(this.i + 9, end);
        this.i = end + 3;
      } else if (s.startsWith('<!DOCTYPE', this.i)) this.fail('doctype', 'a DOCTYPE declaration is not allowed');
      else if (s.startsWith('<!', this.i)) this.fail('syntax', 'unexpected markup declaration');
      else if (s.startsWith('<?', this.i)) this.pi();
      else this.element();
      if (text.length > this.limits.maxChars) this.fail('limit', 'text too large');
    }
  }
}

/** First attribute with this local name, preferring one in `preferNs`. */
export function attr(element: XmlElement, local: string, preferNs?: readonly string[]): string | undefined {
  let fallback: string | undefined;
  for (const a of element.attributes) {
    if (a.local !== local || a.ns === XMLNS_NS) continue;
    if (!preferNs || preferNs.includes(a.ns)) return a.value;
    fallback ??= a.value;
  }
  return fallback;
}

export function childrenNamed(element: XmlElement, local: string): XmlElement[] {
  return element.children.filter((c) => c.local === local);
}

export function firstChild(element: XmlElement, local: string): XmlElement | undefined {
  return element.children.find((c) => c.local === local);
}

/** All descendants (document order) with this local name. */
export function descendants(element: XmlElement, local: string, out: XmlElement[] = []): XmlElement[] {
  for (const c of element.children) {
    if (c.local === local) out.push(c);
    descendants(c, local, out);
  }
  return out;
}
