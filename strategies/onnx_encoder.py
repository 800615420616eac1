"""ONNX Runtime fast path of a sentence-transformers encoder, exported locally from its weights.

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, whose releases pin
``transformers < 4.58`` while sentence-transformers 6 needs ``transformers >= 5``: they cannot be
installed together. So the export is done here with torch's own exporter, from the weights on
disk (nothing is fetched), and run with ``onnxruntime`` and the model's ``tokenizers`` tokenizer;
torch is needed only for the one-time export, not to encode.

The exported graph is the whole sentence-transformers pipeline (transformer + pooling) traced
from the loaded model, so it reproduces its output for any model of that shape. Every export is
checked against the torch model on probe texts (short, empty, longer than the maximum sequence
length, batched with padding) and refused if they differ by more than :data:`EXPORT_ATOL`.

An export is a directory in the user cache (``$LTRR_CACHE_DIR/onnx``, see
:func:`strategies.embedding_cache.cache_root`), named by the model and a SHA-256 of its files:
``model.onnx``, ``model.int8.onnx`` (dynamic int8 quantization of the weights, made on first use),
``tokenizer.json`` and ``export.json`` (versions, maximum sequence length, the measured
difference). Files are written under temporary names and renamed, so concurrent exporters
cannot leave a half-written model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ltrr.errors import ConfigError
from ltrr.threads import current_native_threads

EXPORT_VERSION = 1
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FILE = "export.json"
#: largest element-wise difference allowed between the export and the torch model's embeddings
EXPORT_ATOL = 1e-4
#: checked at export time: short, empty, punctuated, batched with padding, and beyond the
#: maximum sequence length (truncation)
PROBE_TEXTS = ("space adventure with robots", "", "The Godfather (1972) Francis Ford Coppola",
               "a", "Amélie — une comédie romantique à Paris", "word " * 600)
#: token tensors the exported graph takes, with the ``tokenizers.Encoding`` field of each
TOKEN_INPUTS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def export_directory(root: Path, model: str, fingerprint: str) -> Path:
    """Where the export of ``model`` (whose files hash to ``fingerprint``) lives under ``root``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name or model)[:60]
    return root / "onnx" / f"{slug}-{fingerprint[:16]}-v{EXPORT_VERSION}"


