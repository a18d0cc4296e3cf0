"""Check the kernel report against the functions Keras really calls, on whatever device is here.

    python scripts/gpu_kernels.py [--backends jax torch tensorflow] [--json FILE]

`rnnbench.kernels.plan` says, without Keras, which kernel each recurrent layer runs on a backend
and device. This script checks it: for each backend (default: jax and torch, and tensorflow where
installed), in a process of its own (Keras takes one backend per process), for each cell
(simple_rnn, lstm, gru) and setting (plain; a padding mask over post- and pre-padded texts;
unroll; bidirectional; bidirectional with recurrent_input_dropout), it builds rnnbench's
one-layer model, wraps the functions Keras calls to run a recurrent layer, runs one forward pass
and one training step, and compares what ran with plan(config, backend, gpu) for the device it
finds. It prints a line per case and exits 1 naming every disagreement (2 when a backend could
not be checked at all). A case that fails agrees only where plan predicts kernels.MASK_ERROR and
the failure is that error (TensorFlow's InvalidArgumentError about a mask that is not
right-padded); any other exception is a disagreement that names it. On the CPU it takes about a minute; scripts/gpu_check.sh runs it on a GPU.

What is wrapped (keras/src/backend/, Keras 3.15.1): the backend's `lstm`, `gru`, `rnn` (the
generic step loop) and `bidirectional_lstm`/`bidirectional_gru`, which each return or raise
NotImplementedError; on torch the private `_cudnn_lstm`/`_cudnn_gru` (torch._VF, whose errors
torch/rnn.py swallows) and `_fallback_lstm`/`_fallback_gru`; on JAX `jax.experimental.rnn.lstm`
(the cuDNN call); on TensorFlow `_cudnn_lstm`/`_cudnn_gru`. tests/test_kernels.py uses
`spy_calls` from here for the CPU column.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pydantic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnbench.config import Config, ModelConfig, config_from_mapping  # noqa: E402
from rnnbench.kernels import CUDNN, GENERIC, JAX_GRU_SCAN, MASK_ERROR, TORCH_LOOP, UNROLLED_LOOP, plan  # noqa: E402

CELLS = ("simple_rnn", "lstm", "gru")
# Setting: (config overrides, Keras layer settings model.py doesn't expose, padding of the texts).
SETTINGS: dict[str, tuple[tuple[str, ...], dict[str, Any], str]] = {
    "plain": ((), {}, "post"),
    "mask, post-padded": (("model.mask_padding=true", "data.padding=post"), {}, "post"),
    "mask, pre-padded": (("model.mask_padding=true", "data.padding=pre"), {}, "pre"),
    "unroll": ((), {"unroll": True}, "post"),
    "bidirectional": (("model.bidirectional=true",), {}, "post"),
    "bidirectional, input dropout": (("model.bidirectional=true", "model.recurrent_input_dropout=0.25"), {}, "post"),
}
# Four texts of six tokens, none all padding (TensorFlow's cuDNN refuses those); 0 is padding.
TOKENS = {
    "post": np.array([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 8, 0, 0, 0, 0], [2, 2, 2, 2, 2, 2]], dtype="int32"),
    "pre": np.array([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 7, 8], [2, 2, 2, 2, 2, 2]], dtype="int32"),
}
LABELS = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")
# The calls that mean a fused kernel ran, per backend. torch's `bidirectional_lstm`/`_gru` return
# only after one cuDNN call over both directions (torch._VF, which the spy doesn't see itself).
FUSED_CALLS = {
    "tensorflow": ("_cudnn_lstm", "_cudnn_gru"),
    "jax": ("jax.experimental.rnn.lstm",),
    "torch": ("_cudnn_lstm", "_cudnn_gru", "bidirectional_lstm", "bidirectional_gru"),
}


def small_config(cell: str, *overrides: str, **layer_settings: Any) -> Config:
    """rnnbench's one-layer model for `cell`, small; `layer_settings` are Keras layer settings
    that ModelConfig doesn't have (kernels.plan reads a ModelConfig field of the same name)."""
    config = config_from_mapping(
        {"model": {"cell": cell, "units": 4, "embedding_dim": 3}, "data": {"maxlen": 6, "num_words": 20}},
        overrides=overrides,
    )
    if not layer_settings:
        return config
    fields = {key: (type(value), value) for key, value in layer_settings.items()}
    section = pydantic.create_model("LayerSettings", __base__=ModelConfig, **fields)
    return config.model_copy(update={"model": section(**config.model.model_dump(), **layer_settings)})


