"""Keras 3's optimizers (SGD, Adam, AdamW, RMSprop) on NumPy arrays, updated in place.

    opt = get("adam")
    opt.apply([(key, param, grad), ...])   # one training step

`key` names a variable (the same on every step): its slots (momentum, velocity, ...) are
allocated on its first step and live under it. `param` is updated in place; `grad` is
never written (clipping works in a per-variable scratch buffer). Each step does what
Keras 3's `apply_gradients` does, in its order: clip the gradients (clipnorm: each by its
own norm; global_clipnorm: all by their joint norm; clipvalue: elementwise), apply weight
decay (p -= p * weight_decay * lr, before the update, as Keras's base optimizer does; every
optimizer takes weight_decay, as in Keras), then the update rule, then `iterations += 1`.
The rules are Keras 3's (its torch backend's foreach versions compute the same):

    SGD      m = momentum m - lr g;  p += m  (nesterov: p += momentum m - lr g)
             without momentum: p -= lr g
    Adam     m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2)
             (amsgrad: vhat = max(vhat, v), used in place of v)
             p -= alpha m / (sqrt(v) + eps),  alpha = lr sqrt(1 - b2^t) / (1 - b1^t),
             t = iterations + 1 (alpha in the variable's dtype, as Keras computes it)
    AdamW    Adam with weight_decay (default 0.004) applied as above
    RMSprop  v = rho v + (1 - rho) g^2;  (centered: a = rho a + (1 - rho) g, v - a^2 below)
             inc = lr g / sqrt(v + eps);  p -= inc  (momentum: m = momentum m + inc; p -= m)

The arithmetic runs in the parameter's dtype with in-place ufuncs into buffers allocated
once per variable, so a step costs a handful of ufunc calls per variable.
"""
import math
import warnings

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get"]


def _number(value, key, who, low=None, high=None, high_open=False, allow_none=False):
    """A finite real number in [low, high] (or [low, high)), as float; ValueError naming
    the argument otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value) or (low is not None and value < low) \
            or (high is not None and (value >= high if high_open else value > high)):
        bounds = ""
        if low is not None or high is not None:
            right = ")" if high_open else "]"
            bounds = f" in [{low if low is not None else '-inf'}, " \
                     f"{high if high is not None else 'inf'}{right}"
        none = " or None" if allow_none else ""
        raise ValueError(f"{who}: {key} must be a finite number{bounds}{none}, got {value!r}")
    return float(value)


def _flag(value, key, who):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{who}: {key} must be True or False, got {value!r}")
    return bool(value)


_COMPILED = []


def _compiled():
    """fastlstm._cy.optim (one-pass optimizer steps), or None where it is not built."""
    if not _COMPILED:
        from .._cy import load_extension
        _COMPILED.append(load_extension("optim"))
    return _COMPILED[0]


class _State:
    """One variable's optimizer state: its slots, a scratch buffer, a clip buffer."""

    __slots__ = ("shape", "dtype", "slots", "tmp", "clip")

    def __init__(self, param, names):
        self.shape, self.dtype = param.shape, param.dtype
        # the param's own memory order (a Keras kernel is a transposed view of the engine's
        # weights): every in-place ufunc of a step then runs over contiguous memory
        self.slots = {name: np.zeros_like(param, order="K") for name in names}
        self.tmp = np.empty_like(param, order="K")
        self.clip = None


