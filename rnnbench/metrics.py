"""Classification metrics computed from predictions: accuracy, confusion matrix, macro-F1."""

from __future__ import annotations

import numpy as np


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """Class indices from model outputs: a sigmoid column (threshold 0.5, as Keras' accuracy) or softmax rows."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 2 and probabilities.shape[1] > 1:
        return probabilities.argmax(axis=1)
    return (probabilities.reshape(-1) > 0.5).astype(np.int64)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def macro_f1(matrix: np.ndarray) -> float:
    """The unweighted mean over classes of F1 = 2TP / (2TP + FP + FN); a class never seen nor predicted scores 0."""
    true_positives = np.diag(matrix).astype(float)
    denominators = matrix.sum(axis=0) + matrix.sum(axis=1)
    scores = np.divide(2 * true_positives, denominators, out=np.zeros_like(true_positives), where=denominators > 0)
    return float(scores.mean())


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary (one sigmoid column) or sparse categorical cross-entropy, clipped as Keras does."""
    epsilon = 1e-7
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), epsilon, 1 - epsilon)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim == 2 and probabilities.shape[1] > 1:
        return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))
    positive = probabilities.reshape(-1)
    return float(-np.mean(labels * np.log(positive) + (1 - labels) * np.log(1 - positive)))
