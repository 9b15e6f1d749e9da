#!/usr/bin/env bash
# Benchmark the bundles of `make demo` (run it first) and write the reports under benchmarks/results/.
# The wave-1 figures in benchmarks/results/README.md (Fashion-MNIST bundles) came from the earlier version of this
# script on an otherwise idle machine; rerun this one to refresh them for the grocery/text/recs bundles.
set -euo pipefail
cd "$(dirname "$0")/.."
E=${EDGECART:-.venv/bin/edgecart}
R=benchmarks/results
IMG=out/image_search/bundle
$E bench $IMG --threads 1,2 --iterations 3000 --out $R/grocery --quiet
$E bench $IMG --compare --threads 1 --iterations 3000 --rounds 30 --out $R/grocery --quiet
$E bench $IMG --compare --precision int8 --threads 1 --iterations 3000 --rounds 30 --out $R/grocery_int8 --quiet
$E bench $IMG --overhead --threads 1 --iterations 6000 --rounds 30 --out $R/grocery --quiet
$E bench $IMG --task-level --busy 0,1 --threads 1 --iterations 1000 --rounds 10 --out $R/grocery_task --quiet
$E bench $IMG --target cuda --out $R/cuda --quiet
$E bench out/recommendations/movielens-100k/bundle --threads 1 --iterations 1000 --out $R/recs_movielens --quiet
$E bench out/recommendations/movielens-100k/bundle --task-level --busy 0,1 --threads 1 --iterations 500 \
    --rounds 10 --out $R/recs_movielens_task --quiet
if [ -d out/recommendations/instacart/bundle ]; then   # after `edgecart demo --recs-datasets instacart,movielens-100k`
  $E bench out/recommendations/instacart/bundle --threads 1,2 --iterations 1000 --out $R/recs_instacart --quiet
fi