def spied_functions() -> list[tuple[Any, str, str]]:
    """(module, attribute, label) of each function to wrap on the current Keras backend."""
    import keras
    from keras.src import backend as keras_backend

    spied = [(keras_backend, name, name) for name in ("lstm", "gru", "rnn", "bidirectional_lstm", "bidirectional_gru")]
    name = keras.backend.backend()
    if name == "torch":
        module = sys.modules["keras.src.backend.torch.rnn"]
        spied += [
            (module, function, function)
            for function in ("_cudnn_lstm", "_fallback_lstm", "_cudnn_gru", "_fallback_gru")
        ]
    elif name == "jax":
        import jax.experimental.rnn

        spied.append((jax.experimental.rnn, "lstm", "jax.experimental.rnn.lstm"))
    elif name == "tensorflow":
        module = sys.modules["keras.src.backend.tensorflow.rnn"]
        spied += [(module, function, function) for function in ("_cudnn_lstm", "_cudnn_gru")]
    return spied


@contextlib.contextmanager
def spying(calls: list[str]) -> Iterator[None]:
    """Wrap spied_functions(); each call appends '<label> returned' or '<label> raised <Error>'."""

    def spy(label: str, function: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if any(getattr(value, "is_meta", False) for value in (*args, *kwargs.values())):
                # Keras-torch infers a training step's shapes by calling the layers on tensors of
                # torch's "meta" device, which hold no data: never cuDNN, and nothing is computed.
                return function(*args, **kwargs)
            shown = f"{label}(unroll=True)" if label == "rnn" and kwargs.get("unroll") else label
            try:
                result = function(*args, **kwargs)
            except Exception as error:
                calls.append(f"{shown} raised {type(error).__name__}")
                raise
            calls.append(f"{shown} returned")
            return result

        return wrapper

    originals = []
    try:
        for module, attribute, label in spied_functions():
            original = getattr(module, attribute)
            originals.append((module, attribute, original))
            setattr(module, attribute, spy(label, original))
        yield
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)


def build(config: Config, layer_settings: dict[str, Any]) -> Any:
    """rnnbench's model for `config`, with `layer_settings` set on its recurrent layers before they first run."""
    from keras import layers

    from rnnbench.model import build_model

    network = build_model(config, 20, 2)
    for layer in network.layers:
        inner = [layer.forward_layer, layer.backward_layer] if isinstance(layer, layers.Bidirectional) else [layer]
        for recurrent in inner:
            if isinstance(recurrent, layers.RNN):
                for key, value in layer_settings.items():
                    setattr(recurrent, key, value)
    return network


def spy_calls(config: Config, tokens: np.ndarray, layer_settings: dict[str, Any] | None = None) -> list[str]:
    """The spied functions a forward pass of `config`'s model over `tokens` calls, in order."""
    network = build(config, layer_settings or {})
    calls: list[str] = []
    with spying(calls):
        network(tokens)
    return calls


def train_step_calls(config: Config, tokens: np.ndarray, layer_settings: dict[str, Any] | None = None) -> list[str]:
    """The spied functions one training step calls (traced once, on the JAX and TensorFlow backends)."""
    from rnnbench.model import loss_for

    network = build(config, layer_settings or {})
    network.compile(optimizer="adam", loss=loss_for(2))
    calls: list[str] = []
    with spying(calls):
        network.train_on_batch(tokens, LABELS)
    return calls


def gpu_visible(backend: str) -> bool:
    """Whether the current Keras backend trains on a GPU here."""
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    import torch

    return torch.cuda.is_available()


def observed_kernel(backend: str, calls: list[str]) -> str:
    """The kernel label (kernels.py's) that `calls` show ran."""
    returned = {call.removesuffix(" returned") for call in calls if call.endswith(" returned")}
    fused = any(name in returned for name in FUSED_CALLS[backend])
    own_loop = backend == "torch" and bool({"_fallback_lstm", "_fallback_gru"} & returned)
    generic = bool({"rnn", "rnn(unroll=True)"} & returned)
    if sum((fused, own_loop, generic)) > 1:
        return f"mixed: {calls}"
    if generic:
        return GENERIC
    if fused:
        return CUDNN
    if own_loop:
        return TORCH_LOOP
    if backend == "jax" and "gru" in returned:
        return JAX_GRU_SCAN
    return f"unrecognised: {calls}"


# The one failure kernels.MASK_ERROR predicts: TensorFlow's cuDNN path asserts that a mask is
# right-padded (keras/src/backend/tensorflow/rnn.py, _assert_valid_mask), and the failed
# tf.Assert surfaces as an InvalidArgumentError carrying this message.
MASK_ERROR_TYPE = "InvalidArgumentError"
MASK_ERROR_MESSAGE = "does not correspond to right-padded sequences"


