import base64
import json
import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnbench import results
from rnnbench.cli import main


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def seed_runs(runs_dir: Path) -> None:
    """Two configs x two seeds, each with a history file, as `run` would record them."""
    runs_dir.mkdir(parents=True)
    for name, base, parameters in (("gru", 0.85, 516_965), ("lstm", 0.80, 521_865)):
        for seed in (1, 2):
            run_id = f"run-{name}-{seed}"
            (runs_dir / run_id).mkdir()
            history = [
                {
                    "epoch": epoch,
                    "loss": 0.6 - 0.1 * epoch,
                    "accuracy": 0.7 + 0.05 * epoch,
                    "val_loss": 0.5 - 0.02 * epoch,
                    "val_accuracy": base - 0.01 * (epoch - 2) ** 2 + 0.001 * seed,
                    "seconds": 3.0,
                }
                for epoch in (1, 2, 3)
            ]
            (runs_dir / run_id / "history.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in history))
            record = {
                "name": name,
                "parameters": parameters,
                "backend": "tensorflow",
                "device": "CPU: test",
                "data": {"dataset": "imdb"},
                "versions": {"keras": "3.0", "python": "3.11"},
                "config": {
                    "name": name,
                    "model": {"cell": name, "layers": 1, "embedding_dim": 50, "units": 50, "bidirectional": False},
                    "train": {"seed": seed, "seeds": None},
                },
                "result": {
                    "best_val_accuracy": base + 0.001 * seed,
                    "best_epoch": 2,
                    "test_accuracy": base - 0.01 + (0.001 if name == "gru" else 0.002) * seed,
                    "mean_epoch_seconds": 3.0,
                    "wall_seconds": 20.0,
                },
            }
            results.index_run(runs_dir, run_id, name, "completed", record)


def test_report_writes_markdown_html_and_pictures(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    out = tmp_path / "report"
    outcome = CliRunner().invoke(
        main, ["report", "--runs-dir", str(runs_dir), "--out", str(out), "--title", "Test report"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output == f"wrote {out / 'report.md'} and {out / 'report.html'} with 5 pictures\n"
    assert sorted(path.name for path in out.iterdir()) == [
        "accuracy_vs_parameters.png",
        "accuracy_vs_seconds.png",
        "comparison.png",
        "curves_01_gru.png",
        "curves_02_lstm.png",
        "report.html",
        "report.md",
    ]
    for picture in out.glob("*.png"):
        width, height = png_size(picture)
        assert width >= 600 and height >= 300
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Test report\n")
    assert "| gru " in markdown and "0.8515 ± 0.0007" in markdown
    assert "- imdb: 2 configs with 2 or more seeds, 1 pair, 2 tests, Holm; highest mean: gru 0.8415 (n=2)" in markdown
    assert (
        "- better: gru over lstm by +4.85 points (raw 95% CI +4.21 to +5.49; paired t, p=0.007, Holm p=0.013)"
        in markdown
    )
    assert "![Learning curves: gru](curves_01_gru.png)" in markdown
    assert "time spent in these runs, added up: 1.3 min" in markdown
    assert "- keras: 3.0" in markdown
    html = (out / "report.html").read_text()
    # Self-contained: every picture is inside the file.
    assert html.count("src='data:image/png;base64,") == 5 and "<img alt='Comparison" not in html
    first = html.split("base64,")[1].split("'")[0]
    assert base64.b64decode(first)[:4] == b"\x89PNG"


def test_report_filters_by_name_and_fails_cleanly_when_nothing_matches(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    outcome = CliRunner().invoke(
        main, ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "r"), "--name", "gr*"]
    )
    assert outcome.exit_code == 0 and "with 4 pictures" in outcome.output
    missing = CliRunner().invoke(
        main, ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "r2"), "--name", "nothing*"]
    )
    assert missing.exit_code == 1
    assert missing.output == f"Error: no completed runs in {runs_dir}/ match nothing*\n"


def test_compare_groups_seeds_and_prints_the_verdict(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    output = CliRunner().invoke(main, ["compare", "--runs-dir", str(runs_dir)]).output.splitlines()
    header = output[0].split()
    assert header[:2] == ["name", "dataset"] and "n" in header and "CI" in header
    # The test accuracy (the outcome tested) first, then the best validation accuracy.
    assert (
        output[2].split()[:2] == ["gru", "imdb"] and "0.8415 ± 0.0007  [0.8351, 0.8479]  0.8515 ± 0.0007" in output[2]
    )
    assert output[-2] == "- imdb: 2 configs with 2 or more seeds, 1 pair, 2 tests, Holm; highest mean: gru 0.8415 (n=2)"
    assert (
        output[-1]
        == "  better: gru over lstm by +4.85 points (raw 95% CI +4.21 to +5.49; paired t, p=0.007, Holm p=0.013)"
    )
    as_json = json.loads(CliRunner().invoke(main, ["compare", "--runs-dir", str(runs_dir), "--format", "json"]).output)
    assert [group["name"] for group in as_json["groups"]] == ["gru", "lstm"]
    assert as_json["groups"][0]["n"] == 2 and as_json["groups"][0]["seeds"] == [1, 2]
    assert as_json["verdict_lines"][1:] == output[-2:]
    # Per pair: the test used, raw and Holm-adjusted p, the difference with its intervals, the answer.
    [family] = as_json["verdict"]
    assert (family["dataset"], family["pairs"], family["tests"], family["correction"], family["delta"]) == (
        "imdb",
        1,
        2,
        "Holm",
        0.005,
    )
    [pair] = family["comparisons"]
    assert (pair["first"], pair["second"], pair["test"], pair["answer"], pair["n"]) == (
        "gru",
        "lstm",
        "paired t",
        "better",
        [2, 2],
    )
    assert pair["difference"] == pytest.approx(0.0485) and pair["ci95"] == pytest.approx([0.04215, 0.05485], abs=1e-5)
    assert pair["p"] == pytest.approx(0.00656, abs=1e-5) and pair["p_holm"] == pytest.approx(2 * pair["p"])
    assert pair["more_seeds"] is None
    # Validation on request: its spread first, and the verdict says what it tested.
    by_validation = (
        CliRunner()
        .invoke(main, ["compare", "--runs-dir", str(runs_dir), "--outcome", "validation"])
        .output.splitlines()
    )
    assert "0.8515 ± 0.0007  [0.8451, 0.8579]  0.8415 ± 0.0007" in by_validation[2]
    assert by_validation[-3].startswith("Verdict on best validation accuracy, every pair of configs (paired t)")
    per_run = CliRunner().invoke(main, ["compare", "--runs-dir", str(runs_dir), "--per-run", "--format", "json"]).output
    assert len(json.loads(per_run)) == 4


def test_unwritable_report_folder_is_one_line(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the report folder should be")
    outcome = CliRunner().invoke(main, ["report", "--runs-dir", str(runs_dir), "--out", str(blocker / "report")])
    assert outcome.exit_code == 1
    assert outcome.output.startswith(f"Error: cannot write the report into {blocker / 'report'}: ")
    assert outcome.output.count("\n") == 1


def index_again(runs_dir: Path, run_id: str, of: str, **changes) -> None:
    """Index another run of the same config and seed as run `of` (as `run --force` would), with `changes` to its record."""
    [earlier] = [record for record in results.read_records(runs_dir) if record.run_id == of]
    record = {
        key: value for key, value in earlier.to_json().items() if key not in ("run_id", "status", "started", "updated")
    }
    for key, value in changes.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    results.index_run(runs_dir, run_id, record["name"], "completed", record)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_compare_counts_the_latest_run_of_each_seed_and_shows_the_val_test_gap(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    index_again(runs_dir, "run-gru-1-again", "run-gru-1", result={"best_val_accuracy": 0.861, "test_accuracy": 0.83})
    grouped = invoke("compare", "--runs-dir", str(runs_dir)).output.splitlines()
    assert grouped[0].split() == [
        "name",
        "dataset",
        "cell",
        "layers",
        "embedding",
        "dim",
        "units",
        "params",
        "n",
        "test",
        "acc",
        "95%",
        "CI",
        "best",
        "val",
        "acc",
        "val−test",
        "s/epoch",
        "backend",
        "device",
    ]
    # n counts seeds 1 and 2 once each; seed 1 by its retrained run (0.861, test 0.83).
    assert (
        grouped[2]
        == "gru     imdb       gru            1               50       50   516,965    2  0.8360 ± 0.0085  [0.7598, 0.9122]  0.8565 ± 0.0064     +0.0205        3.0  tensorflow  CPU: test"
    )
    assert (
        grouped[3]
        == "lstm    imdb       lstm           1               50       50   521,865    2  0.7930 ± 0.0014  [0.7803, 0.8057]  0.8015 ± 0.0007     +0.0085        3.0  tensorflow  CPU: test"
    )
    assert grouped[-1] == (
        "  undecided: gru vs lstm, +4.30 points (raw 95% CI -2.05 to +10.65; paired t, Holm p=0.147): about 1 more seed each would"
        " confirm a difference of the size seen with 80% power (20 more to find any 0.50-point one)"
    )

    per_run = [
        line.split() for line in invoke("compare", "--runs-dir", str(runs_dir), "--per-run").output.splitlines()[2:]
    ]
    assert [(row[7], row[9], row[10]) for row in per_run] == [
        ("0.8610", "0.8300", "+0.0310"),
        ("0.8520", "0.8420", "+0.0100"),
        ("0.8020", "0.7940", "+0.0080"),
        ("0.8010", "0.7920", "+0.0090"),
    ]
    every = [line.split() for line in invoke("compare", "--runs-dir", str(runs_dir), "--all").output.splitlines()[2:]]
    assert [(row[-1], row[-2]) for row in every] == [
        ("run-gru-1-again", "completed"),
        ("run-gru-2", "completed"),
        ("run-gru-1", "replaced"),
        ("run-lstm-2", "completed"),
        ("run-lstm-1", "completed"),
    ]
    # The replaced run stays on disk and in the index as it was recorded.
    assert {record.run_id: record.status for record in results.read_records(runs_dir)}["run-gru-1"] == "completed"

    as_json = json.loads(invoke("compare", "--runs-dir", str(runs_dir), "--format", "json").output)
    gru = as_json["groups"][0]
    assert (gru["n"], gru["seeds"], sorted(gru["runs"])) == (2, [1, 2], ["run-gru-1-again", "run-gru-2"])
    assert gru["val_test_gap_mean"] == pytest.approx(0.0205)
    assert (gru["collapsed_runs"], gru["warnings"]) == ([], {})
    runs_json = json.loads(invoke("compare", "--runs-dir", str(runs_dir), "--per-run", "--format", "json").output)
    assert [run["val_test_gap"] for run in runs_json] == pytest.approx([0.031, 0.010, 0.008, 0.009])


def test_compare_shows_collapsed_models_and_warnings(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    warning = (
        "the best epoch's model predicts 'neg' for every validation row (a collapsed model: check train.learning_rate)"
    )
    index_again(
        runs_dir,
        "run-gru-3",
        "run-gru-1",
        config={
            "model": {"cell": "gru", "layers": 1, "embedding_dim": 50, "units": 50, "bidirectional": False},
            "train": {"seed": 3, "seeds": None},
        },
        result={"best_val_accuracy": 0.5, "test_accuracy": 0.5, "collapsed": True},
        warnings=[warning],
    )
    grouped = invoke("compare", "--runs-dir", str(runs_dir)).output.splitlines()
    assert grouped[0].split()[-1] == "warnings"
    assert grouped[2].startswith("lstm ") and grouped[2].endswith("CPU: test")
    assert grouped[3].startswith("gru ") and grouped[3].endswith(
        "CPU: test  collapsed in 1 of 3 runs; warnings in 1 of 3 runs"
    )
    per_run = invoke("compare", "--runs-dir", str(runs_dir), "--per-run", "--format", "csv").output.splitlines()
    assert per_run[0].endswith(",backend,device,warnings")
    assert per_run[-1] == f'gru,imdb,gru,1,50,50,"516,965",0.5000,2,0.5000,+0.0000,3.0,tensorflow,CPU: test,{warning}'
    assert all(line.endswith("CPU: test,") for line in per_run[1:-1])

    gru = json.loads(invoke("compare", "--runs-dir", str(runs_dir), "--format", "json").output)["groups"][1]
    assert (gru["name"], gru["collapsed_runs"], gru["warnings"]) == ("gru", ["run-gru-3"], {"run-gru-3": [warning]})
    last = json.loads(invoke("compare", "--runs-dir", str(runs_dir), "--per-run", "--format", "json").output)[-1]
    assert (last["result"]["collapsed"], last["warnings"]) == (True, [warning])


def test_a_collapsed_run_without_warnings_still_shows(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    index_again(runs_dir, "run-lstm-2-again", "run-lstm-2", result={"collapsed": True})
    per_run = invoke("compare", "--runs-dir", str(runs_dir), "--per-run", "--format", "csv").output.splitlines()
    assert per_run[3].startswith("lstm,") and per_run[3].endswith(
        ",CPU: test,collapsed: one class predicted for every validation row"
    )
    grouped = invoke("compare", "--runs-dir", str(runs_dir), "--format", "csv").output.splitlines()
    assert grouped[2].startswith("lstm,") and grouped[2].endswith(",CPU: test,collapsed in 1 of 2 runs")


def test_report_counts_the_latest_runs_shows_the_gap_and_is_readable_by_others(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    index_again(runs_dir, "run-gru-1-again", "run-gru-1", result={"best_val_accuracy": 0.861, "test_accuracy": 0.83})
    out = tmp_path / "report"
    previous = os.umask(0o022)
    try:
        outcome = invoke("report", "--runs-dir", str(runs_dir), "--out", str(out))
    finally:
        os.umask(previous)
    assert outcome.exit_code == 0, outcome.output
    markdown = (out / "report.md").read_text()
    assert (
        f"- 4 completed runs in 2 configs, from `{runs_dir}` (1 more replaced by a later run of the same config and seed)\n"
        in markdown
    )
    assert (
        "| gru    | imdb      | gru    |        1 |              50 |      50 |  516,965 |   2 | 0.8360 ± 0.0085 | [0.7598, 0.9122] |"
        " 0.8565 ± 0.0064 |    +0.0205 |       3.0 | tensorflow | CPU: test |\n"
    ) in markdown
    assert "- imdb: 2 configs with 2 or more seeds, 1 pair, 2 tests, Holm; highest mean: gru 0.8360 (n=2)" in markdown
    # The runs table lists the retrained run of seed 1 (0.8610), not the one it replaced (0.8510).
    runs_table = markdown.split("## Runs\n\n")[1].split("\n\n")[0].splitlines()
    assert [row.split("|")[8].strip() for row in runs_table[2:]] == ["0.8610", "0.8520", "0.8020", "0.8010"]
    assert (out / "report.html").read_text().count("<th>val−test  </th>") == 2
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_damaged_history_file_is_one_line_in_the_report(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    history = runs_dir / "run-lstm-2" / "history.jsonl"
    history.write_text(history.read_text() + '{"epoch": 4, "loss": 0.1\n')
    outcome = CliRunner().invoke(main, ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "report")])
    assert (outcome.exit_code, outcome.output) == (
        1,
        f"Error: {history}: line 4 is not valid JSON; restore the file or remove the run\n",
    )
    history.write_text('{"epoch": 1, "loss": 0.5}\n')
    outcome = CliRunner().invoke(main, ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "report")])
    assert (outcome.exit_code, outcome.output) == (
        1,
        f"Error: {history}: line 1 has no number accuracy; restore the file or remove the run\n",
    )
