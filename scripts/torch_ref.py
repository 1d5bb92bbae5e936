"""PyTorch 1.13 reference implementations written from the briefs' equations (shared/reference),
used by the fixture scripts and by the side-by-side benchmarks. Run with /usr/bin/python3.
"""
import torch


def causal_conv(x, k):
    # x: (B, L, C), k: (C, L) -> (B, L, C), y[l] = sum_{j<=l} k[j] x[l-j]
    L = x.shape[1]
    xf = torch.fft.rfft(x.transpose(1, 2), n=2 * L)
    kf = torch.fft.rfft(k, n=2 * L)
    return torch.fft.irfft(xf * kf, n=2 * L)[..., :L].transpose(1, 2)


def h3_forward(u, p, d, N, P):
    B, L, _ = u.shape
    H, M = d // P, N // 2
    lin = lambda x, name: x @ p[name + ".weight"].T + p[name + ".bias"]
    q, k, v = lin(u, "q_proj"), lin(u, "k_proj"), lin(u, "v_proj")
    # shift SSM: h[c, j] = sum_m B[c, m] C[c, m + j]
    Bs, Cs = p["ssm_k_kernel.kernel.B"], p["ssm_k_kernel.kernel.C"][0]
    h = torch.stack([(Bs[:, : N - j] * Cs[:, j:]).sum(-1) for j in range(N)], dim=-1)  # (d, N)
    hL = torch.zeros(d, L)
    n = min(N, L)
    hL[:, :n] = h[:, :n]
    kt = causal_conv(k, hL) + p["ssm_k_D"] * k
    # diagonal SSM kernel, bilinear
    dt = torch.exp(p["kernel.kernel.log_dt"])[:, None]
    A = -torch.exp(p["kernel.kernel.inv_A_real"]) + 1j * p["kernel.kernel.A_imag"]
    Bc = torch.view_as_complex(p["kernel.kernel.B"])
    Cc = torch.view_as_complex(p["kernel.kernel.C"][0])
    dA = (1 + dt * A / 2) / (1 - dt * A / 2)
    dB = Bc * dt / (1 - dt * A / 2)
    l = torch.arange(L)
    K = 2 * torch.real(((Cc * dB)[:, :, None] * torch.exp(l[None, None, :] * torch.log(dA)[:, :, None])).sum(1))  # (H, L)
    D = p["D"]
    if P == 1:
        w = kt * v
        z = causal_conv(w, K) + D * w
        o = q * z
    else:
        w = (kt.view(B, L, H, P, 1) * v.view(B, L, H, 1, P)).reshape(B, L, H * P * P)
        Kc = K.repeat_interleave(P * P, dim=0)
        Dc = D.repeat_interleave(P * P)
        z = causal_conv(w, Kc) + Dc * w
        o = (z.view(B, L, H, P, P) * q.view(B, L, H, P, 1)).sum(3).reshape(B, L, d)
    return lin(o, "output_linear")


def apply_rotary(t, inv_freq):
    # GPT-NeoX rotate_half on the first rotary_dim = 2 len(inv_freq) dims of each head; t (B, L, H, hd)
    rd = 2 * inv_freq.shape[0]
    freqs = torch.outer(torch.arange(t.shape[1], dtype=t.dtype), inv_freq.to(t.dtype))
    cos = torch.cat((freqs.cos(), freqs.cos()), -1)[None, :, None, :]
    sin = torch.cat((freqs.sin(), freqs.sin()), -1)[None, :, None, :]
    tr, tp = t[..., :rd], t[..., rd:]
    t1, t2 = tr.chunk(2, dim=-1)
    return torch.cat((tr * cos + torch.cat((-t2, t1), -1) * sin, tp), dim=-1)


def attention_forward(x, p, prefix, n_heads, causal=True):
    # flash_attn MHA as the hybrids use it: Wqkv (3, heads, head_dim) layout, out_proj, optional
    # rotary (when the checkpoint has rotary_emb.inv_freq)
    B, L, d = x.shape
    hd = d // n_heads
    qkv = x @ p[prefix + "Wqkv.weight"].T + p[prefix + "Wqkv.bias"]
    q, k, v = qkv.view(B, L, 3, n_heads, hd).unbind(2)
    if prefix + "rotary_emb.inv_freq" in p:
        q = apply_rotary(q, p[prefix + "rotary_emb.inv_freq"])
        k = apply_rotary(k, p[prefix + "rotary_emb.inv_freq"])
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / hd ** 0.5
    if causal:
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, -1), v).reshape(B, L, d)
    return o @ p[prefix + "out_proj.weight"].T + p[prefix + "out_proj.bias"]


