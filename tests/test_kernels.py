import subprocess
import sys
from pathlib import Path

import numpy as np
import pydantic
import pytest

# The spy on Keras' kernel functions, shared with the GPU check (scripts/gpu_kernels.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import gpu_kernels  # noqa: E402

from rnnbench.config import Config, DataConfig, ModelConfig, config_from_mapping
from rnnbench.kernels import (
    CUDNN,
    GENERIC,
    JAX_GRU_SCAN,
    MASK_ERROR,
    TORCH_LOOP,
    KernelChoice,
    forfeited,
    plan,
)


def model(cell: str, *overrides: str) -> Config:
    return config_from_mapping({"model": {"cell": cell}}, overrides=overrides)


def future_model(cell: str, padding: str = "pre", **settings) -> Config:
    """A config whose model section has layer settings model.py may expose one day (e.g. recurrent_dropout)."""
    fields = {key: (type(value), value) for key, value in settings.items()}
    section = pydantic.create_model("FutureModelConfig", __base__=ModelConfig, **fields)
    return Config(model=section(cell=cell), data=DataConfig(padding=padding))


@pytest.mark.parametrize(
    "backend, cell, gpu, kernel, fused",
    [
        ("tensorflow", "simple_rnn", False, GENERIC, False),
        ("tensorflow", "simple_rnn", True, GENERIC, False),
        ("tensorflow", "lstm", False, GENERIC, False),
        ("tensorflow", "lstm", True, CUDNN, True),
        ("tensorflow", "gru", False, GENERIC, False),
        ("tensorflow", "gru", True, CUDNN, True),
        ("jax", "simple_rnn", False, GENERIC, False),
        ("jax", "simple_rnn", True, GENERIC, False),
        ("jax", "lstm", False, GENERIC, False),
        ("jax", "lstm", True, CUDNN, True),
        ("jax", "gru", False, JAX_GRU_SCAN, False),
        ("jax", "gru", True, JAX_GRU_SCAN, False),
        ("torch", "simple_rnn", False, GENERIC, False),
        ("torch", "simple_rnn", True, GENERIC, False),
        ("torch", "lstm", False, TORCH_LOOP, False),
        ("torch", "lstm", True, CUDNN, True),
        ("torch", "gru", False, TORCH_LOOP, False),
        ("torch", "gru", True, CUDNN, True),
    ],
)
def test_kernel_per_backend_cell_and_device(backend, cell, gpu, kernel, fused):
    [choice] = plan(model(cell), backend, gpu)
    assert (choice.layer, choice.kernel, choice.fused) == (f"{cell}_1", kernel, fused)


def test_reasons_name_the_cause():
    assert plan(model("gru"), "jax", gpu=True) == [
        KernelChoice(
            "gru_1",
            JAX_GRU_SCAN,
            False,
            "the JAX backend has no fused GRU kernel (jax.experimental.rnn has only an LSTM), "
            "so it runs its own lax.scan with the input projections precomputed",
        )
    ]
    assert plan(model("lstm"), "torch", gpu=False)[0].reason == (
        "the torch backend calls torch._VF.lstm (the op behind torch.nn.LSTM) only on CUDA, "
        "so on the CPU it runs its own Python loop over time steps with the input projections precomputed"
    )
    assert plan(model("gru"), "tensorflow", gpu=False)[0].reason == (
        "TensorFlow runs GRU on cuDNN only on a GPU, so on the CPU it runs the generic tf.while_loop step loop"
    )
    assert plan(model("simple_rnn"), "torch", gpu=True)[0].reason == (
        "Keras has no fused SimpleRNN kernel on any backend, so it runs the generic Python step loop"
    )


