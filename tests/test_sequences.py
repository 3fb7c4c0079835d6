"""The packed-sequence layout every backend takes (fastlstm/backends/sequences.py),
against a plain Python construction of torch's PackedSequence bookkeeping."""
import numpy as np
import pytest

from fastlstm.backends.sequences import PackedSequences, packed_sequences


def plain_layout(T, lengths):
    """(perm, steps, batch_sizes, offsets) built the slow, obvious way."""
    B = len(lengths)
    perm = sorted(range(B), key=lambda b: -lengths[b])  # sorted() is stable: ties keep order
    steps = [lengths[b] for b in perm]
    batch_sizes = [sum(1 for n in lengths if n > t) for t in range(T)]
    offsets = [0]
    for n in batch_sizes:
        offsets.append(offsets[-1] + n)
    return perm, steps, batch_sizes, offsets


CASES = [  # T, lengths
    (5, [3]),                 # B = 1
    (5, [5]),                 # B = 1, dense
    (1, [1, 1, 1]),           # T = 1: every length is T
    (6, [4, 4, 4, 4]),        # all equal, shorter than T
    (7, [2, 7, 2, 5, 7, 1]),  # ties, kept in the caller's order
    (4, [1, 1, 1, 1, 1]),     # all 1
    (9, [9, 3, 8, 1, 9, 4]),  # a spread
]


@pytest.mark.parametrize("T,lengths", CASES)
def test_layout_matches_a_plain_construction(T, lengths):
    B = len(lengths)
    seq = packed_sequences(T, B, np.array(lengths))
    perm, steps, batch_sizes, offsets = plain_layout(T, lengths)
    dense = all(n == T for n in lengths)
    assert (seq.T, seq.B, seq.dense, seq.M) == (T, B, dense, sum(lengths))
    if dense:
        assert seq.lengths is None
    else:
        np.testing.assert_array_equal(seq.lengths, lengths)
    for name, got, want, dtype in [("perm", seq.perm, perm, np.int32),
                                   ("steps", seq.steps, steps, np.int32),
                                   ("batch_sizes", seq.batch_sizes, batch_sizes, np.int32),
                                   ("offsets", seq.offsets, offsets, np.intp)]:
        assert got.dtype == dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("T,lengths", CASES)
def test_packed_rows_are_every_real_step_once(T, lengths):
    """Packed row offsets[t] + r is step t of the caller's row perm[r], and the packed
    rows are exactly the (step, row) pairs inside their sequences."""
    seq = packed_sequences(T, len(lengths), lengths)
    pairs = [(t, int(seq.perm[r])) for t in range(T) for r in range(seq.batch_sizes[t])]
    assert len(pairs) == seq.M
    assert sorted(pairs) == sorted((t, b) for b, n in enumerate(lengths) for t in range(n))
    for t in range(T):  # time-major: step t's rows are the block offsets[t]:offsets[t+1]
        assert seq.offsets[t + 1] - seq.offsets[t] == seq.batch_sizes[t]


def test_arrays_are_read_only():
    for seq in (packed_sequences(6, 3), packed_sequences(6, 3, [2, 6, 4])):
        arrays = [seq.perm, seq.steps, seq.batch_sizes, seq.offsets]
        if seq.lengths is not None:
            arrays.append(seq.lengths)
        for a in arrays:
            assert not a.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                a[0] = 0


def test_dense_layouts_are_built_once_per_shape():
    first = packed_sequences(10, 4)
    assert packed_sequences(10, 4) is first
    assert packed_sequences(10, 4, [10, 10, 10, 10]) is first  # every length T is dense
    assert packed_sequences(10, 5) is not first and packed_sequences(11, 4) is not first
    assert packed_sequences(10, 4, [10, 9, 10, 10]) is not first
    for T in range(1, 80):  # more shapes than the cache keeps: still correct layouts
        seq = packed_sequences(T, 2)
        assert seq.dense and seq.M == 2 * T and packed_sequences(T, 2) is seq
    again = packed_sequences(10, 4)
    np.testing.assert_array_equal(again.offsets, first.offsets)
    np.testing.assert_array_equal(again.perm, np.arange(4))


def test_every_length_t_is_the_dense_layout():
    seq = PackedSequences(3, 2, [3, 3])
    assert seq.dense and seq.lengths is None
    np.testing.assert_array_equal(seq.batch_sizes, [2, 2, 2])
    np.testing.assert_array_equal(seq.offsets, [0, 2, 4, 6])


@pytest.mark.parametrize("lengths", [
    [0, 3],        # below 1
    [4, 3],        # above T
    [-1, 3],
    [3, 3, 3],     # B + 1 values
    [3],           # B - 1 values
    [[3, 3]],      # 2-D
    [],
])
def test_bad_lengths_raise(lengths):
    with pytest.raises(ValueError, match=r"lengths must be 2 values in 1\.\.3"):
        packed_sequences(3, 2, lengths)


def test_the_callers_lengths_stay_writable():
    from fastlstm.backends.sequences import PackedSequences
    lengths = np.array([3, 1], np.intp)
    PackedSequences(3, 2, lengths)
    lengths[0] = 2  # not frozen by the layout that was built from it
    assert lengths.flags.writeable
