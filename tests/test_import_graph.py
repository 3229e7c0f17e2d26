"""The project's rule "no import cycles", checked over every import in
pyxenon, those inside functions too (a lazy import is still a dependency)."""
import ast
import pathlib

import pyxenon

ROOT = pathlib.Path(pyxenon.__file__).parent


def module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node, package, modules):
    """The pyxenon modules one import statement names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    base = node.module or ""
    if node.level:
        parent = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parent + ([base] if base else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def import_graph():
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= imported(node, package, paths)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def cycle_from(graph, start):
    """A path start -> ... -> start, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for dep in graph[node]:
            if dep == start:
                return path + [start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, path + [dep]))
    return None


def test_no_import_cycles():
    graph = import_graph()
    cycles = [c for c in (cycle_from(graph, m) for m in sorted(graph)) if c]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_lazy_imports():
    # the checker itself: xl's create -F imports the run outcome inside a function
    assert "pyxenon.toolstack.outcome" in import_graph()["pyxenon.toolstack.xl"]