def test_stacked_and_bidirectional_layers_are_named_like_the_model():
    assert plan(model("lstm", "model.layers=2", "model.bidirectional=true"), "tensorflow", gpu=True) == [
        KernelChoice(
            f"bidirectional_lstm_{depth}",
            CUDNN,
            True,
            "TensorFlow runs LSTM on cuDNN when a GPU is visible; each direction is its own cuDNN call",
        )
        for depth in (1, 2)
    ]
    assert [choice.reason for choice in plan(model("gru", "model.bidirectional=true"), "torch", gpu=True)] == [
        "the torch backend runs GRU through torch._VF.gru (the op behind torch.nn.GRU), which uses cuDNN on CUDA; both directions in one call; "
        "if the cuDNN call fails, Keras silently runs its own Python loop over time steps with the input projections precomputed instead"
    ]


@pytest.mark.parametrize("cell", ["ann", "embedding", "cnn"])
def test_cells_without_a_recurrent_layer_have_no_plan(cell):
    assert plan(model(cell), "jax", gpu=True) == []
    assert forfeited(model(cell), "jax") == []


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=r"^unknown backend 'numpy' \(allowed: tensorflow, jax, torch\)$"):
        plan(model("gru"), "numpy", gpu=False)


def test_forfeited_names_the_backends_that_fuse_the_cell():
    assert forfeited(model("gru", "model.layers=2"), "jax") == [
        f"gru_{depth}: the JAX backend has no fused GRU kernel (jax.experimental.rnn has only an LSTM), so it runs its own "
        "lax.scan with the input projections precomputed; the tensorflow and torch backends run GRU on cuDNN"
        for depth in (1, 2)
    ]
    for backend in ("tensorflow", "jax", "torch"):
        # SimpleRNN has no fused kernel anywhere, so there is nothing to forfeit.
        assert forfeited(model("simple_rnn"), backend) == []
        assert forfeited(model("lstm"), backend) == []
    assert forfeited(model("gru"), "tensorflow") == forfeited(model("gru"), "torch") == []


@pytest.mark.parametrize(
    "backend, cell, settings, kernel, reason",
    [
        (
            "tensorflow",
            "lstm",
            {"recurrent_dropout": 0.2},
            GENERIC,
            "recurrent_dropout=0.2 makes Keras skip the backend's LSTM kernel and run the generic tf.while_loop step loop",
        ),
        (
            "tensorflow",
            "gru",
            {"reset_after": False},
            GENERIC,
            "reset_after=False rules out cuDNN, so TensorFlow runs the generic tf.while_loop step loop",
        ),
        (
            "jax",
            "lstm",
            {"activation": "relu"},
            GENERIC,
            "activation='relu' rules out cuDNN, so the JAX backend runs the generic lax.scan step loop",
        ),
        (
            "jax",
            "gru",
            {"unroll": True},
            GENERIC,
            "unroll=True rules out the JAX backend's own GRU scan, so it runs the generic step loop unrolled in Python (the cell "
            "repeated once per time step)",
        ),
        (
            "tensorflow",
            "lstm",
            {"unroll": True},
            GENERIC,
            "unroll=True rules out cuDNN, so TensorFlow runs the generic step loop unrolled in Python (the cell repeated once per time step)",
        ),
        (
            "jax",
            "lstm",
            {"unroll": True},
            GENERIC,
            "unroll=True rules out cuDNN, so the JAX backend runs the generic step loop unrolled in Python (the cell repeated once per time step)",
        ),
        (
            "torch",
            "lstm",
            {"unroll": True},
            TORCH_LOOP,
            "unroll=True rules out cuDNN, so the torch backend runs its own Python loop over time steps with the input projections precomputed",
        ),
        (
            "jax",
            "gru",
            {"activation": "relu"},
            JAX_GRU_SCAN,
            "the JAX backend has no fused GRU kernel (jax.experimental.rnn has only an LSTM), "
            "so it runs its own lax.scan with the input projections precomputed",
        ),
        (
            "torch",
            "lstm",
            {"use_bias": False},
            TORCH_LOOP,
            "use_bias=False rules out cuDNN, so the torch backend runs its own Python loop over time steps with the input projections precomputed",
        ),
        (
            "torch",
            "gru",
            {"reset_after": False},
            GENERIC,
            "reset_after=False rules out the torch backend's GRU kernels, so it runs the generic Python step loop",
        ),
        (
            "torch",
            "lstm",
            {"mask_zero": True},
            GENERIC,
            "a padding mask rules out the torch backend's LSTM kernels, so it runs the generic Python step loop",
        ),
        (
            "tensorflow",
            "lstm",
            {"mask_zero": True},
            MASK_ERROR,
            "TensorFlow picks cuDNN, which accepts a padding mask only over post-padded sequences, "
            "so training fails with data.padding='pre' (set data.padding: post)",
        ),
        (
            "tensorflow",
            "lstm",
            {"use_cudnn": False},
            GENERIC,
            "use_cudnn=False makes Keras skip the backend's LSTM kernel and run the generic tf.while_loop step loop",
        ),
    ],
)
def test_layer_settings_that_rule_out_the_fused_kernel_on_a_gpu(backend, cell, settings, kernel, reason):
    assert plan(future_model(cell, **settings), backend, gpu=True) == [KernelChoice(f"{cell}_1", kernel, False, reason)]


