"""Hashes of a model file's payload (:mod:`hpcdens.io.model` reads it) that leave out what does
not change its predictions: :func:`weights_hash` (architecture and tensors) and
:func:`prediction_hash` (those and the record but for what documents the training). Two learn
runs that trained the same round under other names, paths or wall times hash equal."""

from __future__ import annotations

import hashlib
import json

DOCUMENTS = ("training", "config", "hpcdens_version")
"""Record keys that describe how a model was trained and do not change what it predicts."""


def weights_hash(payload: dict):
    """hashlib.sha256 object of the architecture and tensors (names, dtypes, shapes, bytes) of
    every training in ``payload`` (a model or an ensemble file's dict)."""
    import torch

    h = hashlib.sha256()
    for part in payload.get("members", [payload]):
        h.update(json.dumps(part["architecture"], sort_keys=True).encode())
        for name, tensor in sorted(part["state_dict"].items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h


def prediction_hash(payload: dict):
    """:func:`weights_hash` updated with the record ``meta`` of ``payload`` without
    :data:`DOCUMENTS`."""
    h = weights_hash(payload)
    meta = {k: v for k, v in (payload.get("meta") or {}).items() if k not in DOCUMENTS}
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    return h
