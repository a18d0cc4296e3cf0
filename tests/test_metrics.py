import numpy as np
import pytest

from rnnbench.metrics import confusion_matrix, cross_entropy, macro_f1, predicted_classes


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_f1_by_hand():
    matrix = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    # F1 per class: 2/(2+1+1)=0.5, 2/(2+1+0)=2/3, 4/(4+0+1)=0.8
    assert macro_f1(matrix) == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert macro_f1(np.array([[5, 0], [0, 0]])) == pytest.approx(0.5)


def test_predicted_classes():
    assert predicted_classes(np.array([[0.2], [0.5], [0.51]])).tolist() == [0, 0, 1]
    assert predicted_classes(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])).tolist() == [1, 0]


def test_cross_entropy_matches_keras():
    import keras

    labels = np.array([0, 1, 1])
    sigmoid = np.array([[0.1], [0.8], [0.4]], dtype=np.float32)
    expected = float(keras.losses.BinaryCrossentropy()(labels.reshape(-1, 1), sigmoid))
    assert cross_entropy(labels, sigmoid) == pytest.approx(expected, rel=1e-5)
    softmax = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], dtype=np.float32)
    labels = np.array([0, 2, 1])
    expected = float(keras.losses.SparseCategoricalCrossentropy()(labels, softmax))
    assert cross_entropy(labels, softmax) == pytest.approx(expected, rel=1e-5)