def test_a_mask_over_post_padded_sequences_keeps_cudnn_on_tensorflow():
    assert plan(future_model("gru", padding="post", mask_zero=True), "tensorflow", gpu=True)[0].kernel == CUDNN


def test_forfeited_by_a_setting_points_at_the_default():
    assert forfeited(future_model("lstm", recurrent_dropout=0.2), "torch") == [
        "lstm_1: recurrent_dropout=0.2 makes Keras skip the backend's LSTM kernel and run the generic Python step loop; "
        "with Keras's default settings the torch backend runs LSTM on cuDNN"
    ]
    assert forfeited(future_model("gru", recurrent_dropout=0.2), "jax") == [
        "gru_1: recurrent_dropout=0.2 makes Keras skip the backend's GRU kernel and run the generic lax.scan step loop; "
        "the tensorflow and torch backends run GRU on cuDNN"
    ]


def test_importing_kernels_does_not_import_keras():
    probe = "import sys, rnnbench.kernels; print(sorted(n for n in ('keras', 'tensorflow', 'jax', 'torch') if n in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_a_fused_kernel_that_fails_falls_back_without_a_word_on_jax_and_torch():
    assert plan(model("lstm"), "jax", gpu=True)[0].reason == (
        "the JAX backend runs LSTM through jax.experimental.rnn.lstm, which lowers to cuDNN; "
        "if the cuDNN call fails, Keras silently runs the generic lax.scan step loop instead"
    )
    assert plan(model("gru"), "torch", gpu=True)[0].reason == (
        "the torch backend runs GRU through torch._VF.gru (the op behind torch.nn.GRU), which uses cuDNN on CUDA; "
        "if the cuDNN call fails, Keras silently runs its own Python loop over time steps with the input projections precomputed instead"
    )
    # TensorFlow turns only a missing cuDNN op into its generic loop.
    assert plan(model("gru"), "tensorflow", gpu=True)[0].reason == "TensorFlow runs GRU on cuDNN when a GPU is visible"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_input_dropout_keeps_keras_from_fusing_the_two_directions(backend):
    # Bidirectional.call tries bidirectional_lstm only when neither cell has dropout.
    [choice] = plan(model("lstm", "model.bidirectional=true", "model.recurrent_input_dropout=0.25"), backend, gpu=True)
    assert (choice.kernel, "; each direction is its own cuDNN call; " in choice.reason) == (CUDNN, True)
    [choice] = plan(model("lstm", "model.bidirectional=true"), backend, gpu=True)
    assert "; both directions in one call; " in choice.reason


