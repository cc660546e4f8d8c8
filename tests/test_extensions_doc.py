"""The worked examples of docs/ALGORITHM.md's extensions (wide ciphers, projection), by hand
and through the package."""

from pathlib import Path

import numpy as np

from bitcipher.stages.cipher import build_cipher, cipher_u, code_position_matrix
from bitcipher.stages.projection import project_matrix

DOC = (Path(__file__).resolve().parent.parent / "docs" / "ALGORITHM.md").read_text()


def test_wide_cipher_example():
    assert "| F (= the dense Σ s_c x(c)) | 1 | 0.75 | 1.8611 | 0.3889 |" in DOC
    assert "u = (1 − q) / 2 = (0.25, 0.3611, 0.3889)" in DOC
    # by hand: q = (4 + 1/2, 2 + 1/2, 2) / 9, u = (1 - q) / 2, beta = 1 / n(f)
    u = (1 - np.array([4.5, 2.5, 2.0]) / 9) / 2
    np.testing.assert_allclose(u, [0.25, 0.3611, 0.3889], atol=5e-5)
    rep1 = 0.5 * np.array([0, 1, 0]) + 0.5 * u
    rep3 = np.array([0.5, 0.5, 0])
    dense = 2 * np.r_[0, rep1] + 1 * np.r_[0, rep3] + np.array([1, 0, 0, 0])
    np.testing.assert_allclose(dense, [1, 0.75, 1.8611, 0.3889], atol=5e-5)
    # the package: the sparse + rank-one parts give the same F
    counts = np.array([4, 2, 2, 1])
    assert code_position_matrix(4, 3).tolist() == [[0, -1], [1, -1], [2, -1], [0, 1]]
    cipher = build_cipher(counts, 3, "nf")
    np.testing.assert_allclose(cipher.beta, [1, 0.5, 0.5, 1])
    # the wide path's u (from positions) equals the dense arithmetic's
    wide = np.array([5, 3, 3, 2, 1, 1, 1])
    pos = code_position_matrix(len(wide), 300)
    dense_codes = np.zeros((len(wide), 300))
    dense_codes[np.arange(len(wide)), pos[:, 0]] = 1
    q = (wide[:, None] * dense_codes).sum(axis=0) / wide.sum()
    np.testing.assert_allclose(cipher_u(wide, pos, 300), (1 - q) / 299, atol=1e-15)
    sparse, coef, u_ext = cipher.context_parts()
    s = np.zeros(5)
    s[[1, 3, 4]] = [2, 1, 1]  # rank 1, rank 3, EDGE (last row)
    f = s @ sparse.toarray() + (s @ coef) * u_ext
    np.testing.assert_allclose(s @ sparse.toarray(), [1, 0.5, 1.5, 0], atol=1e-12)
    assert s @ coef == 1.0
    np.testing.assert_allclose(f, dense, atol=1e-12)
    np.testing.assert_allclose(f, s @ cipher.context_matrix(), atol=1e-12)


def test_projection_example():
    for text in ("(3 · 9^−0.25, 0) = (1.7321, 0)", "(0, 2 · 4^−0.25) = (0, 1.4142)",
                 "2 · 8^−0.25 = 1.1892, −1.1892, 0"):
        assert text in DOC
    plain, proj = project_matrix(np.array([[3.0, 0], [0, 2], [0, 0]]), 2, 0.5, False)
    np.testing.assert_allclose(plain, [[1.7321, 0], [0, 1.4142], [0, 0]], atol=5e-4)
    np.testing.assert_allclose(proj.eigenvalues, [9, 4], atol=1e-3)
    v = np.array([[4.0, 1], [0, 1], [2, 1]])
    centred, proj = project_matrix(v, 1, 1.0, True)
    np.testing.assert_allclose(centred[:, 0], [2, -2, 0], atol=5e-4)
    np.testing.assert_allclose(proj.mean, [2, 1], atol=1e-4)
    half, _ = project_matrix(v, 1, 0.5, True)
    np.testing.assert_allclose(half[:, 0], [1.1892, -1.1892, 0], atol=5e-4)
    assert abs(2 * 8 ** -0.25 - 1.1892) < 5e-5 and abs(3 * 9 ** -0.25 - 1.7321) < 5e-5
