"""A small LLaMA-architecture decoder in PyTorch (the project's own code): RMSNorm, RoPE in the
Hugging Face half-split convention (rotate_half), GQA attention through torch SDPA, SwiGLU MLP,
tied embeddings. Saved as a Hugging Face folder (config.json + model.safetensors, LLaMA tensor
names) that `tca run -m DIR` and `tca convert` read."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelArgs:
    vocab_size: int = 4096
    dim: int = 512
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 2
    head_dim: int = 64
    ffn_dim: int = 896
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 16384
    tie_embeddings: bool = True
    bos_id: int = 1
    eos_id: int = 2

    def n_params(self) -> int:
        return n_params(self)


def n_params(a: ModelArgs) -> int:
    """Weights counted the way the GGUF stores them (tied output once)."""
    q, kv = a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim
    per_layer = 2 * a.dim + a.dim * (q + 2 * kv) + q * a.dim + 3 * a.dim * a.ffn_dim
    emb = a.vocab_size * a.dim * (1 if a.tie_embeddings else 2)
    return a.n_layers * per_layer + emb + a.dim


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rope_tables(head_dim: int, n: int, theta: float, device):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim))
    t = torch.arange(n, device=device, dtype=torch.float64)
    f = torch.outer(t, inv)  # [n, head_dim / 2]
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().float(), emb.sin().float()


def apply_rope(x, cos, sin):
    """x [b, h, t, d]; half-split pairs (x[i], x[i + d/2]) as HF's rotate_half."""
    d2 = x.shape[-1] // 2
    x1, x2 = x[..., :d2], x[..., d2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rot.float() * sin).to(x.dtype)


def causal_attention(q, k, v):
    """q [b, h, t, d], k/v [b, kv, t, d]. K/V heads are repeated to the query heads before SDPA:
    SDPA's enable_gqa is not taken by every backend, and its math fallback would hold a
    [b, h, t, t] matrix per layer (16 GiB at 16K). Without SDPA (torch < 2.0, CPU checks) the
    same product is written out."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[2]
    s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return (s.softmax(-1) @ v.float()).to(q.dtype)


class Attention(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.a = a
        self.q_proj = nn.Linear(a.dim, a.n_heads * a.head_dim, bias=False)
        self.k_proj = nn.Linear(a.dim, a.n_kv_heads * a.head_dim, bias=False)
        self.v_proj = nn.Linear(a.dim, a.n_kv_heads * a.head_dim, bias=False)
        self.o_proj = nn.Linear(a.n_heads * a.head_dim, a.dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        a = self.a
        q = self.q_proj(x).view(b, t, a.n_heads, a.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, a.n_kv_heads, a.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, a.n_kv_heads, a.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = causal_attention(q, k, v)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, a.n_heads * a.head_dim))


class MLP(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(a.dim, a.ffn_dim, bias=False)
        self.up_proj = nn.Linear(a.dim, a.ffn_dim, bias=False)
        self.down_proj = nn.Linear(a.ffn_dim, a.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.input_layernorm = RMSNorm(a.dim, a.norm_eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.dim, a.norm_eps)
        self.mlp = MLP(a)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.a = a
        self.embed_tokens = nn.Embedding(a.vocab_size, a.dim)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.n_layers))
        self.norm = RMSNorm(a.dim, a.norm_eps)
        self.lm_head = None if a.tie_embeddings else nn.Linear(a.dim, a.vocab_size, bias=False)
        self._rope = {}
        self.reset_parameters()

    def reset_parameters(self):
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=std)
                if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    p.data.mul_(1.0 / math.sqrt(2 * self.a.n_layers))

    def rope(self, t: int, device):
        key = (t, str(device))
        if key not in self._rope:
            self._rope = {key: rope_tables(self.a.head_dim, t, self.a.rope_theta, device)}
        return self._rope[key]

    def forward(self, ids):
        x = self.embed_tokens(ids)
        cos, sin = self.rope(ids.shape[1], ids.device)
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        w = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, w)


def hf_state_dict(model: Llama) -> dict:
    """Tensors under Hugging Face LlamaForCausalLM names, f32, contiguous."""
    out = {}
    for name, p in model.state_dict().items():
        hf = "lm_head.weight" if name == "lm_head.weight" else "model." + name
        out[hf] = p.detach().float().contiguous().cpu()
    return out


def hf_config(a: ModelArgs) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": a.vocab_size,
        "hidden_size": a.dim,
        "num_hidden_layers": a.n_layers,
        "num_attention_heads": a.n_heads,
        "num_key_value_heads": a.n_kv_heads,
        "head_dim": a.head_dim,
        "intermediate_size": a.ffn_dim,
        "rope_theta": a.rope_theta,
        # transformers >= 5 reads rope_parameters; older versions and tca read rope_theta too
        "rope_parameters": {"rope_type": "default", "rope_theta": a.rope_theta},
        "rms_norm_eps": a.norm_eps,
        "max_position_embeddings": a.max_seq_len,
        "tie_word_embeddings": a.tie_embeddings,
        "attention_bias": False,
        "hidden_act": "silu",
        "bos_token_id": a.bos_id,
        "eos_token_id": a.eos_id,
        "torch_dtype": "float32",
    }


def save_hf(model: Llama, folder: str, tokenizer_json: str | None = None):
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(model.a), f, indent=2)
    save_file(hf_state_dict(model), os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_json:
        import shutil
        shutil.copy(tokenizer_json, os.path.join(folder, "tokenizer.json"))


def args_from_dict(d: dict) -> ModelArgs:
    known = {k: v for k, v in d.items() if k in ModelArgs.__dataclass_fields__}
    return ModelArgs(**known)


def args_to_dict(a: ModelArgs) -> dict:
    return asdict(a)