def lm_params(d, n_layer, vocab, attn_layers, d_state=64, std=0.02):
    """Parameters of the H3 / hybrid / Transformer LM (h3.md 1.6) with released-checkpoint names."""
    import math
    p = {"backbone.embeddings.word_embeddings.weight": torch.randn(vocab, d) * std}
    for i in range(n_layer):
        pre = "backbone.layers.%d." % i
        for n in ["norm1", "norm2"]:
            p[pre + n + ".weight"] = torch.ones(d)
            p[pre + n + ".bias"] = torch.zeros(d)
        p[pre + "mlp.fc1.weight"] = torch.randn(4 * d, d) * std
        p[pre + "mlp.fc1.bias"] = torch.zeros(4 * d)
        p[pre + "mlp.fc2.weight"] = torch.randn(d, 4 * d) * std / math.sqrt(2 * n_layer)
        p[pre + "mlp.fc2.bias"] = torch.zeros(d)
        m = pre + "mixer."
        if i in attn_layers:
            p[m + "Wqkv.weight"] = torch.randn(3 * d, d) * std
            p[m + "Wqkv.bias"] = torch.zeros(3 * d)
            p[m + "out_proj.weight"] = torch.randn(d, d) * std / math.sqrt(2 * n_layer)
            p[m + "out_proj.bias"] = torch.zeros(d)
        else:
            for n in ["q_proj", "k_proj", "v_proj", "output_linear"]:
                p[m + n + ".weight"] = torch.randn(d, d) * std
                p[m + n + ".bias"] = torch.zeros(d)
            N, M = d_state, d_state // 2
            p[m + "ssm_k_kernel.kernel.B"] = torch.zeros(d, N)
            p[m + "ssm_k_kernel.kernel.B"][:, 0] = 1
            p[m + "ssm_k_kernel.kernel.C"] = (torch.rand(1, d, N) - 0.5) / 4
            p[m + "ssm_k_D"] = torch.randn(d)
            p[m + "kernel.kernel.log_dt"] = math.log(1e-3) + torch.rand(d) * math.log(100.0)
            p[m + "kernel.kernel.inv_A_real"] = torch.full((d, M), math.log(0.5))
            p[m + "kernel.kernel.A_imag"] = math.pi * torch.arange(M).float().repeat(d, 1)
            p[m + "kernel.kernel.B"] = torch.stack([torch.ones(d, M), torch.zeros(d, M)], -1)
            p[m + "kernel.kernel.C"] = torch.randn(1, d, M, 2) * math.sqrt(0.5)
            p[m + "D"] = torch.randn(d)
    p["backbone.ln_f.weight"] = torch.ones(d)
    p["backbone.ln_f.bias"] = torch.zeros(d)
    return p


def lm_forward(ids, p, d, n_layer, attn_layers, n_heads, d_state=64):
    E = p["backbone.embeddings.word_embeddings.weight"]
    h = E[ids]
    ln = lambda x, n: torch.nn.functional.layer_norm(x, (d,), p[n + ".weight"], p[n + ".bias"], 1e-5)
    for i in range(n_layer):
        pre = "backbone.layers.%d." % i
        x = ln(h, pre + "norm1")
        if i in attn_layers:
            x = attention_forward(x, p, pre + "mixer.", n_heads)
        else:
            sub = {k[len(pre + "mixer."):]: v for k, v in p.items() if k.startswith(pre + "mixer.")}
            x = h3_forward(x, sub, d, d_state, 1)
        h = h + x
        x = ln(h, pre + "norm2")
        x = x @ p[pre + "mlp.fc1.weight"].T + p[pre + "mlp.fc1.bias"]
        x = torch.nn.functional.gelu(x, approximate="tanh")
        h = h + x @ p[pre + "mlp.fc2.weight"].T + p[pre + "mlp.fc2.bias"]
    return ln(h, "backbone.ln_f") @ E.T
