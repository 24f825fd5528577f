#!/usr/bin/env node
// Regenerates .env.example and the README's settings table from the settings table.
import fs from 'node:fs';
import path from 'node:path';
import { renderEnvTemplate, withSettingsTable } from '../dist/src/config/template.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
fs.writeFileSync(path.join(root, '.env.example'), renderEnvTemplate());
const readme = path.join(root, 'README.md');
fs.writeFileSync(readme, withSettingsTable(fs.readFileSync(readme, 'utf8')));
console.log('wrote .env.example and the README settings table');
