"""Browser viewer (``ff-view``, ``ff-train --view``): a viser server rendering a feature field with our own
rasteriser for every connected browser, with text queries, click and box prompts, edits and exports, all through
:class:`~featurefields.fields.FeatureField` and its :class:`~featurefields.query.QueryEngine`.
See ``viewer/README.md`` for what it does and how it is built."""
from .server import ViewerConfig, ViewerServer, check_port
from .source import FieldSource


def serve(field_or_path, config: ViewerConfig | None = None, out="outputs/view") -> ViewerServer:
    """Start a viewer on a loaded field or a checkpoint path; returns the running server (``.url``, ``.stop()``)."""
    from ..fields.loading import load

    if isinstance(field_or_path, FieldSource):
        return ViewerServer(field_or_path, config, out)
    if hasattr(field_or_path, "render"):
        return ViewerServer(FieldSource(field_or_path), config, out)
    return ViewerServer(FieldSource(load(field_or_path), checkpoint=field_or_path), config, out)


__all__ = ["FieldSource", "ViewerConfig", "ViewerServer", "check_port", "serve"]
