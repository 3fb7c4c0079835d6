"""Forward and every gradient against torch.nn.LSTM's autograd, same weights, same inputs.

Skipped when torch is not installed; CI installs torch==2.13.0 so these run there.
"""
import itertools

import numpy as np
import pytest

import fastlstm
from conftest import TOL, random_problem

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

T, B = 6, 3
LENGTHS = [6, 2, 4]


def torch_forward_backward(m, x, hx, lengths, weights, unbatched=False):
    """y, h_n, c_n, dx, dh0, dc0 and {name: grad} from torch for fastlstm model m."""
    tdt = getattr(torch, m.dtype.name)
    net = torch.nn.LSTM(m.input_size, m.hidden_size, m.num_layers, bias=m.bias,
                        batch_first=m.batch_first, bidirectional=m.bidirectional, dtype=tdt)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    hxt = None
    if hx is not None:
        hxt = tuple(torch.tensor(a, requires_grad=True) for a in hx)
    if lengths is None:
        y, (h, c) = net(xt, hxt)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=m.batch_first,
                                      enforce_sorted=False)
        out, (h, c) = net(packed, hxt)
        steps = x.shape[1] if m.batch_first else x.shape[0]
        y, _ = pad_packed_sequence(out, batch_first=m.batch_first, total_length=steps)
    dy, dh_n, dc_n = (torch.from_numpy(w) for w in weights)
    loss = (y * dy).sum() + (h * dh_n).sum() + (c * dc_n).sum()
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in net.named_parameters()}
    dh0 = dc0 = None
    if hxt is not None:
        dh0, dc0 = hxt[0].grad.numpy(), hxt[1].grad.numpy()
    return (y.detach().numpy(), h.detach().numpy(), c.detach().numpy(),
            xt.grad.numpy(), dh0, dc0, grads)


def assert_close(ours, theirs, dtype, what):
    tol = TOL[dtype]
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol, err_msg=what)


MATRIX = list(itertools.product(
    ["float64", "float32"],        # dtype
    [(1, False), (2, False), (1, True), (2, True)],  # layers, bidirectional
    [False, True],                 # batch_first
    [None, LENGTHS],               # lengths
    [False, True],                 # hx given
))


@pytest.mark.parametrize("dtype,shape,batch_first,lengths,with_hx", MATRIX)
def test_matches_torch(dtype, shape, batch_first, lengths, with_hx):
    layers, bidir = shape
    m = fastlstm.LSTM(3, 5, num_layers=layers, bidirectional=bidir, batch_first=batch_first,
                      dtype=dtype, backend="numpy", seed=11)
    x, hx, weights = random_problem(m, T, B, seed=12, with_hx=with_hx, lengths=lengths)
    y, (h, c) = m(x, hx, lengths)
    dx, (dh0, dc0) = m.backward(*weights)
    ty, th, tc, tdx, tdh0, tdc0, tgrads = torch_forward_backward(m, x, hx, lengths, weights)
    for ours, theirs, what in [(y, ty, "y"), (h, th, "h_n"), (c, tc, "c_n"), (dx, tdx, "dx")]:
        assert_close(ours, theirs, dtype, what)
    if with_hx:
        assert_close(dh0, tdh0, dtype, "dh0")
        assert_close(dc0, tdc0, dtype, "dc0")
    assert m.grads.keys() == tgrads.keys()
    for name in tgrads:
        assert_close(m.grads[name], tgrads[name], dtype, name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("T_, B_", [(1, 1), (1, 4), (7, 1)])
def test_matches_torch_edge_sizes_no_bias(dtype, T_, B_):
    m = fastlstm.LSTM(5, 3, num_layers=2, bias=False, dtype=dtype, backend="numpy", seed=5)
    x, hx, weights = random_problem(m, T_, B_, seed=6, with_hx=True)
    ty, th, tc, tdx, tdh0, tdc0, tgrads = torch_forward_backward(m, x, hx, None, weights)
    y, (h, c) = m(x, hx)
    dx, (dh0, dc0) = m.backward(*weights)
    for ours, theirs, what in [(y, ty, "y"), (h, th, "h_n"), (c, tc, "c_n"), (dx, tdx, "dx"),
                               (dh0, tdh0, "dh0"), (dc0, tdc0, "dc0")]:
        assert_close(ours, theirs, dtype, what)
    assert m.grads.keys() == tgrads.keys()  # no bias gradients without biases
    for name in tgrads:
        assert_close(m.grads[name], tgrads[name], dtype, name)


@pytest.mark.parametrize("bidir", [False, True])
def test_unbatched_input_matches_torch(bidir):
    m = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=bidir, dtype="float64", seed=8)
    x, hx, weights = random_problem(m, 5, 1, seed=9, with_hx=True, unbatched=True)
    y, (h, c) = m(x, hx)
    dx, (dh0, dc0) = m.backward(*weights)
    ty, th, tc, tdx, tdh0, tdc0, tgrads = torch_forward_backward(m, x, hx, None, weights)
    for ours, theirs, what in [(y, ty, "y"), (h, th, "h_n"), (c, tc, "c_n"), (dx, tdx, "dx"),
                               (dh0, tdh0, "dh0"), (dc0, tdc0, "dc0")]:
        assert_close(ours, theirs, "float64", what)
    assert m.grads.keys() == tgrads.keys()
    for name in tgrads:
        assert_close(m.grads[name], tgrads[name], "float64", name)


def test_from_torch_builds_an_equal_model():
    torch.manual_seed(0)
    net = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True,
                        dropout=0.25, dtype=torch.float64).eval()
    m = fastlstm.from_torch(net)
    assert (m.input_size, m.hidden_size, m.num_layers, m.bidirectional, m.batch_first,
            m.dropout, m.bias, m.dtype.name) == (4, 6, 2, True, True, 0.25, True, "float64")
    assert fastlstm.from_torch(net, dtype="float32").dtype.name == "float32"
    x = np.random.default_rng(0).standard_normal((2, 7, 4))
    y, (h, c) = m.eval()(x)
    with torch.no_grad():
        ty, (th, tc) = net(torch.from_numpy(x))
    assert_close(y, ty.numpy(), "float64", "y")
    assert_close(h, th.numpy(), "float64", "h_n")
    assert_close(c, tc.numpy(), "float64", "c_n")
    with torch.no_grad():  # a copy: changing the module afterwards leaves the model alone
        net.weight_hh_l0.zero_()
    assert not np.all(m.state_dict()["weight_hh_l0"] == 0)


def test_load_state_dict_accepts_tensors_that_require_grad():
    net = torch.nn.LSTM(3, 4, dtype=torch.float32)  # parameters require grad
    m = fastlstm.LSTM(3, 4)
    m.load_state_dict(dict(net.named_parameters()))
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(m.state_dict()[name], p.detach().numpy(), err_msg=name)


def test_from_torch_rejects_projections():
    net = torch.nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size"):
        fastlstm.from_torch(net)


@pytest.mark.parametrize("cls", ["GRU", "RNN"])
def test_from_torch_refuses_other_recurrent_modules(cls):
    module = getattr(torch.nn, cls)(3, 5)
    with pytest.raises(TypeError, match=f"module must be a torch.nn.LSTM, got a {cls}"):
        fastlstm.from_torch(module)
