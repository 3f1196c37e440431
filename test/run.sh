#!/usr/bin/env bash
# Runs PIR's test suite from the compiled tree: `npm test` (all) or `npm test -- unit|contract|e2e`.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
suites=("${@:-unit contract e2e}")
files=()
for suite in ${suites[*]}; do
  while IFS= read -r f; do files+=("$f"); done < <(find "dist/test/$suite" -name '*.test.js' 2>/dev/null | sort)
done
if [ ${#files[@]} -eq 0 ]; then echo "no test files found for: ${suites[*]}" >&2; exit 1; fi
# --test-timeout bounds each file (and each test in it): a file whose process cannot exit (a child
# process left running) fails after 15 minutes instead of holding the run until CI's limit.
exec node --test --test-concurrency=1 --test-timeout=900000 --test-reporter=spec "${files[@]}"
