import numpy as np
import torch

from featurefields.viz import FeaturePCA, colormap, labelled_row, stack_rows


def test_colormap_is_ordered_and_marks_nan():
    img = colormap(np.array([[0.0, 0.5, 1.0, np.nan]]))
    assert img.shape == (1, 4, 3) and img.dtype == np.uint8
    assert (img[0, 3] == 0).all()
    assert not np.array_equal(img[0, 0], img[0, 2])


def test_pca_separates_feature_clusters_and_is_shared():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    feats = torch.stack([a, b])[torch.tensor([[0, 1], [1, 0]])]  # [2, 2, 64]
    pca = FeaturePCA(feats)
    img = pca(feats).astype(int)
    assert np.abs(img[0, 0] - img[0, 1]).sum() > 100  # different features, different colours
    assert np.array_equal(img[0, 0], img[1, 1])  # same feature, same colour


def test_rows_and_grids_keep_every_panel():
    p = np.zeros((10, 12, 3), np.uint8)
    row = labelled_row([p, p + 255], ["a", "b"])
    assert row.shape[1] == 12 * 2 + 4 and row.shape[0] > 10
    grid = stack_rows([row, labelled_row([p], ["c"])])
    assert grid.shape[1] == row.shape[1]