class Optimizer:
    """Base class: learning rate, clipping, weight decay, slots and the step counter.
    Subclasses set `_slot_names()` and `_update(state, param, grad, lr, consts)`."""

    _default_name = "optimizer"

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        who = type(self).__name__
        if "decay" in kwargs:
            if kwargs.pop("decay") not in (None, 0, 0.0):
                warnings.warn(f"{who}: argument `decay` is no longer supported and is "
                              "ignored (as in Keras 3)", stacklevel=3)
        if kwargs:
            raise ValueError(f"{who}: argument(s) not recognized: {sorted(kwargs)}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{who}: name must be a non-empty str or None, got {name!r}")
        self.name = name or self._default_name
        self.learning_rate = learning_rate  # checked by the setter
        self.weight_decay = _number(weight_decay, "weight_decay", who, 0, allow_none=True)
        self.clipnorm = _number(clipnorm, "clipnorm", who, 0, allow_none=True)
        self.clipvalue = _number(clipvalue, "clipvalue", who, 0, allow_none=True)
        self.global_clipnorm = _number(global_clipnorm, "global_clipnorm", who, 0,
                                       allow_none=True)
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{who}: only one of clipnorm, clipvalue and global_clipnorm can "
                             f"be set, got clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        if use_ema:
            raise ValueError(f"{who}: use_ema=True is not supported by fastlstm.keras")
        if loss_scale_factor is not None:
            raise ValueError(f"{who}: loss_scale_factor is not supported by fastlstm.keras")
        if gradient_accumulation_steps is not None:
            raise ValueError(f"{who}: gradient_accumulation_steps is not supported by "
                             "fastlstm.keras")
        self.use_ema = False
        self.ema_momentum = _number(ema_momentum, "ema_momentum", who, 0, 1)
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = None
        self.gradient_accumulation_steps = None
        self.iterations = 0
        self._states = {}  # key -> _State
        self._keys = []    # keys in the order first seen (Keras's variable order)

    # --- learning rate ---------------------------------------------------------------

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        self._learning_rate = _number(value, "learning_rate", type(self).__name__, 0)

    # --- the step ---------------------------------------------------------------------

    def _slot_names(self):
        return ()

    def _new_state(self, key, param, grad):
        """The state for a variable seen for the first time (or with a new shape)."""
        who = f"{type(self).__name__}.apply"
        if not isinstance(param, np.ndarray) or param.dtype.kind != "f":
            raise ValueError(f"{who}: variable {key!r}: param must be a float ndarray, got "
                             f"{type(param).__name__} {getattr(param, 'dtype', '')}")
        if not param.flags.writeable:
            raise ValueError(f"{who}: variable {key!r}: param is read-only")
        st = self._states.get(key)
        if st is not None and st.shape != param.shape:
            raise ValueError(f"{who}: variable {key!r} changed shape from {st.shape} to "
                             f"{param.shape}")
        return st if st is not None and st.dtype == param.dtype else \
            _State(param, self._slot_names())

    def apply(self, variables):
        """One optimizer step on `[(key, param, grad), ...]`: params updated in place, the
        grads left untouched, `iterations` += 1. Everything is checked before anything
        changes (ValueError naming the variable). An empty list is a no-op, as in Keras."""
        states = self._states
        new = None
        for item in variables:
            key, param, grad = item
            st = states.get(key)
            if st is None or st.shape != param.shape or st.dtype != param.dtype:
                new = new or {}
                new[key] = self._new_state(key, param, grad)
            if getattr(grad, "shape", None) != param.shape:
                raise ValueError(f"{type(self).__name__}.apply: variable {key!r}: grad shape "
                                 f"{getattr(grad, 'shape', type(grad).__name__)} != param "
                                 f"shape {param.shape}")
        if not variables:
            return
        if new:
            for key, st in new.items():
                if key not in states:
                    self._keys.append(key)
                states[key] = st
        lr = self._learning_rate
        scale = None
        if self.global_clipnorm:
            total = 0.0
            for _, _, grad in variables:
                total += float(np.vdot(grad, grad))
            norm = math.sqrt(total)
            c = self.global_clipnorm
            # Keras: c * min(1/norm, 1/c), NaN when the norm is not finite
            scale = c * min(1.0 / norm, 1.0 / c) if norm > 0 else 1.0
            if not math.isfinite(norm):
                scale = math.nan
        consts = self._consts(lr)
        wd = self.weight_decay * lr if self.weight_decay else 0.0
        for key, param, grad in variables:
            st = states[key]
            if self.clipnorm:
                c = self.clipnorm
                norm = math.sqrt(float(np.vdot(grad, grad)))
                if norm > c or not math.isfinite(norm):
                    grad = self._scratch(st, grad, c / norm)
            elif scale is not None:
                if scale != 1.0:
                    grad = self._scratch(st, grad, scale)
            elif self.clipvalue:
                if st.clip is None:
                    st.clip = np.empty_like(st.tmp)
                np.clip(grad, -self.clipvalue, self.clipvalue, out=st.clip)
                grad = st.clip
            if wd:
                np.multiply(param, wd, out=st.tmp)
                param -= st.tmp
            self._update(st, param, grad, lr, consts)
        self.iterations += 1

    @staticmethod
    def _scratch(st, grad, factor):
        if st.clip is None:
            st.clip = np.empty_like(st.tmp)
        np.multiply(grad, factor, out=st.clip)
        return st.clip

    def apply_gradients(self, grads_and_vars):
        """Keras's spelling for a list of (grad, param) pairs (keys: the params' ids)."""
        self.apply([(id(p), p, g) for g, p in grads_and_vars])
        return self.iterations

    def _consts(self, lr):
        return None

    def _update(self, st, param, grad, lr, consts):
        raise NotImplementedError

    # --- state ------------------------------------------------------------------------

    def slot(self, name, index):
        """A copy of slot `name` ("momentum", "velocity", ...) of the index-th variable (in
        the order the variables were first seen)."""
        if not 0 <= index < len(self._keys):
            raise ValueError(f"{type(self).__name__}: no variable {index} (the optimizer has "
                             f"seen {len(self._keys)})")
        slots = self._states[self._keys[index]].slots
        if name not in slots:
            raise ValueError(f"{type(self).__name__}: no slot {name!r} (slots: "
                             f"{sorted(slots)})")
        return slots[name].copy()

    def slot_names(self):
        """The slots each variable gets, in Keras's order."""
        return list(self._slot_names())

    # --- config -----------------------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "learning_rate": self._learning_rate,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            raise ValueError(f"{cls.__name__}: learning-rate schedules are not supported by "
                             "fastlstm.keras")
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} learning_rate={self._learning_rate:g} " \
               f"iterations={self.iterations}>"


