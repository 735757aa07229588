"""Fixtures of the viewer tests: a 160x120 tabletop with the oracle field on it (Gaussians on the scene's meshes
with exact label features: its queries have known answers), one headless chromium per module, a viewer.

FF_VIEWER_CHECKPOINT=outputs/tabletop/checkpoint.pt runs the same tests on a trained field of a tabletop scene
instead (how the screenshots in docs/ are taken: add FF_DOCS_SCREENSHOTS=docs)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class ViewerRun:
    scene: Path
    checkpoint: Path
    root: Path


@pytest.fixture(scope="session")
def viewer_run(oracle, tmp_path_factory) -> ViewerRun:
    from featurefields.scenegen.tabletop import generate_tabletop
    from tests.query.helpers import save_as_checkpoint

    root = tmp_path_factory.mktemp("viewer")
    trained = os.environ.get("FF_VIEWER_CHECKPOINT")
    if trained:
        from featurefields import load

        return ViewerRun(Path(load(trained).scene_root), Path(trained), root)
    scene = generate_tabletop(root / "tabletop", seed=0, views=6, width=160, height=120, n_points=500,
                              progress=False)
    ckpt = save_as_checkpoint(latent_oracle(oracle.field, oracle.labels), scene, root / "run" / "checkpoint.pt")
    return ViewerRun(scene, ckpt, root)


def latent_oracle(field, labels: list[str]):
    """The oracle with a 16-D latent instead of 384 stored channels, as trained fields have: each Gaussian's
    latent is the one-hot code of its label and the linear head's columns are the labels' embeddings, so every
    decoded feature (blended or not) is exactly the full-width oracle's, at a 24th of the rendering work."""
    import torch

    from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec

    names = list(dict.fromkeys(labels))
    width = 16
    assert len(names) <= width
    code = torch.tensor([names.index(lab) for lab in labels])
    layout = FeatureLayout([TeacherSpec("labels", field.layout.teachers[0].dim)], latent_dim=width)
    out = GaussianField(field.means.detach(), torch.zeros_like(field.means), field.log_scales.detach(), layout,
                        sh_degree=field.sh_degree)
    params = {k: v.detach().clone() for k, v in field.params().items()}
    params["features"] = torch.nn.functional.one_hot(code, width).float()
    params["features_view"] = torch.zeros(len(labels), 0, width)
    out.replace_params(params)
    head = out.decoder.heads["labels"]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for i, name in enumerate(names):
            head.weight[:, i] = field.features[labels.index(name)]
    return out.requires_grad_(False)


@pytest.fixture(scope="module")
def browser():
    from tests.viewer.helpers import launch_browser

    pw, b = launch_browser()
    yield b
    b.close()
    pw.stop()


@pytest.fixture(scope="module")
def viewer(viewer_run, tmp_path_factory):
    from featurefields.viewer import ViewerConfig, serve

    server = serve(str(viewer_run.checkpoint), ViewerConfig(port=0, max_side=640),
                   out=tmp_path_factory.mktemp("view_out"))
    yield server
    server.stop()
