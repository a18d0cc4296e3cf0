"""Which recurrent kernel each layer will run on a backend and device, and why, decided without Keras.

A fused kernel (cuDNN) runs a whole LSTM or GRU sequence in one call; anything else steps through
the sequence one time step at a time and is many times slower on a GPU. Keras picks silently, so
rnnbench states the choice before training (and warns when a config forfeits the fused kernel) and
records it with the run. Importing Keras would make `summary` and `compare` slow, so the facts are
written out here. They were read from the Keras 3.15.1 source (paths below are under keras/src/):

- `LSTM.inner_loop` and `GRU.inner_loop` (layers/rnn/lstm.py, gru.py) hand the sequence to the
  backend's `lstm`/`gru` unless `recurrent_dropout > 0` or `use_cudnn=False`; a backend that can't
  run it raises NotImplementedError and the layer falls back to `RNN.inner_loop` (layers/rnn/rnn.py),
  which steps the cell through `backend.rnn`: the generic loop. SimpleRNN always takes that loop.
- TensorFlow (backend/tensorflow/rnn.py `lstm`, `gru`, `cudnn_ok`): cuDNN (`tf.raw_ops.CudnnRNNV3`)
  when `_do_lstm_arguments_support_cudnn` / `_do_gru_arguments_support_cudnn` pass (tanh, sigmoid,
  no unroll, use_bias, and for GRU reset_after) and `_is_gpu_available`; otherwise the generic
  `tf.while_loop`. There is no fused CPU path. A mask must be right-padded: `_assert_valid_mask` is a
  `tf.Assert`, so a mask over pre-padded sequences fails at run time instead of falling back.
  `bidirectional_lstm`/`bidirectional_gru` always raise, so each direction is its own cuDNN call.
- JAX (backend/jax/rnn.py): `lstm` runs `jax.experimental.rnn.lstm`, lowered to cuDNN on CUDA
  (jax/experimental/rnn.py registers `cudnn_rnn_lowering` for platform 'cuda'), only when `cudnn_ok`
  passes (the same argument checks plus `jax.default_backend() == "gpu"`) and there is no mask
  (any mask, pre- or post-padded, raises NotImplementedError first); otherwise the generic
  `lax.scan`. A RuntimeError, TypeError or ValueError from the cuDNN call becomes NotImplementedError
  too, so a failing cuDNN LSTM silently runs the generic loop. There is no fused GRU (`bidirectional_gru` says
  jax.experimental.rnn has none): `gru` runs its own `lax.scan` with the input projections of all
  time steps precomputed in one matmul, on CPU and GPU alike, unless reset_after=False, unroll or a
  mask sends it to the generic loop. `bidirectional_lstm` runs both directions in one cuDNN call.
- torch (backend/torch/rnn.py): `lstm`/`gru` call `torch._VF.lstm`/`torch._VF.gru` (the op behind
  torch.nn.LSTM/GRU, cuDNN on CUDA) only when the inputs are on CUDA and `cudnn_ok` passes (the same
  argument checks plus `torch.backends.cudnn.is_available()`). Any exception from that call is
  swallowed (`except Exception: pass`): a failing cuDNN call silently runs `_fallback_lstm`/
  `_fallback_gru` instead, on the GPU. On the CPU they do NOT use
  torch.nn.LSTM's CPU kernel: they run `_fallback_lstm`/`_fallback_gru`, a Python loop over time
  steps with the input projections precomputed. A mask, or GRU reset_after=False, raises
  NotImplementedError and so takes the generic loop. `bidirectional_lstm`/`bidirectional_gru` run
  both directions in one cuDNN call on CUDA.
- `unroll=True` fails every backend's cuDNN check, and each backend's `rnn` then steps the cell in
  a Python for-loop while tracing (one copy of the cell per time step), not in its tf.while_loop,
  lax.scan or torch while loop; torch's `lstm`/`gru` ignore it and run their own loop.
- `Bidirectional.call` (layers/rnn/bidirectional.py) tries the backend's fused `bidirectional_lstm`/
  `bidirectional_gru` only without a mask and when neither direction's cell has `dropout` or
  `recurrent_dropout`; otherwise, or when it raises NotImplementedError, each direction is a layer
  of its own, whose `inner_loop` calls the backend's `lstm`/`gru` as above.

What rnnbench's model options change (ModelConfig in config.py):

- `model.recurrent_dropout` is Keras's `recurrent_dropout`: the first check above, so every backend
  and device runs the generic loop.
- `model.recurrent_input_dropout` is Keras's `dropout`: `inner_loop` multiplies the sequence by one
  dropout mask (`cell.get_dropout_mask` of the first step, broadcast over time) before calling the
  backend's `lstm`/`gru`, so it keeps whatever kernel the layer would run without it; a
  bidirectional layer then runs each direction as its own call (see Bidirectional above).
- `model.mask_padding` is the Embedding's `mask_zero`; the mask reaches every recurrent layer.
  TensorFlow keeps cuDNN, but `_cudnn_lstm`/`_cudnn_gru` call `_assert_valid_mask`, which fails the
  step unless every sequence is right-padded and none is all padding: data.padding 'post' keeps
  cuDNN, 'pre' fails at run time. JAX's `lstm`, `bidirectional_lstm` and `gru` and torch's `lstm`,
  `gru`, `bidirectional_lstm` and `bidirectional_gru` raise NotImplementedError for any mask
  (torch/rnn.py has right-padding helpers, but nothing calls them), so a masked LSTM or GRU runs
  the generic loop there on any padding, CPU or GPU.
- `model.pooling` other than 'last' sets `return_sequences` on the last layer, and
  `model.embedding_dropout` acts before the first: neither changes a kernel.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from rnnbench.config import Config

CUDNN = "cuDNN (fused)"
GENERIC = "generic loop"
TORCH_LOOP = "torch loop (input projections precomputed)"
JAX_GRU_SCAN = "lax.scan (input projections precomputed)"
MASK_ERROR = "error: cuDNN rejects the mask"

BACKENDS = ("tensorflow", "jax", "torch")

# The loop behind each backend's `rnn` (backend/*/rnn.py), which steps the cell one time step at a
# time; with unroll=True every backend's `rnn` steps it in a Python for-loop instead, while tracing.
_GENERIC_LOOPS = {"tensorflow": "tf.while_loop", "jax": "lax.scan", "torch": "Python"}
UNROLLED_LOOP = "the generic step loop unrolled in Python (the cell repeated once per time step)"
_TORCH_OWN_LOOP = "its own Python loop over time steps with the input projections precomputed"
# What a fused kernel's failure leaves, with no warning: jax/rnn.py turns the cuDNN call's errors
# into NotImplementedError (the layer's generic loop); torch/rnn.py swallows any exception.
_SILENT_FALLBACKS = {
    "jax": "if the cuDNN call fails, Keras silently runs the generic lax.scan step loop instead",
    "torch": f"if the cuDNN call fails, Keras silently runs {_TORCH_OWN_LOOP} instead",
}
_CELL_NAMES = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}

# The recurrent-layer settings model.py leaves at Keras's defaults (mask_zero belongs to the
# Embedding: with it, a padding mask reaches the recurrent layers). A ModelConfig field of the same
# name overrides the default, so a setting model.py starts to expose is reasoned about here too.
KERAS_DEFAULTS: dict[str, Any] = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "recurrent_dropout": 0.0,
    "unroll": False,
    "use_bias": True,
    "reset_after": True,
    "use_cudnn": "auto",
    "mask_zero": False,
}


@dataclasses.dataclass(frozen=True)
class KernelChoice:
    layer: str
    kernel: str
    fused: bool
    reason: str


def plan(config: Config, backend: str, gpu: bool) -> list[KernelChoice]:
    """The kernel each recurrent layer of `config`'s model runs with `backend`, on a GPU or the CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (allowed: {', '.join(BACKENDS)})")
    cell = config.model.cell
    if cell not in _CELL_NAMES:
        return []
    settings = _settings(config)
    choices = []
    for depth in range(1, config.model.layers + 1):
        kernel, fused, reason = _choose(backend, cell, gpu, settings, config.data.padding)
        if config.model.recurrent_input_dropout > 0 and kernel in (CUDNN, TORCH_LOOP, JAX_GRU_SCAN):
            reason += (
                f"; model.recurrent_input_dropout={config.model.recurrent_input_dropout!r} keeps it "
                "(Keras drops the same input features at every step before calling the kernel)"
            )
        layer = f"{cell}_{depth}"
        if config.model.bidirectional:
            layer = f"bidirectional_{layer}"
            if fused:
                # tensorflow/rnn.py `bidirectional_lstm` always raises; jax and torch fuse both directions,
                # unless a cell's dropout keeps Bidirectional from trying (layers/rnn/bidirectional.py).
                apart = backend == "tensorflow" or config.model.recurrent_input_dropout > 0
                reason += "; each direction is its own cuDNN call" if apart else "; both directions in one call"
        if fused and backend in _SILENT_FALLBACKS:
            reason += f"; {_SILENT_FALLBACKS[backend]}"
        choices.append(KernelChoice(layer, kernel, fused, reason))
    return choices


