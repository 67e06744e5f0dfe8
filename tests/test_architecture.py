"""The layering of the code (docs/architecture.md), read from the source with `ast`.

models (zoo/*.py) <- augment, ensembles <- training (zoo/training) <- search,
serving, cli (zoo/search, zoo/serving, zoo/cli) <- scripts. No import circles,
and `import zoo` loads the model library alone.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "augment", "ensembles")
MODEL_LIBRARY = ("zoo", "zoo.registry", "zoo.resolve", "zoo.base", "zoo.layers", "zoo.flops",
                 "zoo.contract", "zoo.atomic",
                 "zoo.lenet", "zoo.alexnet", "zoo.vgg", "zoo.googlenet", "zoo.resnet",
                 "zoo.pretrained", "zoo.pretrained.catalog", "zoo.pretrained.files",
                 "zoo.pretrained.convert", "zoo.pretrained.from_keras",
                 "zoo.pretrained.from_torchvision")
APPLICATION = ("zoo.training", "zoo.search", "zoo.serving", "zoo.cli")


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path, modules):
    """Project modules imported anywhere in `path` (function-level imports too):
    `from a.b import c` counts as a.b.c when that is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                     else node.module for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_the_import_graph_has_no_circle(graph):
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                circles.append(stack[stack.index(child):] + [child])
            elif child not in state:
                visit(child)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_dependencies_point_one_way(graph):
    def layer(module):
        if module in MODEL_LIBRARY:
            return 0
        if module.split(".")[0] in ("augment", "ensembles"):
            return 1
        if module.startswith("zoo.training"):
            return 2
        return 3  # zoo.search, zoo.serving, zoo.cli

    upward = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                    if layer(b) > layer(a))
    assert not upward, "imports of a higher layer: " + ", ".join(upward)
    assert layer("zoo.training.loop") == 2 and layer("zoo.lenet") == 0


def test_import_zoo_loads_the_model_library_alone():
    code = ("import sys, zoo; zoo.create_model('test_resnet'); "
            "print(sorted(m for m in sys.modules if m.startswith(('zoo.', 'augment', "
            "'ensembles', 'keras_tuner'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(eval(result.stdout.strip().splitlines()[-1]))
    assert loaded <= set(MODEL_LIBRARY), sorted(loaded - set(MODEL_LIBRARY))


def test_private_keras_apis_only_in_the_compat_module():
    users = []
    for path in [*ROOT.glob("zoo/**/*.py"), *ROOT.glob("augment/**/*.py"),
                 *ROOT.glob("ensembles/**/*.py"), *ROOT.glob("scripts/*.py")]:
        text = path.read_text()
        if "keras.src" in text or "keras_tuner.src" in text:
            users.append(str(path.relative_to(ROOT)))
    assert users == ["zoo/training/compat.py"]
