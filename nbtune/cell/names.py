"""What a variable's name says: an error or a score (which way is better), a time.

Read from the words of the name (``val_loss``, ``valLoss`` and ``ValLoss`` are ``{"val", "loss"}``),
to say before a search that it would look for the worst model (``--maximize val_rmse``), and after
it, that its curves read the other way round.
"""

from __future__ import annotations

import re

__all__ = ["ERROR_WORDS", "NEGATED", "SCORE_WORDS", "TIME_WORDS", "measures", "metric_reads_as", "words"]

ERROR_WORDS = {
    "loss", "mse", "rmse", "mae", "mape", "smape", "msle", "rmsle", "mase", "error", "err", "logloss", "nll",
    "crossentropy", "deviance", "perplexity", "ppl", "brier", "hinge", "wer", "cer", "eer", "fpr", "fnr", "ece",
    "impurity", "entropy",
    # clustering, model selection, forecasting, finance, RL, latency (found trying nbtune as a new user)
    "davies", "bouldin", "bic", "aic", "crps", "kl", "regret", "drawdown", "cost", "latency",
}  # fmt: skip
SCORE_WORDS = {  # (average precision, XGBoost's aucpr, Gini and KS of credit scoring: found trying nbtune as a new user)
    "acc", "accuracy", "auc", "f1", "f2", "fbeta", "r2", "precision", "recall", "auroc", "auprc", "aucpr", "prauc",
    "ap", "map", "ndcg", "gini", "ks", "mcc", "kappa", "iou", "dice", "bleu", "rouge", "tpr", "tnr", "sensitivity",
    "specificity", "ppv", "npv",
    # ranking and recommendation (found trying nbtune as a new user): hit rate, HR@k, MRR, coverage, CTR
    "hit", "hits", "hitrate", "hitratio", "hr", "mrr", "reciprocal", "coverage", "ctr", "gauc", "prec", "success",
    "silhouette", "calinski", "elbo", "likelihood", "lik", "loglik", "loglikelihood", "reward", "return", "returns", "sharpe", "sortino",
    "profit", "spearman", "pearson", "explained", "oob",
}  # fmt: skip
_MEAN = {"mean", "median", "avg", "average"}  # mean_rank, median_rank: lower is better (mean_reciprocal_rank: higher)
NEGATED = {"neg", "negative", "minus"}
# words that turn a measure round, or make it a difference either way: neg_rmse, rmse_improvement, accuracy_gap,
# brier_skill_score (higher is better)
_TURNED = NEGATED | {"inv", "improvement", "gain", "reduction", "decrease", "drop", "delta", "gap", "skill"}
TIME_WORDS = {
    "latency", "ms", "us", "seconds", "secs", "sec", "time", "runtime", "duration", "elapsed", "throughput", "qps",
}  # fmt: skip


def words(name: str) -> set[str]:
    """The words of a variable's name: val_loss, valLoss and ValLoss are {"val", "loss"}; a word
    that ends in a number counts with and without it (ndcg10 and recall10 as ndcg and recall, f1 as f1)."""
    said = set(re.split(r"[_\W]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()))
    return said | {m[1] for w in said if (m := re.fullmatch(r"([a-z]+)\d+", w))}


def metric_reads_as(metric: str) -> str | None:
    """``"error"`` (lower is better: ``val_rmse``), ``"score"`` (higher is better: ``val_acc``),
    ``"negated error"`` (an error negated so that higher is better: ``neg_rmse``, scikit-learn's
    ``neg_`` scorers), or None when the name says neither or both (``precision_error``,
    ``accuracy_gap``). The measure is what comes before "at" (``recall_at_fpr``, ``precisionAtK``)."""
    said = words(re.split(r"_at_|(?<=[a-z0-9])At(?=[A-Z0-9])", metric)[0])
    if said & NEGATED and said & ERROR_WORDS:
        return "negated error"
    if "rank" in said and said & _MEAN and "reciprocal" not in said:
        said = said | {"err"}  # the mean rank of the true item
    if said & NEGATED and said & SCORE_WORDS and not said & ERROR_WORDS:  # neg_log_likelihood: lower is better
        return "error"
    if said & _TURNED or (said & ERROR_WORDS and said & SCORE_WORDS):
        return None
    if said & ERROR_WORDS:
        return "error"
    if said & SCORE_WORDS:
        return "score"
    return None


# a measure's other names (one word each); words that name no measure of their own (loss, score) are left out
_SAME_MEASURE = {
    "accuracy": "acc", "auroc": "auc", "roc": "auc", "aucpr": "ap", "prauc": "ap", "auprc": "ap", "map": "ap",
    "prec": "precision", "ppv": "precision", "sensitivity": "recall", "tpr": "recall", "tnr": "specificity",
    "hits": "hit", "hitrate": "hit", "hitratio": "hr", "nll": "logloss", "crossentropy": "logloss",
    "lik": "likelihood", "loglik": "likelihood", "loglikelihood": "likelihood", "returns": "return",
    "reward": "return", "err": "error",
}  # fmt: skip
_NO_MEASURE = {"loss", "error", "cost", "score", "success"}


def measures(name: str) -> set[str]:
    """What a variable's name says it measures, one word per measure (``val_accuracy`` and ``test_acc``:
    {"acc"}; ``test_roc_auc``: {"auc"}); empty when it says none or only a word any measure goes by
    (``val_loss``, ``score``)."""
    said = words(name)
    found = {_SAME_MEASURE.get(w, w) for w in said & (ERROR_WORDS | SCORE_WORDS | set(_SAME_MEASURE))}
    return found - _NO_MEASURE
