/** Markup that is already escaped. Everything else put into a template is escaped on the way in. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

function piece(v: unknown): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(piece).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(String(v));
}

/** html`<p>${value}</p>`: values escaped, Html (and arrays of it) kept as they are. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let s = strings[0]!;
  for (let i = 0; i < values.length; i++) s += piece(values[i]) + strings[i + 1]!;
  return new Html(s);
}
