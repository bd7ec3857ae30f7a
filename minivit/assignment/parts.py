"""The parts of an assignment: what students write, what each part is worth, and which
other parts' reference code it runs on.

A part is every region marked `### BEGIN SOLUTION <part>` in the library source (see
minivit/assignment/__init__.py); its checks are those registered for it in public.py and
hidden.py. The points of a part are shared among its checks by their weights.

NEEDS: the parts whose reference code a part's checks execute (the student's code calls
it, or the given code around it does). When a part is graded, the regions of every other
part are replaced by a stub that raises, so its process holds the solutions of these
parts only.
"""

PARTS = {
    # name:         (points, what the student writes)
    "linear":      (8, "the affine layer, forward and backward (minivit/ops/linear.py)"),
    "layernorm":   (8, "LayerNorm, forward and backward (minivit/ops/layernorm.py)"),
    "gelu":        (8, "GELU, exact and tanh forms, forward and backward (minivit/ops/gelu.py)"),
    "softmax":     (8, "softmax, forward and backward (minivit/ops/softmax.py)"),
    "attention":   (12, "scaled dot-product and multi-head self-attention "
                        "(minivit/ops/sdpa.py, minivit/ops/attention.py)"),
    "block":       (10, "the MLP and the pre-LN encoder block (minivit/ops/mlp.py, minivit/ops/block.py)"),
    "patch_embed": (8, "patchify by reshapes and the linear patch embedding, forward and backward "
                       "(minivit/ops/patch.py, minivit/ops/patch_embed.py)"),
    "cls_pool":    (8, "the [CLS] token and position embedding (Eq. 1) and the pooling to one vector "
                       "per image, forward and backward (minivit/ops/embed.py, minivit/ops/pool.py)"),
    "loss":        (8, "softmax cross-entropy with label smoothing (minivit/ops/loss.py)"),
    "adamw":       (8, "the AdamW update (minivit/optim.py)"),
    "vit":         (14, "the Vision Transformer's forward and backward pass (minivit/model.py)"),
}
ORDER = tuple(PARTS)

NEEDS = {
    "attention": ("linear", "softmax"),
    "block": ("linear", "layernorm", "gelu", "softmax", "attention"),
    "patch_embed": ("linear",),
    "vit": tuple(p for p in ORDER if p != "vit"),      # the model, trained in its checks
}


def needs(part):
    """The parts whose reference code `part` runs on."""
    return NEEDS.get(part, ())


def check_parts(names):
    """The parts named, in the canonical order; an unknown name is a ValueError."""
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(ORDER)}")
    return tuple(p for p in ORDER if p in names)
