"""Which programming language an answer's code is in, and which one its instruction asks for.

An answer's code is its fenced blocks (or the whole answer where it has none and reads as
code). A block's language is its fence label (``js``, ``c++``, ``golang``, ... normalised), else
what its content looks like: each language's telltale tokens are counted, and among the
languages they suggest the one whose parser (tree-sitter, :mod:`codecheck`) accepts the code
wins. The answer's language is that of its largest block.

The instruction's language is the one it names ("Write a Rust function", "in Go", "a SQL
query"); when it names none or several, it asks for none, and no answer is ever dropped for
its language then.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

# Fence labels and names, lower-cased, to one canonical name per language.
ALIASES = {
    **dict.fromkeys(("python", "py", "python3", "py3", "ipython", "pycon"), "python"),
    **dict.fromkeys(("javascript", "js", "node", "nodejs", "jsx", "mjs", "cjs"), "javascript"),
    **dict.fromkeys(("typescript", "ts", "tsx"), "typescript"),
    **dict.fromkeys(("java",), "java"),
    **dict.fromkeys(("c", "h"), "c"),
    **dict.fromkeys(("cpp", "c++", "cxx", "cc", "hpp", "h++"), "cpp"),
    **dict.fromkeys(("csharp", "c#", "cs", "dotnet"), "csharp"),
    **dict.fromkeys(("go", "golang"), "go"),
    **dict.fromkeys(("rust", "rs"), "rust"),
    **dict.fromkeys(("sql", "mysql", "postgresql", "postgres", "psql", "sqlite", "plsql", "tsql"), "sql"),
    **dict.fromkeys(("bash", "sh", "shell", "zsh", "ksh", "shellscript", "console", "terminal"), "bash"),
    **dict.fromkeys(("php",), "php"),
    **dict.fromkeys(("ruby", "rb"), "ruby"),
    **dict.fromkeys(("kotlin", "kt", "kts"), "kotlin"),
    **dict.fromkeys(("swift",), "swift"),
    **dict.fromkeys(("scala", "sc"), "scala"),
    **dict.fromkeys(("r",), "r"),
    **dict.fromkeys(("lua",), "lua"),
    **dict.fromkeys(("perl", "pl"), "perl"),
    **dict.fromkeys(("haskell", "hs"), "haskell"),
    **dict.fromkeys(("dart",), "dart"),
    **dict.fromkeys(("julia", "jl"), "julia"),
    **dict.fromkeys(("elixir", "ex", "exs"), "elixir"),
    **dict.fromkeys(("powershell", "ps1", "pwsh"), "powershell"),
    **dict.fromkeys(("html", "htm"), "html"),
    **dict.fromkeys(("css", "scss"), "css"),
    **dict.fromkeys(("json", "jsonc"), "json"),
    **dict.fromkeys(("yaml", "yml"), "yaml"),
    **dict.fromkeys(("matlab", "octave"), "matlab"),
    **dict.fromkeys(("objective-c", "objc", "objectivec"), "objc"),
    **dict.fromkeys(("fortran", "f90"), "fortran"),
    **dict.fromkeys(("zig",), "zig"),
    **dict.fromkeys(("ocaml", "ml"), "ocaml"),
    **dict.fromkeys(("clojure", "clj"), "clojure"),
    **dict.fromkeys(("erlang", "erl"), "erlang"),
    **dict.fromkeys(("groovy",), "groovy"),
    **dict.fromkeys(("fsharp", "f#"), "fsharp"),
    **dict.fromkeys(("lisp", "commonlisp", "elisp"), "commonlisp"),
    **dict.fromkeys(("scheme", "racket"), "scheme"),
    **dict.fromkeys(("dockerfile", "docker"), "dockerfile"),
    **dict.fromkeys(("makefile", "make"), "make"),
    **dict.fromkeys(("solidity", "sol"), "solidity"),
    **dict.fromkeys(
        ("verilog", "vhdl", "assembly", "asm", "nasm", "cobol", "vb", "vbnet", "pascal", "delphi"), "other"
    ),
}
# Fence labels that hold no code: program output, prose, diffs.
NOT_CODE = {"text", "txt", "plaintext", "plain", "output", "out", "log", "md", "markdown", "diff", "none", "result"}
# Languages whose answers satisfy a request for the other (a TypeScript request answered in
# plain JavaScript is still in the asked-for language family).
SAME_FAMILY = {frozenset(("javascript", "typescript")), frozenset(("c", "cpp"))}

_M = re.MULTILINE
# Telltale tokens per language: (pattern, weight). Content detection counts them.
TELLTALES: dict[str, list[tuple[re.Pattern, int]]] = {
    "python": [
        (re.compile(r"^\s*def \w+\(.*\)\s*(->\s*[^:]+)?:\s*$", _M), 3),
        (re.compile(r"^\s*(import \w+|from [\w.]+ import )", _M), 2),
        (re.compile(r"^\s*(elif |class \w+.*:\s*$)", _M), 2),
        (re.compile(r"\bprint\(|\bself\.|\bNone\b|\bTrue\b|\bFalse\b"), 1),
    ],
    "javascript": [
        (re.compile(r"\bfunction\s*\w*\s*\([^)]*\)\s*\{"), 2),
        (re.compile(r"^\s*(const|let|var) \w+\s*=", _M), 2),
        (re.compile(r"=>\s*[{(]?|console\.log\(|\bdocument\.|\brequire\(|module\.exports|===|!=="), 2),
        (re.compile(r"^\s*export (default |const |function )", _M), 1),
    ],
    "typescript": [
        (re.compile(r"\b(interface|type) \w+\s*(=|\{)"), 3),
        (re.compile(r"\w\s*:\s*(number|string|boolean|void|any|unknown)(\[\])?\b"), 3),
        (re.compile(r"^\s*(const|let) \w+\s*:", _M), 2),
    ],
    "java": [
        (re.compile(r"\b(public|private|protected)\s+(static\s+)?(final\s+)?[\w<>\[\]]+\s+\w+\s*\("), 3),
        (re.compile(r"System\.out\.print|\bString\[\] args|\bnew \w+(<.*>)?\(|\bimport java\."), 3),
        (re.compile(r"^\s*(public )?class \w+", _M), 1),
    ],
    "c": [
        (re.compile(r"#include\s*<(stdio|stdlib|string|math|stdbool|stdint)\.h>"), 4),
        (re.compile(r"\bprintf\(|\bmalloc\(|\bscanf\(|\bint main\s*\("), 2),
        (re.compile(r"^\s*(static\s+)?(unsigned\s+)?(int|char|void|float|double|long)\s*\*?\s*\w+\s*\(", _M), 1),
    ],
    "cpp": [
        (re.compile(r"#include\s*<(iostream|vector|string|map|algorithm|unordered_map|set)>"), 4),
        (re.compile(r"\bstd::|\bcout\s*<<|\bcin\s*>>|\btemplate\s*<|using namespace std"), 3),
    ],
    "csharp": [
        (re.compile(r"^\s*using System", _M), 4),
        (re.compile(r"Console\.Write|\bnamespace \w+|\bpublic static void Main|\bstring\[\] args"), 3),
        (re.compile(r"\b(public|private)\s+(static\s+)?\w+\s+[A-Z]\w*\s*\("), 1),
    ],
    "go": [
        (re.compile(r"^\s*package \w+", _M), 4),
        (re.compile(r"^\s*func (\(\w+ \*?\w+\) )?\w+\(", _M), 3),
        (re.compile(r"\bfmt\.|:=|\bimport \(|\bchan\b|\bgo func"), 2),
    ],
    "rust": [
        (re.compile(r"^\s*(pub )?fn \w+(<.*>)?\(", _M), 3),
        (re.compile(r"\blet mut\b|\bprintln!|\bimpl\b|\b&mut\b|\bVec<|\bOption<|\bResult<|::new\("), 2),
        (re.compile(r"^\s*use (std|crate)::", _M), 2),
    ],
    "sql": [
        (
            re.compile(
                r"^\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (OR REPLACE )?(TABLE|INDEX|VIEW|FUNCTION)|"
                r"ALTER TABLE|DROP (TABLE|INDEX|VIEW)|WITH \w+ AS)\b",
                _M | re.I,
            ),
            4,
        ),
        (re.compile(r"\b(FROM|WHERE|GROUP BY|ORDER BY|JOIN|HAVING|VALUES|PRIMARY KEY|NOT NULL)\b"), 1),
    ],
    "bash": [
        (re.compile(r"^#!/(usr/)?bin/(env )?(ba|z)?sh", _M), 4),
        (re.compile(r"^\s*(if \[|\[\[ |for \w+ in |while \[|done\s*$|fi\s*$|esac\s*$)", _M), 2),
        (re.compile(r"^\s*(readonly|local|unset|source|set -[a-z]+)\b", _M), 2),
        (re.compile(r"^\s*(echo|grep|awk|sed|export|cd|ls|mkdir|chmod|curl|apt-get|pip|sudo) ", _M), 2),
        (re.compile(r"\$\{\w+|\$\(|\|\s*(grep|awk|sed|sort|head|tail|xargs|wc|cut)\b|\$[0-9@#?]"), 1),
    ],
    "php": [
        (re.compile(r"<\?php"), 5),
        (re.compile(r"\$\w+\s*=|function \w+\s*\(\s*\$|\becho \$|->\w+\(|\barray\("), 2),
    ],
    "ruby": [
        (re.compile(r"^\s*def \w+[?!]?(\(.*\))?\s*$", _M), 2),
        (re.compile(r"^\s*end\s*$", _M), 2),
        (re.compile(r"\bputs\b|\.each do \||\battr_(reader|accessor)\b|\brequire '|\bdo \|\w+\|"), 2),
    ],
    "kotlin": [
        (re.compile(r"^\s*fun \w+(<.*>)?\(", _M), 3),
        (re.compile(r"\bval \w+|\bvar \w+\s*:|\bprintln\(|\bdata class\b|\bwhen\s*\("), 2),
    ],
    "swift": [
        (re.compile(r"^\s*func \w+(<.*>)?\(.*\)\s*(->|\{)", _M), 3),
        (re.compile(r"\blet \w+\s*[:=]|\bvar \w+\s*:|\bguard let\b|\bif let\b|->\s*\w+\s*\{"), 2),
        (re.compile(r"\bimport (Foundation|UIKit|SwiftUI)"), 4),
    ],
}
# A line-leading keyword any code has and prose rarely does: gates "is this bare answer code?".
_CODE_LINE = re.compile(
    r"^\s*(def |class |return |import |from \S+ import |function |const |let |var |fn |func |fun |package |"
    r"#include|public |private |for \(|for \w+ in |while |if \(|\}|<\?php|#!/|"
    r"if \[|\[\[ |fi$|then$|done$|source |readonly |unset |local |set -|echo )",
    re.MULTILINE | re.IGNORECASE,
)
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)

# What instructions call each language: a pattern over the instruction's text, and the
# lower-case literals of which every match contains one. The pattern decides; the literals only
# spare it the search where none occurs (a substring test is far cheaper than a regex search,
# and most instructions name one language of these 24 or none).
_REQUESTS = {
    # A file name names its language too ("write main.rs", "fix utils.py"; not C's ".c", which
    # attribute access spells: "Language.C", "a.b.c.d").
    "python": (r"(\bpython\b|\b\w+\.py\b(?!\.\w))", ("python", ".py")),
    "javascript": (r"\b(javascript|node\.?js|js)\b", ("javascript", "node", "js")),
    "typescript": (r"\b(typescript|ts)\b", ("typescript", "ts")),
    "java": (r"\bjava\b(?!\s*script)", ("java",)),
    "c": (
        r"(\bin c\b|\bc (program|function|code|language)\b|\bansi c\b|\bc99\b|\bc11\b)(?![+#])",
        ("in c", "c program", "c function", "c code", "c language", "ansi c", "c99", "c11"),
    ),
    "cpp": (r"(c\+\+|\bcpp\b)", ("c++", "cpp")),
    "csharp": (r"(c#|\bc sharp\b|\bcsharp\b|\.net\b|\b\w+\.cs\b(?!\.\w))", ("c#", "c sharp", "csharp", ".net", ".cs")),
    "go": (
        r"(\bgolang\b|\bin go\b|\bgo (program|function|code|routine|module|method|struct|interface|package|"
        r"func|type|slice|map|channel|generic)s?\b|\b\w+\.go\b)",
        # "go " is in every "go program", "go method", ...: one substring test for all of them.
        ("golang", "in go", "go ", ".go"),
    ),
    "rust": (r"(\brust\b|\b\w+\.rs\b(?!\.\w))", ("rust", ".rs")),
    "sql": (r"\b(sql|mysql|postgresql|postgres|sqlite)\b", ("sql", "postgres")),
    "bash": (
        r"(\b(bash|shell script|zsh|shell command)\b|\b\w+\.sh\b(?!\.\w))",
        ("bash", "shell script", "zsh", "shell command", ".sh"),
    ),
    "php": (r"\bphp\b", ("php",)),
    "ruby": (r"(\bruby\b|\b\w+\.rb\b(?!\.\w))", ("ruby", ".rb")),
    "kotlin": (r"(\bkotlin\b|\b\w+\.kts?\b(?!\.\w))", ("kotlin", ".kt")),
    "swift": (r"\bswift\b", ("swift",)),
    "scala": (r"\bscala\b", ("scala",)),
    "haskell": (r"\bhaskell\b", ("haskell",)),
    "lua": (r"\blua\b", ("lua",)),
    "perl": (r"\bperl\b", ("perl",)),
    "r": (
        r"(\bin r\b|\br (script|function|code|language)\b)",
        ("in r", "r script", "r function", "r code", "r language"),
    ),
    "dart": (r"\bdart\b", ("dart",)),
    "julia": (r"\bjulia\b", ("julia",)),
    "elixir": (r"\belixir\b", ("elixir",)),
    "powershell": (r"\bpowershell\b", ("powershell",)),
}
_REQUEST_PATTERNS = {language: re.compile(pattern, re.IGNORECASE) for language, (pattern, _) in _REQUESTS.items()}
# Where an instruction names several languages, the one it asks *in* ("a Go function that calls
# JavaScript" asks for Go): named after a word that asks for code in it, or before a kind of code.
_ASKING_BEFORE = (
    r"(?:\b(?:in|using|with|write|writing|create|implement|build|code|port|translate\w*\s+\w+\s+to)\s+(?:an?\s+)?)"
)
_KINDS_OF_CODE = (
    r"(?:\s+(?:function|method|program|code|class|script|snippet|implementation|module|struct|trait|impl|interface|"
    r"type|query|extension|solution|macro|closure|enum|generic|package|component|hook|test)s?\b(?!['’]))"
)
_NAMES = {
    "python": r"python3?", "javascript": r"javascript|node\.?js|js", "typescript": r"typescript|ts",
    "java": r"java(?!\s*script)", "c": r"c(?![+#\w])|ansi c|c99|c11", "cpp": r"c\+\+|cpp",
    "csharp": r"c#|c sharp|csharp",
    "go": r"go|golang", "rust": r"rust", "sql": r"sql|mysql|postgresql|postgres|sqlite", "bash": r"bash|shell|zsh",
    "php": r"php", "ruby": r"ruby", "kotlin": r"kotlin", "swift": r"swift", "scala": r"scala", "haskell": r"haskell",
    "lua": r"lua", "perl": r"perl", "r": r"r(?![\w#+])", "dart": r"dart", "julia": r"julia", "elixir": r"elixir",
    "powershell": r"powershell",
}  # fmt: skip
# "Convert this Python to Rust" asks for Rust: the target of a translation beats every other mention.
_TARGET_PATTERNS = {
    language: re.compile(
        # Within the sentence: a dot only inside a name (parser.py, os.path).
        rf"\b(?:port|convert|translate|rewrite|migrate)\w*\b(?:[^.\n]|\.(?=\w)){{0,80}}?\b(?:to|into)\s+(?:{names})(?![\w+#])",
        re.IGNORECASE,
    )
    for language, names in _NAMES.items()
}
_ASKED_PATTERNS = {
    language: re.compile(rf"{_ASKING_BEFORE}(?:{names})(?![\w+#])|(?<![\w.])(?:{names}){_KINDS_OF_CODE}", re.IGNORECASE)
    for language, names in _NAMES.items()
}
# (language, literal) pairs, flat: one ``in`` per literal, no generator per language.
_REQUEST_LITERALS = [(language, literal) for language, (_, literals) in _REQUESTS.items() for literal in literals]


def canonical(label: str) -> str | None:
    """The language a fence label names (``None`` for an empty or unknown label)."""
    return ALIASES.get(label.strip().lower())


@functools.lru_cache(maxsize=8)
def fenced_blocks(answer: str) -> tuple[tuple[str, str], ...]:
    """Each fenced block's (label, code), in order (remembered for the few most recent answers:
    the code check and the signature check of one answer read its blocks once)."""
    return tuple(FENCE.findall(answer))


def looks_like_code(text: str) -> bool:
    """Whether unfenced text reads as code: a line only code starts with, and most lines code
    (statements, indented lines, comments, a SQL statement's clauses, shell command lines), where
    prose is sentences."""
    lines = [line for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if not _COMMENT.match(line)), "")
    sql = _SQL_STATEMENT.match(first) is not None
    if not lines or not (sql or _CODE_LINE.search(text) or _ASSIGNMENT.search(text) or _SHELL_COMMAND.search(text)):
        return False
    codeish = sum(1 for line in lines if _codeish(line) or (sql and _sql_clause(line)))
    return codeish * 5 >= len(lines) * 3


_ASSIGNMENT = re.compile(r"^\s*[\w.$\[\]]+\s*[-+*/]?=\s*\S", re.MULTILINE)
_COMMENT = re.compile(r"^\s*(#|//|/\*|\*|--|<!--|;;|%)")
# Unfenced SQL starts with a statement (not "Select the option ..."), and its clauses start the
# lines after it: "FROM orders", "GROUP BY customer_id" read as code only in such text.
_SQL_STATEMENT = re.compile(
    r"^\s*(?:select\s*$|select\s+(?:distinct\s+|top\s+\d+\s+)?(?:\*|.*?\bfrom\b|[\w.]+\s*(?:\(|,|\s+as\b|$))|insert\s+into\s+\w"
    r"|update\s+\w+\s+set\b|delete\s+from\s+\w|with\s+(?:recursive\s+)?\w+\s+as\s*\("
    r"|create\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?(?:unique\s+)?(?:table|view|index|function|procedure|trigger)\b"
    r"|alter\s+table\b|drop\s+(?:table|view|index)\b)",
    re.IGNORECASE,
)
_SQL_CLAUSE_START = re.compile(
    r"^\s*(?:from|where|group\s+by|order\s+by|having|limit|offset|(?:left|right|inner|full|cross)?\s*(?:outer\s+)?join"
    r"|on|and|or|union|intersect|except|values|set|returning|case|when|then|else|end|select|\))\b",
    re.IGNORECASE,
)
# A shell command line: a command users run, then a flag, a pipe, a redirection or a
# substitution ("find . -name '*.py' | xargs wc -l"), where prose ("find the file") has none.
_SHELL_COMMAND = re.compile(
    r"^\s*(?:sudo\s+)?(?:find|grep|egrep|awk|sed|xargs|wc|sort|uniq|head|tail|cat|ls|cp|mv|rm|mkdir|chmod|chown|tar"
    r"|curl|wget|ps|kill|pkill|du|df|git|docker|printf|cut|tr|tee|ssh|scp|rsync|systemctl|journalctl|crontab|touch"
    r"|ln|zip|unzip|gzip|diff|jq|pip3?|npm|python3?|bash|sh|nohup|time|env|openssl|make)\b"
    r"[^\n]*?(?:\s-{1,2}[A-Za-z]|\s\|\s|&&|\$\(|\$\{|\s>>?\s*\S|2>&1)[^\n]*$",
    re.MULTILINE,
)


def _sql_clause(line: str) -> bool:
    starts = _SQL_CLAUSE_START.match(line) or _SQL_STATEMENT.match(line)
    return starts is not None and not line.rstrip().endswith((".", "?", "!"))


def _codeish(line: str) -> bool:
    stripped = line.rstrip()
    return bool(
        _CODE_LINE.match(line)
        or _ASSIGNMENT.match(line)
        or _COMMENT.match(line)
        or (_SHELL_COMMAND.match(line) and not stripped.endswith((".", "?", "!")))
        or stripped.endswith((";", "{", "}", ":", ")", ",", "(", "[", "]"))
        or (line[:1] in " \t" and not stripped.endswith((".", "?", "!")))
    )


def detect(code: str, parses: Callable[[str, str], bool | None]) -> str | None:
    """The language ``code`` is most likely in, or None when nothing suggests one.
    ``parses(language, code)`` says whether that language's parser accepts it (None: no parser)."""
    scores = {}
    for language, telltales in TELLTALES.items():
        score = sum(weight * len(pattern.findall(code)) for pattern, weight in telltales)
        if score:
            scores[language] = score
    if "typescript" in scores and "javascript" in scores:
        scores["typescript"] += scores["javascript"]  # TypeScript is JavaScript with types
    if "cpp" in scores and "c" in scores:
        scores["cpp"] += scores["c"]
    ranked = sorted(scores, key=lambda language: -scores[language])
    for language in ranked[:3]:
        if parses(language, code):
            return language
    return ranked[0] if ranked else None


def requested(instruction: str) -> str | None:
    """The one language the instruction names, or None (none named, or several)."""
    if instruction.isascii():
        # Exact for ASCII: a case-insensitive match there lower-cases to one of the literals.
        # Elsewhere Unicode case folding (the Kelvin sign matches k) could match without them.
        lowered = instruction.lower()
        candidates = {language for language, literal in _REQUEST_LITERALS if literal in lowered}
    else:
        candidates = _REQUEST_PATTERNS
    return choose(instruction, {language for language in candidates if _REQUEST_PATTERNS[language].search(instruction)})


def choose(instruction: str, named: set[str]) -> str | None:
    """The language asked for among those ``instruction`` names: the one, or where it names
    several, the target of a translation, else the one it asks for code in, else none."""
    if len(named) > 1:
        for patterns in (_TARGET_PATTERNS, _ASKED_PATTERNS):
            asked = {language for language in named if patterns[language].search(instruction)}
            if asked:
                named = asked
                break
    return one_language(named)


def one_language(named: set[str]) -> str | None:
    """The one language of those an instruction's patterns matched (TypeScript over the
    JavaScript its name contains, JavaScript over the Java its name contains), or None."""
    named = set(named)
    if "typescript" in named and "javascript" in named:
        named.discard("javascript")
    if "java" in named and "javascript" in named:
        named.discard("java")
    return named.pop() if len(named) == 1 else None


def same_language(asked: str, answered: str) -> bool:
    return asked == answered or frozenset((asked, answered)) in SAME_FAMILY
