"""Small 1D CNN classifiers of segments and their scores: the classifier two-sample test (C2ST) of the
fidelity report, and the fixed window classifier of the augmentation and transfer benchmarks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vibgan.errors import DataError
from vibgan.spectral import as_segments


def c2st_accuracy(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, folds: int = 4, crop: int = 512,
                  epochs: int = 20, crops_per_segment: int = 16, max_per_set: int = 64,
                  threads: int | None = 1) -> float | None:
    """Classifier two-sample test: held-out accuracy of a small 1D CNN telling real from generated segments.

    Fair-test choices: both sets are subsampled to the same size (balanced, at most ``max_per_set``); the
    split is by segment (K folds, every segment scored once, never trained on and scored in the same fold);
    the CNN sees raw waveform crops of ``crop`` samples scaled by one per-channel factor fit on the training
    fold (so amplitude differences stay visible, unlike per-segment normalisation); training draws random
    crops, scoring tiles each held-out segment into non-overlapping crops and reports the accuracy over those
    crops. 0.5 means indistinguishable; 1.0 means every crop is told apart. Seeded: same seed, same result.
    The mean is removed per segment first (sensor DC drift is not vibration, and the PSD ignores it too).
    ``threads`` caps torch's CPU threads while it runs (the network is tiny; 1 avoids oversubscription).
    Returns None when either set has fewer than 2 segments.
    """
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _c2st(real, fake, seed=seed, folds=folds, crop=crop, epochs=epochs,
                     crops_per_segment=crops_per_segment, max_per_set=max_per_set)
    finally:
        torch.set_num_threads(old_threads)


def _c2st(real: np.ndarray, fake: np.ndarray, *, seed: int, folds: int, crop: int, epochs: int,
          crops_per_segment: int, max_per_set: int) -> float | None:

    real = as_segments(real, "real")
    fake = as_segments(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(f"c2st: real segments {real.shape[1:]} and generated {fake.shape[1:]} differ in shape")
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake), max_per_set)
    if n < 2:
        return None
    # DC is removed per segment and channel (as the Welch PSD's constant detrend does): an accelerometer's
    # offset drifts with temperature and is not vibration; a classifier would otherwise learn the drift.
    r = real[rng.choice(len(real), n, replace=False)].astype(np.float32)
    f = fake[rng.choice(len(fake), n, replace=False)].astype(np.float32)
    r -= r.mean(axis=-1, keepdims=True)
    f -= f.mean(axis=-1, keepdims=True)
    channels, length = r.shape[1], r.shape[2]
    crop = min(crop, length)
    k = max(2, min(folds, n))
    fold_of = np.arange(n) % k  # same fold layout for both sets: balanced test folds
    rng.shuffle(fold_of)
    correct = 0
    total = 0
    gen = torch.Generator().manual_seed(seed)
    for fold in range(k):
        tr, te = fold_of != fold, fold_of == fold
        x_tr = np.concatenate([r[tr], f[tr]])
        y_tr = np.concatenate([np.ones(tr.sum()), np.zeros(tr.sum())]).astype(np.float32)
        scale = x_tr.std(axis=(0, 2), keepdims=True) + 1e-12  # (1, C, 1) from the training fold only
        torch.manual_seed(seed * 1000 + fold)
        net = _c2st_net(channels)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        loss_fn = nn.BCEWithLogitsLoss()
        xt = torch.from_numpy(x_tr / scale)
        yt = torch.from_numpy(y_tr)
        net.train()
        for _ in range(epochs):
            # random crops: crops_per_segment per training segment, (B, C, crop)
            seg = torch.arange(len(xt)).repeat_interleave(crops_per_segment)
            start = torch.randint(0, length - crop + 1, (len(seg),), generator=gen)
            idx = start[:, None] + torch.arange(crop)[None, :]
            xb = torch.gather(xt[seg], 2, idx[:, None, :].expand(-1, channels, -1))
            yb = yt[seg]
            perm = torch.randperm(len(seg), generator=gen)
            for i in range(0, len(seg), 128):
                j = perm[i:i + 128]
                opt.zero_grad()
                loss = loss_fn(net(xb[j]), yb[j])
                loss.backward()
                opt.step()
        net.eval()
        x_te = np.concatenate([r[te], f[te]]) / scale
        y_te = np.concatenate([np.ones(te.sum()), np.zeros(te.sum())])
        tiles = length // crop
        xc = x_te[:, :, : tiles * crop].reshape(len(x_te), channels, tiles, crop).transpose(0, 2, 1, 3)
        with torch.no_grad():
            logits = net(torch.from_numpy(np.ascontiguousarray(xc.reshape(-1, channels, crop), dtype=np.float32)))
        pred = (logits.numpy() > 0).reshape(len(x_te), tiles)
        correct += int((pred == (y_te[:, None] > 0.5)).sum())
        total += pred.size
    return correct / total


def _c2st_net(channels: int):
    """Three strided conv layers, then mean and max over time (band energy and impulsiveness), then a logit."""
    class C2STNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv1d(channels, 16, 31, stride=2, padding=15), nn.ReLU(),
                nn.Conv1d(16, 32, 9, stride=4, padding=4), nn.ReLU(),
                nn.Conv1d(32, 32, 9, stride=4, padding=4), nn.ReLU(),
            )
            self.head = nn.Linear(64, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B,)
            h = self.body(x)  # (B, 32, L / 32)
            return self.head(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)).squeeze(1)

    return C2STNet()


# ---- the fixed window classifier of the augmentation and transfer benchmarks, and its scores -----------------
def window_cnn(n_classes: int, channels: int = 1):
    """The fixed classifier: a small WDCNN-style 1D CNN (wide first kernel, then 3-tap convolutions)."""
    def block(a: int, b: int, k: int, stride: int = 1) -> list:
        return [nn.Conv1d(a, b, k, stride=stride, padding=k // 2 if stride == 1 else (k - stride) // 2),
                nn.BatchNorm1d(b), nn.ReLU(), nn.MaxPool1d(2)]

    return nn.Sequential(
        *block(channels, 16, 64, stride=8),  # 2048 -> 256 -> 128
        *block(16, 32, 3),  # -> 64
        *block(32, 64, 3),  # -> 32
        *block(64, 64, 3),  # -> 16
        nn.Conv1d(64, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, n_classes),
    )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (K, K): row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def recall(cm: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Per class: the share of its windows predicted as itself (rows of a confusion matrix)."""
    return dict(zip(classes, (np.diag(cm) / np.maximum(1, cm.sum(axis=1))).tolist()))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *, present_only: bool = False) -> float:
    """Mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class absent from both counts as 0.

    ``present_only``: the mean over the classes with test windows only (a condition where a class was never
    recorded is not scored on it; predicting that class is still an error for the true class)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[cm.sum(axis=1) > 0].mean() if present_only else f1.mean())


def train_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int, epochs: int, per_epoch: int,
                     batch_size: int = 64, lr: float = 1e-3, scale: tuple[float, float] = (0.0, 1.0)):
    """Train window_cnn with Adam; each epoch draws ``per_epoch`` windows class-balanced from the pool (the same
    number of gradient steps for every variant, whatever the pool size). Input: (x - mean) / std of the real
    training windows."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = window_cnn(n_classes, x.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt = torch.from_numpy((x.astype(np.float32) - scale[0]) / scale[1])
    order = np.argsort(y, kind="stable")
    count = np.bincount(y, minlength=n_classes)
    first = np.cumsum(count) - count
    present = np.flatnonzero(count)
    net.train()
    for _ in range(epochs):
        for _ in range(max(1, per_epoch // batch_size)):
            k = present[rng.integers(len(present), size=batch_size)]
            idx = order[first[k] + (rng.random(batch_size) * count[k]).astype(np.int64)]
            loss = F.cross_entropy(net(xt[idx]), torch.from_numpy(y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def predict(net, x: np.ndarray, scale: tuple[float, float], batch_size: int = 256) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy((x[i:i + batch_size].astype(np.float32) - scale[0]) / scale[1])
            out.append(net(xb).argmax(dim=1).numpy())
    return np.concatenate(out)
