"""Glue for checks of code that keeps state (an optimiser, a model): plain functions of
arrays that the checks call through `run`, in the student's copy and in the grader's part
process alike. They decide nothing: every result goes back to the check."""
import numpy as np


def adamw_steps(params, grads, **options):
    """AdamW (minivit.optim, options as its keywords) on copies of `params` ({name: array}),
    one step per entry of `grads` ([{name: gradient or None}]). Returns {name: array}."""
    from ..nn import Parameter
    from ..optim import AdamW
    named = [(name, Parameter(np.array(a, copy=True))) for name, a in params.items()]
    opt = AdamW(named, **options)
    for step in grads:
        for name, p in named:
            g = step.get(name)
            p.grad = None if g is None else np.array(g, copy=True)
        opt.step()
    return {name: p.data for name, p in named}


def adamw_on_quadratic(w, steps, target=0.0, **options):
    """AdamW on L(w) = ||w - target||^2 (gradient 2 (w - target)) from w, for `steps` steps;
    returns w."""
    from ..nn import Parameter
    from ..optim import AdamW
    p = Parameter(np.array(w, copy=True))
    opt = AdamW([("w", p)], **options)
    for _ in range(steps):
        p.grad = 2 * (p.data - target)
        opt.step()
    return p.data


def vit(config, state=None):
    """A ViT (minivit.ViT(**config)) on the reference kernels, `state` loaded if given."""
    from ..model import ViT
    model = ViT(**config, kernels="reference")
    if state is not None:
        model.load_state_dict(state)
    return model


def vit_forward(model, x, train=False, return_attn=False):
    """Logits (and the attention maps) in eval or training mode."""
    model.train(train)
    return model(x, return_attn=return_attn)


def vit_backward(model, dlogits):
    """dL/dx and {name: gradient} of every parameter, after one backward pass."""
    model.zero_grad()
    dx = model.backward(dlogits)
    return dx, model.grads()


def vit_forward_with(model, name, value, x):
    """The eval-mode logits with parameter `name` set to `value` (for finite differences)."""
    dict(model.named_parameters())[name].data = value
    return vit_forward(model, x)


def vit_fit(config, x, y, steps, lr):
    """Train a fresh ViT of `config` on one batch with AdamW (no weight decay) and the
    cross-entropy loss; returns its state dict."""
    from ..ops.loss import cross_entropy_backward, cross_entropy_forward
    from ..optim import AdamW
    model = vit(config)
    opt = AdamW(model.named_parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        loss, cache = cross_entropy_forward(model(x), y)
        model.zero_grad()
        model.backward(cross_entropy_backward(1.0, cache))
        opt.step()
    return model.state_dict()
