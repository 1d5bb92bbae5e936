#!/usr/bin/python3
"""PyTorch 1.13 (Debian's python3-torch) timings of the operations hippo benchmarks, printed in
hippo's bench JSON convention so the two can be compared side by side:

  fftconv.torch  B=1, H channels, L: y = q * (irfft(rfft(u v, 2L) rfft(K, 2L))[:L] + D u v), fwd and fwd+bwd
  h3.mixer.torch B=1, D, L: the whole H3 mixer of scripts/torch_ref.py, fwd and fwd+bwd
  train.torch    B=1, L: one training step (forward, backward, AdamW) of a 12-layer D=768 LM,
                 pure H3, the hybrid (attention at layer 6) and the Transformer, tokens/s
  s4.kernel.torch  H channels, N = 64, L: the official SSMKernelDPLR (state-spaces/s4 models/s4/s4.py,
                 loaded as scripts/fixtures/make_s4_fixture.py does; without the CUDA extension and
                 pykeops it takes its naive Cauchy path), kernel generation fwd and fwd+bwd;
                 compare with hippo bench ssm's s4.kernel records

Usage: /usr/bin/python3 scripts/bench_torch.py [fftconv|h3|train|s4kernel] [--L 4096] [--channels 768] [--threads 2]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import causal_conv, h3_forward, lm_forward, lm_params  # noqa: E402


def timed(fn, runs):
    fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), len(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["fftconv", "h3", "train", "s4kernel"])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--channels", type=int, default=768)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    L, C = a.L, a.channels
    recs = []
    if a.what == "fftconv":
        u, v, q = (torch.randn(1, L, C, requires_grad=True) for _ in range(3))
        K = torch.randn(C, L, requires_grad=True)
        D = torch.randn(C, requires_grad=True)
        f = lambda: q * (causal_conv(u * v, K) + D * u * v)
        with torch.no_grad():
            ms, runs = timed(f, a.runs)
        recs.append({"name": "fftconv.torch", "B": 1, "H": C, "L": L, "pass": "fwd", "ms": ms, "runs": runs})
        ms, runs = timed(lambda: f().sum().backward(), a.runs)
        recs.append({"name": "fftconv.torch", "B": 1, "H": C, "L": L, "pass": "fwd+bwd", "ms": ms, "runs": runs})
    elif a.what == "s4kernel":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
        from make_s4_fixture import load_official  # noqa: E402
        s4 = load_official()
        k = s4.SSMKernelDPLR(d_model=C, channels=1, l_max=L, d_state=64, verbose=False)
        with torch.no_grad():
            ms, runs = timed(lambda: k(L=L), a.runs)  # the warm-up call attunes C to L
        recs.append({"name": "s4.kernel.torch", "H": C, "N": 64, "L": L, "pass": "fwd", "ms": ms, "runs": runs})
        ms, runs = timed(lambda: k(L=L)[0].sum().backward(), a.runs)
        recs.append({"name": "s4.kernel.torch", "H": C, "N": 64, "L": L, "pass": "fwd+bwd", "ms": ms, "runs": runs})
    elif a.what == "train":
        d, n_layer, vocab = C, a.layers, 50264
        for name, attn in [("h3", []), ("hybrid", [n_layer // 2]), ("transformer", list(range(n_layer)))]:
            p = lm_params(d, n_layer, vocab, attn)
            for t in p.values():
                t.requires_grad_(True)
            opt = torch.optim.AdamW(list(p.values()), lr=1e-4)
            ids = torch.randint(0, 50257, (1, L + 1))

            def step():
                opt.zero_grad()
                logits = lm_forward(ids[:, :-1], p, d, n_layer, attn, d // 64)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
                loss.backward()
                opt.step()

            ms, runs = timed(step, a.runs)
            recs.append({"name": "train.torch", "model": name, "B": 1, "D": d, "L": L, "layers": n_layer,
                         "pass": "step", "ms": ms, "runs": runs, "tokens_per_s": L / (ms * 1e-3)})
    else:
        d, N = C, 64
        p = {}
        for name in ["q_proj", "k_proj", "v_proj", "output_linear"]:
            p[name + ".weight"] = torch.randn(d, d) * 0.02
            p[name + ".bias"] = torch.zeros(d)
        p["ssm_k_kernel.kernel.B"] = torch.zeros(d, N)
        p["ssm_k_kernel.kernel.B"][:, 0] = 1
        p["ssm_k_kernel.kernel.C"] = (torch.rand(1, d, N) - 0.5) / 4
        p["ssm_k_D"] = torch.randn(d)
        p["kernel.kernel.log_dt"] = math.log(1e-3) + torch.rand(d) * math.log(100.0)
        p["kernel.kernel.inv_A_real"] = torch.full((d, N // 2), math.log(0.5))
        p["kernel.kernel.A_imag"] = math.pi * torch.arange(N // 2).float().repeat(d, 1)
        p["kernel.kernel.B"] = torch.stack([torch.ones(d, N // 2), torch.zeros(d, N // 2)], -1)
        p["kernel.kernel.C"] = torch.randn(1, d, N // 2, 2) * math.sqrt(0.5)
        p["D"] = torch.randn(d)
        for t in p.values():
            t.requires_grad_(True)
        u = torch.randn(1, L, d, requires_grad=True)
        f = lambda: h3_forward(u, p, d, N, 1)
        with torch.no_grad():
            ms, runs = timed(f, a.runs)
        recs.append({"name": "h3.mixer.torch", "B": 1, "D": d, "L": L, "pass": "fwd", "ms": ms, "runs": runs})
        ms, runs = timed(lambda: f().sum().backward(), a.runs)
        recs.append({"name": "h3.mixer.torch", "B": 1, "D": d, "L": L, "pass": "fwd+bwd", "ms": ms, "runs": runs})
    for r in recs:
        r["torch"] = torch.__version__
        r["threads"] = a.threads
    print(json.dumps(recs, indent=1))


if __name__ == "__main__":
    main()
