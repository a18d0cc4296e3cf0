#!/usr/bin/env bash
# GPU check, in one call of the device machine (one NVIDIA GPU; at most TOTAL_SECONDS, 540 s):
#   1. the pinned Keras imports and trains one step on the device's own JAX and PyTorch (other,
#      builds than this project pins: the GPU image had jax 0.11.2 and torch 2.11.0, CUDA 13);
#   2. the kernel report against the functions Keras really calls there (scripts/gpu_kernels.py);
#   3. Keras on the JAX and torch backends against plain PyTorch (cuDNN): scripts/bench_backends.py;
#   4. rnnbench's own LSTM and GRU runs on each backend that works;
#   5. a packed sweep: 4 LSTM runs with --gpus-per-run 0.25 (--cluster local where `import ray`
#      works, else --jobs 4), backend auto, beside the single run and plain PyTorch: the packed
#      runs' samples/s over the window in which all their epochs overlap (from the histories'
#      started_at/ended_at), and the ratios behind the two goals (a single run >= 0.5 x plain
#      PyTorch, the packed sweep >= 1.0 x), printed but not judged: an epoch's seconds include its
#      validation pass, plain PyTorch's are training only.
#
#   bash scripts/gpu_check.sh        (from anywhere; it works in the repository root)
#
# Made for the device machine: no TensorFlow, no Ray, no internet; its python3 holds PyTorch,
# JAX with CUDA, numpy, click, pyyaml, tabulate, matplotlib, tqdm and tensorboard (with protobuf),
# which `rnnbench run` imports as it trains; the rest comes as wheels. Everything it reports goes to
# $OUT when set (the folder the GPU machine sends back), else to a new /tmp/gpu_check_out.*
# folder: gpu_check.log (all output), gpu_kernels.json, bench_backends.json, rnnbench_runs.json,
# packed_sweep.json and gpu_check_summary.md. Scratch files (the installed wheels, the runs, the
# tokenizer cache) go to a new /tmp/gpu_check.* folder.
#
# What to bring, relative to the repository root (a shared/ folder in the checkout travels to the
# device machine, about 33 MB with what follows; keep it out of git with:
# echo /shared/ >> "$(git rev-parse --git-path info/exclude)"):
#
#   shared/wheels/*.whl          one version of each (about 6 MB), installed with --no-deps into
#                                /tmp (the rnnbench wheel would otherwise pull in TensorFlow):
#       rnnbench-0.1.0-py3-none-any.whl, built from this checkout (rebuild it after any change):
#           rm -f shared/wheels/rnnbench-*.whl && .venv/bin/python -m pip wheel --no-deps -w shared/wheels .
#       keras-3.15.1-py3-none-any.whl and what the GPU image lacks of Keras' and rnnbench's needs:
#       namex, optree, pydantic, pydantic_core, annotated_types, typing_inspection, and a
#       typing_extensions new enough for pydantic (cp312 x86-64):
#           .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#             --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#             --platform manylinux2014_x86_64 -d shared/wheels keras==3.15.1 namex==0.1.0 optree==0.20.0 \
#             pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
#       (absl-py, numpy, rich, h5py, ml-dtypes, packaging, click, pyyaml, tabulate, matplotlib, tqdm,
#       tensorboard and protobuf are in the GPU image, so no wheel for them.)
#   shared/data/imdb/train.tsv.gz and shared/data/imdb/test.tsv.gz: copies of the IMDB files of
#       the data folder (13.5 MB and 13.2 MB, about 27 MB in all):
#           mkdir -p shared/data/imdb && cp "$RNNBENCH_DATA_DIR"/imdb/{train,test}.tsv.gz shared/data/imdb/
#
# Then run `bash scripts/gpu_check.sh` there in one command allowed 600 s: the check's 540 s, the
# wheels' install included, and room to spare.
#
# Settings (environment variables; the defaults are the GPU check):
#   WHEELS=shared/wheels  DATA_DIR=shared/data (or RNNBENCH_DATA_DIR)  PYTHON=python3  TOTAL_SECONDS=540
#   DEVICE=gpu  SAMPLES=25000  MAXLEN=200  BATCH_SIZE=256  EPOCHS=2
#   RUN_SETS="data.limit=12500" (--set KEY=VALUE for the rnnbench runs: a stratified sample of 12,500
#   of IMDB's 25,000 training reviews, before validation is held out, so 10,000 train and 2,500
#   validate; it keeps the eight runs inside the time)  PACKING=auto (cluster where
#   `import ray` works and DEVICE=gpu, else jobs; a CPU cluster refuses --gpus-per-run)
# A dry run on a CPU, with the packages already installed and tiny sizes (data.limit=500: 400 rows
# train; about 7 minutes on 2 cores):
#   WHEELS=none DEVICE=cpu SAMPLES=500 MAXLEN=20 RUN_SETS="data.limit=500 data.maxlen=20" PYTHON=.venv/bin/python bash scripts/gpu_check.sh
#
# Every step runs under `timeout`, with the time left shared out, so that the whole check ends
# within TOTAL_SECONDS; a step that runs out of time is reported and the check goes on.

