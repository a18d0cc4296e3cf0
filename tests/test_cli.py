import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnbench import executor, results
from rnnbench.cli import main
from rnnbench.errors import RunInterrupted
from rnnbench.record import RunRecord

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_config(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_cell_fails_with_one_line_and_exit_code_2(tmp_path):
    path = write_config(tmp_path, "model:\n  cell: lstn\n")
    outcome = invoke("run", str(path))
    assert outcome.exit_code == 2
    assert outcome.output == (
        f"Error: {path}: model.cell='lstn' is not one of ann, cnn, embedding, gru, lstm, simple_rnn (did you mean 'lstm'?)\n"
    )


def test_bad_override_fails_before_anything_runs(tmp_path):
    outcome = invoke(
        "run", str(ROOT / "configs" / "gru.yaml"), "--set", "train.epochs=0", "--runs-dir", str(tmp_path / "runs")
    )
    assert outcome.exit_code == 2
    assert (
        outcome.output == "Error: --set train.epochs=0: train.epochs=0 is out of range (allowed: >= 1 and <= 10000)\n"
    )
    assert not (tmp_path / "runs").exists()


def test_missing_data_is_one_line_and_writes_no_run(tmp_path):
    outcome = invoke(
        "run",
        str(ROOT / "configs" / "ann.yaml"),
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    # Missing data is a mistake in the input: exit code 2.
    assert outcome.exit_code == 2
    assert outcome.output.startswith(
        f"[ann] ann, backend tensorflow\nError: IMDB not found in {tmp_path / 'nowhere'} (looked for "
    )
    assert outcome.output.count("\n") == 2
    # The runner may have made the runs folder and its index, to check them, but no run.
    assert results.read_records(tmp_path / "runs", statuses=None) == []
    assert not (tmp_path / "runs").exists() or [path.name for path in (tmp_path / "runs").iterdir()] == ["index.sqlite"]


@pytest.mark.slow
def test_run_then_compare(tiny_data_dir, tmp_path):
    config = write_config(
        tmp_path,
        "model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 2}\n",
        "tiny.yaml",
    )
    runs = str(tmp_path / "runs")
    outcome = invoke("run", str(config), "--set", "train.seed=5", "--data-dir", str(tiny_data_dir), "--runs-dir", runs)
    assert outcome.exit_code == 0, outcome.output
    assert "epoch 2/2: loss " in outcome.output
    assert outcome.output.splitlines()[-1].startswith("[tiny] best val_accuracy ")
    record = results.read_records(Path(runs))[0]
    assert record.command == f"rnnbench run {config} --set=train.seed=5"
    assert record.config["train"]["seed"] == 5
    # The tests set KERAS_BACKEND (conftest.py), which `backend: auto` follows.
    assert (record.backend, record.backend_choice) == ("tensorflow", "auto: KERAS_BACKEND=tensorflow is set")

    table = invoke("compare", "--runs-dir", runs, "--per-run")
    assert table.exit_code == 0
    header, rule, row = table.output.splitlines()
    assert header.split()[:4] == ["name", "dataset", "cell", "layers"]
    assert row.split()[:7] == ["tiny", "imdb", "ann", "-", "-", "-", f"{record.parameters:,}"]
    assert f"{record.result.best_val_accuracy:.4f}" in row

    markdown = invoke("compare", "--runs-dir", runs, "--format", "markdown", "--per-run").output.splitlines()
    assert markdown[0].startswith("| name ") and set(markdown[1]) <= set("|-: ")
    csv_lines = invoke("compare", "--runs-dir", runs, "--format", "csv", "--per-run").output.splitlines()
    assert (
        csv_lines[0]
        == "name,dataset,cell,layers,embedding dim,units,params,best val acc,best epoch,val macro-F1,test acc,val−test,s/epoch,backend,device"
    )
    assert csv_lines[1].startswith("tiny,imdb,ann,-,-,-,")


def fake_record(name: str, cell: str, accuracy: float, seed: int = 1) -> dict:
    return {
        "name": name,
        "data": {"dataset": "imdb"},
        "config": {
            "model": {"cell": cell, "layers": 1, "embedding_dim": 50, "units": 50, "bidirectional": False},
            "train": {"seed": seed},
        },
        "parameters": 516_965,
        "backend": "tensorflow",
        "device": "CPU: test",
        "result": {
            "best_val_accuracy": accuracy,
            "best_epoch": 3,
            "test_accuracy": accuracy - 0.01,
            "mean_epoch_seconds": 12.34,
        },
    }


def test_compare_sorts_by_best_validation_accuracy_and_hides_unfinished(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for run_id, (name, cell, accuracy) in enumerate(
        [("a", "lstm", 0.85), ("b", "gru", 0.87), ("c", "simple_rnn", 0.80)]
    ):
        results.index_run(runs, f"run{run_id}", name, "completed", fake_record(name, cell, accuracy))
    results.index_run(runs, "run9", "d", "running", {**fake_record("d", "gru", 0.0), "result": {}})
    rows = invoke("compare", "--runs-dir", str(runs), "--per-run").output.splitlines()[2:]
    assert [row.split()[0] for row in rows] == ["b", "a", "c"]
    # These records carry no macro-F1, so that column is left out.
    assert rows[0].split()[7:12] == ["0.8700", "3", "0.8600", "+0.0100", "12.3"]
    every = invoke("compare", "--runs-dir", str(runs), "--all").output.splitlines()
    assert "status" in every[0] and len(every) == 6 and "running" in every[-1]


def test_compare_without_runs(tmp_path):
    outcome = invoke("compare", "--runs-dir", str(tmp_path / "empty"))
    assert outcome.exit_code == 0
    assert (
        outcome.output == f"No completed runs in {tmp_path / 'empty'}/ yet; train one with: rnnbench run CONFIG.yaml\n"
    )


@pytest.mark.parametrize(
    "cell, total, recurrent",
    [("simple_rnn", "506,715", "5,050"), ("lstm", "521,865", "20,200"), ("gru", "516,965", "15,300")],
)
def test_summary_of_lecture_configs(cell, total, recurrent):
    outcome = invoke("summary", str(ROOT / "configs" / "lecture" / f"{cell}.yaml"))
    assert outcome.exit_code == 0, outcome.output
    assert f"Total params: {total}" in outcome.output
    assert "vocabulary 10,000 x embedding 50 = 500,000" in outcome.output
    assert "units 50 x (input 50 + recurrent 50 + bias" in outcome.output and f"= {recurrent}" in outcome.output
    assert "input 50 x units 32 + bias 32 = 1,632" in outcome.output
    assert [line.split() for line in outcome.output.splitlines() if line.startswith("total ")] == [["total", total]]
    # The kernel each recurrent layer runs, on the CPU and on a GPU, on the backend in use (TensorFlow in these tests).
    kernels = outcome.output.split("Recurrent kernels on the tensorflow backend:\n", 1)[1].splitlines()
    assert [line.split()[:2] for line in kernels[2:4]] == [[f"{cell}_1", "CPU"], [f"{cell}_1", "GPU"]]
    assert ("cuDNN (fused)" in kernels[3]) == (cell != "simple_rnn")


def test_help_and_compare_never_import_keras(tmp_path):
    probe = (
        "import sys\n"
        "from rnnbench.cli import main\n"
        "for args in (['--help'], ['compare', '--runs-dir', sys.argv[1]], ['run', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(name for name in ('keras', 'tensorflow', 'jax', 'torch') if name in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True)
    assert completed.stdout.splitlines()[-1] == "HEAVY []"


@pytest.mark.slow
def test_seeds_reuse_and_force(tiny_data_dir, tmp_path):
    config = write_config(
        tmp_path,
        "model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 1}\n",
        "seeded.yaml",
    )
    common = ["--data-dir", str(tiny_data_dir), "--runs-dir", str(tmp_path / "runs")]
    first = invoke("run", str(config), "--seeds", "2", *common)
    assert first.exit_code == 0, first.output
    assert "[1/2] seeded, seed 1: training" in first.output and "[2/2] seeded, seed 2: training" in first.output
    assert "running summary: seeded " in first.output and "(n=2)" in first.output
    assert ": 1 config with 2 or more seeds, 0 pairs, 0 tests, Holm; highest mean: seeded " in first.output
    run_dirs = sorted(path.name for path in (tmp_path / "runs").iterdir() if path.is_dir())
    assert len(run_dirs) == 2

    again = invoke("run", str(config), "--seeds", "2", *common)
    assert again.exit_code == 0
    assert (
        again.output.count("already completed in ") == 2
        and "reused, not retrained (--force trains it again)" in again.output
    )
    assert "training" not in again.output
    assert sorted(path.name for path in (tmp_path / "runs").iterdir() if path.is_dir()) == run_dirs

    # A third seed trains only the new one; --force trains everything again.
    third = invoke("run", str(config), "--seeds", "3", *common)
    assert third.output.count("already completed in ") == 2 and "[3/3] seeded, seed 3: training" in third.output
    forced = invoke("run", str(config), "--force", *common)
    assert "already completed" not in forced.output
    records = results.read_records(tmp_path / "runs")
    assert sorted(record.config["train"]["seed"] for record in records) == [1, 1, 2, 3]
    # The forced run of seed 1 replaces the first one in the statistics: n counts seeds, not runs.
    [group] = json.loads(invoke("compare", "--format", "json", *common[2:]).output)["groups"]
    assert (group["n"], group["seeds"]) == (3, [1, 2, 3])
    forced_run = results.read_records(tmp_path / "runs")[-1].run_id
    assert forced_run in group["runs"]
    statuses = sorted(row.split()[-2] for row in invoke("compare", "--all", *common[2:]).output.splitlines()[2:])
    assert statuses == ["completed", "completed", "completed", "replaced"]


def test_a_killed_run_shows_as_incomplete(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    results.index_run(
        runs,
        "run-dead",
        "killed",
        "running",
        {**fake_record("killed", "gru", 0.0), "result": {}, "process": {**results.this_process(), "pid": int(dead)}},
    )
    results.index_run(
        runs,
        "run-alive",
        "alive",
        "running",
        {**fake_record("alive", "gru", 0.0), "result": {}, "process": results.this_process()},
    )
    statuses = {record.name: record.status for record in results.read_records(runs, statuses=None)}
    assert statuses == {"killed": "incomplete", "alive": "running"}
    listing = invoke("compare", "--runs-dir", str(runs), "--all").output
    assert "incomplete" in listing and "running" in listing
    assert invoke("compare", "--runs-dir", str(runs)).output.startswith("No completed runs in ")


@pytest.mark.parametrize(
    "flags, expected", [(["--per-run"], []), (["--all"], []), ([], {"groups": [], "verdict": [], "verdict_lines": []})]
)
def test_compare_as_json_without_runs_is_still_json(tmp_path, flags, expected):
    outcome = CliRunner().invoke(main, ["compare", "--runs-dir", str(tmp_path / "empty"), "--format", "json", *flags])
    assert outcome.exit_code == 0 and outcome.stderr == ""
    assert json.loads(outcome.stdout) == expected


def test_compare_without_runs_says_so_on_stderr(tmp_path):
    outcome = CliRunner().invoke(main, ["compare", "--runs-dir", str(tmp_path / "empty"), "--format", "csv"])
    assert (outcome.exit_code, outcome.stdout) == (0, "")
    assert (
        outcome.stderr == f"No completed runs in {tmp_path / 'empty'}/ yet; train one with: rnnbench run CONFIG.yaml\n"
    )


def interrupting_runner(run_dir: str | None) -> types.ModuleType:
    """A stand-in for rnnbench.executor whose run_all is interrupted by Ctrl-C, as the runner reports it
    (attaching to no cluster, as the real one does without --cluster)."""

    def run_all(*args, **options):
        raise KeyboardInterrupt() if run_dir is None else RunInterrupted(run_dir)

    return types.SimpleNamespace(run_all=run_all, attached=executor.attached)


@pytest.mark.parametrize(
    "run_dir, seeds, expected",
    [
        (
            "runs/20261128-100000-ann-ab12cd",
            [],
            "interrupted; runs/20261128-100000-ann-ab12cd is recorded as interrupted; run the same command"
            " again to continue: it resumes from the last finished epoch",
        ),
        (
            "runs/20261128-100000-ann-ab12cd",
            ["--seeds", "2"],
            "interrupted; runs/20261128-100000-ann-ab12cd is recorded as interrupted;"
            " run the same command again to continue: it resumes from the last finished epoch, and finished runs are reused",
        ),
        (
            None,
            [],
            "interrupted before the run was recorded, so there is nothing to resume; run the same command again to start it",
        ),
        (
            None,
            ["--seeds", "2"],
            "interrupted before the next run was recorded; run the same command again to go on: finished runs are reused",
        ),
        (
            None,
            ["--seeds", "2", "--jobs", "2"],
            "interrupted; each run in progress is recorded as interrupted by its worker; run the same"
            " command again to continue: they resume from their last finished epoch, and finished runs are reused",
        ),
    ],
)
def test_ctrl_c_says_what_was_recorded(monkeypatch, tmp_path, run_dir, seeds, expected):
    import rnnbench

    # The stand-in also keeps Keras out of this test.
    runner = interrupting_runner(run_dir)
    monkeypatch.setattr(rnnbench, "executor", runner, raising=False)
    monkeypatch.setitem(sys.modules, "rnnbench.executor", runner)
    outcome = CliRunner().invoke(
        main, ["run", str(ROOT / "configs" / "ann.yaml"), *seeds, "--runs-dir", str(tmp_path / "runs")]
    )
    assert (outcome.exit_code, outcome.stdout) == (130, "")
    assert outcome.stderr == f"\n{expected}\n"


@pytest.mark.parametrize(
    "arguments, error",
    [
        (
            ["--gpus-per-run", "0.25"],
            "Error: --gpus-per-run needs --cluster, or --jobs N to pack N runs on this machine's GPU\n",
        ),
        (
            ["--jobs", "4", "--gpus-per-run", "0.5"],
            "Error: --jobs 4 with --gpus-per-run 0.5 asks for 2 GPUs; --jobs runs share one GPU, so each may take at most 1/4 of it"
            " (--gpus-per-run 0.25)\n",
        ),
    ],
)
def test_gpus_per_run_without_a_cluster_needs_jobs_that_fit_one_gpu(tmp_path, arguments, error):
    outcome = CliRunner().invoke(
        main, ["run", str(ROOT / "configs" / "gru.yaml"), "--runs-dir", str(tmp_path / "runs"), *arguments]
    )
    assert (outcome.exit_code, outcome.output) == (2, error)
    assert not (tmp_path / "runs").exists()


def test_jobs_hand_gpus_per_run_to_their_processes(tmp_path, monkeypatch):
    from rnnbench import executor

    asked = {}

    def run_all(configs, *arguments, **settings):
        asked.update(settings)
        result = {"best_val_accuracy": 0.5, "best_epoch": 1, "test_accuracy": 0.5, "mean_epoch_seconds": 1.0}
        return [
            RunRecord.from_json(
                {
                    "name": "gru",
                    "config": {"model": {"cell": "gru"}, "train": {"seed": 1}},
                    "parameters": 1,
                    "backend": "jax",
                    "device": "CPU: test",
                    "status": "completed",
                    "result": result,
                    "run_dir": "runs/gru",
                }
            )
        ]

    monkeypatch.setattr(executor, "run_all", run_all)
    outcome = invoke(
        "run",
        str(ROOT / "configs" / "gru.yaml"),
        "--jobs",
        "4",
        "--gpus-per-run",
        "0.25",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert outcome.exit_code == 0, outcome.output
    assert (asked["jobs"], asked["cluster"], asked["gpus_per_run"]) == (4, None, 0.25)


# --- Folders and patterns that can't mean what was asked -----------------------------------------


def test_compare_with_a_pattern_that_matches_no_run_says_so(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    results.index_run(runs, "run1", "gru", "completed", fake_record("gru", "gru", 0.85))
    for arguments in ([], ["--all"]):
        outcome = CliRunner().invoke(
            main, ["compare", "--runs-dir", str(runs), "--name", "zzz*", "--name", "lstm-*", *arguments]
        )
        shown = "" if arguments else "completed "
        # As `report` says it: runs exist, the patterns matched none of them.
        assert (outcome.exit_code, outcome.output) == (1, f"Error: no {shown}runs in {runs}/ match zzz*, lstm-*\n")


@pytest.mark.parametrize(
    "arguments, option, default",
    [
        (["compare", "--runs-dir", ""], "--runs-dir", "runs"),
        (["report", "--runs-dir", ""], "--runs-dir", "runs"),
        (["report", "--out", ""], "--out", "report"),
        (["run", str(ROOT / "configs" / "gru.yaml"), "--runs-dir", ""], "--runs-dir", "runs"),
        (["predict", "gru", "a text", "--runs-dir", ""], "--runs-dir", "runs"),
        (["mlflow-sync", "--runs-dir", "", "--mlflow", "sqlite:///store.db"], "--runs-dir", "runs"),
    ],
)
def test_an_empty_folder_is_refused_rather_than_read_as_here_or_slash(
    tmp_path, monkeypatch, arguments, option, default
):
    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(main, arguments)
    assert (outcome.exit_code, outcome.output) == (
        2,
        f"Error: {option} is empty; give a folder (the default is {default})\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_loop_or_a_link_to_nothing_as_a_folder_is_named(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "nowhere").symlink_to(tmp_path / "gone")
    runs = tmp_path / "runs"
    runs.mkdir()
    results.index_run(runs, "run1", "gru", "completed", fake_record("gru", "gru", 0.85))
    config = write_config(
        tmp_path, "model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\n", "tiny.yaml"
    )
    loop = "is a symlink loop (it leads back to itself); remove the link or give another folder"
    cases = [
        (["run", str(config), "--runs-dir", str(tmp_path / "loop")], f"the runs folder {tmp_path / 'loop'} {loop}"),
        (
            ["run", str(config), "--runs-dir", str(tmp_path / "loop" / "runs")],
            f"the runs folder {tmp_path / 'loop' / 'runs'} lies under {tmp_path / 'loop'}, which {loop}",
        ),
        (["compare", "--runs-dir", str(tmp_path / "loop")], f"the runs folder {tmp_path / 'loop'} {loop}"),
        (
            ["report", "--runs-dir", str(runs), "--out", str(tmp_path / "loop")],
            f"the report folder {tmp_path / 'loop'} {loop}",
        ),
        (
            ["run", str(config), "--runs-dir", str(tmp_path / "nowhere")],
            f"the runs folder {tmp_path / 'nowhere'} is a symlink to {tmp_path / 'gone'}, which does not exist; create that folder or give another one",
        ),
    ]
    for arguments, error in cases:
        outcome = CliRunner().invoke(main, arguments)
        assert (outcome.exit_code, outcome.output) == (2, f"Error: {error}\n"), arguments
    # Nothing made or changed: the links are as they were, the runs folder holds its index alone.
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != "keras_home") == [
        "loop",
        "nowhere",
        "runs",
        "tiny.yaml",
    ]
    assert os.readlink(tmp_path / "loop") == str(tmp_path / "loop") and not (tmp_path / "gone").exists()
    assert [path.name for path in runs.iterdir()] == ["index.sqlite"]


def test_an_mlflow_store_in_a_folder_that_does_not_exist_is_refused(tmp_path):
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("the mlflow extra is not installed")
    store = f"sqlite:///{tmp_path / 'nowhere' / 'deeper' / 'mlflow.db'}"
    error = f"Error: --mlflow {store}: the folder {tmp_path / 'nowhere' / 'deeper'} does not exist; create it first, or give a store in a folder that exists\n"
    for arguments in (
        ["run", str(ROOT / "configs" / "gru.yaml"), "--runs-dir", str(tmp_path / "runs")],
        ["mlflow-sync", "--runs-dir", str(tmp_path / "runs")],
    ):
        outcome = CliRunner().invoke(main, [*arguments, "--mlflow", store])
        assert (outcome.exit_code, outcome.output) == (2, error)
    # MLflow would have made the folders; nothing is made.
    assert list(tmp_path.iterdir()) == []
