"""Text the tokenizer cannot encode as it is (lone surrogates: an undecodable byte on the command line, a cut UTF-16
pair) is tokenized with U+FFFD in their place; ``Route.top`` of an unknown head is a typed error listing the heads."""

from __future__ import annotations

import numpy as np
import pytest
from edgecart.runtime import EdgecartError, InputSpecError, UnknownNameError
from edgecart.runtime.manifest import TextPreprocessing
from edgecart.runtime.text import Route

from ..tiny_text import MAX_LEN, student_and_tokenizer

pytest.importorskip("tokenizers")
pytest.importorskip("torch")  # student_and_tokenizer builds the (untrained) student too


@pytest.fixture(scope="module")
def tok():
    from edgecart.runtime.text import TextTokenizer

    _, small = student_and_tokenizer()
    return TextTokenizer(small, TextPreprocessing("tokenizer.json", MAX_LEN))


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("text,clean", [
    ("\ud800 x", "\ufffd x"),
    ("\udcff dress", "\ufffd dress"),  # what Python makes of the byte 0xff in sys.argv (surrogateescape)
    ("dress\udfff", "dress\ufffd"),
    ("\ud800\ud800", "\ufffd\ufffd"),
    ("\ud83d\ude0d love it", "\U0001f60d love it"),  # a valid UTF-16 pair in a str is the character it encodes
], ids=["high", "escaped-byte", "low-at-end", "two-highs", "pair"])
def test_lone_surrogates_are_replaced_before_tokenizing(tok, text, clean):
    assert _same(tok.encode(text), tok.encode(clean))
    assert _same(tok.encode_batch(["dress", text]), tok.encode_batch(["dress", clean]))
    assert tok.tokens(text) == tok.tokens(clean)


def test_clean_text_is_left_as_it_is(tok):
    text = "Платье \u200b 😍 dress"
    assert _same(tok.encode(text), tok.encode_batch([text]))
    assert tok.tokens("\ud800") == tok.tokens("\ufffd") == ["[CLS]", "[SEP]"]  # BERT's normaliser drops U+FFFD


def test_non_text_is_still_a_typed_error(tok):
    for bad in (None, b"dress", 3):
        with pytest.raises(InputSpecError, match="text must be a str"):
            tok.encode(bad)  # type: ignore[arg-type]


ROUTE = Route({"department": (("Dresses", 0.8), ("Bottoms", 0.2)), "class": (("Fit", 0.6), ("Quality", 0.4))})


def test_route_top_gives_the_best_label_of_a_head():
    assert ROUTE.top("department") == ("Dresses", 0.8)
    assert ROUTE.top("class") == ("Fit", 0.6)


@pytest.mark.parametrize("head", ["nope", "", 3, None, ["department"]])
def test_route_top_of_an_unknown_head_lists_the_heads(head):
    with pytest.raises(UnknownNameError) as err:
        ROUTE.top(head)  # type: ignore[arg-type]
    assert isinstance(err.value, KeyError)  # what the documented lookup raised before, still caught the same way
    msg = str(err.value)
    assert "'class'" in msg and "'department'" in msg


def test_route_top_without_a_head_is_a_typed_error_listing_the_heads():
    with pytest.raises(EdgecartError, match=r"head.*'class', 'department'"):
        ROUTE.top()  # type: ignore[call-arg]
