#!/usr/bin/env bash
# Language models larger than this CPU can pretrain in a session, pretrained on the device
# machine's GPU, for fine-tuning here: configs/best/gru_lm.yaml's language model (IMDB's unlabeled
# reviews, model.pretrained_encoder: lm) at each of UNITS recurrent units, the pretrainings side by
# side (each is a scan of small matrix products, far from filling the GPU), for as many epochs as
# fit in TOTAL_SECONDS. A pretraining writes the artefact of each epoch it finishes
# (lm-<key>.npz, keyed as a pretraining of that many epochs is), so whatever finished comes back
# in $OUT, ready for the cache of the machine that fine-tunes:
#
#   bash scripts/gpu_lm.sh       (on the device machine, in one command allowed 600 s)
#
# then, here, for each artefact it brought back (gpu_lm_artefacts.json lists units, epochs,
# held-out perplexity and seconds):
#
#   cp <files_at>/u256/lm-*.npz ~/.cache/rnnbench/corpora/
#   rnnbench run configs/best/gru_lm.yaml --set model.units=256 --set model.lm_epochs=<epochs>
#
# which reads it from the cache (the key holds the backend, jax on both machines, and never the
# machine). docs/data.md has the figures it made.
#
# What to bring, relative to the repository root (shared/ travels to the device machine; keep it
# out of git with: echo /shared/ >> "$(git rev-parse --git-path info/exclude)"):
#   shared/wheels/*.whl   Keras and what the GPU image lacks (scripts/gpu_check.sh says which and how)
#   shared/imdb_xz/       IMDB's train, test and unsup TSVs, xz-compressed to fit the 64 MiB that
#                         travels (41 MiB; gzip is 51 MiB), and the two .sources.tsv.gz files:
#       mkdir -p shared/imdb_xz && for f in unsup train test; do
#         zcat "$RNNBENCH_DATA_DIR/imdb/$f.tsv.gz" | xz -9 -T2 >shared/imdb_xz/$f.tsv.xz; done
#       cp "$RNNBENCH_DATA_DIR"/imdb/*.sources.tsv.gz shared/imdb_xz/
#
# Settings (environment variables): UNITS="128 256"  EPOCHS=30 (an upper bound; time decides)
#   TOTAL_SECONDS=480  WHEELS=shared/wheels (none: already installed)  PYTHON=python3
#   DATA_DIR (default: unpacked from shared/imdb_xz)
# A dry run on a CPU (nothing finishes an epoch; it checks the steps up to pretraining):
#   WHEELS=none UNITS=16 TOTAL_SECONDS=150 PYTHON=.venv/bin/python DATA_DIR=$RNNBENCH_DATA_DIR bash scripts/gpu_lm.sh

set -u
cd "$(dirname "$0")/.."

UNITS=${UNITS:-128 256}
EPOCHS=${EPOCHS:-30}
TOTAL_SECONDS=${TOTAL_SECONDS:-480}
WHEELS=${WHEELS:-shared/wheels}
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT:-$(mktemp -d /tmp/gpu_lm_out.XXXXXX)}
SCRATCH=$(mktemp -d /tmp/gpu_lm.XXXXXX)
# Kept back at the end to list and copy the artefacts.
RESERVE=20
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false RNNBENCH_CACHE_DIR="$SCRATCH/cache"

main() {
    echo "gpu_lm: units $UNITS, at most $EPOCHS epochs, $TOTAL_SECONDS s; output $OUT_DIR, scratch $SCRATCH"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    if [[ "$WHEELS" != none ]]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SCRATCH/site" "$WHEELS"/*.whl || return 1
        export PYTHONPATH="$SCRATCH/site"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if [[ -z "${DATA_DIR:-}" ]]; then
        DATA_DIR="$SCRATCH/data"
        mkdir -p "$DATA_DIR/imdb"
        cp shared/imdb_xz/*.sources.tsv.gz "$DATA_DIR/imdb/"
        for name in unsup train test; do
            xz -dc "shared/imdb_xz/$name.tsv.xz" | gzip -1 >"$DATA_DIR/imdb/$name.tsv.gz" &
        done
        wait
    fi
    echo "data: $(ls "$DATA_DIR/imdb" | tr '\n' ' ') ($SECONDS s)"
    "$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, keras.backend.backend())" || return 1

    # The corpus once (tokenized into the cache), so that the pretrainings side by side read it.
    "$PYTHON" -c "
import sys
from rnnbench import lm
from rnnbench.config import load_config
lm.language_model_corpus(load_config('configs/best/gru_lm.yaml'), sys.argv[1])
print('corpus tokenized')
" "$DATA_DIR" || return 1
    echo "corpus ready ($SECONDS s)"

    local left=$((TOTAL_SECONDS - SECONDS - RESERVE)) units
    for units in $UNITS; do
        timeout --signal=KILL "$left" "$PYTHON" -c "
import sys, time
from rnnbench import lm
from rnnbench.config import load_config
config = load_config('configs/best/gru_lm.yaml', [f'model.units={sys.argv[2]}', f'model.lm_epochs={sys.argv[3]}'])
started = time.time()
lm.pretrained_encoder(config, sys.argv[1], lambda line: print(f'[{sys.argv[2]} units, {time.time() - started:.0f} s] {line}', flush=True))
" "$DATA_DIR" "$units" "$EPOCHS" 2>&1 | tee "$OUT_DIR/pretrain_u$units.log" | grep -v "^WARNING\|^I0000\|^W0000" &
    done
    wait
    echo "pretrainings stopped ($SECONDS s)"

    # Each units' latest artefact (every epoch's is in the cache; these are what come back).
    "$PYTHON" - "$RNNBENCH_CACHE_DIR/corpora" "$OUT_DIR" <<'LIST'
import json, shutil, sys
from pathlib import Path
import numpy as np
from rnnbench import tokenize
cache, out = Path(sys.argv[1]), Path(sys.argv[2])
found = []
for path in sorted(cache.glob("lm-[0-9a-f]*.npz")):
    with np.load(path) as saved:
        summary = tokenize.from_json_bytes(saved["summary"])
        units = int(saved["forward_0_1"].shape[0])
    found.append({"file": path.name, "units": units, "epochs": len(summary["epochs"]), "per_epoch": summary["epochs"],
                  "held_out_perplexity": summary["held_out_perplexity"], "pretraining_seconds": summary["pretraining_seconds"],
                  "bytes": path.stat().st_size})
latest = {}
for entry in found:
    if entry["epochs"] > latest.get(entry["units"], {"epochs": 0})["epochs"]:
        latest[entry["units"]] = entry
for units, entry in sorted(latest.items()):
    (out / f"u{units}").mkdir(exist_ok=True)
    shutil.copy(cache / entry["file"], out / f"u{units}" / entry["file"])
    entry["brought_back"] = True
(out / "gpu_lm_artefacts.json").write_text(json.dumps(found, indent=2) + "\n")
for entry in found:
    print(f"{entry['units']} units, {entry['epochs']} epochs: held-out perplexity {entry['held_out_perplexity']:.1f},"
          f" {entry['pretraining_seconds']:.0f} s, {entry['file'][:20]}…{' (brought back)' if entry.get('brought_back') else ''}")
LIST
    echo "gpu_lm: done in $SECONDS s; files in $OUT_DIR: $(cd "$OUT_DIR" && find . -type f | tr '\n' ' ')"
}

mkdir -p "$OUT_DIR"
main 2>&1 | tee "$OUT_DIR/gpu_lm.log"
exit "${PIPESTATUS[0]}"
