"""Material recommendation (推广素材推荐): which products a promoter should push next, learned
from implicit feedback, i.e. who sold (or bought) which item and how often.

For a promoter the "user" is the promoter and their items are what their customers bought
through them; promoters whose sales overlap with theirs drive what they are recommended.

Three recommenders, all pure and deterministic (same input → same ranking; ties broken by
popularity, then by the item's string form):

- ``"ease"`` (the default): EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse
  Data"), a linear item-item model with a closed form. With the user × item matrix ``X``, its
  Gram matrix ``G = XᵀX`` and ``P = (G + λI)⁻¹``, the weights are ``B = I − P / diag(P)`` (so
  ``B_ii = 0``) and a user's scores are ``x · B``. It is one ridge regression predicting every
  item from all the others at once, so unlike raw co-occurrence it discounts items that come
  along with everything. It is the best of these on the time-split evaluation
  (``tuike/lab/eval_recommend.py``), needs only numpy, and costs one ``n_items × n_items``
  inversion (a 3,000-item catalogue: under a second); a catalogue of 10⁵ SKUs would want a
  sparse method instead (item-kNN below keeps only the co-occurrence counts).
- ``"itemknn"``: item-item cosine of the item columns with shrinkage,
  ``S_ij = G_ij / (‖x_i‖‖x_j‖ + shrink)`` (zero diagonal), scores ``x · S``: the classic
  "bought together" co-occurrence recommender. Without shrinkage, two items that one lone user
  bought together get similarity 1 and flood the list.
- ``"popularity"``: the number of distinct users per item; also the cold-start answer of the
  other two (a user none of whose items the model knows).

Weights: repeats of (user, item) are summed; by default (``weighting="binary"``) the model then
only uses *whether* a user has an item, which measured better than ``log1p(count)`` on the
evaluation (wholesale quantities in retail data are heavy-tailed and say little about taste).
λ = 200 and shrink = 100 were chosen on a validation split cut from the training period only.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("ease", "itemknn", "popularity")
WEIGHTINGS = ("binary", "log")
DEFAULT_L2 = 200.0     # EASE's λ
DEFAULT_SHRINK = 100.0  # item-kNN's shrinkage
_DIGITS = 9  # scores are rounded before ranking so that float noise never reorders ties


@dataclass(frozen=True, eq=False)
class Model:
    method: str
    weighting: str
    items: tuple                 # item keys sorted by str(): an item's column is its position
    index: dict                  # item -> column
    popularity: np.ndarray       # distinct users per item
    weights: np.ndarray | None   # item × item scoring matrix (None for popularity)
    users: int


def _transform(x: np.ndarray, weighting: str) -> np.ndarray:
    return (x > 0).astype(np.float64) if weighting == "binary" else np.log1p(x)


def fit(interactions: Iterable[tuple[Hashable, Hashable, float]], method: str = "ease", *,
        l2: float = DEFAULT_L2, shrink: float = DEFAULT_SHRINK, weighting: str = "binary") -> Model:
    """Learn from ``(user, item, weight)`` rows; weights ≤ 0 are dropped, repeats are summed."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; one of {', '.join(WEIGHTINGS)}")
    cells: dict[tuple, float] = defaultdict(float)
    for user, item, weight in interactions:
        if float(weight) > 0:
            cells[(user, item)] += float(weight)
    items = tuple(sorted({i for _, i in cells}, key=str))
    index = {item: k for k, item in enumerate(items)}
    rows = {user: k for k, user in enumerate(sorted({u for u, _ in cells}, key=str))}
    x = np.zeros((len(rows), len(items)))
    for (user, item), w in cells.items():
        x[rows[user], index[item]] = w
    x = _transform(x, weighting)
    popularity = (x > 0).sum(axis=0).astype(np.float64)
    weights = None
    if method != "popularity" and items:
        gram = x.T @ x
        if method == "ease":
            p = np.linalg.inv(gram + l2 * np.eye(len(items)))
            weights = -p / np.diag(p)[None, :]
        else:
            norms = np.sqrt(np.diag(gram))
            weights = gram / (np.outer(norms, norms) + shrink)
        np.fill_diagonal(weights, 0.0)
    return Model(method, weighting, items, index, popularity, weights, len(rows))


def recommend_many(model: Model, users_items: Sequence[Mapping[Hashable, float]], top: int = 10,
                   exclude_seen: bool = True) -> list[list[tuple[Hashable, float]]]:
    """:func:`recommend` for several users at once (one matrix product)."""
    n = len(model.items)
    if top <= 0 or not n:
        return [[] for _ in users_items]
    x = np.zeros((len(users_items), n))
    for r, user_items in enumerate(users_items):
        for item, w in user_items.items():
            k = model.index.get(item)
            if k is not None and float(w) > 0:
                x[r, k] += float(w)
    known = x > 0
    cold = ~known.any(axis=1)
    if model.weights is None:
        scores = np.broadcast_to(model.popularity, x.shape).copy()
    else:
        scores = _transform(x, model.weighting) @ model.weights
        scores[cold] = model.popularity
    scores = np.round(scores, _DIGITS)
    columns = np.arange(n)
    out = []
    for r in range(len(users_items)):
        # lexsort sorts by its last key first: score desc, popularity desc, column (str order) asc
        order = np.lexsort((columns, -model.popularity, -scores[r]))
        if exclude_seen:
            order = order[~known[r, order]]
        out.append([(model.items[k], float(scores[r, k])) for k in order[:top]])
    return out


def recommend(model: Model, user_items: Mapping[Hashable, float], top: int = 10,
              exclude_seen: bool = True) -> list[tuple[Hashable, float]]:
    """The ``top`` items for a user who has ``user_items`` (item -> weight), best first.

    Scored by the model, ties broken by popularity then by ``str(item)``. A user with no item the
    model knows (cold start, e.g. a new promoter) gets the popularity ranking, with the number of
    users who have each item as its score. Items the user has are left out unless
    ``exclude_seen`` is false.
    """
    return recommend_many(model, [user_items], top, exclude_seen)[0]
