"""The compiled backend: a thin adapter from the kernel contract to fastlstm._cy.lstm_cpu.

It chooses the kernels' instruction-set variant when it loads (the best this CPU runs, or
the one FASTLSTM_ISA names), packs the weights once per weights (the API caches them
through pack_weights), keeps the kernels' scratch per Python thread (up to SCRATCH_BUDGET
bytes, reused by any call that fits), hands the packed-sequence layout
(sequences.PackedSequences) to the kernels as it is, decides where BLAS takes over from
the register blocks (hoists_input), and picks the work split and the team (plan).

Every call is one job of the extension's thread pool (src_cython/pool.h): the calling
thread starts at once and helper threads join when they wake, so a helper asleep after an
idle spell costs nothing but its help. The work is split into units fixed by the shape:
  "rows"   chunks of rows, each for the whole sequence: no wait per step at all (batches of
           small models, whose weights fit a core's cache many times over);
  "steps"  one phase per time step, units of hidden-unit blocks: each thread keeps its
           slice of W_hh in its own cache for the whole sequence (large weights, one row).
Neither the split nor the team changes a result's bits: what a unit computes depends only
on the shape, whoever runs it.
"""
import contextlib
import os
import threading

import numpy as np

from .._blas import bundled_openblas, pin_scipy_blas
from .._cy import load_extension
from ..threads import get_num_threads

NAME = "cython"
_k = load_extension("lstm_cpu")
if _k is None:  # the registry only imports this module when the extension exists
    raise ImportError("fastlstm._cy.lstm_cpu is not built")
INT32_MAX = 2 ** 31 - 1

# {"name", "vector_bytes", "rows", "gate_group", "runs_here"} per variant, best first
VARIANTS = {v["name"]: v for v in _k.variants()}
ISA_ENV = "FASTLSTM_ISA"


def runnable_isas():
    """The variants this CPU can run, best first."""
    return [name for name, v in VARIANTS.items() if v["runs_here"]]


def select_isa(name=None):
    """Make variant `name` (None: the best this CPU runs) the one new weights are packed
    for; weights packed before keep the variant they were packed for. Returns the name.

    Raises ValueError, saying what this CPU can run, for a variant the build does not
    have or the CPU cannot run.
    """
    global ISA
    runnable = runnable_isas()
    if name is None:
        ISA = runnable[0]
        return ISA
    if name not in VARIANTS:
        why = f"this build has no {name!r} kernels (built: {', '.join(VARIANTS)})"
    elif name not in runnable:
        why = f"this CPU cannot run the {name} kernels"
    else:
        ISA = name
        return ISA
    raise ValueError(f"{why}; it can run: {', '.join(runnable)}")


ISA = None
FORCED = os.environ.get(ISA_ENV, "").strip().lower() or None
try:
    select_isa(FORCED)
except ValueError as exc:  # not an ImportError: "auto" must not quietly pass it by
    raise ValueError(f"{ISA_ENV}={FORCED}: {exc}. Unset {ISA_ENV} to choose "
                     "automatically.") from None

# How long (us) the pool's helper threads look for the next call before they sleep: a
# helper still looking joins at once, one asleep may take ~10 ms to wake on a VM (the call
# never waits for it, but goes without its help). 0 for machines whose every core is busy.
SPIN_ENV = "FASTLSTM_SPIN_US"


def _spin_from_env():
    text = os.environ.get(SPIN_ENV, "").strip()
    if not text:
        return
    try:
        us = int(text)
        if not 0 <= us <= 10_000_000:
            raise ValueError
    except ValueError:
        raise ValueError(f"{SPIN_ENV}={text!r}: expected a whole number of microseconds "
                         "from 0 to 10000000 (default 2000)") from None
    _k.pool_spin_us(us)


_spin_from_env()

