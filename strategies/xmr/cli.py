"""``ltrr complete``: session-aware query autocompletion with an XR-Linear tree."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ltrr.errors import DataError
from ltrr.io import text_lines


def read_sessions(path: str | Path) -> list[list[str]]:
    """Sessions from a text file: one query a line, a blank line ends a session."""
    sessions: list[list[str]] = [[]]
    for _lineno, line in text_lines(path, "labels file"):
        q = line.strip()
        if q:
            sessions[-1].append(q)
        elif sessions[-1]:
            sessions.append([])
    sessions = [s for s in sessions if s]
    if not sessions:
        raise DataError(f"{path}: no queries (expected one query a line, blank lines between sessions)")
    return sessions


@click.command()
@click.option("--prefix", required=True, help="What the user has typed so far.")
@click.option("--previous", default="", help="The previous query of the session (empty: none).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Past queries to learn from: one a line, a blank line between sessions "
                   "(default: sessions generated from the movie query stream).")
@click.option("--indexer", type=click.Choice(["kmeans", "trie", "hybrid"]), default="hybrid",
              show_default=True, help="Label tree of the XR-Linear model.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1), help="Completions to show.")
@click.option("--sessions", "n_sessions", default=6000, show_default=True, type=click.IntRange(min=1),
              help="Generated sessions (without --labels).")
@click.option("--pool", default=3000, show_default=True, type=click.IntRange(min=1),
              help="Distinct generated queries (without --labels).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Load the completer from this directory if it exists, else train and save it there.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a list.")
def complete(prefix, previous, labels_path, indexer, k, n_sessions, pool, seed, model_dir, as_json):
    """Complete PREFIX given the previous query of the session.

    Labels are the queries seen before; the model ranks them from the prefix's character
    n-grams and the previous query's words, and only completions that start with the prefix
    are shown (frequent ones fill a short list, marked "popular").
    """
    from ltrr import progress
    from strategies.xmr.complete import QueryCompleter, movie_sessions

    if model_dir and Path(model_dir).exists():
        model = QueryCompleter.load(model_dir)
    else:
        if labels_path:
            sessions = read_sessions(labels_path)
        else:
            from ltrr.catalog import Catalog
            from ltrr.config import default_config

            with progress.step("reading the movie catalog"):
                catalog = Catalog.from_jsonl(default_config().catalog.path)
            with progress.step("generating query sessions", n_sessions, "sessions"):
                sessions = movie_sessions(catalog, n_sessions, seed=seed, pool_size=pool)
        with progress.step(f"training the completer ({indexer} tree)", len(sessions), "sessions"):
            model = QueryCompleter({"indexer": indexer, "seed": seed}).fit(sessions)
        if model_dir:
            model.save(model_dir)
    res = model.complete([previous], [prefix], k)
    rows = [{"completion": model.labels_[j], "score": float(s), "source": "model" if m else "popular"}
            for j, s, m in zip(res.ids[0], res.scores[0], res.from_model[0], strict=True) if j >= 0]
    if as_json:
        click.echo(json.dumps({"prefix": prefix, "previous": previous, "completions": rows}, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no known query starts with {prefix!r}")
    for i, r in enumerate(rows, 1):
        click.echo(f"{i:2d}. {r['completion']}  ({r['source']} {r['score']:.3f})")
