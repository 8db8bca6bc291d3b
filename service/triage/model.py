"""The learning part of the category and department suggestions (issue 13), pure: no database.

* :class:`TextClassifier`: TF-IDF over the jieba tokens of :func:`service.triage.text.tokens`
  (sublinear term frequency) and a multinomial logistic regression (scikit-learn, ``lbfgs``,
  classes weighted by inverse frequency). It ranks the labels with a probability and names the
  words that weighed most for each (the largest positive terms ``tf-idf(word) × coefficient``).
* :class:`KeywordRanker`: the cold-start fallback and the keyword baseline of the evaluation:
  labels ranked by the idf-weighted overlap of the request's tokens with each label's keywords
  (category: its name and its descendants' names; department: its name and the names of the
  categories it handles by default).
* :class:`TriageBundle`: what is stored, one category and one department classifier.

The choices (words only, no character n-grams; ``C = 1``; words in at least two documents;
balanced class weights) were made by 5-fold cross-validation on the labelled file and by the
training time on 10,000 tickets (docs/triage.md): character 2-3-grams added nothing clear there
and make the explanation harder to read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

#: Inverse regularisation strength of the logistic regression.
C = 1.0
#: A word must occur in this many training documents to be a feature (from
#: :data:`MIN_DF_FROM` documents on; smaller sets keep every word): a word seen once is no
#: reliable reason, and dropping those halves the vocabulary, the model and the training time.
MIN_DF = 2
MIN_DF_FROM = 100
#: Words named per suggestion.
WORDS = 5


def _identity(doc: list[str]) -> list[str]:
    """The vectoriser's analyser: documents arrive as token lists (module-level: picklable)."""
    return doc


@dataclass(frozen=True)
class Ranked:
    """One suggested label: ``label`` (a category or department id, or a name in the evaluation),
    ``confidence`` in 0..1 and the ``words`` that weighed most, strongest first."""

    label: Hashable
    confidence: float
    words: tuple[str, ...] = ()


