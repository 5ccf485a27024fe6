import numpy as np
import pytest

from models.content import ContentConfig, ContentEncoder, hash_features


def test_hashing_backend_shapes_and_unit_norm():
    enc = ContentEncoder(ContentConfig(use_model=False))
    v = enc.encode(["Toy Story (1995)", "Heat (1995)", ""], [["Animation"], ["Action"], []])
    assert enc.backend == "hashing"
    assert v.shape == (3, enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_hashing_is_deterministic_and_categories_matter():
    enc = ContentEncoder(ContentConfig(use_model=False))
    a = enc.encode(["x y"], [["Drama"]])
    b = enc.encode(["x y"], [["Drama"]])
    c = enc.encode(["x y"], [["Horror"]])
    np.testing.assert_array_equal(a, b)
    assert float((a @ c.T)[0, 0]) < 0.99


def test_mismatched_lengths_refused():
    with pytest.raises(ValueError):
        ContentEncoder(ContentConfig(use_model=False)).encode(["a"], [])


def test_hash_features_sign_and_bucket_stable():
    h = hash_features([["a", "b"], []], 16)
    assert h.shape == (2, 16)
    assert np.all(h[1] == 0)


def test_sentence_model_similar_titles_closer():
    enc = ContentEncoder()
    if enc.backend != "minilm":
        pytest.fail("bundled sentence model did not load")
    v = enc.encode(["Star Wars (1977)", "Return of the Jedi (1983)", "Sense and Sensibility (1995)"],
                   [[], [], []])
    assert v[0] @ v[1] > v[0] @ v[2]
