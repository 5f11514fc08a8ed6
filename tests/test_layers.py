"""Layers import downward only, read off the source with ast (function-level imports too).

The order, top to bottom, with why each layer sits where it does. A module may import its own
layer and the layers below it; RULES below add what the order alone does not say.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import genbench
from genbench.moved import MOVED

ROOT = Path(genbench.__file__).parent

# (layer, module prefixes, why). The longest matching prefix places a module.
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    ("interface", ("genbench.interfaces", "genbench.__main__"),
     "front doors (command line, Python API): parse, call one library function, print; "
     "nothing below imports them"),
    ("runs", ("genbench.running", "genbench.running.runs", "genbench.executors",
              "genbench.running.costs", "genbench.running.check", "genbench.running.scoring"),
     "schedule work: sweeps of seeds and models, Ray/SLURM executors, cost plans, the one-step "
     "model check; they drive training"),
    ("training", ("genbench.running.training", "genbench.running.tblog", "genbench.running.wandblog",
                  "genbench.running.loggers", "genbench.running.display"),
     "the runner (loop, checkpoints, resume) and what it shows or logs; it calls evaluation "
     "at the end of a run"),
    ("evaluation", ("genbench.running.evaluation", "genbench.running.outside"),
     "runs the metrics on a trained model or a finished run folder and writes their results"),
    ("report", ("genbench.report",),
     "reads only the store; it places the pictures galleries drew into it, and loads nothing"),
    ("galleries", ("genbench.galleries", "genbench.loading", "genbench.plugins"),
     "rebuild a finished run (plugins + checkpoint) and decode pictures from it"),
    ("metrics", ("genbench.metrics",),
     "pure functions of a model and data (plus caching); they never train, load runs or write "
     "into a run folder"),
    ("core", ("genbench", "genbench.contract", "genbench.data", "genbench.store",
              "genbench.registry", "genbench.errors", "genbench.settings", "genbench.presets",
              "genbench.kit", "genbench.images", "genbench.figures", "genbench.ranges",
              "genbench.moved"),
     "the contract, data, store, registry, the model-building kit and helpers every layer (and "
     "every model) may use"),
]
RANK = {name: i for i, (name, _, _) in enumerate(LAYERS)}  # 0 = top


@dataclass(frozen=True)
class Rule:
    importer: str  # a layer name
    forbidden: tuple[str, ...]  # module prefixes it must not import
    why: str


RULES = (
    Rule("metrics", ("genbench.running.training", "genbench.running.evaluation", "genbench.report",
                     "genbench.interfaces.cli"),
         "metrics are called by evaluation, never the other way round"),
    Rule("report", ("genbench.running.training", "genbench.running.runs", "genbench.interfaces.cli",
                    "genbench.running.evaluation", "genbench.loading", "genbench.plugins",
                    "genbench.executors", "genbench.galleries"),
         "the report reads only the store; checkpoints and plugins are loaded where galleries "
         "are drawn (evaluation, genbench gallery)"),
)
FACADE_EAGER = {"register_dataset", "register_metric", "register_model", "__version__"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported genbench module (a package means its __init__)
    names: tuple[str, ...]  # names taken with `from target import ...` ("" for `import target`)
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


# modules whose ``__getattr__`` re-exports names lazily: the package's API, and the old
# ``genbench.kit.nn`` path of the GAN helpers that moved to ``genbench.kit.adversarial``
FACADES = ("", ".kit.nn")


def _lazy_facade(node: ast.AST, module: str, root: Path) -> bool:
    """A facade's ``__getattr__`` re-exports names lazily for users; not an edge."""
    return (module in {root.name + f for f in FACADES} and isinstance(node, ast.FunctionDef)
            and node.name == "__getattr__")


