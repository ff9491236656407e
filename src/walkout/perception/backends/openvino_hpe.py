"""Intel Open Model Zoo human-pose-estimation-0001 (OpenPose-style) through OpenVINO.

The network gives 19 heatmaps (18 OpenPose joints + background) and 38 part-affinity field
channels (19 limbs × (x, y)) at stride 8. Decoding follows OpenPose (Cao et al., 2017):

1. heatmaps and PAFs are upsampled ×4 (stride 2), peaks are local maxima above a threshold;
2. every candidate limb (a peak of joint A, a peak of joint B) is scored by the mean projection
   of the PAF on the limb direction at ``paf_samples`` points, with a penalty for limbs longer
   than half the image height; limbs are matched greedily, best first, one-to-one;
3. limbs are assembled into people along the skeleton tree, merging partial people that share
   a joint.

The PAF score of each of a person's limbs is kept (:attr:`Poses.limb_scores`) and folded into
the joint confidences the tracker weighs: a joint's confidence is the geometric mean of its
heatmap peak and the best PAF support of the limbs that attached it to its person, so a joint
grouped into the wrong person by a weak limb counts less in association and triangulation.
"""

from __future__ import annotations

import cv2
import numpy as np

from walkout.perception.backends import ModelError, Poses, filter_people
from walkout.perception.config import PerceptionConfig

#: OpenPose's limbs as (joint A, joint B) in its 18-joint order, and each limb's PAF x channel.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)
PAF_X: tuple[int, ...] = (12, 20, 14, 16, 22, 24, 0, 2, 4, 6, 8, 10, 28, 30, 34, 32, 36, 18, 26)
#: COCO-17 joint j is OpenPose joint OPENPOSE_OF_COCO[j] (OpenPose's neck has no COCO slot).
OPENPOSE_OF_COCO = np.array([0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10])
N_OP = 18
_UPSAMPLE = 4