set -u
cd "$(dirname "$0")/.."

WHEELS=${WHEELS:-shared/wheels}
DATA_DIR=${DATA_DIR:-${RNNBENCH_DATA_DIR:-shared/data}}
PYTHON=${PYTHON:-python3}
TOTAL_SECONDS=${TOTAL_SECONDS:-540}
DEVICE=${DEVICE:-gpu}
SAMPLES=${SAMPLES:-25000}
MAXLEN=${MAXLEN:-200}
BATCH_SIZE=${BATCH_SIZE:-256}
EPOCHS=${EPOCHS:-2}
RUN_SETS=${RUN_SETS-data.limit=12500}
PACKING=${PACKING:-auto}
OUT_DIR=${OUT:-$(mktemp -d /tmp/gpu_check_out.XXXXXX)}
SCRATCH=$(mktemp -d /tmp/gpu_check.XXXXXX)
DEADLINE=$((SECONDS + TOTAL_SECONDS))
# Kept back at the end for the summary.
RESERVE=10
# Steps that failed, timed out or were skipped; any makes the exit status 1.
PROBLEMS=()
# Python, after a backend's own check: Keras (the pinned one) builds an LSTM and a GRU model on that
# backend, runs them and trains one step of each, on the device the backend sees.
KERAS_STEP="
import importlib.metadata, keras, numpy as np
tokens = np.random.default_rng(0).integers(1, 50, size=(64, 20)).astype('int32')
labels = (tokens[:, 0] > 25).astype('float32')
for cell in (keras.layers.LSTM, keras.layers.GRU):
    model = keras.Sequential([keras.Input((20,), dtype='int32'), keras.layers.Embedding(50, 8), cell(8), keras.layers.Dense(1, activation='sigmoid')])
    model.compile(optimizer='adam', loss='binary_crossentropy')
    loss = model.train_on_batch(tokens, labels)
    print('keras', importlib.metadata.version('keras'), 'on', keras.backend.backend(), cell.__name__, 'trains: loss', round(float(loss), 4), 'on', keras.ops.convert_to_tensor(tokens).device if hasattr(keras.ops.convert_to_tensor(tokens), 'device') else '?')
"
export PYTHONUNBUFFERED=1 RNNBENCH_CACHE_DIR="$SCRATCH/cache"

# Seconds the next step may take: at most CAP, and its SHARE of the time left, which the steps
# still to come share out in proportion to their expected length (SHARE of TOTAL parts).
step_limit() {
    local cap=$1 share=$2 total=$3 left=$((DEADLINE - SECONDS - RESERVE))
    local part=$((left * share / total))
    echo $((part < cap ? part : cap))
}