def imports(root: Path) -> list[Import]:
    """Every import of a module of the package under ``root``, at any depth of the code."""
    known, found = modules(root), []
    for name, path in known.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        skip = {id(n) for f in ast.walk(tree) if _lazy_facade(f, name, root) for n in ast.walk(f)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found += [Import(name, a.name, ("",), node.lineno) for a in node.names
                          if a.name.split(".")[0] == root.name]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package upward
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
                if base.split(".")[0] != root.name:
                    continue
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{a.name}"
                    target, names = (sub, ("",)) if sub in known else (base, (a.name,))
                    found.append(Import(name, target, names, node.lineno))
    return found


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    best = None
    for layer, prefixes, _ in LAYERS:
        for p in prefixes:
            hit = module == p if "." not in p else within(module, p)  # "genbench": the package only
            if hit and (best is None or len(p) > len(best[1])):
                best = (layer, p)
    return None if best is None else best[0]


def old_path(imp: Import, known: set[str]) -> str | None:
    """The old flat path (genbench.nn, genbench.training...) an import names, if any."""
    names = [imp.target] + [f"{imp.target}.{n}" for n in imp.names if n]
    return next((n for n in names if n in MOVED and n not in known), None)


def violations(root: Path) -> list[str]:
    """Every import that goes up the table or breaks a rule, one line each."""
    out, known = [], set(modules(root))
    for imp in imports(root):
        src, dst = layer_of(imp.source), layer_of(imp.target)
        where = f"{imp.source}:{imp.line} imports {imp.target}"
        old = old_path(imp, known)
        if old:
            out.append(f"{where}: {old} moved to {MOVED[old]}; import that (the old path is "
                       "kept for users outside genbench)")
            continue
        if src is None or dst is None:
            out.append(f"{where}: {imp.source if src is None else imp.target} is in no layer; "
                       "add it to LAYERS in tests/test_layers.py")
            continue
        if RANK[dst] < RANK[src]:
            out.append(f"{where}: {src} may not import the {dst} layer above it")
        for rule in RULES:
            if src == rule.importer and any(within(imp.target, f) for f in rule.forbidden):
                out.append(f"{where}: {rule.why}")
        if dst == "report" and src not in ("report", "interface"):
            out.append(f"{where}: only the interface layer uses the report")
        lazy = set(imp.names) - FACADE_EAGER - {""}  # `import genbench` (e.g. for __version__) is fine
        if imp.target == root.name and imp.source != root.name and lazy:
            out.append(f"{where}: inside the package, import {sorted(lazy)} from its own module, "
                       "not through the package's lazy API")
    return sorted(set(out))


def cycles(root: Path) -> list[list[str]]:
    """Import cycles between modules (strongly connected components of the import graph)."""
    graph: dict[str, set[str]] = {m: set() for m in modules(root)}
    for imp in imports(root):
        if imp.target in graph and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def report_loads_checkpoints(root: Path) -> list[str]:
    """Calls of torch.load under report/: the report reads no checkpoint itself."""
    hits = []
    for name, path in modules(root).items():
        if name.startswith(f"{root.name}.report"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "load" and \
                        isinstance(node.value, ast.Name) and node.value.id == "torch":
                    hits.append(f"{name}:{node.lineno} calls torch.load")
    return hits


RANDOM = {"rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial", "rand_like",
          "randn_like", "randint_like", "sample", "rsample",  # draw from the global RNG without generator=
          "pca_lowrank", "svd_lowrank"}  # randomized, and they take no generator
SEEDING = {"manual_seed", "seed"}  # reseed a global RNG (torch.Generator().manual_seed(s) is fine)


def global_rng_calls(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Calls under ``packages`` that reseed or draw from a global RNG."""
    hits = []
    for name, path in modules(root).items():
        if not any(within(name, f"{root.name}.{p}") for p in packages):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            fn, owner = node.func.attr, node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else ""
            reseeds = fn in SEEDING and owner_name in {"torch", "random", "np", "numpy"} or (
                fn in SEEDING and isinstance(owner, ast.Attribute) and owner.attr in {"random", "cuda"})
            draws = fn in RANDOM and not any(k.arg == "generator" for k in node.keywords) and (
                owner_name == "torch" or fn in {"sample", "rsample"})
            if reseeds or draws:
                hits.append(f"{name}:{node.lineno} calls {fn} on the global RNG")
    return hits


# -- the package as it is ---------------------------------------------------------------

def test_galleries_and_report_use_no_global_rng() -> None:
    assert global_rng_calls(ROOT, ("galleries", "report")) == []

def test_every_module_has_a_layer() -> None:
    missing = [m for m in modules(ROOT) if layer_of(m) is None]
    assert not missing, f"add to LAYERS: {missing}"


def test_imports_go_down_the_layers() -> None:
    found = violations(ROOT)
    assert not found, "\n".join(found)


# Cycles through function-level imports that were in the tree when this test was written, each
# in another helper's files; they are listed for their owners to remove (never add one here).
KNOWN_CYCLES = [
    ["genbench.data", "genbench.data.morpho"],  # morpho imports load_dataset from data/__init__
]


def test_no_import_cycles_between_modules() -> None:
    new = [c for c in cycles(ROOT) if c not in KNOWN_CYCLES]
    assert new == [], f"import cycles: {new}"


def test_the_report_loads_no_checkpoint() -> None:
    assert report_loads_checkpoints(ROOT) == []


# -- the checker catches what it should (a synthetic package) ---------------------------

def write_tree(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "genbench"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


CLEAN = {
    "__init__.py": "from genbench.registry import register_model\n"
                   "def __getattr__(name):\n    from genbench.interfaces import api\n    return api\n",
    "registry.py": "",
    "interfaces/__init__.py": "",
    "interfaces/api.py": "from genbench.running.training import run\n",
    "running/__init__.py": "",
    "running/training.py": "from genbench.running import evaluation\n",
    "running/evaluation.py": "from genbench.metrics import runner\n",
    "metrics/__init__.py": "",
    "metrics/runner.py": "from genbench import register_model\n",
    "report/__init__.py": "",
    "report/build.py": "def f():\n    from genbench.registry import MODELS\n",
    "galleries/__init__.py": "from genbench.loading import load_run\n",
    "loading.py": "import torch\n",
}


def test_a_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    pkg = write_tree(tmp_path, CLEAN)
    assert violations(pkg) == [] and cycles(pkg) == []


@pytest.mark.parametrize(("path", "text", "message"), [
    ("metrics/bad.py", "def f():\n    from genbench.running.training import run\n", "layer above it"),
    ("metrics/bad.py", "from genbench.running import evaluation\n", "metrics are called by evaluation"),
    ("report/bad.py", "from genbench.running.evaluation import load_run\n", "reads only the store"),
    ("report/bad.py", "from genbench.plugins import load_plugins\n", "reads only the store"),
    ("report/bad.py", "from genbench.galleries.core import codes\n", "reads only the store"),
    ("report/bad.py", "def f():\n    from genbench.galleries import render_all\n", "reads only the store"),
    ("report/bad.py", "import genbench.running.runs\n", "layer above it"),
    ("running/training.py", "from genbench.report import build\n", "only the interface layer"),
    ("galleries/bad.py", "from genbench.running.evaluation import x\n", "layer above it"),
    ("galleries/bad.py", "from genbench.training import x\n", "moved to genbench.running.training"),
    ("running/bad.py", "import genbench.nn\n", "moved to genbench.kit.nn"),
    ("interfaces/bad.py", "from genbench import evaluation\n", "moved to genbench.running.evaluation"),
    ("metrics/bad.py", "from genbench import run\n", "lazy API"),
    ("newthing.py", "", "in no layer"),
])
def test_an_upward_import_is_caught(tmp_path: Path, path: str, text: str, message: str) -> None:
    files = {**CLEAN, path: text}
    if path == "newthing.py":
        files["interfaces/cli.py"] = "import genbench.newthing\n"
    found = violations(write_tree(tmp_path, files))
    assert any(message in v for v in found), found


def test_a_cycle_a_checkpoint_load_and_a_global_draw_are_caught(tmp_path: Path) -> None:
    pkg = write_tree(tmp_path, {**CLEAN, "metrics/a.py": "from genbench.metrics import b\n",
                                "metrics/b.py": "def f():\n    from genbench.metrics.a import g\n",
                                "report/pics.py": "import torch\nx = torch.load('checkpoint.pt')\n"})
    assert cycles(pkg) == [["genbench.metrics.a", "genbench.metrics.b"]]
    rng = write_tree(tmp_path / "rng", {
        "galleries/a.py": "import torch\ntorch.manual_seed(0)\nz = prior.sample((4,))\n"
                          "e = torch.randn(3)\nok = torch.randn(3, generator=g)\n"
                          "g = torch.Generator().manual_seed(0)\nx = model.sample(4, generator=g)\n"})
    assert global_rng_calls(rng, ("galleries",)) == [
        "genbench.galleries.a:2 calls manual_seed on the global RNG",
        "genbench.galleries.a:3 calls sample on the global RNG",
        "genbench.galleries.a:4 calls randn on the global RNG"]
    assert report_loads_checkpoints(pkg) == ["genbench.report.pics:2 calls torch.load"]
