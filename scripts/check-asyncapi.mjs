// Validates asyncapi.yaml with the AsyncAPI project's own parser (its
// spectral ruleset included) and resolves the payload's $ref to the schema
// file. Prints every diagnostic; exits 1 on an error (severity 0).
// Run by scripts/check-asyncapi, which installs the parser.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const [parserDir, file] = process.argv.slice(2);
const require = createRequire(resolve(parserDir, 'package.json'));
const { Parser, fromFile } = require('@asyncapi/parser');

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, resolve(file)).parse();
const severities = ['error', 'warning', 'info', 'hint'];
for (const d of diagnostics) {
  console.error(`${file}: ${severities[d.severity]}: ${d.code}: ${d.message} at ${d.path.join('.')}`);
}
if (!document || diagnostics.some((d) => d.severity === 0)) {
  console.error(`${file}: not a valid AsyncAPI document`);
  process.exit(1);
}
const message = document.messages().all()[0];
const required = message.payload().required() ?? [];
console.error(`${file}: valid AsyncAPI ${document.version()}; ${document.channels().length} channel(s), payload requires [${required}]`);