# Tests set this to "rows" or "steps" to run one split whatever the shape.
FORCE_PATH = None
# The "rows" split when the packed weights (W_ih and W_hh) are at most this many bytes: a
# chunk of rows streams them all every step, so they must sit in its core's L2 with room
# to spare; larger weights are split by hidden units ("steps").
ROWS_MAX_WEIGHT_BYTES = 256 << 10
# A second thread pays off from this much work per thread in the "steps" split, which
# meets the other threads every step: multiply-adds plus the gate math, counted as about
# GATE_MACS multiply-adds per row and hidden unit (a step of 32 rows x 64 units spends
# 5.7 us on gate math beside 0.1 us per input on its multiply-adds), from STEPS_MIN_WORK
# per step and STEPS_MIN_CALL_WORK per call. Below them a second thread slowed calls down
# ((4,100,32,32): 0.56x one thread's speed; (2,100,48,48) 0.75x; (4,10,1,50) 0.73x).
GATE_MACS = 228
STEPS_MIN_WORK = 45000
STEPS_MIN_CALL_WORK = 1 << 20
# ... per call and thread in the "rows" split (no meeting per step); a one-step call
# needs far more to pay for waking a helper.
MIN_MACS_PER_CALL_AND_THREAD = 1 << 18
MIN_MACS_PER_THREAD_ONE_STEP = 1 << 20
_MODES = {"rows": _k.MODE_ROWS, "steps": _k.MODE_STEPS}


def _aligned_empty(n, dtype):
    """A flat array of n items whose data starts on a 64-byte boundary: a vector load that
    straddles two cache lines costs two."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + n * dtype.itemsize].view(dtype)


_wb_lock = threading.Lock()


class Packed:
    """A layer-direction's weights for the kernels; backward's layout is built on first
    use (inference never needs it), once, under a lock: a published layout is never
    replaced, since another thread's kernel may be reading it."""

    def __init__(self, w_ih, w_hh, b):
        self.isa = ISA
        self.vl = VARIANTS[self.isa]["vector_bytes"] // w_hh.itemsize
        self.w_hh = w_hh
        self.k = _k.pack(np.ascontiguousarray(w_ih), np.ascontiguousarray(w_hh),
                         np.ascontiguousarray(b, w_hh.dtype), self.isa)

    def for_backward(self):
        if self.k.wb is None:
            with _wb_lock:
                if self.k.wb is None:  # [NUB][G][VL]: wb[u][k][l] = W_hh[k, u*VL + l]
                    G = self.w_hh.shape[0]
                    wb = _aligned_empty(self.k.nub * G * self.vl, self.w_hh.dtype)
                    _k.pack_unit_columns(np.ascontiguousarray(self.w_hh), wb, self.vl)
                    self.k.set_wb(wb)
        return self.k


def pack_weights(w_ih, w_hh, b):
    return Packed(w_ih, w_hh, b)


_local = threading.local()  # scratch per Python thread: concurrent calls never share it
# Bytes of scratch a thread keeps for its next calls. A call that needs more gets its own
# buffer, freed when the call ends: one big call must not pin gigabytes for good.
SCRATCH_BUDGET = 64 << 20


def _workspace(dtype, T, B, I, H, M, packed_rows, backward=False, hoist=False):
    """This call's scratch, carved from the thread's buffer when it fits (reused whatever
    the shape: grow-only up to SCRATCH_BUDGET), else from a buffer of its own.

    The Workspace objects carved from the kept buffer are kept too, per call shape: making
    one costs tens of microseconds, as much as a whole one-step call."""
    key = (dtype, T, B, I, H, M, packed_rows, backward, hoist)
    held = getattr(_local, "held", None)  # (buffer, {key: Workspace carved from it})
    if held is not None:
        ws = held[1].get(key)
        if ws is not None:
            return ws
    need = _k.Workspace.nbytes(dtype, T, B, I, H, M, packed_rows, backward, hoist)
    if held is None or held[0].size < need:
        buf = np.empty(need, np.uint8)
        if need > SCRATCH_BUDGET:  # this call's own, freed when it ends
            return _k.Workspace(dtype, T, B, I, H, M, packed_rows, backward, buf, hoist)
        held = _local.held = (buf, {})
    if len(held[1]) >= 16:  # a few recent shapes (the buffer is shared: they cost no memory)
        held[1].clear()
    ws = held[1][key] = _k.Workspace(dtype, T, B, I, H, M, packed_rows, backward, held[0],
                                     hoist)
    return ws


_plans = {}
_NO_GUARD = contextlib.nullcontext()
_blas_lock = threading.Lock()
_blas_ready = False
_blas_guard = None  # None when scipy's BLAS is pinned for good (or cannot be controlled)


