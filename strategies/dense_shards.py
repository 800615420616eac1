"""Encoding a catalog in shards: resumable, and spread over Dask workers.

A catalog is encoded chunk by chunk, each chunk stored in the on-disk embedding cache as soon as
it is done (one cache shard per chunk), so an interrupted encoding resumes where it stopped: the
texts already in the cache are never encoded again. With ``encode_workers > 1`` (a local cluster
of single-threaded worker processes) or ``encode_scheduler = "tcp://..."`` (workers on other
machines that can import ltrr and reach the same cache directory, e.g. a shared filesystem) the
chunks are encoded in parallel by the workers, which write to the cache; the caller then reads
every vector from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

#: texts per chunk: the unit of resumption and of work sent to a worker
DEFAULT_CHUNK = 4096


def encode_chunk(texts: Sequence[str], model: str, backend: str, root: str | None, encode_batch: int,
                 threads: int = 1) -> dict[str, Any]:
    """Encode the texts of one chunk that the cache does not hold yet and store them; runs in a
    worker process (the encoder loads once per process). Returns counts and CPU seconds."""
    from ltrr.threads import native_threads
    from strategies.embedding_cache import EmbeddingCache
    from strategies.encoder import get_encoder

    t0, c0 = time.perf_counter(), time.process_time()
    with native_threads(threads):
        enc = get_encoder(model, backend=backend)
        store = EmbeddingCache.open(enc.model_name, enc.fingerprint, enc.backend, enc.dim, root=root)
        _vectors, found = store.lookup(texts)
        todo = [t for t, f in zip(texts, found, strict=True) if not f]
        if todo:
            store.store(todo, enc.encode(todo, encode_batch, progress=False))
    return {"texts": len(texts), "encoded": len(todo), "cpu_s": time.process_time() - c0,
            "wall_s": time.perf_counter() - t0}


def encode_on_cluster(texts: Sequence[str], model: str, backend: str, root: str | None, batch_size: int,
                      *, workers: int = 2, scheduler: str | None = None, chunk: int = DEFAULT_CHUNK,
                      progress: bool = True) -> list[dict[str, Any]]:
    """Encode ``texts`` in chunks on a Dask cluster (local ``workers`` processes, or the one at
    ``scheduler``) into the embedding cache; returns each chunk's counts and CPU seconds."""
    from ltrr.cluster import close_client, connect, local_client

    client = connect(scheduler) if scheduler else local_client(workers)
    try:
        chunks = [list(texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
        # (``batch_size`` is a keyword of Client.map itself: the encoder's is ``encode_batch``)
        futures = client.map(encode_chunk, chunks, model=model, backend=backend, root=root,
                             encode_batch=batch_size, pure=False)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc=f"encoding {len(texts):,} texts on the cluster", unit=" texts")
        from dask.distributed import as_completed

        out = []
        for fut in as_completed(futures):
            res = fut.result()
            out.append(res)
            if bar is not None:
                bar.update(res["texts"])
        if bar is not None:
            bar.close()
        return out
    finally:
        close_client(client)
