"""The library's layout: one package per concept, imports running one way, the public API unchanged."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = str(Path(__file__).resolve().relative_to(ROOT))
LIBRARY = ROOT / "attnviz"
CONCEPTS = ("heads", "masks", "sources", "learn")
# Lower layers first: a module may import its own package and any layer below it.
LAYERS = {"hooks": 0, "models": 1, "tracing": 2, "heads": 3, "masks": 3, "views": 4, "sources": 5, "learn": 5}
# Where one concept builds on another (each said in the package docstring).
BUILDS_ON = {("learn", "masks"), ("sources", "heads")}


def _part(module: str) -> str | None:
    """The layer of ``attnviz.<part>...``, or None for the top level (cli, __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attnviz"):
            modules.add(node.module)
            if node.module == "attnviz":
                modules.update(f"attnviz.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("attnviz"))
    return modules


def _library_modules() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in sorted(LIBRARY.rglob("*.py"))]


def test_imports_run_down_the_layers_and_concepts_stay_apart() -> None:
    wrong = []
    for name, path in _library_modules():
        own = _part(name)
        if own is None:
            continue
        for imported in _imports(path):
            other = _part(imported)
            if other is None or other == own:
                if other is None and imported not in ("attnviz",):
                    wrong.append(f"{name} imports the top level {imported}")
                continue
            upward = LAYERS[other] > LAYERS[own] or (LAYERS[other] == LAYERS[own])
            across = own in CONCEPTS and other in CONCEPTS and (own, other) not in BUILDS_ON
            if upward or across:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_every_package_says_its_concept_in_its_docstring() -> None:
    for package in [p for p in LIBRARY.iterdir() if (p / "__init__.py").exists()]:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and doc.split(":")[0].lower() == package.name, package.name


def test_the_library_never_imports_streamlit() -> None:
    for name, path in _library_modules():
        assert not any(m == "streamlit" or m.startswith("streamlit.") for m in _stdlib_free_imports(path)), name


def _stdlib_free_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_public_api_names_import_as_before() -> None:
    import attnviz.variants
    from attnviz.variants import additive, multi_head, scaled_dot_product

    import attnviz
    from attnviz import (
        LoadedModel,
        ModelInfo,
        ModelLoadError,
        Trace,
        attribute,
        builtin_models,
        load_model,
        trace,
    )

    assert callable(load_model) and callable(trace) and callable(attribute) and callable(builtin_models)
    assert attnviz.variants is sys.modules["attnviz.learn.variants"]
    assert {LoadedModel, ModelInfo, Trace} and issubclass(ModelLoadError, Exception)
    assert all(callable(f) for f in (additive, multi_head, scaled_dot_product))


def test_every_cli_command_is_still_there() -> None:
    result = subprocess.run([sys.executable, "-m", "attnviz", "--help"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert {"models", "prepare", "trace", "attribute"} <= set(listed)


# What reaches above a clone's root: every ancestor of a file (``.parents`` iterated), the root's or the working
# folder's parent, or a "../name" path ("../.." starts the hostile model names tests send, which never leave the test).
CLIMBS = re.compile(r"""\.parents\b(?!\[)|\b(?:ROOT|cwd\(\))\.parent\b|["']\.\./(?!\.\.)\w""")


def climbs_out(path: str, text: str) -> bool:
    """Whether the code of the tracked file ``path`` reaches above the clone's root."""
    root_index = len(Path(path).parts) - 1  # Path(__file__).parents[root_index] is the root
    too_high = any(int(k) > root_index for k in re.findall(r"parents\[(\d+)\]", text))
    return too_high or CLIMBS.search(text) is not None


def test_nothing_reads_a_folder_beside_the_clone() -> None:
    """A user's clone has nothing beside it: data a feature, test or benchmark needs ships in the repo."""
    # The guard catches the reads that once broke a fresh clone, and lets the root itself be read.
    quality = "benchmarks/quality.py"
    assert climbs_out(quality, 'CASES = Path(__file__).resolve().parents[2] / "data" / "demo.jsonl"')
    assert climbs_out(quality, "found = [f for f in Path(__file__).resolve().parents if (f / 'data').exists()]")
    assert climbs_out(quality, 'open("../data/demo.jsonl")') and climbs_out(quality, 'ROOT.parent / "data"')
    assert climbs_out(quality, 'Path.cwd().parent / "data"')
    assert not climbs_out("tests/apptest.py", 'APP = str(Path(__file__).resolve().parents[1] / "app.py")')
    assert not climbs_out("tests/test_bad_input.py", '["/etc", "~", "../../../../../etc"]')
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    readers = [f for f in tracked.split() if (f.endswith((".py", ".sh")) or f == "Makefile") and f != THIS]
    outside = [f for f in readers if climbs_out(f, (ROOT / f).read_text(encoding="utf-8"))]
    assert outside == []


def test_importing_the_package_imports_no_concept_and_threads_import_the_library_in_turn() -> None:
    """The server's preload thread and pages' scripts import at once. A package __init__ that pulled in every
    concept let them deadlock on half-imported modules (the Heads page's _DeadlockError), and transformers' lazy
    modules fail when two threads import from them ("cannot import name AutoConfig"): the package imports no
    concept, and ui.startup.import_library takes every import in turn."""
    script = (
        "import sys, threading, attnviz\n"
        "assert not [m for m in sys.modules if m.startswith(('attnviz.tracing', 'attnviz.sources', 'attnviz.heads'))]\n"
        "from ui.startup import import_library\n"
        "failed = []\n"
        "def page():\n"
        "    try:\n"
        "        import_library()\n"
        "    except Exception as problem:\n"
        "        failed.append(repr(problem))\n"
        "threads = [threading.Thread(target=page) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert not failed, failed\n"
        "assert all(m in sys.modules for m in ('attnviz.heads.examples', 'ui.cache', 'attnviz.sources.study'))\n"
        "print(attnviz.trace.__module__, attnviz.ModelLoadError.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["attnviz.tracing.trace", "ModelLoadError"]


def test_every_page_imports_the_library_through_import_library_first() -> None:
    """A page opened by URL on a fresh server runs without app.py, so each page takes the import turn itself."""
    for page in sorted((ROOT / "pages").glob("*.py")):
        body = [n for n in ast.parse(page.read_text(encoding="utf-8")).body
                if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]  # fmt: skip
        imports = [n for n in body if isinstance(n, ast.ImportFrom) and n.module != "__future__"]
        assert imports and imports[0].module == "ui.startup" and imports[0].names[0].name == "import_library", page
        call = body[body.index(imports[0]) + 1]
        assert isinstance(call, ast.Expr) and ast.unparse(call) == "import_library()", page
