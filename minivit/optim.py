"""Optimisers, learning-rate schedule and gradient clipping.

Each optimiser takes `model.named_parameters()` (name, Parameter) pairs and updates
`.data` in place from `.grad`. State can be saved (`state_dict()`, NumPy arrays on the
host) and restored (`load_state_dict`).
"""
import math

import numpy as np

from .backend import get_array_module, to_device, to_numpy


def no_decay(name, p):
    """Biases, norm weights (all 1-D parameters), pos_embed and cls_token are not decayed."""
    return p.data.ndim <= 1 or name.split(".")[-1] in ("pos_embed", "cls_token")


class Optimizer:
    def __init__(self, named_params, lr, weight_decay, skip_decay=no_decay):
        self.params = list(named_params)
        if not self.params:
            raise ValueError("optimizer got no parameters")
        self.lr, self.weight_decay = lr, weight_decay
        self.decay = {n: (weight_decay > 0 and not skip_decay(n, p)) for n, p in self.params}
        self.state = {}     # {buffer name: {param name: array}}
        self.step_count = 0

    def _buffer(self, kind, name, p):
        buf = self.state.setdefault(kind, {})
        if name not in buf:
            buf[name] = get_array_module(p.data).zeros_like(p.data)
        return buf[name]

    def zero_grad(self):
        for _, p in self.params:
            p.grad = None

    def state_dict(self):
        out = {"step_count": np.asarray(self.step_count), "lr": np.asarray(self.lr)}
        for kind, buf in self.state.items():
            for name, arr in buf.items():
                out[f"{kind}.{name}"] = to_numpy(arr).copy()
        return out

    def load_state_dict(self, state):
        """Restore from state_dict(); checked against the parameters before anything changes."""
        params = dict(self.params)
        new = {}
        for key, arr in state.items():
            if key in ("step_count", "lr"):
                continue
            kind, _, name = key.partition(".")
            if name not in params:
                raise ValueError(f"optimizer state has an unknown parameter {name!r}")
            if tuple(np.shape(arr)) != params[name].data.shape:
                raise ValueError(f"optimizer state {key}: shape {tuple(np.shape(arr))} != "
                                 f"parameter shape {params[name].data.shape}")
            dev = "cpu" if get_array_module(params[name].data) is np else "cuda"
            new.setdefault(kind, {})[name] = to_device(np.asarray(arr), dev, params[name].data.dtype)
        self.state = new
        self.step_count = int(state.get("step_count", 0))
        self.lr = float(state.get("lr", self.lr))


class SGD(Optimizer):
    """v = mu v + g (+ wd w);  w -= lr v   (Nesterov: w -= lr (g + mu v)), PyTorch's form."""

    def __init__(self, named_params, lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                 skip_decay=no_decay):
        super().__init__(named_params, lr, weight_decay, skip_decay)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    def step(self):
        self.step_count += 1
        for name, p in self.params:
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.decay[name] else p.grad
            if self.momentum:
                v = self._buffer("momentum", name, p)
                v *= self.momentum
                v += g
                g = g + self.momentum * v if self.nesterov else v
            p.data -= self.lr * g


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019):

        m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
        w -= lr * wd * w                      (decay, not through the gradient)
        w -= lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
    """

    def __init__(self, named_params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
                 skip_decay=no_decay):
        super().__init__(named_params, lr, weight_decay, skip_decay)
        self.b1, self.b2 = betas
        self.eps = eps

    def step(self):
        self.step_count += 1
        ### BEGIN SOLUTION adamw
        ### HINT: moments in place (self._buffer), bias correction, decay where self.decay[name]
        t = self.step_count
        bc1, bc2 = 1.0 - self.b1 ** t, 1.0 - self.b2 ** t
        step_size = self.lr / bc1
        for name, p in self.params:
            if p.grad is None:
                continue
            xp = get_array_module(p.data)
            g = p.grad
            m, v = self._buffer("exp_avg", name, p), self._buffer("exp_avg_sq", name, p)
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            if self.decay[name]:
                p.data *= 1.0 - self.lr * self.weight_decay
            denom = xp.sqrt(v / bc2)
            denom += self.eps
            p.data -= step_size * (m / denom)
        ### END SOLUTION


def cosine_lr(step, total_steps, base_lr, warmup_steps=0, min_lr=0.0):
    """Linear warmup from 0 to base_lr over warmup_steps, then cosine decay to min_lr."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(named_params, max_norm):
    """Scale all gradients together so their global L2 norm is at most max_norm.
    Returns the norm before clipping (a Python float)."""
    grads = [p.grad for _, p in named_params if p.grad is not None]
    if not grads:
        return 0.0
    # one reduction per tensor in its own dtype; the sum of the few partial results in Python
    total = math.sqrt(sum(float((g * g).sum()) for g in grads))
    if max_norm is not None and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total
