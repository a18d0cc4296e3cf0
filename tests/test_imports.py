"""How rnnbench's modules import each other: no import circle, and Keras only where a run trains."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rnnbench"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The rnnbench modules that `path` imports anywhere: at the top, in a function or under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("rnnbench.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "rnnbench":
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnbench."):
            found.add(node.module.split(".")[1])
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    return {path.stem: imported_modules(path, modules) for path in PACKAGE.glob("*.py")}


def circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph` (its modules in import order, the first again at the end), or []."""
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> list[str]:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return []
        for imported in sorted(graph[module]):
            found = walk(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return []

    for module in sorted(graph):
        found = walk(module, [])
        if found:
            return found
    return []


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # train imports tracking modules at the top; the executor imports the model inside run_all.
    assert {"mlflow_tracking", "tensorboard_events", "observers", "encoded"} <= graph["train"]
    assert {"claims", "worker", "model", "cluster"} <= graph["executor"]
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_imports_itself_through_others():
    assert circle(import_graph()) == []


def test_the_runner_runs_one_run_and_claims_none():
    defined = set()
    for node in ast.parse((PACKAGE / "train.py").read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    assert "run_experiment" in defined
    scheduling = {"claim", "Claim", "completed_runs", "unfinished_runs", "RESUMABLE", "reuse_note", "train_one"}
    assert defined & scheduling == set()
    assert "claims" not in import_graph()["train"]


def test_a_driver_claims_runs_and_prepares_data_without_keras():
    code = (
        "import sys\n"
        "import rnnbench.claims, rnnbench.encoded, rnnbench.executor, rnnbench.worker, rnnbench.cluster\n"
        "print(sorted(name for name in ('keras', 'rnnbench.train', 'rnnbench.model') if name in sys.modules))\n"
    )
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed == "[]\n"
