"""3DGS-compatible PLY files with the per-Gaussian features as extra properties.

The layout is the one the original 3DGS code writes (x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*), so
standard splat viewers open it; features follow as ``feat_0 .. feat_{F-1}``, and a ``comment featurefields {json}``
line records the feature layout and the world transform so the file can be read back into a field.
Values are stored as the raw (unactivated) parameters, exactly like 3DGS: log-scales, opacity logits.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io import atomic_path, one_reason, read_plyfile
from .gaussians import FeatureLayout, GaussianField, check_layout, check_params

COMMENT_TAG = "featurefields "


def write_ply(path: str | Path, field: GaussianField, world_from_scene: torch.Tensor | None = None,
              extra: dict[str, np.ndarray] | None = None) -> None:
    """Write ``field`` (and optional extra per-Gaussian float properties, e.g. relevancy) to ``path``."""
    from plyfile import PlyData, PlyElement

    p = {k: v.detach().cpu().float().numpy() for k, v in field.params().items()}
    n = p["means"].shape[0]
    # 3DGS stores the higher SH bands channel-major: all coefficients of R, then G, then B.
    f_rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)
    feat_view = p["features_view"].reshape(n, -1)  # SH-coefficient-major: all channels of Y_1, then of Y_2, ...
    columns: list[tuple[str, np.ndarray]] = [
        *((c, p["means"][:, i]) for i, c in enumerate("xyz")),
        *((c, np.zeros(n, np.float32)) for c in ("nx", "ny", "nz")),
        *((f"f_dc_{i}", p["sh0"][:, 0, i]) for i in range(3)),
        *((f"f_rest_{i}", f_rest[:, i]) for i in range(f_rest.shape[1])),
        ("opacity", p["opacity_logits"]),
        *((f"scale_{i}", p["log_scales"][:, i]) for i in range(3)),
        *((f"rot_{i}", p["quats"][:, i]) for i in range(4)),
        *((f"feat_{i}", p["features"][:, i]) for i in range(p["features"].shape[1])),
        *((f"feat_view_{i}", feat_view[:, i]) for i in range(feat_view.shape[1])),
    ]
    for name, values in (extra or {}).items():
        values = np.asarray(values, np.float32).reshape(n, -1)
        columns += [(name if values.shape[1] == 1 else f"{name}_{i}", values[:, i]) for i in range(values.shape[1])]
    data = np.empty(n, dtype=[(name, "f4") for name, _ in columns])
    for name, values in columns:
        data[name] = values
    meta = {
        "sh_degree": field.sh_degree,
        "layout": field.layout.to_dict(),
        "world_from_scene": (world_from_scene if world_from_scene is not None else torch.eye(4)).tolist(),
    }
    ply = PlyData([PlyElement.describe(data, "vertex")], comments=[COMMENT_TAG + json.dumps(meta)])
    with atomic_path(path) as tmp:
        ply.write(str(tmp))


def read_ply(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a PLY written by :func:`write_ply` (or plain 3DGS): raw parameter tensors and the metadata dict."""
    path = Path(path)
    ply = read_plyfile(path, "PLY file")
    try:
        v = ply["vertex"].data
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: not a Gaussian-splat PLY ({one_reason(e)})") from None
    names = v.dtype.names
    meta = {}
    for c in ply.comments:
        if c.startswith(COMMENT_TAG):
            try:
                meta = json.loads(c[len(COMMENT_TAG):])
            except ValueError:
                raise DataError(f"{path}: its featurefields header comment is not valid JSON") from None
            if not isinstance(meta, dict):
                raise DataError(f"{path}: its featurefields header comment is not a JSON object")
    for required in ("x", "opacity", "scale_0", "rot_0", "f_dc_0"):
        if required not in names:
            raise DataError(f"{path}: not a Gaussian-splat PLY (no '{required}' property)")

    def cols(prefix: str) -> np.ndarray:
        keys = sorted((k for k in names if k.startswith(prefix) and k[len(prefix):].isdigit()),
                      key=lambda k: int(k[len(prefix):]))
        return np.stack([v[k] for k in keys], -1).astype(np.float32) if keys else np.zeros((len(v), 0), np.float32)

    n = len(v)
    try:
        f_rest = cols("f_rest_")
        if f_rest.shape[1] % 3:
            raise DataError(f"{path}: {f_rest.shape[1]} f_rest_* properties is not three per SH coefficient")
        params = {
            "means": np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32),
            "sh0": cols("f_dc_")[:, None, :],
            "shN": f_rest.reshape(n, 3, -1).transpose(0, 2, 1),
            "opacity_logits": np.asarray(v["opacity"], np.float32),
            "log_scales": cols("scale_"),
            "quats": cols("rot_"),
            "features": cols("feat_"),
        }
        view = cols("feat_view_")
    except (KeyError, ValueError, TypeError) as e:  # e.g. a list property where a number belongs
        raise DataError(f"{path}: not a Gaussian-splat PLY ({one_reason(e)})") from None
    width = params["features"].shape[1]
    if view.shape[1] % max(width, 1):
        raise DataError(f"{path}: {view.shape[1]} view-dependent feature properties for {width} features")
    params["features_view"] = view.reshape(n, view.shape[1] // width if width else 0, width)
    return {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in params.items()}, meta


def field_from_ply(path: str | Path) -> GaussianField:
    from ..validate import integer

    params, meta = read_ply(path)
    n_rest = params["shN"].shape[1]
    sh_degree = integer(meta.get("sh_degree", int(round((n_rest + 1) ** 0.5)) - 1), f"{path}: sh_degree", lo=0,
                        hi=3, error=DataError)
    layout = check_layout(meta["layout"], str(path)) if "layout" in meta else FeatureLayout([], 0)
    if layout.width != params["features"].shape[1]:
        raise DataError(f"{path}: {params['features'].shape[1]} feature properties, but its layout says "
                        f"{layout.width}")
    if params["features_view"].shape[1] != (layout.view_degree + 1) ** 2 - 1:
        raise DataError(f"{path}: view-dependent features of {params['features_view'].shape[1]} SH coefficients, "
                        f"but its layout says degree {layout.view_degree}")
    check_params(params, sh_degree, layout, str(path))
    field = GaussianField(params["means"], torch.zeros_like(params["means"]), params["log_scales"], layout, sh_degree)
    field.replace_params(params)
    return field
