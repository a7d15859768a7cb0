"""Broken test candidate: defines no `attention` function (expect `contract`)."""

import torch


def attn(q, k, v):
    return torch.empty_like(q)
