"""Run by tests/test_ddp.py under torchrun: train with fit on two CPU processes (gloo) and save the weights.

``python -m torch.distributed.run ... ddp_train_script.py OUT_DIR MODE`` with MODE ``plain`` (fit's own
step, DDP) or ``gan`` (a GAN's update_fn, two optimizers). Each rank saves what it ended with, and whether a
DistributedDataParallel wrapper outlived fit (it must not: freed at interpreter exit, it crashes the exit).
"""

import gc
import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import fit
from karpa_lab.models.gan import GANUpdate, gan_optimizers, mlp_gan_2d

gc.disable()  # so that a wrapper kept alive by a reference cycle is seen, as at a real exit
out, mode = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
x = torch.randn(256, 4)
y = x.sum(dim=1, keepdim=True)
data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
torch.manual_seed(int(os.environ["RANK"]))  # a different init on each rank: fit must start all from rank 0's
if mode == "plain":
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    history = fit(model, data, epochs=3, lr=1e-2, device="cpu", clip_grad=5.0, verbose=False)
else:
    model = mlp_gan_2d(hidden=16)
    real = DataLoader(TensorDataset(x[:, :2]), batch_size=16, shuffle=True)
    history = fit(model, real, epochs=3, update_fn=GANUpdate(*gan_optimizers(model, 1e-3, 1e-3)), device="cpu",
                  clip_grad=5.0, verbose=False)
alive = sum(isinstance(o, nn.parallel.DistributedDataParallel) for o in gc.get_objects())
rank = dist.get_rank()
result = {"state": model.state_dict(), "steps": len(history), "loss": history.train_loss[-1], "ddp_alive": alive}
torch.save(result, f"{out}/rank{rank}.pt")
dist.destroy_process_group()
