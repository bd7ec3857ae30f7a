"""A teacher's sanity check: a small ViT can memorise a batch."""
import numpy as np

import minivit
from minivit import ops
from minivit.optim import AdamW


def test_small_vit_overfits_32_images(device, xp):
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((32, 3, 16, 16)), dtype=np.float32)
    y = xp.asarray(rng.integers(0, 10, 32))                # random labels: pure memorisation
    model = minivit.ViT(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, seed=0)
    opt = AdamW(model.named_parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for step in range(300):
        logits = model(x)
        loss, cache = ops.cross_entropy_forward(logits, y)
        first = float(loss) if first is None else first
        model.zero_grad()
        model.backward(ops.cross_entropy_backward(1.0, cache))
        opt.step()
        acc = float((logits.argmax(1) == y).mean())
        if acc == 1.0 and float(loss) < 0.05:
            break
    assert abs(first - np.log(10)) < 0.1
    assert acc == 1.0, f"train accuracy {acc} after {step + 1} steps (loss {float(loss):.3f})"
