"""From plain photos or a video to a posed scene (ff-process): frames, COLMAP structure-from-motion, scene files."""
from .frames import is_video, sample_video, sharpness
from .scene import process

__all__ = ["is_video", "process", "sample_video", "sharpness"]