def forfeited(config: Config, backend: str) -> list[str]:
    """One line per recurrent layer that, on a GPU, misses a fused kernel its cell could get.

    That is: the same cell would run fused with Keras's default settings on this backend, or with
    the default settings on another backend. SimpleRNN has no fused kernel anywhere, so it never warns.
    """
    warnings = []
    settings = _settings(config)
    for choice in plan(config, backend, gpu=True):
        if choice.fused:
            continue
        remedy = _remedy(backend, config.model.cell, settings, config.data.padding)
        if remedy:
            warnings.append(f"{choice.layer}: {choice.reason}; {remedy}")
    return warnings


def _remedy(backend: str, cell: str, settings: dict[str, Any], padding: str) -> Optional[str]:
    """What would run `cell` on cuDNN on a GPU: the padding that keeps it with a mask, no mask, or
    Keras's default settings, here or on another backend; None when no backend fuses the cell."""
    name = _CELL_NAMES[cell]
    if settings["mask_zero"]:
        if padding == "pre" and _fused(backend, cell, settings, "post"):
            return f"with data.padding: post the {backend} backend runs {name} on cuDNN, mask included"
        remedies = []
        if _fused(backend, cell, {**settings, "mask_zero": False}, padding):
            remedies.append(f"without model.mask_padding the {backend} backend runs {name} on cuDNN")
        masked_elsewhere = [other for other in BACKENDS if other != backend and _fused(other, cell, settings, "post")]
        if masked_elsewhere:
            remedies.append(
                f"with the mask, the {_backends_run(masked_elsewhere)} {name} on cuDNN over data.padding: post"
            )
        if remedies:
            return "; ".join(remedies)
    if _fused(backend, cell, KERAS_DEFAULTS, padding):
        return f"with Keras's default settings the {backend} backend runs {name} on cuDNN"
    others = [other for other in BACKENDS if _fused(other, cell, KERAS_DEFAULTS, padding)]
    if not others:
        return None
    return f"the {_backends_run(others)} {name} on cuDNN"


