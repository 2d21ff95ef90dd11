"""Cheap code signals per answer: does its code parse, in which language, and is that the
language the instruction asked for?

Python is parsed with the interpreter's own ``ast``, SQL with ``sqlglot``; the other languages with
tree-sitter's grammars (``tree-sitter-language-pack``, compiled into the wheel, nothing downloaded): a parse
tree without ERROR or MISSING nodes is valid code. A cut-off function fails both. Languages
without a grammar are ``unchecked``, never dropped for it.
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
import warnings
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from qaq_assets.lib.ingest import languages
from qaq_assets.lib.ingest.sql_syntax import sql_parses

VALID = "valid"
SYNTAX_ERROR = "syntax_error"
OTHER_LANGUAGE = "other_language"
NO_CODE = "no_code"
UNCHECKED = "unchecked"
CUT_OFF = "cut_off"  # a code block opened and never closed: the answer stops inside it
STUB = "stub"  # functions that do nothing (pass, ..., todo!(), throw new UnsupportedOperationException(), // TODO)
# Prefix of the status of an answer the check itself could not judge ("check_failed:MemoryError").
CHECK_FAILED = "check_failed"
# Statuses that show an answer's code is not a usable answer (the selection's code check drops them).
UNUSABLE = (SYNTAX_ERROR, OTHER_LANGUAGE, NO_CODE, CUT_OFF, STUB)
_FENCE_LINE = re.compile(r"^\s*```", re.MULTILINE)


@dataclass(frozen=True)
class CodeCheck:
    status: str  # valid, syntax_error, other_language, no_code, unchecked or check_failed:<error>
    language: str | None  # the answer's (its largest code block's)
    requested: str | None  # the instruction's, where it names exactly one


@functools.lru_cache(maxsize=8)
def _tree(code: str) -> ast.Module:
    """``ast.parse(code)``, remembered for the few most recent texts: the code check and the
    signature check of one answer parse it once (the parser is ingest's costliest step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in user code
        return ast.parse(code)


def _python_parses(code: str) -> bool:
    try:
        tree = _tree(code)
    except (SyntaxError, ValueError):
        return False
    # A lone string or name is prose that happens to parse, not code.
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.Name))) for node in tree.body
    )


@functools.lru_cache(maxsize=64)
def tree_sitter_parser(language: str):
    """tree-sitter's parser for ``language``, or None where the pack has no grammar."""
    try:
        from tree_sitter_language_pack import get_parser

        return get_parser(language)  # the pack's grammar names are the canonical names
    except (ImportError, LookupError, ValueError):
        return None


# tree-sitter grammars too narrow for the dialects real answers use: its SQL grammar rejected all
# 38 PostgreSQL files sampled from this machine. SQL is read by sqlglot instead (sql_syntax).
UNRELIABLE_GRAMMARS = frozenset({"sql"})


def parses(language: str, code: str) -> bool | None:
    """Whether ``code`` parses as ``language`` (None: no reliable parser for it)."""
    if language == "python":
        return _python_parses(code)
    if language == "sql":
        return sql_parses(code)
    if language in UNRELIABLE_GRAMMARS:
        return None
    parser = tree_sitter_parser(language)
    if parser is None:
        return None
    if language == "php" and "<?php" not in code:
        code = "<?php\n" + code  # PHP's grammar reads anything before the tag as HTML
    return not _syntax_tree(language, code).root_node.has_error


@functools.lru_cache(maxsize=8)
def _syntax_tree(language: str, code: str):
    """tree-sitter's tree of ``code``, remembered for the few most recent texts: the parse check
    and the stub check of one block parse it once (``language`` must have a parser)."""
    return tree_sitter_parser(language).parse(code.encode("utf-8"))