# How the GPU check (scripts/gpu_kernels.py) reads the calls it spied on, including the GPU paths
# that can't run here.
@pytest.mark.parametrize(
    "backend, calls, kernel",
    [
        ("torch", ["_cudnn_lstm returned", "lstm returned"], CUDNN),
        # torch/rnn.py swallows the failing cuDNN call and runs its own loop.
        ("torch", ["_cudnn_lstm raised RuntimeError", "_fallback_lstm returned", "lstm returned"], TORCH_LOOP),
        # torch/rnn.py's bidirectional_gru returns only after one cuDNN call over both directions
        # (as the GPU check found: the spy sees no call inside it).
        ("torch", ["bidirectional_gru returned"], CUDNN),
        ("jax", ["jax.experimental.rnn.lstm returned", "lstm returned"], CUDNN),
        (
            "jax",
            ["jax.experimental.rnn.lstm raised ValueError", "lstm raised NotImplementedError", "rnn returned"],
            GENERIC,
        ),
        ("jax", ["gru returned"], JAX_GRU_SCAN),
        ("tensorflow", ["_cudnn_gru returned", "gru returned"], CUDNN),
        ("tensorflow", ["lstm raised NotImplementedError", "rnn(unroll=True) returned"], GENERIC),
        (
            "torch",
            ["_cudnn_lstm returned", "_fallback_lstm returned"],
            "mixed: ['_cudnn_lstm returned', '_fallback_lstm returned']",
        ),
    ],
)
def test_the_gpu_check_reads_which_kernel_ran_from_the_calls(backend, calls, kernel):
    assert gpu_kernels.observed_kernel(backend, calls) == kernel


@pytest.mark.slow
def test_the_gpu_check_passes_for_this_cpu_on_every_setting():
    import keras

    backend = keras.backend.backend()
    if gpu_kernels.gpu_visible(backend):
        pytest.skip("checks the CPU path; a GPU is visible")
    for setting in ("mask, pre-padded", "unroll", "bidirectional, input dropout"):
        problems, found = gpu_kernels.disagreements(backend, "lstm", setting, gpu=False)
        assert problems == [], found


# What Keras calls, on the CPU, when rnnbench's one-layer model runs: the backend's fused-kernel entry
# point (`lstm`/`gru`), which returns or raises NotImplementedError, the generic loop (`rnn`), and on
# torch the two private paths behind `lstm`/`gru`. Each entry is (kernel plan() names, calls).
CPU_CALLS = {
    ("tensorflow", "simple_rnn"): (GENERIC, ["rnn returned"]),
    ("tensorflow", "lstm"): (GENERIC, ["lstm raised NotImplementedError", "rnn returned"]),
    ("tensorflow", "gru"): (GENERIC, ["gru raised NotImplementedError", "rnn returned"]),
    ("jax", "simple_rnn"): (GENERIC, ["rnn returned"]),
    ("jax", "lstm"): (GENERIC, ["lstm raised NotImplementedError", "rnn returned"]),
    ("jax", "gru"): (JAX_GRU_SCAN, ["gru returned"]),
    ("torch", "simple_rnn"): (GENERIC, ["rnn returned"]),
    ("torch", "lstm"): (TORCH_LOOP, ["_fallback_lstm returned", "lstm returned"]),
    ("torch", "gru"): (TORCH_LOOP, ["_fallback_gru returned", "gru returned"]),
}


def trace_calls(cell: str, *overrides: str) -> list[str]:
    """Run rnnbench's one-layer `cell` model once on the current Keras backend; list the kernel functions called."""
    config = model(cell, "model.units=4", "model.embedding_dim=3", "data.maxlen=5", *overrides)
    return gpu_kernels.spy_calls(config, np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype="int32"))


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_plan_matches_what_keras_runs_on_this_cpu(cell):
    import keras

    backend = keras.backend.backend()
    if gpu_kernels.gpu_visible(backend):
        pytest.skip("checks the CPU path; a GPU is visible")
    kernel, calls = CPU_CALLS[(backend, cell)]
    assert plan(model(cell), backend, gpu=False)[0].kernel == kernel
    assert trace_calls(cell) == calls


def test_plan_names_the_layers_of_the_built_model():
    from rnnbench.model import build_model

    config = model("gru", "model.layers=2", "model.bidirectional=true", "data.maxlen=5")
    names = [layer.name for layer in build_model(config, 20, 2).layers]
    assert [choice.layer for choice in plan(config, "torch", gpu=True)] == names[1:3]