def _blas():
    """The guard every call that runs BLAS holds (_NO_GUARD where none is needed).

    scipy's BLAS is loaded and pinned to one thread on the first call that needs it (a
    backward, or a forward that hoists its input projection): straight from the file its
    wheel bundles where there is one (4 ms), else through scipy.linalg (0.12 s more, which
    inference on the fused path never pays)."""
    global _blas_ready, _blas_guard
    if not _blas_ready:
        with _blas_lock:
            if not _blas_ready:
                found = bundled_openblas()
                if found is not None:
                    _k.load_blas_at(*found)
                else:
                    _blas_guard = pin_scipy_blas()
                    _k.load_blas()
                _blas_ready = True
    return _blas_guard or _NO_GUARD


def plan(T, B, I, H, isa, itemsize):
    """(threads, split) for one layer call: the team asked of the pool and the kernels'
    mode (_k.MODE_ROWS or _k.MODE_STEPS)."""
    key = (T, B, I, H, isa, itemsize, get_num_threads(), FORCE_PATH)
    found = _plans.get(key)
    if found is None:
        if len(_plans) > 4096:  # shapes seen over a long life: keep the table small
            _plans.clear()
        found = _plans[key] = _plan(*key)
    return found


def row_chunks(B, rows, path):
    """The kernels' row chunks (lstm_cpu.h fl_row_chunks): blocks of `rows`, an even
    number of chunks in the "rows" split."""
    n = -(-B // rows)
    return n + 1 if path == "rows" and n > 1 and n % 2 else n


def _plan(T, B, I, H, isa, itemsize, nt, force):
    variant = VARIANTS[isa]
    vl = variant["vector_bytes"] // itemsize
    nub = -(-H // vl)
    weight_bytes = nub * vl * 4 * (I + H) * itemsize
    path = force or ("rows" if row_chunks(B, variant["rows"], "rows") >= 2
                     and weight_bytes <= ROWS_MAX_WEIGHT_BYTES else "steps")
    chunks = row_chunks(B, variant["rows"], path)
    macs_per_step = B * 4 * nub * vl * (I + H)
    if T == 1:
        nt = min(nt, macs_per_step // MIN_MACS_PER_THREAD_ONE_STEP)
    elif path == "rows":
        nt = min(nt, chunks, T * macs_per_step // MIN_MACS_PER_CALL_AND_THREAD)
    else:
        work = macs_per_step + GATE_MACS * B * nub * vl
        nt = min(nt, nub * chunks, work // STEPS_MIN_WORK, T * work // STEPS_MIN_CALL_WORK)
    return max(1, nt), _MODES[path]


# Tests set this to True or False to run one path whatever the shape.
FORCE_HOIST = None
# x W_ih^T as one BLAS GEMM before the time loop instead of fused into every step, once the
# projection is big enough that BLAS's speed pays for writing it out and reading it back
# (large: 5-10% faster forward with AVX-512, ~10% with AVX2; mid, I = 64: 20% slower).
HOIST_MIN_INPUT = 128
HOIST_MIN_ROWS = 256
# ... and, with fewer rows, when one thread runs the call and W_ih and W_hh together
# outgrow what one core's L2 keeps beside the rest: the fused step would stream both from
# L3 every step, the hoisted one only W_hh (single, 1 thread: 1.5 ms instead of 3.4; with
# two threads each keeps its half in its own L2 and the two paths are even).
HOIST_ALONE_MIN_WEIGHT_BYTES = 512 * 1024


def hoists_input(isa, M, I, H, threads=2, itemsize=4):
    """Whether a forward of M (step, row) pairs with I inputs, run by `threads` threads,
    hoists its input projection (one rule for every variant so far; `isa` is there to
    tune it per variant)."""
    if FORCE_HOIST is not None:
        return FORCE_HOIST
    if I < HOIST_MIN_INPUT:
        return False
    return M >= HOIST_MIN_ROWS or (
        threads == 1 and 4 * H * (I + H) * itemsize > HOIST_ALONE_MIN_WEIGHT_BYTES)


def _fits(T, B, I, H):
    # BLAS takes 32-bit sizes and leading dimensions
    return T * B * max(I, 4 * H) <= INT32_MAX


def fits_step(I, H):
    """Whether step() can run a model of this size here (the kernels' 32-bit sizes)."""
    return _fits(1, 1, I, H)


# step(): a helper still spinning from the previous step joins the next one, one asleep is
# never woken (the step is over first); from this many multiply-adds per step and thread,
# sharing a step pays for meeting once.
MIN_MACS_PER_THREAD_STEP = 1 << 15
# The runner's whole-sequence path keeps its scratch (two sequences between layers) per
# thread: calls that need more take the general path, whose scratch policy frees it.
RUNNER_MAX_SCRATCH = 16 << 20


class RunnerPlans:
    """Per layer (threads, mode) of the Stepper's calls for a stack of `layers`
    unidirectional layers, remembered per (T, B)."""

    def __init__(self, I, H, layers, dtype, isa):
        self.I, self.H, self.layers, self.isa = I, H, layers, isa
        self.itemsize = np.dtype(dtype).itemsize
        self._steps, self._sequences = {}, {}

    def _inputs(self):
        return [self.I] + [self.H] * (self.layers - 1)

    def step(self, B):
        """For one step of batch B."""
        key = (B, get_num_threads())
        found = self._steps.get(key)
        if found is None:
            if len(self._steps) > 64:
                self._steps.clear()
            variant = VARIANTS[self.isa]
            vl = variant["vector_bytes"] // self.itemsize
            nub = -(-self.H // vl)
            units = nub * row_chunks(B, variant["rows"], "steps")
            found = self._steps[key] = tuple(
                (max(1, min(get_num_threads(), units,
                            B * 4 * nub * vl * (I + self.H) // MIN_MACS_PER_THREAD_STEP)),
                 _k.MODE_STEPS) for I in self._inputs())
        return found

    def sequence(self, T, B):
        """For a time-major inference call of (T, B) without lengths, or None when the
        general path must take it (a layer hoists its input projection into BLAS, or the
        scratch would be big)."""
        key = (T, B, get_num_threads(), FORCE_PATH, FORCE_HOIST)
        found = self._sequences.get(key, False)
        if found is False:
            if len(self._sequences) > 64:
                self._sequences.clear()
            plans = tuple(plan(T, B, I, self.H, self.isa, self.itemsize)
                          for I in self._inputs())
            ok = (_fits(T, B, max(self._inputs()), self.H)
                  and 2 * T * B * self.H * self.itemsize <= RUNNER_MAX_SCRATCH
                  and not any(hoists_input(self.isa, T * B, I, self.H, p[0], self.itemsize)
                              for I, p in zip(self._inputs(), plans)))
            found = self._sequences[key] = plans if ok else None
        return found


def runner(packs, dtype):
    """(Stepper, RunnerPlans) for a stack of unidirectional layers' packed weights: the
    compiled path of step() and of inference calls on ready arrays."""
    k = packs[0].k
    return (_k.Stepper([p.k for p in packs], dtype),
            RunnerPlans(k.n_in, k.H, len(packs), dtype, packs[0].isa))


def forward_layer(x, w_ih, w_hh, b, h0, c0, seq, y, h_n, c_n, tape, packed=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    if not _fits(T, B, I, H):
        raise NotImplementedError("sizes beyond 32-bit BLAS indexing")
    packed = packed or Packed(w_ih, w_hh, b)
    nthreads, mode = plan(T, B, I, H, packed.isa, x.itemsize)
    hoist = hoists_input(packed.isa, seq.M, I, H, nthreads, x.itemsize)
    ws = _workspace(x.dtype, T, B, I, H, seq.M, not seq.dense, hoist=hoist)
    gates, tc, th = (None, None, None) if tape is None else (tape.gates, tape.c, tape.h)
    with _blas() if hoist else _NO_GUARD:
        _k.forward(x, h0, c0, seq, y, h_n, c_n, gates, tc, th, packed.k, ws, mode, nthreads)


def backward_layer(tape, x, w_ih, w_hh, dy, dh_n, dc_n, seq, dx, dw_ih, dw_hh, db, dh0,
                   dc0, packed=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    if not _fits(T, B, I, H):
        raise NotImplementedError("sizes beyond 32-bit BLAS indexing")
    packed = packed or Packed(w_ih, w_hh, np.zeros(4 * H, w_hh.dtype))
    ws = _workspace(x.dtype, T, B, I, H, seq.M, not seq.dense, backward=True)
    nthreads, mode = plan(T, B, I, H, packed.isa, x.itemsize)
    with _blas():
        _k.backward(tape.gates, tape.c, tape.h, x, dy, dh_n, dc_n, seq, dx, dw_ih, dw_hh, db,
                    dh0, dc0, packed.for_backward(), ws, mode, nthreads)
