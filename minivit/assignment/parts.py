"""The parts of an assignment: what students write, and what each part is worth.

A part is every region marked `### BEGIN SOLUTION <part>` in the library source (see
minivit/assignment/__init__.py); its checks are those registered for it in public.py and
hidden.py. The points of a part are shared among its checks by their weights.
"""

PARTS = {
    # name:       (points, what the student writes)
    "linear":    (10, "the affine layer, forward and backward (minivit/ops/linear.py)"),
    "layernorm": (10, "LayerNorm, forward and backward (minivit/ops/layernorm.py)"),
    "gelu":      (10, "GELU, exact and tanh forms, forward and backward (minivit/ops/gelu.py)"),
    "softmax":   (10, "softmax, forward and backward (minivit/ops/softmax.py)"),
    "attention": (15, "scaled dot-product and multi-head self-attention "
                      "(minivit/ops/sdpa.py, minivit/ops/attention.py)"),
    "block":     (10, "the MLP and the pre-LN encoder block (minivit/ops/mlp.py, minivit/ops/block.py)"),
    "loss":      (10, "softmax cross-entropy with label smoothing (minivit/ops/loss.py)"),
    "adamw":     (10, "the AdamW update (minivit/optim.py)"),
    "vit":       (15, "the Vision Transformer's forward and backward pass (minivit/model.py)"),
}
ORDER = tuple(PARTS)


def check_parts(names):
    """The parts named, in the canonical order; an unknown name is a ValueError."""
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(ORDER)}")
    return tuple(p for p in ORDER if p in names)
