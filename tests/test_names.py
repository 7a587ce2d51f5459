"""Every public name of the package says which: no public class or function name is defined in two modules
(a reader who meets ``Judge`` or ``open_judge`` must not have to ask which), and no module is named like a
standard-library module (``io.py`` reads as the standard ``io``), and no two modules share a file name
(``summary.py`` in two packages makes a reader ask which one an import or a traceback means). The modules
are read with ``ast``, not imported, so the test is instant and imports nothing heavy."""

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "humpback"

# name -> (the modules allowed to define it, why). A duplicate outside these modules still fails.
SHARED_NAMES = {
    "score": ({"humpback.judges.additive", "humpback.judges.likelihood", "humpback.judges.rating",
               "humpback.judges.rubric", "humpback.judges.verifier"},
              "every judge module's one entry point, score(rows, judge); judges.score_rows picks the module"),
    "rows_generate": ({"humpback.judges.additive", "humpback.judges.rating"},
                      "the rating-style judges' row builders have one shape per module (additive's call rating's)"),
    "rows_logits": ({"humpback.judges.additive", "humpback.judges.rating"}, "as rows_generate"),
    "rows_both": ({"humpback.judges.additive", "humpback.judges.rating"}, "as rows_generate"),
    "main": ({"humpback.cli", "humpback.training.launch"},
             "an entry point's conventional name: the humpback command, python -m humpback.training.launch"),
    "materialize": ({"humpback.assets", "humpback.tiny", "humpback.worlds"},
                    "each built-in asset family's one entry point, materialize(name, cache_dir); "
                    "builtin_names.resolve picks the module"),
}

# module -> why it keeps a standard-library name for now.
STDLIB_NAMED: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _public_definitions() -> dict[str, set[str]]:
    defined = defaultdict(set)
    for module, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
            definition = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if definition and not node.name.startswith("_"):
                defined[node.name].add(module)
    return defined


def test_the_walk_sees_the_package():
    modules = _modules()
    assert "humpback.judges" in modules and "humpback.stages.evaluate" in modules and len(modules) > 100
    defined = _public_definitions()
    assert defined["CurationJudge"] == {"humpback.judges"}
    assert defined["PairwiseJudge"] == {"humpback.evaluation.pairwise"}


def test_no_public_name_is_defined_in_two_modules():
    clashes = {}
    for name, modules in _public_definitions().items():
        allowed = SHARED_NAMES.get(name, (set(), ""))[0]
        if len(modules) > 1 and not modules <= allowed:
            clashes[name] = sorted(modules)
    assert not clashes, f"public names defined in more than one module (rename them to say which): {clashes}"


def test_no_module_is_named_like_a_standard_library_module():
    stdlib = {n for n in sys.stdlib_module_names if not n.startswith("_")}
    clashes = sorted(m for m in _modules() if m.rsplit(".", 1)[-1] in stdlib and m not in STDLIB_NAMED)
    assert not clashes, f"modules named like a standard-library module (name them for what they hold): {clashes}"


def test_no_two_modules_share_a_file_name():
    # Stage files keep their stage's name; the other module of a pair is named for what it holds.
    by_name = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__init__.py":
            by_name[path.name].append(str(path.relative_to(PACKAGE.parent)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"module file names used more than once (name each for what it holds): {clashes}"


def test_every_exception_gives_its_reason():
    # An entry whose modules no longer clash is harmless (a misspelt module only narrows it), so entries are
    # not required to name existing modules: another branch may rename them away.
    assert all(allowed and reason for allowed, reason in SHARED_NAMES.values())
    assert all(STDLIB_NAMED.values())
