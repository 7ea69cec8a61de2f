"""Which retrieved corpus rows look like the task's own texts: a domain classifier on the embeddings.

Nearest neighbours answer "what is this text about", not "is it the same kind of text": the neighbours of a
Reddit comment that thanks someone include a diplomat's sentence of thanks, and a movie-review phrase finds
speeches on anything "remarkable". A corpus that is mostly off-task hands the student those texts with the
teacher's labels on them. The classic remedy for picking in-domain data out of a large mixed corpus is to score
each text by how much more it resembles the in-domain sample than the general corpus (Moore & Lewis 2010, with
language models; the same with a classifier on sentence embeddings, e.g. Aharoni & Goldberg 2020). Here: a
logistic regression (scikit-learn) on the cached vectors, the labeled texts against a seeded random sample of
corpus rows, which on a mixed corpus are mostly off-task (positive-unlabeled learning: the on-task rows among
them only make it stricter). Balanced class weights, so 0.5 means "as likely the task's as the corpus's".

Measured by benchmarks/retrieval.py quality (10,000 texts of a dataset, 5,000 for ag_news, hidden among 110,000
UN General Debate sentences; 1,000 texts retrieved for 16 labeled texts per class; the share of retrieved texts
that came from the dataset's own pool, no test labels involved): by rank alone 0.75 on GoEmotions (seed 0) and
0.75/0.85 on SST-2 (seeds 0/1); with this classifier first 0.91 and, with the deeper search of the retrieve
source, 0.97/0.99 (benchmarks/results/retrieval/runs and ablation/).

Why the default threshold stays at 0.5: at 0.7 the share rises on every harness mix (AG News 94.4% -> 96.6%,
benchmarks/retrieval_domain.py), but to find its 2n passing candidates the search goes twice as deep, and the AG
News students on those farther texts agreed less with their teacher on held-out texts (87.1% -> 86.2%, 3 seeds;
benchmarks/results/retrieval/domain_threshold/). The retrieve source's `domain_threshold` is the knob.
"""

from __future__ import annotations

import numpy as np

from gendistill.data.corpus_embeddings import EmbeddingsFile

NEGATIVES = 5000  # random corpus rows the labeled texts are told apart from
DEFAULT_THRESHOLD = 0.5  # the retrieve source's domain_threshold: "at least as likely the task's as the corpus's"


class DomainClassifier:
    """P(the task's kind of text) of corpus rows, from a classifier fitted on the labeled texts' vectors against
    up to NEGATIVES random corpus rows (seeded)."""

    def __init__(self, labeled: np.ndarray, corpus: EmbeddingsFile, seed: int):
        from sklearn.linear_model import LogisticRegression  # ~0.7 s to import: only a retrieve source pays

        self.corpus = corpus
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(corpus.rows, size=min(NEGATIVES, corpus.rows), replace=False))
        negatives = corpus.take(sample).astype(np.float32)
        negatives = negatives[np.linalg.norm(negatives, axis=1) > 0.5]  # empty rows have zero vectors
        self.model = None  # nothing to tell the labeled texts from (an empty corpus): every row passes
        if len(negatives) == 0 or len(labeled) == 0:
            return
        features = np.vstack([np.asarray(labeled, dtype=np.float32), negatives])
        target = np.r_[np.ones(len(labeled)), np.zeros(len(negatives))]
        self.model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(features, target)

    def scores(self, rows: list[int]) -> dict[int, float]:
        if not rows:
            return {}
        if self.model is None:
            return dict.fromkeys(rows, 1.0)
        probabilities = self.model.predict_proba(self.corpus.take(np.asarray(rows)).astype(np.float32))[:, 1]
        return {row: float(p) for row, p in zip(rows, probabilities, strict=True)}

    def passing(self, rows: list[int], threshold: float = DEFAULT_THRESHOLD) -> set[int]:
        return {row for row, score in self.scores(rows).items() if score >= threshold}
