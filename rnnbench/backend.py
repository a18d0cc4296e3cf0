"""The Keras backend: chosen before Keras is imported, and described for the run record."""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import importlib.util
import os
import platform
import sys
from typing import Iterator

from rnnbench.errors import InputError

# The module each backend needs, and the distribution whose version is recorded.
_BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow"), "jax": ("jax", "jax"), "torch": ("torch", "torch")}


# Why this process trains on the backend it does (a run record's "backend_choice"): exported by
# `select_backend` beside KERAS_BACKEND, so that the worker processes a command starts, which
# rebuild their config from its resolved values, record the reason their parent chose it for.
CHOICE_VARIABLE = "RNNBENCH_BACKEND_CHOICE"
# The reason of a backend named in the config, by `backend:`, `--set backend=` or `--backend`.
SET_IN_THE_CONFIG = "set in the config"


class BackendError(InputError):
    """A backend that can't be used here, described in one line."""


def nvidia_gpu_visible() -> bool:
    """Whether this process would see an NVIDIA GPU, read from the driver's files: importing a
    framework to ask would cost seconds. CUDA_VISIBLE_DEVICES="" or "-1" hides every GPU, as CUDA
    reads it (an invalid first index ends the list)."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.split(",")[0].strip() in ("", "-1"):
        return False
    try:
        if os.listdir("/proc/driver/nvidia/gpus"):
            return True
    except OSError:
        pass
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def installed(name: str) -> bool:
    """Whether the backend `name`'s package can be imported here; it imports nothing."""
    return importlib.util.find_spec(_BACKEND_PACKAGES[name][0]) is not None


# Set while a command whose runs each take a share of a GPU (--gpus-per-run) reads its config, so
# that `auto` chooses for the device the runs will train on, which a cluster's driver may lack.
_runs_take_a_gpu = False


@contextlib.contextmanager
def runs_take_a_gpu(taken: bool) -> Iterator[None]:
    """Configs read in the block choose `auto` for a GPU if `taken` (--gpus-per-run > 0)."""
    global _runs_take_a_gpu
    before, _runs_take_a_gpu = _runs_take_a_gpu, taken
    try:
        yield
    finally:
        _runs_take_a_gpu = before


def auto_choice() -> tuple[str, str]:
    """What `backend: auto` means here, and why, from measurement (docs/performance.md): on an
    NVIDIA H200 2-epoch runs of the lecture's LSTM and GRU took 3.6x and 5.3x less time on
    Keras-torch than on Keras-JAX, whose first epoch compiles for seconds (compiled, JAX ran the
    GRU faster; runs of 5 or more epochs were not measured);
    on this project's CPU JAX ran 2.6-2.9x TensorFlow and torch slowest. $KERAS_BACKEND, when
    set, wins, as in Keras itself."""
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen in _BACKEND_PACKAGES:
        return chosen, f"auto: KERAS_BACKEND={chosen} is set"
    gpu = nvidia_gpu_visible()
    if gpu and installed("torch"):
        return (
            "torch",
            "auto: an NVIDIA GPU is visible and torch is installed; Keras-torch trained whole runs fastest on a GPU (docs/performance.md)",
        )
    if _runs_take_a_gpu and installed("torch"):
        return (
            "torch",
            "auto: each run takes a share of a GPU (--gpus-per-run) and torch is installed; Keras-torch trained whole runs fastest on a GPU (docs/performance.md)",
        )
    if installed("jax"):
        if gpu:
            return (
                "jax",
                "auto: an NVIDIA GPU is visible but torch is not installed; JAX is, and Keras-JAX was second on GPU (docs/performance.md)",
            )
        return (
            "jax",
            "auto: no NVIDIA GPU is visible and JAX is installed; Keras-JAX was fastest on the CPU (docs/performance.md)",
        )
    device = (
        "an NVIDIA GPU is visible but neither torch nor JAX is installed"
        if gpu
        else "no NVIDIA GPU is visible and JAX is not installed"
    )
    return "tensorflow", f"auto: {device}, so TensorFlow"


def select_backend(name: str, choice: str | None = None) -> None:
    """Make Keras use `name`; must run before the first `import keras` in this process.

    `choice` says why `name` was chosen (Config.backend_choice); worker processes inherit it.
    """
    module, _ = _BACKEND_PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise BackendError(
            f"backend {name!r} is not installed here (pip install {module}), or choose another with --backend"
        )
    if choice is not None:
        os.environ[CHOICE_VARIABLE] = choice
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise BackendError(f"Keras was already imported with the {current!r} backend; cannot switch to {name!r}")
        return
    os.environ["KERAS_BACKEND"] = name
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) says nothing a user can act
    # on; Keras imports TensorFlow on the other backends too where it is installed (loading a
    # saved model reads the file through tf.io), so it is silenced whatever the backend.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def choice_reason(config) -> str:
    """Why `config` trains on its backend, for the run record.

    A worker's config was rebuilt from resolved values, which name the backend whatever chose it,
    so the reason its command exported when it chose this backend comes first.
    """
    exported = os.environ.get(CHOICE_VARIABLE)
    if exported and os.environ.get("KERAS_BACKEND") == config.backend:
        return exported
    return config.backend_choice


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed`, without importing TensorFlow when another backend runs.

    Keras seeds TensorFlow whenever it is installed, for tf.data pipelines, which rnnbench does
    not use on the JAX and torch backends; importing it there only costs seconds and memory per
    run. Blocking the import while seeding makes Keras treat TensorFlow as absent in this process.
    """
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # `import tensorflow` now raises ImportError.
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    names = ["rnnbench", "keras", "numpy"] + [package for _, package in _BACKEND_PACKAGES.values()]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def device_description() -> str:
    """The accelerator Keras trains on (its name), or the CPU's model; Keras uses a visible GPU by itself."""
    import keras

    backend = keras.backend.backend()
    gpu = None
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_physical_devices("GPU")
        if devices:
            gpu = tf.config.experimental.get_device_details(devices[0]).get("device_name", devices[0].name)
    elif backend == "jax":
        import jax

        accelerators = [device for device in jax.devices() if device.platform != "cpu"]
        if accelerators:
            gpu = accelerators[0].device_kind
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return f"GPU: {gpu}" if gpu else f"CPU: {cpu_name()}"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
