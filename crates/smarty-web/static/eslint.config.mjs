// ESLint for the dashboard's modules (`npm run lint`, run by scripts/test): ESLint's
// recommended rules, so that a name used but never imported or declared (no-undef) or
// imported and never used fails the tests, not a visitor's browser. vendor/ is uPlot's.
import js from '@eslint/js';

export default [
  { ignores: ['vendor/', 'node_modules/'] },
  js.configs.recommended,
  {
    files: ['app.js', 'fleet.js', 'js/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      // What the dashboard uses of the browser; uPlot is reached as window.uPlot.
      globals: Object.fromEntries([
        'window', 'document', 'location', 'localStorage', 'getComputedStyle', 'fetch', 'URL',
        'URLSearchParams', 'EventSource', 'ResizeObserver', 'Element', 'Option', 'Intl',
        'setTimeout', 'clearTimeout', 'setInterval',
      ].map((name) => [name, 'readonly'])),
    },
    rules: {
      // `catch (_)` and unused callback arguments (uPlot's hook signatures) are fine.
      'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }],
    },
  },
];
