"""One home per setting: every declared setting reaches the environment, the command line, the
Dagster config and README, from its one declaration; nothing is built at import."""

import re
import subprocess
import sys

import pytest

from qaq_assets.cli import build_parser
from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.settings import (
    BY_NAME,
    DEFINITIONS,
    INGEST,
    LAKE,
    RUNNER,
    SCORING,
    SELECTION,
    SETTINGS,
    Settings,
    in_group,
    markdown_table,
)
from qaq_assets_tests.helpers import REPO

README = REPO / "README.md"


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {option for action in sub._actions for option in action.option_strings}


# Values other than the default that each setting allows (the rest: one per type).
EXAMPLES = {
    "device": "cpu",
    "models": "a=random:tiny-llama,b=random:tiny-llama:1",
    "max_sequence_tokens": "512",
    "fields": "instruction=prompt,response=completion",
}


def test_every_setting_is_read_from_its_environment_variable():
    environ = {
        s.env_var: EXAMPLES.get(s.name)
        or {str: "x", int: "7", float: "0.75", bool: str(not s.default).lower(), list: "a,b", dict: '{"k": "v"}'}[
            s.kind
        ]
        for s in SETTINGS
        if not s.choices
    }
    environ |= {s.env_var: s.choices[-1] for s in SETTINGS if s.choices}
    settings = Settings.from_env(environ)
    for s in SETTINGS:
        expected = s.parse(environ[s.env_var])
        assert getattr(settings, s.name) == expected != s.default, s.name
    with pytest.raises(QaqError, match="QAQ_BATCH_TOKENS='many': expected int"):
        Settings.from_env({"QAQ_BATCH_TOKENS": "many"})
    with pytest.raises(QaqError, match=r"--template \(QAQ_TEMPLATE\) must be one of"):
        Settings.from_env({"QAQ_TEMPLATE": "fancy"})
    with pytest.raises(QaqError, match=r"--budget \(QAQ_BUDGET\) must be in \(0, 1\], not 1.5"):
        Settings.from_env({"QAQ_BUDGET": "1.5"})
    with pytest.raises(QaqError, match="QAQ_ALLOW_SHRINK='maybe': expected bool"):
        Settings.from_env({"QAQ_ALLOW_SHRINK": "maybe"})


def test_every_setting_has_its_flag_and_dagster_field_and_readme_row():
    curate = _flags("curate")
    for s in in_group(LAKE, SCORING, RUNNER, SELECTION, INGEST):
        assert s.cli_flag in curate, s.name
    from qaq_assets.definitions import build_definitions
    from qaq_assets.defs.resources import LakeResource, ScoringModelsResource

    defs = build_definitions(Settings(models=["tiny=random:tiny-llama"]))
    fields = {
        SCORING: set(ScoringModelsResource.model_fields),
        SELECTION: set(defs.resolve_assets_def("curated_subset").op.config_schema.config_type.fields),
        INGEST: set(defs.resolve_assets_def("raw_samples").op.config_schema.config_type.fields),
    }
    for group, names in fields.items():
        assert names == {s.name for s in in_group(group)}, group
    assert set(LakeResource.model_fields) == {"root", "storage_options_env"}  # secrets: environment only
    assert {s.name for s in in_group(DEFINITIONS)} == {"landing_dir", "scoring_op_tags"}
    text = README.read_text()
    block = text.split("<!-- settings:start -->\n")[1].split("<!-- settings:end -->")[0]
    assert block.strip() == markdown_table(), "README's settings table: python -m qaq_assets.lib.settings"
    resource = ScoringModelsResource.model_fields["batch_tokens"]
    assert resource.default == BY_NAME["batch_tokens"].default and resource.description.startswith("tokens per")


def test_the_written_out_dagster_classes_match_their_stage_settings():
    """Each Dagster config class names its fields in source; their types, defaults and help are
    the declarations' (a field added to a stage and not to its class, or typed otherwise, fails)."""
    import typing

    from qaq_assets.defs.ingest.assets import IngestRunConfig
    from qaq_assets.defs.resources import ScoringModelsResource
    from qaq_assets.defs.selection.assets import CurationRunConfig

    for config_class, group in (
        (ScoringModelsResource, SCORING),
        (CurationRunConfig, SELECTION),
        (IngestRunConfig, INGEST),
    ):
        fields = config_class.model_fields
        assert list(fields) == [s.name for s in in_group(group)], config_class.__name__
        for s in in_group(group):
            field = fields[s.name]
            assert (typing.get_origin(field.annotation) or field.annotation) is s.kind, s.name
            assert field.get_default(call_default_factory=True) == s.default, s.name
            assert field.description.startswith(s.help), s.name


def test_the_environment_sets_the_defaults_the_launchpad_shows(monkeypatch):
    from qaq_assets.definitions import build_definitions

    settings = Settings.from_env(
        {"QAQ_BUDGET": "0.4", "QAQ_LABEL_FIELD": "kind", "QAQ_MODELS": "tiny=random:tiny-llama"}
    )
    defs = build_definitions(settings)
    selection = defs.resolve_assets_def("curated_subset").op.config_schema.config_type.fields
    ingest = defs.resolve_assets_def("raw_samples").op.config_schema.config_type.fields
    assert selection["budget"].default_value == 0.4 and ingest["label_field"].default_value == "kind"


def test_nothing_is_built_at_import_and_a_bad_environment_fails_clearly_on_load(tmp_path):
    code = (
        "import qaq_assets.definitions as d, qaq_assets.runner.curate, qaq_assets.cli\n"
        "try:\n    d.defs()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    env = {"QAQ_MODELS": "a=random:tiny-llama,a=random:tiny-llama:1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ModelSpecError model keys must be distinct, got ['a', 'a']; name them with KEY=SPEC"


def test_the_command_line_starts_without_torch_or_dagster():
    # What keeps `qaq --help` instant is that nothing heavy is imported (behaviour, not a timing).
    code = (
        "import sys\nimport qaq_assets.cli as c\nc.build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'dagster', 'polars', 'transformers') if m in sys.modules))"
    )
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert heavy.strip() == "[]"
    assert re.search(
        r"--batch-tokens BATCH_TOKENS\s+tokens per forward pass",
        subprocess.run(
            [sys.executable, "-m", "qaq_assets.cli", "curate", "--help"], capture_output=True, text=True, check=True
        ).stdout,
    )
