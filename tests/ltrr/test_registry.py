"""The registry's plug-in mechanisms: entry points of every kind read lazily from installed
metadata (a distribution made here on sys.path), ``module:Class`` names, provenance, and the
install hint of a saved engine whose plug-in is missing."""

from __future__ import annotations

import sys
import textwrap

import pytest
from click.testing import CliRunner

from ltrr import registry
from ltrr.errors import UnknownComponentError


@pytest.fixture()
def fake_distribution(tmp_path, monkeypatch):
    """An installed distribution ``ltrr-fake-plugins`` 2.0 with a policy, a click model and a
    command as entry points (dist-info metadata on sys.path, as pip leaves it)."""
    site = tmp_path / "site"
    (site / "fake_plugins_mod").mkdir(parents=True)
    (site / "fake_plugins_mod" / "__init__.py").write_text(textwrap.dedent('''
        import click

        class GreedyPolicy:
            pass

        class AlwaysClick:
            def __init__(self, preset="navigational"):
                self.preset = preset

        @click.command()
        @click.option("--name", default="world")
        def hello(name):
            """Say hello."""
            click.echo(f"hello {name}")
    '''))
    info = site / "ltrr_fake_plugins-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ltrr-fake-plugins\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(
        "[ltrr.policies]\ngreedy_plugin = fake_plugins_mod:GreedyPolicy\n\n"
        "[ltrr.click_models]\nalways = fake_plugins_mod:AlwaysClick\n\n"
        "[ltrr.commands]\nhello = fake_plugins_mod:hello\nlog hello = fake_plugins_mod:hello\n\n"
        "[ltrr.rankers]\nbroken = fake_plugins_mod_missing:Nope\n")
    (info / "top_level.txt").write_text("fake_plugins_mod\n")
    monkeypatch.syspath_prepend(str(site))
    registry.refresh()
    yield site
    sys.modules.pop("fake_plugins_mod", None)
    monkeypatch.undo()
    registry.refresh()


def test_entry_points_of_every_kind_are_found_and_imported_only_when_used(fake_distribution):
    assert "greedy_plugin" in registry.names("policy")
    assert "always" in registry.names("click_model")
    assert "fake_plugins_mod" not in sys.modules  # listed from metadata, not imported
    klass = registry.get("policy", "greedy_plugin")
    assert klass.__name__ == "GreedyPolicy" and "fake_plugins_mod" in sys.modules
    assert registry.get("click_model", "always")(preset="perfect").preset == "perfect"
    p = registry.provenance("policy", "greedy_plugin")
    assert (p.source, p.distribution, p.version, p.target) == (
        "entry_point", "ltrr-fake-plugins", "2.0", "fake_plugins_mod:GreedyPolicy")


def test_a_broken_entry_point_names_itself_and_its_distribution(fake_distribution):
    with pytest.raises(UnknownComponentError) as exc:
        registry.get("ranker", "broken")
    assert str(exc.value) == ("ranker 'broken': the entry point 'fake_plugins_mod_missing:Nope' of the "
                              "distribution ltrr-fake-plugins cannot be loaded (No module named "
                              "'fake_plugins_mod_missing')")


def test_commands_from_entry_points_join_the_cli(fake_distribution):
    from ltrr.cli import main

    res = CliRunner().invoke(main, ["hello", "--name", "ltrr"], prog_name="ltrr")
    assert (res.exit_code, res.stdout) == (0, "hello ltrr\n")
    res = CliRunner().invoke(main, ["log", "hello"], prog_name="ltrr")
    assert (res.exit_code, res.stdout) == (0, "hello world\n")
    assert "hello" in CliRunner().invoke(main, ["--help"]).stdout


def test_module_class_names_and_their_provenance(fake_distribution):
    name = "fake_plugins_mod:AlwaysClick"
    assert registry.get("click_model", name).__name__ == "AlwaysClick"
    recs = registry.plugin_records([("click_model", name), ("strategy", "bm25")])
    assert recs == [{"kind": "click_model", "name": name, "target": name, "source": "path",
                     "distribution": "ltrr-fake-plugins", "version": "2.0"}]
    with pytest.raises(UnknownComponentError, match=r"^strategy 'nope_mod:X': cannot import module 'nope_mod' "
                                                    r"\(No module named 'nope_mod'\)$"):
        registry.get("strategy", "nope_mod:X")
    with pytest.raises(UnknownComponentError, match=r"module 'fake_plugins_mod' has no attribute 'Nope'"):
        registry.get("strategy", "fake_plugins_mod:Nope")


def test_missing_plugins_of_a_manifest_get_an_install_hint():
    with pytest.raises(UnknownComponentError) as exc:
        registry.check_plugin_records([{"kind": "policy", "name": "gone", "target": "gone_mod:Gone",
                                        "source": "entry_point", "distribution": "ltrr-gone",
                                        "version": "1.2"}], "e/manifest.json")
    assert str(exc.value).startswith("e/manifest.json: policy 'gone' comes from the plug-in distribution "
                                     "ltrr-gone 1.2, which cannot be loaded here (Unknown policy 'gone'; ")
    assert str(exc.value).endswith("; install it: pip install 'ltrr-gone==1.2'")
    with pytest.raises(UnknownComponentError) as exc:
        registry.check_plugin_records([{"kind": "strategy", "name": "local_mod:Mine", "target": "local_mod:Mine",
                                        "source": "path", "distribution": None, "version": None}], "m.json")
    assert str(exc.value) == ("m.json: strategy 'local_mod:Mine' comes from 'local_mod:Mine', which cannot be "
                              "loaded here (strategy 'local_mod:Mine': cannot import module 'local_mod' (No "
                              "module named 'local_mod')); make the module 'local_mod' importable (it was not "
                              "part of an installed distribution when the engine was saved)")


def test_entry_points_load_after_a_library_imported_the_importlib_metadata_backport(fake_distribution):
    """dask imports the ``importlib_metadata`` backport, after which the standard library's
    ``entry_points()`` returns the backport's EntryPoint objects: they are loaded all the same."""
    import subprocess

    code = textwrap.dedent('''
        import importlib.metadata as md
        import dask  # noqa: F401  (brings the backport's finder)
        from ltrr import registry
        registry.refresh()
        klass = registry.get("policy", "greedy_plugin")
        print(klass.__name__, registry.provenance("policy", "greedy_plugin").distribution)
    ''')
    env = {**__import__("os").environ, "PYTHONPATH": str(fake_distribution)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["GreedyPolicy", "ltrr-fake-plugins"]
