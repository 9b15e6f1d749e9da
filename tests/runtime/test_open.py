"""The one place the task runtimes (ImageSearch, TextSearch, Recommender) open a bundle and check its task and
preprocessing: every refusal names the bundle, what it is, and the fix."""

from __future__ import annotations

import pytest
from edgecart.runtime import BundleError, ImageSearch, ManifestError, Recommender, TextSearch
from edgecart.runtime._open import TASK_READERS, open_task_bundle
from edgecart.runtime.manifest import ImagePreprocessing, SequencePreprocessing


@pytest.mark.parametrize("cls,task", [(ImageSearch, "image_search"), (TextSearch, "text_search"),
                                      (Recommender, "recommendations")], ids=["image", "text", "recs"])
def test_a_bundle_of_another_task_is_refused_with_the_fix(tiny_bundle, cls, task):
    # tiny_bundle is a 'generic' bundle: no runtime class reads it, so the fix is to export one of the right task
    with pytest.raises(BundleError) as e:
        cls(tiny_bundle, "onnxruntime")
    msg = str(e.value)
    assert not isinstance(e.value, ManifestError)
    assert f"'tiny' is a 'generic' bundle, not {task}" in msg
    assert f"{cls.__name__} reads only {task!r} bundles; export a {task!r} bundle" in msg


def test_every_task_with_a_catalog_has_a_reader():
    from edgecart.runtime.manifest import TASK_SECTIONS

    assert set(TASK_READERS) == set(TASK_SECTIONS)


def test_wrong_preprocessing_is_a_manifest_error_that_says_the_fix(tiny_bundle):
    with pytest.raises(ManifestError, match=r"'tiny' is a 'generic' bundle without SequencePreprocessing \(it "
                                            r"declares ImagePreprocessing\); re-export it with the generic pipeline"):
        open_task_bundle(tiny_bundle, "generic", SequencePreprocessing, "Recommender")
    b = open_task_bundle(tiny_bundle, "generic", ImagePreprocessing, "ImageSearch")
    assert b.manifest.name == "tiny"
