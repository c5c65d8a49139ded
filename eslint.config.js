// Lint rules (npm run lint, run by npm test before the suite): typescript-eslint's
// type-aware recommended set, plus no floating promises (a promise nobody awaits or
// marks `void` loses its errors) and no unused code.
import js from '@eslint/js'
import { importX } from 'eslint-plugin-import-x'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['node_modules/', 'var/', '.tap/', 'coverage/', 'scratch/', 'bench/results/', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    plugins: { 'import-x': importX },
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Hostile input is searched for control characters on purpose.
      'no-control-regex': 'off',
      // V8's linear-time engine (config/patterns.ts).
      'no-invalid-regexp': ['error', { allowConstructorFlags: ['l'] }],
      // The formatter wraps code at 160 columns but leaves strings alone: prose is wrapped by hand.
      'max-len': ['error', { code: 160, ignoreUrls: true }],
      // #34: a file a reader takes in whole. Past 400 lines it holds more than one idea: split it where the ideas part.
      'max-lines': ['error', { max: 400 }],
      // #34: a file's imports read from the outside in: Node's own modules, then packages, then ours (farther
      // folders first). Fixed by `npx eslint --fix`.
      'import-x/order': ['error', { groups: ['builtin', 'external', 'parent', 'sibling', 'index'], 'newlines-between': 'never' }],
      'import-x/first': 'error',
    },
  },
  {
    // #34: a function a reader takes in at once. (Tests are exempt: a t.test callback is one story, told in order.)
    files: ['firmware/**/*.ts', 'hal/**/*.ts', 'provisioning/**/*.ts', 'image/**/*.ts', 'bench/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 80 }] },
  },
  {
    // #35: the box's code never waits for a child process on its event loop (the admin page's hardware view
    // once did, stalling submission and delivery meanwhile): spawn or execFile, and await the result.
    files: ['firmware/**/*.ts', 'hal/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:child_process', 'child_process'].map((name) => ({
            name,
            importNames: ['spawnSync', 'execSync', 'execFileSync'],
            message: 'a synchronous child process stalls the event loop: use spawn or execFile (#35)',
          })),
        },
      ],
    },
  },
  {
    // The linear scanners of hostile input and of the trail: one pass, one loop, its states side by side. Cut into
    // functions, the state would travel through parameters and the single pass (the linear-time promise) would be
    // harder to see. Each may run to 140 lines.
    files: ['firmware/audit/verify.ts', 'firmware/mime/params.ts', 'firmware/mime/tree.ts', 'firmware/policy/zip.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 140 }] },
  },
  {
    // The admin page's browser script: plain JavaScript, no type information, the browser's globals.
    files: ['firmware/admin/static/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: false },
      sourceType: 'script',
      globals: { document: 'readonly', window: 'readonly', fetch: 'readonly', setInterval: 'readonly', Map: 'readonly', uPlot: 'readonly' },
    },
  },
  {
    // Tests hold whole messages, PDFs and replies as literals: data, not prose, so it stays
    // byte-exact on one line. tap runs each t.test() and reports its failure itself: its
    // promise needs no await, and a subtest callback is async whether or not it awaits.
    files: ['test/**/*.ts'],
    rules: {
      'max-len': ['error', { code: 160, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] },
      ],
    },
  },
)
