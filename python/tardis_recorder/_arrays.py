"""Conversion and validation of user arrays (numpy, torch, lists)."""

import numbers

import numpy as np

__all__ = [
    "to_numpy", "as_labels", "as_float_matrix", "as_float_vector",
    "as_index_vector", "per_sample_loss", "to_number", "first_bad_row",
]


def to_numpy(x, what):
    """Turn a numpy array, torch tensor, or nested sequence into an ndarray.

    torch is never imported here: tensors are recognised by their methods.
    """
    if x is None:
        raise ValueError("%s: expected an array, got None" % what)
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        # numpy has no bfloat16; widen such tensors first.
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise ValueError("%s: cannot convert %s to an array (%s)"
                         % (what, type(x).__name__, e))


def _shape(s):
    return "[" + ", ".join(str(d) for d in s) + "]"


def first_bad_row(arr):
    """Index of the first row (along axis 0) holding a NaN or Inf, or None."""
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        return None
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    bad = ~np.isfinite(flat).all(axis=1)
    if not bad.any():
        return None
    return int(np.argmax(bad))


def check_finite(arr, what, file=None):
    row = first_bad_row(arr)
    if row is not None:
        vals = arr[row] if arr.ndim > 1 else arr[row:row + 1]
        kind = "NaN" if np.isnan(vals).any() else "Inf"
        where = " (%s)" % file if file else ""
        raise ValueError("%s%s contains %s: first bad row is %d of %d"
                         % (what, where, kind, row, arr.shape[0]))


def as_labels(x, what, n=None, n_classes=None):
    """Validate a 1-D integer label vector and return it as int32."""
    arr = to_numpy(x, what)
    if arr.ndim != 1:
        raise ValueError("%s: expected a 1-D label vector, found shape %s"
                         % (what, _shape(arr.shape)))
    if n is not None and arr.shape[0] != n:
        raise ValueError("%s: expected %d labels, found %d" % (what, n, arr.shape[0]))
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("%s: labels must be integers, found dtype %s"
                         % (what, arr.dtype))
    if n_classes is not None and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n_classes:
            bad = int(np.argmax((arr < 0) | (arr >= n_classes)))
            raise ValueError("%s: labels must lie in [0, %d), found %d at index %d"
                             % (what, n_classes, int(arr[bad]), bad))
    return arr.astype(np.int32)


def as_float_matrix(x, what, rows=None, cols=None, dtype=np.float32,
                    rows_from=None, cols_from=None):
    """Validate a finite 2-D float matrix and return it in ``dtype``.

    ``rows_from``/``cols_from`` name where the expected sizes come from, for
    error messages (e.g. "n_train in run.json").
    """
    arr = to_numpy(x, what)
    if arr.ndim != 2:
        raise ValueError("%s: expected a 2-D array [%s, %s], found shape %s"
                         % (what, rows if rows is not None else "N",
                            cols if cols is not None else "D", _shape(arr.shape)))
    if rows is not None and arr.shape[0] != rows:
        raise ValueError("%s: expected %d rows%s, found %d (shape %s)"
                         % (what, rows, " (%s)" % rows_from if rows_from else "",
                            arr.shape[0], _shape(arr.shape)))
    if cols is not None and arr.shape[1] != cols:
        raise ValueError("%s: expected %d columns%s, found %d (shape %s)"
                         % (what, cols, " (%s)" % cols_from if cols_from else "",
                            arr.shape[1], _shape(arr.shape)))
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError("%s: expected floating-point values, found dtype %s"
                         % (what, arr.dtype))
    check_finite(arr, what)
    with np.errstate(over="ignore"):  # overflow is reported below, with the row
        out = arr.astype(dtype)
    if out.dtype != arr.dtype:
        # Narrowing (e.g. to float16) can overflow to Inf.
        row = first_bad_row(out)
        if row is not None:
            raise ValueError("%s: values overflow %s at row %d (largest magnitude %g)"
                             % (what, np.dtype(dtype).name, row,
                                float(np.abs(arr[row]).max())))
    return out


def as_float_vector(x, what, n=None, n_from=None, dtype=np.float32):
    arr = to_numpy(x, what)
    if arr.ndim != 1:
        raise ValueError("%s: expected a 1-D array, found shape %s"
                         % (what, _shape(arr.shape)))
    if n is not None and arr.shape[0] != n:
        raise ValueError("%s: expected %d values%s, found %d"
                         % (what, n, " (%s)" % n_from if n_from else "", arr.shape[0]))
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError("%s: expected floating-point values, found dtype %s"
                         % (what, arr.dtype))
    check_finite(arr, what)
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    if out.dtype != arr.dtype:
        check_finite(out, "%s (as %s)" % (what, np.dtype(dtype).name))
    return out


def as_index_vector(x, what, limit):
    arr = to_numpy(x, what)
    if arr.ndim != 1:
        raise ValueError("%s: expected a 1-D index vector, found shape %s"
                         % (what, _shape(arr.shape)))
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("%s: indices must be integers, found dtype %s"
                         % (what, arr.dtype))
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= limit):
        bad = int(np.argmax((arr < 0) | (arr >= limit)))
        raise ValueError("%s: indices must lie in [0, %d), found %d at position %d"
                         % (what, limit, int(arr[bad]), bad))
    return arr.astype(np.int32)


def per_sample_loss(logits, labels):
    """Cross-entropy of each row of ``logits`` under its label.

    Uses a max-shifted log-sum-exp in float64, so large logits never
    overflow; returns float32 [N].
    """
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    picked = z[np.arange(z.shape[0]), np.asarray(labels, dtype=np.int64)]
    return (lse - picked).astype(np.float32)


def to_number(value, what):
    """A JSON-safe, finite Python number (int or float) from a scalar."""
    if hasattr(value, "detach") and hasattr(value, "item"):
        value = value.detach().cpu().item()  # 0-d / 1-element tensor
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError("%s: expected a number, found an array of shape %s"
                             % (what, _shape(value.shape)))
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError("%s: expected a number, found %s" % (what, type(value).__name__))
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    if not np.isfinite(value):
        raise ValueError("%s: must be finite, found %r" % (what, value))
    return value