def failed_kernel(error: BaseException) -> str:
    """kernels.MASK_ERROR for the error it predicts; for any other, 'failed: <its type>', a disagreement."""
    if type(error).__name__ == MASK_ERROR_TYPE and MASK_ERROR_MESSAGE in str(error):
        return MASK_ERROR
    return f"failed: {type(error).__name__}"


def disagreements(backend: str, cell: str, setting: str, gpu: bool) -> tuple[list[str], dict[str, Any]]:
    """Compare plan() with what the forward pass and a training step call, for one case."""
    overrides, layer_settings, padding = SETTINGS[setting]
    config = small_config(cell, *overrides, **layer_settings)
    [choice] = plan(config, backend, gpu)
    found: dict[str, Any] = {"planned": choice.kernel, "reason": choice.reason}
    problems = []
    for phase, trace in (("forward", spy_calls), ("training step", train_step_calls)):
        try:
            calls = trace(config, TOKENS[padding], layer_settings)
            kernel = observed_kernel(backend, calls)
        except Exception as error:
            # Only the error kernels.MASK_ERROR predicts agrees with it; any other failure is named.
            calls, kernel = [f"failed: {type(error).__name__}: {str(error)[:200]}"], failed_kernel(error)
        found[phase] = {"kernel": kernel, "calls": calls}
        if kernel != choice.kernel:
            problems.append(f"{phase}: plan says {choice.kernel!r}, Keras ran {kernel!r} ({', '.join(calls)})")
            continue
        unrolled = any(call.startswith("rnn(unroll=True)") for call in calls)
        if (UNROLLED_LOOP in choice.reason) != unrolled:
            said = (
                "Keras unrolled the loop and the reason does not say so"
                if unrolled
                else "the reason says unrolled, Keras did not unroll"
            )
            problems.append(f"{phase}: {said} ({', '.join(calls)})")
        if config.model.bidirectional and kernel == CUDNN:
            paired = f"bidirectional_{cell} returned" in calls
            if ("both directions in one call" in choice.reason) != paired:
                problems.append(
                    f"{phase}: the reason {choice.reason.split('; ')[-1]!r} disagrees with the calls: {', '.join(calls)}"
                )
    return problems, found


def check_this_backend() -> int:
    """Every cell and setting on the backend Keras was imported with; prints JSON last."""
    import keras

    backend = keras.backend.backend()
    gpu = gpu_visible(backend)
    cases, problems = [], []
    for cell in CELLS:
        for setting in SETTINGS:
            found_problems, found = disagreements(backend, cell, setting, gpu)
            cases.append(
                {"backend": backend, "gpu": gpu, "cell": cell, "setting": setting, **found, "problems": found_problems}
            )
            mark = "ok  " if not found_problems else "DIFF"
            print(
                f"{mark} {backend:10} {'GPU' if gpu else 'CPU'} {cell:10} {setting:30} {found['planned']}", flush=True
            )
            problems += [f"{backend} {cell} {setting}: {problem}" for problem in found_problems]
    print(json.dumps({"backend": backend, "gpu": gpu, "cases": cases, "problems": problems}))
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    installed = [name for name in ("jax", "torch", "tensorflow") if importlib.util.find_spec(name) is not None]
    parser.add_argument("--backends", nargs="+", choices=["jax", "torch", "tensorflow"], default=installed)
    parser.add_argument("--json", type=Path, help="Write every case (plan, calls, problems) to this file.")
    parser.add_argument("--this-process", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.this_process:
        return check_this_backend()

    report: dict[str, Any] = {"backends": {}, "problems": []}
    status = 0
    for backend in arguments.backends:
        # Each backend in a fresh process: Keras reads KERAS_BACKEND once, at its first import.
        environment = {
            **os.environ,
            "KERAS_BACKEND": backend,
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        completed = subprocess.run(
            [sys.executable, __file__, "--this-process"], env=environment, capture_output=True, text=True, timeout=600
        )
        lines = completed.stdout.splitlines()
        print("\n".join(lines[:-1]), flush=True)
        try:
            found = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"FAILED {backend}: no result (exit code {completed.returncode})\n{completed.stderr[-3000:]}")
            report["problems"].append(f"{backend}: could not be checked (exit code {completed.returncode})")
            status = 2
            continue
        report["backends"][backend] = found
        report["problems"] += found["problems"]
        status = max(status, 1 if found["problems"] else 0)
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    for problem in report["problems"]:
        print(f"disagreement: {problem}")
    print(f"gpu_kernels: {len(report['problems'])} disagreement(s) on {', '.join(arguments.backends)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