def _block_language(label: str, code: str, asked: str | None) -> str | None:
    named = languages.canonical(label)
    if named is not None:
        return named
    # Unlabelled code that parses as the asked-for language is taken as it: C# and Java, or PHP
    # without its tag and JavaScript, share much of their syntax.
    if asked is not None and parses(asked, code):
        return asked
    found = languages.detect(code, parses)
    if found is None and _python_parses(code):
        return "python"  # plain statements with no telltale (x = f(1)): the common case
    # Code with no telltale left (a cut answer) is judged as the language asked for.
    return found or asked


def code_blocks(answer: str, asked: str | None) -> list[tuple[str | None, str]]:
    """The answer's code as (language, code) blocks: fenced blocks that hold code, else the
    whole answer where it reads as code."""
    blocks = languages.fenced_blocks(answer)
    if blocks:
        return [
            (_block_language(label, code, asked), code)
            for label, code in blocks
            if label.strip().lower() not in languages.NOT_CODE and code.strip()
        ]
    if _python_parses(answer) or languages.looks_like_code(answer):
        return [(_block_language("", answer, asked), answer)]
    return []


def check_code(instruction: str, answer: str) -> CodeCheck:
    """The answer's code status, its language and the language asked for. A failure of the
    check itself is the status ``check_failed:<error>`` (CPython's parser raises MemoryError on
    a few KB of ``"the " * 2000``): one sample never stops a curation."""
    try:
        asked = languages.requested(instruction)
    except Exception:  # noqa: BLE001 - no evidence of a request either way
        asked = None
    try:
        return _check(asked, answer)
    except Exception as error:  # noqa: BLE001 - any failure is this sample's, recorded as its status
        return CodeCheck(f"{CHECK_FAILED}:{type(error).__name__}", None, asked)


def _check(asked: str | None, answer: str) -> CodeCheck:
    blocks = code_blocks(answer, asked)
    if not blocks:
        return CodeCheck(NO_CODE, None, asked)
    language = max(blocks, key=lambda block: len(block[1]))[0]
    if asked and language and language != "other" and not languages.same_language(asked, language):
        return CodeCheck(OTHER_LANGUAGE, language, asked)
    if len(_FENCE_LINE.findall(answer)) % 2:
        return CodeCheck(CUT_OFF, language, asked)
    if language == "python" and all(_is_stub(code) for block_language, code in blocks if block_language == "python"):
        return CodeCheck(STUB, language, asked)
    if language not in (None, "python", "other") and all(
        _is_tree_stub(language, code) for block_language, code in blocks if block_language == language
    ):
        return CodeCheck(STUB, language, asked)
    verdicts = [parses(block_language, code) for block_language, code in blocks if block_language]
    checked = [verdict for verdict in verdicts if verdict is not None]
    if not checked:
        return CodeCheck(UNCHECKED, language, asked)
    return CodeCheck(VALID if all(checked) else SYNTAX_ERROR, language, asked)


