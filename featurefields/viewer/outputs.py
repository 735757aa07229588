"""Files a viewer writes under ``--out``: edited fields (``edits/NNN_<edit>/``: checkpoint.pt, field.ply,
edit.json, exactly what ``ff-edit`` writes) and exports (``exports/NNN_points.ply``, ``NNN_relevancy.ply``,
``NNN_screenshot.png``). Everything is written atomically by the query package's own writers; numbering is
shared by all browsers of a server, so two browsers never write the same file."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, FFError
from ..io import write_image
from ..query.edit import apply_edit, save_edited
from ..query.export import selection_point_cloud, write_point_cloud, write_relevancy_ply
from ..query.selection import Selection
from ..train.checkpoint import load_checkpoint
from .paint import QuerySpec
from .source import FieldSource


class Outputs:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self._lock = threading.Lock()  # one edit at a time: each starts from the field the last one made
        self._counter = threading.Lock()
        self._count = 0

    def _next(self, folder: str, name: str) -> Path:
        with self._counter:
            self._count += 1
            return self.out / folder / f"{self._count:03d}_{name}"

    def edit(self, source: FieldSource, sel: Selection, version: int, kind: str, rgb=None, what: str = "",
             by: str = "") -> tuple[Path, dict]:
        """Apply an edit to the source's field, write it as a checkpoint folder, and swap it in for every browser.
        ``version``: the field version the selection was made on (a selection of an older field is refused)."""
        if not source.editable or source.checkpoint is None:
            raise ConfigError("this field cannot be edited here (a training run in progress has no checkpoint "
                              "to edit yet); open its checkpoint with ff-view after training")
        with self._lock:
            current, field = source.current()
            if current != version:
                raise ConfigError("the field changed since this selection was made; select again")
            edited, kept = apply_edit(field, kind, sel, rgb)
            folder = self._next("edits", kind)
            info = {"edit": kind, "source": str(source.checkpoint), "selection": what, "selected_gaussians": sel.count,
                    "colour": list(rgb) if rgb is not None else None, "by": f"ff-view {by}".strip()}
            info = save_edited(folder, load_checkpoint(source.checkpoint), edited, kept, info,
                               recoloured=sel.mask if kind == "recolour" else None)
            source.replace(edited, f"{by}: {kind} of {sel.count:,} Gaussians ({what}); {info['num_gaussians_before']:,}"
                                   f" -> {info['num_gaussians_after']:,}; written to {folder}/",
                           checkpoint=folder / "checkpoint.pt")
        return folder, info

    def points(self, field, sel: Selection) -> Path:
        try:
            viewpoints = torch.stack([v.center for v in field.views("all")])
        except FFError:  # no scene: normals face away from the selection's centre
            viewpoints = None
        path = self._next("exports", "points.ply")
        write_point_cloud(path, selection_point_cloud(field, sel, viewpoints))
        return path

    def relevancy(self, field, query: QuerySpec) -> Path:
        rel = field.engine.relevancy_3d(query.text, negatives=query.negatives, teacher=query.teacher)
        path = self._next("exports", "relevancy.ply")
        write_relevancy_ply(path, field, rel.combined, world_from_scene=field.world_from_scene)
        return path

    def screenshot(self, image: np.ndarray) -> tuple[Path, bytes]:
        from PIL import Image

        path = self._next("exports", "screenshot.png")
        write_image(path, image)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        return path, buf.getvalue()
