"""Typed config: presets, dotted overrides, validation with one clear sentence."""

import pytest

from mixcollapse.config import ConfigError, config_from_dict, dump_yaml, load_config, to_dict


def test_defaults_preset_and_overrides_compose():
    cfg = load_config("digits", ["train.lr=0.1", "mixing.alpha=0.4", "data.classes=[0,2,4,6]"])
    assert cfg.data.name == "digits" and cfg.model.name == "small"
    assert cfg.train.lr == 0.1 and cfg.mixing.alpha == 0.4
    assert cfg.data.classes == [0, 2, 4, 6]
    assert cfg.train.momentum == 0.9  # untouched default (Appendix B.1)


def test_int_is_accepted_where_a_float_is_expected():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


def test_exponent_without_a_dot_is_a_number():
    """YAML 1.1 reads 5e-4 as a string; a float field takes it as the number it looks like."""
    assert load_config(None, ["train.weight_decay=5e-4"]).train.weight_decay == 5e-4


def test_round_trip_through_dict_and_yaml():
    import yaml

    cfg = load_config("digits", ["model.fixed_etf=true"])
    assert config_from_dict(to_dict(cfg)) == cfg
    assert config_from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", "unknown config key 'train.lrr'"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("train.lr=.nan", "train.lr: expected a finite number"),
        ("mixing.alpha=.inf", "mixing.alpha: expected a finite number"),
        ("train.weight_decay=nan", "train.weight_decay: expected a finite number"),
        ("mixing.alpha=-1", "mixing.alpha=-1.0 must be >= 0"),
        ("data.name=imagenet", "data.name='imagenet' is not one of"),
        ("analysis.classes=[0,1,12]", "index 12 out of range"),
        ("data.classes=[0,10]", "index 10 out of range"),
        ("train.epochs=0", "train.epochs=0 must be >= 1"),
        ("data.classes=[1,1,2]", "lists class 1 more than once"),
        ("data.classes=[3]", "must list at least two class indices"),
        ("model.name=wrn", None),
        ("lr", "must look like section.key=value"),
    ],
)
def test_bad_values_give_one_clear_sentence(override, message):
    if message is None:
        load_config("digits", [override])
        return
    with pytest.raises(ConfigError) as err:
        load_config("digits", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="presets: .*digits"):
        load_config("no-such-preset")


def test_apply_overrides_can_be_limited_to_some_sections():
    from mixcollapse.config import apply_overrides

    cfg = load_config("digits")
    apply_overrides(cfg, ["analysis.seed=3"], allowed=("analysis.",))
    assert cfg.analysis.seed == 3
    with pytest.raises(ConfigError, match="override 'train.lr' is not allowed here .*analysis."):
        apply_overrides(cfg, ["train.lr=0.2"], allowed=("analysis.",))
    assert cfg.train.lr == 0.1  # nothing applied


def test_an_empty_preset_file_is_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(str(empty))
