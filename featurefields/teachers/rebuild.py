"""Rebuild a field's teachers from what its checkpoint recorded, so queries use the very text tower or SAM decoder
the field was trained against."""
from __future__ import annotations

from ..errors import ConfigError
from . import Teacher, _factory, make_teacher

# How a foundation-model teacher's recorded config maps back onto make_teacher options:
# name -> (option naming the model, option naming pretrained weights, options for random-init weights, kept keys)
_REBUILD = {
    "clip": ("model", "pretrained", {"pretrained": None}, ("mode", "resolution")),
    "sam": ("model_type", None, {"random_init": True}, ("normalize",)),
}


def build_teacher(record: dict, train_config: dict | None = None) -> Teacher:
    """A teacher from a checkpoint's record ({name, dim, config}) and the run's --teacher-checkpoint map."""
    name = record["name"]
    cfg = record.get("config", {}) or {}
    ckpts = (train_config or {}).get("teacher_checkpoints", {}) or {}
    opts: dict = {}
    model = cfg.get("model")
    weights = cfg.get("weights")
    if name == "labels":
        if cfg.get("model_path"):
            opts["model_path"] = cfg["model_path"]
    elif name in _REBUILD:
        model_key, pretrained_key, random_init, kept = _REBUILD[name]
        if isinstance(model, dict):
            opts["arch"] = model.get("arch")
        elif model:
            opts[model_key] = model
        if name in ckpts:
            opts["checkpoint"] = ckpts[name]
        elif weights == "random-init":
            opts.update(random_init)
        elif weights and pretrained_key:
            opts[pretrained_key] = weights
        opts.update({k: cfg[k] for k in kept if k in cfg})
    elif name in ckpts:
        opts["checkpoint"] = ckpts[name]
    return make_teacher(name, **opts)


def text_aligned(name: str) -> bool:
    """Whether the named teacher's features live in a text embedding space (it can answer text queries)."""
    try:
        return bool(getattr(_factory(name)[1], "text_aligned", False))
    except ConfigError:
        return False
