"""The ``masked_label`` loss term: cross-entropy over the rows that carry a label, one column of several label sets."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_masked_label_ce_skips_unlabelled_rows_and_picks_a_column():
    from edgecart.compress.losses import MaskedLabelCE, loss_from_dict
    from torch.nn import functional as F  # noqa: N812

    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.tensor([[1, 0], [-100, 2], [3, -1], [-100, 1], [0, 3]])
    term = MaskedLabelCE(column=0, logit_scale=2.0)
    keep = labels[:, 0] >= 0
    want = F.cross_entropy(logits[keep] * 2.0, labels[keep, 0])
    assert torch.allclose(term(logits, None, labels), want)
    col1 = labels[:, 1] >= 0
    assert torch.allclose(MaskedLabelCE(column=1)(logits, None, labels), F.cross_entropy(logits[col1], labels[col1, 1]))
    none = torch.full((5, 2), -100)
    assert float(MaskedLabelCE(column=0)(logits, None, none)) == 0.0
    assert loss_from_dict(term.to_dict()) == term and not MaskedLabelCE.needs_teacher
    with pytest.raises(ValueError, match="column"):
        MaskedLabelCE(column=-1)
    with pytest.raises(ValueError, match="logit_scale"):
        MaskedLabelCE(logit_scale=0)
    with pytest.raises(ValueError, match="needs labels"):
        term(logits, None, None)