class OpenVinoHpe:
    name = "openvino-hpe"

    def __init__(self, config: PerceptionConfig) -> None:
        import openvino as ov

        c = config.openvino_hpe
        path = config.model_path(c.path)
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise ModelError(f"OpenVINO model not found: {path} (+ .bin; models_dir "
                             f"{config.models_dir})")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as e:
            raise ModelError(f"{path}: not a readable OpenVINO IR ({e})") from e
        names = {o.get_any_name(): o for o in model.outputs}
        shapes = sorted((tuple(o.get_partial_shape().to_shape())[1], n) for n, o in names.items())
        if [s for s, _ in shapes] != [19, 38]:
            raise ModelError(f"{path}: expected 19 heatmaps and 38 PAF channels, got {shapes}")
        self._heat_name, self._paf_name = shapes[0][1], shapes[1][1]
        _, _, self._h, self._w = (int(d) for d in model.inputs[0].get_partial_shape().to_shape())
        self._compiled = core.compile_model(
            model, c.device, {"INFERENCE_NUM_THREADS": config.threads,
                              "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()
        self._cfg, self._c = config, c

    def raw(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Heatmaps (19, h, w) and PAFs (38, h, w) at network stride, and the x/y scales."""
        ih, iw = image_bgr.shape[:2]
        inp = cv2.resize(image_bgr, (self._w, self._h), interpolation=cv2.INTER_AREA)
        blob = inp.transpose(2, 0, 1)[None].astype(np.float32)
        res = self._request.infer({0: blob})
        heat = res[self._compiled.output(self._heat_name)][0]
        paf = res[self._compiled.output(self._paf_name)][0]
        return heat, paf, iw / self._w, ih / self._h

    def infer(self, image_bgr: np.ndarray) -> Poses:
        heat, paf, sx, sy = self.raw(image_bgr)
        stride = self._h / heat.shape[1] / _UPSAMPLE
        poses = decode(heat, paf, self._c.peak_threshold, self._c.paf_samples,
                       self._c.paf_min_score, self._c.min_joints)
        kp = poses.keypoints.copy()
        # peak (i + 0.5) at stride s is pixel centre (i + 0.5) * s in network input pixels
        kp[..., 0] = (kp[..., 0] + 0.5) * stride * sx - 0.5
        kp[..., 1] = (kp[..., 1] + 0.5) * stride * sy - 0.5
        out = Poses(kp, poses.scores, poses.limb_scores)
        return filter_people(out, self._cfg.min_person_score, self._cfg.max_people)

    def infer_batch(self, images_bgr: list[np.ndarray]) -> list[Poses]:
        return [self.infer(im) for im in images_bgr]


def _peaks(heat: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Per joint: (n, 3) peaks (x, y, score) in upsampled heatmap pixels."""
    out = []
    kernel = np.ones((3, 3), np.uint8)
    for j in range(N_OP):
        h = heat[j]
        mx = cv2.dilate(h, kernel)
        ys, xs = np.nonzero((h == mx) & (h > threshold))
        out.append(np.stack([xs, ys, h[ys, xs]], 1).astype(np.float32))
    return out


def _limb_candidates(
    a: np.ndarray, b: np.ndarray, pafx: np.ndarray, pafy: np.ndarray, samples: int,
    min_score: float, max_len: float,
) -> list[tuple[int, int, float]]:
    """Scored (i, j, score) connections between peaks ``a`` and ``b``, best first, one-to-one."""
    if len(a) == 0 or len(b) == 0:
        return []
    d = b[None, :, :2] - a[:, None, :2]  # (na, nb, 2)
    norm = np.linalg.norm(d, axis=2)
    unit = d / np.maximum(norm, 1e-6)[..., None]
    steps = np.linspace(0.0, 1.0, samples)
    pts = a[:, None, None, :2] + d[:, :, None, :] * steps[None, None, :, None]  # (na, nb, s, 2)
    h, w = pafx.shape
    xi = np.clip(np.round(pts[..., 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(pts[..., 1]).astype(int), 0, h - 1)
    proj = pafx[yi, xi] * unit[:, :, None, 0] + pafy[yi, xi] * unit[:, :, None, 1]
    score = proj.mean(axis=2) + np.minimum(0.5 * max_len / np.maximum(norm, 1e-6) - 1.0, 0.0)
    ok = ((proj > min_score).mean(axis=2) >= 0.8) & (score > 0) & (norm > 0)
    ii, jj = np.nonzero(ok)
    order = np.argsort(-score[ii, jj], kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for k in order:
        i, j = int(ii[k]), int(jj[k])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((i, j, float(score[i, j])))
    return out


def decode(
    heat: np.ndarray, paf: np.ndarray, threshold: float = 0.1, samples: int = 10,
    min_score: float = 0.05, min_joints: int = 3,
) -> Poses:
    """People from heatmaps (≥18, h, w) and PAFs (38, h, w) at network stride.

    Keypoints come back in *upsampled* heatmap pixels (stride / 4); the caller scales them.
    """
    up = _UPSAMPLE
    hm = np.stack([cv2.resize(c, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
                   for c in heat[:N_OP]])
    pf = np.stack([cv2.resize(c, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
                   for c in paf])
    peaks = _peaks(hm, threshold)
    # person rows: candidate index per joint (-1 none), then per-limb score (NaN none)
    people_j: list[np.ndarray] = []
    people_l: list[np.ndarray] = []
    for li, (ja, jb) in enumerate(LIMBS):
        conns = _limb_candidates(peaks[ja], peaks[jb], pf[PAF_X[li]], pf[PAF_X[li] + 1],
                                 samples, min_score, float(hm.shape[1]))
        for ia, ib, s in conns:
            owners = [p for p, row in enumerate(people_j) if row[ja] == ia or row[jb] == ib]
            if not owners:
                row = np.full(N_OP, -1)
                row[ja], row[jb] = ia, ib
                lim = np.full(len(LIMBS), np.nan)
                lim[li] = s
                people_j.append(row)
                people_l.append(lim)
            elif len(owners) == 1:
                p = owners[0]
                row = people_j[p]
                if row[jb] == -1:
                    row[jb] = ib
                if row[ja] == -1:
                    row[ja] = ia
                people_l[p][li] = s if np.isnan(people_l[p][li]) else people_l[p][li]
            else:  # two partial people joined by this limb: merge when they do not overlap
                p, q = owners[:2]
                rp, rq = people_j[p], people_j[q]
                if not ((rp >= 0) & (rq >= 0)).any():
                    people_j[p] = np.where(rp >= 0, rp, rq)
                    people_l[p] = np.where(np.isnan(people_l[p]), people_l[q], people_l[p])
                    people_l[p][li] = s
                    del people_j[q], people_l[q]
    kps, scores, limbs = [], [], []
    for row, lim in zip(people_j, people_l, strict=True):
        found = row >= 0
        if found.sum() < min_joints:
            continue
        kp = np.zeros((N_OP, 3), np.float32)
        support = np.zeros(N_OP)
        for li, (ja, jb) in enumerate(LIMBS):
            if not np.isnan(lim[li]):
                support[ja] = max(support[ja], lim[li])
                support[jb] = max(support[jb], lim[li])
        for j in np.flatnonzero(found):
            x, y, peak = peaks[j][row[j]]
            kp[j] = (x, y, np.sqrt(peak * np.clip(support[j], 0.0, 1.0)))
        coco = kp[OPENPOSE_OF_COCO]
        kps.append(coco)
        scores.append(float(kp[found, 2].mean()) * min(1.0, found.sum() / 6))
        limbs.append(lim.astype(np.float32))
    if not kps:
        return Poses.empty()
    return Poses(np.stack(kps), np.array(scores, np.float32), np.stack(limbs))


def create(config: PerceptionConfig) -> OpenVinoHpe:
    return OpenVinoHpe(config)
