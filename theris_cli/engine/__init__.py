"""The engine: one video streamed through the network, in the order the data flows.

    options.py    UpscaleOptions: what a user may set, its limits and defaults, checked once at the door
    prepare.py    before the first frame: input and output checked, probe, levels, weights (all commands)
    pipeline.py   upscale_video(): decode -> events -> samples -> encode, three threads
    events.py     repeated frames, splices and shutter events, found on the decoded frames
    samples.py    distinct frames (samples) into windows that never span a splice or shutter jump
    infer.py      Upscaler: windows of k+1 frames, tiles, the model, device and precision back-off
    windows.py    where windows and tiles start, and which output times each one writes
    stitch.py     TileCanvas and TemporalBlender: overlapping tiles and windows joined into frames
    resume.py     unfinished work kept in segments beside the destination, and continued
    estimate.py   the total time a run will take, from its first window
    memory.py     a tile too large for the GPU, and the host memory there is
    hugepages.py  allocator settings for large temporaries
"""