class TextClassifier:
    """A fitted TF-IDF + logistic-regression classifier over token lists."""

    def __init__(self, vectorizer: TfidfVectorizer, model: LogisticRegression):
        self.vectorizer = vectorizer
        self.model = model
        self.names = vectorizer.get_feature_names_out()

    @property
    def labels(self) -> list[Hashable]:
        return list(self.model.classes_)

    def probabilities(self, docs: Sequence[list[str]]) -> np.ndarray:
        """``len(docs) × len(labels)`` probabilities (rows sum to 1)."""
        return self.model.predict_proba(self.vectorizer.transform(docs))

    def _vector(self, doc: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, values)`` of one token list's TF-IDF row, as ``vectorizer.transform`` makes
        it (known words only, columns ascending; tf = 1 + ln(count), × idf, L2-normalised), without
        scikit-learn's per-call input validation and sparse-matrix construction."""
        vocab = self.vectorizer.vocabulary_
        counts = Counter(vocab[w] for w in doc if w in vocab)
        if not counts:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32)
        cols = np.fromiter(sorted(counts), dtype=np.intp, count=len(counts))
        tf = np.log(np.fromiter((counts[c] for c in cols), dtype=np.float64, count=len(cols))) + 1.0
        vals = (tf * self._idf[cols]).astype(np.float32)
        return cols, vals / np.float32(np.sqrt(np.dot(vals, vals)))

    def _proba(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """The probabilities of every label for one TF-IDF row (``predict_proba``'s formula:
        softmax of ``coef·x + intercept`` for several classes, the logistic for two)."""
        z = self.model.coef_[:, cols] @ vals.astype(np.float64) + self.model.intercept_
        if z.shape[0] == 1:  # two classes: coef_ holds the second class's side
            p1 = 1.0 / (1.0 + np.exp(-z[0]))
            return np.array([1.0 - p1, p1])
        z = np.exp(z - z.max())
        return z / z.sum()

    def rank(self, doc: list[str], k: int = 3) -> list[Ranked]:
        """The ``k`` most probable labels of one token list, each with its words.

        Computed on the sparse row directly (:meth:`_vector`, :meth:`_proba`): the same figures
        as ``predict_proba(vectorizer.transform([doc]))`` (tested to 1e-6), at a fraction of the
        per-call cost of scikit-learn's validation (docs/triage.md "Latency").
        """
        cols, vals = self._vector(doc)
        proba = self._proba(cols, vals)
        order = np.argsort(-proba, kind="stable")[:k]
        coef = self.model.coef_
        out = []
        for i in order:
            row = coef[i] if coef.shape[0] > 1 else (coef[0] if i == 1 else -coef[0])
            contrib = vals * row[cols]
            best = np.argsort(-contrib, kind="stable")[:WORDS]
            words = tuple(str(self.names[cols[j]]) for j in best if contrib[j] > 0)
            label = self.model.classes_[i]
            out.append(Ranked(label.item() if hasattr(label, "item") else label, float(proba[i]), words))
        return out

    @property
    def _idf(self) -> np.ndarray:
        idf = self.__dict__.get("_idf_cache")
        if idf is None:  # a model unpickled from an older blob has no cache yet
            idf = self.__dict__["_idf_cache"] = np.asarray(self.vectorizer.idf_, dtype=np.float64)
        return idf


def fit_classifier(docs: Sequence[list[str]], labels: Sequence[Hashable]) -> TextClassifier | None:
    """Fit a :class:`TextClassifier` on token lists and their labels; ``None`` when there are
    fewer than two distinct labels (nothing to learn: the keyword fallback answers)."""
    if len(set(labels)) < 2:
        return None
    vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True,
                                 min_df=MIN_DF if len(docs) >= MIN_DF_FROM else 1, dtype=np.float32)
    x = vectorizer.fit_transform(docs)
    model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced")
    model.fit(x, np.asarray(labels))
    return TextClassifier(vectorizer, model)


class KeywordRanker:
    """Labels ranked by the overlap of a request's tokens with each label's keyword bag.

    score(label) = Σ idf(t) over the distinct tokens t of the request found in the bag, with
    idf(t) = ln(1 + N / n_t) over the N bags; confidence = score / Σ scores of the labels scored
    (so it is a share, not a calibrated probability). Labels without an overlapping token are not
    ranked.
    """

    def __init__(self, bags: dict[Hashable, Sequence[str]]):
        self.bags = {label: frozenset(words) for label, words in bags.items() if words}
        df = Counter(w for words in self.bags.values() for w in words)
        n = max(len(self.bags), 1)
        self.idf = {w: math.log(1 + n / c) for w, c in df.items()}
        self.index: dict[str, list[Hashable]] = {}
        for label, words in self.bags.items():
            for w in words:
                self.index.setdefault(w, []).append(label)

    def rank(self, doc: list[str], k: int = 3) -> list[Ranked]:
        scores: dict[Hashable, float] = {}
        hits: dict[Hashable, list[str]] = {}
        for w in dict.fromkeys(doc):
            for label in self.index.get(w, ()):
                scores[label] = scores.get(label, 0.0) + self.idf[w]
                hits.setdefault(label, []).append(w)
        if not scores:
            return []
        total = sum(scores.values())
        best = sorted(scores, key=lambda lb: (-scores[lb], str(lb)))[:k]
        return [Ranked(lb, scores[lb] / total,
                       tuple(sorted(hits[lb], key=lambda w: -self.idf[w])[:WORDS])) for lb in best]


@dataclass
class TriageBundle:
    """What one stored model version holds: the category and the department classifiers (either
    ``None`` when its labels were fewer than two) and the training counts."""

    category: TextClassifier | None
    department: TextClassifier | None
    counts: dict[str, int] = field(default_factory=dict)