def _write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_export_info(directory: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((directory / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("export_version") != EXPORT_VERSION or not (directory / ONNX_FILE).exists():
        return None
    return info


def export_model(st_model: Any, directory: Path, model: str, fingerprint: str) -> dict[str, Any]:
    """Export a loaded ``SentenceTransformer`` to ``directory`` and check it against torch.

    Returns the export info written to ``export.json``. Raises :class:`ConfigError` when the model
    is not a text model of the supported shape or the export disagrees with torch.
    """
    import onnxruntime as ort
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    features = st_model.preprocess(list(PROBE_TEXTS[:2]))
    tensors = [k for k, v in features.items() if torch.is_tensor(v)]
    if not set(tensors) <= set(TOKEN_INPUTS) or "input_ids" not in tensors:
        raise ConfigError(f"The onnx backend supports text models whose inputs are "
                          f"{sorted(TOKEN_INPUTS)}; model {model!r} takes {sorted(tensors)}")
    constants = {k: v for k, v in features.items() if not torch.is_tensor(v)}

    class Pipeline(torch.nn.Module):
        """The sentence-transformers pipeline as a function of token tensors only."""

        def __init__(self) -> None:
            super().__init__()
            self.st = st_model

        def forward(self, *inputs: Any) -> Any:
            return self.st({**dict(zip(tensors, inputs, strict=True)), **constants})["sentence_embedding"]

    axes = {name: {0: "batch", 1: "tokens"} for name in tensors}
    axes["sentence_embedding"] = {0: "batch"}

    def write_onnx(tmp: Path) -> None:
        with torch.no_grad():
            # the TorchScript exporter needs no extra package; the dynamo one needs onnxscript
            torch.onnx.export(Pipeline().eval(), tuple(features[k] for k in tensors), str(tmp),
                              dynamo=False, input_names=tensors,
                              output_names=["sentence_embedding"], dynamic_axes=axes,
                              opset_version=17, do_constant_folding=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        _write_atomic(directory / ONNX_FILE, write_onnx)
    tokenizer = st_model.tokenizer
    _write_atomic(directory / TOKENIZER_FILE,
                  lambda tmp: tokenizer.backend_tokenizer.save(str(tmp)))
    info = {
        "export_version": EXPORT_VERSION,
        "model": model,
        "fingerprint": fingerprint,
        "inputs": tensors,
        "max_seq_length": int(st_model.max_seq_length),
        "pad_token": tokenizer.pad_token,
        "pad_token_id": int(tokenizer.pad_token_id),
        "dim": int((getattr(st_model, "get_embedding_dimension", None)
                    or st_model.get_sentence_embedding_dimension)()),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }
    info["max_abs_diff_vs_torch"] = verify_export(st_model, directory, info)
    _write_atomic(directory / EXPORT_FILE,
                  lambda tmp: tmp.write_text(json.dumps(info, indent=2), encoding="utf-8"))
    return info


def verify_export(st_model: Any, directory: Path, info: dict[str, Any]) -> float:
    """Largest difference between the export in ``directory`` and the torch model on
    :data:`PROBE_TEXTS` (batched, and one at a time); above :data:`EXPORT_ATOL` the export is
    deleted and a :class:`ConfigError` raised."""
    runner = OnnxSentenceEncoder(directory, info=info)
    reference = st_model.encode(list(PROBE_TEXTS), convert_to_numpy=True, normalize_embeddings=True)
    got = np.concatenate([runner.forward(list(PROBE_TEXTS), batch_size=len(PROBE_TEXTS)),
                          *(runner.forward([t], batch_size=1) for t in PROBE_TEXTS)])
    diff = float(np.abs(got - np.concatenate([reference, reference])).max())
    if not diff <= EXPORT_ATOL:
        (directory / ONNX_FILE).unlink(missing_ok=True)
        raise ConfigError(f"The ONNX export of {info['model']!r} differs from the torch model by "
                          f"{diff:.3g} (more than {EXPORT_ATOL}) on the probe texts; use "
                          f"backend = \"torch\"")
    return diff


def quantize_model(directory: Path) -> Path:
    """Write ``model.int8.onnx``: dynamic int8 quantization of the export's weights (per
    channel); activations are quantized at run time. Returns its path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = directory / INT8_FILE
    if not target.exists():
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime logs a generic pre-processing advice as a warning
        try:
            _write_atomic(target, lambda tmp: quantize_dynamic(
                str(directory / ONNX_FILE), str(tmp), weight_type=QuantType.QInt8, per_channel=True))
        finally:
            root.setLevel(level)
    return target


def ensure_export(load_torch_model, directory: Path, model: str, fingerprint: str,
                  quantized: bool) -> Path:
    """The ONNX file of ``model`` in ``directory``, exporting (and quantizing) it on first use.

    ``load_torch_model()`` is called only when an export is needed.
    """
    if _read_export_info(directory) is None:
        export_model(load_torch_model(), directory, model, fingerprint)
    return quantize_model(directory) if quantized else directory / ONNX_FILE


class OnnxSentenceEncoder:
    """Unit-norm sentence embeddings from an exported model with ONNX Runtime.

    One inference session per thread count (:func:`ltrr.threads.current_native_threads` when a
    batch runs), so searches pinned to one thread and batch encoding on every core each get a
    session of the right size.
    """

    def __init__(self, directory: Path, *, quantized: bool = False,
                 info: dict[str, Any] | None = None):
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.info = info if info is not None else _read_export_info(self.directory)
        if self.info is None:
            raise ConfigError(f"{self.directory}: no ONNX export of format {EXPORT_VERSION} here")
        self.path = self.directory / (INT8_FILE if quantized else ONNX_FILE)
        self.inputs: list[str] = list(self.info["inputs"])
        self.dim = int(self.info["dim"])
        tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
        tokenizer.enable_truncation(int(self.info["max_seq_length"]))
        tokenizer.enable_padding(pad_id=int(self.info["pad_token_id"]),
                                 pad_token=str(self.info["pad_token"]))
        self.tokenizer = tokenizer
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def session(self, threads: int | None = None) -> Any:
        """The inference session with ``threads`` intra-op threads (default: the current size)."""
        import onnxruntime as ort

        n = current_native_threads() if threads is None else int(threads)
        with self._lock:
            sess = self._sessions.get(n)
            if sess is None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = n
                opts.inter_op_num_threads = 1
                opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # idle threads that spin steal a shared machine's cores from other work
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
                self._sessions[n] = sess
        return sess

    def forward(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Embed ``texts`` (in order) as unit-norm ``float32[n, dim]`` rows, ``batch_size`` at a
        time."""
        sess = self.session()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # longest first, so each batch pads to similar lengths (as sentence-transformers does)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
            feeds = {name: np.array([getattr(e, TOKEN_INPUTS[name]) for e in encodings], dtype=np.int64)
                     for name in self.inputs}
            out[rows] = sess.run(None, feeds)[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
