#!/usr/bin/env bash
# Benchmark the bundles of `make demo` (run it first) and write the reports under benchmarks/results/.
# The figures in benchmarks/results/README.md come from this script on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
E=${EDGECART:-.venv/bin/edgecart}
R=benchmarks/results
$E bench out/image_search/student --threads 1,2 --iterations 3000 --out $R/image_search --quiet
$E bench out/image_search/student --compare --threads 1 --iterations 3000 --rounds 30 --out $R/image_search --quiet
$E bench out/image_search/student --compare --precision int8 --threads 1 --iterations 3000 --rounds 30 \
    --out $R/image_search_int8 --quiet
$E bench out/image_search/student --overhead --threads 1 --iterations 6000 --rounds 30 --out $R/image_search --quiet
$E bench out/image_search/student --overhead --precision int8 --threads 1 --iterations 6000 --rounds 30 \
    --out $R/image_search_int8 --quiet
$E bench out/image_search/student --overhead --no-finite-check --threads 1 --iterations 6000 --rounds 30 \
    --out $R/image_search_nocheck --quiet
$E bench out/image_search/student --overhead --no-finite-check --precision int8 --threads 1 --iterations 6000 \
    --rounds 30 --out $R/image_search_int8_nocheck --quiet
$E bench out/image_search/teacher --threads 1,2 --iterations 500 --out $R/image_search_teacher --quiet
$E bench out/image_search/student --target cuda --out $R/cuda --quiet
$E bench out/recommendations/instacart --threads 1,2 --iterations 1000 --out $R/recs_instacart --quiet
$E bench out/recommendations/movielens-100k --threads 1 --iterations 1000 --out $R/recs_movielens --quiet
