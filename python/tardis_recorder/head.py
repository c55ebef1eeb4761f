"""The classifier head: the layers that map a representation to logits.

A head is normalised to a list of :class:`Dense` layers.  Accepted inputs:

* a ``torch.nn.Linear``;
* a ``torch.nn.Sequential`` of ``Linear`` and ``ReLU`` (``Identity``,
  ``Dropout`` and ``Flatten`` are skipped -- they are no-ops at eval time on
  a 2-D representation);
* a list of layers, each a ``(weight, bias)`` or ``(weight, bias, activation)``
  tuple or a dict ``{"weight": W, "bias": b, "activation": "none"|"relu"}``;
  ``bias`` may be None (zeros);
* a single ``(weight, bias[, activation])`` tuple.

Weights are in PyTorch ``nn.Linear`` layout: ``[out, in]``.
"""

import numpy as np

from ._arrays import to_numpy, check_finite

__all__ = ["Dense", "normalize_head", "head_forward", "ACTIVATIONS"]

ACTIVATIONS = ("none", "relu")


class Dense(object):
    __slots__ = ("weight", "bias", "activation")

    def __init__(self, weight, bias, activation):
        self.weight = weight
        self.bias = bias
        self.activation = activation

    def __repr__(self):
        return "Dense(%d -> %d, %s)" % (self.weight.shape[1], self.weight.shape[0],
                                        self.activation)


def _is_torch_module(obj):
    mod = type(obj).__module__ or ""
    return mod.startswith("torch") and hasattr(obj, "parameters") and hasattr(obj, "children")


def _from_torch(module):
    kind = type(module).__name__
    if kind == "Linear":
        modules = [module]
    elif kind == "Sequential":
        modules = list(module.children())
    else:
        raise ValueError(
            "head: cannot convert a torch %s; pass an nn.Linear, an nn.Sequential of "
            "Linear/ReLU layers, or a list of (weight, bias, activation) tuples" % kind)
    layers = []
    for i, m in enumerate(modules):
        name = type(m).__name__
        if name == "Linear":
            w = m.weight
            b = m.bias
            layers.append({"weight": w, "bias": b, "activation": "none"})
        elif name == "ReLU":
            if not layers:
                raise ValueError("head: a ReLU at position %d comes before any Linear layer; "
                                 "the head must start from the representation with a Linear" % i)
            if layers[-1]["activation"] != "none":
                raise ValueError("head: two activations in a row at position %d" % i)
            layers[-1]["activation"] = "relu"
        elif name in ("Identity", "Dropout", "Flatten"):
            continue
        elif name == "Sequential":
            raise ValueError("head: nested nn.Sequential at position %d; flatten it first" % i)
        else:
            raise ValueError("head: unsupported layer %s at position %d (supported: Linear, "
                             "ReLU, Identity, Dropout, Flatten)" % (name, i))
    return layers


def _looks_like_single_layer(head):
    if not isinstance(head, tuple) or len(head) not in (2, 3):
        return False
    first = head[0]
    if isinstance(first, (tuple, list, dict)):
        return False
    try:
        return to_numpy(first, "head").ndim == 2
    except ValueError:
        return False


def normalize_head(head, in_dim=None, out_dim=None):
    """Validate ``head`` and return a list of :class:`Dense` (float32, finite).

    ``in_dim`` is the representation width D and ``out_dim`` the number of
    classes C; when given, the chain must map D -> ... -> C.
    """
    if head is None:
        raise ValueError("head: required (the layers mapping the representation to logits)")
    if _is_torch_module(head):
        raw = _from_torch(head)
    elif _looks_like_single_layer(head):
        raw = [head]
    elif isinstance(head, (list, tuple)):
        raw = list(head)
    else:
        raise ValueError("head: expected a torch nn.Linear/nn.Sequential or a list of layers, "
                         "found %s" % type(head).__name__)
    if not raw:
        raise ValueError("head: needs at least one layer")

    layers = []
    for i, layer in enumerate(raw):
        what = "head layer %d" % i
        if isinstance(layer, dict):
            unknown = set(layer) - {"weight", "bias", "activation", "type"}
            if unknown:
                raise ValueError("%s: unknown keys %s" % (what, sorted(unknown)))
            if layer.get("type", "dense") != "dense":
                raise ValueError("%s: only type 'dense' is supported, found %r"
                                 % (what, layer.get("type")))
            if "weight" not in layer:
                raise ValueError("%s: missing 'weight'" % what)
            w, b, act = layer["weight"], layer.get("bias"), layer.get("activation", "none")
        elif isinstance(layer, (tuple, list)) and len(layer) in (2, 3):
            w, b = layer[0], layer[1]
            act = layer[2] if len(layer) == 3 else "none"
        else:
            raise ValueError("%s: expected (weight, bias[, activation]) or a dict, found %s"
                             % (what, type(layer).__name__))
        if act is None:
            act = "none"
        if not isinstance(act, str) or act.lower() not in ACTIVATIONS:
            raise ValueError("%s: activation must be one of %s, found %r"
                             % (what, ", ".join(repr(a) for a in ACTIVATIONS), act))
        act = act.lower()
        w = to_numpy(w, what + " weight")
        if w.ndim != 2:
            raise ValueError("%s weight: expected a 2-D [out, in] matrix, found shape %s"
                             % (what, list(w.shape)))
        if not np.issubdtype(w.dtype, np.floating):
            raise ValueError("%s weight: expected floating-point values, found dtype %s"
                             % (what, w.dtype))
        check_finite(w, what + " weight")
        n_out, n_in = w.shape
        if i == 0 and in_dim is not None and n_in != in_dim:
            hint = ""
            if n_out == in_dim:
                hint = " (is the weight transposed? it must be [out, in])"
            raise ValueError("head: the first layer takes %d inputs but the representation "
                             "has D = %d%s" % (n_in, in_dim, hint))
        if b is None:
            b = np.zeros(n_out, dtype=np.float32)
        b = to_numpy(b, what + " bias")
        if b.ndim != 1 or b.shape[0] != n_out:
            raise ValueError("%s bias: expected shape [%d] (the weight has %d outputs), "
                             "found %s" % (what, n_out, n_out, list(b.shape)))
        if not np.issubdtype(b.dtype, np.floating):
            raise ValueError("%s bias: expected floating-point values, found dtype %s"
                             % (what, b.dtype))
        check_finite(b, what + " bias")
        if layers and layers[-1].weight.shape[0] != n_in:
            raise ValueError("%s: takes %d inputs but layer %d produces %d (weights are "
                             "[out, in], as in torch nn.Linear)"
                             % (what, n_in, i - 1, layers[-1].weight.shape[0]))
        layers.append(Dense(np.ascontiguousarray(w, dtype=np.float32),
                            np.ascontiguousarray(b, dtype=np.float32), act))

    if out_dim is not None and layers[-1].weight.shape[0] != out_dim:
        raise ValueError("head: the last layer produces %d outputs but there are C = %d "
                         "classes" % (layers[-1].weight.shape[0], out_dim))
    return layers


def head_forward(layers, x):
    """Apply normalised head ``layers`` to representation rows ``x`` (float64)."""
    h = np.asarray(x, dtype=np.float64)
    for layer in layers:
        h = h @ layer.weight.astype(np.float64).T + layer.bias.astype(np.float64)
        if layer.activation == "relu":
            np.maximum(h, 0.0, out=h)
    return h
