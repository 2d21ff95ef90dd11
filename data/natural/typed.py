"""The tasks in typed languages (Rust, Java): each parameter's and the result's type read off the test
cases, the signature a user would write in the request, and the cases as assertions.

A task whose cases mix types (a list of strings in one case, of integers in another) keeps the
cases of its most common typing; tasks with maps or mixed lists are not posed in these languages.
"""

from __future__ import annotations

from collections import Counter


def kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        inner = {kind(item) for item in value}
        if not inner:
            return "list[?]"
        return f"list[{inner.pop()}]" if len(inner) == 1 else "mixed"
    return "unsupported"


def _compatible(found: str, wanted: str) -> bool:
    """``found`` fits ``wanted``: the same, or an empty list where a list is wanted."""
    return found == wanted or (found == "list[?]" and wanted.startswith("list["))


def typed_task(task: tuple) -> tuple[list[str], str, list] | None:
    """(parameter types, result type, the cases of that typing), or None where it has none."""
    _, params, _, cases = task
    typings = Counter()
    for args, expected in cases:
        typings[tuple(kind(value) for value in (*args, expected))] += 1
    concrete = [typing for typing in typings if not any("?" in k for k in typing)]
    if not concrete:
        return None
    chosen = max(concrete, key=lambda typing: typings[typing])
    if any(k in ("mixed", "unsupported") or "mixed" in k for k in chosen):
        return None
    kept = [
        (args, expected)
        for args, expected in cases
        if all(_compatible(kind(v), k) for v, k in zip((*args, expected), chosen, strict=True))
    ]
    return list(chosen[:-1]), chosen[-1], kept


RUST_PARAM = {
    "int": "i64",
    "str": "&str",
    "bool": "bool",
    "list[int]": "Vec<i64>",
    "list[str]": "Vec<String>",
    "list[list[int]]": "Vec<Vec<i64>>",
    "list[bool]": "Vec<bool>",
}
RUST_RESULT = {**RUST_PARAM, "str": "String"}
JAVA_TYPE = {
    "int": "int",
    "str": "String",
    "bool": "boolean",
    "list[int]": "int[]",
    "list[str]": "String[]",
    "list[list[int]]": "int[][]",
    "list[bool]": "boolean[]",
}


def rust_value(value, kind_name: str, as_param: bool) -> str:
    if kind_name == "str":
        return f"{value!r}".replace("'", '"') if as_param else f"String::from({_quoted(value)})"
    if kind_name == "bool":
        return "true" if value else "false"
    if kind_name == "int":
        return str(value)
    inner = kind_name[5:-1]
    items = ", ".join(rust_value(item, inner, False if inner == "str" else as_param) for item in value)
    return f"vec![{items}]" if items or inner != "?" else "vec![]"


def java_value(value, kind_name: str) -> str:
    if kind_name == "str":
        return _quoted(value)
    if kind_name == "bool":
        return "true" if value else "false"
    if kind_name == "int":
        return str(value)
    inner = kind_name[5:-1]
    return f"new {JAVA_TYPE[kind_name]}{{" + ", ".join(java_value(item, inner) for item in value) + "}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def rust_signature(task: tuple, typed: tuple) -> str:
    name, params, _, _ = task
    types, result, _ = typed
    arguments = ", ".join(f"{p.strip()}: {RUST_PARAM[t]}" for p, t in zip(params.split(","), types, strict=True))
    return f"fn {name}({arguments}) -> {RUST_RESULT[result]}"


def java_signature(task: tuple, typed: tuple) -> str:
    name, params, _, _ = task
    types, result, _ = typed
    arguments = ", ".join(f"{JAVA_TYPE[t]} {camel(p.strip())}" for p, t in zip(params.split(","), types, strict=True))
    return f"public static {JAVA_TYPE[result]} {camel(name)}({arguments})"


def rust_tests(task: tuple, typed: tuple) -> list[str]:
    name = task[0]
    types, result, cases = typed
    tests = []
    for args, expected in cases:
        call = f"{name}({', '.join(rust_value(a, t, True) for a, t in zip(args, types, strict=True))})"
        tests.append(f"assert_eq!({call}, {rust_value(expected, result, False)});")
    return tests


def java_tests(task: tuple, typed: tuple) -> list[str]:
    name = camel(task[0])
    types, result, cases = typed
    tests = []
    for args, expected in cases:
        call = f"Solution.{name}({', '.join(java_value(a, t) for a, t in zip(args, types, strict=True))})"
        want = java_value(expected, result)
        if result.startswith("list[list"):
            tests.append(f"assert java.util.Arrays.deepEquals({call}, {want});")
        elif result.startswith("list"):
            tests.append(f"assert java.util.Arrays.equals({call}, {want});")
        elif result == "str":
            tests.append(f"assert {call}.equals({want});")
        else:
            tests.append(f"assert {call} == {want};")
    return tests
