import base64
import json
import struct
from pathlib import Path

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
            history = [{"epoch": epoch, "loss": 0.6 - 0.1 * epoch, "accuracy": 0.7 + 0.05 * epoch,
                        "val_loss": 0.5 - 0.02 * epoch, "val_accuracy": base - 0.01 * (epoch - 2) ** 2 + 0.001 * seed,
                        "seconds": 3.0} for epoch in (1, 2, 3)]
            (runs_dir / run_id / "history.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in history))
            record = {
                "name": name, "parameters": parameters, "backend": "tensorflow", "device": "CPU: test",
                "data": {"dataset": "imdb"}, "versions": {"keras": "3.0", "python": "3.11"},
                "config": {"name": name, "model": {"cell": name, "layers": 1, "embedding_dim": 50, "units": 50, "bidirectional": False},
                           "train": {"seed": seed, "seeds": None}},
                "result": {"best_val_accuracy": base + 0.001 * seed, "best_epoch": 2, "test_accuracy": base - 0.01,
                           "mean_epoch_seconds": 3.0, "wall_seconds": 20.0},
            }
            results.index_run(runs_dir, run_id, name, "completed", record)


def test_report_writes_markdown_html_and_pictures(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    out = tmp_path / "report"
    outcome = CliRunner().invoke(main, ["report", "--runs-dir", str(runs_dir), "--out", str(out), "--title", "Test report"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output == f"wrote {out / 'report.md'} and {out / 'report.html'} with 5 pictures\n"
    assert sorted(path.name for path in out.iterdir()) == [
        "accuracy_vs_parameters.png", "accuracy_vs_seconds.png", "comparison.png",
        "curves_01_gru.png", "curves_02_lstm.png", "report.html", "report.md",
    ]
    for picture in out.glob("*.png"):
        width, height = png_size(picture)
        assert width >= 600 and height >= 300
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Test report\n")
    assert "| gru " in markdown and "0.8515 ± 0.0007" in markdown
    assert "- best: gru (mean 0.8515, n=2)" in markdown
    assert "lstm: below gru, beyond noise" in markdown
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
    outcome = CliRunner().invoke(main, ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "r"), "--name", "gr*"])
    assert outcome.exit_code == 0 and "with 4 pictures" in outcome.output
    missing = CliRunner().invoke(main, ["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "r2"), "--name", "nothing*"])
    assert missing.exit_code == 1
    assert missing.output == f"Error: no completed runs in {runs_dir}/ match nothing*\n"


def test_compare_groups_seeds_and_prints_the_verdict(tmp_path):
    runs_dir = tmp_path / "runs"
    seed_runs(runs_dir)
    output = CliRunner().invoke(main, ["compare", "--runs-dir", str(runs_dir)]).output.splitlines()
    header = output[0].split()
    assert header[:2] == ["name", "dataset"] and "n" in header and "CI" in header
    assert output[2].split()[:2] == ["gru", "imdb"] and "0.8515 ± 0.0007" in output[2]
    assert output[-2] == "- best: gru (mean 0.8515, n=2)"
    assert output[-1].startswith("  lstm: below gru, beyond noise (p<0.001; n=2 each)") or output[-1].startswith("  lstm: below gru, beyond noise (p=")
    as_json = json.loads(CliRunner().invoke(main, ["compare", "--runs-dir", str(runs_dir), "--format", "json"]).output)
    assert [group["name"] for group in as_json["groups"]] == ["gru", "lstm"]
    assert as_json["groups"][0]["n"] == 2 and as_json["groups"][0]["seeds"] == [1, 2]
    assert as_json["verdict"][1] == "- best: gru (mean 0.8515, n=2)"
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
