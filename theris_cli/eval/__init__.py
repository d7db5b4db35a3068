"""Evaluation of space-time upscalers on clips, by the training protocol.

    metrics.py    PSNR, SSIM (pytorch_msssim), temporal consistency, per frame on [0, 1]
    baselines.py  bicubic + linear blend; FFmpeg lanczos + minterpolate (PyAV filter graph)
    evaluate.py   the protocol, `evaluate(clips, methods, weights, ...)`
    results.py    the figures as dataclasses (JSON round trip, gains over each baseline)
    report.py     the terminal tables

    from theris_cli.eval.evaluate import evaluate
    ev = evaluate(["clip.mkv"], methods=["theris", "bicubic", "ffmpeg"], weights="tiny-random")
    print(ev.to_json())
"""