# The model options of config.py, through the config keys themselves.

MASKED_GPU_KERNELS = {
    # (backend, cell, data.padding): the kernel a masked layer runs on a GPU.
    ("tensorflow", "lstm", "post"): CUDNN,
    ("tensorflow", "gru", "post"): CUDNN,
    ("tensorflow", "lstm", "pre"): MASK_ERROR,
    ("tensorflow", "gru", "pre"): MASK_ERROR,
    **{
        (backend, cell, padding): GENERIC
        for backend in ("jax", "torch")
        for cell in ("lstm", "gru")
        for padding in ("pre", "post")
    },
}


@pytest.mark.parametrize("backend, cell, padding", sorted(MASKED_GPU_KERNELS))
def test_mask_padding_on_a_gpu(backend, cell, padding):
    config = model(cell, "model.mask_padding=true", f"data.padding={padding}", "model.layers=2")
    kernel = MASKED_GPU_KERNELS[backend, cell, padding]
    assert [(choice.kernel, choice.fused) for choice in plan(config, backend, gpu=True)] == [
        (kernel, kernel == CUDNN)
    ] * 2


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("padding", ["pre", "post"])
def test_mask_padding_on_the_cpu_takes_the_generic_loop(backend, cell, padding):
    [choice] = plan(model(cell, "model.mask_padding=true", f"data.padding={padding}"), backend, gpu=False)
    assert (choice.kernel, choice.fused) == (GENERIC, False)


def test_mask_padding_reasons():
    assert plan(model("lstm", "model.mask_padding=true", "data.padding=post"), "tensorflow", gpu=True)[0].reason == (
        "TensorFlow runs LSTM on cuDNN when a GPU is visible; it accepts the padding mask because data.padding is 'post' "
        "(a text with no tokens at all would still fail its check)"
    )
    assert plan(model("lstm", "model.mask_padding=true", "data.padding=post"), "jax", gpu=True)[0].reason == (
        "a padding mask rules out the JAX backend's fused LSTM on any padding, so it runs the generic lax.scan step loop"
    )
    assert plan(model("gru", "model.mask_padding=true"), "jax", gpu=False)[0].reason == (
        "a padding mask rules out the JAX backend's own GRU scan, so it runs the generic lax.scan step loop"
    )


def test_forfeited_by_a_mask_names_the_padding_or_backend_that_keeps_cudnn():
    assert forfeited(model("gru", "model.mask_padding=true"), "tensorflow") == [
        "gru_1: TensorFlow picks cuDNN, which accepts a padding mask only over post-padded sequences, so training fails with "
        "data.padding='pre' (set data.padding: post); with data.padding: post the tensorflow backend runs GRU on cuDNN, mask included"
    ]
    assert forfeited(model("gru", "model.mask_padding=true", "data.padding=post"), "tensorflow") == []
    for padding in ("pre", "post"):
        assert forfeited(model("lstm", "model.mask_padding=true", f"data.padding={padding}"), "torch") == [
            "lstm_1: a padding mask rules out the torch backend's LSTM kernels, so it runs the generic Python step loop; "
            "without model.mask_padding the torch backend runs LSTM on cuDNN; "
            "with the mask, the tensorflow backend runs LSTM on cuDNN over data.padding: post"
        ]
    assert forfeited(model("lstm", "model.mask_padding=true"), "jax") == [
        "lstm_1: a padding mask rules out the JAX backend's fused LSTM on any padding, so it runs the generic lax.scan step loop; "
        "without model.mask_padding the jax backend runs LSTM on cuDNN; "
        "with the mask, the tensorflow backend runs LSTM on cuDNN over data.padding: post"
    ]
    # JAX has no fused GRU with or without the mask.
    assert forfeited(model("gru", "model.mask_padding=true"), "jax") == [
        "gru_1: a padding mask rules out the JAX backend's own GRU scan, so it runs the generic lax.scan step loop; "
        "with the mask, the tensorflow backend runs GRU on cuDNN over data.padding: post"
    ]
    assert forfeited(model("simple_rnn", "model.mask_padding=true"), "tensorflow") == []


