"""Analysis plots of stage 10 (matplotlib, Agg backend, PNG). Each function writes one file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and in jobs
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from voiceswap.data.atomic import temp_path_for  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def loss_curves(metrics_jsonl: Path, path: Path) -> Optional[Path]:
    """Train and valid curves of every metric both splits log (loss first), from metrics.jsonl."""
    records = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    splits: Dict[str, List[dict]] = {}
    for r in records:
        splits.setdefault(r.get("split", "train"), []).append(r)
    keys = sorted({k for r in records for k in r if k not in ("step", "epoch", "split") and not k.startswith("lr")
                   and isinstance(r[k], (int, float))}, key=lambda k: (k != "loss", k))
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split, rs in sorted(splits.items()):
            points = [(r["step"], r[key]) for r in rs if key in r]
            if points:
                ax.plot(*zip(*points), marker="o" if split == "valid" else None, label=split)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend()
    return _save(fig, path)


def spectrograms(panels: Sequence[tuple], path: Path, title: str) -> Path:
    """``panels``: (label, log-mel (T, D)) side by side: source | converted | reference."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    vmin = min(float(np.percentile(m, 1)) for _, m in panels)
    vmax = max(float(m.max()) for _, m in panels)
    for ax, (label, mel) in zip(axes[0], panels):
        ax.imshow(mel.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("frame (10 ms)")
    axes[0][0].set_ylabel("mel bin")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))  # keep the panel titles clear of the figure title
    return _save(fig, path)


def code_usage(codes: np.ndarray, codebook_size: int, path: Path) -> Path:
    counts = np.bincount(codes, minlength=codebook_size)
    fig, ax = plt.subplots(figsize=(max(6, codebook_size * 0.12), 3))
    ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1))
    ax.set_xlabel("code")
    ax.set_ylabel("frequency")
    ax.set_title(f"code usage: {int((counts > 0).sum())} of {codebook_size} codes used")
    return _save(fig, path)


def projection(codebook: np.ndarray, frames: np.ndarray, speakers: Sequence[str], codes: np.ndarray,
               path: Path, method: str = "pca") -> Path:
    """Codebook (black crosses) and encoder frames in 2-D, coloured by speaker and by code."""
    if method == "umap":
        import umap  # optional

        reducer = umap.UMAP(n_components=2, random_state=0)
        both = reducer.fit_transform(np.concatenate([frames, codebook]))
    else:
        from sklearn.decomposition import PCA

        both = PCA(n_components=2, random_state=0).fit(frames).transform(np.concatenate([frames, codebook]))
    f2, c2 = both[: len(frames)], both[len(frames):]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    names = sorted(set(speakers))
    for spk in names:
        mask = np.array([s == spk for s in speakers])
        axes[0].scatter(f2[mask, 0], f2[mask, 1], s=3, alpha=0.5, label=spk)
    axes[0].legend(markerscale=4, fontsize=7)
    axes[0].set_title(f"frames by speaker ({method.upper()})")
    axes[1].scatter(f2[:, 0], f2[:, 1], s=3, alpha=0.5, c=codes, cmap="tab20")
    axes[1].set_title(f"frames by code ({method.upper()})")
    for ax in axes:
        ax.scatter(c2[:, 0], c2[:, 1], marker="x", c="black", s=20, label="codebook")
    return _save(fig, path)


def matrix(values: np.ndarray, labels_y: Sequence, labels_x: Sequence, path: Path, title: str,
           xlabel: str, ylabel: str, annotate: bool = False) -> Path:
    size = max(5, 0.18 * max(len(labels_x), len(labels_y)))
    fig, ax = plt.subplots(figsize=(size * 1.1, size))
    image = ax.imshow(values, aspect="auto", cmap="viridis", origin="upper")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels_x)), [str(x) for x in labels_x], rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels_y)), [str(y) for y in labels_y], fontsize=6)
    if annotate:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def bigrams(bigram_full: np.ndarray, bigram_no_diag: np.ndarray, labels: Sequence, path: Path, what: str) -> Path:
    size = max(5, 0.16 * len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * size, size))
    for ax, values, title in ((axes[0], bigram_full, "with diagonal"), (axes[1], bigram_no_diag, "diagonal zeroed")):
        image = ax.imshow(values, aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax)
        ax.set_xticks(range(len(labels)), [str(x) for x in labels], rotation=90, fontsize=5)
        ax.set_yticks(range(len(labels)), [str(x) for x in labels], fontsize=5)
        ax.set_title(f"{what} bigrams P(previous | current), {title}", fontsize=9)
        ax.set_xlabel("previous")
        ax.set_ylabel("current")
    return _save(fig, path)