def _backends_run(backends: list[str]) -> str:
    """'tensorflow backend runs' or 'tensorflow and torch backends run'."""
    plural = len(backends) > 1
    return f"{' and '.join(backends)} backend{'s' if plural else ''} run{'' if plural else 's'}"


def _fused(backend: str, cell: str, settings: dict[str, Any], padding: str) -> bool:
    return _choose(backend, cell, True, settings, padding)[1]


def _settings(config: Config) -> dict[str, Any]:
    settings = {key: getattr(config.model, key, default) for key, default in KERAS_DEFAULTS.items()}
    # The Embedding's mask_zero is model.mask_padding in rnnbench's config.
    settings["mask_zero"] = settings["mask_zero"] or config.model.mask_padding
    return settings


def _unsupported_setting(cell: str, settings: dict[str, Any]) -> Optional[str]:
    """The first setting that fails cudnn_ok's argument checks (the same on all three backends)."""
    expected = {"activation": "tanh", "recurrent_activation": "sigmoid", "unroll": False, "use_bias": True}
    if cell == "gru":
        expected["reset_after"] = True
    for key, value in expected.items():
        if settings[key] != value:
            return f"{key}={settings[key]!r}"
    return None


def _first(*checks: tuple[bool, str]) -> Optional[str]:
    """The label of the first check that fails, or None."""
    return next((label for failed, label in checks if failed), None)


