#!/usr/bin/env python3
"""PyTorch baseline of bench_nn: the same U-Net (SPEC.md section 4: 5 levels, 24 features,
ELU, batch norm after each level's convolutions, max-pool, nearest upsampling, 34 classes),
the same soft Dice loss and Adam, on the same device, channels-last; fp32 (no TF32) or bf16
autocast, optionally through torch.compile.

usage: unet_torch.py [--device cpu|cuda] [--precision fp32|bf16] [--compile] [--scale S]
                     [--repeats N] [--json OUT]
  UNetForward   at 160x192x160 (no gradients)
  UNetTrainStep at 128x160x128 (forward + Dice + backward + Adam)
Optional: needs torch (pip); never part of the build or the tests.
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from report import baseline_arguments, save_json


class UNet(nn.Module):
    def __init__(self, levels=5, features=24, classes=34):
        super().__init__()
        f = [features * 2 ** l for l in range(levels)]
        self.levels = levels
        self.enc = nn.ModuleList()
        self.enc_bn = nn.ModuleList()
        for l in range(levels):
            cin = 1 if l == 0 else f[l - 1]
            self.enc.append(nn.ModuleList([nn.Conv3d(cin, f[l], 3, padding=1), nn.Conv3d(f[l], f[l], 3, padding=1)]))
            self.enc_bn.append(nn.BatchNorm3d(f[l], eps=1e-3, momentum=0.01))
        self.dec = nn.ModuleList()
        self.dec_bn = nn.ModuleList()
        for l in range(levels - 2, -1, -1):
            self.dec.append(nn.ModuleList([nn.Conv3d(f[l] + f[l + 1], f[l], 3, padding=1),
                                           nn.Conv3d(f[l], f[l], 3, padding=1)]))
            self.dec_bn.append(nn.BatchNorm3d(f[l], eps=1e-3, momentum=0.01))
        self.head = nn.Conv3d(f[0], classes, 1)

    def forward(self, x):
        skips = []
        for l in range(self.levels):
            for conv in self.enc[l]:
                x = F.elu(conv(x))
            skips.append(x)
            x = self.enc_bn[l](x)
            if l < self.levels - 1:
                x = F.max_pool3d(x, 2)
        for i, l in enumerate(range(self.levels - 2, -1, -1)):
            x = torch.cat([skips[l], F.interpolate(x, scale_factor=2, mode="nearest")], dim=1)
            for conv in self.dec[i]:
                x = F.elu(conv(x))
            x = self.dec_bn[i](x)
        return self.head(x)


def dice_loss(logits, target):
    p = torch.softmax(logits, dim=1)
    p = torch.clamp(p / p.sum(dim=1, keepdim=True), 1e-7, 1)
    y = torch.clamp(F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).float(), 1e-7, 1)
    dims = (0, 2, 3, 4)
    dice = 2 * (y * p).sum(dims) / torch.clamp((y * y + p * p).sum(dims), min=1e-3)
    return 1 - dice.mean()


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    parser = baseline_arguments(2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compile time excluded)")
    args = parser.parse_args()
    dev = args.device
    autocast = torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = UNet().to(dev).to(memory_format=torch.channels_last_3d)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"parameters {sum(p.numel() for p in model.parameters())}, {args.precision}"
          f"{', compiled' if args.compile else ''}")
    net = torch.compile(model) if args.compile else model
    s = args.scale
    result = {}

    model.eval()
    x = torch.rand(1, 1, 160 // s, 192 // s, 160 // s, device=dev).to(memory_format=torch.channels_last_3d)
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):
            sync(dev)
            t = time.perf_counter()
            with autocast:
                torch.softmax(net(x).float(), dim=1)
            sync(dev)
            times.append(time.perf_counter() - t)
    result["forward"] = min(times[1:])  # the first run warms up
    print(f"torch UNetForward   {result['forward'] * 1e3:9.1f} ms")
    if dev == "cuda":
        result["forward_peak_bytes"] = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    x = torch.rand(1, 1, 128 // s, 160 // s, 128 // s, device=dev).to(memory_format=torch.channels_last_3d)
    target = (torch.arange(x[0, 0].numel(), device=dev) // 4096 % 34).reshape(1, *x.shape[2:])
    times = []
    for _ in range(args.repeats + 1):
        sync(dev)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = net(x)
        loss = dice_loss(logits.float(), target)
        loss.backward()
        opt.step()
        sync(dev)
        times.append(time.perf_counter() - t)
    result["train_step"] = min(times[1:])
    print(f"torch UNetTrainStep {result['train_step'] * 1e3:9.1f} ms")
    if dev == "cuda":
        result["train_step_peak_bytes"] = torch.cuda.max_memory_allocated()
    result["precision"] = args.precision
    result["compiled"] = args.compile
    save_json(result, args.json, torch.get_num_threads())


if __name__ == "__main__":
    main()
