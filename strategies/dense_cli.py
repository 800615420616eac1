"""``ltrr index``: build (or load) a dense index and report the approximate index's recall."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None,
              help="Catalog JSONL to index (default: the demo catalog).")
@click.option("--load", "load_dir", type=click.Path(file_okay=False), default=None,
              help="Load a saved dense index instead of building one.")
@click.option("--index", "index_type", type=click.Choice(["flat", "hnsw", "ivf"]), default="hnsw",
              show_default=True, help="faiss index type to build.")
@click.option("--text-fields", default="title,directors,cast,genres,year", show_default=True,
              help="Comma-separated catalog fields that are embedded.")
@click.option("--backend", type=click.Choice(["torch", "onnx", "onnx-int8"]), default=None,
              help="Encoder backend (default: the dense strategy's).")
@click.option("--embedding-cache/--no-embedding-cache", default=True, show_default=True,
              help="Take item embeddings from (and add them to) the on-disk embedding cache.")
@click.option("--ef-search", type=click.IntRange(min=1), default=None, help="HNSW efSearch (search-time breadth).")
@click.option("--nprobe", type=click.IntRange(min=1), default=None, help="IVF lists probed per query.")
@click.option("--check-recall", is_flag=True, help="Report recall@k against exact search.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--sample", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Queries sampled for the recall check.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Save the index here.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")
def index(catalog_path, load_dir, index_type, text_fields, backend, embedding_cache, ef_search, nprobe,
          check_recall, k, sample, out, as_json):
    """Build a dense (sentence-transformers + faiss) index and check its recall.

    The recall check compares the configured (approximate) index with exact inner-product search
    over the same stored embeddings, using a seeded sample of item vectors as queries.
    """
    from ltrr.catalog import Catalog
    from ltrr.config import default_config
    from strategies.dense import DenseRetriever
    from strategies.dense import check_recall as run_check

    if load_dir:
        dense = DenseRetriever.load(load_dir)
    else:
        path = catalog_path or default_config().catalog.path
        fields = [f.strip() for f in text_fields.split(",") if f.strip()]
        params = {"index": index_type, "text_fields": fields, "embedding_cache": embedding_cache}
        if backend:
            params["backend"] = backend
        dense = DenseRetriever(params).fit(Catalog.from_jsonl(path))
        click.echo(f"encoded {dense.last_encode['encoded']:,} item texts, "
                   f"{dense.last_encode['cached']:,} from the embedding cache", err=True)
    if ef_search is not None or nprobe is not None:
        dense.set_search_params(ef_search=ef_search, nprobe=nprobe)
    if out:
        dense.save(out)
    report = run_check(dense, k=k, n_sample=sample) if check_recall else None
    if as_json:
        click.echo(json.dumps({"saved": out, "recall": report}))
        return
    if out:
        click.echo(f"saved dense index to {out}")
    if report is not None:
        click.echo(f"recall@{report['k']} of the {report['index']} index against exact search: "
                   f"{report['recall_at_k']:.4f} (min {report['min_recall_at_k']:.4f}) over {report['n_queries']} "
                   f"sampled items of {report['n_items']}; {report['speedup']:.1f}x the exact search's queries/s")
