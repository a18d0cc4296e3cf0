"""The Keras backend: chosen before Keras is imported, and described for the run record."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys

from rnnbench.errors import InputError

# The module each backend needs, and the distribution whose version is recorded.
_BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow"), "jax": ("jax", "jax"), "torch": ("torch", "torch")}


class BackendError(InputError):
    """A backend that can't be used here, described in one line."""


def select_backend(name: str) -> None:
    """Make Keras use `name`; must run before the first `import keras` in this process."""
    module, _ = _BACKEND_PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise BackendError(f"backend {name!r} is not installed here (pip install {module}), or choose another with --backend")
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