def _choose(backend: str, cell: str, gpu: bool, settings: dict[str, Any], padding: str) -> tuple[str, bool, str]:
    """(kernel, fused, reason) for one recurrent layer, following the Keras source cited above."""
    name = _CELL_NAMES[cell]
    loop = UNROLLED_LOOP if settings["unroll"] else f"the generic {_GENERIC_LOOPS[backend]} step loop"
    if cell == "simple_rnn":
        return GENERIC, False, f"Keras has no fused SimpleRNN kernel on any backend, so it runs {loop}"
    # LSTM.inner_loop / GRU.inner_loop never call the backend's kernel with these two settings.
    if settings["use_cudnn"] is False:
        return GENERIC, False, f"use_cudnn=False makes Keras skip the backend's {name} kernel and run {loop}"
    if settings["recurrent_dropout"] > 0:
        return (
            GENERIC,
            False,
            f"recurrent_dropout={settings['recurrent_dropout']!r} makes Keras skip the backend's {name} kernel and run {loop}",
        )
    masked = settings["mask_zero"]
    unsupported = _unsupported_setting(cell, settings)

    if backend == "tensorflow":
        if unsupported:
            return GENERIC, False, f"{unsupported} rules out cuDNN, so TensorFlow runs {loop}"
        if not gpu:
            return GENERIC, False, f"TensorFlow runs {name} on cuDNN only on a GPU, so on the CPU it runs {loop}"
        if masked and padding == "pre":
            return (
                MASK_ERROR,
                False,
                (
                    "TensorFlow picks cuDNN, which accepts a padding mask only over post-padded sequences, "
                    "so training fails with data.padding='pre' (set data.padding: post)"
                ),
            )
        if masked:
            return (
                CUDNN,
                True,
                (
                    f"TensorFlow runs {name} on cuDNN when a GPU is visible; it accepts the padding mask because "
                    "data.padding is 'post' (a text with no tokens at all would still fail its check)"
                ),
            )
        return CUDNN, True, f"TensorFlow runs {name} on cuDNN when a GPU is visible"

    if backend == "jax":
        if cell == "gru":
            # jax/rnn.py `gru` checks these three; its scan takes any activation and a missing bias.
            blocker = _first(
                (not settings["reset_after"], "reset_after=False"),
                (settings["unroll"], "unroll=True"),
                (masked, "a padding mask"),
            )
            if blocker:
                return GENERIC, False, f"{blocker} rules out the JAX backend's own GRU scan, so it runs {loop}"
            return (
                JAX_GRU_SCAN,
                False,
                (
                    "the JAX backend has no fused GRU kernel (jax.experimental.rnn has only an LSTM), "
                    "so it runs its own lax.scan with the input projections precomputed"
                ),
            )
        if masked:
            return (
                GENERIC,
                False,
                f"a padding mask rules out the JAX backend's fused LSTM on any padding, so it runs {loop}",
            )
        if unsupported:
            return GENERIC, False, f"{unsupported} rules out cuDNN, so the JAX backend runs {loop}"
        if not gpu:
            return GENERIC, False, f"the JAX backend runs LSTM on cuDNN only on a GPU, so on the CPU it runs {loop}"
        return CUDNN, True, "the JAX backend runs LSTM through jax.experimental.rnn.lstm, which lowers to cuDNN"

    # The torch backend.
    # torch/rnn.py `lstm`/`gru` raise NotImplementedError for these before choosing cuDNN or their own loop.
    blocker = _first((masked, "a padding mask"), (cell == "gru" and not settings["reset_after"], "reset_after=False"))
    if blocker:
        return GENERIC, False, f"{blocker} rules out the torch backend's {name} kernels, so it runs {loop}"
    own_loop = _TORCH_OWN_LOOP
    if unsupported:
        return TORCH_LOOP, False, f"{unsupported} rules out cuDNN, so the torch backend runs {own_loop}"
    if not gpu:
        return (
            TORCH_LOOP,
            False,
            (
                f"the torch backend calls torch._VF.{cell} (the op behind torch.nn.{name}) only on CUDA, "
                f"so on the CPU it runs {own_loop}"
            ),
        )
    return (
        CUDNN,
        True,
        f"the torch backend runs {name} through torch._VF.{cell} (the op behind torch.nn.{name}), which uses cuDNN on CUDA",
    )
