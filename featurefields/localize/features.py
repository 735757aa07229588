"""Local and global image descriptors for the coarse stage: OpenCV SIFT as root-SIFT, matched by Lowe's ratio test,
and VLAD over a small visual vocabulary for retrieval.

Root-SIFT (L1-normalise, square root) makes Euclidean distance the Hellinger kernel, which matches better than raw
SIFT at no cost; VLAD (residuals to k-means words, intra- and power-normalised) is the classic compact global
descriptor. Both are a few lines on top of OpenCV's detector and k-means, so they are written here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Features:
    xy: np.ndarray  # [N, 2] float32 pixel coordinates (pixel centres at +0.5)
    desc: np.ndarray  # [N, 128] float32 root-SIFT, unit length

    def __len__(self) -> int:
        return len(self.xy)

    def subset(self, keep: np.ndarray) -> "Features":
        return Features(self.xy[keep], self.desc[keep])


def to_gray(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] or uint8 -> uint8 grey."""
    import cv2

    img = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def sift(image: np.ndarray, max_keypoints: int = 2000, contrast_threshold: float = 0.02) -> Features:
    import cv2

    det = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=contrast_threshold)
    kps, desc = det.detectAndCompute(to_gray(image), None)
    if desc is None or not kps:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    # OpenCV puts pixel centres on integers; featurefields at +0.5
    xy = np.array([k.pt for k in kps], np.float32) + 0.5
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(1, keepdims=True), 1e-12)
    return Features(xy, np.sqrt(desc))


def ratio_matches(query: np.ndarray, ref: np.ndarray, ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, ref indices) of nearest neighbours that beat the second nearest by ``ratio`` in distance.
    One matrix product (unit descriptors: d^2 = 2 - 2 cos), faster here than OpenCV's brute-force matcher."""
    if len(query) == 0 or len(ref) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sim = torch.from_numpy(query) @ torch.from_numpy(ref).T  # [Nq, Nr]
    top = sim.topk(2, dim=1)
    d2 = (2 - 2 * top.values).clamp_min(0)
    ok = d2[:, 0] < (ratio * ratio) * d2[:, 1]
    qi = torch.nonzero(ok)[:, 0]
    return qi.numpy(), top.indices[qi, 0].numpy()


def train_vocabulary(descs: list[np.ndarray], k: int, seed: int = 0, sample: int = 20_000) -> np.ndarray:
    """[k, 128] k-means centres of (a sample of) the index descriptors."""
    import cv2

    allx = np.concatenate([d for d in descs if len(d)]) if any(len(d) for d in descs) else np.zeros((0, 128))
    if len(allx) < k:
        raise ValueError("too few descriptors for a vocabulary")
    rng = np.random.default_rng(seed)
    if len(allx) > sample:
        allx = allx[rng.choice(len(allx), sample, replace=False)]
    cv2.setRNGSeed(seed)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-4)
    _, _, centres = cv2.kmeans(allx.astype(np.float32), k, None, crit, 2, cv2.KMEANS_PP_CENTERS)
    return centres.astype(np.float32)


def vlad(desc: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """[k * 128] unit VLAD vector (intra-normalised, signed square root, L2)."""
    k, d = vocab.shape
    out = np.zeros((k, d), np.float32)
    if len(desc):
        c = torch.from_numpy(vocab)
        words = ((c * c).sum(1) - 2 * torch.from_numpy(desc) @ c.T).argmin(1).numpy()  # nearest word
        np.add.at(out, words, desc - vocab[words])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out = np.sign(out) * np.sqrt(np.abs(out))
    v = out.reshape(-1)
    return v / max(float(np.linalg.norm(v)), 1e-12)
