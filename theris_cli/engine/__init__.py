"""The engine: one video streamed through the network, in the order the data flows.

    options.py    UpscaleOptions: what a user may set, its limits and defaults, checked once at the door
    prepare.py    before the first frame: input and output checked, probe, levels, weights (all commands)
    pipeline.py   upscale_video(): probe -> levels -> decode -> Upscaler -> encode, three threads
    infer.py      Upscaler: windows of k+1 frames, tiles, the model, device and precision back-off
    windows.py    where windows and tiles start, and which output times each one writes
    stitch.py     TileCanvas and TemporalBlender: overlapping tiles and windows joined into frames
    hugepages.py  the allocator setting that keeps large temporaries from page-faulting
"""
