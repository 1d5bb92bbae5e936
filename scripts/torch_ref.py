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
