"""dvc.yaml lists what each stage reads: every project module that a stage's command imports (statically,
transitively, function-level imports included) lies under one of the stage's deps, so editing it reruns
the stage. And the library never imports the stage layer; faces/ never imports data/, data/ never
imports fetch/, evaluate/ never imports train/; the faces modules import one another without a circle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Modules every command imports that do not change what a stage computes: the command line and params
# parsing, MLflow logging, progress output, the package docstring.
NEUTRAL = {"pipeline/__init__.py", "pipeline/cli.py", "pipeline/cli_common.py", "pipeline/cli_tools.py",
           "pipeline/params.py", "pipeline/schema.py", "pipeline/schema_eval.py", "pipeline/tracking.py",
           "pipeline/tracking_parent.py", "pipeline/tracking_store.py",
           "pipeline/mlflow_model.py", "pipeline/face_generator.py", "pipeline/face_generator_pyfunc.py",
           "src/lrlivae/__init__.py", "src/lrlivae/progress.py"}


def _module_file(name: str) -> Path | None:
    root = SRC if name.split(".")[0] == "lrlivae" else REPO
    base = root.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """Project modules a file imports (anywhere in it), with the packages whose __init__ runs first."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if n.split(".")[0] in ("lrlivae", "pipeline"):
                parts = n.split(".")
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in out if _module_file(n) is not None}


# The params schema imports the library's configs for their types, bounds and defaults only; a stage that
# computes with a config imports its module itself. So what the schema alone reaches is not followed.
PARAMS_SCHEMA = {"pipeline.params", "pipeline.schema", "pipeline.schema_eval"}


def _closure(modules: set[str]) -> set[Path]:
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m not in PARAMS_SCHEMA:
            todo.extend(_imports(_module_file(m)) - seen)
    return {_module_file(m) for m in seen}


def _command_entry_modules() -> dict[str, set[str]]:
    """For each `lrlivae <command>`: the modules its function in pipeline/cli*.py imports, following calls
    to helper functions of cli.py one level."""
    funcs = {}
    for path in sorted((REPO / "pipeline").glob("cli*.py")):  # cli.py and the modules registering on its app
        funcs.update({f.name: f for f in ast.parse(path.read_text()).body if isinstance(f, ast.FunctionDef)})

    def body_imports(f) -> set[str]:
        mods = set()
        for node in ast.walk(f):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods.add(node.module)
                mods.update(f"{node.module}.{a.name}" for a in node.names)
        return {m for m in mods if _module_file(m) is not None}

    out = {}
    for f in funcs.values():
        for dec in f.decorator_list:
            if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "command":
                name = dec.args[0].value if dec.args else f.name.replace("_", "-")
                mods = body_imports(f)
                for node in ast.walk(f):
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in funcs:
                        mods |= body_imports(funcs[node.func.id])
                out[name] = mods
    return out


def _stages():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, st in doc["stages"].items():
        st = st.get("do", st)  # a foreach stage's template
        cmd = st["cmd"]
        if isinstance(cmd, list):
            cmd = " ".join(cmd)
        words = cmd.split()
        yield name, words[words.index("lrlivae") + 1], [str(d) for d in st.get("deps", [])]


STAGES = list(_stages())


@pytest.mark.parametrize("stage,command,deps", STAGES, ids=[s[0] for s in STAGES])
def test_stage_deps_cover_every_module_its_command_imports(stage, command, deps):
    entries = _command_entry_modules()
    assert command in entries, f"stage {stage}: `lrlivae {command}` is not a command of pipeline/cli.py"
    files = {str(p.relative_to(REPO)) for p in _closure(entries[command])}
    # a foreach stage's deps may hold ${item...} templates; a dep covers a file when it is that file or a folder above it
    dep_paths = [d.rstrip("/") for d in deps if "${" not in d]
    missing = sorted(f for f in files - NEUTRAL if not any(f == d or f.startswith(d + "/") for d in dep_paths))
    assert not missing, f"dvc.yaml stage {stage} reads these modules without listing them as deps: {missing}"


def _library_imports(sub: str) -> dict[str, set[str]]:
    return {str(p.relative_to(REPO)): _imports(p) for p in (SRC / "lrlivae" / sub).rglob("*.py")}


def test_the_layers_import_one_way():
    bad = []
    for f, mods in _library_imports("").items():
        bad += [f"{f} -> {m}" for m in mods if m.startswith("pipeline")]
    for f, mods in _library_imports("faces").items():
        bad += [f"{f} -> {m}" for m in mods if m.startswith("lrlivae.data")]
    for f, mods in _library_imports("data").items():
        bad += [f"{f} -> {m}" for m in mods if m.startswith("lrlivae.fetch")]
    for f, mods in _library_imports("evaluate").items():
        bad += [f"{f} -> {m}" for m in mods if m.startswith("lrlivae.train")]
    assert not bad, "imports against the layering (DESIGN.md):\n" + "\n".join(bad)


def test_faces_modules_import_without_a_circle():
    """detect, landmarks and dlib_faces share their types through faces/common.py, so no chain of imports
    (function-level ones included) among the faces modules leads back to where it started."""
    graph = {}
    for path in (SRC / "lrlivae" / "faces").glob("*.py"):
        name = "lrlivae.faces." + path.stem
        graph[name] = {m for m in _imports(path) if m.startswith("lrlivae.faces.") and m != name}

    def circle_from(start: str, node: str, trail: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return trail + [nxt]
            if nxt not in trail:
                found = circle_from(start, nxt, trail + [nxt])
                if found:
                    return found
        return None

    circles = [" -> ".join(c) for c in (circle_from(m, m, [m]) for m in sorted(graph)) if c]
    assert not circles, "import circles in lrlivae.faces:\n" + "\n".join(circles)


def test_paths_have_one_home_dvc_yaml(monkeypatch):
    """A command's path options default to what dvc.yaml passes (read from dvc.yaml), never to a second
    copy of the path written in the CLI."""
    import re
    import shlex

    from pipeline.cli_common import dvc_path

    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    passed = set()
    for name, st in doc["stages"].items():
        words = shlex.split(st.get("do", st)["cmd"])
        passed |= {w for w in words if "/" in w and not w.startswith("-")}
    cli = "".join(p.read_text() for p in (REPO / "pipeline").glob("cli*.py"))
    literal = set(re.findall(r'typer\.Option\(\s*Path\("([^"]+)"\)', cli))
    assert not literal & passed, f"CLI defaults that repeat dvc.yaml's paths: {sorted(literal & passed)}"
    monkeypatch.chdir(REPO)  # the commands read the dvc.yaml of the repository they run in
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert dvc_path("train_joint", "--init") == Path("models/train_gm/model.pt")
    assert dvc_path("align", "--out-dir") == Path("data/aligned")


def test_every_param_a_stage_names_is_in_params_yaml():
    """DVC refuses a stage whose params are missing from params.yaml, even when the code has defaults."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    missing = []
    for name, st in doc["stages"].items():
        items = st.get("foreach", [None])
        for item in items:
            for key in st.get("do", st).get("params", []):
                key = str(key).replace("${item}", str(item))
                node = params
                for part in key.split("."):
                    if not isinstance(node, dict) or part not in node:
                        missing.append(f"{name}: {key}")
                        break
                    node = node[part]
    assert not missing, f"params.yaml lacks params that dvc.yaml stages name: {missing}"