class SGD(Optimizer):
    """Keras 3's SGD with optional (Nesterov) momentum.

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float in [0, 1], default 0.0
    nesterov : bool, default False
        Nesterov momentum.
    weight_decay : float, optional
        Decoupled weight decay (p -= p * weight_decay * lr before each update).
    clipnorm : float, optional
        Clip each gradient to this norm.
    clipvalue : float, optional
        Clip each gradient element to [-clipvalue, clipvalue].
    global_clipnorm : float, optional
        Clip all gradients together to this global norm (only one of the three clips).
    use_ema : bool, default False
        Not supported: True is a ValueError.
    ema_momentum : float in [0, 1], default 0.99
        Checked and stored; unused (no EMA).
    ema_overwrite_frequency : optional
        Stored; unused (no EMA).
    loss_scale_factor : None
        Not supported: anything but None is a ValueError.
    gradient_accumulation_steps : None
        Not supported: anything but None is a ValueError.
    name : str, optional
        Default the Keras name of the class.
    **kwargs
        Keras's deprecated `decay` is accepted and ignored (with a warning unless 0 or
        None); any other keyword is a ValueError.

    Raises
    ------
    ValueError
        For an out-of-range or non-finite number, more than one clip setting, an
        unsupported setting or an unknown keyword.
    """

    _default_name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        """Create the optimizer; the arguments are documented in the class docstring."""
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.momentum = _number(momentum, "momentum", "SGD", 0, 1)
        self.nesterov = _flag(nesterov, "nesterov", "SGD")

    def _slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def _update(self, st, p, g, lr, consts):
        tmp = st.tmp
        np.multiply(g, lr, out=tmp)
        if self.momentum == 0:
            p -= tmp
            return
        m = st.slots["momentum"]
        m *= self.momentum
        m -= tmp
        if self.nesterov:
            p -= tmp
            np.multiply(m, self.momentum, out=tmp)
            p += tmp
        else:
            p += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Keras 3's Adam: bias correction folded into the step size alpha.

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta_1 : float in [0, 1), default 0.9
        Decay of the first-moment estimate.
    beta_2 : float in [0, 1), default 0.999
        Decay of the second-moment estimate.
    epsilon : float, default 1e-7
    amsgrad : bool, default False
        Use the AMSGrad variant.
    weight_decay : float, optional
        Decoupled weight decay (p -= p * weight_decay * lr before each update).
    clipnorm : float, optional
        Clip each gradient to this norm.
    clipvalue : float, optional
        Clip each gradient element to [-clipvalue, clipvalue].
    global_clipnorm : float, optional
        Clip all gradients together to this global norm (only one of the three clips).
    use_ema : bool, default False
        Not supported: True is a ValueError.
    ema_momentum : float in [0, 1], default 0.99
        Checked and stored; unused (no EMA).
    ema_overwrite_frequency : optional
        Stored; unused (no EMA).
    loss_scale_factor : None
        Not supported: anything but None is a ValueError.
    gradient_accumulation_steps : None
        Not supported: anything but None is a ValueError.
    name : str, optional
        Default the Keras name of the class.
    **kwargs
        Keras's deprecated `decay` is accepted and ignored (with a warning unless 0 or
        None); any other keyword is a ValueError.

    Raises
    ------
    ValueError
        For an out-of-range or non-finite number, more than one clip setting, an
        unsupported setting or an unknown keyword.
    """

    _default_name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        """Create the optimizer; the arguments are documented in the class docstring."""
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        who = type(self).__name__
        self.beta_1 = _number(beta_1, "beta_1", who, 0, 1, high_open=True)
        self.beta_2 = _number(beta_2, "beta_2", who, 0, 1, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", who, 0)
        self.amsgrad = _flag(amsgrad, "amsgrad", who)

    def _slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _consts(self, lr):
        return {}  # alpha per dtype, computed on first use in this step

    def _alpha(self, dtype, lr):
        # in the variable's dtype, as Keras computes it: float32 powers of float32 betas
        # (1 - 0.999 is 0.00099998713 in float32, which moves alpha by 6e-6 relative)
        f = dtype.type
        t = f(self.iterations + 1)
        return f(lr) * np.sqrt(f(1) - f(self.beta_2) ** t) / (f(1) - f(self.beta_1) ** t)

    def _update(self, st, p, g, lr, alphas):
        alpha = alphas.get(st.dtype)
        if alpha is None:
            alpha = alphas[st.dtype] = self._alpha(st.dtype, lr)
        tmp, slots = st.tmp, st.slots
        m, v = slots["momentum"], slots["velocity"]
        fused = _compiled()
        if fused is not None and fused.adam(p, g, m, v, slots.get("velocity_hat"),
                                            1 - self.beta_1, 1 - self.beta_2, self.epsilon,
                                            float(alpha)):
            return  # the same step in one pass (src_cython/optim.pyx), bit for bit
        np.subtract(g, m, out=tmp)
        tmp *= 1 - self.beta_1
        m += tmp
        np.square(g, out=tmp)
        tmp -= v
        tmp *= 1 - self.beta_2
        v += tmp
        if self.amsgrad:
            vhat = slots["velocity_hat"]
            np.maximum(vhat, v, out=vhat)
            v = vhat
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        p -= tmp

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Keras 3's AdamW: Adam with decoupled weight decay (p -= p * weight_decay * lr before
    each update).

    Parameters
    ----------
    learning_rate : float, default 0.001
    weight_decay : float, default 0.004
        Decoupled weight decay (None is a ValueError).
    beta_1 : float in [0, 1), default 0.9
    beta_2 : float in [0, 1), default 0.999
    epsilon : float, default 1e-7
    amsgrad : bool, default False
        Use the AMSGrad variant.
    clipnorm : float, optional
        Clip each gradient to this norm.
    clipvalue : float, optional
        Clip each gradient element to [-clipvalue, clipvalue].
    global_clipnorm : float, optional
        Clip all gradients together to this global norm (only one of the three clips).
    use_ema : bool, default False
        Not supported: True is a ValueError.
    ema_momentum : float in [0, 1], default 0.99
        Checked and stored; unused (no EMA).
    ema_overwrite_frequency : optional
        Stored; unused (no EMA).
    loss_scale_factor : None
        Not supported: anything but None is a ValueError.
    gradient_accumulation_steps : None
        Not supported: anything but None is a ValueError.
    name : str, optional
        Default the Keras name of the class.
    **kwargs
        Keras's deprecated `decay` is accepted and ignored (with a warning unless 0 or
        None); any other keyword is a ValueError.

    Raises
    ------
    ValueError
        For an out-of-range or non-finite number, more than one clip setting, an
        unsupported setting or an unknown keyword.
    """

    _default_name = "adam_w"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        """Create the optimizer; the arguments are documented in the class docstring."""
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a finite number >= 0, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)


