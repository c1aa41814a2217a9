import json

import numpy as np
import pytest

from emofusion.metrics import (
    binary_roc_auc,
    classification_report,
    confusion_matrix_figure,
    expected_calibration_error,
    plot_confusion_matrix,
)

LABELS = ["a", "b", "c"]
Y = [0, 0, 0, 1, 1, 2]
P = np.array(
    [
        [0.70, 0.20, 0.10],  # true a, pred a, conf .70, correct
        [0.55, 0.35, 0.10],  # true a, pred a, conf .55, correct
        [0.20, 0.60, 0.20],  # true a, pred b, conf .60, wrong
        [0.10, 0.80, 0.10],  # true b, pred b, conf .80, correct
        [0.30, 0.30, 0.40],  # true b, pred c, conf .40, wrong
        [0.20, 0.00, 0.80],  # true c, pred c, conf .80, correct
    ]
)


def test_report_hand_computed():
    r = classification_report(Y, P, LABELS, n_bins=4)
    # confusion (rows true a,b,c; cols pred a,b,c): a -> [2,1,0], b -> [0,1,1], c -> [0,0,1]
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["n"] == 6 and r["labels"] == LABELS
    # accuracy = (2 + 1 + 1) / 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    # precision a 2/2, b 1/2, c 1/2; recall a 2/3, b 1/2, c 1/1
    # f1 a = 2*1*(2/3)/(5/3) = 0.8; b = 0.5; c = 2*.5*1/1.5 = 2/3
    pc = r["per_class"]
    assert [pc[k]["precision"] for k in LABELS] == pytest.approx([1.0, 0.5, 0.5])
    assert [pc[k]["recall"] for k in LABELS] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [pc[k]["f1"] for k in LABELS] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [pc[k]["support"] for k in LABELS] == [3, 2, 1]
    # uar = (2/3 + 1/2 + 1) / 3 = 13/18
    assert r["uar"] == pytest.approx(13 / 18)
    # macro f1 = (4/5 + 1/2 + 2/3) / 3 = 59/90; weighted = (3*.8 + 2*.5 + 1*2/3) / 6 = 61/90
    assert r["macro_f1"] == pytest.approx(59 / 90)
    assert r["weighted_f1"] == pytest.approx(61 / 90)
    # AUC a: pos scores [.7,.55,.2] vs neg [.1,.3,.2]: 3 + 3 + (1 + 0.5 tie) = 7.5 / 9
    # AUC b: pos [.8,.3] vs neg [.2,.35,.6,.0]: 4 + 2 = 6 / 8
    # AUC c: pos [.8] vs neg [.1,.1,.2,.1,.4]: 5 / 5
    assert [pc[k]["roc_auc"] for k in LABELS] == pytest.approx([7.5 / 9, 0.75, 1.0])
    # macro = (5/6 + 3/4 + 1) / 3 = 31/36
    assert r["roc_auc_ovr"] == pytest.approx(31 / 36)
    # ECE, 4 bins (lo, hi]:
    #   (.25,.5]: conf .40 wrong              -> |0 - .4|            * 1/6
    #   (.5,.75]: .70 ok, .55 ok, .60 wrong   -> |2/3 - 1.85/3| = .05 * 3/6
    #   (.75,1] : .80 ok, .80 ok              -> |1 - .8| = .2       * 2/6
    #   = (.4 + .15 + .4) / 6 = .95/6
    assert r["ece"] == pytest.approx(0.95 / 6)
    assert [b["count"] for b in r["calibration_bins"]] == [0, 1, 3, 2]
    json.dumps(r)  # JSON-serialisable


def test_absent_class_and_undefined_auc():
    y = [0, 1, 0, 1]
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1]])
    r = classification_report(y, p, LABELS)
    # class c never true: its AUC is undefined; uar averages recall over a and b only
    assert r["per_class"]["c"]["roc_auc"] is None
    assert r["per_class"]["c"]["support"] == 0
    assert r["uar"] == pytest.approx((0.5 + 1.0) / 2)
    # macro f1 over a, b and c (c was predicted once): a = 2/3, b = 1, c = 0
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert r["roc_auc_ovr"] == pytest.approx(np.mean([r["per_class"][k]["roc_auc"] for k in "ab"]))


def test_single_class_has_no_auc():
    r = classification_report([1, 1], np.array([[0.2, 0.8], [0.6, 0.4]]), ["x", "y"])
    assert r["roc_auc_ovr"] is None
    assert r["accuracy"] == 0.5


@pytest.mark.parametrize(
    "y, p, labels",
    [
        ([], np.zeros((0, 3)), LABELS),
        ([0, 1], np.zeros((3, 3)), LABELS),
        ([0, 1], np.zeros((2, 2)), LABELS),
        ([0, 3], np.zeros((2, 3)), LABELS),
        ([0, 1], np.zeros(3), LABELS),
        ([0, 1], np.full((2, 3), np.nan), LABELS),
    ],
)
def test_bad_inputs(y, p, labels):
    with pytest.raises(ValueError):
        classification_report(y, p, labels)


def test_against_sklearn_random():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(5):
        n, c = 200, 4
        y = rng.integers(0, c, n)
        logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y] * (trial % 3)
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        pred = p.argmax(axis=1)
        r = classification_report(y, p, [str(i) for i in range(c)])
        assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
        assert r["uar"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
        assert r["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"))
        assert r["weighted_f1"] == pytest.approx(sk.f1_score(y, pred, average="weighted"))
        assert r["roc_auc_ovr"] == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr", average="macro"))
        assert r["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=range(c)).tolist()
        prec, rec, f1, sup = sk.precision_recall_fscore_support(y, pred, labels=range(c), zero_division=0)
        for k in range(c):
            pc = r["per_class"][str(k)]
            assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
                (prec[k], rec[k], f1[k], sup[k])
            )


def test_binary_auc_ties_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # coarse scores: many ties
    assert binary_roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s))
    assert binary_roc_auc(np.ones(3, bool), s[:3]) is None


def test_ece_perfectly_calibrated_is_zero():
    # two bins' worth of examples whose accuracy equals their confidence
    p = np.array([[0.75, 0.25]] * 4 + [[1.0, 0.0]] * 2)
    y = [0, 0, 0, 1, 0, 0]  # 3/4 right at conf .75; 2/2 right at conf 1.0
    ece, bins = expected_calibration_error(y, p, n_bins=10)
    assert ece == pytest.approx(0.0)
    assert sum(b["count"] for b in bins) == 6


def test_plots(tmp_path):
    cm = [[5, 1, 0], [2, 3, 0], [0, 0, 0]]  # an empty row must not divide by zero
    out = plot_confusion_matrix(cm, LABELS, tmp_path / "sub" / "cm.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = confusion_matrix_figure(np.array(cm), LABELS)
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("5") == 1 and texts.count("0") == 5
    with pytest.raises(ValueError):
        confusion_matrix_figure([[1, 2]], LABELS)
