"""The [[experiments]] section: parsed from TOML (datetimes or unix seconds), and a malformed
experiment refused at load time with its key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ConfigError, load_experiments, load_settings

GOOD = """
[[experiments]]
name = "lambda"
layer = "rerank"
start = 2026-01-01T00:00:00Z
end = 2026-02-01
traffic = 0.5
arms = [{ name = "control", share = 0.5 },
        { name = "lam08", share = 0.5, overrides = { diversity_lambda = 0.8, explore_slots = 1 } }]

[[experiments]]
name = "rankers"
layer = "ranking"
kind = "interleave"
start = 1767225600
end = "2026-03-01T00:00:00+00:00"
arms = [{ name = "v7", overrides = { model_version = "7" } },
        { name = "v8", overrides = { model_version = "8" } }]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamrec.toml"
    path.write_text(text)
    return path


def test_experiments_load_with_datetimes_and_seconds(tmp_path: Path):
    settings = load_settings(_write(tmp_path, GOOD))
    lam, rankers = settings.experiments
    assert lam.start == 1767225600.0 and lam.end == 1769904000.0  # a TOML date is midnight UTC
    assert lam.arms[1].overrides.changed() == {"diversity_lambda": 0.8, "explore_slots": 1}
    assert rankers.kind == "interleave" and rankers.end == 1772323200.0
    assert load_experiments(_write(tmp_path, GOOD)) == settings.experiments


@pytest.mark.parametrize(("change", "key", "words"), [
    (("share = 0.5 },", "share = 0.7 },"), "experiments.0", "sum to 1"),
    (("diversity_lambda = 0.8", "diversity_lambda = 1.8"), "experiments.0.arms.1.overrides.diversity_lambda",
     "less than or equal to 1"),
    (("explore_slots = 1", "explore_slot = 1"), "experiments.0.arms.1.overrides.explore_slot",
     "Extra inputs"),
    (("end = 2026-02-01", "end = 2025-02-01"), "experiments.0", "must be after start"),
    (('name = "v8"', 'name = "v7"'), "experiments.1", "unique"),
    (('layer = "ranking"', 'layer = "rerank"'), "experiments", "experiments.1.offset: slice"),
])
def test_a_malformed_experiment_is_refused_naming_the_key(tmp_path: Path, change: tuple[str, str],
                                                          key: str, words: str):
    path = _write(tmp_path, GOOD.replace(*change, 1))
    for load in (load_settings, load_experiments):
        with pytest.raises(ConfigError) as err:
            load(path)
        assert err.value.keys == [key], err.value.keys
        assert words in str(err.value)


def test_two_interleavings_may_not_run_in_different_layers_at_once(tmp_path: Path):
    head = 'name = "lambda"\nlayer = "rerank"'
    text = GOOD.replace(head, head + '\nkind = "interleave"')
    text = text.replace('share = 0.5, overrides = { diversity_lambda = 0.8, explore_slots = 1 }',
                        'overrides = { explore_slots = 1 }').replace('{ name = "control", share = 0.5 }',
                                                                      '{ name = "control" }')
    with pytest.raises(ConfigError) as err:
        load_experiments(_write(tmp_path, text))
    assert "experiments.1.kind: a second interleaving" in str(err.value)


def test_two_layers_may_not_override_the_same_setting_at_once(tmp_path: Path):
    text = GOOD.replace('overrides = { model_version = "7" }', 'overrides = { explore_slots = 0 }', 1)
    with pytest.raises(ConfigError) as err:
        load_experiments(_write(tmp_path, text))
    assert "experiments.1.arms: overrides 'explore_slots' like experiment 'lambda'" in str(err.value)
