#!/usr/bin/env node
// No import cycles under src/ (type-only imports included: a cycle of types is still a tangle).
// The README's picture, capture -> source -> seal -> sink -> ship with verify and query on top, holds
// only while this passes. TypeScript's own parser reads the imports; no other dependency.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'src');
const files = readdirSync(root, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => path.join(root, f));
const graph = new Map();
for (const file of files) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
  const deps = [];
  for (const st of source.statements) {
    const spec =
      (ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) && st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)
        ? st.moduleSpecifier.text
        : null;
    if (spec?.startsWith('.')) deps.push(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  graph.set(
    file,
    deps.filter((d) => files.includes(d)),
  );
}
const state = new Map(); // file -> 'open' | 'done'
const cycles = [];
function visit(file, trail) {
  if (state.get(file) === 'done') return;
  if (state.get(file) === 'open') {
    cycles.push([...trail.slice(trail.indexOf(file)), file].map((f) => path.relative(root, f)).join(' -> '));
    return;
  }
  state.set(file, 'open');
  for (const dep of graph.get(file)) visit(dep, [...trail, file]);
  state.set(file, 'done');
}
for (const file of files) visit(file, []);
if (cycles.length > 0) {
  process.stderr.write(`import cycles under src/ (${cycles.length}):\n${cycles.map((c) => `  ${c}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(`no import cycles among ${files.length} modules under src/\n`);
