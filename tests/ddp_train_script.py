"""Run by tests/test_ddp.py under torchrun: train with fit on two CPU processes (gloo) and save the weights."""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import fit

torch.manual_seed(0)
x = torch.randn(256, 4)
y = x.sum(dim=1, keepdim=True)
data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
torch.manual_seed(int(os.environ["RANK"]))  # a different init on each rank: DDP must broadcast rank 0's
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
history = fit(model, data, epochs=3, lr=1e-2, device="cpu")
rank = dist.get_rank()
result = {"state": model.state_dict(), "steps": len(history), "loss": history.train_loss[-1]}
torch.save(result, f"{sys.argv[1]}/rank{rank}.pt")
dist.destroy_process_group()
