"""Teachers: 2D models whose per-pixel features a 3D field is trained to reproduce.

Teachers are registered by name as ``"module:Class"`` strings and imported only when made, so listing them (or
importing this package) never pulls in open_clip, SAM or the sentence model.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Callable

from ..errors import ConfigError
from .base import NotTextAligned, Teacher, TeacherInput, TeacherOutput, views_from_scene
from .cache import FeatureCache, default_cache_dir, extract_features

# name -> "module:attribute" (imported lazily) or a callable returning a Teacher.
_REGISTRY: dict[str, str | Callable[..., Teacher]] = {
    "clip": "featurefields.teachers.clip:ClipTeacher",
    "dino": "featurefields.teachers.dino:DinoTeacher",
    "labels": "featurefields.teachers.labels:LabelsTeacher",
    "sam": "featurefields.teachers.sam:SamTeacher",
    "segments": "featurefields.teachers.segments:SegmentsTeacher",
    "sift": "featurefields.teachers.sift:SiftTeacher",
}


def register_teacher(name: str, factory: str | Callable[..., Teacher]) -> None:
    """Add (or replace) a teacher: ``factory`` is a ``"module:Class"`` string or a callable taking the options."""
    _REGISTRY[name.strip().lower()] = factory


def available_teachers() -> list[str]:
    return sorted(_REGISTRY)


def make_teacher(name: str, **options) -> Teacher:
    """Build a teacher by name; unknown names and options are ConfigErrors that list what is known."""
    key, factory = _factory(name)
    _check_options(key, factory, options)
    return factory(**options)


def teacher_options(name: str) -> list[str] | None:
    """The options a teacher takes (None if it takes any), e.g. to pass ``device`` only where it means something."""
    _, factory = _factory(name)
    return _known_options(factory)


def _factory(name: str) -> tuple[str, Callable[..., Teacher]]:
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown teacher {name!r}; known teachers: {', '.join(available_teachers())}")
    factory = _REGISTRY[key]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return key, factory


def _known_options(factory: Callable) -> list[str] | None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"]


def _check_options(name: str, factory: Callable, options: dict) -> None:
    known = _known_options(factory)
    if known is None:
        return
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = ", ".join(known) if known else "no options"
        raise ConfigError(f"teacher {name!r} does not take option(s) {', '.join(unknown)}; it takes: {takes}")


__all__ = [
    "FeatureCache",
    "NotTextAligned",
    "Teacher",
    "TeacherInput",
    "TeacherOutput",
    "available_teachers",
    "default_cache_dir",
    "extract_features",
    "make_teacher",
    "register_teacher",
    "teacher_options",
    "views_from_scene",
]
