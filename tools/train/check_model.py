"""GPU-machine check, seconds: our model.py saved as an HF folder loads in transformers'
LlamaForCausalLM with the same logits (tensor names, half-split RoPE, GQA, tied embeddings),
and a saved + reloaded sharded checkpoint is identical. Run before the first training call:
  python3 tools/train/check_model.py
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import model as M  # noqa: E402


def main():
    torch.manual_seed(0)
    a = M.ModelArgs(vocab_size=320, dim=128, n_layers=2, n_heads=8, n_kv_heads=2, head_dim=16, ffn_dim=256,
                    rope_theta=500000.0, max_seq_len=512)
    m = M.Llama(a).eval()
    with torch.no_grad():  # norms away from 1 so that a wrong norm would show
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    ids = torch.randint(0, a.vocab_size, (2, 200))
    with torch.no_grad():
        ours = m(ids).float()
    with tempfile.TemporaryDirectory() as d:
        M.save_hf(m, d)
        from transformers import AutoModelForCausalLM
        hf = AutoModelForCausalLM.from_pretrained(d).float().eval()
        with torch.no_grad():
            theirs = hf(ids).logits.float()
        diff = (ours - theirs).abs().max().item()
        print(f"model.py vs transformers LlamaForCausalLM: max |logit diff| {diff:.3g}")
        if not diff < 1e-4:
            sys.exit("FAIL: model.py does not match transformers")
        import train as T
        T.save_weights(m, os.path.join(d, "sharded"), torch.float32)
        m2 = M.Llama(a)
        T.load_weights(m2, os.path.join(d, "sharded"))
        for (n, p), (_, q) in zip(m.state_dict().items(), m2.state_dict().items()):
            if not torch.equal(p, q):
                sys.exit(f"FAIL: {n} differs after save/load")
    print("ok")


if __name__ == "__main__":
    main()
