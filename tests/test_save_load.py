"""save/load: exact round trips, atomic writes, and clear errors for anything else."""
import io
import pickle
import zipfile

import numpy as np
import pytest

import fastlstm


def test_round_trip_is_exact(tmp_path):
    m = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25,
                      bias=False, dtype="float64", seed=0)
    path = tmp_path / "model.npz"
    m.save(path)
    assert not list(tmp_path.glob("*.tmp*"))  # the temporary file is gone
    m2 = fastlstm.load(path)
    assert m2.config == m.config
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v)
        assert m2.state_dict()[k].dtype == np.float64
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    np.testing.assert_array_equal(m2.eval()(x)[0], m.eval()(x)[0])


def test_round_trip_through_a_file_object_and_str_path(tmp_path):
    m = fastlstm.LSTM(2, 3, seed=1)
    buf = io.BytesIO()
    m.save(buf)
    buf.seek(0)
    assert fastlstm.load(buf).config == m.config
    m.save(str(tmp_path / "m.npz"))
    assert fastlstm.load(str(tmp_path / "m.npz"), backend="numpy").backend == "numpy"


def test_overwrite_keeps_a_valid_file(tmp_path):
    path = tmp_path / "m.npz"
    fastlstm.LSTM(2, 3, seed=1).save(path)
    fastlstm.LSTM(2, 5, seed=2).save(path)
    assert fastlstm.load(path).hidden_size == 5


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastlstm.load(tmp_path / "nope.npz")


def test_corrupt_file(tmp_path):
    path = tmp_path / "m.npz"
    fastlstm.LSTM(2, 3).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is not a readable fastlstm model file"):
        fastlstm.load(path)
    path.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="is not a readable fastlstm model file"):
        fastlstm.load(path)


def test_foreign_npz_and_npy(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="has no '__fastlstm__' entry"):
        fastlstm.load(tmp_path / "other.npz")
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        fastlstm.load(tmp_path / "arr.npy")


def test_pickled_content_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __fastlstm__=np.array([{"format": "fastlstm"}], dtype=object))
    with pytest.raises(ValueError, match="not a readable fastlstm model file"):
        fastlstm.load(path)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a readable fastlstm model file"):
        fastlstm.load(path)


def _config(**changes):
    import json
    config = dict(input_size=2, hidden_size=3, num_layers=1, bias=True, batch_first=False,
                  dropout=0.0, bidirectional=False, dtype="float32")
    return json.dumps({**config, **changes})


def _write_with_header(path, header, **weights):
    np.savez(path, __fastlstm__=np.array(header), **weights)


@pytest.mark.parametrize("header,match", [
    ('{"format": "other", "version": 1, "config": {}}', "does not describe a fastlstm model"),
    ('{"format": "fastlstm", "version": 99, "config": {}}', "format version 99"),
    ("{not json", "not a readable fastlstm model file"),
    ('{"format": "fastlstm", "version": 1, "config": [1]}', "config must be a JSON object"),
    ('{"format": "fastlstm", "version": 1, "config": {"input_size": 0, "hidden_size": 2}}',
     r"invalid fastlstm model: its config lacks \['num_layers', 'bias'"),
    (f'{{"format": "fastlstm", "version": 1, "config": {_config(input_size=0)}}}',
     "invalid fastlstm model: input_size"),
    (f'{{"format": "fastlstm", "version": 1, "config": {_config(colour=1)}}}',
     r"invalid fastlstm model: .*unknown keys \['colour'\]"),
])
def test_bad_headers(tmp_path, header, match):
    path = tmp_path / "m.npz"
    _write_with_header(path, header)
    with pytest.raises(ValueError, match=match):
        fastlstm.load(path)


def test_weights_that_do_not_match_the_config(tmp_path):
    path = tmp_path / "m.npz"
    m = fastlstm.LSTM(2, 3)
    m.save(path)
    with zipfile.ZipFile(path) as z:
        entries = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
    entries["weight_hh_l0"] = np.zeros((12, 4))
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=r"invalid fastlstm model: .*weight_hh_l0.*shape"):
        fastlstm.load(path)


# --- hostile files: checked against themselves before anything they ask for is allocated


def _peak_bytes_allocated(fn):
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("changes", [dict(num_layers=1_000_000), dict(hidden_size=20_000),
                                     dict(input_size=10 ** 9), dict(num_layers=10 ** 30)])
def test_config_that_asks_for_more_than_the_file_holds(tmp_path, changes):
    path = tmp_path / "m.npz"
    fastlstm.LSTM(2, 3, seed=0).save(path)
    with zipfile.ZipFile(path) as z:
        entries = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
    entries["__fastlstm__"] = np.array(
        f'{{"format": "fastlstm", "version": 1, "config": {_config(**changes)}}}')
    np.savez(path, **entries)

    def load():
        with pytest.raises(ValueError, match="invalid fastlstm model"):
            fastlstm.load(path)
    assert _peak_bytes_allocated(load) < 1 << 20  # nothing model-sized was allocated


def _npz_with_member(path, name, npy_bytes):
    fastlstm.LSTM(2, 3, seed=0).save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(name + ".npy", npy_bytes)


def test_member_whose_header_claims_a_huge_array(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)})
    path = tmp_path / "m.npz"
    _npz_with_member(path, "weight_ih_l1", header.getvalue() + b"\0" * 16)

    def load():
        with pytest.raises(ValueError, match=r"declares shape \(1000000, 1000000\)"):
            fastlstm.load(path)
    assert _peak_bytes_allocated(load) < 1 << 20


def test_member_with_a_huge_header_or_junk(tmp_path):
    path = tmp_path / "m.npz"
    _npz_with_member(path, "weight_ih_l1", b"\x93NUMPY\x01\x00" + b"\xff\xff" + b" " * 100)
    with pytest.raises(ValueError, match="not a readable fastlstm model file"):
        fastlstm.load(path)
    path2 = tmp_path / "m2.npz"
    _npz_with_member(path2, "notes.txt", b"hello")
    with pytest.raises(ValueError, match="not a readable fastlstm model file"):
        fastlstm.load(path2)


def test_extra_weights_in_a_file_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    header = io.BytesIO()
    np.save(header, np.zeros((12, 3), np.float32))
    _npz_with_member(path, "weight_ih_l1", header.getvalue())
    with pytest.raises(ValueError, match="implies 4 weights, the file holds 5"):
        fastlstm.load(path)


def test_bad_backend_is_reported_as_such_not_as_a_bad_file(tmp_path):
    path = tmp_path / "m.npz"
    fastlstm.LSTM(2, 3).save(path)
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of") as err:
        fastlstm.load(path, backend="gpu")
    assert "invalid fastlstm model" not in str(err.value)


def test_save_to_a_bytes_path_and_a_clear_error_for_other_targets(tmp_path):
    m = fastlstm.LSTM(2, 3, seed=0)
    path = tmp_path / "m.npz"
    m.save(bytes(path))
    assert fastlstm.load(bytes(path)).config == m.config
    with pytest.raises(TypeError, match="path must be a str, bytes or os.PathLike"):
        m.save(123)