class RMSprop(Optimizer):
    """Keras 3's RMSprop (epsilon inside the square root), optionally centered and with
    momentum.

    Parameters
    ----------
    learning_rate : float, default 0.001
    rho : float in [0, 1), default 0.9
        Decay of the squared-gradient average.
    momentum : float in [0, 1], default 0.0
    epsilon : float, default 1e-7
    centered : bool, default False
        Normalise by the gradient's estimated variance.
    weight_decay : float, optional
        Decoupled weight decay (p -= p * weight_decay * lr before each update).
    clipnorm : float, optional
        Clip each gradient to this norm.
    clipvalue : float, optional
        Clip each gradient element to [-clipvalue, clipvalue].
    global_clipnorm : float, optional
        Clip all gradients together to this global norm (only one of the three clips).
    use_ema : bool, default False
        Not supported: True is a ValueError.
    ema_momentum : float in [0, 1], default 0.99
        Checked and stored; unused (no EMA).
    ema_overwrite_frequency : optional
        Stored; unused (no EMA).
    loss_scale_factor : None
        Not supported: anything but None is a ValueError.
    gradient_accumulation_steps : None
        Not supported: anything but None is a ValueError.
    name : str, optional
        Default the Keras name of the class.
    **kwargs
        Keras's deprecated `decay` is accepted and ignored (with a warning unless 0 or
        None); any other keyword is a ValueError.

    Raises
    ------
    ValueError
        For an out-of-range or non-finite number, more than one clip setting, an
        unsupported setting or an unknown keyword.
    """

    _default_name = "rm_sprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        """Create the optimizer; the arguments are documented in the class docstring."""
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.rho = _number(rho, "rho", "RMSprop", 0, 1, high_open=True)
        self.momentum = _number(momentum, "momentum", "RMSprop", 0, 1)
        self.epsilon = _number(epsilon, "epsilon", "RMSprop", 0)
        self.centered = _flag(centered, "centered", "RMSprop")

    def _slot_names(self):
        # Keras's build order: velocity, then momentum, then average_gradient
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + \
            (("average_gradient",) if self.centered else ())

    def _update(self, st, p, g, lr, consts):
        tmp, slots, rho = st.tmp, st.slots, self.rho
        v = slots["velocity"]
        v *= rho
        np.square(g, out=tmp)
        tmp *= 1 - rho
        v += tmp
        if self.centered:
            a = slots["average_gradient"]
            a *= rho
            np.multiply(g, 1 - rho, out=tmp)
            a += tmp
            np.square(a, out=tmp)
            np.subtract(v, tmp, out=tmp)
            tmp += self.epsilon
        else:
            np.add(v, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        if self.momentum > 0:
            m = slots["momentum"]
            m *= self.momentum
            m += tmp
            p -= m
        else:
            p -= tmp

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier):
    """An optimizer for "sgd", "adam", "adamw", "rmsprop" (any case; Keras's defaults), a
    {"class_name", "config"} dict, or an Optimizer (returned as is). ValueError otherwise."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = OPTIMIZERS.get(identifier.lower())
        if cls is not None:
            return cls()
    elif isinstance(identifier, dict) and "class_name" in identifier:
        # 'Adam', 'Custom>Adam' (Keras 2 files), 'keras.optimizers.Adam', any case
        cls = OPTIMIZERS.get(str(identifier["class_name"]).rsplit(">", 1)[-1]
                             .rsplit(".", 1)[-1].lower())
        if cls is not None:
            return cls.from_config(identifier.get("config") or {})
    raise ValueError(f"unknown optimizer {identifier!r}: fastlstm.keras knows "
                     + ", ".join(repr(n) for n in OPTIMIZERS))
