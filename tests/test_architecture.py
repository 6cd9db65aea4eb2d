"""The shape of the package: dependency arrows that point one way (no import
cycle among robyn_fast's modules, counting every import statement, also those
under TYPE_CHECKING or inside functions), a compiled core that imports
nothing of robyn_fast but its exceptions and its safe-logging module (both
leaves), and no module importing another's
private names."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "robyn_fast"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """module -> {(imported module, names imported from it)}, resolved to robyn_fast's modules."""
    graph: dict[str, set[tuple[str, tuple[str, ...]]]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_package else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = tuple(a.name for a in node.names)
                for name in names:  # `from .pkg import module`
                    if f"{target}.{name}" in mods:
                        graph[mod].add((f"{target}.{name}", ()))
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add((target, names))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    while target and target not in mods:
                        target = target.rpartition(".")[0]
                    if target and target != mod:
                        graph[mod].add((target, ()))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _symlinks() -> list[str]:
    """The repository's symbolic links: git's record (mode 120000) in a checkout, else (an
    unpacked sdist) a walk of the tree, leaving out what builds and virtualenvs make."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        listing = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        entries = [entry.decode() for entry in listing.split(b"\0") if entry]
        return sorted(entry.split("\t", 1)[1] for entry in entries if entry.startswith("120000 "))
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "dist", "__pycache__")
                   and not d.endswith(".egg-info")]
        found += [str(Path(folder, name).relative_to(ROOT)) for name in dirs + files if Path(folder, name).is_symlink()]
    return sorted(found)


def test_the_repository_has_no_symlinks() -> None:
    """A link does not survive every checkout (a fresh-clone CI run broke on robyn_fast/_core ->
    ../_core): the compiled core stays in the top-level _core/, and setup.py's package_dir and
    robyn_fast/__init__.py (from a checkout) map it to robyn_fast._core."""
    assert _symlinks() == []
    assert not (PACKAGE / "_core").exists(), "robyn_fast/_core: the core lives in the top-level _core/"


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: {t for t, _ in edges if t != "robyn_fast"} for m, edges in _imports(mods).items()}
    assert "robyn_fast.server" in graph and "robyn_fast.websocket.endpoint" in graph
    assert _cycles(graph) == []


def test_the_server_does_not_import_the_app_or_the_endpoints() -> None:
    graph = _imports(_modules())
    server = {t for t, _ in graph["robyn_fast.server"]}
    assert not server & {"robyn_fast.app", "robyn_fast.websocket", "robyn_fast.websocket.endpoint"}
    protocol = {t for t, _ in graph["robyn_fast.http.protocol"]}
    assert "robyn_fast.server" not in protocol and "robyn_fast.app" not in protocol


def test_http_knows_nothing_of_websockets() -> None:
    """The HTTP layer hands upgrades to its host; the WebSocket side builds on
    HTTP types, never the other way round."""
    for mod, edges in _imports(_modules()).items():
        if mod.startswith("robyn_fast.http"):
            assert not {t for t, _ in edges if t.startswith("robyn_fast.websocket")}, mod


def test_no_module_imports_private_names_of_another() -> None:
    offenders = [
        f"{mod} imports {name} from {target}"
        for mod, edges in _imports(_modules()).items()
        for target, names in edges
        for name in names
        if name.startswith("_") and not name.startswith("__") and target.split(".")[-1] != "_core"
    ]
    assert offenders == []


def test_the_compiled_core_imports_only_the_exceptions_and_logs_of_robyn_fast() -> None:
    imports = set()
    for source in (ROOT / "_core").glob("*.py[xd]"):
        for line in source.read_text().splitlines():
            m = re.match(r"\s*(?:from|cimport|import)\s+(robyn_fast[\w.]*)", line)
            if m:
                imports.add(m.group(1))
    assert imports == {"robyn_fast.exceptions", "robyn_fast.logs", "robyn_fast._core.codec", "robyn_fast._core.metrics"}


def test_the_protocol_module_is_sans_io() -> None:
    """The WebSocket state machine imports no asyncio, no socket and no
    transport: bytes and the time in, frames, events and deadlines out."""
    imported = set()
    for suffix in ("pyx", "pxd"):
        text = (ROOT / "_core" / f"protocol.{suffix}").read_text()
        for line in text.splitlines():
            m = re.match(r"\s*(?:from\s+([\w.]+)\s+c?import|c?import\s+([\w.]+))", line)
            if m:
                imported.add(m.group(1) or m.group(2))
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert not re.search(r"\.(transport|loop)\b|\b(call_later|call_soon|get_running_loop|get_event_loop)\b",
                             code), suffix
    assert imported <= {
        "cython", "cpython.bytes", "libc.stdint", "os", "robyn_fast._core.codec", "robyn_fast._core.metrics",
        "robyn_fast.exceptions", "robyn_fast.logs",
    }, imported
    assert not imported & {"asyncio", "socket", "ssl", "selectors", "uvloop", "robyn_fast._core.connection"}


def test_the_modules_the_core_imports_are_leaves() -> None:
    # robyn_fast.logs and robyn_fast.exceptions import nothing of robyn_fast, so the
    # compiled core depends on no other part of the Python layer through them.
    for module in ("exceptions", "logs"):
        tree = ast.parse((ROOT / "robyn_fast" / f"{module}.py").read_text())
        imported = [
            node.module or "" if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        ]
        relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0]
        assert relative == [] and [name for name in imported if name.startswith("robyn_fast")] == [], module


def _reachable(graph: dict[str, set[tuple[str, tuple[str, ...]]]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target, _ in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_command_line_is_below_the_brokers_the_app_and_the_package_root() -> None:
    """cli reads flags, variables and robyn.env into settings: nothing it imports, directly or
    through another module, function-local imports included, may be the package root, the app,
    the server, a running broker or the workers (they sit above it and use it)."""
    graph = _imports(_modules())
    below = _reachable(graph, "robyn_fast.cli")
    above = {"robyn_fast", "robyn_fast.app", "robyn_fast.server", "robyn_fast.broker", "robyn_fast.broker.redis",
             "robyn_fast.broker.local", "robyn_fast.workers", "robyn_fast.workers.supervisor",
             "robyn_fast.workers.reloader", "robyn_fast.workers.launch", "robyn_fast.listener"}
    assert below & above == set(), sorted(below & above)
    # the declarations of the settings are a leaf that Config and cli both build on
    assert {t for t, _ in graph["robyn_fast.settings"]} == set()
    assert "robyn_fast.settings" in below and "robyn_fast.config" in below


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.Call)]


def test_one_launch_path() -> None:
    """Binding, the broker, the supervisor, the reloader and "cannot listen
    on" exist once (STYLE item 37): robyn_fast.listener binds every
    listening socket and alone touches SO_REUSEPORT (a second server must
    fail to bind, not join the first's group); robyn_fast.workers.launch
    starts everything else."""
    mods = _modules()
    binders, listeners, launchers, brokers, messages, reuseport = set(), set(), set(), set(), set(), set()
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {
            id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "cannot listen on" in node.value \
                    and id(node) not in docstrings:
                messages.add(mod)
            if isinstance(node, ast.Attribute) and node.attr == "SO_REUSEPORT":
                reuseport.add(mod)
        for call in _calls(path):
            func = call.func
            if isinstance(func, ast.Attribute):
                receiver = func.value.id if isinstance(func.value, ast.Name) else ""
                if func.attr == "bind" and receiver != "self":
                    binders.add(mod)
                if func.attr == "listen":
                    listeners.add(mod)
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("Supervisor", "Reloader"):
                launchers.add(mod)
            if name == "RedisBroker":
                brokers.add(mod)
    assert binders == {"robyn_fast.listener"} and listeners == {"robyn_fast.listener"}
    assert launchers == {"robyn_fast.workers.launch"} and brokers == {"robyn_fast.workers.launch"}
    assert messages == {"robyn_fast.workers.launch"} and reuseport == {"robyn_fast.listener"}
    # app.start() goes through the launch path, not around it.
    app = {t for t, _ in _imports(mods)["robyn_fast.app"]}
    assert "robyn_fast.workers.launch" in app
    assert not app & {"robyn_fast.workers.supervisor", "robyn_fast.workers.reloader", "robyn_fast.listener",
                      "robyn_fast.broker.redis"}
