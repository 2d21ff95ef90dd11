"""``qaq bench sft`` at a tiny size: fine-tuning learns from answers that fit their queries, and
the whole bench runs end to end with its last line as a contract."""

import copy
import random
import re

import pytest

from qaq_assets.benchmarks.sft import Recipe, mean_answer_nll, train, training_example
from qaq_assets.cli import main
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets_tests.helpers import REPO, TINY

ANSWER_SHAPES = {
    "Python": "def {name}():\n    return {value}\n",
    "Rust": "fn {name}() -> i64 {{\n    {value}\n}}\n",
    "SQL": "SELECT {value} AS {name};\n",
    "JavaScript": "const {name} = () => {value};\n",
}
NAMES = ["total", "width", "answer", "limit", "offset", "count", "depth", "score", "ratio", "level"]

pytestmark = pytest.mark.slow  # fine-tunes models


def code_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """Requests whose answers depend on the query: its language picks the answer's shape."""
    chooser = random.Random(seed)
    pairs = []
    for _ in range(count):
        language = chooser.choice(sorted(ANSWER_SHAPES))
        name, value = chooser.choice(NAMES), chooser.randrange(100, 999)
        query = f"In {language}, define {name} returning {value}."
        pairs.append((query, ANSWER_SHAPES[language].format(name=name, value=value)))
    return pairs


def test_a_model_trained_on_fitting_answers_beats_one_trained_on_shuffled_answers(tiny_model):
    layouts = build_layouts("chat", tiny_model.tokenizer)
    recipe = Recipe(epochs=3, learning_rate=3e-3, batch=8, max_tokens=128)

    def examples(pairs):
        return [training_example(tiny_model.tokenizer, layouts, q, a, recipe.max_tokens) for q, a in pairs]

    clean = code_pairs(240, seed=1)
    answers = [answer for _, answer in clean]
    random.Random(2).shuffle(answers)
    shuffled = [(query, answer) for (query, _), answer in zip(clean, answers, strict=True)]
    held_out = examples(code_pairs(64, seed=3))

    nll = {}
    for name, pairs in {"clean": clean, "shuffled": shuffled}.items():
        model = copy.deepcopy(tiny_model.model)
        train(model, examples(pairs), recipe)
        nll[name] = mean_answer_nll(model, held_out)
    untrained = mean_answer_nll(tiny_model.model, held_out)
    # Both learn the answers' shapes; only fitting answers teach which shape a query asks for.
    assert nll["shuffled"] < untrained
    assert nll["clean"] < nll["shuffled"] - 0.05, nll


@pytest.mark.filterwarnings("ignore")
def test_the_sft_bench_runs_and_ends_with_its_figures(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    lines = (REPO / "data" / "eval" / "pypi.jsonl").read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:48]) + "\n", encoding="utf-8")
    held_out = REPO / "data" / "eval" / "stdlib_humaneval.jsonl"
    code = main(["bench", "sft", "--corpus", str(corpus), "--held-out", str(held_out), "--model", TINY,
                 "--device", "cpu", "--workdir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "reduced: sized to run on a CPU" in out and "recipe: 1 epoch(s)" in out
    assert "dropped as overlapping the evaluation" in out
    for subset in ("base", "default", "random_0", "random_1", "random_2", "ifd", "full"):
        assert re.search(rf"^{subset}\b.*HumanEval NLL \d+\.\d+, held-out NLL \d+\.\d+", out, re.M), subset
    verdict, last = out.strip().splitlines()[-2:]
    assert re.match(r"goal, held-out NLL: default below random by [-+]\d+\.\d+ against a seed spread", verdict)
    figures = " ".join(f"{prefix}_{name}=[\\d.]+" for prefix in ("nll", "humaneval_nll")
                       for name in ("default", "random", "random_sd", "ifd", "full"))  # fmt: skip
    assert re.fullmatch(figures, last), last
