"""Which candidate texts a round sends to the teacher: the student's uncertainty about each, and a pick that lets
every predicted class take its turn.

Scores are "higher = the student is less sure" for every rule, so the pick is one code path:
- margin: 1 - (p1 - p2), the gap between the student's two most likely classes (Scheffer et al. 2001);
- entropy: the entropy of the student's class distribution;
- disagreement: the mutual information between the prediction and the weights under dropout (BALD, Houlsby et al.
  2011; Gal et al. 2017): `committee` dropout passes of the same student vote, and a text scores high where they
  disagree with each other, not merely where each is unsure.
Without `balance`, uncertainty sampling piles onto the one or two classes the student confuses most; taking turns
by predicted class keeps each round's labels spread, the failure mode batch-mode active learning warns about.

`power_ranks` makes the pick stochastic (power acquisition, Kirsch et al. 2023, "Stochastic Batch Acquisition"):
instead of the top scores, texts are drawn without replacement with probability proportional to score ** power.
Why: the very top of an uncertainty ranking is where the teacher errs most (measured in RESULTS.md: on GoEmotions
and SST-2 it is right on 21% and 58% of the student's least-sure texts against 31% and 68% of random ones), and a
batch of top scores is crowded with near-twins; a draw weighted by uncertainty keeps the bias toward hard texts
while reaching further down the ranking. Measured there (RESULTS.md, 3 seeds each): the draw's picks are right more
often (28% and 63%), but its students agree with the teacher less than top's on held-out texts, so top stays the
default and power an option.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gendistill.students.classifier import StudentClassifier

SELECTIONS = ("margin", "entropy", "disagreement")


def _probabilities(student: StudentClassifier, texts: Sequence[str], batch_size: int, dropout: bool) -> np.ndarray:
    model = student.model
    model.train(dropout)
    device = next(model.parameters()).device
    out = np.zeros((len(texts), student.spec.num_labels), dtype=np.float64)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of similar length: little padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, lengths = student.tensors([texts[i] for i in chunk], device)
            out[chunk] = torch.softmax(model(ids, lengths).double(), dim=-1).cpu().numpy()
    model.eval()
    return out


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0))).sum(axis=-1)


def uncertainty(
    student: StudentClassifier,
    texts: Sequence[str],
    select: str,
    *,
    committee: int = 8,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """(score, predicted class) per text; a higher score means the student is less sure (see the module doc)."""
    if select not in SELECTIONS:
        raise ValueError(f"select={select!r}: expected one of {', '.join(SELECTIONS)}")
    probabilities = _probabilities(student, texts, batch_size, dropout=False)
    predicted = probabilities.argmax(axis=1)
    if select == "margin":
        top = np.sort(probabilities, axis=1)[:, ::-1]
        second = top[:, 1] if top.shape[1] > 1 else np.zeros(len(top))
        return 1.0 - (top[:, 0] - second), predicted
    if select == "entropy":
        return _entropy(probabilities), predicted
    torch.manual_seed(seed)  # the dropout masks: the same scores for the same student and texts
    passes = np.stack([_probabilities(student, texts, batch_size, dropout=True) for _ in range(committee)])
    return _entropy(passes.mean(axis=0)) - _entropy(passes).mean(axis=0), predicted


def power_ranks(scores: np.ndarray, power: float, rng: np.random.Generator) -> np.ndarray:
    """Keys whose descending order is a draw without replacement with probability proportional to
    `scores ** power`: power * log(score) plus Gumbel noise (the Gumbel-top-k trick), so `pick` on these keys
    (balanced or not) is the stochastic pick of the module doc. A score of 0 is never drawn before a positive one."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = scores > 0
    noise = rng.gumbel(size=len(scores))  # drawn for every text, so a text's key does not depend on the others'
    return np.where(positive, power * np.log(np.where(positive, scores, 1.0)) + noise, -np.inf)


def pick(scores: np.ndarray, predicted: np.ndarray, k: int, *, balance: bool = True) -> list[int]:
    """The positions of the `k` highest scores (ties: the earlier position); with `balance`, the predicted classes
    take turns, each giving its most uncertain remaining text, until `k` are picked or none remain."""
    order = np.argsort(-scores, kind="stable")
    if not balance:
        return [int(i) for i in order[:k]]
    queues = {int(label): [int(i) for i in order if predicted[i] == label] for label in np.unique(predicted)}
    picked: list[int] = []
    depth = 0
    while len(picked) < min(k, len(order)):
        turn = [queue[depth] for queue in queues.values() if depth < len(queue)]
        picked += sorted(turn, key=lambda i: (-scores[i], i))[: k - len(picked)]  # a short last turn: surest out
        depth += 1
    return picked
