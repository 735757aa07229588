"""Queries on trained feature fields: language relevancy, prompts, 3D selections, edits, exports, evaluation.

One engine (:class:`QueryEngine`) serves the CLI (ff-query, ff-edit, ff-export, ff-eval) and, later, the viewer
and the robot API. Modules mirror the pipeline: :mod:`.relevancy` (LERF score, pure tensors), :mod:`.engine`
(field + decoder + text encoders + views), :mod:`.selection` (sets of Gaussians), :mod:`.edit`, :mod:`.export`,
:mod:`.evaluate`.
"""
from .edit import delete, extract, recolour
from .engine import PromptResult, QueryEngine, Relevancy2D, Relevancy3D, View
from .evaluate import SegmentationConfig, evaluate_segmentation
from .relevancy import CANONICAL_NEGATIVES, QueryError, lerf_relevancy, split_positives
from .selection import Selection

__all__ = [
    "CANONICAL_NEGATIVES", "PromptResult", "QueryEngine", "QueryError", "Relevancy2D", "Relevancy3D",
    "SegmentationConfig", "Selection", "View", "delete", "evaluate_segmentation", "extract", "lerf_relevancy",
    "recolour", "split_positives",
]
