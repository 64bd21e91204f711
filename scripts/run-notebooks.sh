#!/usr/bin/env bash
# Executes every notebook in notebooks/ headless against a runs root and fails if any cell errors.
#
# 1. Ensures a Python venv with notebooks/requirements.txt at
#    ${FACELENS_NB_VENV:-$HOME/.cache/facelens-nb-venv} (created on first use, updated when the
#    requirements change).
# 2. Refuses notebooks that were committed with outputs (keep them clean:
#    `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`).
# 3. Runs each with `jupyter nbconvert --to notebook --execute` into a temporary folder (kept and
#    printed, so the executed copies can be opened), with FACELENS_RUNS pointing at the runs root.
#    A notebook whose experiment has no run yet says so and still succeeds.
#
# Usage: scripts/run-notebooks.sh [RUNS_ROOT]     (default: runs, relative to the repository root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACELENS_NB_VENV:-$HOME/.cache/facelens-nb-venv}"
REQUIREMENTS="$ROOT/notebooks/requirements.txt"
PY="$VENV/bin/python"

RUNS_ARG="${1:-runs}"
# Resolve against the caller's directory if it exists there, else against the repository root.
if [[ "$RUNS_ARG" = /* ]]; then
    RUNS="$RUNS_ARG"
elif [[ -e "$RUNS_ARG" ]]; then
    RUNS="$(pwd)/$RUNS_ARG"
else
    RUNS="$ROOT/$RUNS_ARG"
fi
[[ -d "$RUNS" ]] || echo "run-notebooks: $RUNS does not exist; the notebooks will report that no run exists"

want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
stamp="$VENV/.facelens-requirements.sha256"
if [[ ! -x "$PY" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "run-notebooks: installing notebooks/requirements.txt into $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -r "$REQUIREMENTS"
    echo "$want" > "$stamp"
fi

shopt -s nullglob
notebooks=("$ROOT"/notebooks/*.ipynb)
if [[ ${#notebooks[@]} -eq 0 ]]; then
    echo "run-notebooks: no notebooks in $ROOT/notebooks" >&2
    exit 1
fi

# Committed notebooks carry no outputs: they would go stale and bloat the history.
"$PY" - "${notebooks[@]}" <<'EOF'
import sys
import nbformat

dirty = []
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    if any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells):
        dirty.append(path)
if dirty:
    sys.exit("run-notebooks: outputs stored in " + ", ".join(dirty)
             + "; strip them with `jupyter nbconvert --clear-output --inplace <notebook>`")
EOF

OUT="$(mktemp -d "${TMPDIR:-/tmp}/facelens-notebooks.XXXXXX")"
echo "run-notebooks: runs root $RUNS; executed copies in $OUT"
failed=()
for nb in "${notebooks[@]}"; do
    name="$(basename "$nb")"
    start=$SECONDS
    if FACELENS_RUNS="$RUNS" "$VENV/bin/jupyter" nbconvert --to notebook --execute \
        --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.kernel_name=python3 \
        --output-dir "$OUT" "$nb" >"$OUT/$name.log" 2>&1; then
        echo "  ok      $name ($((SECONDS - start)) s)"
    else
        echo "  FAILED  $name ($((SECONDS - start)) s); log: $OUT/$name.log"
        tail -n 30 "$OUT/$name.log" | sed 's/^/          /'
        failed+=("$name")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run-notebooks: ${#failed[@]} of ${#notebooks[@]} notebooks failed: ${failed[*]}" >&2
    exit 1
fi
echo "run-notebooks: all ${#notebooks[@]} notebooks ran without errors"