def _trivial(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return True  # a docstring, or ...
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        raised = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"
    return False


def _is_stub(code: str) -> bool:
    """Python whose every function (and class method) does nothing, with nothing else beside."""
    try:
        tree = _tree(code)
    except (SyntaxError, ValueError):
        return False
    allowed = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    if not all(isinstance(node, allowed) for node in tree.body):
        return False
    # Stops at the first function that does something (most answers' first): a trivial body holds
    # no nested function, so only classes are walked whole.
    found = False
    for node in tree.body:
        nested = ast.walk(node) if isinstance(node, ast.ClassDef) else (node,)
        for function in nested:
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not all(_trivial(statement) for statement in function.body):
                    return False
                found = True
    return found


# A statement that stands for a body not written, in any language: Rust's todo!()/unimplemented!(),
# Kotlin's TODO(), Go's panic("not implemented"), Java's and C#'s NotImplemented/UnsupportedOperation exceptions,
# JavaScript's throw new Error("not implemented").
_STUB_STATEMENT = re.compile(
    r"^(?:return\s+)?(?:(?:todo|unimplemented)!\s*\(.*\)|(?-i:TODO)\s*\(.*\)"
    r"|panic!?\s*\(\s*\"[^\"]*(?:not\s+(?:yet\s+)?implemented|unimplemented|todo)[^\"]*\"\s*\)"
    r"|throw\s+new\s+(?:\w+\.)*(?:UnsupportedOperationException|NotImplementedException|NotImplementedError)\s*\(.*\)"
    r"|throw\s+(?:new\s+)?Error\s*\(\s*[\"'`][^\"'`]*(?:not\s+(?:yet\s+)?implemented|unimplemented|todo)[^\"'`]*[\"'`]\s*\)"
    r"|raise\s+NotImplementedError\b.*)\s*;?$",
    re.IGNORECASE | re.DOTALL,
)
_COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment"})


def _function_body(node):
    """The body of a function or method node (None for other nodes)."""
    if "function" not in node.type and "method" not in node.type:
        return None
    body = node.child_by_field_name("body")
    return body or next((child for child in node.children if child.type == "function_body"), None)


def _is_tree_stub(language: str, code: str) -> bool:
    """Code in ``language`` (tree-sitter) whose every function or method body is empty, only
    comments (``// TODO``), or one statement that stands for a body not written."""
    if tree_sitter_parser(language) is None or language in UNRELIABLE_GRAMMARS:
        return False
    source = code.encode("utf-8")
    stack, found = [_syntax_tree(language, code).root_node], False
    while stack:
        node = stack.pop()
        body = _function_body(node)
        if body is None or body.type in ("expression_statement",):
            stack.extend(node.children)
            continue
        if body.type not in ("block", "statement_block", "compound_statement", "function_body", "constructor_body"):
            return False  # an expression body (an arrow function): written code
        statements = [child for child in body.named_children if child.type not in _COMMENT_TYPES]
        if len(statements) == 1 and statements[0].type == "statements":  # Kotlin wraps them
            statements = [child for child in statements[0].named_children if child.type not in _COMMENT_TYPES]
        if len(statements) > 1:
            return False
        text = (
            source[statements[0].start_byte : statements[0].end_byte].decode("utf-8", "replace") if statements else ""
        )
        if statements and not _STUB_STATEMENT.match(text.strip()):
            return False
        found = True
    return found


SIGNATURE_MATCH, SIGNATURE_MISMATCH, SIGNATURE_UNKNOWN = "match", "mismatch", "unknown"
# The function takes parameters and its body uses none of them: a body written for other inputs.
SIGNATURE_UNUSED = "unused"
# The instruction asks for `name(...)` and the answer's code (any language) never names it: the
# tests, or the user, call a function that is not there.
SIGNATURE_MISSING = "missing"
_ASKED = re.compile(r"`([A-Za-z_]\w*)\(([^`]*)\)`")
# A declaration in backticks, in any language: `fn merge_sorted(a: &[i32]) -> Vec<i32>`, `func (s
# *Stack) Push(x int)`, `public static int[] mergeSorted(int[] a)`, `function clamp<T>(x: T)`. It
# starts with a declaring word, so prose in backticks (``them (write mode)``) is no signature.
_DECLARED = re.compile(
    r"`\s*(?:(?:pub(?:\([^)]*\))?|public|private|protected|internal|static|async|export|final|override|"
    r"unsafe|const|extern)\s+)*(?:fn|func|function|def|fun|[\w<>\[\],.?]+)\s+(?:\([^)`]*\)\s*)?"
    r"([A-Za-z_]\w*)\s*(?:<[^<>()`]*>)?\s*\([^`\n]*`"
)
_DECLARING_WORDS = re.compile(
    r"`\s*(?:pub|public|private|protected|internal|static|async|export|fn|func|function|def|fun)\b"
)


def asked_call(instruction: str) -> tuple[str, str] | None:
    """The function an instruction asks for by a backticked call, `` `name(a, b)` ``: its name and
    its parameters' text."""
    asked = _ASKED.search(instruction)
    return (asked.group(1), asked.group(2)) if asked else None


def asked_name(instruction: str) -> str | None:
    """The function the instruction asks for by a backticked signature: `` `name(args)` ``, or a
    declaration in any language."""
    plain = _ASKED.search(instruction)
    if plain is not None:
        return plain.group(1)
    for declared in _DECLARED.finditer(instruction):
        if _DECLARING_WORDS.match(declared.group(0)):
            return declared.group(1)
    return None


def _parameters(function: ast.FunctionDef) -> list[str]:
    arguments = function.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
    names += [f"*{arguments.vararg.arg}"] if arguments.vararg else []
    names += [a.arg for a in arguments.kwonlyargs]
    names += [f"**{arguments.kwarg.arg}"] if arguments.kwarg else []
    return names


_PLAIN_PARAMETERS = re.compile(r"[ \t]*(?:[A-Za-z_]\w*[ \t]*(?:,[ \t]*[A-Za-z_]\w*[ \t]*)*(?:,[ \t]*)?)?", re.ASCII)


def _asked_parameters(name: str, arguments: str) -> list[str]:
    """The parameters of ``def name(arguments)`` as ``_parameters`` names them (SyntaxError where
    it does not parse). Plain ASCII names need no parse: they are the parameters themselves."""
    if _PLAIN_PARAMETERS.fullmatch(arguments):
        names = [argument.strip() for argument in arguments.split(",") if argument.strip()]
        if not any(keyword.iskeyword(argument) for argument in names):
            return names
    return _parameters(_tree(f"def {name}({arguments}): pass").body[0])


def _uses_none_of_its_parameters(function: ast.FunctionDef, source: str) -> bool:
    """A function with parameters (``self``, ``cls`` and ``_``-names aside) whose body never
    reads one of them: its body was written for other inputs. ``source`` is the code ``function``
    was parsed from."""
    names = {name.lstrip("*") for name in _parameters(function)} - {"self", "cls"}
    names = {name for name in names if not name.startswith("_")}
    if not names or all(_trivial(statement) for statement in function.body):
        return False  # no inputs, or a stub (code_status says so)
    # A statement whose lines never spell a parameter's name holds no read of it: only the others
    # are walked. Exact only where the parser's lines are the text's (ASCII: identifiers are not
    # normalised; no \r line ends); decorated definitions start above their line number.
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if source.isascii() and "\r" not in source:
        walked = [statement for statement in function.body if isinstance(statement, definitions)]
        walked += [s for s in _statements_spelling(function.body, source, names) if not isinstance(s, definitions)]
    else:
        walked = function.body
    return not any(
        isinstance(node, ast.Name) and node.id in names for statement in walked for node in ast.walk(statement)
    )


def _statements_spelling(body: list[ast.stmt], source: str, names: set[str]) -> list[ast.stmt]:
    """The statements of ``body`` (parsed from ``source``) whose lines spell one of ``names``:
    found by searching the text from one line that spells one to the next, not statement by
    statement."""
    # Where each line starts: lines a..b (from 1) are source[starts[a - 1] : starts[b] - 1].
    starts = [0, *accumulate(map((1).__add__, map(len, source.split("\n"))))]
    first_lines = [statement.lineno for statement in body]
    position, end = starts[body[0].lineno - 1], starts[body[-1].end_lineno] - 1
    found: list[ast.stmt] = []
    while hits := [at for at in (source.find(name, position, end) for name in names) if at >= 0]:
        line = bisect_right(starts, min(hits))
        # Every statement on that line: the last to start at or before it, and those before it
        # that end on it (``a = 1; b = x``).
        index = bisect_right(first_lines, line) - 1
        while index >= 0 and body[index].end_lineno >= line:
            found.append(body[index])
            index -= 1
        position = starts[line]
    return found


def _never_names(name: str, answer: str) -> bool:
    """The answer has code and none of it contains ``name`` as a word (no code: no evidence)."""
    blocks = languages.fenced_blocks(answer)
    if blocks:
        code = "\n".join(text for label, text in blocks if label.strip().lower() not in languages.NOT_CODE)
    else:
        code = answer if _python_parses(answer) or languages.looks_like_code(answer) else ""
    if not code.strip():
        return False
    # A plain search, not a regular expression per name: compiling one per sample cost more than
    # every other check of the sample together.
    start = code.find(name)
    while start >= 0:
        end = start + len(name)
        if not (start and _word_character(code[start - 1])) and not (end < len(code) and _word_character(code[end])):
            return False
        start = code.find(name, start + 1)
    return True


def _word_character(character: str) -> bool:
    return character.isalnum() or character in "_$"


def signature_status(instruction: str, answer: str) -> str:
    """Whether the answer's function fits the one asked for: ``mismatch`` where it takes other
    parameters than the instruction's backticked signature (`` `name(a, b=None)` ``) asks for
    (Python: their names; languages that pass arguments by position: their number), ``unused``
    where its body reads none of its parameters (a body written for another task, renamed and
    re-signed), ``match`` where it takes the asked parameters and uses them, ``missing`` where the
    answer's code, in any language, never names the function a backticked signature in any
    language asks for (`` `fn merge_sorted(...)` ``, `` `func (s *S) Push(x int)` ``), ``unknown``
    otherwise (no function found, no parser for its language)."""
    try:
        asked = _ASKED.search(instruction)
        name = asked_name(instruction)
        if name is not None and _never_names(name, answer):
            return SIGNATURE_MISSING
        found = _python_signature(answer, asked)
        if found is None and name is not None:
            found = _tree_signature(answer, name, asked)
        return found or SIGNATURE_UNKNOWN
    except Exception:  # noqa: BLE001 - unparsable either side: no evidence either way
        return SIGNATURE_UNKNOWN


def _python_signature(answer: str, asked: re.Match | None) -> str | None:
    """:func:`signature_status` of the answer's Python function (None: no Python function)."""
    fenced = languages.fenced_blocks(answer)
    python = [code for label, code in fenced if languages.canonical(label) in (None, "python")]
    source = python[0] if python else answer
    try:
        tree = _tree(source)
    except (SyntaxError, ValueError):
        return None
    # The first function in breadth-first order (the asked-for name where there is one).
    function = next(
        (
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and (asked is None or node.name == asked.group(1))
        ),
        None,
    )
    if function is None:
        return None
    if asked is not None:
        wanted = _asked_parameters(asked.group(1), asked.group(2))
        if _parameters(function) != wanted:
            return SIGNATURE_MISMATCH
    if _uses_none_of_its_parameters(function, source):
        return SIGNATURE_UNUSED
    return SIGNATURE_MATCH if asked is not None else SIGNATURE_UNKNOWN


# Languages whose parameters are passed by position, one entry each: an asked `name(a, b)` with
# another number of parameters cannot be called as asked (Go groups `a, b int` in one entry).
_POSITIONAL = frozenset({"javascript", "typescript", "java", "csharp", "rust", "kotlin"})
# What a function's parameter list holds besides its parameters.
_NOT_PARAMETERS = frozenset({"comment", "line_comment", "block_comment", "self_parameter", "receiver"})
_NAMES = frozenset({"identifier", "simple_identifier", "shorthand_property_identifier", "interpolated_identifier"})


def _tree_signature(answer: str, name: str, asked: re.Match | None) -> str | None:
    """:func:`signature_status` of the function ``name`` in the answer's code in a language
    tree-sitter parses (None: not found)."""
    for language, code in code_blocks(answer, None):
        if language in (None, "python") or language in UNRELIABLE_GRAMMARS or tree_sitter_parser(language) is None:
            continue
        found = _tree_function(_syntax_tree(language, code).root_node, name.encode())
        if found is None:
            continue
        parameters, body = found
        if asked is not None and language in _POSITIONAL and len(parameters) != _asked_count(asked.group(2)):
            return SIGNATURE_MISMATCH
        names = {name for parameter in parameters for name in parameter_names(parameter)} - {b"_"}
        if names and body is not None and not any(node.type in _NAMES and node.text in names for node in walk(body)):
            return SIGNATURE_UNUSED
        return SIGNATURE_MATCH if asked is not None else SIGNATURE_UNKNOWN
    return None


def walk(node):
    """A tree-sitter node and every node under it, in the order of the text."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _tree_function(root, name: bytes):
    """The parameters (a list of nodes) and body of the function or method ``name`` (a
    declaration, or a variable bound to an arrow function or function expression)."""
    for node in walk(root):
        named = node.child_by_field_name("name")
        if named is None:
            if "function" in node.type or "method" in node.type:
                unnamed = _unnamed_function(node, name)  # grammars without fields (Kotlin's)
                if unnamed is not None:
                    return unnamed
            continue
        if named.text != name:
            continue
        function = None
        if node.child_by_field_name("body") is not None:
            function = node
        elif node.type == "variable_declarator":
            value = node.child_by_field_name("value")
            if value is not None and value.type in ("arrow_function", "function_expression", "function"):
                function = value
        if function is None:
            continue
        single = function.child_by_field_name("parameter")  # x => x + 1
        listed = function.child_by_field_name("parameters")
        if single is not None:
            return [single], function.child_by_field_name("body")
        if listed is None:
            continue
        parameters = [child for child in listed.named_children if child.type not in _NOT_PARAMETERS]
        return parameters, function.child_by_field_name("body")
    return None


def _unnamed_function(node, name: bytes):
    """Parameters and body of a declaration whose grammar names no fields, where it is ``name``."""
    children = node.children
    if not any(child.type in _NAMES and child.text == name for child in children):
        return None
    listed = next((child for child in children if child.type.endswith("parameters")), None)
    if listed is None:
        return None
    body = next((child for child in children if child.type in ("function_body", "block")), None)
    return [child for child in listed.named_children if child.type not in _NOT_PARAMETERS], body


# What a parameter binds: a name, or the names of a destructuring pattern ({x, y}).
_BINDING = _NAMES | {"shorthand_property_identifier_pattern"}


def parameter_names(parameter) -> list[bytes]:
    """The names a parameter node binds, in order: its pattern's or default's left side, its
    names (Go's `a, b int` binds two), else every name in it outside its type."""
    if parameter.type in _BINDING:
        return [parameter.text]
    for field in ("pattern", "left"):
        bound = parameter.child_by_field_name(field)
        if bound is not None:
            return parameter_names(bound)
    named = parameter.children_by_field_name("name")
    if named:
        return [node.text for node in named]
    typed = parameter.child_by_field_name("type")
    outside_type = [child for child in parameter.children if typed is None or child.id != typed.id]
    return list(dict.fromkeys(node.text for child in outside_type for node in walk(child) if node.type in _BINDING))


_RECEIVER = re.compile(r"(?:^|,)\s*(?:&\s*)?(?:mut\s+)?(?:self|this)\s*(?=,|$)")


def _asked_count(arguments: str) -> int:
    """The asked parameters besides a receiver (Rust's ``&self``: no parameter entry of its own)."""
    return count_parameters(arguments) - len(_RECEIVER.findall(arguments))


def count_parameters(arguments: str) -> int:
    """How many parameters a backticked signature's text lists (commas outside brackets)."""
    depth, count = 0, 1 if arguments.strip() else 0
    for character in arguments:
        depth += character in "([{<"
        depth -= character in ")]}>"
        count += character == "," and depth == 0
    return count