@pytest.mark.parametrize("backend, loop", [("tensorflow", "tf.while_loop"), ("jax", "lax.scan"), ("torch", "Python")])
@pytest.mark.parametrize("gpu", [False, True])
def test_recurrent_dropout_takes_the_generic_loop_everywhere(backend, loop, gpu):
    for cell, name in (("lstm", "LSTM"), ("gru", "GRU")):
        config = model(cell, "model.recurrent_dropout=0.25", "model.mask_padding=true", "data.padding=post")
        assert plan(config, backend, gpu) == [
            KernelChoice(
                f"{cell}_1",
                GENERIC,
                False,
                f"recurrent_dropout=0.25 makes Keras skip the backend's {name} kernel and run the generic {loop} step loop",
            )
        ]
    assert forfeited(model("lstm", "model.recurrent_dropout=0.25"), backend) == [
        f"lstm_1: recurrent_dropout=0.25 makes Keras skip the backend's LSTM kernel and run the generic {loop} step loop; "
        f"with Keras's default settings the {backend} backend runs LSTM on cuDNN"
    ]


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("gpu", [False, True])
def test_input_dropout_pooling_and_embedding_dropout_keep_the_kernel(backend, cell, gpu):
    plain = plan(model(cell), backend, gpu)
    for options in (("model.pooling=max_mean", "model.embedding_dropout=0.3"), ("model.recurrent_input_dropout=0.25",)):
        chosen = plan(model(cell, *options), backend, gpu)
        assert [(choice.kernel, choice.fused) for choice in chosen] == [
            (choice.kernel, choice.fused) for choice in plain
        ]
    assert forfeited(model(cell, "model.pooling=max", "model.embedding_dropout=0.3"), backend) == forfeited(
        model(cell), backend
    )
    assert len(forfeited(model(cell, "model.recurrent_input_dropout=0.25"), backend)) == len(
        forfeited(model(cell), backend)
    )


def test_input_dropout_says_it_keeps_the_kernel():
    assert plan(model("lstm", "model.recurrent_input_dropout=0.25"), "torch", gpu=True)[0].reason == (
        "the torch backend runs LSTM through torch._VF.lstm (the op behind torch.nn.LSTM), which uses cuDNN on CUDA; "
        "model.recurrent_input_dropout=0.25 keeps it (Keras drops the same input features at every step before calling the kernel); "
        "if the cuDNN call fails, Keras silently runs its own Python loop over time steps with the input projections precomputed instead"
    )
    # The generic loop applies it in the cell, which says nothing new.
    assert (
        "recurrent_input_dropout"
        not in plan(model("lstm", "model.recurrent_input_dropout=0.25"), "tensorflow", gpu=False)[0].reason
    )


# On the CPU, with a padding mask, every backend's `lstm`/`gru` refuses and Keras steps the generic loop;
# with recurrent_dropout Keras never asks the backend's kernel at all.
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "overrides, calls",
    [
        (("model.mask_padding=true",), ["{cell} raised NotImplementedError", "rnn returned"]),
        (
            ("model.mask_padding=true", "model.pooling=max_mean", "data.padding=post"),
            ["{cell} raised NotImplementedError", "rnn returned"],
        ),
        (("model.recurrent_dropout=0.25",), ["rnn returned"]),
    ],
)
def test_plan_matches_what_keras_runs_on_this_cpu_with_the_options(cell, overrides, calls):
    import keras

    backend = keras.backend.backend()
    if gpu_kernels.gpu_visible(backend):
        pytest.skip("checks the CPU path; a GPU is visible")
    assert plan(model(cell, *overrides), backend, gpu=False)[0].kernel == GENERIC
    assert trace_calls(cell, *overrides) == [call.format(cell=cell) for call in calls]
