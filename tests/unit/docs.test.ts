// The docs are generated from the settings table; these tests fail when someone edits one
// without the other (fix: `npm run docs`).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { renderEnvTemplate, withSettingsTable } from '../../src/config/template.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('.env.example is the rendered settings table', () => {
  assert.equal(fs.readFileSync(path.join(root, '.env.example'), 'utf8'), renderEnvTemplate());
});

test('README settings table is the rendered settings table', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  assert.equal(readme, withSettingsTable(readme));
});