# step NAME CAP SHARE TOTAL COMMAND...: runs COMMAND under timeout; says when it is skipped or stopped.
step() {
    local name=$1 cap=$2 share=$3 total=$4
    shift 4
    local limit
    limit=$(step_limit "$cap" "$share" "$total")
    if ((limit < 10)); then
        echo "SKIPPED $name: only $((DEADLINE - SECONDS)) s of the $TOTAL_SECONDS s left"
        PROBLEMS+=("$name: skipped, out of time")
        return 125
    fi
    echo
    echo "=== $name (at most $limit s; $((SECONDS)) s so far) ==="
    local started=$SECONDS status
    timeout --kill-after=5 "$limit" "$@"
    status=$?
    if ((status == 124 || status == 137)); then
        echo "TIMED OUT $name after $limit s"
        PROBLEMS+=("$name: timed out after $limit s")
    elif ((status != 0)); then
        echo "FAILED $name (exit code $status)"
        PROBLEMS+=("$name: exit code $status")
    fi
    echo "--- $name: $((SECONDS - started)) s"
    return $status
}

check() {
    echo "gpu_check: device $DEVICE, $SAMPLES samples, maxlen $MAXLEN, batch size $BATCH_SIZE, $EPOCHS epochs; at most $TOTAL_SECONDS s"
    echo "output: $OUT_DIR; scratch: $SCRATCH; data: $DATA_DIR; wheels: $WHEELS"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PYTHON" --version
    if [[ ! -e "$DATA_DIR/imdb/train.tsv.gz" && ! -d "$DATA_DIR/aclImdb" ]]; then
        echo "NO DATA: $DATA_DIR/imdb/train.tsv.gz is missing (see the layout at the top of $0); stopping"
        return 1
    fi

    if [[ "$WHEELS" != none ]]; then
        if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
            echo "NO WHEELS in $WHEELS (see the layout at the top of $0); stopping"
            return 1
        fi
        # --no-deps: the wheels folder holds every missing dependency, and rnnbench's metadata
        # asks for TensorFlow, which this machine neither has nor needs.
        step "install wheels" 90 1 1 "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$SCRATCH/site" "$WHEELS"/*.whl || return 1
        export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    step "import check" 60 1 1 "$PYTHON" -c "
import importlib.metadata as metadata, importlib.util, sys
# Keras itself is imported by the measurements, each with its backend chosen first (a bare
# import would pick TensorFlow); here only rnnbench's data side, which must not need it.
import rnnbench.cli, rnnbench.data, rnnbench.tokenize
heavy = [name for name in ('tensorflow', 'keras') if sys.modules.get(name) is not None]
print('keras', metadata.version('keras'), '| rnnbench', metadata.version('rnnbench'),
      '| tensorflow installed:', importlib.util.find_spec('tensorflow') is not None,
      '| imported by rnnbench.cli, data, tokenize:', heavy or 'neither TensorFlow nor Keras')
sys.exit(1 if heavy else 0)
" || return 1

    local jax_ok=0 torch_ok=0 want=gpu
    [[ "$DEVICE" == cpu ]] && want=cpu
    # The device's JAX and torch are newer than the ones Keras 3.15.1 was pinned with here: each
    # backend must see the device, and Keras must build, run and train a recurrent model on it.
    if step "JAX devices, and Keras trains on JAX" 90 1 1 env KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false "$PYTHON" -c "
import jax, sys
print('jax', jax.__version__, jax.devices())
if jax.devices()[0].platform != '$want':
    sys.exit(1)
$KERAS_STEP"; then jax_ok=1; else echo "JAX sees no $want, or Keras fails on it: skipping the Keras JAX backend"; fi
    if step "PyTorch CUDA, and Keras trains on torch" 90 1 1 env KERAS_BACKEND=torch "$PYTHON" -c "
import sys, torch
print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
if not (torch.cuda.is_available() or '$want' == 'cpu'):
    sys.exit(1)
$KERAS_STEP"; then torch_ok=1; else echo "PyTorch sees no CUDA GPU, or Keras fails on it: skipping the Keras PyTorch backend and plain PyTorch"; fi

    local implementations=() backends=()
    ((jax_ok)) && implementations+=(jax) && backends+=(jax)
    ((torch_ok)) && implementations+=(torch pytorch) && backends=(torch "${backends[@]}")
    if ((${#implementations[@]} == 0)); then
        echo "neither JAX nor PyTorch can use the $want here; nothing to measure"
        return 1
    fi

    step "kernel report against the functions Keras calls (${backends[*]})" 120 1 4 "$PYTHON" scripts/gpu_kernels.py \
        --backends "${backends[@]}" --json "$OUT_DIR/gpu_kernels.json"

    # The time left is shared out as if the benchmark took as long as one rnnbench run per
    # implementation it measures (two cells, two short processes each); two runs per backend
    # follow, then the packed sweep (as long as two runs).
    local runs_left=$((2 * ${#backends[@]} + 2)) bench_parts=${#implementations[@]}
    step "bench_backends (${implementations[*]})" 150 "$bench_parts" $((bench_parts + runs_left)) "$PYTHON" scripts/bench_backends.py \
        --device "$DEVICE" --maxlen "$MAXLEN" --batch-size "$BATCH_SIZE" --samples "$SAMPLES" --repeats 1 \
        --implementations "${implementations[@]}" --data-dir "$DATA_DIR" --worker-timeout 60 \
        --json "$OUT_DIR/bench_backends.json"

    local sets=(--set "train.batch_size=$BATCH_SIZE" --set "train.epochs=$EPOCHS")
    for item in $RUN_SETS; do sets+=(--set "$item"); done
    for backend in "${backends[@]}"; do
        for cell in lstm gru; do
            # A runs folder of its own per run, so that nothing is reused and its folder is easy to find.
            step "rnnbench run configs/$cell.yaml --backend $backend" 90 1 "$runs_left" "$PYTHON" -m rnnbench run "configs/$cell.yaml" \
                --backend "$backend" "${sets[@]}" --data-dir "$DATA_DIR" --runs-dir "$SCRATCH/runs/$backend-$cell"
            runs_left=$((runs_left - 1))
        done
    done

    # Four LSTM runs on one GPU, each with a quarter of it, with the backend `auto` picks there.
    local packing=(--jobs 4) started
    if [[ "$PACKING" == cluster || ( "$PACKING" == auto && "$DEVICE" == gpu ) ]] && "$PYTHON" -c "import ray" 2>/dev/null; then
        packing=(--cluster local)
    fi
    started=$(date +%s.%N)
    step "packed sweep: rnnbench run configs/lstm.yaml --seeds 4 ${packing[*]} --gpus-per-run 0.25" 180 2 "$runs_left" \
        "$PYTHON" -m rnnbench run configs/lstm.yaml --seeds 4 "${packing[@]}" --gpus-per-run 0.25 "${sets[@]}" \
        --data-dir "$DATA_DIR" --runs-dir "$SCRATCH/packed"
    echo "{\"started\": $started, \"ended\": $(date +%s.%N), \"packing\": \"${packing[*]} --gpus-per-run 0.25\"}" >"$SCRATCH/packed_wall.json"

    echo
    echo "=== summary ($SECONDS s so far) ==="
    timeout 30 "$PYTHON" - "$OUT_DIR" "$SCRATCH/runs" "$SCRATCH/packed" "$SCRATCH/packed_wall.json" <<'SUMMARY'
"""Samples/s of each rnnbench run from its recorded history, against the benchmark's numbers,
and the packed sweep's aggregate against a single run and plain PyTorch, with the goals."""
import datetime
import json
import sys
from pathlib import Path

out_dir, runs_root, packed_root, packed_wall = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
bench_path = out_dir / "bench_backends.json"
bench = json.loads(bench_path.read_text()) if bench_path.exists() else {"rows": []}
median = {(row["implementation"], row["cell"]): row["median"] for row in bench["rows"]}
lines = []
if bench["rows"]:
    stopped = "" if bench.get("complete") else " (STOPPED EARLY: only the measurements that finished)"
    lines += [f"## bench_backends.py{stopped}", "", f"settings: {bench['settings']}; devices: {', '.join(bench['devices'])}", "",
              "| implementation | cell | samples/s | vs reference |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {row['label']} | {row['cell']} | {row['median']:,.0f} | {row['ratio']:.2f}x |" for row in bench["rows"]]
    labels = {row["implementation"]: row["label"] for row in bench["rows"]}
    lines += [""] + [f"reference for {cell}: {labels[name]}" for cell, name in bench["references"].items()] + [""]
else:
    lines += ["bench_backends.py gave no results", ""]


def read_runs(folders):
    """Each recorded run's backend, why it was chosen, and samples/s per epoch from its history."""
    runs = []
    for folder in sorted(folders):
        history_path, config_path = folder / "history.jsonl", folder / "config.json"
        if not history_path.exists() or not config_path.exists():
            continue
        record = json.loads(config_path.read_text())
        history = [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
        train_rows = record.get("data", {}).get("train_rows", 20_000)
        runs.append({
            "run_dir": str(folder), "backend": record.get("backend"), "backend_choice": record.get("backend_choice"),
            "cell": record["config"]["model"]["cell"], "device": record.get("device"), "train_rows": train_rows,
            "validation_rows": record.get("data", {}).get("validation_rows"), "completed": (folder / "result.json").exists(),
            "epochs": [{"epoch": entry["epoch"], "seconds": entry["seconds"], "samples_per_second": train_rows / entry["seconds"],
                        "val_accuracy": entry.get("val_accuracy"), "started_at": entry.get("started_at"),
                        "ended_at": entry.get("ended_at")} for entry in history],
        })
    return runs


runs = read_runs(runs_root.glob("*/*"))
(out_dir / "rnnbench_runs.json").write_text(json.dumps(runs, indent=2) + "\n")

lines += ["## rnnbench run (samples/s = data.train_rows / the epoch's recorded seconds, which include the validation pass)", "",
          "| run | device | epoch 1 samples/s | last epoch samples/s | vs plain PyTorch | vs Keras benchmark, same backend | completed |",
          "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
for run in runs:
    epochs = run["epochs"]
    if not epochs:
        lines.append(f"| {run['backend']} {run['cell']} | {run['device']} | no epoch finished | | | | {run['completed']} |")
        continue
    last = epochs[-1]["samples_per_second"]
    plain = median.get(("pytorch", run["cell"]))
    keras_bench = median.get((run["backend"], run["cell"]))
    lines.append(
        f"| {run['backend']} {run['cell']} | {run['device']} | {epochs[0]['samples_per_second']:,.0f} | {last:,.0f} (epoch {epochs[-1]['epoch']})"
        f" | {f'{last / plain:.2f}x' if plain else 'n/a'} | {f'{last / keras_bench:.2f}x' if keras_bench else 'n/a'} | {run['completed']} |"
    )
if not runs:
    lines.append("no rnnbench run recorded an epoch")

def seconds_of(moment):
    return datetime.datetime.fromisoformat(moment).timestamp()


def overlap_window(runs):
    """(start, end) of the interval in which every run had an epoch under way, from the histories'
    started_at/ended_at (the latest first start to the earliest last end); None without them."""
    spans = []
    for run in runs:
        times = [(seconds_of(e["started_at"]), seconds_of(e["ended_at"])) for e in run["epochs"] if e["started_at"] and e["ended_at"]]
        if not times or len(times) != len(run["epochs"]):
            return None
        spans.append((min(start for start, _ in times), max(end for _, end in times)))
    start, end = max(start for start, _ in spans), min(end for _, end in spans)
    return (start, end) if end > start else None


def rows_within(run, start, end):
    """Training rows `run` went through between start and end, each epoch's rows spread evenly over it."""
    total = 0.0
    for epoch in run["epochs"]:
        began, ended = seconds_of(epoch["started_at"]), seconds_of(epoch["ended_at"])
        total += run["train_rows"] * max(0.0, min(ended, end) - max(began, start)) / (ended - began)
    return total


# The packed sweep. The sum of each run's last-epoch samples/s shows no overlap (the epochs may have
# run one after another); the overlap window is the interval in which every run had an epoch under
# way, and its rows / seconds is what the runs did at once. Epochs include their validation pass, so
# neither is training-only like plain PyTorch's figure: the goals' ratios are printed, not judged.
# End to end divides every sample trained by the command's wall time, start-up and data included.
packed = read_runs(path for path in packed_root.glob("*") if path.is_dir())
wall = json.loads(packed_wall.read_text()) if packed_wall.exists() else None
lines += ["", "## packed sweep against a single run and plain PyTorch (LSTM)", ""]
finished = [run for run in packed if run["epochs"]]
packed_summary = {"packing": wall and wall["packing"], "runs": packed}
if finished and wall:
    seconds = wall["ended"] - wall["started"]
    steady = sum(run["epochs"][-1]["samples_per_second"] for run in finished)
    window = overlap_window(finished) if len(finished) == len(packed) else None
    overlapped = sum(rows_within(run, *window) for run in finished) / (window[1] - window[0]) if window else None
    end_to_end = sum(run["train_rows"] * len(run["epochs"]) for run in finished) / seconds
    backend = finished[0]["backend"]
    single = next((run["epochs"][-1]["samples_per_second"] for run in runs if run["backend"] == backend and run["cell"] == "lstm" and run["epochs"]), None)
    plain = median.get(("pytorch", "lstm"))
    packed_summary.update({"wall_seconds": seconds, "steady_samples_per_second": steady, "end_to_end_samples_per_second": end_to_end,
                           "overlap_window_seconds": window and window[1] - window[0], "overlap_samples_per_second": overlapped,
                           "single_run_samples_per_second": single, "plain_pytorch_samples_per_second": plain})
    lines += [f"{wall['packing']}: {len(finished)} of 4 runs recorded epochs, backend {backend} ({finished[0]['backend_choice']}), "
              f"{seconds:.1f} s for the whole command", "",
              "| what | samples/s |", "| --- | ---: |",
              f"| packed sweep, sum of each run's last epoch (shows no overlap) | {steady:,.0f} |",
              f"| packed sweep, over the window all runs' epochs overlap ({f'{window[1] - window[0]:.1f} s' if window else 'none'}) | {f'{overlapped:,.0f}' if overlapped else 'n/a'} |",
              f"| packed sweep, end to end (all samples / wall time) | {end_to_end:,.0f} |",
              f"| single run ({backend} lstm, last epoch) | {f'{single:,.0f}' if single else 'n/a'} |",
              f"| plain PyTorch (bench_backends.py) | {f'{plain:,.0f}' if plain else 'n/a'} |", ""]
    for name, value, goal in (("single run", single, 0.5), ("packed sweep, overlap window", overlapped, 1.0)):
        if value and plain:
            lines.append(f"goal: {name} >= {goal} x plain PyTorch: {value / plain:.2f}x, not judged: its epochs include"
                         " validation, plain PyTorch's figure is training only")
            packed_summary[f"{name} / plain PyTorch"] = value / plain
        else:
            lines.append(f"goal: {name} >= {goal} x plain PyTorch: not measured")
else:
    lines.append("the packed sweep recorded no epoch")
(out_dir / "packed_sweep.json").write_text(json.dumps(packed_summary, indent=2) + "\n")
text = "\n".join(lines) + "\n"
(out_dir / "gpu_check_summary.md").write_text(text)
print(text)
SUMMARY
    echo "gpu_check: done in $SECONDS s; files in $OUT_DIR: $(ls "$OUT_DIR" | tr '\n' ' ')"
    if ((${#PROBLEMS[@]})); then
        printf 'problem: %s\n' "${PROBLEMS[@]}"
        return 1
    fi
}

mkdir -p "$OUT_DIR"
# The log goes to $OUT as it is written, so it comes back even if the whole command is stopped.
check 2>&1 | tee "$OUT_DIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
