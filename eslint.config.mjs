// Lint: the recommended rules of ESLint and typescript-eslint, on the sources, tests, bench and scripts.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config({ ignores: ['dist/', 'node_modules/', 'test/conformance/corpus/'] }, js.configs.recommended, ...tseslint.configs.recommended, {
  rules: {
    // `{ chain: _c, ...rest }` drops fields on purpose; `_x` marks a parameter a signature needs
    '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
  },
  languageOptions: {
    globals: {
      process: 'readonly',
      console: 'readonly',
      Buffer: 'readonly',
      URL: 'readonly',
      setTimeout: 'readonly',
      clearTimeout: 'readonly',
      setInterval: 'readonly',
      clearInterval: 'readonly',
      performance: 'readonly',
    },
  },
});
