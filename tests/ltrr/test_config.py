import pytest

from ltrr import registry
from ltrr.config import DEFAULT_CONFIG, default_config, load_config, parse_config
from ltrr.errors import ConfigError, UnknownComponentError


def test_demo_toml_equals_embedded_defaults(repo_root):
    assert load_config(repo_root / "configs" / "demo.toml") == default_config()


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as exc:
        parse_config({"strategies": [{"name": "bm25", "dephts": [0, 10]}]}, "x.toml")
    assert str(exc.value) == (
        "x.toml: unknown key 'strategies[0].dephts'; allowed keys: depths, name, params, retrain_every, type"
    )


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown key 'polcy'; allowed keys: catalog, context_features, incumbent, page_size, policy"):
        parse_config({**DEFAULT_CONFIG, "polcy": {}}, "x.toml")


def test_bad_value_names_parameter_and_value():
    with pytest.raises(ConfigError, match=r"the 'policy\.budget' parameter input should be greater than 0\. Got 0 instead"):
        parse_config({"strategies": [{"name": "bm25"}], "policy": {"budget": 0}}, "x.toml")


def test_repeated_strategy_names_rejected():
    with pytest.raises(ConfigError, match="repeated: bm25"):
        parse_config({"strategies": [{"name": "bm25"}, {"name": "bm25"}]}, "x.toml")


def test_invalid_toml_names_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("seed = = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(p)


def test_relative_paths_resolve_against_config_dir(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[catalog]\npath = "cat.jsonl"\n[[strategies]]\nname = "bm25"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(exc.value) == (f"{p}: catalog.path 'cat.jsonl', resolved relative to the config file's "
                              f"directory, is {tmp_path / 'cat.jsonl'}: does not exist")
    (tmp_path / "cat.jsonl").write_text('{"id": "a"}\n')
    assert load_config(p).catalog.path == str(tmp_path / "cat.jsonl")


def test_unknown_component_lists_registered_names():
    with pytest.raises(UnknownComponentError) as exc:
        registry.get("strategy", "bm52")
    msg = str(exc.value)
    assert msg.startswith("Unknown strategy 'bm52'; registered strategy names: ")
    assert msg.endswith(", ".join(registry.names("strategy")))


def test_register_plugin():
    class Dummy:
        pass

    registry.register("strategy", "dummy_test_plugin", Dummy)
    assert registry.get("strategy", "dummy_test_plugin") is Dummy
    assert "dummy_test_plugin" in registry.names("strategy")


def test_unknown_kind():
    with pytest.raises(UnknownComponentError, match="Unknown component kind 'strat'"):
        registry.names("strat")
